"""The decision loop against a real control plane (SQLite in tmp_path).

Aggregates arrive the way edges send them (``plane.ingest_aggregates`` with AggregateBatch
bodies); every action must go out as a new signed snapshot, be audited with its evidence,
notify the webhook, happen once per trip, and be reversible by an operator.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
import numpy as np
import pytest
import yaml

from edgeloop.control import ControlPlane, Principal, Role
from edgeloop.control.loop import SRM_RULE, DecisionLoop
from edgeloop.evaluate import Reason, compile_snapshot, evaluate
from edgeloop.model import load_flags
from edgeloop.model.aggregates import AggregateBatch, BatchCell
from edgeloop.stats.allocation import stratified_rates, thompson_weights
from edgeloop.store import SqliteControlStore
from edgeloop.sync import SnapshotSigner

START = 1_796_148_000.0  # a multiple of 900 s: periods of 15 minutes start on it
FLAG, EXP = "micro-offer", "offer-exp"
ADMIN = Principal("admin", "ada-admin", Role.ADMIN)
OPERATOR = Principal("operator", "otto-operator", Role.OPERATOR)
HARM_RULE = "rollback when sentiment.change < -15% and conversion.lift < 3%"


@pytest.fixture
def plane(tmp_path) -> Iterator[ControlPlane]:
    p = ControlPlane(SqliteControlStore(tmp_path / "control.db"), SnapshotSigner.generate())
    yield p
    p.store.close()


def document(
    rules: list[dict[str, Any]],
    split: dict[str, int] | None = None,
    *,
    allocation: dict[str, Any] | None = None,
) -> str:
    split = split or {"control": 50, "B": 50}
    experiment: dict[str, Any] = {"key": EXP, "metrics": {"primary": "conversion"}}
    if rules:
        experiment["rules"] = rules
    if allocation is not None:
        experiment["allocation"] = allocation
    flag: dict[str, Any] = {
        "type": "string",
        "variants": {name: name.lower() for name in split},
        "default_variant": next(iter(split)),
        "rules": [{"split": split}],
        "experiment": experiment,
    }
    if allocation is not None:
        flag["sticky"] = True
    return yaml.safe_dump({"flags": {FLAG: flag}}, sort_keys=False)


def setup(plane: ControlPlane, rules: list[dict[str, Any]], **kwargs: Any) -> int:
    return plane.replace_document(ADMIN, document(rules, **kwargs), "set up", START - 60)


def arm(
    seed: int, n: int, conversion: float, valence: float, *, items: float = 5.0
) -> dict[str, float]:
    """One arm's cell sums from simulated attendees (see bench/guardrail_sim.py for the
    generative model): n attendees, conversions, chat items with an attendee effect."""
    rng = np.random.default_rng(seed)
    converted = rng.random(n) < conversion
    value = rng.lognormal(2.3, 0.6, n) * converted
    k = rng.poisson(items, n)
    mu = valence + 0.08 * rng.standard_normal(n)
    owner = np.repeat(np.arange(n), k)
    v = mu[owner] + 0.4 * rng.standard_normal(owner.size)
    s = np.bincount(owner, v, minlength=n)
    return {
        "exposures": float(n),
        "converters": float(converted.sum()),
        "revenue": float(value.sum()),
        "revenue_sq": float((value**2).sum()),
        "chat_n": float(k.sum()),
        "chat_sum": float(v.sum()),
        "chat_sq": float((v * v).sum()),
        "chat_k2": float((k * k).sum()),
        "chat_s2": float((s * s).sum()),
        "chat_ks": float((k * s).sum()),
    }


def ship(plane: ControlPlane, cells: list[tuple[str, float, dict[str, float]]], now: float) -> None:
    batch = AggregateBatch(
        uuid.uuid4().hex,
        "edge-1",
        now,
        1.0,
        [BatchCell(EXP, variant, bucket, stats) for variant, bucket, stats in cells],
        [],
    )
    assert plane.ingest_aggregates(msgspec.json.encode(batch), now)


def experiment(plane: ControlPlane) -> dict[str, Any]:
    return plane.document()[1]["flags"][FLAG]["experiment"]


def decisions(plane: ControlPlane, n: int = 400) -> list[Any]:
    version, doc = plane.document()
    snap = compile_snapshot(load_flags(json.dumps(doc)), version)
    return [evaluate(snap, FLAG, {"targetingKey": f"att-{i}"}, START) for i in range(n)]


class Webhook:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, payload: dict[str, Any]) -> None:
        json.dumps(payload, allow_nan=False)  # what a webhook posts must be strict JSON
        self.calls.append(payload)


def harmful(plane: ControlPlane, n: int = 1500, seed: int = 1) -> None:
    ship(
        plane,
        [
            ("control", START, arm(seed, n, 0.06, 0.35)),
            ("B", START, arm(seed + 100, n, 0.06, 0.35 * 0.7)),
        ],
        START + 1800,
    )


# rollback ---------------------------------------------------------------------------------------


def test_a_harmful_variant_is_rolled_back_through_a_new_snapshot(plane: ControlPlane) -> None:
    before = setup(plane, [{"rule": HARM_RULE}])
    harmful(plane)
    hook = Webhook()
    loop = DecisionLoop(plane, notify=hook)
    (action,) = loop.tick(START + 1800)
    assert (action.variant, action.action, action.rule) == ("B", "rollback", HARM_RULE)
    assert action.version == before + 1 == plane.hub.version
    assert experiment(plane)["rolled_back"] == ["B"]
    # The new snapshot serves control to B's attendees, who stay assigned to B.
    served = decisions(plane)
    assert {d.variant for d in served} == {"control"}
    moved = [d for d in served if d.metadata.get("assigned") == "B"]
    assert 120 < len(moved) < 280
    assert all(d.reason is Reason.SPLIT for d in served)
    # The trip, the audit entry and the webhook carry the evidence.
    (trip,) = plane.store.trips(EXP)
    assert (trip.rule, trip.variant, trip.action, trip.version) == (
        HARM_RULE,
        "B",
        "rollback",
        action.version,
    )
    evidence = trip.evidence
    assert evidence["rule"] == HARM_RULE and evidence["mode"] == "statistical"
    assert evidence["attendees"] == evidence["control_attendees"] == 1500
    sentiment, conversion = evidence["evidence"]
    assert sentiment["comparison"].startswith("sentiment.change <")
    assert sentiment["status"] == "established"
    assert sentiment["lower"] < sentiment["estimate"] < sentiment["upper"] < -0.15
    assert conversion["status"] == "plausible"
    audit = [e for e in plane.store.audit_log() if e.action == "guardrail.rollback"]
    assert {e.actor for e in audit} == {"decision-loop"}
    assert any(e.after == evidence for e in audit)  # the loop's own entry: the evidence
    assert any(e.before and e.after and FLAG in e.after for e in audit)  # the snapshot's diff
    (call,) = hook.calls
    assert call["event"] == "guardrail" and call["action"] == "rollback"
    assert call["variant"] == "B" and call["evidence"] == evidence


def test_the_loop_never_acts_twice_on_one_trip(plane: ControlPlane) -> None:
    setup(plane, [{"rule": HARM_RULE}, {"rule": "rollback when sentiment.diff < -0.02"}])
    harmful(plane)
    hook = Webhook()
    loop = DecisionLoop(plane, notify=hook)
    first = loop.tick(START + 1800)
    assert [a.rule for a in first] == [HARM_RULE]  # the second rule finds B rolled back already
    version = plane.hub.version
    harmful(plane, seed=7)  # more damning data
    for minutes in (31, 45, 60):
        assert loop.tick(START + minutes * 60) == []
    assert DecisionLoop(plane, notify=hook).tick(START + 3700) == []  # nor a restarted loop
    assert plane.hub.version == version
    assert len(plane.store.trips(EXP)) == 1 and len(hook.calls) == 1


def test_an_operator_restores_the_variant_and_that_rule_stays_quiet(plane: ControlPlane) -> None:
    setup(plane, [{"rule": HARM_RULE}])
    harmful(plane)
    loop = DecisionLoop(plane)
    loop.tick(START + 1800)
    version = loop.restore(OPERATOR, EXP, "B", "false alarm: the chat was trolled", START + 2000)
    assert "rolled_back" not in experiment(plane)
    assert any(d.variant == "B" for d in decisions(plane))
    (trip,) = plane.store.trips(EXP)
    assert (trip.reversed_by, trip.reversed_at) == ("otto-operator", START + 2000)
    restore = next(e for e in plane.store.audit_log() if e.action == "guardrail.restore")
    assert restore.actor == "otto-operator" and "trolled" in restore.reason
    assert loop.tick(START + 2400) == []  # the operator overrides that rule for B
    assert plane.hub.version == version
    assert experiment(plane).get("rolled_back") is None


def test_alert_only_changes_nothing_but_is_audited_and_sent(plane: ControlPlane) -> None:
    rule = "alert when sentiment.change < -15%"
    before = setup(plane, [{"rule": rule}])
    doc_before = plane.document()[1]
    harmful(plane)
    hook = Webhook()
    (action,) = DecisionLoop(plane, notify=hook).tick(START + 1800)
    assert (action.action, action.version) == ("alert", before)
    assert plane.document() == (before, doc_before)
    assert [t.action for t in plane.store.trips(EXP)] == ["alert"]
    assert plane.store.audit_log()[0].action == "guardrail.alert"
    assert hook.calls[0]["action"] == "alert"


def test_a_pause_rule_pauses_the_whole_experiment_once(plane: ControlPlane) -> None:
    rule = "pause when sentiment.change < -15%"
    setup(plane, [{"rule": rule}], split={"control": 34, "B": 33, "C": 33})
    ship(
        plane,
        [
            ("control", START, arm(1, 1500, 0.06, 0.35)),
            ("B", START, arm(2, 1500, 0.06, 0.2)),
            ("C", START, arm(3, 1500, 0.06, 0.2)),
        ],
        START + 1800,
    )
    loop = DecisionLoop(plane)
    (action,) = loop.tick(START + 1800)
    assert (action.action, action.variant) == ("pause", "*")
    (trip,) = plane.store.trips(EXP)
    assert trip.variant == "*" and trip.evidence["variant"] == "B"
    assert experiment(plane)["paused"] is True
    loop.restore(OPERATOR, EXP, "*", "looked into it", START + 2000)
    assert "paused" not in experiment(plane)
    assert plane.store.trips(EXP)[0].reversed_by == "otto-operator"
    assert loop.tick(START + 2400) == []  # the rule acts once per experiment


# SRM ---------------------------------------------------------------------------------------------


def test_a_sample_ratio_mismatch_pauses_the_experiment(plane: ControlPlane) -> None:
    setup(plane, [{"rule": HARM_RULE}])
    ship(
        plane,
        [("control", START, arm(1, 2000, 0.06, 0.35)), ("B", START, arm(2, 1700, 0.06, 0.35))],
        START + 900,
    )
    hook = Webhook()
    loop = DecisionLoop(plane, notify=hook)
    (action,) = loop.tick(START + 900)
    assert (action.action, action.rule, action.variant) == ("pause", SRM_RULE, "*")
    (trip,) = plane.store.trips(EXP)
    assert trip.evidence["sequential_p_value"] < 0.001
    assert trip.evidence["attendees"] == {"control": 2000, "B": 1700}
    assert experiment(plane)["paused"] is True
    # paused: everyone is served control by targeting, not by a split — no exposures
    served = decisions(plane)
    assert {(d.variant, d.reason) for d in served} == {("control", Reason.TARGETING_MATCH)}
    assert loop.tick(START + 1800) == []  # a paused experiment is not evaluated
    assert hook.calls[0]["rule"] == SRM_RULE
    loop.restore(OPERATOR, EXP, "*", "fixed the logging", START + 2000)
    assert "paused" not in experiment(plane)
    assert loop.tick(START + 2100) == []  # the operator overrode the SRM pause


def test_ordinary_noise_in_arm_sizes_does_not_pause(plane: ControlPlane) -> None:
    setup(plane, [])
    ship(
        plane,
        [("control", START, arm(1, 2000, 0.06, 0.35)), ("B", START, arm(2, 1930, 0.06, 0.35))],
        START + 900,
    )
    # χ² p ≈ 0.26: nothing to see
    assert DecisionLoop(plane).tick(START + 900) == []
    assert not experiment(plane).get("paused")


# modes and thresholds ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["statistical", "literal"])
def test_literal_mode_trips_on_a_point_estimate_statistical_mode_waits_for_evidence(
    plane: ControlPlane, mode: str
) -> None:
    rule = "rollback when sentiment.change < -15%"
    setup(plane, [{"rule": rule, "mode": mode}])
    # 150 attendees per arm, a 27 % drop in the point estimate: not yet established
    ship(
        plane,
        [("control", START, arm(5, 150, 0.06, 0.35)), ("B", START, arm(55, 150, 0.06, 0.27))],
        START + 300,
    )
    loop = DecisionLoop(plane)
    report = loop.report_for(load_flags(json.dumps(plane.document()[1])).flags[FLAG], START + 300)
    change = report.comparison("B", "sentiment", "change")
    assert change is not None and change.estimate < -0.15 < change.sequence.upper
    taken = loop.tick(START + 300)
    assert [a.action for a in taken] == (["rollback"] if mode == "literal" else [])
    if mode == "statistical":
        harmful(plane)  # the evidence arrives
        assert [a.action for a in loop.tick(START + 1800)] == ["rollback"]
        (trip,) = plane.store.trips(EXP)
        assert trip.evidence["mode"] == "statistical"
    else:
        (trip,) = plane.store.trips(EXP)
        assert trip.evidence["mode"] == "literal"
        assert trip.evidence["evidence"][0]["status"] == "holds"


def test_min_attendees_holds_a_rule_back(plane: ControlPlane) -> None:
    rule = "rollback when sentiment.change < -15%"
    setup(plane, [{"rule": rule, "min_attendees": 1000, "mode": "literal"}])
    ship(
        plane,
        [("control", START, arm(1, 900, 0.06, 0.35)), ("B", START, arm(2, 900, 0.06, 0.1))],
        START + 900,
    )
    loop = DecisionLoop(plane)
    assert loop.tick(START + 900) == []
    ship(
        plane,
        [
            ("control", START + 900, arm(3, 200, 0.06, 0.35)),
            ("B", START + 900, arm(4, 200, 0.06, 0.1)),
        ],
        START + 1200,
    )
    (action,) = loop.tick(START + 1200)
    assert action.action == "rollback"
    assert plane.store.trips(EXP)[0].evidence["attendees"] == 1100


def test_evidence_with_unbounded_intervals_is_strict_json(plane: ControlPlane) -> None:
    """No control conversions yet: the conversion lift has no estimate and no bounds. The
    alert still goes out, with nulls where there are no numbers."""
    rule = "alert when conversion.lift < -50% or sentiment.change < -15%"
    setup(plane, [{"rule": rule}])
    control, treatment = arm(1, 1500, 0.0, 0.35), arm(2, 1500, 0.0, 0.2)
    ship(plane, [("control", START, control), ("B", START, treatment)], START + 1800)
    hook = Webhook()
    (action,) = DecisionLoop(plane, notify=hook).tick(START + 1800)
    assert action.action == "alert"
    conversion = hook.calls[0]["evidence"]["evidence"][0]
    assert conversion["comparison"].startswith("conversion.lift")
    assert conversion["estimate"] is None and conversion["lower"] is None
    (trip,) = plane.store.trips(EXP)
    json.dumps(trip.evidence, allow_nan=False)


def test_a_failing_webhook_does_not_stop_the_rollback(plane: ControlPlane) -> None:
    setup(plane, [{"rule": HARM_RULE}])
    harmful(plane)

    def broken(_: dict[str, Any]) -> None:
        raise ConnectionError("webhook down")

    (action,) = DecisionLoop(plane, notify=broken).tick(START + 1800)
    assert action.action == "rollback" and experiment(plane)["rolled_back"] == ["B"]


# adaptive allocation ---------------------------------------------------------------------------

ALLOCATION = {"floor": 0.1, "min_samples": 500, "every_min": 15}


def split_of(plane: ControlPlane) -> dict[str, float]:
    split = plane.document()[1]["flags"][FLAG]["rules"][0]["split"]
    total = sum(split.values())
    return {k: v / total for k, v in split.items()}


def conversions(n: int, converters: int) -> dict[str, float]:
    return {"exposures": float(n), "converters": float(converters)}


def test_thompson_moves_weight_to_a_clearly_better_arm_after_min_samples(
    plane: ControlPlane,
) -> None:
    setup(plane, [], allocation=ALLOCATION)
    loop = DecisionLoop(plane, seed=3)
    # 300 per arm: B looks far better, but below min_samples nothing moves
    ship(
        plane,
        [("control", START, conversions(300, 15)), ("B", START, conversions(300, 45))],
        START + 300,
    )
    version = plane.hub.version
    assert loop.tick(START + 300) == []
    assert plane.hub.version == version and split_of(plane) == {"control": 0.5, "B": 0.5}
    # 1 200 per arm: 6 % against 12 % — B is best with near certainty
    ship(
        plane,
        [("control", START, conversions(900, 45)), ("B", START, conversions(900, 99))],
        START + 600,
    )
    loop.tick(START + 960)  # the first tick of the next period re-weighs
    weights = split_of(plane)
    assert weights["B"] == pytest.approx(0.9, abs=0.01)
    assert weights["control"] >= 0.1 - 1e-4  # the floor
    entry = plane.store.audit_log()[0]
    assert (entry.action, entry.actor) == ("allocation.reweigh", "decision-loop")
    # once per period: another tick in the same period changes nothing
    version = plane.hub.version
    ship(
        plane,
        [("control", START + 900, conversions(10, 9)), ("B", START + 900, conversions(90, 0))],
        START + 1000,
    )
    loop.tick(START + 1100)
    assert plane.hub.version == version
    # arrivals in the new 10/90 split are no sample-ratio mismatch
    ship(
        plane,
        [
            ("control", START + 1800, conversions(300, 18)),
            ("B", START + 1800, conversions(2700, 320)),
        ],
        START + 2000,
    )
    assert loop.tick(START + 2100) == [] and not experiment(plane).get("paused")
    report = loop.report_for(load_flags(json.dumps(plane.document()[1])).flags[FLAG], START + 2100)
    assert not report.srm.mismatch and not report.srm.sequential_mismatch


def test_allocation_needs_a_sticky_flag(plane: ControlPlane) -> None:
    raw = yaml.safe_load(document([], allocation=ALLOCATION))
    raw["flags"][FLAG]["sticky"] = False
    with pytest.raises(Exception, match="sticky: true"):
        plane.replace_document(ADMIN, yaml.safe_dump(raw), "no sticky", START)


# Simpson's paradox: traffic moved between a good hour and a bad hour -------------------------

# Period 1 (a good quarter hour: both arms convert 20 %) ran at 90/10, period 2 (a bad one: both
# convert 5 %) at 10/90. Pooled, A looks far better (18.5 % vs 6.5 %); within each period the
# arms are identical, and so are the per-period estimates.
PERIODS = {
    START: {"A": (900.0, 180.0), "B": (100.0, 20.0)},
    START + 900: {"A": (100.0, 5.0), "B": (900.0, 45.0)},
}


def test_per_period_estimation_undoes_simpsons_paradox() -> None:
    pooled = {arm: sum(p[arm][1] for p in PERIODS.values()) / 1000 for arm in ("A", "B")}
    assert pooled["A"] > 2.5 * pooled["B"]
    rates = stratified_rates(PERIODS, ["A", "B"])
    assert rates["A"][0] == pytest.approx(rates["B"][0]) == pytest.approx(0.125)
    weights = thompson_weights(
        PERIODS, {"A": 0.5, "B": 0.5}, floor=0.05, min_samples=200, rng=np.random.default_rng(0)
    )
    assert weights["A"] == pytest.approx(0.5, abs=0.02)


def test_the_loop_reweighs_by_period_when_the_split_moved_between_periods(
    plane: ControlPlane,
) -> None:
    setup(plane, [], allocation=ALLOCATION, split={"A": 90, "B": 10})
    plane.replace_document(
        ADMIN, document([], allocation=ALLOCATION, split={"A": 10, "B": 90}), "ramp", START + 900
    )
    cells = []
    for period, arms in PERIODS.items():
        for offset in (0.0, 300.0, 600.0):  # three 5-minute buckets per period
            for name, (n, x) in arms.items():
                cells.append((name, period + offset, conversions(n / 3, x / 3)))
    ship(plane, cells, START + 1800)
    loop = DecisionLoop(plane, seed=1)
    assert loop.tick(START + 1801) == []  # no SRM pause: each bucket matched its split
    weights = split_of(plane)
    assert weights["A"] == pytest.approx(0.5, abs=0.03)  # not pulled toward A by the paradox
