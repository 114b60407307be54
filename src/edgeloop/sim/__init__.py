"""The micro-event simulator: attendees with known behaviour, for demos, tests and benchmarks."""

from .audience import Attendee, simulate_audience

__all__ = ["Attendee", "simulate_audience"]
