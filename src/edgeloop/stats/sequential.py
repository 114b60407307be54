"""Always-valid inference: confidence sequences that may be looked at after every batch.

The normal-mixture mSPRT of Johari, Pekelis & Walsh (2017, "Always valid inference") with
mixing variance τ² on the effect gives, for an estimate θ̂ with standard error se after N units,

    Λ_N = √(se² / (se² + τ²)) · exp( θ̂² τ² / (2 se² (se² + τ²)) ),   p_N = min(1, 1/Λ_N)

and rejecting when Λ_N ≥ 1/α keeps the error ≤ α over every look. Inverting it, with
τ² = ρ² σ² where σ² = N se² is the per-unit variance, gives the asymptotic confidence sequence
of Waudby-Smith et al. (2023) that GrowthBook uses:

    θ̂ ± σ √( 2 (N ρ² + 1) / (N² ρ²) · ln( √(N ρ² + 1) / α ) )

ρ is chosen so the sequence is tightest at N* units (the tuning parameter):
ρ² = (−2 ln α + ln(−2 ln α + 1)) / N*. Default N* = 5 000 (GrowthBook's default): a live event
sees thousands of attendees per arm; a smaller N* narrows early intervals and widens late ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .compare import Difference

DEFAULT_TUNING = 5000.0
DEFAULT_ALPHA = 0.05


def rho_squared(alpha: float = DEFAULT_ALPHA, tuning: float = DEFAULT_TUNING) -> float:
    a = -2 * math.log(alpha)
    return (a + math.log(a + 1)) / tuning


@dataclass(frozen=True, slots=True)
class Sequence:
    estimate: float
    lower: float
    upper: float
    p_value: float  # always-valid at this look (min over looks is also valid)

    def excludes(self, value: float) -> bool:
        return not self.lower <= value <= self.upper


def confidence_sequence(
    diff: Difference, n: float, alpha: float = DEFAULT_ALPHA, tuning: float = DEFAULT_TUNING
) -> Sequence:
    """The always-valid interval for ``diff`` after ``n`` units (both arms together)."""
    if not (n > 0 and diff.se > 0 and math.isfinite(diff.estimate)):
        return Sequence(diff.estimate, -math.inf, math.inf, 1.0)
    r2 = rho_squared(alpha, tuning)
    sigma2 = n * diff.se**2
    half = math.sqrt(
        sigma2 * 2 * (n * r2 + 1) / (n * n * r2) * math.log(math.sqrt(n * r2 + 1) / alpha)
    )
    tau2 = r2 * sigma2
    se2 = diff.se**2
    log_lambda = 0.5 * math.log(se2 / (se2 + tau2)) + diff.estimate**2 * tau2 / (
        2 * se2 * (se2 + tau2)
    )
    p = 1.0 if log_lambda <= 0 else min(1.0, math.exp(-log_lambda))
    return Sequence(diff.estimate, diff.estimate - half, diff.estimate + half, p)
