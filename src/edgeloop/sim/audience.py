"""A seeded audience of attendees with the live-signal attributes targeting rules read."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

# Where a creator's live audience comes from (core markets first), and how long people stay.
COUNTRIES: tuple[tuple[str, float], ...] = (
    ("US", 0.40),
    ("GB", 0.12),
    ("CA", 0.08),
    ("DE", 0.10),
    ("BR", 0.10),
    ("IN", 0.10),
    ("JP", 0.10),
)


@dataclass(frozen=True, slots=True)
class Attendee:
    attendee_id: str
    country: str
    dwell_s: float
    reactions_pos: int
    reactions_neg: int
    hover_ms: int

    def context(self) -> dict[str, Any]:
        """The evaluation context an edge would build for this attendee."""
        return {
            "targetingKey": self.attendee_id,
            "country": self.country,
            "dwell_s": self.dwell_s,
            "reactions_pos": self.reactions_pos,
            "reactions_neg": self.reactions_neg,
            "hover_ms": self.hover_ms,
        }


def simulate_audience(size: int, seed: int = 7) -> list[Attendee]:
    """``size`` attendees, the same list for the same seed.

    Dwell is log-normal (median ≈ 60 s: most people drift through, a tail stays for minutes);
    people who stay longer react more.
    """
    rng = random.Random(seed)
    names, weights = zip(*COUNTRIES, strict=True)
    out = []
    for n in range(size):
        dwell = round(rng.lognormvariate(4.1, 1.0), 1)
        engaged = min(1.0, dwell / 300)
        out.append(
            Attendee(
                attendee_id=f"att-{seed:04d}-{n:011d}",
                country=rng.choices(names, weights)[0],
                dwell_s=dwell,
                reactions_pos=sum(rng.random() < 0.05 + 0.5 * engaged for _ in range(3)),
                reactions_neg=int(rng.random() < 0.05),
                hover_ms=int(rng.expovariate(1 / 800)),
            )
        )
    return out
