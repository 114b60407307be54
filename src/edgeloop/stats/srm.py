"""Sample-ratio mismatch: do the observed arm sizes fit the configured weights?

Pearson's χ² goodness of fit, k − 1 degrees of freedom; an alert at p < 0.001 (a mismatch means
assignment or logging is broken, and every other number in the report is suspect).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
    from scipy.special import chdtrc  # imported on use: scipy costs start-up time

    expected = [total * w / wsum for w in weights]
    chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True) if e > 0)
    p = float(chdtrc(len(observed) - 1, chi2))
    return SrmResult(float(chi2), p, bool(p < alpha))
