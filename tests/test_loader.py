"""The flags-as-code format, by example.

A document is YAML (or JSON, which is read by the same parser, with line numbers) with three
top-level keys: ``flags``, ``segments`` and ``metadata``. ``load_flags`` returns a FlagSet or
raises ONE FlagsValidationError listing EVERY problem, each as ``file:line: path: message``.
Nothing else ever escapes the loader, whatever the input.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeloop.model import (
    All,
    Clock,
    Compare,
    FlagSet,
    FlagState,
    FlagsValidationError,
    Prerequisite,
    Rule,
    SegmentRef,
    ValueType,
    dump_flags,
    flagset_to_raw,
    load_flags,
    load_flags_file,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "micro-offer.yaml"

FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def problems(text: str | bytes, filename: str = "flags.yaml") -> list[tuple[int, str, str]]:
    """(line, path, message) of every issue; fails the test if the document loads."""
    with pytest.raises(FlagsValidationError) as caught:
        load_flags(text, filename)
    err = caught.value
    out = []
    for issue in err.issues:
        rendered = str(issue)
        file, line, rest = rendered.split(":", 2)
        path, message = rest[1:].split(": ", 1)
        assert (file, int(line), message) == (filename, issue.line, issue.message)
        out.append((issue.line, path, issue.message))
    assert str(err) == "\n".join(str(i) for i in err.issues)
    return out


def one_problem(text: str | bytes) -> tuple[int, str, str]:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


# ---------------------------------------------------------------------------------------------
# A valid document
# ---------------------------------------------------------------------------------------------


def test_example_document_loads():
    fs = load_flags_file(EXAMPLE)
    assert list(fs.flags) == ["offers-enabled", "micro-offer"]
    assert fs.metadata == {"owner": "creator-growth"}
    assert fs.segments["core-markets"] == Compare("country", "in", ("US", "CA", "GB"))
    assert fs.segments["got-value"] == All(
        (Compare("dwell_s", "gte", 60), Compare("reactions_pos", "gte", 1))
    )

    kill = fs.flags["offers-enabled"]
    assert kill.type is ValueType.BOOLEAN
    assert kill.variants == {"on": True, "off": False}  # `on`/`off` are names, not booleans
    assert kill.default_variant == "on" and kill.state is FlagState.ENABLED and not kill.rules

    offer = fs.flags["micro-offer"]
    assert offer.type is ValueType.OBJECT
    assert offer.variants["C"] == {"audio_cue": "timed", "ticket_discount": 0.10}
    assert offer.prerequisites == (Prerequisite("offers-enabled", "on"),)
    assert offer.rules == (
        Rule(
            when=All((SegmentRef("core-markets"), SegmentRef("got-value"))),
            split=(("A", 34), ("B", 33), ("C", 33)),
            name="value-gate",
        ),
    )
    assert offer.bucket_by == "targetingKey" and offer.bucket_salt == "micro-offer"
    assert offer.experiment is not None
    assert offer.experiment.key == "micro-offer-2026-11"
    assert offer.experiment.metrics.secondary == ("retention_d7", "retention_d30")
    assert {k: str(v) for k, v in offer.experiment.channels.items()} == {
        "A": "edge_overlay",
        "B": "client",
        "C": "hybrid",
    }


def test_every_field_of_a_flag():
    fs = load_flags(
        """
$schema: https://example.com/edgeloop-flags.json   # allowed, ignored
flags:
  cta:
    description: Size of the call to action
    type: integer
    variants: {small: 12, large: 18}
    default_variant: small
    state: DISABLED
    bucket_by: session.id
    salt: cta-2026
    sticky: true
    metadata: {owner: ana, priority: 2, beta: false, ratio: 0.5}
    rules:
      - name: big screens
        when: {attr: screen.width, gte: 1200}
        variant: large
      - split: {small: 1, large: 3}
"""
    )
    cta = fs.flags["cta"]
    assert cta.description == "Size of the call to action"
    assert cta.state is FlagState.DISABLED
    assert (cta.bucket_by, cta.salt, cta.bucket_salt, cta.sticky) == (
        "session.id",
        "cta-2026",
        "cta-2026",
        True,
    )
    assert cta.metadata == {"owner": "ana", "priority": 2, "beta": False, "ratio": 0.5}
    assert cta.rules[0] == Rule(
        when=Compare("screen.width", "gte", 1200), variant="large", name="big screens"
    )
    assert cta.rules[1].split == (("small", 1), ("large", 3))


def test_conditions_language():
    fs = load_flags(
        """
segments:
  window:
    all:
      - {after: 2026-12-01T18:00:00Z}       # unquoted: still text, parsed as an instant
      - {before: "2026-12-01T20:00:00+01:00"}
  vip: {any: [{attr: tier, in: [gold, platinum]}, {not: {attr: coupon, exists: false}}]}
flags:
  f:
    type: boolean
    variants: {yes: true, no: false}
    default_variant: no
    rules: [{when: {segment: vip}, variant: yes}]
"""
    )
    window = fs.segments["window"]
    assert isinstance(window, All)
    after, before = window.items
    assert after == Clock("after", 1796148000.0)
    assert before == Clock("before", 1796148000.0 + 3600)
    assert fs.flags["f"].variants == {"yes": True, "no": False}


# ---------------------------------------------------------------------------------------------
# YAML 1.1 traps: the loader reads YAML 1.2 (core schema)
# ---------------------------------------------------------------------------------------------


def test_yaml_11_booleans_and_dates_stay_text():
    fs = load_flags(
        """
