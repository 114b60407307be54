"""Signal batches: judged per item, every signal type, every limit, and never a surprise exception.

``decode_batch`` is the edge's front door for POST /v1/signals and the attach socket, so the
properties matter more than the examples: whatever bytes arrive, the result is either a
``BatchError`` (the request as a whole is unusable) or a ``Batch`` that accounts for every item.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edgeloop.model.signals import (
    MAX_BATCH,
    MAX_BODY_BYTES,
    MAX_EMOJI_LENGTH,
    MAX_FUTURE_S,
    MAX_ID_LENGTH,
    MAX_PAST_S,
    MAX_TEXT_LENGTH,
    SIGNAL_TYPES,
    Batch,
    BatchError,
    ChatEmoji,
    ChatMessage,
    Conversion,
    CtaClick,
    Join,
    Leave,
    MicActivity,
    OverlayDwell,
    OverlayHover,
    Return,
    decode_batch,
    decode_signal,
)

NOW = 1_796_148_000.0


def body(items: Any) -> bytes:
    return json.dumps(items, ensure_ascii=False).encode()


def join(attendee: str = "att-1", ts: float = NOW) -> dict[str, Any]:
    return {"type": "join", "ts": ts, "attendee": attendee}


# One valid example of every signal type, and what it decodes to.
EXAMPLES: dict[str, tuple[dict[str, Any], Any]] = {
    "join": (join(), Join(NOW, "att-1")),
    "leave": ({"type": "leave", "ts": NOW, "attendee": "att-1"}, Leave(NOW, "att-1")),
    "chat_message": (
        {"type": "chat_message", "ts": NOW, "attendee": "att-1", "text": "love it"},
        ChatMessage(NOW, "att-1", "love it"),
    ),
    "chat_emoji": (
        {"type": "chat_emoji", "ts": NOW, "attendee": "att-1", "emoji": "🔥"},
        ChatEmoji(NOW, "att-1", "🔥"),
    ),
    "overlay_hover": (
        {"type": "overlay_hover", "ts": NOW, "attendee": "att-1", "ms": 1200, "overlay": "merch"},
        OverlayHover(NOW, "att-1", 1200, "merch"),
    ),
    "overlay_dwell": (
        {"type": "overlay_dwell", "ts": NOW, "attendee": "att-1", "ms": 5000},
        OverlayDwell(NOW, "att-1", 5000, None),
    ),
    "cta_click": (
        {"type": "cta_click", "ts": NOW, "attendee": "att-1", "cta": "buy"},
        CtaClick(NOW, "att-1", "buy"),
    ),
    "mic_activity": ({"type": "mic_activity", "ts": NOW, "level": 0.7}, MicActivity(NOW, 0.7)),
    "conversion": (
        {
            "type": "conversion",
            "ts": NOW,
            "attendee": "att-1",
            "kind": "purchase",
            "value": 12.5,
            "currency": "EUR",
        },
        Conversion(NOW, "att-1", "purchase", 12.5, "EUR"),
    ),
    "return": ({"type": "return", "ts": NOW, "attendee": "att-1"}, Return(NOW, "att-1")),
}


def test_examples_cover_every_signal_type() -> None:
    assert set(EXAMPLES) == set(SIGNAL_TYPES)
    assert len(SIGNAL_TYPES) == 10


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_every_signal_type_decodes(kind: str) -> None:
    raw, expected = EXAMPLES[kind]
    batch = decode_batch(body([raw]), NOW)
    assert batch.accepted == [expected]
    assert batch.rejected == []
    assert decode_signal(body(raw)) == expected


def test_a_whole_batch_of_every_type_in_one_pass() -> None:
    raws = [raw for raw, _ in EXAMPLES.values()]
    batch = decode_batch(body(raws), NOW)
    assert batch.accepted == [expected for _, expected in EXAMPLES.values()]
    assert batch.rejected == []


def test_defaults_of_optional_fields() -> None:
    conversion = decode_batch(
        body([{"type": "conversion", "ts": NOW, "attendee": "a", "kind": "donation"}]), NOW
    ).accepted[0]
    assert isinstance(conversion, Conversion)
    assert (conversion.value, conversion.currency) == (0.0, "USD")
    hover = decode_batch(
        body([{"type": "overlay_hover", "ts": NOW, "attendee": "a", "ms": 0}]), NOW
    ).accepted[0]
    assert isinstance(hover, OverlayHover) and hover.overlay is None


def test_per_item_valid_ones_accepted_bad_ones_reported_with_index_and_reason() -> None:
    items = [
        join("a"),  # 0 ok
        {"type": "teleport", "ts": NOW, "attendee": "a"},  # 1 unknown type
        {"type": "chat_emoji", "ts": NOW, "attendee": "b", "emoji": "👍"},  # 2 ok
        {"type": "overlay_hover", "ts": NOW, "attendee": "c", "ms": -5},  # 3 negative ms
        42,  # 4 not an object
        {"type": "join", "ts": NOW},  # 5 no attendee
        {"type": "join", "ts": NOW, "attendee": "d", "extra": 1},  # 6 unknown field
        join("e", NOW - MAX_PAST_S - 10),  # 7 too old
        {"type": "mic_activity", "ts": NOW, "level": 0.3},  # 8 ok
        {"type": "conversion", "ts": NOW, "attendee": "f", "kind": "refund"},  # 9 bad kind
        {"type": "conversion", "ts": NOW, "attendee": "f", "kind": "ticket", "currency": "usd"},
    ]
    batch = decode_batch(body(items), NOW)
    assert batch.accepted == [
        Join(NOW, "a"),
        ChatEmoji(NOW, "b", "👍"),
        MicActivity(NOW, 0.3),
    ]
    reasons = {r.index: r.reason for r in batch.rejected}
    assert sorted(reasons) == [1, 3, 4, 5, 6, 7, 9, 10]
    assert "teleport" in reasons[1]
    assert "$.ms" in reasons[3]
    assert "object" in reasons[4]
    assert "attendee" in reasons[5]
    assert "extra" in reasons[6]
    assert "past" in reasons[7]
    assert "$.kind" in reasons[9]
    assert "$.currency" in reasons[10]
    assert [r.index for r in batch.rejected] == sorted(reasons)  # in batch order


def test_empty_batch_is_fine() -> None:
    assert decode_batch(b"[]", NOW) == Batch([], [])


# limits ----------------------------------------------------------------------------------------


def test_batch_size_limit() -> None:
    at_limit = decode_batch(body([join(f"a{i}") for i in range(MAX_BATCH)]), NOW)
    assert len(at_limit.accepted) == MAX_BATCH
    with pytest.raises(BatchError, match=str(MAX_BATCH)):
        decode_batch(body([join(f"a{i}") for i in range(MAX_BATCH + 1)]), NOW)
    # Also when the over-long batch has bad items (the item-by-item path).
    with pytest.raises(BatchError, match=str(MAX_BATCH)):
        decode_batch(body([join("a"), 1] * (MAX_BATCH // 2 + 1)), NOW)


def test_body_size_limit() -> None:
    one = {"type": "chat_message", "ts": NOW, "attendee": "a", "text": "x" * 1500}
    fits = MAX_BODY_BYTES // (len(body(one)) + 2)  # items (", "-joined) under the limit
    items = [one] * (fits + 1)
    big = body(items)
    assert len(items) <= MAX_BATCH and len(big) > MAX_BODY_BYTES
    with pytest.raises(BatchError, match="bytes"):
        decode_batch(big, NOW)
    # Exactly at the limit is fine (padding with whitespace keeps it valid JSON).
    small = body(items[:fits])
    padded = small + b" " * (MAX_BODY_BYTES - len(small))
    assert len(padded) == MAX_BODY_BYTES
    assert len(decode_batch(padded, NOW).accepted) == fits
    with pytest.raises(BatchError, match="bytes"):
        decode_batch(padded + b" ", NOW)


@pytest.mark.parametrize(
    ("field", "kind", "limit", "extra"),
    [
        ("attendee", "join", MAX_ID_LENGTH, {}),
        ("text", "chat_message", MAX_TEXT_LENGTH, {}),
        ("emoji", "chat_emoji", MAX_EMOJI_LENGTH, {}),
        ("overlay", "overlay_hover", 200, {"ms": 1}),
        ("cta", "cta_click", 200, {}),
    ],
)
def test_string_length_limits(field: str, kind: str, limit: int, extra: dict[str, Any]) -> None:
    def item(length: int) -> dict[str, Any]:
        base: dict[str, Any] = {"type": kind, "ts": NOW, "attendee": "a", **extra}
        if field == "text":
            base["text"] = ""
        base[field] = "é" * length  # lengths count characters, not UTF-8 bytes
        return base

    batch = decode_batch(body([item(limit), item(limit + 1)]), NOW)
    assert len(batch.accepted) == 1
    assert [r.index for r in batch.rejected] == [1]
    assert f"$.{field}" in batch.rejected[0].reason
    assert str(limit) in batch.rejected[0].reason


@pytest.mark.parametrize(("field", "kind"), [("attendee", "join"), ("emoji", "chat_emoji")])
def test_empty_strings_are_refused_where_they_mean_nothing(field: str, kind: str) -> None:
    item = {"type": kind, "ts": NOW, "attendee": "a", "emoji": "🔥"}
    item[field] = ""
    if kind == "join":
        del item["emoji"]
    batch = decode_batch(body([item]), NOW)
    assert batch.accepted == []
    assert f"$.{field}" in batch.rejected[0].reason


def test_numeric_bounds() -> None:
    items = [
        {"type": "mic_activity", "ts": NOW, "level": 1.5},
        {"type": "mic_activity", "ts": NOW, "level": -0.1},
        {"type": "overlay_dwell", "ts": NOW, "attendee": "a", "ms": 24 * 3600 * 1000 + 1},
        {"type": "conversion", "ts": NOW, "attendee": "a", "kind": "purchase", "value": -1},
        {"type": "conversion", "ts": NOW, "attendee": "a", "kind": "purchase", "value": 2e9},
        {"type": "join", "ts": -1, "attendee": "a"},
        {"type": "join", "ts": "yesterday", "attendee": "a"},
        {"type": "mic_activity", "ts": NOW, "level": 1},
        {"type": "overlay_dwell", "ts": NOW, "attendee": "a", "ms": 24 * 3600 * 1000},
    ]
    # Python's json cannot write an out-of-range number, so splice one in as text.
    parts = [body(item) for item in items]
    parts.insert(7, b'{"type":"join","ts":1e400,"attendee":"a"}')
    raw = b"[" + b",".join(parts) + b"]"
    batch = decode_batch(raw, NOW)
    assert [r.index for r in batch.rejected] == list(range(8))
    assert batch.accepted == [
        MicActivity(NOW, 1.0),
        OverlayDwell(NOW, "a", 24 * 3600 * 1000),
    ]


def test_timestamps_too_far_in_the_past_or_future_are_rejected() -> None:
    items = [
        join("edge-past", NOW - MAX_PAST_S),  # exactly at the limit: fine
        join("too-old", NOW - MAX_PAST_S - 0.5),
        join("edge-future", NOW + MAX_FUTURE_S),
        join("too-new", NOW + MAX_FUTURE_S + 0.5),
        join("an-hour-ahead", NOW + 3600),
        join("now", NOW),
    ]
    batch = decode_batch(body(items), NOW)
    assert [s.attendee for s in batch.accepted] == ["edge-past", "edge-future", "now"]  # type: ignore[union-attr]
    assert [r.index for r in batch.rejected] == [1, 3, 4]
    assert "past" in batch.rejected[0].reason
    assert "future" in batch.rejected[1].reason
    assert "future" in batch.rejected[2].reason


def test_time_is_judged_on_the_item_by_item_path_too() -> None:
    items = [join("old", NOW - 2 * MAX_PAST_S), 7, join("ok")]
    batch = decode_batch(body(items), NOW)
    assert batch.accepted == [Join(NOW, "ok")]
    assert [(r.index, "past" in r.reason) for r in batch.rejected] == [(0, True), (1, False)]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{}",
        b'{"type": "join", "ts": 1, "attendee": "a"}',
        b'"signals"',
        b"42",
        b"null",
        b"true",
        b"[",
        b"[1,]",
        b"\xff\xfe[]",
        b"[]garbage",
        b"[NaN]",
    ],
)
def test_batch_error_for_anything_that_is_not_an_array(raw: bytes) -> None:
    with pytest.raises(BatchError):
        decode_batch(raw, NOW)


@pytest.mark.parametrize("depth", [999, 1000, 5000])
def test_deeply_nested_json_is_a_batch_error_not_a_crash(depth: int) -> None:
    """Regression: msgspec raises RecursionError past ~1000 levels; it must not escape."""
    nested = b"[" * depth + b"]" * depth
    try:
        batch = decode_batch(nested, NOW)
    except BatchError:
        pass
    else:
        assert len(batch.accepted) + len(batch.rejected) == 1
    # The same inside an otherwise valid batch: that item is rejected, the good one kept.
    mixed = body([join("a")])[:-1] + b"," + nested + b"]"
    try:
        batch = decode_batch(mixed, NOW)
    except BatchError:
        pass
    else:
        assert batch.accepted == [Join(NOW, "a")]
        assert [r.index for r in batch.rejected] == [1]
    inside = b'[{"type":"join","ts":%d,"attendee":"a","x":%s}]' % (int(NOW), nested)
    try:
        batch = decode_batch(inside, NOW)
    except BatchError:
        pass
    else:
        assert batch.accepted == [] and [r.index for r in batch.rejected] == [0]


def test_decode_signal_raises_msgspec_errors() -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_signal(b'{"type":"join","ts":1}')
    with pytest.raises(msgspec.DecodeError):
        decode_signal(b"{")


# properties ------------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=25,
)

_field_values: dict[str, st.SearchStrategy[Any]] = {
    "ts": st.sampled_from([NOW, NOW - 10, NOW + 10, NOW - MAX_PAST_S - 1, NOW + 3600, -1, 0])
    | st.floats(allow_nan=False),
    "attendee": st.text(max_size=MAX_ID_LENGTH + 2) | st.sampled_from(["att-1", "att-2"]),
    "text": st.text(max_size=50),
    "emoji": st.sampled_from(["🔥", "😂", "👍🏽", "", "x" * 17]),
    "ms": st.integers(min_value=-5, max_value=24 * 3600 * 1000 + 5),
    "overlay": st.none() | st.text(max_size=5),
    "cta": st.none() | st.sampled_from(["buy", ""]),
    "level": st.floats(min_value=-0.5, max_value=1.5, allow_nan=False),
    "kind": st.sampled_from(["purchase", "ticket", "refund"]),
    "value": st.floats(min_value=-1, max_value=2e9, allow_nan=False),
    "currency": st.sampled_from(["USD", "EUR", "usd", "EURO"]),
}


@st.composite
def signal_like(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly-valid signals with random omissions and wrong values: the realistic bad input."""
    kind = draw(st.sampled_from([*SIGNAL_TYPES, "teleport"]))
    raw = dict(EXAMPLES.get(kind, EXAMPLES["join"])[0])
    raw["type"] = kind
    for name in sorted(raw):
        if name == "type":
            continue
        choice = draw(st.integers(0, 9))
        if choice == 0:
            del raw[name]
        elif choice <= 3:
            raw[name] = draw(_field_values.get(name, json_values))
    if draw(st.integers(0, 19)) == 0:
        raw[draw(st.text(min_size=1, max_size=5))] = 1
    return raw


