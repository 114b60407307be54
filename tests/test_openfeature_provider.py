"""The OpenFeature provider, exercised through the official OpenFeature client."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from openfeature.hook import Hook
from openfeature.provider import AbstractProvider

from edgeloop.evaluate import compile_snapshot, evaluate
from edgeloop.model import FlagsValidationError, load_flags
from edgeloop.sdk import EdgeloopProvider
from edgeloop.sdk.openfeature import changed_flags

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "micro-offer.yaml"
LAUNCH = 1_796_148_000.0  # 2026-12-01T18:00:00Z
BEFORE, AFTER = LAUNCH - 60, LAUNCH + 60

DOC = """
metadata: {owner: growth, stage: live}
flags:
  dark-mode:
    type: boolean
    variants: {yes: true, no: false}
    default_variant: yes
  headline:
    type: string
    variants: {short: Go, long: Go now}
    default_variant: short
    metadata: {team: web, owner: copy}
    rules:
      - when: {attr: country, in: [US, CA]}
        variant: long
  max-items:
    type: integer
    variants: {few: 3, many: 10}
    default_variant: few
    rules:
      - when: {attr: plan, eq: pro}
        variant: many
  ratio:
    type: float
    variants: {low: 0.25, high: 0.75}
    default_variant: low
  layout:
    type: object
    variants: {grid: {cols: 3, tags: [a, b]}, list: {cols: 1, tags: []}}
    default_variant: grid
  killed:
    type: string
    state: DISABLED
    variants: {a: x}
    default_variant: a
  vip-only:
    type: string
    variants: {gold: gold}
    default_variant: null
    rules:
      - when: {attr: vip, eq: true}
        variant: gold
  launch-banner:
    type: string
    variants: {teaser: soon, live: now}
    default_variant: teaser
    rules:
      - when: {after: "2026-12-01T18:00:00Z"}
        variant: live
  cta:
    type: string
    variants: {control: Buy, treat: Grab it}
    default_variant: control
    rules:
      - split: {control: 50, treat: 50}
    experiment:
      key: cta-2026
      metrics: {primary: conversion_15m}
      channels: {control: client, treat: edge_overlay}
