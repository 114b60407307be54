"""What may be released from aggregates: k-anonymity suppression and optional DP noise.

- A cell (e.g. one variant in one time bucket) with fewer than ``k`` distinct attendees is
  suppressed: its counts are withheld, not rounded, and the report says it was suppressed.
- Optionally, released counts get noise from OpenDP's discrete Laplace (geometric) mechanism at
  privacy loss ``epsilon`` per count (sensitivity 1: one attendee changes a count by at most 1).
"""

from __future__ import annotations

from collections.abc import Callable

DEFAULT_K = 10


def suppressed(attendees: int, k: int = DEFAULT_K) -> bool:
    return attendees < k


def count_noiser(epsilon: float) -> Callable[[int], int]:
    """A function adding discrete Laplace noise with scale 1/epsilon to an integer count."""
    if not epsilon > 0:
        raise ValueError("epsilon must be positive")
    import opendp.prelude as dp

    dp.enable_features("contrib")
    measurement = dp.m.make_laplace(
        dp.atom_domain(T=int), dp.absolute_distance(T=int), scale=1.0 / epsilon
    )

    def noisy(count: int) -> int:
        return max(0, int(measurement(count)))

    return noisy