flags:
  answers:
    type: string
    variants: {a: on, b: off, c: yes, d: no, e: y, f: n, g: On, h: NO}
    default_variant: a
  dates:
    type: string
    variants: {day: 2026-12-01, stamp: 2026-12-01 18:00:00, clock: 12:30, ver: 1.2.3}
    default_variant: day
"""
    )
    assert fs.flags["answers"].variants == {
        "a": "on",
        "b": "off",
        "c": "yes",
        "d": "no",
        "e": "y",
        "f": "n",
        "g": "On",
        "h": "NO",
    }
    assert fs.flags["dates"].variants == {
        "day": "2026-12-01",
        "stamp": "2026-12-01 18:00:00",
        "clock": "12:30",  # YAML 1.1 would read 750 (sexagesimal)
        "ver": "1.2.3",
    }


def test_yaml_12_core_scalars():
    fs = load_flags(
        """
metadata:
  t1: true
  t2: True
  f: FALSE
  n1: 12
  n2: -3
  lead: 012          # 1.2 core: 12 (1.1 would read octal 10)
  oct: 0o17
  hex: 0x1F
  exp: 1e3
  half: .5
  inf: -.inf
  nan: .nan
  under: 1_000       # 1.1 would read 1000; 1.2 core: text
  quoted: "12"
  single: 'true'
flags: {}
"""
    )
    m = fs.metadata
    assert (m["t1"], m["t2"], m["f"]) == (True, True, False)
    assert (m["n1"], m["n2"], m["lead"], m["oct"], m["hex"]) == (12, -3, 12, 15, 31)
    assert m["exp"] == 1000.0 and isinstance(m["exp"], float)
    assert m["half"] == 0.5 and m["inf"] == -math.inf and math.isnan(m["nan"])  # type: ignore[arg-type]
    assert (m["under"], m["quoted"], m["single"]) == ("1_000", "12", "true")


def test_null_default_variant_and_empty_flags():
    fs = load_flags("flags:\n  f: {type: string, variants: {a: x}, default_variant: ~}\n")
    assert fs.flags["f"].default_variant is None
    assert load_flags("flags: {}").flags == {}


@pytest.mark.xfail(
    strict=True,
    reason="BUG source.py _Builder.build: an explicit !!str tag on a plain scalar is ignored "
    "(the composed node keeps only the tag, not whether it was explicit), so !!str 123 is 123",
)
def test_explicit_str_tag_keeps_text():
    fs = load_flags("flags:\n  f: {type: string, variants: {a: !!str 123}, default_variant: a}\n")
    assert fs.flags["f"].variants == {"a": "123"}


# ---------------------------------------------------------------------------------------------
# Every error, all at once, with file:line: path: message
# ---------------------------------------------------------------------------------------------

BROKEN = """\
metadata:
  owner: growth
bogus: 1
segments:
  loop-a: {segment: loop-b}
  loop-b: {segment: loop-a}
  dangling: {segment: nowhere}
  bad-op: {attr: country, like: US}
  bad-re: {attr: name, matches: "(unclosed"}
  bad-ver: {attr: app, semver_gte: "1.2"}
  bad-time: {after: "2026-12-01"}
flags:
  mixed:
    type: string
    variants: {a: x, b: 1}
    default_variant: c
    colour: red
  weights:
    type: boolean
    variants: {on: true, off: false}
    default_variant: off
    rules:
      - split: {on: 0, off: 0}
      - variant: on
        split: {on: 1}
      - split: {ghost: 1}
      - variant: ghost
      - when: {attr: x, gte: "10"}
        variant: on
      - when: {segment: unknown-seg}
        variant: on
      - when: {attr: x}
        variant: on
      - {}
  self:
    type: boolean
    variants: {on: true}
    default_variant: on
    prerequisites: [{flag: self, variant: on}]
  p1:
    type: boolean
    variants: {on: true}
    default_variant: on
    prerequisites: [{flag: p2, variant: on}]
  p2:
    type: boolean
    variants: {on: true}
    default_variant: on
    prerequisites:
      - {flag: p1, variant: on}
      - {flag: nope, variant: on}
      - {flag: ints, variant: three}
  ints:
    type: integer
    variants: {one: 1, two: 2.5, three: true}
    default_variant: one
    sticky: "yes"
    state: OFF
  dup:
    type: string
    variants: {a: x}
    variants: {b: y}
    default_variant: a
  Bad Key!:
    type: string
  no-type:
    variants: {a: x}
    default_variant: a
