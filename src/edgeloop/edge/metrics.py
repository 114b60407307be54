"""The edge's Prometheus metrics, counted in plain Python on the hot path and exported at scrape.

prometheus_client's own counters take a lock and a label lookup per increment (about a
microsecond); a decide request touches several flags, so we count in dicts and let a collector
turn them into metric families when /metrics is read.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)


class LatencyHistogram:
    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        buckets = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=self.total)


class EdgeMetrics:
    def __init__(self) -> None:
        self.decisions: Counter[tuple[str, str]] = Counter()
        self.decide_latency = LatencyHistogram()
        self.sync_errors: Counter[str] = Counter()
        self.snapshots_applied = 0
        self.version = 0
        self.issued_at = 0.0
        self.attached = 0
        self.signals_accepted = 0
        self.signals_rejected = 0
        self.sessions = 0
        self.batches_shipped = 0
        self.ship_errors = 0
        self.outbox_depth = 0
        self.outbox_full = False

    def registry(self, clock: Callable[[], float]) -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self, clock))
        return registry


class _Collector:
    def __init__(self, metrics: EdgeMetrics, clock: Callable[[], float]) -> None:
        self.m = metrics
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        m = self.m
        decisions = CounterMetricFamily(
            "edgeloop_decisions", "Decisions made, by flag and reason.", labels=["flag", "reason"]
        )
        for (flag, reason), count in sorted(m.decisions.items()):
            decisions.add_metric([flag, reason], count)
        yield decisions
        yield m.decide_latency.family(
            "edgeloop_decide_seconds", "Time to decide one request (all its flags and contexts)."
        )
        errors = CounterMetricFamily(
            "edgeloop_sync_errors",
            "Snapshots refused or sync failures, by reason.",
            labels=["reason"],
        )
        for reason, count in sorted(m.sync_errors.items()):
            errors.add_metric([reason], count)
        yield errors
        yield CounterMetricFamily(
            "edgeloop_snapshots_applied", "Snapshots applied.", value=m.snapshots_applied
        )
        yield GaugeMetricFamily(
            "edgeloop_snapshot_version", "Version being served.", value=m.version
        )
        age = self.clock() - m.issued_at if m.issued_at else 0.0
        yield GaugeMetricFamily(
            "edgeloop_snapshot_age_seconds",
            "Seconds since the served snapshot was issued.",
            value=age,
        )
        yield GaugeMetricFamily(
            "edgeloop_attached_clients", "Attached push clients.", value=m.attached
        )
        yield CounterMetricFamily(
            "edgeloop_signals_accepted", "Signals accepted.", value=m.signals_accepted
        )
        yield CounterMetricFamily(
            "edgeloop_signals_rejected", "Signals rejected by validation.", value=m.signals_rejected
        )
        yield GaugeMetricFamily(
            "edgeloop_live_sessions", "Live attendee sessions.", value=m.sessions
        )
        yield CounterMetricFamily(
            "edgeloop_aggregate_batches_shipped",
            "Batches acknowledged by the control plane.",
            value=m.batches_shipped,
        )
        yield CounterMetricFamily(
            "edgeloop_aggregate_ship_errors", "Failed shipping attempts.", value=m.ship_errors
        )
        yield GaugeMetricFamily(
            "edgeloop_aggregate_outbox_batches", "Batches queued on disk.", value=m.outbox_depth
        )
        yield GaugeMetricFamily(
            "edgeloop_aggregate_outbox_full",
            "1 while the outbox is full.",
            value=int(m.outbox_full),
        )
