"""Always-valid inference: confidence sequences that may be looked at after every batch.

The normal-mixture mSPRT of Johari, Pekelis & Walsh (2017, "Always valid inference") with
mixing variance τ² on the effect gives, for an estimate θ̂ with standard error se after N units,

    Λ_N = √(se² / (se² + τ²)) · exp( θ̂² τ² / (2 se² (se² + τ²)) ),   p_N = min(1, 1/Λ_N)

and rejecting when Λ_N ≥ 1/α keeps the error ≤ α over every look. Inverting it, with
τ² = ρ² σ² where σ² = N se² is the per-unit variance, gives the asymptotic confidence sequence
of Waudby-Smith et al. (2023) that GrowthBook uses:

    θ̂ ± σ √( 2 (N ρ² + 1) / (N² ρ²) · ln( √(N ρ² + 1) / α ) )  =  θ̂ ± m_N · se,
    m_N = √( 2 (x + 1)/x · ln(√(x + 1)/α) ),  x = N ρ²

(and, in the same terms, ln Λ_N = −½ ln(1 + x) + z² x / (2 (1 + x)) with z = θ̂/se).

ρ is chosen so the sequence is tightest at N* units (the tuning parameter):
ρ² = (−2 ln α + ln(−2 ln α + 1)) / N*. Default N* = 5 000 (GrowthBook's default): a live event
sees thousands of attendees per arm; a smaller N* narrows early intervals and widens late ones.

Relative lift r = ȳ_t/ȳ_c − 1 is a ratio; its always-valid interval is the set of r for which
the linear contrast ȳ_t − (1 + r) ȳ_c is within the boundary (Fieller 1954):

    (ȳ_t − u ȳ_c)² ≤ m_N² (se_t² + u² se_c²),   u = 1 + r,

a quadratic in u. It agrees with the delta method to first order, stays honest when an arm has
few events (the delta method's interval is too narrow exactly when the treatment's mean is the
smaller one), excludes r = 0 exactly when the absolute difference's interval excludes 0, and is
unbounded when the control's own mean is not yet distinguishable from 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from .compare import Difference

DEFAULT_TUNING = 5000.0
DEFAULT_ALPHA = 0.05


class Estimate(Protocol):
    @property
    def mean(self) -> float: ...
    @property
    def se(self) -> float: ...


def rho_squared(alpha: float = DEFAULT_ALPHA, tuning: float = DEFAULT_TUNING) -> float:
    a = -2 * math.log(alpha)
    return (a + math.log(a + 1)) / tuning


def boundary(n: float, alpha: float = DEFAULT_ALPHA, tuning: float = DEFAULT_TUNING) -> float:
    """m_N: the always-valid interval after ``n`` units is estimate ± m_N · se."""
    x = n * rho_squared(alpha, tuning)
    return math.sqrt(2 * (x + 1) / x * math.log(math.sqrt(x + 1) / alpha))


def mixture_p_value(
    z: float, n: float, alpha: float = DEFAULT_ALPHA, tuning: float = DEFAULT_TUNING
) -> float:
    """min(1, 1/Λ_N) for the standardized estimate z = θ̂/se after ``n`` units."""
    if not math.isfinite(z):
        return 1.0
    x = n * rho_squared(alpha, tuning)
    log_lambda = -0.5 * math.log1p(x) + z * z * x / (2 * (1 + x))
    return 1.0 if log_lambda <= 0 else min(1.0, math.exp(-log_lambda))


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
    half = boundary(n, alpha, tuning) * diff.se
    p = mixture_p_value(diff.estimate / diff.se, n, alpha, tuning)
    return Sequence(diff.estimate, diff.estimate - half, diff.estimate + half, p)


def relative_sequence(
    treatment: Estimate,
    control: Estimate,
    n: float,
    alpha: float = DEFAULT_ALPHA,
    tuning: float = DEFAULT_TUNING,
) -> Sequence:
    """The always-valid interval for the relative lift (ȳ_t − ȳ_c)/|ȳ_c| after ``n`` units, by
    inverting the boundary for the contrast ȳ_t − (1 + r) ȳ_c (Fieller). Its p-value is that of
    r = 0, i.e. of the absolute difference."""
    mt, mc = treatment.mean, control.mean
    st2, sc2 = treatment.se**2, control.se**2
    if not (math.isfinite(mt) and math.isfinite(mc) and mc != 0):
        return Sequence(math.nan, -math.inf, math.inf, 1.0)
    estimate = (mt - mc) / abs(mc)
    se = math.sqrt(st2 + sc2) if math.isfinite(st2 + sc2) else math.nan
    if not (n > 0 and se > 0):
        return Sequence(estimate, -math.inf, math.inf, 1.0)
    p = mixture_p_value((mt - mc) / se, n, alpha, tuning)
    m2 = boundary(n, alpha, tuning) ** 2
    a = mc * mc - m2 * sc2
    if a <= 0:  # the control's mean could still be 0: the ratio is unbounded
        return Sequence(estimate, -math.inf, math.inf, p)
    root = math.sqrt(m2 * (mt * mt * sc2 + st2 * a))
    lo, hi = (mt * mc - root) / a, (mt * mc + root) / a  # bounds on ȳ_t/ȳ_c
    if mc > 0:
        return Sequence(estimate, lo - 1, hi - 1, p)
    return Sequence(estimate, 1 - hi, 1 - lo, p)  # r = 1 − ȳ_t/ȳ_c when ȳ_c < 0
