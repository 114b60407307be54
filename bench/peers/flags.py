"""The logical flags every SDK is configured with, defined once.

1. ``micro-offer``: an experiment, variants A/B/C weighted 34/33/33 and bucketed by user id,
   served only when ``country`` is one of ``MARKETS``; everyone else gets ``control``.
2. ``offers-enabled``: a plain boolean flag, on.
"""

from __future__ import annotations

EXPERIMENT_FLAG = "micro-offer"
ONOFF_FLAG = "offers-enabled"
CONTROL = "control"
SPLIT: tuple[tuple[str, int], ...] = (("A", 34), ("B", 33), ("C", 33))
SPLIT_TOTAL = sum(weight for _, weight in SPLIT)
MARKETS: tuple[str, ...] = ("US", "CA", "GB")
OTHER_COUNTRIES: tuple[str, ...] = ("DE", "FR", "BR", "IN", "JP")
# What a runner passes as the caller's default, so an SDK error never looks like a decision.
FALLBACK = "fallback"
# Evaluation time for SDKs that take it as an argument (edgeloop): a constant, never the clock.
NOW = 1_780_000_000.0
