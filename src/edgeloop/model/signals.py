"""Signals: what attendees' clients (and the creator's side) tell an edge, typed and bounded.

A batch is judged **per item**: valid signals are accepted even when others in the same batch
are rejected, and every rejected one is reported with its index and the reason. Limits are
explicit constants so the docs, the API and the tests agree on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec

MAX_BATCH = 1000
MAX_BODY_BYTES = 1 << 20
MAX_ID_LENGTH = 128
MAX_TEXT_LENGTH = 2000
MAX_EMOJI_LENGTH = 16
MAX_PAST_S = 24 * 3600.0  # a signal older than this is refused (clients buffer, but not for days)
MAX_FUTURE_S = 300.0  # a little clock skew is fine; an hour ahead is not

AttendeeId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
Timestamp = Annotated[float, msgspec.Meta(ge=0)]
Millis = Annotated[int, msgspec.Meta(ge=0, le=24 * 3600 * 1000)]
Money = Annotated[float, msgspec.Meta(ge=0, le=1e9)]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class _Signal(msgspec.Struct, frozen=True, tag_field="type", forbid_unknown_fields=True):
    ts: Timestamp


class _AttendeeSignal(_Signal, frozen=True):
    attendee: AttendeeId


class Join(_AttendeeSignal, frozen=True, tag="join"):
    pass


class Leave(_AttendeeSignal, frozen=True, tag="leave"):
    pass


class ChatMessage(_AttendeeSignal, frozen=True, tag="chat_message"):
    text: Annotated[str, msgspec.Meta(max_length=MAX_TEXT_LENGTH)]


class ChatEmoji(_AttendeeSignal, frozen=True, tag="chat_emoji"):
    emoji: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_EMOJI_LENGTH)]


class OverlayHover(_AttendeeSignal, frozen=True, tag="overlay_hover"):
    ms: Millis
    overlay: Name | None = None


class OverlayDwell(_AttendeeSignal, frozen=True, tag="overlay_dwell"):
    ms: Millis
    overlay: Name | None = None


class CtaClick(_AttendeeSignal, frozen=True, tag="cta_click"):
    cta: Name | None = None


class MicActivity(_Signal, frozen=True, tag="mic_activity"):
    """The creator's microphone: event-wide, not about any attendee."""

    level: Annotated[float, msgspec.Meta(ge=0, le=1)]


ConversionKind = Literal["purchase", "subscription", "trial_claim", "donation", "ticket"]


class Conversion(_AttendeeSignal, frozen=True, tag="conversion"):
    kind: ConversionKind
    value: Money = 0.0
    currency: Currency = "USD"


class Return(_AttendeeSignal, frozen=True, tag="return"):
    """A later visit by the same attendee: what retention is measured on."""


Signal = (
    Join
    | Leave
    | ChatMessage
    | ChatEmoji
    | OverlayHover
    | OverlayDwell
    | CtaClick
    | MicActivity
    | Conversion
    | Return
)
SIGNAL_TYPES = tuple(t.__struct_config__.tag for t in Signal.__args__)  # type: ignore[attr-defined]

_batch = msgspec.json.Decoder(list[Signal])
_items = msgspec.json.Decoder(list[msgspec.Raw])
_one = msgspec.json.Decoder(Signal)


@dataclass(frozen=True, slots=True)
class Rejected:
    index: int
    reason: str


@dataclass(frozen=True, slots=True)
class Batch:
    accepted: list[Signal]
    rejected: list[Rejected]


class BatchError(ValueError):
    """The request as a whole is unusable (not JSON, not a list, too many items)."""


def decode_batch(body: bytes, now: float) -> Batch:
    """Decode a JSON array of signals, judging each item on its own.

    The common case — every item valid — is one msgspec pass; only a batch with a bad item is
    decoded again item by item to say which ones and why.
    """
    if len(body) > MAX_BODY_BYTES:
        raise BatchError(f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        signals = _batch.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return _decode_each(body, now)
    if len(signals) > MAX_BATCH:
        raise BatchError(f"more than {MAX_BATCH} signals in one batch")
    lo, hi = now - MAX_PAST_S, now + MAX_FUTURE_S
    if all(lo <= s.ts <= hi for s in signals):
        return Batch(signals, [])
    accepted: list[Signal] = []
    rejected: list[Rejected] = []
    for i, s in enumerate(signals):
        problem = _time_problem(s.ts, now)
        if problem:
            rejected.append(Rejected(i, problem))
        else:
            accepted.append(s)
    return Batch(accepted, rejected)


def _decode_each(body: bytes, now: float) -> Batch:
    try:
        items = _items.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise BatchError(f"expected a JSON array of signals: {exc}") from None
    except RecursionError:  # msgspec's nesting limit (~1000 levels): hostile, not a batch
        raise BatchError("expected a JSON array of signals: nested too deeply") from None
    if len(items) > MAX_BATCH:
        raise BatchError(f"more than {MAX_BATCH} signals in one batch")
    accepted: list[Signal] = []
    rejected: list[Rejected] = []
    for i, raw in enumerate(items):
        try:
            signal = _one.decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            rejected.append(Rejected(i, str(exc)))
            continue
        except RecursionError:
            rejected.append(Rejected(i, "nested too deeply"))
            continue
        problem = _time_problem(signal.ts, now)
        if problem:
            rejected.append(Rejected(i, problem))
        else:
            accepted.append(signal)
    return Batch(accepted, rejected)


def _time_problem(ts: float, now: float) -> str | None:
    if ts < now - MAX_PAST_S:
        return f"timestamp {ts:.0f} is more than {MAX_PAST_S:.0f} s in the past"
    if ts > now + MAX_FUTURE_S:
        return f"timestamp {ts:.0f} is more than {MAX_FUTURE_S:.0f} s in the future"
    return None


def decode_signal(data: bytes | str) -> Signal:
    """One signal (e.g. from the attach WebSocket); raises msgspec errors on bad input."""
    return _one.decode(data)
