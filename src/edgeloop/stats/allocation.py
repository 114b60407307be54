"""Adaptive allocation: Thompson sampling on the primary (conversion) metric.

Each arm's conversion rate is estimated **per allocation period** and combined with the periods'
total traffic as weights (post-stratification): when weights change between periods, an arm that
got more traffic in a good hour does not look better for it (Simpson's paradox), so changing
traffic cannot bias the result. With that stratified rate r̂ₐ and its variance
vₐ = Σ_p (N_p/N)² r̂ₐₚ(1 − r̂ₐₚ)/nₐₚ, the chance that arm a is best is estimated from draws of
N(r̂ₐ, vₐ); the new weights are that chance, squeezed so none falls below ``floor``:
wₐ = floor + (1 − k·floor)·P(a best). Arms with fewer than ``min_samples`` exposures keep the
weights they have (no re-weighting on noise). The random generator is passed in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

PeriodCounts = Mapping[float, Mapping[str, tuple[float, float]]]  # period → arm → (n, conversions)


def stratified_rates(periods: PeriodCounts, arms: list[str]) -> dict[str, tuple[float, float]]:
    """(rate, variance) per arm over the periods in which every arm had traffic."""
    usable = [p for p in periods.values() if all(p.get(a, (0, 0))[0] > 0 for a in arms)]
    total = sum(sum(p[a][0] for a in arms) for p in usable)
    out: dict[str, tuple[float, float]] = {}
    for arm in arms:
        rate = var = 0.0
        for p in usable:
            share = sum(p[a][0] for a in arms) / total
            n, x = p[arm]
            r = x / n
            rate += share * r
            var += share**2 * max(r * (1 - r), 1.0 / (n + 1)) / n
        out[arm] = (rate, var) if total else (math.nan, math.inf)
    return out


def thompson_weights(
    periods: PeriodCounts,
    current: Mapping[str, float],
    *,
    floor: float,
    min_samples: int,
    rng: np.random.Generator,
    draws: int = 20_000,
) -> dict[str, float]:
    """New weights (summing to 1) for the arms in ``current``."""
    arms = list(current)
    exposures = {a: sum(p.get(a, (0, 0))[0] for p in periods.values()) for a in arms}
    if any(exposures[a] < min_samples for a in arms):
        total = sum(current.values())
        return {a: current[a] / total for a in arms}
    rates = stratified_rates(periods, arms)
    means = np.array([rates[a][0] for a in arms])
    sds = np.sqrt(np.array([rates[a][1] for a in arms]))
    samples = rng.normal(means, sds, size=(draws, len(arms)))
    best = np.bincount(samples.argmax(axis=1), minlength=len(arms)) / draws
    k = len(arms)
    return {a: float(floor + (1 - k * floor) * best[i]) for i, a in enumerate(arms)}
