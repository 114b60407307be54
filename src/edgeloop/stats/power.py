"""Planning: how many attendees per arm to detect an effect (two-sided, fixed sample).

Proportions: n = ( z_{1−α/2} √(2 p̄ (1 − p̄)) + z_{1−β} √(p₁(1 − p₁) + p₂(1 − p₂)) )²
                 / (p₂ − p₁)²
Means: n = 2 σ² (z_{1−α/2} + z_{1−β})² / δ²
Sequential monitoring costs more samples than these; the dashboard's checklist shows both.
"""

from __future__ import annotations

import math

from ._normal import STD_NORMAL as _N


def sample_size_proportions(
    p_control: float, relative_lift: float, alpha: float = 0.05, power: float = 0.8
) -> int:
    p1 = p_control
    p2 = p_control * (1 + relative_lift)
    if not (0 < p1 < 1 and 0 < p2 < 1) or p1 == p2:
        raise ValueError("need 0 < p < 1 for both arms and a non-zero lift")
    za = float(_N.inv_cdf(1 - alpha / 2))
    zb = float(_N.inv_cdf(power))
    pbar = (p1 + p2) / 2
    n = (
        za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    ) ** 2 / (p2 - p1) ** 2
    return math.ceil(n)


def sample_size_means(sd: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> int:
    if sd <= 0 or delta == 0:
        raise ValueError("need a positive standard deviation and a non-zero effect")
    za = float(_N.inv_cdf(1 - alpha / 2))
    zb = float(_N.inv_cdf(power))
    return math.ceil(2 * sd**2 * (za + zb) ** 2 / delta**2)


def power_proportions(
    p_control: float, relative_lift: float, n_per_arm: float, alpha: float = 0.05
) -> float:
    """Power of the two-sided z test at n per arm (normal approximation)."""
    p1 = p_control
    p2 = p_control * (1 + relative_lift)
    se = math.sqrt(p1 * (1 - p1) / n_per_arm + p2 * (1 - p2) / n_per_arm)
    za = float(_N.inv_cdf(1 - alpha / 2))
    shift = abs(p2 - p1) / se
    return float(_N.cdf(shift - za) + _N.cdf(-za - shift))
