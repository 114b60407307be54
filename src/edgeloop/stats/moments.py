"""Sufficient statistics of one metric in one arm: n, Σy, Σy² (and their estimates).

Everything in ``edgeloop.stats`` works on these sums, never on raw observations, so reports over
a million exposures cost the same as over a hundred.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Moments:
    n: float
    total: float
    total_sq: float

    @classmethod
    def proportion(cls, n: float, successes: float) -> Moments:
        """0/1 outcomes: Σy² = Σy."""
        return cls(n, successes, successes)

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n > 0 else math.nan

    @property
    def variance(self) -> float:
        """Sample variance (n − 1 in the denominator); NaN below two observations."""
        if self.n < 2:
            return math.nan
        return max(0.0, (self.total_sq - self.total * self.total / self.n) / (self.n - 1))

    @property
    def se(self) -> float:
        """Standard error of the mean."""
        return math.sqrt(self.variance / self.n) if self.n >= 2 else math.nan

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.n + other.n, self.total + other.total, self.total_sq + other.total_sq)


@dataclass(frozen=True, slots=True)
class Ratio:
    """A ratio metric over units: Σsᵢ / Σkᵢ, e.g. the mean valence of chat items, where attendee
    i posted kᵢ items with valences summing to sᵢ.

    Items of one attendee are not independent (a cheerful attendee posts cheerful items), so
    the standard error is taken over *units* by the delta method (Deng, Knoblich & Lu 2018):

        R = S/K,  se²(R) = n/(n − 1) · Σ(sᵢ − R kᵢ)² / K²
                         = n/(n − 1) · (Σs² − 2R Σks + R² Σk²) / K²

    which needs, besides n, K = Σk and S = Σs, the unit-level sums Σkᵢ², Σsᵢ², Σkᵢsᵢ.
    """

    n: float  # units (exposed attendees, including those who posted nothing)
    k: float  # Σ kᵢ
    s: float  # Σ sᵢ
    k_sq: float  # Σ kᵢ²
    s_sq: float  # Σ sᵢ²
    ks: float  # Σ kᵢ sᵢ

    @property
    def mean(self) -> float:
        return self.s / self.k if self.k > 0 else math.nan

    @property
    def se(self) -> float:
        if self.n < 2 or self.k <= 0:
            return math.nan
        r = self.s / self.k
        resid = max(0.0, self.s_sq - 2 * r * self.ks + r * r * self.k_sq)
        return math.sqrt(self.n / (self.n - 1) * resid) / self.k

    def __add__(self, other: Ratio) -> Ratio:
        return Ratio(
            self.n + other.n,
            self.k + other.k,
            self.s + other.s,
            self.k_sq + other.k_sq,
            self.s_sq + other.s_sq,
            self.ks + other.ks,
        )
