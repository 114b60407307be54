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
