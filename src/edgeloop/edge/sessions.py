"""Live per-session context: rolling features derived from signals, merged into decisions.

Features (what targeting rules can read):
    dwell_s        seconds since the attendee's first signal of this session
    reactions_pos  positive reactions (emoji or chat with valence > +0.05)
    reactions_neg  negative reactions (valence < -0.05)
    hover_ms       total overlay hover time
    chat_rate      chat messages per minute, exponentially decayed (half-life 60 s)
    sentiment      rolling chat valence in [-1, 1] (exponentially weighted, alpha 0.3)
    mic_active     event-wide: the creator's mic level was above 0.2 in the last 10 s

A session object holds a fixed set of slots (no per-session dicts), so memory per live session
is bounded and small; sessions idle longer than the TTL are dropped by ``expire``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

POSITIVE = 0.05
NEGATIVE = -0.05
CHAT_HALF_LIFE_S = 60.0
SENTIMENT_ALPHA = 0.3
MIC_THRESHOLD = 0.2
MIC_WINDOW_S = 10.0
DEFAULT_TTL_S = 30 * 60.0
_DECAY = math.log(2) / CHAT_HALF_LIFE_S


class Session:
    __slots__ = (
        "attendee",
        "chat_at",
        "chat_level",
        "hover_ms",
        "last_seen",
        "reactions_neg",
        "reactions_pos",
        "sentiment",
        "started",
        "valence_n",
        "valence_sum",
    )

    def __init__(self, attendee: str, now: float) -> None:
        self.attendee = attendee
        self.started = now
        self.last_seen = now
        self.reactions_pos = 0
        self.reactions_neg = 0
        self.hover_ms = 0
        self.chat_level = 0.0  # decayed count of chat messages at chat_at
        self.chat_at = now
        self.sentiment = 0.0
        self.valence_n = 0  # chat items so far, and their valences' sum: the plain mean is
        self.valence_sum = 0.0  # an experiment's pre-exposure baseline (see ``baseline``)

    def react(self, valence: float) -> None:
        if valence > POSITIVE:
            self.reactions_pos += 1
        elif valence < NEGATIVE:
            self.reactions_neg += 1
        self.sentiment += SENTIMENT_ALPHA * (valence - self.sentiment)
        self.valence_n += 1
        self.valence_sum += valence

    def baseline(self) -> float | None:
        """Mean valence of this session's chat items so far; None before the first one. (The
        rolling ``sentiment`` starts at 0 and leans on the latest items: a biased baseline.)"""
        return self.valence_sum / self.valence_n if self.valence_n else None

    def chat(self, now: float) -> None:
        self.chat_level = self.chat_level * math.exp(-_DECAY * max(0.0, now - self.chat_at)) + 1.0
        self.chat_at = now

    def chat_rate(self, now: float) -> float:
        """Messages per minute: the decayed count is a rate estimate over ~1/decay seconds."""
        level = self.chat_level * math.exp(-_DECAY * max(0.0, now - self.chat_at))
        return level * _DECAY * 60.0

    def features(self, now: float, mic_active: bool) -> dict[str, Any]:
        return {
            "dwell_s": max(0.0, now - self.started),
            "reactions_pos": self.reactions_pos,
            "reactions_neg": self.reactions_neg,
            "hover_ms": self.hover_ms,
            "chat_rate": self.chat_rate(now),
            "sentiment": self.sentiment,
            "mic_active": mic_active,
        }


class SessionTable:
    """All live sessions of one edge, plus the event-wide microphone state."""

    def __init__(self, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.ttl_s = ttl_s
        self.sessions: dict[str, Session] = {}
        self.mic_loud_at = -math.inf

    def __len__(self) -> int:
        return len(self.sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(self.sessions.values())

    def get(self, attendee: str) -> Session | None:
        return self.sessions.get(attendee)

    def touch(self, attendee: str, now: float) -> Session:
        session = self.sessions.get(attendee)
        if session is None:
            session = self.sessions[attendee] = Session(attendee, now)
        elif now > session.last_seen:
            session.last_seen = now
        return session

    def end(self, attendee: str) -> None:
        self.sessions.pop(attendee, None)

    def mic(self, level: float, now: float) -> None:
        if level > MIC_THRESHOLD:
            self.mic_loud_at = max(self.mic_loud_at, now)

    def mic_active(self, now: float) -> bool:
        return now - self.mic_loud_at <= MIC_WINDOW_S

    def context(self, base: dict[str, Any], now: float) -> dict[str, Any]:
        """``base`` (what the client sent) with the attendee's live features on top."""
        attendee = base.get("targetingKey")
        session = self.sessions.get(attendee) if isinstance(attendee, str) else None
        if session is None:
            return base
        return {**base, **session.features(now, self.mic_active(now))}

    def expire(self, now: float) -> int:
        """Drop sessions idle for longer than the TTL; returns how many."""
        cutoff = now - self.ttl_s
        stale = [a for a, s in self.sessions.items() if s.last_seen < cutoff]
        for attendee in stale:
            del self.sessions[attendee]
        return len(stale)
