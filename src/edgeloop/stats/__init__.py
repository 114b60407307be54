"""Pure statistics on sufficient statistics. Formulas and sources: docs/statistics.md."""

from .bayes import BayesSummary, bayes_summary
from .compare import Difference, WelchResult, absolute_lift, relative_lift, welch_t
from .cuped import Paired, cuped_adjust, cuped_theta
from .guardrails import Evidence, Verdict, judge
from .moments import Moments, Ratio
from .power import power_proportions, sample_size_means, sample_size_proportions
from .report import ExperimentReport, Retention, VariantStats, build_report, retention_by_variant
from .sequential import (
    DEFAULT_ALPHA,
    DEFAULT_TUNING,
    Sequence,
    confidence_sequence,
    relative_sequence,
    rho_squared,
)
from .srm import SRM_ALPHA, SrmResult, srm_check, srm_over_time, srm_sequential_p

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_TUNING",
    "SRM_ALPHA",
    "BayesSummary",
    "Difference",
    "Evidence",
    "ExperimentReport",
    "Moments",
    "Paired",
    "Ratio",
    "Retention",
    "Sequence",
    "SrmResult",
    "VariantStats",
    "Verdict",
    "WelchResult",
    "absolute_lift",
    "bayes_summary",
    "build_report",
    "confidence_sequence",
    "cuped_adjust",
    "cuped_theta",
    "judge",
    "power_proportions",
    "relative_lift",
    "relative_sequence",
    "retention_by_variant",
    "rho_squared",
    "sample_size_means",
    "sample_size_proportions",
    "srm_check",
    "srm_over_time",
    "srm_sequential_p",
    "welch_t",
]
