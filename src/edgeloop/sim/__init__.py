"""The micro-event simulator: attendees with known true effects, driving a real edge.

``event``: the simulator (:class:`MicroEventSimulator`), its specification (:class:`EventSpec`,
:class:`VariantEffect`, …) and targets (:class:`InProcessTarget`, :class:`HttpTarget`);
``scenarios``: the seed's A/B/C micro-event used by ``edgeloop demo``.
"""

from .event import (
    DEFAULT_AUDIENCE,
    AttendeeState,
    DailyCycle,
    EventSpec,
    HttpTarget,
    InProcessTarget,
    MicroEventSimulator,
    RetentionCurve,
    Segment,
    SendResult,
    Served,
    SimSummary,
    SimTarget,
    VariantEffect,
    VariantOutcome,
)
from .scenarios import EVENT_START, SEED_MATRIX, harmless_copy, seed_matrix_event

__all__ = [
    "DEFAULT_AUDIENCE",
    "EVENT_START",
    "SEED_MATRIX",
    "AttendeeState",
    "DailyCycle",
    "EventSpec",
    "HttpTarget",
    "InProcessTarget",
    "MicroEventSimulator",
    "RetentionCurve",
    "Segment",
    "SendResult",
    "Served",
    "SimSummary",
    "SimTarget",
    "VariantEffect",
    "VariantOutcome",
    "harmless_copy",
    "seed_matrix_event",
]
