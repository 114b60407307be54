"""Experiment reports as JSON for the API and the dashboard (k-suppression applied)."""

from __future__ import annotations

import math
from typing import Any

from edgeloop.privacy import DEFAULT_K, suppressed
from edgeloop.stats import ExperimentReport


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def report_json(report: ExperimentReport, k: int = DEFAULT_K) -> dict[str, Any]:
    variants: dict[str, Any] = {}
    for name, v in report.variants.items():
        if suppressed(v.attendees, k):
            variants[name] = {"attendees": None, "suppressed": True}
            continue
        variants[name] = {
            "attendees": v.attendees,
            "conversion_rate": _num(v.conversion.mean),
            "revenue_per_attendee": _num(v.revenue.mean),
            "sentiment_index": _num(v.sentiment.mean),
            "sentiment_baseline": _num(v.baseline.mean),
            "retention": {
                f"d{d}": {
                    "matured": r.matured,
                    "returned_on_day": _num(r.on_rate),
                    "returned_by_day": _num(r.by_rate),
                }
                for d, r in v.retention.items()
            },
        }
    comparisons: dict[str, Any] = {}
    for name, found in report.comparisons.items():
        if variants.get(name, {}).get("suppressed") or variants.get(report.control, {}).get(
            "suppressed"
        ):
            continue
        comparisons[name] = [
            {
                "metric": c.metric,
                "measure": c.measure,
                "estimate": _num(c.estimate),
                "fixed_interval": [_num(x) for x in c.fixed.interval()],
                "always_valid_interval": [_num(c.sequence.lower), _num(c.sequence.upper)],
                "always_valid_p": _num(c.sequence.p_value),
            }
            for c in found
        ]
    bayes = {
        name: {"chance_to_beat": _num(b.chance_to_beat), "expected_loss": _num(b.expected_loss)}
        for name, b in report.bayes.items()
        if name in comparisons
    }
    return {
        "experiment": report.experiment,
        "control": report.control,
        "at": report.at,
        "k": k,
        "variants": variants,
        "srm": {
            "chi2": _num(report.srm.chi2),
            "p_value": report.srm.p_value,
            "mismatch": report.srm.mismatch,
            "sequential_p_value": report.srm.sequential_p,  # anytime-valid: what auto-pauses
            "sequential_mismatch": report.srm.sequential_mismatch,
        },
        "comparisons": comparisons,
        "bayes_not_peeking_safe": bayes,
    }
