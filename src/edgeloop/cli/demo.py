"""`edgeloop demo`: a simulated micro-event on the embedded platform, its report and charts."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

out = Console()
err = Console(stderr=True)


def _event_time(seconds: float) -> str:
    """Event time since the start: 0h41m, 27h05m, day 12."""
    minutes = round(seconds / 60)
    hours, mins = divmod(minutes, 60)
    return f"{hours}h{mins:02d}m" if hours < 96 else f"day {hours // 24}"


def _pct(x: float | None, signed: bool = False) -> str:
    import math

    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:+.0%}" if signed else f"{x:.1%}"


def _interval(lo: float, hi: float, signed: bool = True) -> str:
    return f"[{_pct(lo, signed)}, {_pct(hi, signed)}]"


def _span(lo: float, hi: float, signed: bool = True) -> str:
    """An interval in percent, compactly: ``-40…+5`` (relative) or ``7.5…10.9`` (a rate)."""
    import math

    def one(x: float) -> str:
        if not math.isfinite(x):
            return "∞" if x > 0 else "-∞"
        return f"{x * 100:+.0f}" if signed else f"{x * 100:.1f}"

    return f"{one(lo)}…{one(hi)}"


def _compared(c: Any) -> str:
    """A comparison's estimate over its always-valid interval."""
    if c is None:
        return "–"
    return f"{_pct(c.estimate, True)}\n{_span(c.sequence.lower, c.sequence.upper)}"


def _retained(r: Any) -> str:
    """Day-N retention over the number of matured attendees it is computed on."""
    if r is None or not r.matured:
        return "–"
    return f"{_pct(r.on_rate)}\nn={r.matured:,}"


