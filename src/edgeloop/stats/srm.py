"""Sample-ratio mismatch: do the observed arm sizes fit the configured weights?

Pearson's χ² goodness of fit, k − 1 degrees of freedom; an alert at p < 0.001 (a mismatch means
assignment or logging is broken, and every other number in the report is suspect).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as sps

SRM_ALPHA = 0.001


@dataclass(frozen=True, slots=True)
class SrmResult:
    chi2: float
    p_value: float
    mismatch: bool


def srm_check(
    observed: Sequence[float], weights: Sequence[float], alpha: float = SRM_ALPHA
) -> SrmResult:
    total = sum(observed)
    wsum = sum(weights)
    if total <= 0 or len(observed) < 2:
        return SrmResult(0.0, 1.0, False)
    expected = [total * w / wsum for w in weights]
    chi2, p = sps.chisquare(observed, expected)
    return SrmResult(float(chi2), float(p), bool(p < alpha))
