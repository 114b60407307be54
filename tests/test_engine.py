"""The compiled decision engine: what it answers, and why.

Every decision carries an OpenFeature reason:

    STATIC           the flag has no rules (and no prerequisites): its default variant, always
    TARGETING_MATCH  a rule's condition held and the rule names a variant
    SPLIT            a rule's weighted split bucketed the unit into a variant
    DEFAULT          rules exist but none matched, or a prerequisite was not met
    DISABLED         the kill switch (state: DISABLED); value and variant are None
    ERROR            with an error_code; value and variant are None, the caller's default applies

The last part is a differential test: the compiled engine against a small reference
interpreter written here, which walks the model directly, on generated flag sets and contexts.
"""

from __future__ import annotations

import functools
import json
import operator
import re
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import semver
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeloop.evaluate import (
    ErrorCode,
    InMemoryAssignments,
    Reason,
    assign_variant,
    compile_snapshot,
    evaluate,
    evaluate_all,
    resolve,
)
from edgeloop.model import (
    All,
    AnyOf,
    Clock,
    Compare,
    Condition,
    FlagSet,
    FlagState,
    FlagsValidationError,
    Not,
    SegmentRef,
    ValueType,
    load_flags,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "micro-offer.yaml"
SHOW_START = datetime.fromisoformat("2026-12-01T18:00:00+00:00").timestamp()
NOW = SHOW_START + 600.0

DOC = """
metadata:
  owner: growth
  team: set-level

segments:
  core-markets: {attr: country, in: [US, CA, GB]}
  engaged:
    all:
      - {segment: core-markets}
      - {attr: dwell_s, gte: 60}

flags:
  banner:                      # no rules: STATIC
    type: string
    variants: {calm: calm-banner, loud: loud-banner}
    default_variant: calm
    metadata: {team: flag-level}

  no-default:                  # no rules and no default variant: DEFAULT with no value
    type: string
    variants: {only: x}
    default_variant: null

  chat-pin:                    # the kill switch is down
    type: boolean
    state: DISABLED
    variants: {on: true, off: false}
    default_variant: on

  overlay:                     # rules in order: the first that matches decides
    type: string
    variants: {us: us-overlay, engaged: engaged-overlay, vip: vip-overlay, plain: plain}
    default_variant: plain
    rules:
      - name: us-first
        when: {attr: country, eq: US}
        variant: us
      - when: {segment: engaged}
        variant: engaged
      - when: {attr: tier, in: [gold, platinum]}
        variant: vip

  cta-size:                    # a split for everyone
    type: integer
    variants: {small: 12, large: 18}
    default_variant: small
    rules:
      - split: {small: 50, large: 50}

  price:
    type: float
    variants: {base: 4.99, promo: 3}
    default_variant: promo

  gate:                        # used as a prerequisite
    type: boolean
    variants: {on: true, off: false}
    default_variant: off
    rules:
      - when: {attr: beta, eq: true}
        variant: on

  feature:
    type: string
    variants: {new: new-ui, old: old-ui}
    default_variant: old
    prerequisites: [{flag: gate, variant: on}]
    rules:
      - variant: new

  behind-killed:
    type: string
    variants: {new: new-ui, old: old-ui}
    default_variant: old
    prerequisites: [{flag: chat-pin, variant: on}]
    rules:
      - variant: new

  behind-split:                # the prerequisite needs a targeting key
    type: string
    variants: {new: new-ui, old: old-ui}
    default_variant: old
    prerequisites: [{flag: cta-size, variant: large}]
    rules:
      - variant: new

  only-prerequisites:          # prerequisites and no rules: DEFAULT (not STATIC)
    type: string
    variants: {x: x}
    default_variant: x
    prerequisites: [{flag: gate, variant: on}]

  offer:
    type: object
    variants:
      none: {}
      popup: {overlay: merch_popup}
      emoji: {chat_offer: emoji_pack}
    default_variant: none
    metadata: {owner: monetization}
    rules:
      - split: {popup: 1, emoji: 1}
    experiment:
      key: offer-exp-1
      metrics: {primary: conversion_15m}
      channels: {popup: edge_overlay, emoji: client}
"""


@pytest.fixture(scope="module")
def flagset() -> FlagSet:
    return load_flags(DOC, "engine.yaml")


@pytest.fixture(scope="module")
def snap(flagset):
    return compile_snapshot(flagset, version=42)


def outcome(decision) -> tuple[Any, str | None, Reason, ErrorCode | None]:
    return decision.value, decision.variant, decision.reason, decision.error_code


# ---------------------------------------------------------------------------------------------
# Reasons
# ---------------------------------------------------------------------------------------------


def test_static_flag_serves_its_default(snap):
    d = evaluate(snap, "banner", {}, NOW)
    assert outcome(d) == ("calm-banner", "calm", Reason.STATIC, None)
    assert d.flag_key == "banner" and d.version == 42 and not d.is_error


def test_no_default_variant_gives_default_reason_and_no_value(snap):
    assert outcome(evaluate(snap, "no-default", {}, NOW)) == (None, None, Reason.DEFAULT, None)


def test_kill_switch_disables(snap):
    d = evaluate(snap, "chat-pin", {"targetingKey": "a", "beta": True}, NOW)
    assert outcome(d) == (None, None, Reason.DISABLED, None)


def test_targeting_match_default_and_rule_order(snap):
    def pick(ctx):
        d = evaluate(snap, "overlay", ctx, NOW)
        return d.variant, d.reason

    assert pick({"country": "US"}) == ("us", Reason.TARGETING_MATCH)
    # US and engaged: the first rule wins
    assert pick({"country": "US", "dwell_s": 90}) == ("us", Reason.TARGETING_MATCH)
    assert pick({"country": "CA", "dwell_s": 90}) == ("engaged", Reason.TARGETING_MATCH)
    assert pick({"country": "CA", "dwell_s": 90, "tier": "gold"}) == (
        "engaged",
        Reason.TARGETING_MATCH,
    )
    assert pick({"country": "FR", "dwell_s": 90, "tier": "gold"}) == ("vip", Reason.TARGETING_MATCH)
    assert pick({"country": "FR"}) == ("plain", Reason.DEFAULT)
    assert pick({}) == ("plain", Reason.DEFAULT)


def test_unconditional_rule_ends_the_list():
    fs = load_flags(
        """
flags:
  f:
    type: string
    variants: {a: a, b: b, c: c}
    default_variant: a
    rules:
      - when: {attr: x, eq: 1}
        variant: b
      - variant: c
      - variant: b
"""
    )
    snap = compile_snapshot(fs)
    assert evaluate(snap, "f", {"x": 1}, NOW).variant == "b"
    assert outcome(evaluate(snap, "f", {}, NOW)) == ("c", "c", Reason.TARGETING_MATCH, None)


def test_split_reason_and_value(snap):
    d = evaluate(snap, "cta-size", {"targetingKey": "att-1"}, NOW)
    expected = assign_variant("att-1", "cta-size", [("small", 50), ("large", 50)])
    assert (d.variant, d.reason) == (expected, Reason.SPLIT)
    assert d.value == {"small": 12, "large": 18}[expected]


def test_split_with_one_live_variant_needs_no_targeting_key():
    fs = load_flags(
        "flags: {f: {type: string, variants: {a: a, b: b}, default_variant: a,"
        " rules: [{split: {a: 0, b: 7}}]}}"
    )
    d = evaluate(compile_snapshot(fs), "f", {}, NOW)
    assert outcome(d) == ("b", "b", Reason.SPLIT, None)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def test_flag_not_found(snap):
    d = evaluate(snap, "nope", {}, NOW)
    assert outcome(d) == (None, None, Reason.ERROR, ErrorCode.FLAG_NOT_FOUND)
    assert d.is_error and "nope" in (d.error_message or "") and d.version == 42
    assert evaluate(snap, ["unhashable"], {}, NOW).error_code is ErrorCode.FLAG_NOT_FOUND  # type: ignore[arg-type]


@pytest.mark.parametrize("ctx", [{}, {"targetingKey": None}, {"targetingKey": ""}])
def test_split_without_targeting_key(snap, ctx):
    d = evaluate(snap, "cta-size", ctx, NOW)
    assert outcome(d) == (None, None, Reason.ERROR, ErrorCode.TARGETING_KEY_MISSING)
    assert "targetingKey" in (d.error_message or "") and d.version == 42


@pytest.mark.parametrize("key", [1.5, True, ["att-1"], {"id": 1}, b"att-1"])
def test_split_with_unusable_targeting_key(snap, key):
    """Text and integers only."""
    d = evaluate(snap, "cta-size", {"targetingKey": key}, NOW)
    assert outcome(d) == (None, None, Reason.ERROR, ErrorCode.INVALID_CONTEXT)


def test_targeting_key_with_a_lone_surrogate_is_invalid_not_a_crash():
    """JSON "\\ud800" decodes to a lone surrogate. Handed to mmh3 as text, it used to crash
    the whole process (segmentation fault): run it in a child process so that a regression
    fails this test instead of killing the test run."""
    script = textwrap.dedent(
        """
        import json, sys
        from edgeloop.evaluate import compile_snapshot, evaluate
        from edgeloop.model import load_flags
        snap = compile_snapshot(load_flags(sys.stdin.read()))
        context = json.loads('{"targetingKey": "\\ud800", "tk2": "a\\udc00b"}')
        codes = [evaluate(snap, "cta-size", context, 0.0).error_code]
        context["targetingKey"] = context["tk2"]
        codes.append(evaluate(snap, "cta-size", context, 0.0).error_code)
        print(json.dumps(codes))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=DOC,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["INVALID_CONTEXT", "INVALID_CONTEXT"]


def test_integer_targeting_key_is_its_decimal_text(snap):
    for n in (0, 7, -3, 10**25):
        by_int = evaluate(snap, "cta-size", {"targetingKey": n}, NOW)
        by_text = evaluate(snap, "cta-size", {"targetingKey": str(n)}, NOW)
        assert by_int == by_text and by_int.reason is Reason.SPLIT


@pytest.mark.parametrize("context", [None, ["country", "US"], "country=US", 42])
def test_context_that_is_not_a_mapping(snap, context):
    d = evaluate(snap, "overlay", context, NOW)  # type: ignore[arg-type]
    assert outcome(d) == (None, None, Reason.ERROR, ErrorCode.INVALID_CONTEXT)
    assert d.version == 42


def test_resolve_checks_the_type(snap):
    ctx: dict[str, Any] = {}
    ok = resolve(snap, "banner", ctx, NOW, ValueType.STRING)
    assert ok == evaluate(snap, "banner", ctx, NOW)
    bad = resolve(snap, "banner", ctx, NOW, ValueType.BOOLEAN)
    assert outcome(bad) == (None, None, Reason.ERROR, ErrorCode.TYPE_MISMATCH)
    assert "string" in (bad.error_message or "") and bad.version == 42
    # integers are floats when a float is asked for …
    as_float = resolve(snap, "cta-size", {"targetingKey": "a"}, NOW, ValueType.FLOAT)
    assert as_float.value.__class__ is float and as_float.reason is Reason.SPLIT
    # … and a boolean is never a number
    assert resolve(snap, "chat-pin", ctx, NOW, ValueType.INTEGER).reason is Reason.DISABLED
    assert resolve(snap, "gate", ctx, NOW, ValueType.INTEGER).error_code is ErrorCode.TYPE_MISMATCH
    assert resolve(snap, "offer", {"targetingKey": "a"}, NOW, ValueType.OBJECT).reason is (
        Reason.SPLIT
    )
    # errors and value-less decisions pass through untouched
    assert resolve(snap, "nope", ctx, NOW, ValueType.STRING).error_code is ErrorCode.FLAG_NOT_FOUND
    assert resolve(snap, "no-default", ctx, NOW, ValueType.BOOLEAN).reason is Reason.DEFAULT


# ---------------------------------------------------------------------------------------------
# Prerequisites
# ---------------------------------------------------------------------------------------------


def test_prerequisite_met_and_unmet(snap):
    met = evaluate(snap, "feature", {"beta": True}, NOW)
    assert outcome(met) == ("new-ui", "new", Reason.TARGETING_MATCH, None)
    unmet = evaluate(snap, "feature", {"beta": False}, NOW)
    assert outcome(unmet) == ("old-ui", "old", Reason.DEFAULT, None)


def test_disabled_prerequisite_is_never_met(snap):
    d = evaluate(snap, "behind-killed", {"beta": True}, NOW)
    assert outcome(d) == ("old-ui", "old", Reason.DEFAULT, None)


def test_prerequisite_in_error_is_not_met(snap):
    d = evaluate(snap, "behind-split", {}, NOW)  # cta-size errs without a targeting key
    assert outcome(d) == ("old-ui", "old", Reason.DEFAULT, None)
    large = next(
        f"u{i}"
        for i in range(100)
        if assign_variant(f"u{i}", "cta-size", [("small", 50), ("large", 50)]) == "large"
    )
    d = evaluate(snap, "behind-split", {"targetingKey": large}, NOW)
    assert outcome(d) == ("new-ui", "new", Reason.TARGETING_MATCH, None)


def test_prerequisites_without_rules(snap):
    assert evaluate(snap, "only-prerequisites", {"beta": True}, NOW).reason is Reason.DEFAULT
    assert evaluate(snap, "only-prerequisites", {}, NOW).reason is Reason.DEFAULT


def test_prerequisite_chain_declared_in_any_order():
    fs = load_flags(
        """
flags:
  top:
    type: boolean
    variants: {on: true, off: false}
    default_variant: off
    prerequisites: [{flag: middle, variant: on}]
    rules: [{variant: on}]
  middle:
    type: boolean
    variants: {on: true, off: false}
    default_variant: off
    prerequisites: [{flag: bottom, variant: on}, {flag: other, variant: yes}]
    rules: [{variant: on}]
  bottom:
    type: boolean
    variants: {on: true, off: false}
    default_variant: off
    rules: [{when: {attr: ok, eq: true}, variant: on}]
  other:
    type: string
    variants: {yes: y, no: n}
    default_variant: yes
"""
    )
    snap = compile_snapshot(fs)
    assert list(snap.runs) == ["top", "middle", "bottom", "other"]  # the document's order
    assert evaluate(snap, "top", {"ok": True}, NOW).value is True
    assert outcome(evaluate(snap, "top", {"ok": False}, NOW)) == (
        False,
        "off",
        Reason.DEFAULT,
        None,
    )


# ---------------------------------------------------------------------------------------------
# Condition operators
# ---------------------------------------------------------------------------------------------

NAN = float("nan")

# (condition, context, matches?) — a missing attribute, or one of the wrong type, never matches
# (except `exists: false`); `ne` and `not_in` match any *present* value that is not equal.
OPERATOR_CASES: list[tuple[dict[str, Any], dict[str, Any], bool]] = [
    # eq: text to text, numbers to numbers (1 == 1.0), booleans only to booleans
    ({"attr": "country", "eq": "US"}, {"country": "US"}, True),
    ({"attr": "country", "eq": "US"}, {"country": "us"}, False),
    ({"attr": "country", "eq": "US"}, {}, False),
    ({"attr": "country", "eq": "US"}, {"country": None}, False),
    ({"attr": "country", "eq": "US"}, {"country": ["US"]}, False),
    ({"attr": "n", "eq": 1}, {"n": 1}, True),
    ({"attr": "n", "eq": 1}, {"n": 1.0}, True),
    ({"attr": "n", "eq": 1}, {"n": True}, False),
    ({"attr": "n", "eq": 1}, {"n": "1"}, False),
    ({"attr": "n", "eq": 1.5}, {"n": 1.5}, True),
    ({"attr": "b", "eq": True}, {"b": True}, True),
    ({"attr": "b", "eq": True}, {"b": 1}, False),
    ({"attr": "b", "eq": False}, {"b": 0}, False),
    ({"attr": "b", "eq": True}, {"b": "true"}, False),
    # ne: present and not equal (a value of another type is not equal)
    ({"attr": "country", "ne": "US"}, {"country": "CA"}, True),
    ({"attr": "country", "ne": "US"}, {"country": "US"}, False),
    ({"attr": "country", "ne": "US"}, {}, False),
    ({"attr": "country", "ne": "US"}, {"country": None}, False),
    ({"attr": "country", "ne": "US"}, {"country": 5}, True),
    ({"attr": "n", "ne": 1}, {"n": 1.0}, False),
    ({"attr": "n", "ne": 1}, {"n": True}, True),
    # in / not_in: 'eq' to one of the list
    ({"attr": "country", "in": ["US", "CA"]}, {"country": "CA"}, True),
    ({"attr": "country", "in": ["US", "CA"]}, {"country": "GB"}, False),
    ({"attr": "country", "in": ["US", "CA"]}, {}, False),
    ({"attr": "country", "in": ["US", "CA"]}, {"country": ["US"]}, False),
    ({"attr": "country", "in": ["US", "CA"]}, {"country": {"US": 1}}, False),
    ({"attr": "x", "in": [1, "a"]}, {"x": 1}, True),
    ({"attr": "x", "in": [1, "a"]}, {"x": 1.0}, True),
    ({"attr": "x", "in": [1, "a"]}, {"x": "a"}, True),
    ({"attr": "x", "in": [1, "a"]}, {"x": True}, False),
    ({"attr": "x", "in": [True, 2]}, {"x": True}, True),
    ({"attr": "x", "in": [True, 2]}, {"x": 1}, False),  # 1 is not True
    ({"attr": "x", "in": [True, 2]}, {"x": 2.0}, True),
    ({"attr": "x", "in": [False, 5]}, {"x": 0}, False),
    ({"attr": "x", "in": [False, 1]}, {"x": True}, False),
    ({"attr": "x", "in": [1.5, 2]}, {"x": 1.5}, True),
    ({"attr": "country", "not_in": ["US", "CA"]}, {"country": "GB"}, True),
    ({"attr": "country", "not_in": ["US", "CA"]}, {"country": "US"}, False),
    ({"attr": "country", "not_in": ["US", "CA"]}, {}, False),
    ({"attr": "country", "not_in": ["US", "CA"]}, {"country": None}, False),
    ({"attr": "country", "not_in": ["US", "CA"]}, {"country": 5}, True),
    ({"attr": "country", "not_in": ["US", "CA"]}, {"country": ["US"]}, True),
    ({"attr": "x", "not_in": [True, 2]}, {"x": 1}, True),
    # numbers: int or float, never bool, never text
    ({"attr": "dwell_s", "gte": 60}, {"dwell_s": 60}, True),
    ({"attr": "dwell_s", "gte": 60}, {"dwell_s": 60.0}, True),
    ({"attr": "dwell_s", "gte": 60}, {"dwell_s": 59.9}, False),
    ({"attr": "dwell_s", "gte": 60}, {"dwell_s": "61"}, False),
    ({"attr": "dwell_s", "gte": 1}, {"dwell_s": True}, False),
    ({"attr": "dwell_s", "gte": 60}, {"dwell_s": NAN}, False),
    ({"attr": "dwell_s", "gte": 60}, {}, False),
    ({"attr": "dwell_s", "gte": 60}, {"dwell_s": None}, False),
    ({"attr": "dwell_s", "gt": 60}, {"dwell_s": 60}, False),
    ({"attr": "dwell_s", "gt": 60}, {"dwell_s": 60.5}, True),
    ({"attr": "dwell_s", "lt": 10}, {"dwell_s": 9}, True),
    ({"attr": "dwell_s", "lt": 10}, {"dwell_s": 10}, False),
    ({"attr": "dwell_s", "lte": 10}, {"dwell_s": 10}, True),
    ({"attr": "dwell_s", "lte": 10}, {"dwell_s": [1]}, False),
    ({"attr": "dwell_s", "lt": 1.5}, {"dwell_s": -(10**30)}, True),
    # text
    ({"attr": "name", "starts_with": "pro"}, {"name": "promo"}, True),
    ({"attr": "name", "starts_with": "pro"}, {"name": "a-pro"}, False),
    ({"attr": "name", "starts_with": "1"}, {"name": 12}, False),
    ({"attr": "name", "ends_with": "_vip"}, {"name": "gold_vip"}, True),
    ({"attr": "name", "ends_with": "_vip"}, {"name": "vip"}, False),
    ({"attr": "name", "contains": "vip"}, {"name": "a vip b"}, True),
    ({"attr": "name", "contains": "vip"}, {"name": ["vip"]}, False),
    ({"attr": "name", "contains": "vip"}, {}, False),
    # matches: re.search (anchor it yourself)
    ({"attr": "name", "matches": "^att-[0-9]+$"}, {"name": "att-12"}, True),
    ({"attr": "name", "matches": "^att-[0-9]+$"}, {"name": "att-x"}, False),
    ({"attr": "name", "matches": "[0-9]"}, {"name": "abc1"}, True),
    ({"attr": "name", "matches": "[0-9]"}, {"name": 1}, False),
    # exists: None counts as absent
    ({"attr": "coupon", "exists": True}, {"coupon": "X"}, True),
    ({"attr": "coupon", "exists": True}, {"coupon": False}, True),
    ({"attr": "coupon", "exists": True}, {"coupon": None}, False),
    ({"attr": "coupon", "exists": True}, {}, False),
    ({"attr": "coupon", "exists": False}, {}, True),
    ({"attr": "coupon", "exists": False}, {"coupon": None}, True),
    ({"attr": "coupon", "exists": False}, {"coupon": 0}, False),
    # semantic versions: text that is a valid semver; prereleases sort below the release
    ({"attr": "app", "semver_gte": "2.1.0"}, {"app": "2.1.0"}, True),
    ({"attr": "app", "semver_gte": "2.1.0"}, {"app": "2.10.0"}, True),
    ({"attr": "app", "semver_gte": "2.1.0"}, {"app": "2.1.0-rc.1"}, False),
    ({"attr": "app", "semver_gte": "2.1.0"}, {"app": "2.1"}, False),
    ({"attr": "app", "semver_gte": "2.1.0"}, {"app": 2.1}, False),
    ({"attr": "app", "semver_gte": "2.1.0"}, {}, False),
    ({"attr": "app", "semver_gt": "2.1.0"}, {"app": "2.1.0"}, False),
    ({"attr": "app", "semver_gt": "2.1.0"}, {"app": "2.1.1"}, True),
    ({"attr": "app", "semver_lt": "2.0.0"}, {"app": "2.0.0-alpha"}, True),
    ({"attr": "app", "semver_lt": "2.0.0"}, {"app": "2.0.0"}, False),
    ({"attr": "app", "semver_lte": "2.0.0"}, {"app": "2.0.0"}, True),
    ({"attr": "app", "semver_eq": "1.2.3"}, {"app": "1.2.3"}, True),
    ({"attr": "app", "semver_eq": "1.2.3"}, {"app": "1.2.3+build.5"}, True),  # build ignored
    ({"attr": "app", "semver_eq": "1.2.3"}, {"app": "v1.2.3"}, False),
    # dotted attributes walk nested mappings
    ({"attr": "user.plan", "eq": "pro"}, {"user": {"plan": "pro"}}, True),
    ({"attr": "user.plan", "eq": "pro"}, {"user": "pro"}, False),
    ({"attr": "user.plan", "eq": "pro"}, {"user.plan": "pro"}, False),
    ({"attr": "user.plan", "eq": "pro"}, {"user": {"plan": {"name": "pro"}}}, False),
    ({"attr": "a.b.c", "gte": 1}, {"a": {"b": {"c": 2}}}, True),
    ({"attr": "a.b.c", "gte": 1}, {"a": {"b": [2]}}, False),
    ({"attr": "user.plan", "exists": False}, {"user": 5}, True),
    ({"attr": "user.plan", "exists": True}, {"user": {"plan": "free"}}, True),
    # logic
    ({"all": [{"attr": "a", "eq": 1}, {"attr": "b", "eq": 2}]}, {"a": 1, "b": 2}, True),
    ({"all": [{"attr": "a", "eq": 1}, {"attr": "b", "eq": 2}]}, {"a": 1}, False),
    ({"any": [{"attr": "a", "eq": 1}, {"attr": "b", "eq": 2}]}, {"b": 2}, True),
    ({"any": [{"attr": "a", "eq": 1}, {"attr": "b", "eq": 2}]}, {}, False),
    ({"not": {"attr": "a", "eq": 1}}, {"a": 1}, False),
    ({"not": {"attr": "a", "eq": 1}}, {}, True),  # not(no match) is a match
]


def matches(cond: dict[str, Any], ctx: Any, now: float = NOW, segments=None) -> bool:
    doc = {
        "flags": {
            "probe": {
                "type": "boolean",
                "variants": {"yes": True, "no": False},
                "default_variant": "no",
                "rules": [{"when": cond, "variant": "yes"}],
            }
        }
    }
    if segments:
        doc["segments"] = segments
    d = evaluate(compile_snapshot(load_flags(json.dumps(doc))), "probe", ctx, now)
    assert d.reason in (Reason.TARGETING_MATCH, Reason.DEFAULT), d
    return d.variant == "yes"


@pytest.mark.parametrize(
    ("cond", "ctx", "expected"), OPERATOR_CASES, ids=[json.dumps(c[0]) for c in OPERATOR_CASES]
)
def test_operator(cond, ctx, expected):
    assert matches(cond, ctx) is expected
    assert reference_condition(parse(cond), ctx, NOW, {}) is expected


def test_every_comparison_operator_has_cases():
    from edgeloop.model.conditions import COMPARE_OPS

    covered = {next(k for k in c if k != "attr") for c, _, _ in OPERATOR_CASES if "attr" in c}
    assert covered == set(COMPARE_OPS)


@pytest.mark.parametrize(
    ("cond", "now", "expected"),
    [
        ({"after": "2026-12-01T18:00:00Z"}, SHOW_START, True),  # at the instant: after
        ({"after": "2026-12-01T18:00:00Z"}, SHOW_START - 0.001, False),
        ({"before": "2026-12-01T18:00:00Z"}, SHOW_START, False),
        ({"before": "2026-12-01T18:00:00Z"}, SHOW_START - 0.001, True),
        ({"after": "2026-12-01T19:00:00+01:00"}, SHOW_START, True),  # same instant, other zone
        ({"after": "2026-12-01T19:00:00+01:00"}, SHOW_START - 1, False),
        (
            {"all": [{"after": "2026-12-01T18:00:00Z"}, {"before": "2026-12-01T19:00:00Z"}]},
            SHOW_START + 1800,
            True,
        ),
        (
            {"all": [{"after": "2026-12-01T18:00:00Z"}, {"before": "2026-12-01T19:00:00Z"}]},
            SHOW_START + 3600,
            False,
        ),
    ],
)
def test_time_window_uses_the_now_passed_in(cond, now, expected):
    assert matches(cond, {}, now=now) is expected


def test_segments_nest():
    segments = {
        "core": {"attr": "country", "in": ["US", "CA"]},
        "core-engaged": {"all": [{"segment": "core"}, {"attr": "dwell_s", "gte": 60}]},
    }
    cond = {"any": [{"segment": "core-engaged"}, {"attr": "vip", "eq": True}]}
    assert matches(cond, {"country": "US", "dwell_s": 60}, segments=segments)
    assert not matches(cond, {"country": "FR", "dwell_s": 60}, segments=segments)
    assert matches(cond, {"vip": True}, segments=segments)


# ---------------------------------------------------------------------------------------------
# Metadata, versions, evaluate_all
# ---------------------------------------------------------------------------------------------


def test_metadata_layers(snap):
    banner = evaluate(snap, "banner", {}, NOW)
    assert banner.metadata == {"owner": "growth", "team": "flag-level"}  # the flag's key wins
    assert evaluate(snap, "overlay", {}, NOW).metadata == {"owner": "growth", "team": "set-level"}
    popup = next(
        d
        for d in (evaluate(snap, "offer", {"targetingKey": f"u{i}"}, NOW) for i in range(50))
        if d.variant == "popup"
    )
    emoji = next(
        d
        for d in (evaluate(snap, "offer", {"targetingKey": f"u{i}"}, NOW) for i in range(50))
        if d.variant == "emoji"
    )
    base = {"owner": "monetization", "team": "set-level", "experiment": "offer-exp-1"}
    assert popup.metadata == {**base, "channel": "edge_overlay"}
    assert emoji.metadata == {**base, "channel": "client"}
    errored = evaluate(snap, "offer", {}, NOW)
    assert errored.metadata == base  # no variant: no channel


def test_every_decision_carries_the_snapshot_version(flagset):
    snap = compile_snapshot(flagset, version=7)
    contexts: list[Any] = [{}, {"targetingKey": "a", "beta": True, "country": "US"}, None]
    for ctx in contexts:
        for key in [*flagset.flags, "missing-flag"]:
            assert evaluate(snap, key, ctx, NOW).version == 7
            assert resolve(snap, key, ctx, NOW, ValueType.BOOLEAN).version == 7
    assert {d.version for d in evaluate_all(snap, {}, NOW).values()} == {7}


def test_evaluate_all(snap, flagset):
    ctx = {"targetingKey": "att-1", "country": "US", "beta": True}
    every = evaluate_all(snap, ctx, NOW)
    assert list(every) == list(flagset.flags)  # the document's order
    assert all(every[k] == evaluate(snap, k, ctx, NOW) for k in every)
    listed = evaluate_all(snap, ctx, NOW, keys=["overlay", "ghost", "banner"])
    assert list(listed) == ["overlay", "ghost", "banner"]
    assert listed["overlay"].variant == "us"
    assert outcome(listed["ghost"]) == (None, None, Reason.ERROR, ErrorCode.FLAG_NOT_FOUND)
    assert evaluate_all(snap, ctx, NOW, keys=[]) == {}
    broken = evaluate_all(snap, None, NOW)  # type: ignore[arg-type]
    assert broken["overlay"].error_code is ErrorCode.INVALID_CONTEXT


# ---------------------------------------------------------------------------------------------
# examples/micro-offer.yaml: monetize after value
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def micro_doc() -> str:
    return EXAMPLE.read_text()


def micro(doc: str):
    return compile_snapshot(load_flags(doc, "micro-offer.yaml"), version=3)


OFFER_SPLIT = [("A", 34), ("B", 33), ("C", 33)]
GOT_VALUE = {"country": "US", "dwell_s": 60, "reactions_pos": 1}


def test_micro_offer_unlocks_the_split_after_value(micro_doc):
    snap = micro(micro_doc)
    seen = Counter()
    for i in range(3000):
        unit = f"att-{i}"
        d = evaluate(snap, "micro-offer", {"targetingKey": unit, **GOT_VALUE}, NOW)
        assert d.reason is Reason.SPLIT and d.variant == assign_variant(
            unit, "micro-offer", OFFER_SPLIT
        )
        assert d.metadata["experiment"] == "micro-offer-2026-11"
        assert (
            d.metadata["channel"] == {"A": "edge_overlay", "B": "client", "C": "hybrid"}[d.variant]
        )
        seen[d.variant] += 1
    assert all(900 < seen[v] < 1150 for v in "ABC"), seen


@pytest.mark.parametrize(
    "ctx",
    [
        {**GOT_VALUE, "dwell_s": 59},
        {**GOT_VALUE, "reactions_pos": 0},
        {**GOT_VALUE, "country": "FR"},
        {**GOT_VALUE, "dwell_s": "60"},  # text is not a number
        {"country": "US"},
        {},
    ],
)
def test_micro_offer_is_ambient_before_value(micro_doc, ctx):
    d = evaluate(micro(micro_doc), "micro-offer", {"targetingKey": "att-1", **ctx}, NOW)
    assert outcome(d) == ({"overlay": "none"}, "ambient", Reason.DEFAULT, None)
    assert "channel" not in d.metadata


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("default_variant: on\n", "default_variant: off\n"),  # offers switched off
        ("type: boolean\n", "type: boolean\n    state: DISABLED\n"),  # kill switch
    ],
)
def test_micro_offer_kill_switch_fails_the_prerequisite(micro_doc, old, new):
    doc = micro_doc.replace(old, new, 1)
    assert doc != micro_doc
    snap = micro(doc)
    for i in range(200):
        d = evaluate(snap, "micro-offer", {"targetingKey": f"att-{i}", **GOT_VALUE}, NOW)
        assert outcome(d) == ({"overlay": "none"}, "ambient", Reason.DEFAULT, None)


def test_micro_offer_sticky_store_is_optional(micro_doc):
    snap = compile_snapshot(load_flags(micro_doc), assignments=InMemoryAssignments())
    d = evaluate(snap, "micro-offer", {"targetingKey": "att-1", **GOT_VALUE}, NOW)
    assert d.variant == assign_variant("att-1", "micro-offer", OFFER_SPLIT)


# ---------------------------------------------------------------------------------------------
# Differential test: the compiled engine against a reference interpreter
# ---------------------------------------------------------------------------------------------

_NUMERIC = {"lt": operator.lt, "lte": operator.le, "gt": operator.gt, "gte": operator.ge}
_SEMVER = {
    "semver_eq": operator.eq,
    "semver_lt": operator.lt,
    "semver_lte": operator.le,
    "semver_gt": operator.gt,
    "semver_gte": operator.ge,
}


def parse(raw: dict[str, Any]) -> Condition:
    from edgeloop.model.conditions import parse_condition

    issues: list[Any] = []
    cond = parse_condition(raw, (), issues)
    assert cond is not None and not issues, issues
    return cond


def reference_read(ctx: Mapping[str, Any], attr: str) -> Any:
    if "." not in attr:
        return ctx.get(attr)
    value: Any = ctx
    for part in attr.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def reference_eq(value: Any, target: Any) -> bool:
    if type(target) is bool:
        return type(value) is bool and value == target
    if type(target) in (int, float):
        return type(value) in (int, float) and value == target
    return type(value) is str and value == target


def reference_condition(
    cond: Condition, ctx: Mapping[str, Any], now: float, segments: dict[str, Condition]
) -> bool:
    if isinstance(cond, All):
        return all(reference_condition(c, ctx, now, segments) for c in cond.items)
    if isinstance(cond, AnyOf):
        return any(reference_condition(c, ctx, now, segments) for c in cond.items)
    if isinstance(cond, Not):
        return not reference_condition(cond.item, ctx, now, segments)
    if isinstance(cond, SegmentRef):
        return reference_condition(segments[cond.name], ctx, now, segments)
    if isinstance(cond, Clock):
        return now >= cond.epoch if cond.op == "after" else now < cond.epoch
    assert isinstance(cond, Compare)
    value = reference_read(ctx, cond.attr)
    op, target = cond.op, cond.value
    if op == "exists":
        return (value is not None) is target
    if value is None:
        return False
    if op == "eq":
        return reference_eq(value, target)
    if op == "ne":
        return not reference_eq(value, target)
    if op == "in":
        return any(reference_eq(value, t) for t in target)
    if op == "not_in":
        return not any(reference_eq(value, t) for t in target)
    if op in _NUMERIC:
        return type(value) in (int, float) and _NUMERIC[op](value, target)
    if type(value) is not str:
        return False
    if op == "starts_with":
        return value.startswith(target)
    if op == "ends_with":
        return value.endswith(target)
    if op == "contains":
        return target in value
    if op == "matches":
        return re.search(target, value) is not None
    if not semver.Version.is_valid(value):
        return False
    return _SEMVER[op](semver.Version.parse(value), semver.Version.parse(target))


Outcome = tuple[Any, str | None, Reason, ErrorCode | None]


def reference_evaluate(fs: FlagSet, key: str, ctx: Mapping[str, Any], now: float) -> Outcome:
    flag = fs.flags.get(key)
    if flag is None:
        return None, None, Reason.ERROR, ErrorCode.FLAG_NOT_FOUND
    if flag.state is FlagState.DISABLED:
        return None, None, Reason.DISABLED, None

    def serve(variant: str | None, reason: Reason) -> Outcome:
        return (None if variant is None else flag.variants[variant]), variant, reason, None

    if not flag.rules and not flag.prerequisites:
        return serve(
            flag.default_variant, Reason.STATIC if flag.default_variant else Reason.DEFAULT
        )
    for pre in flag.prerequisites:
        if reference_evaluate(fs, pre.flag, ctx, now)[1] != pre.variant:
            return serve(flag.default_variant, Reason.DEFAULT)
    for rule in flag.rules:
        if rule.when is not None and not reference_condition(rule.when, ctx, now, fs.segments):
            continue
        if rule.variant is not None:
            return serve(rule.variant, Reason.TARGETING_MATCH)
        assert rule.split is not None
        live = [name for name, weight in rule.split if weight > 0]
        if len(live) == 1:
            return serve(live[0], Reason.SPLIT)  # nothing to bucket: no unit needed
        raw = reference_read(ctx, flag.bucket_by)
        if raw is None or (type(raw) is str and raw == ""):
            return None, None, Reason.ERROR, ErrorCode.TARGETING_KEY_MISSING
        if type(raw) is int:
            unit = str(raw)
        elif type(raw) is str:
            unit = raw
        else:
            return None, None, Reason.ERROR, ErrorCode.INVALID_CONTEXT
        return serve(assign_variant(unit, flag.bucket_salt, rule.split), Reason.SPLIT)
    return serve(flag.default_variant, Reason.DEFAULT)


# Small pools so that generated conditions and contexts meet often.
ROOTS = ["country", "dwell_s", "name", "app", "flag", "user", "a"]
ATTRS = [*ROOTS[:5], "user.plan", "user.age", "a.b.c"]
TEXTS = ["US", "CA", "GB", "", "pro", "promo", "gold_vip", "att-1", "1", "on", "1.2.3"]
NUMBERS = [0, 1, 1.0, 1.5, 60, 59.5, -3, 2**53, 10**20]
SCALARS = [*TEXTS, *NUMBERS, True, False]
VERSIONS = ["1.2.3", "2.0.0-rc.1", "2.0.0", "10.0.0", "0.0.1", "1.2.3+b7"]
REGEXES = ["^U", "S$", "[0-9]+", "pro|free", "^$", "a.t", "(?i)us"]
INSTANTS = ["2026-12-01T18:00:00Z", "2026-12-01T20:00:00+02:00", "2026-12-01T18:00:00.5Z"]
NOWS = [0.0, SHOW_START - 1, SHOW_START, SHOW_START + 0.25, SHOW_START + 0.5, SHOW_START + 99]

# Values where equality across kinds is subtle (1 == 1.0 == True in Python): drawn often.
TRICKY = ["US", "", 0, 1, 1.0, 2, True, False]
scalars = st.one_of(st.sampled_from(TRICKY), st.sampled_from(SCALARS))


def compare_strategy() -> st.SearchStrategy[dict[str, Any]]:
    attr = st.sampled_from(ATTRS)
    by_op: dict[str, st.SearchStrategy[Any]] = {
        "eq": scalars,
        "ne": scalars,
        "in": st.lists(scalars, min_size=1, max_size=4),
        "not_in": st.lists(scalars, min_size=1, max_size=4),
        "starts_with": st.sampled_from(TEXTS),
        "ends_with": st.sampled_from(TEXTS),
        "contains": st.sampled_from(TEXTS),
        "matches": st.sampled_from(REGEXES),
        "exists": st.booleans(),
        **{op: st.sampled_from([n for n in NUMBERS if n != 1.0] + [0.5]) for op in _NUMERIC},
        **{op: st.sampled_from(VERSIONS) for op in _SEMVER},
    }
    return st.one_of(
        *(st.fixed_dictionaries({"attr": attr, op: values}) for op, values in by_op.items())
    )


@functools.cache
def condition_strategy(segment_names: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    leaves = [
        compare_strategy(),
        st.builds(
            lambda op, at: {op: at}, st.sampled_from(["after", "before"]), st.sampled_from(INSTANTS)
        ),
    ]
    if segment_names:
        leaves.append(st.builds(lambda n: {"segment": n}, st.sampled_from(segment_names)))
    return st.recursive(
        st.one_of(*leaves),
        lambda inner: st.one_of(
            st.builds(lambda xs: {"all": xs}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda x: {"not": x}, inner),
        ),
        max_leaves=5,
    )


@st.composite
def flag_documents(draw) -> dict[str, Any]:
    segments: dict[str, Any] = {}
    for i in range(draw(st.integers(0, 3))):
        segments[f"seg{i}"] = draw(condition_strategy(tuple(segments)))
    flags: dict[str, Any] = {}
    for i in range(draw(st.integers(1, 5))):
        n = draw(st.integers(1, 12))
        names = [f"v{j}" for j in range(n)]
        flag: dict[str, Any] = {
            "type": "string",
            "variants": {name: f"value-{name}" for name in names},
            "default_variant": draw(st.sampled_from([*names, None])),
        }
        if draw(st.integers(0, 9)) == 0:
            flag["state"] = "DISABLED"
        rules = []
        for _ in range(draw(st.integers(0, 4))):
            rule: dict[str, Any] = {}
            if draw(st.integers(0, 4)) > 0:
                rule["when"] = draw(condition_strategy(tuple(segments)))
            if draw(st.booleans()):
                rule["variant"] = draw(st.sampled_from(names))
            else:
                order = draw(st.permutations(names))
                chosen = order[: draw(st.integers(1, n))]
                weights = draw(
                    st.lists(st.integers(0, 5), min_size=len(chosen), max_size=len(chosen))
                )
                if not any(weights):
                    weights[draw(st.integers(0, len(weights) - 1))] = draw(st.integers(1, 5))
                rule["split"] = dict(zip(chosen, weights, strict=True))
            rules.append(rule)
        if rules:
            flag["rules"] = rules
        bucket_by = draw(st.sampled_from(["targetingKey", "targetingKey", "session", "user.id"]))
        if bucket_by != "targetingKey":
            flag["bucket_by"] = bucket_by
        if draw(st.booleans()):
            # (no digits or dots: yaml.safe_dump writes e.g. "1e5" unquoted, read back as a number)
            flag["salt"] = draw(st.text(alphabet="abxyz-_ é😀", max_size=8))
        earlier = list(flags)
        if earlier:
            chosen_pre = draw(st.lists(st.sampled_from(earlier), max_size=2, unique=True))
            if chosen_pre:
                flag["prerequisites"] = [
                    {"flag": k, "variant": draw(st.sampled_from(list(flags[k]["variants"])))}
                    for k in chosen_pre
                ]
        flags[f"flag-{i}"] = flag
    doc: dict[str, Any] = {"flags": flags}
    if segments:
        doc["segments"] = segments
    return doc


unit_values = st.one_of(
    st.sampled_from(["att-1", "att-2", "att-3", "", "é😀"]),
    st.text(min_size=1, max_size=12),
    st.integers(-(10**20), 10**20),
    st.sampled_from([None, 1.5, True, False, ["att-1"], {"id": 1}]),
)
ctx_values = st.one_of(
    st.sampled_from(TRICKY),
    scalars,
    st.sampled_from(VERSIONS),
    st.sampled_from([None, [1, "US"], {"plan": "pro"}, NAN]),
    st.integers(),
    st.floats(allow_nan=False),
)


user_values = st.one_of(
    ctx_values,
    st.fixed_dictionaries({}, optional={"plan": ctx_values, "age": ctx_values, "id": unit_values}),
)
a_values = st.one_of(
    ctx_values,
    st.fixed_dictionaries({"b": st.one_of(ctx_values, st.fixed_dictionaries({"c": ctx_values}))}),
)
root_values = {"user": user_values, "a": a_values}


@st.composite
def contexts(draw) -> dict[str, Any]:
    """Attributes present or missing, of the expected type or not; units of every kind."""
    ctx: dict[str, Any] = {}
    for root in ROOTS:
        if draw(st.booleans()):
            ctx[root] = draw(root_values.get(root, ctx_values))
    for key in ("targetingKey", "session"):
        if draw(st.integers(0, 5)) > 0:
            ctx[key] = draw(unit_values)
    return ctx


@settings(
    derandomize=True,
    deadline=None,
    database=None,
    max_examples=250,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    doc=flag_documents(),
    fmt=st.sampled_from(["json", "yaml"]),
    ctxs=st.lists(contexts(), min_size=1, max_size=12),
    nows=st.lists(st.sampled_from(NOWS), min_size=1, max_size=3),
)
def test_compiled_engine_equals_reference_interpreter(doc, fmt, ctxs, nows):
    text = json.dumps(doc) if fmt == "json" else yaml.safe_dump(doc, sort_keys=False)
    fs = load_flags(text)
    snap = compile_snapshot(fs, version=5)
    for ctx in ctxs:
        for now in nows:
            for key in fs.flags:
                got = evaluate(snap, key, ctx, now)
                assert outcome(got) == reference_evaluate(fs, key, ctx, now), (key, ctx, now)
                assert got.version == 5
            assert {k: outcome(d) for k, d in evaluate_all(snap, ctx, now).items()} == {
                k: reference_evaluate(fs, k, ctx, now) for k in fs.flags
            }


# ---------------------------------------------------------------------------------------------
# Once known bugs, kept as regression tests (and strict xfails for the ones still open)
# ---------------------------------------------------------------------------------------------


def test_prerequisites_apply_to_flagd_targeting_flags():
    fs = load_flags(
        """
flags:
  gate: {type: boolean, variants: {on: true, off: false}, default_variant: off}
  f:
    type: string
    variants: {a: a, b: b}
    default_variant: a
    prerequisites: [{flag: gate, variant: on}]
    targeting: {if: [true, b, null]}
"""
    )
    d = evaluate(compile_snapshot(fs), "f", {}, NOW)
    assert (d.variant, d.reason) == ("a", Reason.DEFAULT)


def test_long_chain_of_segments_compiles():
    segments: dict[str, Any] = {"s0": {"attr": "x", "eq": 1}}
    for i in range(1, 300):
        segments[f"s{i}"] = {"all": [{"segment": f"s{i - 1}"}]}
    doc = {
        "segments": segments,
        "flags": {
            "f": {
                "type": "boolean",
                "variants": {"on": True, "off": False},
                "default_variant": "off",
                "rules": [{"when": {"segment": "s299"}, "variant": "on"}],
            }
        },
    }
    snap = compile_snapshot(load_flags(json.dumps(doc)))
    assert evaluate(snap, "f", {"x": 1}, NOW).variant == "on"


def test_segments_that_would_expand_exponentially_are_rejected_at_load():
    """Each level refers to the one below twice: as a tree that is 2^depth conditions."""
    segments: dict[str, Any] = {"s0": {"attr": "x", "eq": 1}}
    for i in range(1, 40):
        below = {"segment": f"s{i - 1}"}
        segments[f"s{i}"] = {"all": [below, {"any": [below, {"attr": "y", "eq": i}]}]}
    doc = {"segments": segments, "flags": {}}
    with pytest.raises(FlagsValidationError, match="expands to more than"):
        load_flags(json.dumps(doc))
