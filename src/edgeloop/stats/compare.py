"""Treatment vs control on one metric: absolute and relative lift with intervals, Welch's t.

Absolute difference  d = ȳ_t − ȳ_c,  se(d) = √(se_t² + se_c²),  se² = s²/n for a plain mean
Relative lift        r = ȳ_t/ȳ_c − 1, by the delta method
                     se(r) = √( se_t²/ȳ_c² + ȳ_t² se_c²/ȳ_c⁴ )
Welch's t            t = d / se(d), ν = (a + b)² / (a²/(n_t−1) + b²/(n_c−1)),
                     a = s²_t/n_t, b = s²_c/n_c
These fixed-n intervals are right only when the sample size was fixed in advance; for
monitoring use edgeloop.stats.sequential. The lifts take anything with a ``mean`` and an
``se`` (``Moments``, or a ``Ratio`` whose se is taken over units).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._normal import STD_NORMAL as _N
from .moments import Moments, Ratio


@dataclass(frozen=True, slots=True)
class Difference:
    estimate: float
    se: float

    def interval(self, alpha: float = 0.05) -> tuple[float, float]:
        z = float(_N.inv_cdf(1 - alpha / 2))
        return self.estimate - z * self.se, self.estimate + z * self.se

    @property
    def z(self) -> float:
        return self.estimate / self.se if self.se > 0 else math.nan

    @property
    def p_value(self) -> float:
        """Two-sided, normal approximation."""
        return float(2 * _N.cdf(-abs(self.z))) if self.se > 0 else math.nan


def absolute_lift(treatment: Moments | Ratio, control: Moments | Ratio) -> Difference:
    se = math.sqrt(treatment.se**2 + control.se**2)
    return Difference(treatment.mean - control.mean, se)


def relative_lift(treatment: Moments | Ratio, control: Moments | Ratio) -> Difference:
    """ȳ_t/ȳ_c − 1 with its delta-method standard error; for a signed metric (sentiment) the
    denominator is |ȳ_c|, so a negative value always means 'lower than control'."""
    mc, mt = control.mean, treatment.mean
    if not mc:
        return Difference(math.nan, math.nan)
    base = abs(mc)
    var = treatment.se**2 / base**2 + mt**2 * control.se**2 / base**4
    return Difference((mt - mc) / base, math.sqrt(var))


@dataclass(frozen=True, slots=True)
class WelchResult:
    t: float
    df: float
    p_value: float


def welch_t(treatment: Moments, control: Moments) -> WelchResult:
    a = treatment.variance / treatment.n
    b = control.variance / control.n
    se = math.sqrt(a + b)
    t = (treatment.mean - control.mean) / se
    df = (a + b) ** 2 / (a**2 / (treatment.n - 1) + b**2 / (control.n - 1))
    from scipy.special import stdtr  # imported on use: scipy costs start-up time

    return WelchResult(t, df, float(2 * stdtr(df, -abs(t))))