"""


@pytest.fixture(autouse=True)
def _fresh_api() -> Iterator[None]:
    api.shutdown()  # providers, handlers, hooks and the global context
    yield
    api.shutdown()


def use(provider: AbstractProvider) -> OpenFeatureClient:
    api.set_provider_and_wait(provider)
    return api.get_client()


@pytest.fixture
def provider() -> EdgeloopProvider:
    return EdgeloopProvider(load_flags(DOC), version=3, clock=lambda: BEFORE)


@pytest.fixture
def client(provider: EdgeloopProvider) -> OpenFeatureClient:
    return use(provider)


def ctx(key: str | None = None, **attributes: object) -> EvaluationContext:
    return EvaluationContext(targeting_key=key, attributes=attributes)  # type: ignore[arg-type]


# --- typed resolution -------------------------------------------------------------------------


def test_boolean_static(client: OpenFeatureClient) -> None:
    details = client.get_boolean_details("dark-mode", False)
    assert (details.value, details.variant, details.reason) == (True, "yes", Reason.STATIC)
    assert details.error_code is None
    assert client.get_boolean_value("dark-mode", False) is True


def test_string_targeting_match_and_default(client: OpenFeatureClient) -> None:
    hit = client.get_string_details("headline", "?", ctx(country="CA"))
    assert (hit.value, hit.variant, hit.reason) == ("Go now", "long", Reason.TARGETING_MATCH)
    miss = client.get_string_details("headline", "?", ctx(country="FR"))
    assert (miss.value, miss.variant, miss.reason) == ("Go", "short", Reason.DEFAULT)


def test_integer(client: OpenFeatureClient) -> None:
    assert client.get_integer_value("max-items", 0) == 3
    details = client.get_integer_details("max-items", 0, ctx(plan="pro"))
    assert (details.value, details.reason) == (10, Reason.TARGETING_MATCH)


def test_float(client: OpenFeatureClient) -> None:
    details = client.get_float_details("ratio", 0.0)
    assert (details.value, details.variant, details.reason) == (0.25, "low", Reason.STATIC)


def test_integer_flag_read_as_float(client: OpenFeatureClient) -> None:
    details = client.get_float_details("max-items", 0.0, ctx(plan="pro"))
    assert details.value == 10.0 and isinstance(details.value, float)
    assert details.error_code is None


def test_object(client: OpenFeatureClient) -> None:
    details = client.get_object_details("layout", {})
    assert details.value == {"cols": 3, "tags": ["a", "b"]}
    assert (details.variant, details.reason) == ("grid", Reason.STATIC)


def test_object_value_is_the_callers_own_copy(client: OpenFeatureClient) -> None:
    first = client.get_object_value("layout", {})
    assert isinstance(first, dict)
    first["cols"] = 99
    first["tags"].append("mutated")
    assert client.get_object_value("layout", {}) == {"cols": 3, "tags": ["a", "b"]}


def test_async_resolution(client: OpenFeatureClient) -> None:
    details = asyncio.run(client.get_string_details_async("headline", "?", ctx(country="US")))
    assert (details.value, details.reason) == ("Go now", Reason.TARGETING_MATCH)


# --- splits -----------------------------------------------------------------------------------


def test_split_is_deterministic_and_uses_both_variants(client: OpenFeatureClient) -> None:
    seen = {}
    for i in range(200):
        details = client.get_string_details("cta", "?", ctx(f"att-{i}"))
        assert details.reason == Reason.SPLIT
        assert details.value == {"control": "Buy", "treat": "Grab it"}[details.variant]
        again = client.get_string_details("cta", "?", ctx(f"att-{i}"))
        assert again.variant == details.variant
        seen[details.variant] = seen.get(details.variant, 0) + 1
    assert set(seen) == {"control", "treat"}
    assert 60 < seen["control"] < 140


def test_split_without_targeting_key(client: OpenFeatureClient) -> None:
    details = client.get_string_details("cta", "fallback", ctx(country="US"))
    assert details.value == "fallback"
    assert details.reason == Reason.ERROR
    assert details.error_code == ErrorCode.TARGETING_KEY_MISSING
    assert details.error_message
    # the flag's metadata survives the error: the provider returns details, it does not raise
    assert details.flag_metadata["experiment"] == "cta-2026"


def test_targeting_key_in_context_matches_engine_evaluation(provider: EdgeloopProvider) -> None:
    client = use(provider)
    for i in range(20):
        expected = evaluate(provider.snapshot, "cta", {"targetingKey": f"u{i}"}, BEFORE)
        assert client.get_string_details("cta", "?", ctx(f"u{i}")).variant == expected.variant


# --- reasons and caller defaults --------------------------------------------------------------


def test_disabled_returns_callers_default(client: OpenFeatureClient) -> None:
    details = client.get_string_details("killed", "mine")
    assert (details.value, details.variant, details.reason) == ("mine", None, Reason.DISABLED)
    assert details.error_code is None


def test_default_without_default_variant_returns_callers_default(
    client: OpenFeatureClient,
) -> None:
    miss = client.get_string_details("vip-only", "plain")
    assert (miss.value, miss.variant, miss.reason, miss.error_code) == (
        "plain",
        None,
        Reason.DEFAULT,
        None,
    )
    hit = client.get_string_details("vip-only", "plain", ctx(vip=True))
    assert (hit.value, hit.reason) == ("gold", Reason.TARGETING_MATCH)


# --- errors -----------------------------------------------------------------------------------


def test_flag_not_found(client: OpenFeatureClient) -> None:
    details = client.get_boolean_details("nope", True)
    assert details.value is True
    assert details.reason == Reason.ERROR
    assert details.error_code == ErrorCode.FLAG_NOT_FOUND
    assert "nope" in (details.error_message or "")


@pytest.mark.parametrize(
    ("getter", "key", "default"),
    [
        ("get_boolean_details", "headline", False),
        ("get_string_details", "dark-mode", "s"),
        ("get_integer_details", "ratio", 7),
        ("get_integer_details", "dark-mode", 7),  # a bool is not an integer here
        ("get_float_details", "headline", 1.5),
        ("get_object_details", "max-items", {"d": 1}),
    ],
)
def test_type_mismatch(client: OpenFeatureClient, getter: str, key: str, default: object) -> None:
    details = getattr(client, getter)(key, default)
    assert details.value == default
    assert details.reason == Reason.ERROR
    assert details.error_code == ErrorCode.TYPE_MISMATCH
    assert key in (details.error_message or "")


def test_error_hooks_see_the_error(provider: EdgeloopProvider) -> None:
    errors: list[Exception] = []

    class Record(Hook):
        def error(self, hook_context, exception, hints):  # type: ignore[no-untyped-def]
            errors.append(exception)

    api.add_hooks([Record()])
    client = use(provider)
    client.get_boolean_value("headline", False)
    assert len(errors) == 1 and getattr(errors[0], "error_code", None) == ErrorCode.TYPE_MISMATCH


# --- metadata ---------------------------------------------------------------------------------


def test_flag_metadata_merges_flag_set_and_flag(client: OpenFeatureClient) -> None:
    details = client.get_string_details("headline", "?")
    assert details.flag_metadata == {"owner": "copy", "stage": "live", "team": "web"}
    assert client.get_boolean_details("dark-mode", False).flag_metadata == {
        "owner": "growth",
        "stage": "live",
    }


def test_flag_metadata_experiment_and_channel(client: OpenFeatureClient) -> None:
    channels = {"control": "client", "treat": "edge_overlay"}
    for i in range(20):
        details = client.get_string_details("cta", "?", ctx(f"att-{i}"))
        assert details.flag_metadata["experiment"] == "cta-2026"
        assert details.flag_metadata["channel"] == channels[details.variant]


def test_flag_metadata_cannot_corrupt_later_evaluations(client: OpenFeatureClient) -> None:
    first = client.get_string_details("headline", "?")
    first.flag_metadata["team"] = "mutated"  # type: ignore[index]
    assert client.get_string_details("headline", "?").flag_metadata["team"] == "web"


def test_provider_metadata_name(client: OpenFeatureClient) -> None:
    assert api.get_provider_metadata().name == "edgeloop"
    assert client.provider.get_metadata().name == "edgeloop"


# --- context ----------------------------------------------------------------------------------


def test_global_client_and_invocation_context_are_merged() -> None:
    provider = EdgeloopProvider.from_file(EXAMPLE, clock=lambda: BEFORE)
    api.set_provider_and_wait(provider)
    api.set_evaluation_context(ctx(country="US", reactions_pos=0))
    client = api.get_client()
    client.context = ctx("att-7", dwell_s=90)

    # reactions_pos=0 (global) keeps the attendee out of the value gate
    gated = client.get_object_details("micro-offer", {})
    assert (gated.variant, gated.reason) == ("ambient", Reason.DEFAULT)

    # the invocation overrides the global attribute; the targeting key comes from the client
    details = client.get_object_details("micro-offer", {}, ctx(reactions_pos=2))
    assert details.reason == Reason.SPLIT
    assert details.variant in {"A", "B", "C"}
    assert details.flag_metadata["experiment"] == "micro-offer-2026-11"
    assert details.flag_metadata["owner"] == "creator-growth"
    assert details.flag_metadata["channel"] in {"edge_overlay", "client", "hybrid"}

    # an invocation targeting key replaces the client's, and the bucketing follows it
    keys = {f"k{i}" for i in range(60)}
    variants = {
        client.get_object_details("micro-offer", {}, ctx(k, reactions_pos=2)).variant for k in keys
    }
    assert variants == {"A", "B", "C"}


def test_targeting_key_overrides_a_targetingkey_attribute(client: OpenFeatureClient) -> None:
    a = client.get_string_details("cta", "?", ctx("att-1", targetingKey="att-2"))
    b = client.get_string_details("cta", "?", ctx("att-1"))
    assert a.variant == b.variant
    no_key = client.get_string_details("cta", "?", ctx(targetingKey="att-2"))
    c = client.get_string_details("cta", "?", ctx("att-2"))
    assert no_key.variant == c.variant and no_key.reason == Reason.SPLIT


def test_example_prerequisite_and_value_gate() -> None:
    client = use(EdgeloopProvider.from_file(EXAMPLE))
    assert client.get_boolean_details("offers-enabled", False).reason == Reason.STATIC
    cold = client.get_object_details("micro-offer", {}, ctx("att-1", country="US", dwell_s=5))
    assert (cold.value, cold.reason) == ({"overlay": "none"}, Reason.DEFAULT)
    warm = client.get_object_details(
        "micro-offer", {}, ctx("att-1", country="US", dwell_s=75, reactions_pos=3)
    )
    assert warm.reason == Reason.SPLIT
    assert (
        warm.value
        == {
            "A": {"overlay": "merch_popup", "trial_token": True},
            "B": {"chat_offer": "exclusive_emoji_pack"},
            "C": {"audio_cue": "timed", "ticket_discount": 0.10},
        }[warm.variant]
    )


# --- clock ------------------------------------------------------------------------------------


def test_clock_is_injected_and_read_per_evaluation() -> None:
    now = [BEFORE]
    client = use(EdgeloopProvider(load_flags(DOC), clock=lambda: now[0]))
    assert client.get_string_value("launch-banner", "?") == "soon"
    now[0] = AFTER
    details = client.get_string_details("launch-banner", "?")
    assert (details.value, details.reason) == ("now", Reason.TARGETING_MATCH)


# --- construction and update ------------------------------------------------------------------


def test_constructed_from_a_compiled_snapshot() -> None:
    snapshot = compile_snapshot(load_flags(DOC), version=42)
    provider = EdgeloopProvider(snapshot)
    assert provider.snapshot is snapshot and provider.version == 42
    assert use(provider).get_boolean_value("dark-mode", False) is True


def test_from_file_rejects_an_invalid_file(tmp_path: Path) -> None:
    bad = tmp_path / "flags.yaml"
    bad.write_text("flags:\n  x:\n    type: boolean\n")
    with pytest.raises(FlagsValidationError):
        EdgeloopProvider.from_file(bad)


def test_rejects_other_sources() -> None:
    with pytest.raises(TypeError):
        EdgeloopProvider("flags.yaml")  # type: ignore[arg-type]


UPDATED = DOC.replace("default_variant: yes", "default_variant: no").replace(
    "  ratio:\n", "  ratio-v2:\n"
)


def test_update_takes_effect_and_emits_configuration_changed(
    provider: EdgeloopProvider, client: OpenFeatureClient
) -> None:
    received: list[EventDetails] = []
    done = threading.Event()

    def on_change(details: EventDetails) -> None:
        received.append(details)
        done.set()

    client.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)
    assert client.get_boolean_value("dark-mode", True) is True

    provider.update(load_flags(UPDATED))

    assert provider.version == 4
    details = client.get_boolean_details("dark-mode", True)
    assert (details.value, details.variant) == (False, "no")
    assert client.get_float_details("ratio", 1.0).error_code == ErrorCode.FLAG_NOT_FOUND
    assert client.get_float_value("ratio-v2", 1.0) == 0.25
    assert done.wait(5)
    (event,) = received
    assert event.provider_name == "edgeloop"
    assert event.flags_changed == ["dark-mode", "ratio", "ratio-v2"]
    assert event.metadata == {"version": 4}


def test_update_with_a_snapshot_and_explicit_version(provider: EdgeloopProvider) -> None:
    client = use(provider)
    provider.update(compile_snapshot(load_flags(UPDATED), version=10))
    assert provider.version == 10
    assert client.get_boolean_value("dark-mode", True) is False
    provider.update(load_flags(DOC), version=20)
    assert provider.version == 20
    assert client.get_boolean_value("dark-mode", False) is True


def test_update_of_shared_parts_reports_every_flag(provider: EdgeloopProvider) -> None:
    old = provider.snapshot.flagset
    new = load_flags(DOC.replace("stage: live", "stage: test"))
    assert changed_flags(old, new) == sorted(old.flags)
    assert changed_flags(old, load_flags(DOC)) == []


def test_update_before_registration_does_not_fail() -> None:
    provider = EdgeloopProvider(load_flags(DOC))
    provider.update(load_flags(UPDATED))
    assert use(provider).get_boolean_value("dark-mode", True) is False


def test_sticky_assignments_survive_updates() -> None:
    sticky = """
flags:
  offer:
    type: string
    variants: {a: A, b: B}
    default_variant: a
    sticky: true
    rules:
      - split: {a: 50, b: 50}
"""
    provider = EdgeloopProvider(load_flags(sticky))
    client = use(provider)
    first = {f"u{i}": client.get_string_value("offer", "?", ctx(f"u{i}")) for i in range(40)}
    provider.update(load_flags(sticky.replace("{a: 50, b: 50}", "{a: 1, b: 99}")))
    again = {f"u{i}": client.get_string_value("offer", "?", ctx(f"u{i}")) for i in range(40)}
    assert again == first
    assert set(first.values()) == {"A", "B"}
