"""Validation by simulation, sized for CI (about 40 s); bench/guardrails.py runs the large version
whose table is in docs/statistics.md.

Each run simulates one 72-hour experiment at 50 arriving attendees per minute
(bench/guardrail_sim.py states the generative model) and looks every 15 minutes of event time
exactly as the decision loop does: ``build_report`` over the cumulative cells, ``judge`` for
the seed's guardrail in statistical and literal mode, and the always-valid interval of the
conversion lift for a win. The seeds are fixed, so every number here is deterministic; the
assertions hold with room to spare (see the comments) so that a harmless change to the
simulation does not flip them.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import guardrail_sim as sim
from edgeloop.model.aggregates import CELL_FIELDS

AA_RUNS = 200
HARM_RUNS = 200
POWER_RUNS = 20


def test_the_generator_produces_the_stated_model() -> None:
    s = sim.scenario(hours=6.0)
    sums = sim.simulate(s, np.random.default_rng(0))
    col = {name: i for i, name in enumerate(CELL_FIELDS)}
    for arm in (sim.CONTROL, sim.TREATMENT):
        x = sums[arm]
        assert x.shape == (s.looks + 1, len(CELL_FIELDS))
        assert np.all(np.diff(x[:, col["exposures"]]) >= 0)  # cumulative
        last = x[-1]
        n = last[col["exposures"]]
        assert n == pytest.approx(50 * 60 * 6 / 2, rel=0.03)
        assert last[col["converters"]] / n == pytest.approx(0.06, abs=0.006)
        assert last[col["chat_n"]] / n == pytest.approx(5.0, rel=0.03)
        assert last[col["chat_sum"]] / last[col["chat_n"]] == pytest.approx(0.35, abs=0.01)
        assert last[col["chat_k2"]] / n == pytest.approx(5 + 25, rel=0.05)  # E[k²] = λ + λ²
        assert last[col["pre_n"]] / n == pytest.approx(0.4, abs=0.02)
    harm = sim.simulate(sim.scenario(hours=6.0, sentiment_change=-0.3), np.random.default_rng(0))
    t = harm[sim.TREATMENT][-1]
    assert t[col["chat_sum"]] / t[col["chat_n"]] == pytest.approx(0.35 * 0.7, abs=0.01)


def test_a_a_false_rollback_and_false_win_under_continuous_monitoring() -> None:
    """200 A/A runs, 288 looks each. Acceptance: false rollback ≤ 1 % and false win ≤ 5 % in
    statistical mode. (bench: 0 % and ~2 % over 1 000 runs; the guarantee is α = 5 % for a
    win, and far below it for a rollback whose threshold is a 15 % drop.)"""
    results = [
        sim.run(sim.scenario(), 10_000 + i, track=("rollback", "literal_rollback", "win"))
        for i in range(AA_RUNS)
    ]
    rollback = sim.rate(results, "rollback")
    win = sim.rate(results, "win")
    literal = sim.rate(results, "literal_rollback")
    print(
        f"\nA/A, {AA_RUNS} runs × 288 looks: false rollback {rollback:.1%} (statistical), "
        f"{literal:.1%} (literal); false win {win:.1%}"
    )
    assert rollback <= 0.01
    assert win <= 0.05


def test_a_harmful_variant_is_rolled_back_within_thirty_minutes() -> None:
    """A variant that lowers sentiment by 30 %: rolled back in ≥ 95 % of runs within 30
    minutes of event time at 50 arrivals per minute (bench: ~98 %), and in every run within
    an hour."""
    s = sim.scenario(sentiment_change=-0.30, hours=2.0)
    results = [
        sim.run(s, 20_000 + i, track=("rollback", "literal_rollback")) for i in range(HARM_RUNS)
    ]
    times = sim.times(results, "rollback")
    within = sim.rate(results, "rollback", within=30)
    print(
        f"\n−30 % sentiment, {HARM_RUNS} runs: rolled back within 30 min in {within:.1%}, "
        f"within 60 min in {sim.rate(results, 'rollback', within=60):.1%}; minutes: median "
        f"{statistics.median(times):.0f}, max {max(times):.0f}; literal mode within 30 min "
        f"{sim.rate(results, 'literal_rollback', within=30):.1%}"
    )
    assert within >= 0.95
    assert sim.rate(results, "rollback", within=60) == 1.0


def test_power_for_a_ten_percent_conversion_lift() -> None:
    """+10 % conversion (6 % → 6.6 %): the always-valid interval excludes 0 within 72 h in at
    least 90 % of runs (bench: ~100 %, median about a day)."""
    s = sim.scenario(conversion_lift=0.10)
    results = [sim.run(s, 30_000 + i, track=("win",)) for i in range(POWER_RUNS)]
    times = sim.times(results, "win")
    print(
        f"\n+10 % conversion, {POWER_RUNS} runs: won in {sim.rate(results, 'win'):.0%}, "
        f"median {statistics.median(times) / 60:.1f} h"
    )
    assert sim.rate(results, "win") >= 0.9
    assert sim.rate(results, "rollback") == 0.0


def test_a_lost_tenth_of_exposures_trips_the_sequential_srm_check() -> None:
    """Logging loses 10 % of the treatment's exposures: the anytime-valid SRM test (what
    auto-pauses) trips in every run, within hours (bench: median about 2 h)."""
    s = sim.scenario(lost_share=0.10, hours=8.0)
    results = [sim.run(s, 40_000 + i, track=("srm_sequential",)) for i in range(10)]
    times = sim.times(results, "srm_sequential")
    print(f"\n10 % of treatment exposures lost: SRM pause after {times} minutes")
    assert len(times) == 10 and max(times) <= 8 * 60
