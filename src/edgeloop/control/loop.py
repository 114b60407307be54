"""The decision loop: guardrails that fire on their own and reach every edge.

On each ``tick(now)`` (every N seconds of event time) the loop builds each running experiment's
report from the latest aggregates, and:
- pauses an experiment whose arms show a sample-ratio mismatch (assignment is broken);
- evaluates every guardrail rule for every live treatment variant, and applies the action of a
  rule that fires — roll the variant back (its traffic goes to control), pause the experiment, or
  alert only — through the ordinary snapshot path, so it reaches edges and attached clients like a
  manual toggle;
- re-weights experiments with adaptive allocation.
Each trip is written to the audit log with its evidence (estimates, intervals, attendees, rule)
and sent to the configured webhook. A rule acts once per variant: a trip is not repeated, and an
operator who reverses it (``restore``) overrides that rule for that variant from then on.
"""

from __future__ import annotations

import copy
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgeloop.model import Flag, FlagsValidationError, load_flags
from edgeloop.model.guardrails import Action
from edgeloop.stats import build_report, judge
from edgeloop.stats.allocation import thompson_weights
from edgeloop.store import AuditRecord, Trip

from .auth import Principal, Role
from .service import ControlPlane, NotFound

log = logging.getLogger("edgeloop.loop")

LOOP = Principal("decision-loop", "decision-loop", Role.OPERATOR)
SRM_RULE = "srm: sample ratio mismatch (p < 0.001)"

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
            flagset = load_flags(json.dumps(doc), "live")
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

    def report_for(self, flag: Flag, now: float) -> Any:
        exp = flag.experiment
        assert exp is not None
        weights = _split_weights(flag)
        control = flag.control_variant or next(iter(weights), "")
        store = self.plane.store
        return build_report(
            exp.key,
            control,
            weights,
            store.aggregate_cells(exp.key),
            store.unit_records(exp.key),
            now,
        )

    def _check(self, flag: Flag, now: float) -> list[LoopAction]:
        exp = flag.experiment
        assert exp is not None
        report = self.report_for(flag, now)
        trips = self.plane.store.trips(exp.key)
        done = {(t.rule, t.variant) for t in trips}
        if report.srm.mismatch and (SRM_RULE, "*") not in done:
            evidence = {
                "chi2": report.srm.chi2,
                "p_value": report.srm.p_value,
                "attendees": {v: s.attendees for v, s in report.variants.items()},
            }
            return [self._act(flag, "*", Action.PAUSE, SRM_RULE, evidence, now)]
        taken: list[LoopAction] = []
        control = report.control
        for guardrail in exp.rules:
            for variant in report.variants:
                if variant == control or variant in exp.rolled_back:
                    continue
                if (guardrail.rule.text, variant) in done:
                    continue
                verdict = judge(guardrail, report, variant)
                if not verdict.fired:
                    continue
                taken.append(
                    self._act(
                        flag,
                        variant,
                        guardrail.rule.action,
                        guardrail.rule.text,
                        asdict(verdict),
                        now,
                    )
                )
                done.add((guardrail.rule.text, variant))
                if guardrail.rule.action is Action.PAUSE:
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
        plane = self.plane
        version, doc = plane.document()
        live = doc["flags"][flag.key]
        raw_exp = live["experiment"]
        reason = f"guardrail '{rule}' fired for {variant}"
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
        last = self._reweighed_at.get(exp.key)
        if last is not None and now - last < period:
            return
        self._reweighed_at[exp.key] = now
        weights = _split_weights(flag)
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
            weights,
            floor=exp.allocation.floor,
            min_samples=exp.allocation.min_samples,
            rng=self.rng,
        )
        scale = 10_000
        ints = {v: max(1, round(w * scale)) for v, w in new.items()}
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
            self.plane.store.reverse_trips(experiment, variant, who.name, now)
            return version
        raise NotFound(f"no experiment {experiment!r}")


def _split_weights(flag: Flag) -> dict[str, float]:
    for rule in flag.rules:
        if rule.split:
            return {name: float(w) for name, w in rule.split}
    return {}
