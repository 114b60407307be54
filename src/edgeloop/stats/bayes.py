"""Bayesian summaries for people who ask "what's the chance B is better?".

NOT peeking-safe: these are fixed-sample quantities; looking at them repeatedly and stopping when
they look good inflates false wins. Decisions in edgeloop use the sequential intervals.

With flat priors and the normal approximation of each arm's mean, D = ȳ_t − ȳ_c ~ N(δ, σ²),
σ² = se_t² + se_c²:
    chance to beat control  P(D > 0) = Φ(δ/σ)
    expected loss of choosing treatment  E[max(0, −D)] = σ φ(δ/σ) − δ Φ(−δ/σ)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._normal import STD_NORMAL as _N
from .moments import Moments


@dataclass(frozen=True, slots=True)
class BayesSummary:
    chance_to_beat: float
    expected_loss: float


def bayes_summary(treatment: Moments, control: Moments) -> BayesSummary:
    delta = treatment.mean - control.mean
    sigma = math.sqrt(treatment.se**2 + control.se**2)
    if not sigma > 0:
        return BayesSummary(math.nan, math.nan)
    z = delta / sigma
    loss = sigma * float(_N.pdf(z)) - delta * float(_N.cdf(-z))
    return BayesSummary(float(_N.cdf(z)), loss)
