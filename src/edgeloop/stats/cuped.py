"""CUPED (Deng, Xu, Kohavi & Walker 2013): less variance from a pre-period covariate x.

    θ = cov(x, y) / var(x)   (pooled over both arms)
    ȳ_adj = ȳ − θ (x̄ − μ_x),  μ_x the pooled mean of x
    var(y_adj) = var(y) − 2θ cov(x, y) + θ² var(x)

All from sums per arm: n, Σx, Σx², Σy, Σy², Σxy.
"""

from __future__ import annotations

from dataclasses import dataclass

from .moments import Moments


@dataclass(frozen=True, slots=True)
class Paired:
    """Per-arm sums of a metric y and a pre-period covariate x over the same units."""

    n: float
    x: float
    x_sq: float
    y: float
    y_sq: float
    xy: float

    def __add__(self, o: Paired) -> Paired:
        return Paired(
            self.n + o.n,
            self.x + o.x,
            self.x_sq + o.x_sq,
            self.y + o.y,
            self.y_sq + o.y_sq,
            self.xy + o.xy,
        )


def cuped_theta(*arms: Paired) -> float:
    pooled = arms[0]
    for arm in arms[1:]:
        pooled = pooled + arm
    n = pooled.n
    cov = (pooled.xy - pooled.x * pooled.y / n) / (n - 1)
    var_x = (pooled.x_sq - pooled.x**2 / n) / (n - 1)
    return cov / var_x if var_x > 0 else 0.0


def cuped_adjust(arm: Paired, theta: float, mu_x: float) -> Moments:
    """The arm's metric as Moments of y − θ (x − μ_x): same n, adjusted sums."""
    n = arm.n
    # Σ(y − θx + θμ)  and  Σ(y − θx + θμ)² expanded over the sums we have.
    c = theta * mu_x
    total = arm.y - theta * arm.x + n * c
    total_sq = (
        arm.y_sq
        + theta**2 * arm.x_sq
        + n * c**2
        - 2 * theta * arm.xy
        + 2 * c * arm.y
        - 2 * theta * c * arm.x
    )
    return Moments(n, total, total_sq)
