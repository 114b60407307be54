"""Deterministic privacy sampling: a fixed fraction of attendees contributes user-level records.

An attendee is in the sample when the first 32 bits of their pseudonym, read as a fraction of
2^32, fall below the rate. The same attendee is always in or out for one experiment (no
re-rolling per record), different experiments sample independently (different keys), and the
analysis knows the rate, so it can scale sampled user-level counts back up. Aggregate counts are
never sampled.
"""

from __future__ import annotations


def in_sample(pseudonym_hex: str, rate: float) -> bool:
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    return int(pseudonym_hex[:8], 16) < rate * 4294967296.0
