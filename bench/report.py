"""Benchmark: the full report for one experiment with 1 000 000 exposures (acceptance: ≤ 1 s).

    .venv/bin/python bench/report.py            # 1 000 000 exposures, 5 timed repeats
    .venv/bin/python bench/report.py --quick    # 100 000 exposures, 3 repeats

What is timed is ``edgeloop.stats.build_report`` — everything the decision loop and the
report API compute for an experiment — over:

- **cells**: per variant × 5-minute exposure bucket over a 72-hour event (2 arms × 864
  buckets), with every cell field (exposures, converters, revenue, chat sums and the
  per-attendee chat cross-products, baseline sums), their totals adding up to 1 000 000
  exposures;
- **unit records** at a sampling rate of 1.0 (every attendee): 1 000 000 exposure records,
  a conversion record for each converter (6 %), and return records (30 % of attendees come
  back 1–3 times over the next 100 days), so retention on day 7/30/90 is computed from
  pseudonymous records for every attendee; ``now`` is late enough for all of them to have
  matured.

Generating the inputs is not timed (in production they come from the store). The report is
checked against the same report built with the per-record reference implementation of
retention (``retention_by_variant_reference``) on the same inputs, so the fast path is the
same computation. Results: bench/results/report.json and bench/results/report.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from edgeloop.model.aggregates import CELL_FIELDS, UnitRecord
from edgeloop.stats import build_report
from edgeloop.stats.report import DAY_S, retention_by_variant, retention_by_variant_reference

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
LIMIT_S = 1.0
BUCKET_S = 300.0
EVENT_S = 72 * 3600.0
START = 1_796_148_000.0


def inputs(exposures: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    arms = np.where(rng.random(exposures) < 0.5, "control", "treatment")
    at = START + np.sort(rng.uniform(0, EVENT_S, exposures))
    converted = rng.random(exposures) < 0.06
    value = rng.lognormal(2.3, 0.6, exposures) * converted
    names = [f"{i:032x}" for i in rng.permutation(exposures).tolist()]  # like HMAC pseudonyms
    # cells: per arm × 5-minute bucket
    bucket = (at - START) // BUCKET_S
    cells = []
    chat_k = rng.poisson(5, exposures)
    chat_s = rng.normal(0.35 * chat_k, 0.4 * np.sqrt(chat_k))
    has_pre = rng.random(exposures) < 0.4
    pre = np.where(has_pre, rng.normal(0.35, 0.25, exposures), 0.0)
    per_unit = {
        "exposures": np.ones(exposures),
        "converters": converted.astype(float),
        "revenue": value,
        "revenue_sq": value**2,
        "chat_n": chat_k.astype(float),
        "chat_sum": chat_s,
        "chat_sq": chat_k * 0.2825 + 0.0,  # Σv² ≈ k (μ² + σ²): the value is not used for tests
        "chat_k2": chat_k.astype(float) ** 2,
        "chat_s2": chat_s**2,
        "chat_ks": chat_k * chat_s,
        "pre_n": has_pre.astype(float),
        "pre_sum": pre,
        "pre_sq": pre**2,
        "pre_conv": pre * converted,
    }
    n_buckets = int(EVENT_S // BUCKET_S)
    for arm in ("control", "treatment"):
        mine = arms == arm
        sums = {
            name: np.bincount(bucket[mine].astype(np.int64), v[mine], minlength=n_buckets)
            for name, v in per_unit.items()
            if name in CELL_FIELDS
        }
        for b in range(n_buckets):
            cells.append((arm, START + b * BUCKET_S, {name: float(sums[name][b]) for name in sums}))
    # records: exposures, conversions, returns
    records: list[UnitRecord] = []
    arm_l, at_l = arms.tolist(), at.tolist()
    for i in range(exposures):
        records.append(UnitRecord("exp", names[i], "exposure", at_l[i], arm_l[i]))
    for i in np.flatnonzero(converted).tolist():
        records.append(
            UnitRecord("exp", names[i], "conversion", at_l[i] + 60, arm_l[i], float(value[i]))
        )
    returners = np.flatnonzero(rng.random(exposures) < 0.3)
    visits = rng.integers(1, 4, returners.size)
    who = np.repeat(returners, visits)
    back = at[who] + rng.uniform(0.5, 100, who.size) * DAY_S
    for i, t in zip(who.tolist(), back.tolist(), strict=True):
        records.append(UnitRecord("exp", names[i], "return", t))
    now = START + EVENT_S + 95 * DAY_S  # every attendee matured for day 90
    return cells, records, now


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exposures", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="100 000 exposures, 3 repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.exposures, args.repeats = 100_000, 3
    console = Console()
    t0 = time.perf_counter()
    cells, records, now = inputs(args.exposures)
    console.print(
        f"inputs: {len(cells):,} cells, {len(records):,} records "
        f"({time.perf_counter() - t0:.1f} s to generate, not timed)"
    )
    weights = {"control": 1.0, "treatment": 1.0}
    timings = []
    report = None
    for _ in range(args.repeats):
        start = time.perf_counter()
        report = build_report("exp", "control", weights, cells, records, now)
        timings.append(time.perf_counter() - start)
    assert report is not None
    start = time.perf_counter()
    retention_fast = retention_by_variant(records, now)
    fast_s = time.perf_counter() - start
    start = time.perf_counter()
    reference = retention_by_variant_reference(records, now)
    reference_s = time.perf_counter() - start
    same = retention_fast == reference
    total = sum(v.attendees for v in report.variants.values())
    median = statistics.median(timings)
    table = Table(title=f"build_report, {total:,} exposures, {len(records):,} records")
    table.add_column("")
    table.add_column("seconds", justify="right")
    table.add_row("full report: median", f"{median:.3f}")
    table.add_row("full report: min / max", f"{min(timings):.3f} / {max(timings):.3f}")
    table.add_row("of which retention (vectorised)", f"{fast_s:.3f}")
    table.add_row("retention, per-record reference", f"{reference_s:.3f}")
    console.print(table)
    verdict = "met" if median <= LIMIT_S else "MISSED"
    console.print(
        f"acceptance: full report ≤ {LIMIT_S:.0f} s → median {median:.3f} s: {verdict}; "
        f"vectorised retention equals the reference: {same}"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "load_1m": load,
            "processor": platform.processor() or platform.machine(),
        },
        "exposures": total,
        "cells": len(cells),
        "records": len(records),
        "timings_s": timings,
        "median_s": median,
        "retention_vectorised_s": fast_s,
        "retention_reference_s": reference_s,
        "retention_equal": same,
        "limit_s": LIMIT_S,
        "met": median <= LIMIT_S,
        "command": "python bench/report.py" + (" --quick" if args.quick else ""),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "report.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "report.md").write_text(markdown(result))
    return 0 if same else 1


def markdown(r: dict) -> str:
    return (
        "### Full report for one experiment (bench/report.py)\n\n"
        f"```\n.venv/bin/{r['command']}\n```\n\n"
        f"Python {r['machine']['python']}, {r['machine']['cpu_count']} cores, "
        f"1-minute load {r['machine']['load_1m']:.1f}; {r['when']}. "
        f"`build_report` over {r['cells']:,} cells (2 arms × 5-minute buckets over 72 h) and "
        f"{r['records']:,} pseudonymous records (sampling rate 1.0: {r['exposures']:,} "
        "exposures, conversions, returns over 100 days), retention on day 7/30/90 included.\n\n"
        "| | seconds |\n|---|---:|\n"
        f"| full report, median of {len(r['timings_s'])} | {r['median_s']:.3f} |\n"
        f"| full report, min / max | {min(r['timings_s']):.3f} / {max(r['timings_s']):.3f} |\n"
        f"| retention alone (vectorised) | {r['retention_vectorised_s']:.3f} |\n"
        f"| retention, per-record reference implementation | "
        f"{r['retention_reference_s']:.3f} |\n\n"
        f"Check: full report ≤ {r['limit_s']:.0f} s: **{r['median_s']:.3f} s, "
        f"{'met' if r['met'] else 'missed'}**; vectorised retention equals the reference: "
        f"{r['retention_equal']}.\n"
    )


if __name__ == "__main__":
    sys.exit(main())
