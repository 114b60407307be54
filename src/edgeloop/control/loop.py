"""The decision loop: guardrails that fire on their own and reach every edge.

On each ``tick(now)`` (every N seconds of event time) the loop builds each running experiment's
report from the latest aggregates, and:
- pauses an experiment whose arms show a sample-ratio mismatch (assignment is broken) by the
  anytime-valid sequential test (the fixed-sample χ² alert would trip by chance in a few percent
  of healthy experiments when looked at every few minutes), against the weights that were in
  force when each time bucket's attendees arrived (weights change with adaptive allocation);
- evaluates every guardrail rule for every live treatment variant, and applies the action of a
  rule that fires — roll the variant back (its traffic goes to control), pause the experiment, or
  alert only — through the ordinary snapshot path, so it reaches edges and attached clients like a
  manual toggle;
- re-weights experiments with adaptive allocation.
Each trip is written to the audit log with its evidence (estimates, intervals, attendees, rule)
and sent to the configured webhook. A rule acts once per variant (a pause: once per experiment):
a trip is not repeated, and an operator who reverses it (``restore``) overrides that rule for
that variant from then on.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgeloop.model import Flag, FlagsValidationError, load_flags_data
from edgeloop.model.guardrails import Action
from edgeloop.stats import ExperimentReport, build_report, judge
from edgeloop.stats.allocation import thompson_weights
from edgeloop.stats.srm import srm_over_time
from edgeloop.store import AuditRecord, Trip

from .auth import Principal, Role
from .service import ControlPlane, NotFound

log = logging.getLogger("edgeloop.loop")

LOOP = Principal("decision-loop", "decision-loop", Role.OPERATOR)
SRM_RULE = "srm: sample ratio mismatch (sequential test, p < 0.001)"

Notify = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class LoopAction:
    experiment: str
    variant: str
    action: str
    rule: str
    version: int
    at: float


class DecisionLoop:
    def __init__(self, plane: ControlPlane, notify: Notify | None = None, seed: int = 0) -> None:
        self.plane = plane
        self.notify = notify
        self.rng = np.random.default_rng(seed)
        self._reweighed_at: dict[str, float] = {}

    def tick(self, now: float) -> list[LoopAction]:
        _version, doc = self.plane.document()
        if not doc.get("flags"):
            return []
        try:
            flagset = load_flags_data(doc, "live")
        except FlagsValidationError:  # pragma: no cover - the live document always validates
            log.exception("live document does not load")
            return []
        taken: list[LoopAction] = []
        for flag in flagset.flags.values():
            exp = flag.experiment
            if exp is None or exp.paused or flag.state != "ENABLED":
                continue
            taken.extend(self._check(flag, now))
        return taken

    # one experiment ------------------------------------------------------------------------

    def report_for(self, flag: Flag, now: float, *, retention: bool = True) -> ExperimentReport:
        """The experiment's report; ``retention=False`` skips reading the per-attendee records
        (what the loop does when no rule of the experiment compares retention)."""
        exp = flag.experiment
        assert exp is not None
        weights = _split_weights(flag)
        control = flag.control_variant or next(iter(weights), "")
        store = self.plane.store
        cells = store.aggregate_cells(exp.key)
        records = store.unit_records(exp.key) if retention else []
        report = build_report(exp.key, control, weights, cells, records, now)
        timeline = self._weight_timeline(flag.key)
        if len({_shares(w) for _, w in timeline}) > 1:
            # The split changed while attendees arrived: compare each time bucket's arrivals
            # with the weights in force then, not with today's weights.
            srm = srm_over_time(cells, timeline, list(report.variants))
            report = dataclasses.replace(report, srm=srm)
        return report

    def _weight_timeline(self, flag_key: str) -> list[tuple[float, dict[str, float]]]:
        """(from, weights) for every version of the flag's split, oldest first."""
        timeline: list[tuple[float, dict[str, float]]] = []
        for entry in self.plane.store.flag_history(flag_key):
            after = entry.after if isinstance(entry.after, dict) else {}
            split = next(
                (r["split"] for r in after.get("rules", []) if isinstance(r.get("split"), dict)),
                None,
            )
            if split is not None:
                timeline.append((entry.at, {k: float(v) for k, v in split.items()}))
        return timeline

    def _check(self, flag: Flag, now: float) -> list[LoopAction]:
        exp = flag.experiment
        assert exp is not None
        uses_retention = any(
            c.metric.startswith("retention_") for g in exp.rules for c in g.rule.comparisons
        )
        report = self.report_for(flag, now, retention=uses_retention)
        trips = self.plane.store.trips(exp.key)
        done = {(t.rule, t.variant) for t in trips}
        if report.srm.sequential_mismatch and (SRM_RULE, "*") not in done:
            evidence = {
                "rule": SRM_RULE,
                "chi2": report.srm.chi2,
                "p_value": report.srm.p_value,
                "sequential_p_value": report.srm.sequential_p,
                "attendees": {v: s.attendees for v, s in report.variants.items()},
            }
            return [self._act(flag, "*", Action.PAUSE, SRM_RULE, evidence, now)]
        taken: list[LoopAction] = []
        control = report.control
        rolled = set(exp.rolled_back)
        for guardrail in exp.rules:
            action = guardrail.rule.action
            for variant in report.variants:
                if variant == control or variant in rolled:
                    continue
                # A pause acts on the whole experiment: once per rule, whichever variant.
                target = "*" if action is Action.PAUSE else variant
                if (guardrail.rule.text, target) in done:
                    continue
                verdict = judge(guardrail, report, variant)
                if not verdict.fired:
                    continue
                taken.append(
                    self._act(flag, target, action, guardrail.rule.text, asdict(verdict), now)
                )
                done.add((guardrail.rule.text, target))
                if action is Action.ROLLBACK:
                    rolled.add(variant)  # another rule must not roll it back again
                if action is Action.PAUSE:
                    return taken
        if exp.allocation is not None and not taken:
            self._reweigh(flag, now)
        return taken

    def _act(
        self,
        flag: Flag,
        variant: str,
        action: Action,
        rule: str,
        evidence: dict[str, Any],
        now: float,
    ) -> LoopAction:
        exp = flag.experiment
        assert exp is not None
        evidence = _json_safe(evidence)  # unbounded intervals and NaN estimates become null
        plane = self.plane
        version, doc = plane.document()
        live = doc["flags"][flag.key]
        raw_exp = live["experiment"]
        reason = f"guardrail '{rule}' fired for " + (
            evidence.get("variant", "the experiment") if variant == "*" else variant
        )
        if action is Action.ROLLBACK:
            raw_exp["rolled_back"] = sorted({*raw_exp.get("rolled_back", []), variant})
            version = plane.commit(LOOP, "guardrail.rollback", flag.key, doc, reason, now)
        elif action is Action.PAUSE:
            raw_exp["paused"] = True
            version = plane.commit(LOOP, "guardrail.pause", flag.key, doc, reason, now)
        plane.store.add_trip(
            Trip(0, exp.key, rule, variant, str(action), now, version, evidence, None, None)
        )
        plane.store.append_audit(
            AuditRecord(
                now,
                LOOP.name,
                str(LOOP.role),
                f"guardrail.{action}",
                exp.key,
                None,
                evidence,
                reason,
            )
        )
        taken = LoopAction(exp.key, variant, str(action), rule, version, now)
        if self.notify is not None:
            try:
                self.notify({"event": "guardrail", **asdict(taken), "evidence": evidence})
            except Exception:
                log.exception("webhook notification failed")
        log.warning("%s (snapshot %d)", reason, version)
        return taken

    def _reweigh(self, flag: Flag, now: float) -> None:
        exp = flag.experiment
        assert exp is not None and exp.allocation is not None
        period = exp.allocation.every_min * 60.0
        # Re-weigh once per period, at the first tick of each period: the per-period estimates
        # below stratify by these same periods, so the weights are (nearly) constant within
        # each stratum — the condition for the stratified rates to be unbiased.
        slot = now // period
        if self._reweighed_at.get(exp.key) == slot:
            return
        self._reweighed_at[exp.key] = slot
        weights = _split_weights(flag)
        # A rolled-back variant's attendees are served control: its numbers say nothing about
        # it any more, so it keeps its weight and the others share the rest.
        fixed = {v: w for v, w in weights.items() if v in exp.rolled_back}
        live = {v: w for v, w in weights.items() if v not in fixed}
        if len(live) < 2:
            return
        periods: dict[float, dict[str, tuple[float, float]]] = defaultdict(dict)
        for variant, bucket, stats in self.plane.store.aggregate_cells(exp.key):
            key = bucket - bucket % period
            n, x = periods[key].get(variant, (0.0, 0.0))
            periods[key][variant] = (
                n + stats.get("exposures", 0.0),
                x + stats.get("converters", 0.0),
            )
        new = thompson_weights(
            periods,
            live,
            floor=exp.allocation.floor,
            min_samples=exp.allocation.min_samples,
            rng=self.rng,
        )
        total = sum(weights.values())
        free = 1.0 - sum(fixed.values()) / total
        scale = 10_000
        ints = {v: max(1, round(w / total * scale)) for v, w in fixed.items()}
        ints.update({v: max(1, round(w * free * scale)) for v, w in new.items()})
        if _shares({v: float(w) for v, w in ints.items()}) == _shares(
            {v: round(w / total * scale) for v, w in weights.items()}
        ):
            return  # the same shares (at the split's resolution): no new snapshot
        _version, doc = self.plane.document()
        raw = doc["flags"][flag.key]
        for rule in raw.get("rules", []):
            if "split" in rule:
                if rule["split"] == ints:
                    return
                rule["split"] = ints
                break
        self.plane.commit(LOOP, "allocation.reweigh", flag.key, doc, "Thompson sampling", now)

    # operators -----------------------------------------------------------------------------

    def restore(
        self, who: Principal, experiment: str, variant: str, reason: str, now: float
    ) -> int:
        """Undo the loop's action: un-roll-back a variant (or un-pause, with variant '*')."""
        version, doc = self.plane.document()
        for key, raw in doc["flags"].items():
            raw_exp = raw.get("experiment")
            if raw_exp is None or raw_exp.get("key") != experiment:
                continue
            if variant == "*":
                raw_exp.pop("paused", None)
            else:
                left = [v for v in raw_exp.get("rolled_back", []) if v != variant]
                if left:
                    raw_exp["rolled_back"] = left
                else:
                    raw_exp.pop("rolled_back", None)
            version = self.plane.commit(
                who, "guardrail.restore", key, copy.deepcopy(doc), reason, now
            )
            # Un-pausing reverses the SRM and guardrail pauses (recorded under "*").
            self.plane.store.reverse_trips(experiment, variant, who.name, now)
            return version
        raise NotFound(f"no experiment {experiment!r}")


def _json_safe(value: Any) -> Any:
    """Strict JSON for the audit log, the trips API and the webhook: non-finite numbers (an
    interval not yet bounded, an estimate with no data) become None; tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _shares(weights: dict[str, float]) -> tuple[tuple[str, float], ...]:
    total = sum(weights.values()) or 1.0
    return tuple(sorted((k, round(w / total, 12)) for k, w in weights.items()))


def _split_weights(flag: Flag) -> dict[str, float]:
    for rule in flag.rules:
        if rule.split:
            return {name: float(w) for name, w in rule.split}
    return {}