"""

BROKEN_EXPECTED = [
    (3, "bogus", "unknown key (expected flags, segments, metadata)"),
    (5, "segments.loop-a", "segments refer to each other in a cycle: loop-a → loop-b → loop-a"),
    (7, "segments.dangling", "refers to unknown segment 'nowhere'"),
    (
        8,
        "segments.bad-op.like",
        "unknown comparison 'like'; expected one of eq, ne, in, not_in, "
        "lt, lte, gt, gte, starts_with, ends_with, contains, matches, exists, semver_eq, "
        "semver_lt, semver_lte, semver_gt, semver_gte",
    ),
    (
        9,
        "segments.bad-re.matches",
        "invalid regular expression: missing ), unterminated subpattern at position 0",
    ),
    (10, "segments.bad-ver.semver_gte", "expected a semantic version such as 2.1.0"),
    (
        11,
        "segments.bad-time.after",
        "expected an ISO-8601 instant with a zone, e.g. 2026-12-01T18:00:00Z",
    ),
    (15, "flags.mixed.variants.b", "value 1 is not of the flag's type string"),
    (16, "flags.mixed.default_variant", "names a missing variant 'c'"),
    (17, "flags.mixed.colour", "unknown key"),
    (23, "flags.weights.rules[0].split", "weights sum to 0"),
    (24, "flags.weights.rules[1]", "a rule serves exactly one of 'variant' or 'split'"),
    (26, "flags.weights.rules[2].split.ghost", "names a missing variant 'ghost'"),
    (27, "flags.weights.rules[3].variant", "names a missing variant 'ghost'"),
    (28, "flags.weights.rules[4].when.gte", "expected a number"),
    (30, "flags.weights.rules[5].when", "refers to unknown segment 'unknown-seg'"),
    (
        32,
        "flags.weights.rules[6].when",
        "a comparison needs one operator besides attr, e.g. {attr: country, eq: US}",
    ),
    (34, "flags.weights.rules[7]", "a rule serves exactly one of 'variant' or 'split'"),
    (39, "flags.self.prerequisites[0].flag", "a flag cannot be its own prerequisite"),
    (44, "flags.p1.prerequisites", "prerequisite cycle: p1 → p2 → p1"),
    (51, "flags.p2.prerequisites[1].flag", "names a missing or invalid flag 'nope'"),
    (52, "flags.p2.prerequisites[2].flag", "names a missing or invalid flag 'ints'"),
    (55, "flags.ints.variants.three", "value True is not of the flag's type integer"),
    (55, "flags.ints.variants.two", "value 2.5 is not of the flag's type integer"),
    (57, "flags.ints.sticky", "Input should be a valid boolean"),
    (58, "flags.ints.state", "Input should be 'ENABLED' or 'DISABLED'"),
    (62, "flags.dup.variants", "duplicate key"),
    (
        64,
        "flags.Bad Key!",
        "expected a key of letters, digits, '_', '.', ':' or '-' (at most 200 characters)",
    ),
    (66, "flags.no-type", "required field 'type' is missing"),
]


def test_every_problem_is_reported_at_once_with_its_line():
    assert problems(BROKEN, "flags.yaml") == BROKEN_EXPECTED


def test_error_text_format():
    with pytest.raises(FlagsValidationError) as caught:
        load_flags(BROKEN, "events/live.yaml")
    lines = str(caught.value).splitlines()
    assert lines[0] == "events/live.yaml:3: bogus: unknown key (expected flags, segments, metadata)"
    assert "events/live.yaml:16: flags.mixed.default_variant: names a missing variant 'c'" in lines
    assert len(lines) == len(BROKEN_EXPECTED)
    assert isinstance(caught.value, ValueError)  # callers may catch ValueError


# Focused: one problem each, to read as documentation of every rule.
ONE_PROBLEM = [
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}, default_variant: a, colour: red}}",
        "flags.f.colour",
        "unknown key",
        id="unknown key",
    ),
    pytest.param(
        "flags: {f: {type: text, variants: {a: x}, default_variant: a}}",
        "flags.f.type",
        "Input should be 'boolean', 'string', 'integer', 'float' or 'object'",
        id="unknown type",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: [a, b], default_variant: a}}",
        "flags.f.variants",
        "Input should be a valid dictionary",
        id="variants not a mapping",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {}, default_variant: null}}",
        "flags.f.variants",
        "Dictionary should have at least 1 item after validation, not 0",
        id="no variants",
    ),
    pytest.param(
        "flags: {f: {type: boolean, variants: {on: true, off: 'false'}, default_variant: on}}",
        "flags.f.variants.off",
        "value 'false' is not of the flag's type boolean",
        id="variant of the wrong type",
    ),
    pytest.param(
        "flags: {f: {type: float, variants: {a: 1.5, b: .inf}, default_variant: a}}",
        "flags.f.variants.b",
        "value must be a finite number",
        id="infinite float variant",
    ),
    pytest.param(
        "flags: {f: {type: object, variants: {a: {x: 1}, b: 2}, default_variant: a}}",
        "flags.f.variants.b",
        "value 2 is not of the flag's type object",
        id="object flag with a number",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}, default_variant: b}}",
        "flags.f.default_variant",
        "names a missing variant 'b'",
        id="default names a missing variant",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}}}",
        "flags.f",
        "required field 'default_variant' is missing",
        id="default_variant is required (null allowed)",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}, default_variant: a,"
        " rules: [{split: {a: 1, b: 1}}]}}",
        "flags.f.rules[0].split.b",
        "names a missing variant 'b'",
        id="split names a missing variant",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}, default_variant: a,"
        " rules: [{split: {a: 0}}]}}",
        "flags.f.rules[0].split",
        "weights sum to 0",
        id="split weights sum to 0",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}, default_variant: a,"
        " rules: [{split: {a: -1}}]}}",
        "flags.f.rules[0].split.a",
        "Input should be greater than or equal to 0",
        id="negative weight",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}, default_variant: a,"
        " rules: [{split: {a: 0.5}}]}}",
        "flags.f.rules[0].split.a",
        "Input should be a valid integer",
        id="fractional weight",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x, b: y}, default_variant: a,"
        " rules: [{split: {a: 2000000000, b: 2000000000}}]}}",
        "flags.f.rules[0].split",
        "weights sum to more than 2147483647",
        id="weights overflow int32",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}, default_variant: a,"
        " rules: [{variant: a, split: {a: 1}}]}}",
        "flags.f.rules[0]",
        "a rule serves exactly one of 'variant' or 'split'",
        id="rule with both variant and split",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}, default_variant: a, rules: [{variant: z}]}}",
        "flags.f.rules[0].variant",
        "names a missing variant 'z'",
        id="rule variant missing",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}, default_variant: a,"
        " rules: [{when: {segment: vips}, variant: a}]}}",
        "flags.f.rules[0].when",
        "refers to unknown segment 'vips'",
        id="unknown segment",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}, default_variant: a,"
        " rules: [{when: {attr: country, like: US}, variant: a}]}}",
        "flags.f.rules[0].when.like",
        "unknown comparison 'like'; expected one of eq, ne, in, not_in, lt, lte, gt, gte, "
        "starts_with, ends_with, contains, matches, exists, semver_eq, semver_lt, semver_lte, "
        "semver_gt, semver_gte",
        id="bad comparison operator",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}, default_variant: a,"
        " rules: [{when: {either: []}, variant: a}]}}",
        "flags.f.rules[0].when.either",
        "unknown condition operator 'either'",
        id="bad condition operator",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}, default_variant: a,"
        " rules: [{when: {all: []}, variant: a}]}}",
        "flags.f.rules[0].when.all",
        "'all' takes a non-empty list of conditions",
        id="empty all",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}, default_variant: a,"
        " rules: [{when: {attr: country, in: US}, variant: a}]}}",
        "flags.f.rules[0].when.in",
        "expected a non-empty list of text, numbers or booleans",
        id="in needs a list",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}, default_variant: a,"
        " rules: [{when: {attr: 'bad attr', eq: 1}, variant: a}]}}",
        "flags.f.rules[0].when.attr",
        "expected an attribute name such as country or dwell_s",
        id="bad attribute name",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}, default_variant: a,"
        " rules: [{when: {attr: name, matches: '[a-'}, variant: a}]}}",
        "flags.f.rules[0].when.matches",
        "invalid regular expression: unterminated character set at position 0",
        id="bad regex",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}, default_variant: a,"
        " rules: [{when: {attr: app, semver_lt: v2}, variant: a}]}}",
        "flags.f.rules[0].when.semver_lt",
        "expected a semantic version such as 2.1.0",
        id="bad semver",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}, default_variant: a,"
        " rules: [{when: {attr: x, exists: yes}, variant: a}]}}",
        "flags.f.rules[0].when.exists",
        "expected true or false",
        id="exists takes a real boolean (yes is text)",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}, default_variant: a,"
        " prerequisites: [{flag: f, variant: a}]}}",
        "flags.f.prerequisites[0].flag",
        "a flag cannot be its own prerequisite",
        id="self prerequisite",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}, default_variant: a,"
        " prerequisites: [{flag: g, variant: a}]}}",
        "flags.f.prerequisites[0].flag",
        "names a missing or invalid flag 'g'",
        id="missing prerequisite flag",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}, default_variant: a,"
        " prerequisites: [{flag: g, variant: z}]},"
        " g: {type: string, variants: {a: x}, default_variant: a}}",
        "flags.f.prerequisites[0].variant",
        "flag 'g' has no variant 'z'",
        id="missing prerequisite variant",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}, default_variant: a,"
        " prerequisites: [{flag: g, variant: a}]},"
        " g: {type: string, variants: {a: x}, default_variant: a,"
        " prerequisites: [{flag: h, variant: a}]},"
        " h: {type: string, variants: {a: x}, default_variant: a,"
        " prerequisites: [{flag: f, variant: a}]}}",
        "flags.f.prerequisites",
        "prerequisite cycle: f → g → h → f",
        id="prerequisite cycle",
    ),
    pytest.param(
        "segments: {a: {segment: a}}\nflags: {}",
        "segments.a",
        "segments refer to each other in a cycle: a → a",
        id="segment refers to itself",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}, default_variant: a,"
        " experiment: {key: e1, metrics: {primary: Conversion}, channels: {z: client}}}}",
        "flags.f.experiment.metrics.primary",
        "expected a metric name in lower_snake_case, e.g. conversion_15m",
        id="experiment metric name",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}, default_variant: a,"
        " experiment: {key: e1, metrics: {primary: conversion_15m}, channels: {z: client}}}}",
        "flags.f.experiment.channels.z",
        "names a missing variant 'z'",
        id="experiment channel for a missing variant",
    ),
    pytest.param(
        "flags: {f: {type: string, variants: {a: x}, default_variant: a,"
        " rules: [{variant: a}], targeting: {if: [true, a, null]}}}",
        "flags.f.targeting",
        "a flag has either rules or (flagd) targeting, not both",
        id="rules and targeting",
    ),
    pytest.param(
        "flags: [a, b]",
        "flags",
        "required: a mapping of flag key to flag definition",
        id="flags not a mapping",
    ),
    pytest.param(
        "- a\n- b",
        "<document>",
        "a flags document must be a mapping with a 'flags' key",
        id="document not a mapping",
    ),
    pytest.param("", "<document>", "empty document", id="empty"),
]


@pytest.mark.parametrize(("text", "path", "message"), ONE_PROBLEM)
def test_each_rule(text, path, message):
    _line, got_path, got_message = one_problem(text)
    assert (got_path, got_message) == (path, message)


def test_duplicate_keys_are_reported_not_merged():
    text = "flags:\n  f:\n    type: string\n    variants: {a: x, a: y}\n    default_variant: a\n"
    assert problems(text) == [(4, "flags.f.variants.a", "duplicate key")]
    text = "flags:\n  f: {type: string, variants: {a: x}, default_variant: a}\n  f: {}\n"
    assert problems(text) == [(3, "flags.f", "duplicate key")]


def test_problems_in_two_flags_and_a_segment_all_reported():
    text = """\
