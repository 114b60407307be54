"""Guardrail verdicts: does a rule fire for a variant, given the latest report?

Literal mode compares point estimates, exactly as the rule reads.

Statistical mode (the default) reads each comparison through the always-valid interval:
- **established**: the whole interval is on the comparison's side of the threshold;
- **refuted**: the whole interval is on the other side;
- **plausible**: the interval straddles the threshold.

A comparison that would hold for a variant identical to control (``conversion.lift < 3%``
holds at a lift of 0) is a *condition*: it can block a rule but is no evidence of harm. The
others (``sentiment.change < -15%``) are *triggers*. An ``and``-branch fires when none of its
comparisons is refuted (or missing) and at least one trigger is established; a branch made
of conditions only fires when all of them are established. A rule fires when any of its
``or``-branches does. "Roll back when sentiment.change < -15% and conversion.lift < 3%"
therefore rolls back once a sentiment drop beyond 15 % is established and a conversion lift of
3 % or more is not: evidence of harm, no evidence that the variant pays for it.

An A/A variant (identical to control) establishes no trigger but by the intervals' error
(they are valid at every look), so it is rolled back by chance at most about α of the time,
however often the loop looks. Were a condition enough to fire, an A/A variant would be rolled
back as soon as "lift < 3 %" became established — which is true of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeloop.model.guardrails import Comparison as RuleComparison
from edgeloop.model.guardrails import Guardrail, Mode

from .report import ExperimentReport


@dataclass(frozen=True, slots=True)
class Evidence:
    comparison: str
    status: str  # established | plausible | refuted | missing | holds | fails
    estimate: float | None
    lower: float | None
    upper: float | None


@dataclass(frozen=True, slots=True)
class Verdict:
    fired: bool
    variant: str
    rule: str
    mode: str
    attendees: int
    control_attendees: int
    evidence: tuple[Evidence, ...]
    reason: str = ""


def is_condition(c: RuleComparison) -> bool:
    """True if the comparison holds for a variant no different from control (effect 0)."""
    return c.holds(0.0)


def _status(c: RuleComparison, lower: float, upper: float) -> str:
    if c.op in ("<", "<="):
        if c.holds(upper):
            return "established"
        if not c.holds(lower):
            return "refuted"
    else:
        if c.holds(lower):
            return "established"
        if not c.holds(upper):
            return "refuted"
    return "plausible"


def judge(guardrail: Guardrail, report: ExperimentReport, variant: str) -> Verdict:
    """The verdict of one guardrail for one treatment variant."""
    rule = guardrail.rule
    v = report.variants.get(variant)
    c = report.variants.get(report.control)
    n_v = v.attendees if v else 0
    n_c = c.attendees if c else 0
    base = dict(
        variant=variant,
        rule=rule.text,
        mode=str(guardrail.mode),
        attendees=n_v,
        control_attendees=n_c,
    )
    if min(n_v, n_c) < guardrail.min_attendees:
        return Verdict(
            False,
            evidence=(),
            reason=f"fewer than {guardrail.min_attendees} attendees per arm",
            **base,
        )
    evidence: list[Evidence] = []
    fired = False
    for branch in rule.branches:
        statuses = []
        for comparison in branch:
            found = report.comparison(variant, comparison.metric, comparison.measure)
            if found is None:
                evidence.append(Evidence(str(comparison), "missing", None, None, None))
                statuses.append("missing")
                continue
            seq = found.sequence
            if guardrail.mode is Mode.LITERAL:
                status = "holds" if comparison.holds(found.estimate) else "fails"
            else:
                status = _status(comparison, seq.lower, seq.upper)
            evidence.append(Evidence(str(comparison), status, found.estimate, seq.lower, seq.upper))
            statuses.append(status)
        if guardrail.mode is Mode.LITERAL:
            branch_fires = all(s == "holds" for s in statuses)
        elif "refuted" in statuses or "missing" in statuses:
            branch_fires = False
        else:
            triggers = [
                st for cmp, st in zip(branch, statuses, strict=True) if not is_condition(cmp)
            ]
            if triggers:
                branch_fires = "established" in triggers
            else:
                branch_fires = all(s == "established" for s in statuses)
        fired = fired or branch_fires
    return Verdict(fired, evidence=tuple(evidence), **base)