items_strategy = st.lists(signal_like() | json_values, max_size=30)


def _check_accounting(items: list[Any], batch: Batch) -> None:
    assert len(batch.accepted) + len(batch.rejected) == len(items)
    indexes = [r.index for r in batch.rejected]
    assert indexes == sorted(set(indexes))
    assert all(0 <= i < len(items) for i in indexes)
    assert all(isinstance(r.reason, str) and r.reason for r in batch.rejected)
    # Accepted signals are exactly the other items, in order, decoded one by one.
    kept = [items[i] for i in range(len(items)) if i not in set(indexes)]
    assert batch.accepted == [decode_signal(body(item)) for item in kept]
    lo, hi = NOW - MAX_PAST_S, NOW + MAX_FUTURE_S
    assert all(lo <= s.ts <= hi for s in batch.accepted)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=items_strategy)
def test_property_arbitrary_json_arrays_are_fully_accounted_for(items: list[Any]) -> None:
    raw = body(items)
    try:
        batch = decode_batch(raw, NOW)
    except BatchError:
        # Only a whole-request problem is allowed here: JSON with numbers msgspec cannot hold.
        with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
            msgspec.json.decode(raw)
        return
    _check_accounting(items, batch)


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_property_arbitrary_json_never_raises_anything_but_batch_error(value: Any) -> None:
    raw = body(value)
    try:
        batch = decode_batch(raw, NOW)
    except BatchError:
        return
    assert isinstance(value, list)
    _check_accounting(value, batch)


@settings(max_examples=500, deadline=None)
@given(
    raw=st.binary(max_size=300)
    | st.builds(lambda items, cut: body(items)[:cut], items_strategy, st.integers(0, 400))
    | st.builds(lambda d: b"[" * d + b"]" * d, st.integers(900, 1200))
)
@example(raw=b"[" * 1000 + b"]" * 1000)
@example(raw=b'[{"type":"join","ts":1796148000,"attendee":"a"},' + b"[" * 2000 + b"]" * 2000 + b"]")
def test_property_arbitrary_bytes_never_raise_anything_but_batch_error(raw: bytes) -> None:
    try:
        batch = decode_batch(raw, NOW)
    except BatchError:
        return
    # A batch came back, so the body was a JSON array: every element is accounted for.
    count = len(msgspec.json.decode(raw, type=list[msgspec.Raw]))
    assert len(batch.accepted) + len(batch.rejected) == count
