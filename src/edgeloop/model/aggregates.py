"""What leaves an edge: additive sufficient statistics and pseudonymous user-level records.

No field here ever holds a raw attendee id: records carry HMAC pseudonyms (see
edgeloop.privacy), cells carry only sums.
"""

from __future__ import annotations

import msgspec

CELL_FIELDS = (
    "exposures",  # attendees first exposed in this bucket
    "converters",  # of them, attendees who converted within the attribution window
    "revenue",  # Σ conversion value within the window
    "revenue_sq",  # Σ over attendees of (their conversion value in the window)²
    "chat_n",  # chat items (messages and emoji) by exposed attendees after exposure
    "chat_sum",  # Σ valence of those items
    "chat_sq",  # Σ valence²
    # Per attendee i with kᵢ chat items summing to sᵢ (for the sentiment index's standard error
    # over attendees rather than items; see edgeloop.stats.moments.Ratio):
    "chat_k2",  # Σᵢ kᵢ²
    "chat_s2",  # Σᵢ sᵢ²
    "chat_ks",  # Σᵢ kᵢ sᵢ
    "pre_n",  # exposed attendees with a pre-exposure sentiment baseline
    "pre_sum",  # Σ baseline (the pre-period covariate x)
    "pre_sq",  # Σ x²
    "pre_conv",  # Σ x · converted   (cross-product for CUPED on conversion)
)


class BatchCell(msgspec.Struct, frozen=True):
    experiment: str
    variant: str
    bucket: float
    stats: dict[str, float]


class UnitRecord(msgspec.Struct, frozen=True):
    experiment: str
    pseudonym: str
    kind: str  # exposure | conversion | return
    at: float
    variant: str | None = None
    value: float = 0.0


class AggregateBatch(msgspec.Struct, frozen=True):
    batch_id: str
    edge: str
    created: float
    sample_rate: float
    cells: list[BatchCell]
    records: list[UnitRecord]


def decode_aggregate_batch(body: bytes) -> AggregateBatch:
    return msgspec.json.decode(body, type=AggregateBatch)
