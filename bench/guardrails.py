"""Guardrail validation by simulation: the table in docs/statistics.md.

    .venv/bin/python bench/guardrails.py            # the full table (~5 min on 2 cores)
    .venv/bin/python bench/guardrails.py --quick    # fewer runs: a smoke test (~1 min)
    .venv/bin/python bench/guardrails.py --from-json bench/results/guardrails.json  # re-render

Every run is one seeded experiment simulated by bench/guardrail_sim.py (the generative model
and its calibration are stated there and in docs/statistics.md): 50 arriving attendees per
minute, a look every 15 minutes of event time (as the decision loop) over 72 hours, each look
``build_report`` + ``judge`` for the seed's guardrail

    rollback when sentiment.change < -15% and conversion.lift < 3%

in statistical mode (the default) and in literal mode, and a *win* when the always-valid
interval of the conversion lift lies entirely above 0. Scenarios:

- A/A (nothing differs): false rollback, false literal trip, false win, SRM alerts;
- a variant that lowers chat sentiment by 30 %: how often and how fast it is rolled back;
- a variant that lifts conversion by 10 % (6 % → 6.6 %): power at 72 h and time to the win;
- the 30-minute rollback rate's sensitivity to the chat calibration and to N*;
- a logging fault losing 10 % of the treatment's exposures: the sequential SRM pause.

Results: bench/results/guardrails.json (every run's event times) and guardrails.md (the table,
with the command that produced it). Runs are spread over the machine's cores; each run's seed is
fixed, so the numbers do not depend on the number of processes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

import guardrail_sim as sim
from edgeloop.stats import (
    DEFAULT_TUNING,
    power_proportions,
    sample_size_proportions,
)

RESULTS = Path(__file__).resolve().parent / "results"
ALL = ("rollback", "literal_rollback", "win", "loss", "srm", "srm_sequential")


def _one(args: tuple[dict[str, Any], int, tuple[str, ...]]) -> dict[str, Any]:
    changes, seed, track = args
    r = sim.run(sim.scenario(**changes), seed, track=track)
    return {k: v for k, v in asdict(r).items() if k != "extra"}


def runs(
    pool: ProcessPoolExecutor, changes: dict[str, Any], n: int, base: int, track: tuple[str, ...]
) -> list[sim.RunResult]:
    jobs = [(changes, base + i, track) for i in range(n)]
    return [sim.RunResult(**d) for d in pool.map(_one, jobs, chunksize=4)]


def summary(results: list[sim.RunResult], what: str) -> dict[str, Any]:
    times = sim.times(results, what)
    return {
        "rate": sim.rate(results, what),
        "within_30": sim.rate(results, what, within=30),
        "within_60": sim.rate(results, what, within=60),
        "median_min": statistics.median(times) if times else None,
        "p95_min": _quantile(times, 0.95) if times else None,
        "max_min": max(times) if times else None,
        "n": len(results),
        "times_min": times,  # the event minute of each run in which it happened
    }


def _quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, math.ceil(q * len(values)) - 1)]


SENSITIVITY: list[tuple[str, dict[str, Any]]] = [
    ("calibrated (μ 0.35, sd 0.40, λ 5, σ_att 0.08, dwell 5 min)", {}),
    ("looks every 5 min", {"look_every_min": 5.0}),
    ("looks every minute", {"look_every_min": 1.0}),
    ("mean valence 0.30", {"valence_mean": 0.30}),
    ("mean valence 0.25", {"valence_mean": 0.25}),
    ("item sd 0.45", {"valence_item_sd": 0.45}),
    ("4 items per attendee", {"chat_items_mean": 4.0}),
    ("6 items per attendee", {"chat_items_mean": 6.0}),
    ("attendee sd 0.15 (more clustering)", {"valence_attendee_sd": 0.15}),
    ("chat over 15 min (dwell median 15)", {"dwell_median_min": 15.0}),
    ("N* = 2 500", {"tuning": 2500.0}),
    ("N* = 10 000", {"tuning": 10_000.0}),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke test)")
    parser.add_argument("--aa", type=int, default=1000, help="A/A runs (15-minute looks)")
    parser.add_argument("--harm", type=int, default=500, help="−30 %% sentiment runs")
    parser.add_argument("--power", type=int, default=200, help="+10 %% conversion runs")
    parser.add_argument("--sensitivity", type=int, default=200, help="runs per variation")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--from-json", type=Path, help="re-render a saved result")
    args = parser.parse_args(argv)
    console = Console()
    if args.from_json:
        result = json.loads(args.from_json.read_text())
        console.print(render_table(result))
        print(markdown(result))
        return 0
    if args.quick:
        args.aa, args.harm, args.power, args.sensitivity = 200, 200, 40, 100
    started = time.perf_counter()
    out: dict[str, Any] = {}
    with ProcessPoolExecutor(args.jobs) as pool:
        console.print(f"A/A: {args.aa} runs × 288 looks …")
        aa = runs(pool, {}, args.aa, 10_000, ALL)
        out["aa"] = {w: summary(aa, w) for w in ALL}
        aa5_n = max(100, args.aa // 4)
        console.print(f"A/A, looks every 5 minutes: {aa5_n} runs × 864 looks …")
        aa5 = runs(pool, {"look_every_min": 5.0}, aa5_n, 50_000, ("rollback", "win", "loss"))
        out["aa_5min"] = {w: summary(aa5, w) for w in ("rollback", "win", "loss")}
        console.print(f"−30 % sentiment: {args.harm} runs …")
        harm_track = ("rollback", "literal_rollback")
        harm = runs(pool, {"sentiment_change": -0.30, "hours": 4.0}, args.harm, 20_000, harm_track)
        out["harm"] = {w: summary(harm, w) for w in harm_track}
        harm5 = runs(
            pool,
            {"sentiment_change": -0.30, "hours": 4.0, "look_every_min": 5.0},
            args.harm,
            20_000,
            harm_track,
        )
        out["harm_5min"] = {w: summary(harm5, w) for w in harm_track}
        console.print(f"+10 % conversion: {args.power} runs …")
        power = runs(pool, {"conversion_lift": 0.10}, args.power, 30_000, ("win", "rollback"))
        out["power"] = {w: summary(power, w) for w in ("win", "rollback")}
        console.print(f"sensitivity: {len(SENSITIVITY)} variations × {args.sensitivity} runs …")
        out["sensitivity"] = []
        for label, changes in SENSITIVITY:
            found = runs(
                pool,
                {"sentiment_change": -0.30, "hours": 2.0, **changes},
                args.sensitivity,
                60_000,
                ("rollback",),
            )
            out["sensitivity"].append(
                {"label": label, "changes": changes, **summary(found, "rollback")}
            )
        srm_n = max(20, args.harm // 10)
        console.print(f"SRM, 10 % of treatment exposures lost: {srm_n} runs …")
        srm = runs(pool, {"lost_share": 0.10, "hours": 12.0}, srm_n, 40_000, ("srm_sequential",))
        out["srm_loss"] = summary(srm, "srm_sequential")
    s = sim.Scenario()
    n_arm = s.arrivals_per_min * s.hours * 60 / 2
    out["fixed_horizon"] = {
        "power_at_72h": power_proportions(s.base_conversion, 0.10, n_arm),
        "n_per_arm_80": sample_size_proportions(s.base_conversion, 0.10),
        "hours_for_80": sample_size_proportions(s.base_conversion, 0.10)
        * 2
        / s.arrivals_per_min
        / 60,
    }
    out["scenario"] = {k: v for k, v in asdict(s).items()}
    out["rule"] = sim.DEFAULT_RULE
    out["tuning"] = DEFAULT_TUNING
    out["command"] = "python bench/guardrails.py" + (" --quick" if args.quick else "")
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["when"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    out["machine"] = {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "guardrails.json").write_text(json.dumps(out, indent=1) + "\n")
    (RESULTS / "guardrails.md").write_text(markdown(out))
    console.print(render_table(out))
    aa_ok = out["aa"]["rollback"]["rate"] <= 0.01 and out["aa"]["win"]["rate"] <= 0.05
    harm_ok = out["harm"]["rollback"]["within_30"] >= 0.95
    console.print(
        f"acceptance: A/A false rollback ≤ 1 % and false win ≤ 5 %: {_yes(aa_ok)}; "
        f"−30 % sentiment rolled back within 30 min in ≥ 95 % of runs: {_yes(harm_ok)}"
    )
    return 0


def _yes(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _min(x: float | None) -> str:
    return "–" if x is None else f"{x:.0f}"


def rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    aa, aa5, harm, harm5 = r["aa"], r["aa_5min"], r["harm"], r["harm_5min"]
    power, fixed = r["power"], r["fixed_horizon"]
    n_aa = aa["rollback"]["n"]
    return [
        (f"A/A, {n_aa} runs: false rollback (statistical)", _pct(aa["rollback"]["rate"]), "≤ 1 %"),
        (
            "A/A: false trip of the same rule, literal mode",
            _pct(aa["literal_rollback"]["rate"]),
            "",
        ),
        ("A/A: false win (conversion lift > 0 established)", _pct(aa["win"]["rate"]), "≤ 5 %"),
        ("A/A: false loss (conversion lift < 0 established)", _pct(aa["loss"]["rate"]), ""),
        ("A/A: SRM alert, fixed-sample χ² p < 0.001", _pct(aa["srm"]["rate"]), ""),
        ("A/A: SRM auto-pause, sequential p < 0.001", _pct(aa["srm_sequential"]["rate"]), ""),
        (
            f"A/A, looks every 5 min ({aa5['rollback']['n']} runs): false rollback / win",
            f"{_pct(aa5['rollback']['rate'])} / {_pct(aa5['win']['rate'])}",
            "",
        ),
        (
            f"−30 % sentiment, {harm['rollback']['n']} runs: rolled back within 30 min",
            _pct(harm["rollback"]["within_30"]),
            "≥ 95 %",
        ),
        (
            "… within 60 min / ever (4 h)",
            f"{_pct(harm['rollback']['within_60'])} / {_pct(harm['rollback']['rate'])}",
            "",
        ),
        (
            "… event minutes to rollback: median / p95 / max",
            f"{_min(harm['rollback']['median_min'])} / {_min(harm['rollback']['p95_min'])} / "
            f"{_min(harm['rollback']['max_min'])}",
            "",
        ),
        (
            "… with looks every 5 min: within 30 min; median / p95 minutes",
            f"{_pct(harm5['rollback']['within_30'])}; {_min(harm5['rollback']['median_min'])} / "
            f"{_min(harm5['rollback']['p95_min'])}",
            "",
        ),
        (
            "… literal mode: within 30 min / ever (4 h)",
            f"{_pct(harm['literal_rollback']['within_30'])} / "
            f"{_pct(harm['literal_rollback']['rate'])}",
            "",
        ),
        (
            f"+10 % conversion, {power['win']['n']} runs: power at 72 h (always-valid)",
            _pct(power["win"]["rate"]),
            "",
        ),
        (
            "… hours to the win: median / p95",
            f"{_hours(power['win']['median_min'])} / {_hours(power['win']['p95_min'])}",
            "",
        ),
        (
            "… fixed-horizon z test at 72 h (for reference; not peeking-safe)",
            _pct(fixed["power_at_72h"]),
            "",
        ),
        (
            "… fixed-horizon n per arm for 80 % power (Fleiss)",
            f"{fixed['n_per_arm_80']:,} ({fixed['hours_for_80']:.1f} h)",
            "",
        ),
        (
            "+10 % conversion: a rollback (false)",
            _pct(power["rollback"]["rate"]),
            "",
        ),
        (
            f"10 % of treatment exposures lost ({r['srm_loss']['n']} runs): SRM pause, median min",
            f"{_pct(r['srm_loss']['rate'])}, {_min(r['srm_loss']['median_min'])}",
            "",
        ),
    ]


def _hours(minutes: float | None) -> str:
    return "–" if minutes is None else f"{minutes / 60:.1f}"


def render_table(r: dict[str, Any]) -> Table:
    table = Table(title=f"Guardrail validation ({r['command']})")
    table.add_column("scenario / measure")
    table.add_column("result", justify="right")
    table.add_column("acceptance", justify="right")
    for row in rows(r):
        table.add_row(*row)
    sens = Table(title="−30 % sentiment: rolled back within 30 min, by calibration")
    sens.add_column("variation")
    sens.add_column("within 30 min", justify="right")
    sens.add_column("median min", justify="right")
    for s in r["sensitivity"]:
        sens.add_row(s["label"], _pct(s["within_30"]), _min(s["median_min"]))
    outer = Table.grid()
    outer.add_row(table)
    outer.add_row(sens)
    return outer


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        "```",
        f".venv/bin/{r['command']}",
        "```",
        "",
        f"Python {m['python']}, {m['cpu_count']} cores; {r['when']}; {r['seconds']:.0f} s. "
        f"Rule: `{r['rule']}`; α = 0.05, N* = {r['tuning']:,.0f}; 50 arrivals/min, looks every "
        "15 min over 72 h unless stated.",
        "",
        "| scenario / measure | result | acceptance |",
        "|---|---:|---:|",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows(r)]
    lines += [
        "",
        f"Sensitivity of the 30-minute rollback rate (−30 % sentiment, "
        f"{r['sensitivity'][0]['n']} runs each, 15-minute looks unless stated):",
        "",
        "| variation | rolled back within 30 min | median minutes |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {s['label']} | {_pct(s['within_30'])} | {_min(s['median_min'])} |"
        for s in r["sensitivity"]
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