class MicroEventDemo:
    """The embedded platform in one process, driven by the simulator in event time."""

    SHIP_EVERY_S = 5 * 60.0
    TICK_EVERY_S = 15 * 60.0
    PURGE_EVERY_S = 3600.0
    AFTER_STEP_S = 3600.0  # after the event: hourly steps, ...
    AFTER_HOUSEKEEPING_S = 6 * 3600.0  # ... shipping and purging every 6 hours,
    AFTER_TICK_S = 24 * 3600.0  # ... and one guardrail look per event day

    def __init__(
        self,
        file: Path,
        flag: str,
        workdir: Path,
        hours: float,
        arrivals: float,
        retention_days: int,
        seed: int,
        sample_rate: float,
        start: float,
    ) -> None:
        import asyncio

        from edgeloop.control import Principal, Role
        from edgeloop.sim import InProcessTarget, MicroEventSimulator, seed_matrix_event

        from . import services

        self.flag = flag
        self.file = file
        self.arrivals = arrivals
        self.spec = seed_matrix_event(
            flag=flag, arrivals_per_min=arrivals, hours=hours, seed=seed, start=start
        )
        self.after_s = retention_days * 86400.0
        self.now = self.spec.start
        self.aio = asyncio.new_event_loop()
        self.plane = services.open_control(workdir)
        admin = Principal("demo", "demo", Role.ADMIN)
        self.plane.replace_document(
            admin, file.read_text(encoding="utf-8"), f"edgeloop demo: {file}", self.now - 60
        )
        self.sample_rate = sample_rate
        self.node = services.open_edge(
            workdir, self.plane.signer.public_key, lambda: self.now, sample_rate=sample_rate
        )
        self._sync()
        self.sink, self.keys = services.local_telemetry(self.plane, lambda: self.now)
        self.loop = services.DecisionLoop(self.plane)
        self.sim = MicroEventSimulator(self.spec, InProcessTarget(self.node))
        self.experiment = self._flag().experiment.key  # type: ignore[union-attr]
        self.rollbacks: list[tuple[float, Any]] = []  # (event time, LoopAction)
        self.ticks = 0

    # wiring ------------------------------------------------------------------------------

    def _flag(self) -> Any:
        from edgeloop.model import load_flags

        _, doc = self.plane.document()
        return load_flags(json.dumps(doc), "live").flags[self.flag]

    def _sync(self) -> None:
        """What the edge's snapshot stream does, in-process: apply every newer snapshot."""
        from edgeloop.sync import SignedSnapshot

        for s in self.plane.store.snapshots_after(self.node.version):
            self.node.apply(SignedSnapshot(s.version, s.payload, s.signature))

    def _ship(self, now: float) -> None:
        self.aio.run_until_complete(self.node.ship(self.sink, self.keys, now))

    def _purge(self, now: float) -> None:
        self.node.purge(now)

    # playing -------------------------------------------------------------------------------

    def play(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        spec, sim = self.spec, self.sim
        out.print(
            f"[bold]edgeloop demo[/bold]: a {spec.duration_s / 3600:g}-hour micro-event, "
            f"{self.arrivals:g} arrivals per event minute on average, in event time on the "
            f"embedded platform (flags: {self.file})",
            highlight=False,
        )
        for name, effect in spec.effects.items():
            out.print(
                f"  true effect of {name}: converts {effect.conversion_15m:.1%} in 15 min, "
                f"chat valence {effect.valence_shift:+.0%}, D7 {effect.retention.on_day(7):.0%}"
                if effect.retention
                else f"  true effect of {name}: converts {effect.conversion_15m:.1%}",
                highlight=False,
            )
        out.print("  (the platform knows none of this: it sees only the attendees' signals)\n")

        def tick(now: float) -> None:
            self.ticks += 1
            taken = self.loop.tick(now)
            if taken:
                self._sync()  # the rollback snapshot reaches the edge
                for action in taken:
                    self.rollbacks.append((now, action))
                    progress.console.print(self._trip_line(action), highlight=False)

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=out, transient=False) as progress:
            event = progress.add_task("event   ", total=spec.duration_s, info="")
            sim.every(self.SHIP_EVERY_S, self._ship)
            sim.every(self.TICK_EVERY_S, tick)
            sim.every(self.PURGE_EVERY_S, self._purge)

            def on_event_step(now: float) -> None:
                self.now = now
                progress.update(
                    event,
                    completed=now - spec.start,
                    info=f"{_event_time(now - spec.start)}  {len(sim.attendees):,} attendees",
                )

            # The clock the edge reads must be the step's end before the step's signals land.
            sim.run(spec.end, on_step=on_event_step)
            if self.after_s > 0:
                sim.clear_hooks()
                sim.every(self.AFTER_HOUSEKEEPING_S, self._ship, first=spec.end)
                sim.every(self.AFTER_TICK_S, tick, first=spec.end + self.AFTER_TICK_S)
                sim.every(self.AFTER_HOUSEKEEPING_S, self._purge, first=spec.end)
                after = progress.add_task("returns ", total=self.after_s, info="")

                def on_after_step(now: float) -> None:
                    self.now = now
                    progress.update(
                        after,
                        completed=now - spec.end,
                        info=f"day {int((now - spec.start) // 86400)}  {sim.returns:,} returns",
                    )

                sim.run(spec.end + self.after_s, step_s=self.AFTER_STEP_S, on_step=on_after_step)
        self._ship(self.now)  # the last deltas

    def _trip_line(self, action: Any) -> str:
        trip = next(
            (
                t
                for t in reversed(self.plane.store.trips(self.experiment))
                if t.variant == action.variant and t.rule == action.rule
            ),
            None,
        )
        at = _event_time(action.at - self.spec.start)
        verb = {"rollback": "rolled back", "pause": "paused", "alert": "alerted"}.get(
            action.action, action.action
        )
        who = "the experiment" if action.variant == "*" else f"variant {action.variant}"
        parts = []
        evidence = (trip.evidence or {}).get("evidence", []) if trip is not None else []
        for e in evidence:
            if e.get("estimate") is None:
                continue
            name = str(e["comparison"]).split(" ")[0]
            parts.append(
                f"{name} = {_pct(e['estimate'], True)} "
                f"{_interval(e.get('lower'), e.get('upper'))} ({e['status']})"
            )
        detail = "; ".join(parts) or action.rule
        return (
            f"[bold red]guardrail[/bold red] {who} {verb} at event time {at}: {detail} "
            f"→ snapshot v{action.version} applied at the edge"
        )

    # reporting -----------------------------------------------------------------------------

    def report(self, out_dir: Path, elapsed: float) -> None:
        from edgeloop.control.reports import report_json

        flag = self._flag()
        report = self.loop.report_for(flag, self.now)
        trips = {t.variant: t for t in self.plane.store.trips(self.experiment)}
        summary = self.sim.summary()
        out.print(self._table(flag, report, trips))
        srm = report.srm
        out.print(
            f"SRM: χ² = {srm.chi2:.2f}, p = {srm.p_value:.3f} "
            f"({'[red]mismatch[/red]' if srm.mismatch else 'arms sized as configured'}); "
            "intervals are always valid (95 %, valid at every look of the loop)"
        )
        for assigned, at in summary.first_redirect.items():
            served = sorted(s for (a, s), n in summary.assigned_served.items() if a == assigned)
            moved = sum(n for (a, s), n in summary.assigned_served.items() if a == assigned != s)
            out.print(
                f"after the rollback: {moved:,} attendees assigned {assigned} were served "
                f"{'/'.join(s for s in served if s != assigned)} (first at event time "
                f"{_event_time(at - self.spec.start)}); they stay counted under {assigned} "
                "(intention to treat)"
            )
        out_dir.mkdir(parents=True, exist_ok=True)
        charts = self._charts(out_dir, flag)
        payload = {
            "report": report_json(report),
            "trips": [msgspec.to_builtins(t) for t in self.plane.store.trips(self.experiment)],
            "simulation": {
                "attendees": summary.attendees,
                "signals_sent": summary.signals_sent,
                "signals_rejected": summary.signals_rejected,
                "decisions": summary.decisions,
                "exposed": summary.exposed,
                "by_served_variant": {
                    v: msgspec.to_builtins(o) for v, o in summary.by_served.items()
                },
                "assigned_served": {
                    f"{a}->{s}": n for (a, s), n in summary.assigned_served.items()
                },
                "true_effects": {v: msgspec.to_builtins(e) for v, e in self.spec.effects.items()},
            },
        }
        (out_dir / "report.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
        out.print(
            f"{summary.attendees:,} attendees, {summary.signals_sent:,} signals, "
            f"{summary.decisions:,} decisions, {self.ticks} guardrail looks; "
            f"{self._span()} of event time in {elapsed:.0f} s of wall time"
        )
        out.print(
            "written: " + ", ".join(str(p) for p in [*charts, out_dir / "report.json"]),
            highlight=False,
        )

    def _span(self) -> str:
        seconds = self.now - self.spec.start
        return f"{seconds / 86400:.0f} days" if seconds >= 4 * 86400 else _event_time(seconds)

    def _table(self, flag: Any, report: Any, trips: dict[str, Any]) -> Table:
        """One row per variant; each estimate over its always-valid 95 % interval."""
        from rich import box

        from edgeloop.stats import Difference, confidence_sequence

        exp = flag.experiment
        weights = {n: w for rule in flag.rules if rule.split for n, w in rule.split}
        total_w = sum(weights.values()) or 1
        total_n = sum(v.attendees for v in report.variants.values()) or 1
        channels = ", ".join(f"{v} {c}" for v, c in exp.channels.items())
        split = "/".join(f"{weights[v] / total_w:.0%}" for v in weights)
        table = Table(
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            title=f"{exp.key} at event time {_event_time(report.at - self.spec.start)}",
            caption=f"control {report.control}; target split {split}; channels: {channels}. "
            "Under each estimate: its always-valid 95 % interval (in %). Retention: matured "
            f"attendees in the {self.sample_rate:.0%} privacy sample.",
        )
        for col in (
            "",
            "attendees\nshare",
            "conv.\n15 min",
            f"lift\nvs {report.control}",
            "D7",
            "D30",
            f"sentiment\nvs {report.control}",
            "decision",
        ):
            table.add_column(col, justify="right" if col else "left", no_wrap=True)
        for name, v in report.variants.items():
            p, n = v.conversion.mean, v.attendees
            conv = _pct(p)
            if n >= 2 and 0 < p < 1:
                seq = confidence_sequence(Difference(p, (p * (1 - p) / n) ** 0.5), n)
                conv += "\n" + _span(seq.lower, seq.upper, signed=False)
            lift = report.comparison(name, "conversion", "lift")
            sent = report.comparison(name, "sentiment", "change")
            trip = trips.get(name)
            if name == report.control:
                decision = "control"
            elif trip is not None:
                decision = f"[red]{trip.action}[/red]\n{_event_time(trip.at - self.spec.start)}"
            else:
                decision = "kept"

            table.add_row(
                name,
                f"{n:,}\n{n / total_n:.1%}",
                conv,
                "–" if name == report.control else _compared(lift),
                _retained(v.retention.get(7)),
                _retained(v.retention.get(30)),
                "–" if name == report.control else _compared(sent),
                decision,
                end_section=True,
            )
        return table

    def _charts(self, out_dir: Path, flag: Any) -> list[Path]:
        """Conversion and sentiment over event time per variant (as the loop saw them, from
        the aggregates by exposure time), with the guardrail's threshold and the rollback."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
        from matplotlib.ticker import PercentFormatter

        from edgeloop.stats import build_report

        exp = flag.experiment
        weights = {n: float(w) for rule in flag.rules if rule.split for n, w in rule.split}
        control = flag.control_variant
        start, end = self.spec.start, self.spec.end
        cells = sorted(self.plane.store.aggregate_cells(exp.key), key=lambda c: c[1])
        looks = np.arange(start + self.TICK_EVERY_S, end + 1, self.TICK_EVERY_S)
        totals: dict[str, dict[str, float]] = {v: {} for v in weights}
        series: dict[str, dict[str, list[float]]] = {
            v: {k: [] for k in ("conv", "lift", "conv_lo", "conv_hi", "sent", "sent_lo", "sent_hi")}
            for v in weights
        }
        i = 0
        for t in looks:
            while i < len(cells) and cells[i][1] < t:
                variant, _bucket, stats = cells[i]
                into = totals.setdefault(variant, {})
                for key, value in stats.items():
                    into[key] = into.get(key, 0.0) + value
                i += 1
            rep = build_report(
                exp.key, control, weights, [(v, 0.0, s) for v, s in totals.items()], [], t
            )
            for v, s in series.items():
                stats_v = rep.variants[v]
                s["conv"].append(stats_v.conversion.mean)
                c = rep.comparison(v, "sentiment", "change")
                s["sent"].append(c.estimate if c else np.nan)
                s["sent_lo"].append(c.sequence.lower if c else np.nan)
                s["sent_hi"].append(c.sequence.upper if c else np.nan)
                c = rep.comparison(v, "conversion", "lift")
                s["lift"].append(c.estimate if c else np.nan)
                s["conv_lo"].append(c.sequence.lower if c else np.nan)
                s["conv_hi"].append(c.sequence.upper if c else np.nan)
        hours = (looks - start) / 3600.0
        rollbacks = [(t, a) for t, a in self.rollbacks if a.action == "rollback"]
        colours = {"A": "#4c72b0", "B": "#55a868", "C": "#c44e52"}
        written = []

        def mark(ax: Any) -> None:
            for t, a in rollbacks:
                ax.axvline((t - start) / 3600.0, color="black", linestyle=":", linewidth=1)
                ax.annotate(
                    f" {a.variant} rolled back ({_event_time(t - start)})",
                    ((t - start) / 3600.0, 1.0),
                    xycoords=("data", "axes fraction"),
                    va="top",
                    fontsize=8,
                )

        horizon = min(
            hours[-1], max(6.0, 4 * max(((t - start) / 3600 for t, _ in rollbacks), default=3))
        )
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8))
        for v in weights:
            hourly: dict[int, list[float]] = {}
            for variant, bucket, stats in cells:
                if variant == v and stats.get("chat_n"):
                    h = int((bucket - start) // 3600)
                    acc = hourly.setdefault(h, [0.0, 0.0])
                    acc[0] += stats["chat_sum"]
                    acc[1] += stats["chat_n"]
            last = int(self.spec.duration_s // 3600)
            xs = [x for x in sorted(hourly) if x < last and hourly[x][1] >= 30]
            top.plot(
                [x + 0.5 for x in xs],
                [hourly[x][0] / hourly[x][1] for x in xs],
                label=f"{v} ({'control' if v == control else exp.channels.get(v, '')})",
                color=colours.get(v),
            )
        top.set_title("Chat sentiment index after exposure, by hour of exposure (assigned variant)")
        top.set_xlabel("event hours")
        top.set_ylabel("mean valence")
        top.legend(loc="lower right", fontsize=8)
        mark(top)
        keep = hours <= horizon
        for v in weights:
            if v == control:
                continue
            s = series[v]
            top_c = colours.get(v)
            bottom.plot(
                hours[keep], np.array(s["sent"])[keep], color=top_c, label=f"{v} vs {control}"
            )
            bottom.fill_between(
                hours[keep],
                np.array(s["sent_lo"])[keep],
                np.array(s["sent_hi"])[keep],
                color=top_c,
                alpha=0.2,
            )
        bottom.axhline(-0.15, color="grey", linestyle="--", linewidth=1)
        bottom.annotate("rollback threshold −15 %", (0, -0.15), fontsize=8, va="bottom")
        bottom.set_ylim(-0.8, 0.8)
        bottom.set_title(
            "sentiment.change vs control of attendees exposed up to each look (always-valid 95 %)"
        )
        bottom.set_xlabel("event hours")
        bottom.yaxis.set_major_formatter(PercentFormatter(1.0))
        bottom.legend(loc="lower right", fontsize=8)
        mark(bottom)
        fig.tight_layout()
        path = out_dir / "sentiment.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

        fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8))
        for v in weights:
            s = series[v]
            top.plot(hours, s["conv"], color=colours.get(v), label=v)
        top.set_title("15-minute conversion of exposed attendees (cumulative, by exposure time)")
        top.set_xlabel("event hours")
        top.yaxis.set_major_formatter(PercentFormatter(1.0))
        top.legend(loc="lower right", fontsize=8)
        mark(top)
        for v in weights:
            if v == control:
                continue
            s = series[v]
            bottom.plot(hours, s["lift"], color=colours.get(v))
            bottom.fill_between(
                hours,
                s["conv_lo"],
                s["conv_hi"],
                color=colours.get(v),
                alpha=0.2,
                label=f"{v} vs {control}",
            )
        bottom.axhline(0.03, color="grey", linestyle="--", linewidth=1)
        bottom.axhline(0.0, color="black", linewidth=0.5)
        bottom.set_ylim(-1, 1)
        bottom.set_title(
            "conversion.lift vs control of attendees exposed up to each look (always-valid 95 %)"
        )
        bottom.set_xlabel("event hours")
        bottom.yaxis.set_major_formatter(PercentFormatter(1.0))
        bottom.legend(loc="lower right", fontsize=8)
        mark(bottom)
        fig.tight_layout()
        path = out_dir / "conversion.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
        return written

    # serving -------------------------------------------------------------------------------

    def serve(self, host: str, control_port: int, edge_port: int) -> None:
        from . import services

        self.node.clock = time.time  # from now on: wall-clock time, like `edgeloop up`
        plane, node = self.plane, self.node
        token = plane.bootstrap_admin(time.time())
        loop = services.DecisionLoop(plane, notify=services.webhook_notifier(plane))
        source = services.local_source(plane)
        sink, keys = services.local_telemetry(plane)

        def ready() -> None:
            out.print(f"\ncontrol plane  http://{host}:{control_port}   (API docs: /docs)")
            out.print(f"edge           http://{host}:{edge_port}   (decide: POST /v1/decide)")
            out.print(
                f"report         http://{host}:{control_port}/v1/experiments/"
                f"{self.experiment}/report"
            )
            if token:
                out.print(f"admin token    {token}")
            out.print("the platform keeps running with the demo's state; Ctrl-C stops it")

        services.run(
            services.serve_all(
                [
                    services.Service(
                        services.create_control_app(plane, loop=loop), host, control_port
                    ),
                    services.Service(services.create_edge_app(node), host, edge_port),
                ],
                background=[
                    lambda: node.run_sync(source),
                    lambda: services.telemetry_loop(node, sink, keys),
                    lambda: services.decision_loop(loop, time.time, 30.0),
                ],
                on_ready=ready,
            )
        )

    def close(self) -> None:
        from edgeloop.edge.telemetry import Outbox, RawSignalStore

        self.aio.close()
        for part in (self.node.raw_signals, self.node.outbox):
            if isinstance(part, RawSignalStore | Outbox):
                part.close()
        self.plane.store.close()