segments:
  s: {attr: x, gt: big}
flags:
  a: {type: string, variants: {v: 1}, default_variant: v}
  b: {type: string, variants: {v: x}, default_variant: w}
"""
    assert problems(text) == [
        (2, "segments.s.gt", "expected a number"),
        (4, "flags.a.variants.v", "value 1 is not of the flag's type string"),
        (5, "flags.b.default_variant", "names a missing variant 'w'"),
    ]


@pytest.mark.xfail(
    strict=True,
    reason="BUG loader.py _Collector.add_pydantic: a metadata value of the wrong type gives one "
    "issue per member of the str|int|float|bool union, with the union's tags in the path "
    "(metadata.bad.bool, metadata.bad.float, ...)",
)
def test_bad_metadata_value_is_one_problem_at_its_path():
    line, path, _message = one_problem("metadata: {bad: [1]}\nflags: {}")
    assert (line, path) == (1, "metadata.bad")


# ---------------------------------------------------------------------------------------------
# JSON input: same rules, same line numbers
# ---------------------------------------------------------------------------------------------

JSON_DOC = """{
  "metadata": {"owner": "growth"},
  "flags": {
    "banner": {
      "type": "string",
      "variants": {"on": "big", "off": "none"},
      "default_variant": "on",
      "rules": [
        {"when": {"attr": "country", "in": ["US"]}, "variant": "off"},
        {"split": {"on": 1, "off": "1"}}
      ]
    },
    "emoji": {
      "type": "string",
      "variants": {"party": "\\ud83c\\udf89", "e": "\\u00e9"},
      "default_variant": "party"
    }
  }
}
"""


def test_json_documents_load():
    good = JSON_DOC.replace('"off": "1"', '"off": 1')
    fs = load_flags(good, "flags.json")
    assert fs.flags["banner"].variants == {"on": "big", "off": "none"}
    # JSON's \\u escapes, surrogate pairs included, are one character each
    assert fs.flags["emoji"].variants == {"party": "🎉", "e": "é"}


def test_json_errors_carry_line_numbers():
    assert problems(JSON_DOC, "flags.json") == [
        (10, "flags.banner.rules[1].split.off", "Input should be a valid integer"),
    ]
    broken = JSON_DOC.replace('"default_variant": "party"', '"default_variant": "confetti"')
    broken = broken.replace('"metadata"', '"meta"')
    assert problems(broken, "flags.json") == [
        (2, "meta", "unknown key (expected flags, segments, metadata)"),
        (10, "flags.banner.rules[1].split.off", "Input should be a valid integer"),
        (16, "flags.emoji.default_variant", "names a missing variant 'confetti'"),
    ]


def test_json_syntax_error_line():
    line, path, message = one_problem('{\n  "flags": {\n    "a": 1\n  \n}')
    assert path == "<document>" and message.startswith("not valid YAML/JSON")
    assert line == 5


def test_json_duplicate_keys_are_reported():
    text = '{"flags": {}, "flags": {}}'
    assert problems(text) == [(1, "flags", "duplicate key")]


@pytest.mark.xfail(
    strict=True,
    reason="LIMITATION source.py: PyYAML does not accept a tab as whitespace between tokens, "
    "so JSON indented with tabs (Go's MarshalIndent, many editors) is rejected",
)
def test_tab_indented_json():
    assert load_flags('{\n\t"flags": {}\n}').flags == {}


# ---------------------------------------------------------------------------------------------
# Round trip: dump_flags(load_flags(x)) loads back to an equal FlagSet
# ---------------------------------------------------------------------------------------------


def typed(value: Any) -> Any:
    """A structure in which True and 1, or 1 and 1.0, are different."""
    if isinstance(value, dict):
        return ("dict", tuple((k, typed(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ("list", tuple(typed(v) for v in value))
    return (type(value).__name__, value)


def assert_round_trips(fs: FlagSet) -> None:
    for fmt in ("yaml", "json"):
        text = dump_flags(fs, fmt)
        again = load_flags(text, f"dumped.{fmt}")
        assert again == fs, text
        assert typed(flagset_to_raw(again)) == typed(flagset_to_raw(fs)), text


def test_example_round_trips():
    assert_round_trips(load_flags_file(EXAMPLE))


def test_tricky_text_round_trips():
    values = [
        "on", "off", "yes", "no", "y", "null", "~", "", " ", "true", "1", "012", "1e5", "0o17",
        "0x1F", "+.5", ".inf", "-.5e3", "1_000", "2026-12-01", "12:30", "- x", "#x", "a: b",
        "&a", "*a", "!x", "%x", "@x", "`x", "'", '"', "\\", " lead", "trail ", "a\nb", "a\tb",
        "\x85", "a\u2028b", "\u2029", "\x7f", "\x9f", "\ufeffbom", "é", "😀", "x" * 300,
        "1" * 5000,
    ]  # fmt: skip
    doc = {
        "metadata": {f"k{i}": v for i, v in enumerate(values)},
        "flags": {
            "f": {
                "type": "string",
                "variants": {f"v{i}": v for i, v in enumerate(values)},
                "default_variant": "v0",
                "rules": [{"when": {"attr": "x", "in": values}, "variant": "v1"}],
            }
        },
    }
    fs = load_flags(as_source(doc))
    assert fs.flags["f"].variants["v12"] == "1e5" and fs.metadata["k0"] == "on"
    assert_round_trips(fs)


def test_dump_rejects_unknown_format():
    with pytest.raises(ValueError, match="unknown format"):
        dump_flags(load_flags("flags: {}"), "toml")


# ---------------------------------------------------------------------------------------------
# Hostile input: a clear FlagsValidationError, no crash, bounded time
# ---------------------------------------------------------------------------------------------


def billion_laughs(levels: int = 9) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghijklmnop"
    for prev, name in itertools.pairwise(names[:levels]):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


HOSTILE = [
    pytest.param(billion_laughs(), "document too large", id="billion laughs"),
    pytest.param("a: &a [*a]\n", "nested deeper than 200 levels", id="recursive alias"),
    pytest.param("[" * 100_000 + "]" * 100_000, "nested too deeply", id="deep flow nesting"),
    pytest.param(
        "".join("  " * i + "a:\n" for i in range(400)) + "  " * 400 + "1\n",
        "nested",
        id="deep block nesting",
    ),
    pytest.param(
        "flags: !!python/object/apply:os.system ['echo pwned']",
        "unsupported YAML tag 'tag:yaml.org,2002:python/object/apply:os.system'",
        id="python object apply",
    ),
    pytest.param(
        "flags: !!python/object:collections.OrderedDict {}",
        "unsupported YAML tag 'tag:yaml.org,2002:python/object:collections.OrderedDict'",
        id="python object",
    ),
    pytest.param(
        "flags: !!python/name:os.system ''",
        "unsupported YAML tag 'tag:yaml.org,2002:python/name:os.system'",
        id="python name",
    ),
    pytest.param("flags: !!binary aGVsbG8=", "unsupported YAML tag", id="binary"),
    pytest.param("flags: !!set {a, b}", "unsupported YAML tag", id="set"),
    pytest.param("flags: !custom {}", "unsupported YAML tag '!custom'", id="local tag"),
    pytest.param("metadata: {n: !!int '3'}\nflags: {}", "unsupported YAML tag", id="int tag"),
    pytest.param(
        "base: &b {type: string}\nflags:\n  f:\n    <<: *b\n",
        "YAML merge keys (<<) are not supported",
        id="merge key",
    ),
    pytest.param("? [a, b]\n: c\n", "mapping keys must be plain text", id="complex key"),
    pytest.param("flags: {}\n---\nflags: {}\n", "not valid YAML/JSON", id="two documents"),
    pytest.param(b"flags: {}\n\xff\xfe", "not UTF-8 text", id="not utf-8"),
    pytest.param("flags: {}\x00", "not valid YAML/JSON", id="nul byte"),
    pytest.param(
        "metadata: {n: " + "9" * 5000 + "}\nflags: {}",
        "number has too many digits",
        id="huge integer",
    ),
    pytest.param('{"flags": {"\\ud800": {}}}', "unpaired UTF-16 surrogate", id="lone surrogate"),
    pytest.param(
        "segments: {s: {attr: x, matches: '" + "(" * 5000 + ")" * 5000 + "'}}\nflags: {}",
        "invalid regular expression",
        id="regex nested too deeply",
    ),
    pytest.param(
        "segments: {s: {attr: x, matches: 'a{99999999999}'}}\nflags: {}",
        "invalid regular expression: the repetition number is too large",
        id="regex repeat overflow",
    ),
]


@pytest.mark.parametrize(("text", "expected"), HOSTILE)
def test_hostile_input_is_rejected_clearly(text, expected):
    started = time.perf_counter()
    with pytest.raises(FlagsValidationError) as caught:
        load_flags(text)
    # Not a timing test: a generous bound that only an exponential blow-up would exceed.
    assert time.perf_counter() - started < 60.0
    assert any(expected in issue.message for issue in caught.value.issues), caught.value


def test_file_errors_are_validation_errors(tmp_path):
    with pytest.raises(FlagsValidationError, match="cannot read file"):
        load_flags_file(tmp_path / "missing.yaml")
    path = tmp_path / "flags.yaml"
    path.write_text("flags:\n  f: {type: string}\n")
    with pytest.raises(FlagsValidationError, match=r"^flags\.yaml:2: flags\.f: required"):
        load_flags_file(path)


# ---------------------------------------------------------------------------------------------
# Property: nothing but FlagsValidationError ever escapes
# ---------------------------------------------------------------------------------------------


def loads_or_rejects(text: str | bytes) -> None:
    try:
        fs = load_flags(text, "fuzz.yaml")
    except FlagsValidationError as err:
        assert err.issues
        for issue in err.issues:
            assert issue.file == "fuzz.yaml" and issue.line >= 1 and issue.message
        assert str(err)
    else:
        assert isinstance(fs, FlagSet)


FIELDS = [
    "flags", "segments", "metadata", "type", "variants", "default_variant", "state", "rules",
    "when", "variant", "split", "name", "prerequisites", "flag", "experiment", "key", "metrics",
    "primary", "channels", "bucket_by", "salt", "sticky", "targeting", "description", "attr",
    "all", "any", "not", "segment", "after", "before", "eq", "in", "gte", "matches", "exists",
    "semver_gt", "boolean", "string", "integer", "float", "object", "on", "off", "a", "b",
]  # fmt: skip
TOKENS = [
    *FIELDS, ":", ": ", "\n", "  ", "- ", "{", "}", "[", "]", ",", "&a ", "*a", "!!str ",
    "!!python/object:os.system ", "!x ", "'", '"', "1e5", "0x1F", "-.inf", "#", "? ", "<<: ",
    "---\n", "...\n", "%YAML 1.2\n", "\t", "|\n", ">\n", "~", "null", "true", "2026-12-01",
    "\\u00e9", "\\ud800", "é", "9" * 30,
]  # fmt: skip

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(FIELDS),
)
json_like = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=6)), inner, max_size=5),
    ),
    max_leaves=25,
)


def flag_shaped() -> st.SearchStrategy[dict[str, Any]]:
    """Mappings with the real field names and mostly-plausible, sometimes absurd values."""
    condition = st.recursive(
        st.one_of(
            st.fixed_dictionaries(
                {"attr": st.one_of(st.sampled_from(["country", "a.b", ""]), json_scalars)},
                optional={
                    op: json_like
                    for op in [
                        "eq",
                        "in",
                        "gte",
                        "matches",
                        "semver_gt",
                        "exists",
                        "starts_with",
                        "bogus",
                    ]
                },
            ),
            st.fixed_dictionaries({}, optional={"after": json_like, "segment": json_like}),
        ),
        lambda inner: st.one_of(
            st.builds(lambda xs: {"all": xs}, st.lists(inner, max_size=3)),
            st.builds(lambda xs: {"any": xs}, st.lists(inner, max_size=3)),
            st.builds(lambda x: {"not": x}, inner),
            json_like,
        ),
        max_leaves=6,
    )
    rule = st.fixed_dictionaries(
        {},
        optional={
            "when": condition,
            "variant": st.one_of(st.sampled_from(["a", "b"]), json_like),
            "split": st.dictionaries(st.sampled_from(["a", "b", "c"]), json_like, max_size=3),
            "name": json_like,
        },
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "type": st.one_of(st.sampled_from(["boolean", "string", "integer", "float", "object"]),
                              json_like),
            "variants": st.one_of(
                st.dictionaries(st.sampled_from(["a", "b", "c"]), json_like, max_size=3),
                json_like,
            ),
            "default_variant": st.one_of(st.sampled_from(["a", "b", None]), json_like),
            "state": st.one_of(st.sampled_from(["ENABLED", "DISABLED"]), json_like),
            "rules": st.one_of(st.lists(rule, max_size=3), json_like),
            "prerequisites": st.one_of(
                st.lists(
                    st.fixed_dictionaries(
                        {}, optional={"flag": st.sampled_from(["f", "g", "x"]),
                                      "variant": json_like}
                    ),
                    max_size=2,
                ),
                json_like,
            ),
            "experiment": json_like,
            "metadata": json_like,
            "sticky": json_like,
            "salt": json_like,
            "targeting": json_like,
            "bogus": json_like,
        },
    )  # fmt: skip


flag_documents_shaped = st.fixed_dictionaries(
    {"flags": st.dictionaries(st.sampled_from(["f", "g", "h!", ""]), flag_shaped(), max_size=3)},
    optional={
        "segments": st.dictionaries(st.sampled_from(["s", "t"]), json_like, max_size=2),
        "metadata": json_like,
    },
)


@settings(FUZZ, max_examples=300)
@given(st.one_of(st.text(), st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)))
def test_garbage_text_never_escapes(text):
    loads_or_rejects(text)


@settings(FUZZ, max_examples=150)
@given(st.binary())
def test_garbage_bytes_never_escape(raw):
    loads_or_rejects(raw)


def serialize(value: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(value)
    return yaml.safe_dump(value, allow_unicode=True)


@settings(FUZZ, max_examples=200)
@given(json_like, st.sampled_from(["json", "yaml"]))
def test_garbage_structures_never_escape(value, fmt):
    loads_or_rejects(serialize(value, fmt))
    loads_or_rejects(serialize({"flags": {"f": value}}, fmt))


@settings(FUZZ, max_examples=150)
@given(flag_documents_shaped, st.sampled_from(["json", "yaml"]))
def test_flag_shaped_garbage_never_escapes(doc, fmt):
    loads_or_rejects(serialize(doc, fmt))


# ---------------------------------------------------------------------------------------------
# Property: valid documents round-trip
# ---------------------------------------------------------------------------------------------

TRICKY_TEXT = [
    "on", "off", "yes", "no", "null", "~", "true", "1", "012", "1e5", "0o17", "+.5", ".inf",
    "2026-12-01", "12:30", "#x", "a: b", "- x", "&a", "*a", "!x", "'", '"', " lead", "trail ",
    "a\nb", "\x85", "\u2028", "\x7f", "é", "😀", "x" * 130,
]  # fmt: skip
texts = st.one_of(st.sampled_from(TRICKY_TEXT), st.text(max_size=20))
names = st.one_of(st.sampled_from([t for t in TRICKY_TEXT if t]), st.text(min_size=1, max_size=12))
keys = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,12}", fullmatch=True)
attrs = st.from_regex(
    r"[A-Za-z_$][A-Za-z0-9_$\-]{0,6}(\.[A-Za-z0-9_$\-]{1,4}){0,2}", fullmatch=True
)
numbers = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False))
scalars = st.one_of(texts, numbers, st.booleans())
instants = st.builds(
    lambda ts, offset_min: datetime_text(ts, offset_min),
    st.floats(946684800, 4102444800).map(lambda x: round(x, 6)),
    st.integers(-14 * 60, 14 * 60),
)


def datetime_text(ts: float, offset_min: int) -> str:
    from datetime import UTC, datetime, timedelta, timezone

    zone = timezone(timedelta(minutes=offset_min)) if offset_min else UTC
    return datetime.fromtimestamp(ts, zone).isoformat()


@functools.cache
def conditions(segment_names: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    compares = st.one_of(
        st.fixed_dictionaries({"attr": attrs, "eq": scalars}),
        st.fixed_dictionaries({"attr": attrs, "ne": scalars}),
        st.fixed_dictionaries({"attr": attrs, "in": st.lists(scalars, min_size=1, max_size=4)}),
        st.fixed_dictionaries(
            {"attr": attrs, "not_in": st.lists(scalars, min_size=1, max_size=4)}
        ),
        *(st.fixed_dictionaries({"attr": attrs, op: numbers}) for op in ["lt", "lte", "gt", "gte"]),
        *(
            st.fixed_dictionaries({"attr": attrs, op: texts})
            for op in ["starts_with", "ends_with", "contains"]
        ),
        st.fixed_dictionaries(
            {"attr": attrs, "matches": st.one_of(st.sampled_from(["^a", "[0-9]+$", "x|y"]),
                                                 texts.map(re.escape))}
        ),
        st.fixed_dictionaries({"attr": attrs, "exists": st.booleans()}),
        *(
            st.fixed_dictionaries(
                {"attr": attrs, op: st.sampled_from(["1.2.3", "2.0.0-rc.1+b5", "0.0.0"])}
            )
            for op in ["semver_eq", "semver_lt", "semver_lte", "semver_gt", "semver_gte"]
        ),
        st.builds(lambda at: {"after": at}, instants),
        st.builds(lambda at: {"before": at}, instants),
    )  # fmt: skip
    leaves = [compares]
    if segment_names:
        leaves.append(st.builds(lambda n: {"segment": n}, st.sampled_from(segment_names)))
    return st.recursive(
        st.one_of(*leaves),
        lambda inner: st.one_of(
            st.builds(lambda xs: {"all": xs}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda x: {"not": x}, inner),
        ),
        max_leaves=4,
    )


def json_values(depth: int = 2) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.one_of(st.none(), st.booleans(), numbers, texts),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)
        ),
        max_leaves=6,
    )


VALUE_FOR = {
    "boolean": st.booleans(),
    "string": texts,
    "integer": st.integers(-(2**70), 2**70),
    "float": numbers,
    "object": st.one_of(
        st.dictionaries(texts, json_values(), max_size=3), st.lists(json_values(), max_size=3)
    ),
}
metadata = st.dictionaries(names, scalars, max_size=3)


@st.composite
def valid_documents(draw) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if draw(st.booleans()):
        doc["metadata"] = draw(st.dictionaries(texts, scalars, max_size=3))
    segments: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 3))):
        name = draw(keys)
        if name not in segments:
            segments[name] = draw(conditions(tuple(segments)))
    if segments:
        doc["segments"] = segments
    flags: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 4))):
        key = draw(keys)
        if key in flags:
            continue
        vtype = draw(st.sampled_from(list(VALUE_FOR)))
        variant_names = draw(st.lists(names, min_size=1, max_size=9, unique=True))
        flag: dict[str, Any] = {
            "type": vtype,
            "variants": {n: draw(VALUE_FOR[vtype]) for n in variant_names},
            "default_variant": draw(st.sampled_from([*variant_names, None])),
        }
        if draw(st.booleans()):
            flag["description"] = draw(texts)
        if draw(st.integers(0, 4)) == 0:
            flag["state"] = draw(st.sampled_from(["ENABLED", "DISABLED"]))
        if draw(st.integers(0, 5)) == 0:
            flag["targeting"] = {"if": [{"==": [{"var": "country"}, "US"]}, variant_names[0], None]}
        else:
            rules = []
            for _ in range(draw(st.integers(0, 3))):
                rule: dict[str, Any] = {}
                if draw(st.booleans()):
                    rule["name"] = draw(texts)
                if draw(st.booleans()):
                    rule["when"] = draw(conditions(tuple(segments)))
                if draw(st.booleans()):
                    rule["variant"] = draw(st.sampled_from(variant_names))
                else:
                    chosen = draw(st.lists(st.sampled_from(variant_names), min_size=1, unique=True))
                    weights = [draw(st.integers(0, 10**6)) for _ in chosen]
                    weights[0] = max(weights[0], 1)
                    rule["split"] = dict(zip(chosen, weights, strict=True))
                rules.append(rule)
            if rules:
                flag["rules"] = rules
        for field, strategy in [
            ("bucket_by", st.text(min_size=1, max_size=20)),
            ("salt", st.text(max_size=20)),
            ("sticky", st.booleans()),
            ("metadata", metadata),
        ]:
            if draw(st.booleans()):
                flag[field] = draw(strategy)
        if flags and draw(st.booleans()):
            target = draw(st.sampled_from(list(flags)))
            flag["prerequisites"] = [
                {"flag": target, "variant": draw(st.sampled_from(list(flags[target]["variants"])))}
            ]
        if draw(st.integers(0, 3)) == 0:
            experiment: dict[str, Any] = {
                "key": draw(keys),
                "metrics": {
                    "primary": draw(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)),
                    "guardrails": ["sentiment"],
                },
            }
            if draw(st.booleans()):
                experiment["hypothesis"] = draw(texts)
            if draw(st.booleans()):
                experiment["channels"] = {
                    n: draw(st.sampled_from(["edge_overlay", "client", "hybrid"]))
                    for n in draw(st.lists(st.sampled_from(variant_names), unique=True))
                }
            if draw(st.booleans()):
                experiment["conversion_window_min"] = draw(st.integers(1, 7 * 24 * 60))
            flag["experiment"] = experiment
        flags[key] = flag
    doc["flags"] = flags
    return doc


def as_source(doc: dict[str, Any]) -> str:
    """JSON text that any YAML 1.2 reader reads back exactly (the characters PyYAML refuses
    raw, or folds as line breaks, are written as \\u escapes)."""
    text = json.dumps(doc, ensure_ascii=True)
    return text.replace("\x7f", "\\u007f")


@settings(FUZZ, max_examples=120)
@given(valid_documents())
def test_valid_documents_round_trip(doc):
    source = as_source(doc)
    fs = load_flags(source)
    assert_round_trips(fs)
