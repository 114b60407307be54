"""Sample-ratio mismatch: do the observed arm sizes fit the configured weights?

Pearson's χ² goodness of fit, k − 1 degrees of freedom; an alert at p < 0.001 (a mismatch means
assignment or logging is broken, and every other number in the report is suspect).

The χ² p-value is a fixed-sample quantity: checked at every look of a 72-hour event (288 looks
at 15 minutes), an experiment with nothing wrong would cross p < 0.001 in a few percent of
events. What acts on its own (the decision loop's auto-pause) therefore uses the sequential
test of Lindon & Malek (2022, "Anytime-valid inference for multinomial count data"): a
Dirichlet-multinomial Bayes factor against the configured weights θ₀,

    BF_n = Γ(A) / Γ(A + n) · Π_i Γ(a_i + x_i) / Γ(a_i) / Π_i θ₀ᵢ^{x_i},   a = A θ₀,

a martingale under θ₀, so p_n = min(1, 1/BF_n) is valid at every look (Ville). The prior's
concentration A defaults to 100 (as in the authors' ``savvi`` package).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

SRM_ALPHA = 0.001
SRM_CONCENTRATION = 100.0


@dataclass(frozen=True, slots=True)
class SrmResult:
    chi2: float
    p_value: float
    mismatch: bool  # χ² p < alpha (fixed-sample: an alert for a person to look at)
    sequential_p: float = 1.0
    sequential_mismatch: bool = False  # anytime-valid: safe to act on at every look


def srm_sequential_p(
    observed: Sequence[float], weights: Sequence[float], concentration: float = SRM_CONCENTRATION
) -> float:
    """The anytime-valid p-value min(1, 1/BF_n) of the Dirichlet-multinomial test."""
    wsum = sum(weights)
    if wsum <= 0 or len(observed) < 2:
        return 1.0
    log_bf = math.lgamma(concentration) - math.lgamma(concentration + sum(observed))
    for x, w in zip(observed, weights, strict=True):
        theta = w / wsum
        if theta <= 0:
            if x > 0:
                return 0.0  # units in an arm that should have none
            continue
        a = concentration * theta
        log_bf += math.lgamma(a + x) - math.lgamma(a) - x * math.log(theta)
    return 1.0 if log_bf <= 0 else math.exp(-log_bf)


def srm_check(
    observed: Sequence[float],
    weights: Sequence[float],
    alpha: float = SRM_ALPHA,
    concentration: float = SRM_CONCENTRATION,
) -> SrmResult:
    total = sum(observed)
    wsum = sum(weights)
    if total <= 0 or len(observed) < 2 or wsum <= 0:
        return SrmResult(0.0, 1.0, False)
    expected = [total * w / wsum for w in weights]
    chi2 = 0.0
    for o, e in zip(observed, expected, strict=True):
        if e > 0:
            chi2 += (o - e) ** 2 / e
        elif o > 0:
            chi2 = math.inf
    from scipy.special import chdtrc  # imported on use: scipy costs start-up time

    p = float(chdtrc(len(observed) - 1, chi2))
    seq = srm_sequential_p(observed, weights, concentration)
    return SrmResult(chi2, p, bool(p < alpha), seq, bool(seq < alpha))


def srm_over_time(
    cells: Iterable[tuple[str, float, Mapping[str, float]]],
    timeline: Sequence[tuple[float, Mapping[str, float]]],
    arms: Sequence[str],
    bucket_s: float | None = None,
    alpha: float = SRM_ALPHA,
) -> SrmResult:
    """SRM when the configured weights changed during the experiment (a ramp, adaptive
    allocation): each time bucket's exposures are expected in the shares in force throughout
    that bucket, E_a = Σ_b N_b · w_a(b); a bucket during which the weights changed is left out
    (its arrivals saw two splits). ``timeline``: (from, weights) oldest first. ``bucket_s``:
    the cells' bucket width, by default the smallest gap between their bucket starts.

    The sequential p-value then tests the observed counts against the pooled expected shares —
    exact while the weights stay put, an approximation across changes."""
    per_bucket: dict[float, dict[str, float]] = defaultdict(lambda: dict.fromkeys(arms, 0.0))
    for variant, bucket, stats in cells:
        if variant in arms:
            per_bucket[bucket][variant] += stats.get("exposures", 0.0)
    starts = sorted(per_bucket)
    if bucket_s is None:
        gaps = [b - a for a, b in itertools.pairwise(starts) if b > a]
        bucket_s = min(gaps) if gaps else 300.0
    changes = [at for at, _ in timeline]
    observed = dict.fromkeys(arms, 0.0)
    expected = dict.fromkeys(arms, 0.0)
    for start in starts:
        i = bisect.bisect_right(changes, start) - 1
        if i < 0:
            i = 0  # cells from before the first recorded split: the first split
        if i + 1 < len(changes) and changes[i + 1] < start + bucket_s:
            continue  # the split changed during this bucket
        weights = timeline[i][1]
        wsum = sum(weights.get(a, 0.0) for a in arms)
        counts = per_bucket[start]
        n = sum(counts.values())
        if wsum <= 0 or n <= 0:
            continue
        for a in arms:
            observed[a] += counts[a]
            expected[a] += n * weights.get(a, 0.0) / wsum
    return srm_check([observed[a] for a in arms], [expected[a] for a in arms], alpha)
