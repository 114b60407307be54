"""Ready-made events: the seed's A/B/C micro-event (``edgeloop demo``) and an A/A check."""

from __future__ import annotations

from .event import DailyCycle, EventSpec, RetentionCurve, VariantEffect

EVENT_START = 1_796_148_000.0  # 2026-12-01T18:00:00Z: the demo's first event minute
HOUR_S = 3600.0

# The true effects of examples/micro-event.yaml's variants (what the platform has to find out).
# C's discount converts a little better than A but its timed audio cue interrupts the stream:
# chat valence after exposure drops by 30 % — the harm the guardrail must catch.
SEED_MATRIX: dict[str, VariantEffect] = {
    "A": VariantEffect(  # merch pop-up + free trial token (edge overlay)
        conversion_15m=0.08,
        revenue_mean=24.0,
        valence_shift=0.0,
        retention=RetentionCurve(d1=0.30, d7=0.12, d30=0.05),
        conversion_kind="purchase",
        cta="merch_popup",
    ),
    "B": VariantEffect(  # chat-only offer + exclusive emoji pack (client)
        conversion_15m=0.06,
        revenue_mean=4.0,
        valence_shift=0.08,
        retention=RetentionCurve(d1=0.32, d7=0.14, d30=0.06),
        conversion_kind="purchase",
        cta="emoji_pack",
    ),
    "C": VariantEffect(  # timed audio cue + 10 % ticket discount (hybrid)
        conversion_15m=0.085,
        revenue_mean=36.0,
        valence_shift=-0.30,
        retention=RetentionCurve(d1=0.26, d7=0.09, d30=0.035),
        conversion_kind="ticket",
        cta="ticket_discount",
    ),
}


def seed_matrix_event(
    *,
    flag: str = "micro-event-offer",
    arrivals_per_min: float = 50.0,
    hours: float = 72.0,
    seed: int = 7,
    start: float = EVENT_START,
    daily_cycle: bool = True,
) -> EventSpec:
    """The 72-hour micro-event of the demo: arrivals swing daily around ``arrivals_per_min``."""
    rate = DailyCycle(arrivals_per_min, swing=0.4) if daily_cycle else arrivals_per_min
    return EventSpec(
        flag=flag,
        start=start,
        duration_s=hours * HOUR_S,
        arrivals_per_min=rate,
        effects=SEED_MATRIX,
        seed=seed,
    )


def harmless_copy(effects: dict[str, VariantEffect], like: str) -> dict[str, VariantEffect]:
    """Every variant behaves exactly like ``like``: an A/A(/A) event, where no guardrail
    should ever fire."""
    return dict.fromkeys(effects, effects[like])
