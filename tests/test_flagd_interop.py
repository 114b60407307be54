"""flagd import and export: mapping, $evaluators, errors, warnings and round trips."""

from __future__ import annotations

import copy
import importlib
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.contrib.tools.flagd.core.model.flag_store import FlagStore
from openfeature.evaluation_context import EvaluationContext

from edgeloop.evaluate import ErrorCode, Reason, compile_snapshot, evaluate
from edgeloop.evaluate.jsonlogic import compile_targeting
from edgeloop.model import FlagState, FlagsValidationError, ValueType, load_flags, load_flags_file
from edgeloop.model.flagd import export_flagd, import_flagd, resolve_evaluators

flagd_targeting = importlib.import_module(
    "openfeature.contrib.tools.flagd.core.targeting.targeting"
)
ROOT = Path(__file__).resolve().parent.parent
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class _Clock:
    now = NOW

    def time(self) -> float:
        return self.now


CLOCK = _Clock()


@pytest.fixture(autouse=True)
def _frozen_flagd() -> Iterator[None]:
    log = logging.getLogger("openfeature.contrib")
    before = log.disabled
    log.disabled = True
    with mock.patch.object(flagd_targeting, "time", CLOCK):
        yield
    log.disabled = before


FLAGD_DOC = """{
  "$schema": "https://flagd.dev/schema/v0/flags.json",
  "metadata": {"flagSetId": "live-events", "version": "7"},
  "flags": {
    "new-welcome-banner": {
      "state": "ENABLED",
      "variants": {"true": true, "false": false},
      "defaultVariant": false,
      "targeting": {"in": ["@example.com", {"var": "email"}]}
    },
    "hex-color": {
      "state": "ENABLED",
      "variants": {"red": "#CC0000", "green": "#00CC00", "blue": "#0000CC"},
      "defaultVariant": "red",
      "targeting": {
        "if": [
          {"$ref": "is-staff"}, "green",
          {"sem_ver": [{"var": "version"}, ">=", "2.0"]}, "blue",
          null
        ]
      },
      "metadata": {"owner": "design", "version": "8"}
    },
    "discount": {
      "state": "ENABLED",
      "variants": {"none": 0, "small": 5, "large": 12.5},
      "defaultVariant": "none",
      "targeting": {"fractional": [["none", 50], ["small", 30], ["large", 20]]}
    },
    "overlay": {
      "state": "DISABLED",
      "variants": {"popup": {"kind": "popup"}, "chat": {"kind": "chat"}},
      "defaultVariant": "popup"
    },
    "static-int": {
      "state": "ENABLED",
      "variants": {"one": 1, "two": 2},
      "defaultVariant": "two",
      "targeting": {}
    },
    "no-default": {
      "state": "ENABLED",
      "variants": {"a": "A"},
      "defaultVariant": null,
      "targeting": {"if": [{"starts_with": [{"var": "email"}, "vip"]}, "a", null]}
    },
    "timed": {
      "state": "ENABLED",
      "variants": {"before": "b", "after": "a"},
      "defaultVariant": "before",
      "targeting": {"if": [{">=": [{"var": "$flagd.timestamp"}, 1767225600]}, "after"]}
    }
  },
  "$evaluators": {
    "is-staff": {"ends_with": [{"var": "email"}, "@example.com"]}
  }
}
"""

CONTEXTS: list[dict[str, Any]] = [
    {},
    {"targetingKey": "att-1"},
    {"targetingKey": "att-2", "email": "ana@example.com"},
    {"targetingKey": "att-3", "email": "vip@fans.org", "version": "2.1"},
    {"email": "x@y.z", "version": "v1.9.0"},
    {"targetingKey": "att-4", "email": 5, "version": 2},
]


def flagd_view(core: FlagdCore, key: str, vtype: str, context: dict[str, Any]) -> Any:
    attrs = {k: v for k, v in context.items() if k != "targetingKey"}
    ctx = EvaluationContext(targeting_key=context.get("targetingKey"), attributes=attrs)
    try:
        res = getattr(core, f"resolve_{vtype}_value")(key, None, ctx)
    except Exception as exc:
        return ("error", type(exc).__name__)
    return (res.value, res.variant, res.reason.value)


def our_view(snap: Any, key: str, context: dict[str, Any], now: float) -> Any:
    d = evaluate(snap, key, context, now)
    if d.reason is Reason.ERROR:
        assert d.error_code is not None
        return ("error", d.error_code)
    value = None if d.reason is Reason.DISABLED else d.value
    return (value, d.variant, d.reason.value)


_ERRORS = {
    "ParseError": ErrorCode.PARSE_ERROR,
    "GeneralError": ErrorCode.GENERAL,
    "TypeMismatchError": ErrorCode.TYPE_MISMATCH,
    "FlagNotFoundError": ErrorCode.FLAG_NOT_FOUND,
}


def assert_like_flagd(doc: Any, flagset: Any, contexts: list[dict[str, Any]], now: float) -> None:
    core = FlagdCore()
    core.set_flags(copy.deepcopy(doc))
    snap = compile_snapshot(flagset, version=1)
    CLOCK.now = now
    for key, flag in flagset.flags.items():
        for context in contexts:
            theirs = flagd_view(core, key, str(flag.type), context)
            if theirs[0] == "error":
                theirs = ("error", _ERRORS.get(theirs[1], ErrorCode.GENERAL))
            assert our_view(snap, key, context, now) == theirs, (key, context)


# ------------------------------------------------------------------------------------------
# Import
# ------------------------------------------------------------------------------------------


def test_import_maps_every_field() -> None:
    fs = import_flagd(FLAGD_DOC, "events.flagd.json")
    assert fs.metadata == {"flagSetId": "live-events", "version": "7"}
    assert fs.segments == {}
    banner = fs.flags["new-welcome-banner"]
    assert banner.type is ValueType.BOOLEAN
    assert banner.default_variant == "false"  # a boolean defaultVariant names a variant
    color = fs.flags["hex-color"]
    assert color.type is ValueType.STRING
    assert color.metadata == {"owner": "design", "version": "8"}
    assert color.targeting["if"][0] == {"ends_with": [{"var": "email"}, "@example.com"]}
    assert color.rules == ()
    assert fs.flags["discount"].type is ValueType.FLOAT
    overlay = fs.flags["overlay"]
    assert overlay.type is ValueType.OBJECT and overlay.state is FlagState.DISABLED
    static = fs.flags["static-int"]
    assert static.type is ValueType.INTEGER and static.targeting is None
    assert fs.flags["no-default"].default_variant is None


@pytest.mark.parametrize("now", [NOW - 1, NOW, NOW + 0.5])
def test_imported_flags_decide_like_flagd(now: float) -> None:
    fs = import_flagd(FLAGD_DOC)
    assert_like_flagd(json.loads(FLAGD_DOC), fs, CONTEXTS, now)


def test_import_accepts_bytes_dicts_and_the_array_form() -> None:
    doc = json.loads(FLAGD_DOC)
    assert import_flagd(FLAGD_DOC.encode()) == import_flagd(doc) == import_flagd(FLAGD_DOC)
    array = {
        "flags": [
            {"key": k, **v}
            for k, v in doc["flags"].items()
            if k != "hex-color"  # (its $ref needs $evaluators)
        ]
    }
    fs = import_flagd(array)
    assert set(fs.flags) == set(doc["flags"]) - {"hex-color"}


def test_import_ignores_source_and_selector_like_flagd_core() -> None:
    doc = {
        "flags": {
            "f": {
                "state": "ENABLED",
                "variants": {"a": 1},
                "defaultVariant": "a",
                "source": "file",
                "selector": "x",
            }
        }
    }
    assert import_flagd(doc).flags["f"].variants == {"a": 1}


def test_empty_default_variant_and_falsy_targeting_mean_none() -> None:
    doc = {
        "flags": {
            "f": {
                "state": "ENABLED",
                "variants": {"a": "x"},
                "defaultVariant": "",
                "targeting": {},
            },
            "g": {"state": "ENABLED", "variants": {"a": "x"}, "targeting": None},
        }
    }
    fs = import_flagd(doc)
    assert fs.flags["f"].default_variant is None and fs.flags["f"].targeting is None
    assert fs.flags["g"].default_variant is None and fs.flags["g"].targeting is None
    assert_like_flagd(doc, fs, CONTEXTS[:2], NOW)


def _issues(source: Any) -> list[tuple[int, str, str]]:
    with pytest.raises(FlagsValidationError) as err:
        import_flagd(source, "bad.json")
    return [(i.line, ".".join(map(str, i.path)), i.message) for i in err.value.issues]


def flag_doc(**fields: Any) -> dict[str, Any]:
    body = {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a"}
    body.update(fields)
    return {"flags": {"f": {k: v for k, v in body.items() if v is not _DROP}}}


_DROP = object()


@pytest.mark.parametrize(
    ("source", "path", "needle"),
    [
        ("{not json", "", "not valid JSON"),
        ("[1, 2]", "", "JSON object"),
        ({"flags": 5}, "flags", "'flags' must be an object"),
        ({"flags": {}, "metadata": []}, "metadata", "must be an object"),
        ({"flags": {}, "metadata": {"k": None}}, "metadata.k", "text, a number or a boolean"),
        ({"flags": {}, "$evaluators": [1]}, "$evaluators", "object of named targeting rules"),
        ({"flags": {"f": 3}}, "flags.f", "must be an object"),
        (flag_doc(state=_DROP), "flags.f", "'state' is missing"),
        (flag_doc(state="ON"), "flags.f.state", "ENABLED or DISABLED"),
        (flag_doc(variants={}), "flags.f.variants", "non-empty object"),
        (flag_doc(variants={"a": None}), "flags.f.variants.a", "must not be null"),
        (flag_doc(variants={"a": 1, "b": "x"}), "flags.f.variants", "mix value types"),
        (flag_doc(variants={"a": True, "b": 1}), "flags.f.variants", "boolean, integer"),
        (flag_doc(defaultVariant=5), "flags.f.defaultVariant", "variant name or null"),
        (flag_doc(defaultVariant="zz"), "flags.f.defaultVariant", "missing variant 'zz'"),
        (flag_doc(defaultVariant=True), "flags.f.defaultVariant", "missing variant 'true'"),
        (flag_doc(targeting="a"), "flags.f.targeting", "JsonLogic object"),
        (flag_doc(targeting={"$ref": "r"}), "flags.f.targeting", "$evaluators has no entry"),
        (flag_doc(metadata={"": 1}), "flags.f.metadata", "must not be empty"),
        (flag_doc(description="x"), "flags.f.description", "unknown flag field"),
        ({"flags": {"bad key": flag_doc()["flags"]["f"]}}, "flags.bad key", "valid in flagd"),
        (flag_doc(variants={"": 1}), "flags.f.variants.", "at least 1 character"),
        (
            '{"flags": {"f": {"state": "ENABLED", "variants": {"a": NaN}}}}',
            "flags.f.variants.a",
            "NaN",
        ),
        ({"flags": [{"state": "ENABLED"}]}, "flags.0", "needs a non-empty 'key'"),
    ],
)
def test_import_errors_name_the_path(source: Any, path: str, needle: str) -> None:
    found = _issues(source)
    assert any(p == path and needle in m for _, p, m in found), found


def test_import_errors_carry_flagd_line_numbers() -> None:
    text = FLAGD_DOC.replace(
        '"variants": {"one": 1, "two": 2}', '"variants": {"one": 1, "two": "2"}'
    )
    text = text.replace('"defaultVariant": "before"', '"defaultVariant": "later"')
    found = _issues(text)
    lines = text.splitlines()
    for line, path, _ in found:
        assert path.split(".")[1] in lines[line - 1] or path.split(".")[-1] in lines[line - 1]
    assert {p for _, p, _ in found} == {"flags.static-int.variants", "flags.timed.defaultVariant"}


def test_a_targeting_ref_to_a_non_object_is_rejected() -> None:
    # flagd-core accepts this file and fails each evaluation with PARSE_ERROR (targeting must
    # be an object); our Flag cannot hold such targeting, so the import says so up front.
    doc = flag_doc(targeting={"$ref": "r"})
    doc["$evaluators"] = {"r": "a"}
    assert any("JsonLogic object" in m for _, _, m in _issues(doc))


# ------------------------------------------------------------------------------------------
# $evaluators == flagd-core's FlagStore substitution
# ------------------------------------------------------------------------------------------

NAMES = ["r", "rule.1", "a*b", 'q"x', "back\\slash", "é", "r2"]
# flagd-core hands json.dumps(rule) to re.sub as a template: backslashes in the rule's JSON are
# template escapes there, so the oracle is only meaningful for rules without them.
plain_text = st.text(st.characters(min_codepoint=32, max_codepoint=126, exclude_characters='\\"'))
leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), plain_text)


def refs_and_rules(names: list[str]) -> st.SearchStrategy[Any]:
    ref = st.builds(lambda n: {"$ref": n}, st.sampled_from([*names, "other"]))
    return st.recursive(
        st.one_of(leaf, ref),
        lambda kids: st.one_of(
            st.lists(kids, max_size=3),
            st.dictionaries(
                st.sampled_from(["if", "in", "$ref", "x"]), kids, min_size=1, max_size=2
            ),
        ),
        max_leaves=8,
    )


@settings(
    max_examples=250, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
)
@given(data=st.data())
def test_evaluators_substitute_like_flagd_core(data: st.DataObject) -> None:
    names = data.draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    tree = refs_and_rules(names)
    # (a rule's own $refs must not need JSON escapes either: see the note above)
    rule_tree = refs_and_rules([n for n in names if json.dumps(n) == f'"{n}"'])
    evaluators = {n: data.draw(rule_tree) for n in names}
    flags = {
        f"f{i}": {
            "state": "ENABLED",
            "variants": {"v": data.draw(tree)},
            "targeting": data.draw(tree),
        }
        for i in range(data.draw(st.integers(1, 3)))
    }
    store = FlagStore()
    store.update(copy.deepcopy({"flags": flags, "$evaluators": evaluators}))
    ours = resolve_evaluators(copy.deepcopy(flags), evaluators)
    for key, flag in store.flags.items():
        assert ours[key]["targeting"] == flag.targeting
        assert ours[key]["variants"] == flag.variants


def test_evaluators_with_escaped_text_are_inserted_as_written() -> None:
    # flagd-core's re.sub template turns "a\\b" into a backspace and fails on non-ASCII text;
    # the structural substitution keeps the rule exactly.
    rule = {"in": [{"var": "city"}, ["Zürich", "a\\b"]]}
    doc = flag_doc(targeting={"if": [{"$ref": "r"}, "a", "b"]})
    doc["$evaluators"] = {"r": rule}
    fs = import_flagd(doc)
    assert fs.flags["f"].targeting == {"if": [rule, "a", "b"]}
    with pytest.raises(re.error):
        FlagStore().update(copy.deepcopy(doc))


def test_evaluators_substitute_in_document_order() -> None:
    base = {
        "flags": {"f": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a"}}
    }
    forward = copy.deepcopy(base)
    forward["flags"]["f"]["targeting"] = {"if": [{"$ref": "outer"}, "b"]}
    forward["$evaluators"] = {"outer": {"!": [{"$ref": "inner"}]}, "inner": {"var": "x"}}
    assert import_flagd(forward).flags["f"].targeting == {"if": [{"!": [{"var": "x"}]}, "b"]}
    backward = copy.deepcopy(forward)
    backward["$evaluators"] = {"inner": {"var": "x"}, "outer": {"!": [{"$ref": "inner"}]}}
    # flagd-core leaves the inner $ref unresolved (PARSE_ERROR when evaluated); we refuse it.
    assert any("$evaluators has no entry" in m for _, _, m in _issues(backward))


# ------------------------------------------------------------------------------------------
# Text survives the import exactly (the native document is read back through the loader)
# ------------------------------------------------------------------------------------------

# (lone surrogates are not text: the loader rejects them, see the test below)
any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)


@settings(
    max_examples=300, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
)
@given(name=any_text.filter(bool), value=any_text, meta=any_text, literal=any_text)
def test_any_text_survives_the_import(name: str, value: str, meta: str, literal: str) -> None:
    doc = {
        "metadata": {"note": meta},
        "flags": {
            "f": {
                "state": "ENABLED",
                "variants": {name: value, "other": literal},
                "defaultVariant": name,
                "targeting": {"if": [{"==": [{"var": "k"}, literal]}, name, "other"]},
                "metadata": {"m": meta},
            }
        },
    }
    fs = import_flagd(doc)
    flag = fs.flags["f"]
    assert flag.variants == {name: value, "other": literal}
    assert flag.default_variant == name
    assert flag.targeting == doc["flags"]["f"]["targeting"]
    assert flag.metadata == {"m": meta} and fs.metadata == {"note": meta}


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        any_text,
    ),
    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(any_text, kids, max_size=3)),
    max_leaves=10,
)


@settings(
    max_examples=300, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
)
@given(tree=json_values, value=json_values.filter(lambda v: isinstance(v, dict | list)))
def test_any_json_survives_the_import(tree: Any, value: Any) -> None:
    targeting = {"if": [tree, "a"]}
    doc = {"flags": {"f": {"state": "ENABLED", "variants": {"a": value}, "targeting": targeting}}}
    flag = import_flagd(doc).flags["f"]
    # json.dumps tells 1, 1.0 and true apart and keeps key order
    assert json.dumps(flag.targeting) == json.dumps(targeting)
    assert json.dumps(flag.variants) == json.dumps({"a": value})


def test_lone_surrogates_are_rejected_clearly() -> None:
    doc = flag_doc(variants={"a": "\ud800", "b": "x"})
    assert any("surrogate" in m for _, _, m in _issues(doc))


def test_flagd_origin_flags_export_back_unchanged() -> None:
    fs = import_flagd(FLAGD_DOC)
    doc, warnings = export_flagd(fs)
    assert warnings == []
    assert import_flagd(doc) == fs
    original = json.loads(FLAGD_DOC)
    for key, flag in doc["flags"].items():
        assert flag["variants"] == original["flags"][key]["variants"]


# ------------------------------------------------------------------------------------------
# Export
# ------------------------------------------------------------------------------------------


def test_export_example_lists_what_flagd_cannot_express() -> None:
    fs = load_flags_file(ROOT / "examples" / "micro-offer.yaml")
    doc, warnings = export_flagd(fs)
    text = "\n".join(warnings)
    assert "rendezvous" in text and "fractional" in text  # the split
    assert "prerequisites (offers-enabled=on) dropped" in text
    assert "experiment block" in text and "channels" in text
    assert "JsonLogic coerces types" in text
    offer = doc["flags"]["micro-offer"]
    assert offer["metadata"]["experiment"] == "micro-offer-2026-11"
    assert offer["targeting"]["if"][0] == {"and": [{"$ref": "core-markets"}, {"$ref": "got-value"}]}
    assert set(doc["$evaluators"]) == {"core-markets", "got-value"}
    FlagdCore().set_flags(json.dumps(doc))  # flagd-core loads it
    back = import_flagd(json.dumps(doc))
    assert back.flags["micro-offer"].variants == fs.flags["micro-offer"].variants
    assert back.metadata == fs.metadata


def test_export_orders_nested_segments_for_flagd() -> None:
    fs = load_flags(
        """
segments:
  base: {attr: country, eq: US}
  mid: {all: [{segment: base}, {attr: age, gte: 18}]}
  top: {any: [{segment: mid}, {attr: tier, eq: gold}]}
flags:
  f:
    type: string
    variants: {a: A, b: B}
    default_variant: a
    rules:
      - when: {segment: top}
        variant: b
"""
    )
    doc, _ = export_flagd(fs)
    assert list(doc["$evaluators"]) == ["top", "mid", "base"]
    back = import_flagd(doc)
    assert "$ref" not in json.dumps(back.flags["f"].targeting)
    contexts = [{"country": "US", "age": 20}, {"country": "US", "age": 3}, {"tier": "gold"}, {}]
    native, imported = compile_snapshot(fs), compile_snapshot(back)
    for ctx in contexts:
        assert evaluate(native, "f", ctx, NOW).variant == evaluate(imported, "f", ctx, NOW).variant


def test_export_warns_about_regex_sticky_float_and_fractional_seconds() -> None:
    fs = load_flags(
        """
flags:
  f:
    type: float
    variants: {a: 1, b: 2}
    default_variant: a
    sticky: true
    rules:
      - when: {attr: email, matches: "^[a-z]+@"}
        variant: b
      - when: {after: "2026-01-01T00:00:00.250Z"}
        variant: b
"""
    )
    doc, warnings = export_flagd(fs)
    text = "\n".join(warnings)
    assert "no regular expressions; exported as false" in text
    assert "sticky dropped" in text
    assert "reads it back as an integer flag" in text
    assert "whole seconds" in text
    chain = doc["flags"]["f"]["targeting"]["if"]
    assert chain[0] is False
    assert chain[2] == {">=": [{"var": "$flagd.timestamp"}, 1767225601]}


@pytest.mark.parametrize(
    "pattern",
    [
        "^vip",
        "@example\\.com$",
        "^exact$",
        "needle",
        "\\Astart",
        "end\\Z",
        "^a\\-b\\Z",
        "",
        "^$",
        "$",
    ],
)
@pytest.mark.parametrize(
    "value",
    [
        "vip-1",
        "a@example.com",
        "a@example.com\n",
        "exact",
        "exact\n",
        "xneedlex",
        "start",
        "end",
        "the end",
        "a-b",
        "",
        "\n",
        5,
        None,
        ["vip"],
        True,
    ],
)
def test_plain_regexes_export_exactly(pattern: str, value: Any) -> None:
    fs = load_flags(
        json.dumps(
            {
                "flags": {
                    "f": {
                        "type": "boolean",
                        "variants": {"y": True, "n": False},
                        "default_variant": "n",
                        "rules": [{"when": {"attr": "x", "matches": pattern}, "variant": "y"}],
                    }
                }
            }
        )
    )
    doc, warnings = export_flagd(fs)
    assert not [w for w in warnings if "regular expressions" in w]
    logic = doc["flags"]["f"]["targeting"]["if"][0]
    native = evaluate(compile_snapshot(fs), "f", {"x": value}, NOW).variant == "y"
    exported = bool(compile_targeting(logic)({"x": value}))
    assert exported == native == (isinstance(value, str) and re.search(pattern, value) is not None)


def test_single_live_split_exports_its_variant() -> None:
    fs = load_flags(
        """
flags:
  f:
    type: string
    variants: {a: A, b: B}
    default_variant: a
    rules:
      - split: {a: 0, b: 5}
"""
    )
    doc, warnings = export_flagd(fs)
    assert doc["flags"]["f"]["targeting"] == {"if": ["b"]}
    assert any("one live variant" in w for w in warnings)


def test_custom_bucketing_exports_the_long_form() -> None:
    fs = load_flags(
        """
flags:
  f:
    type: string
    variants: {a: A, b: B}
    default_variant: a
    bucket_by: session
    salt: s1
    rules:
      - split: {a: 1, b: 3}
"""
    )
    doc, _ = export_flagd(fs)
    frac = doc["flags"]["f"]["targeting"]["if"][0]["fractional"]
    assert frac == [{"cat": ["s1", {"var": "session"}]}, ["a", 1], ["b", 3]]


# ------------------------------------------------------------------------------------------
# Round trip: native → flagd → import, same decisions (splits excepted)
# ------------------------------------------------------------------------------------------

ATTRS: dict[str, st.SearchStrategy[Any]] = {
    "country": st.sampled_from(["US", "CA", "DE", "", "us"]),
    "email": st.sampled_from(["ana@example.com", "vip@fans.org", "x@y", "vip-x@example.com"]),
    "age": st.one_of(st.integers(-1, 99), st.sampled_from([17.5, 18.0, 0.0])),
    "beta": st.booleans(),
    "version": st.sampled_from(["1.2.3", "2.0.0", "0.9.9", "2.0.0-rc.1", "10.0.0"]),
    "obj": st.fixed_dictionaries({}, optional={"k": st.sampled_from(["gold", "silver"])}),
}
INSTANTS = [NOW - 60, NOW, NOW + 60]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat().replace("+00:00", "Z")


@st.composite
def compare(draw: Any) -> dict[str, Any]:
    attr = draw(st.sampled_from([*ATTRS, "obj.k"]))
    if draw(st.integers(0, 9)) == 0:
        return {"attr": attr, "exists": draw(st.booleans())}
    if attr in ("country", "email", "obj.k"):
        texts = {
            "country": ["US", "CA", "DE", "", "U"],
            "email": ["vip", "@example.com", "ana@example.com", "x"],
            "obj.k": ["gold", "silver", "g"],
        }[attr]
        op = draw(
            st.sampled_from(
                ["eq", "ne", "in", "not_in", "starts_with", "ends_with", "contains", "matches"]
            )
        )
        if op in ("in", "not_in"):
            return {
                "attr": attr,
                op: draw(st.lists(st.sampled_from(texts), min_size=1, max_size=3)),
            }
        if op == "matches":
            word = draw(st.sampled_from(texts)).replace(".", "\\.")
            return {
                "attr": attr,
                op: draw(st.sampled_from([f"^{word}", f"{word}$", word, f"^{word}$"])),
            }
        return {"attr": attr, op: draw(st.sampled_from(texts))}
    if attr == "age":
        op = draw(st.sampled_from(["eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in"]))
        number = st.one_of(st.integers(-2, 40), st.sampled_from([17.5, 18.0, 0]))
        if op in ("in", "not_in"):
            return {"attr": attr, op: draw(st.lists(number, min_size=1, max_size=3))}
        return {"attr": attr, op: draw(number)}
    if attr == "beta":
        op = draw(st.sampled_from(["eq", "ne", "in", "not_in"]))
        if op in ("in", "not_in"):
            return {"attr": attr, op: [draw(st.booleans())]}
        return {"attr": attr, op: draw(st.booleans())}
    if attr == "version":
        op = draw(
            st.sampled_from(["semver_eq", "semver_lt", "semver_lte", "semver_gt", "semver_gte"])
        )
        return {"attr": attr, op: draw(st.sampled_from(["1.2.3", "2.0.0", "2.0.0-rc.1"]))}
    return {"attr": "obj.k", "eq": "gold"}


def condition(segments: list[str]) -> st.SearchStrategy[Any]:
    leaves: list[st.SearchStrategy[Any]] = [
        compare(),
        compare(),
        st.builds(
            lambda t, op: {op: _iso(t)},
            st.sampled_from(INSTANTS),
            st.sampled_from(["after", "before"]),
        ),
    ]
    if segments:
        leaves.append(st.builds(lambda s: {"segment": s}, st.sampled_from(segments)))
    return st.recursive(
        st.one_of(leaves),
        lambda kids: st.one_of(
            st.builds(lambda items: {"all": items}, st.lists(kids, min_size=1, max_size=3)),
            st.builds(lambda items: {"any": items}, st.lists(kids, min_size=1, max_size=3)),
            st.builds(lambda item: {"not": item}, kids),
        ),
        max_leaves=5,
    )


@st.composite
def native_documents(draw: Any) -> dict[str, Any]:
    segments: dict[str, Any] = {}
    for name in ["seg-a", "seg-b"][: draw(st.integers(0, 2))]:
        segments[name] = draw(condition(list(segments)))
    flags: dict[str, Any] = {}
    for key in ["f1", "f2", "f3"][: draw(st.integers(1, 3))]:
        names = draw(
            st.lists(st.sampled_from(["a", "b", "c", "on"]), min_size=1, max_size=4, unique=True)
        )
        rules: list[dict[str, Any]] = []
        for _ in range(draw(st.integers(0, 4))):
            rule: dict[str, Any] = {}
            if draw(st.integers(0, 4)):
                rule["when"] = draw(condition(list(segments)))
            if draw(st.integers(0, 4)):
                rule["variant"] = draw(st.sampled_from(names))
            else:
                rule["split"] = {n: draw(st.integers(0, 5)) for n in names}
                if not sum(rule["split"].values()):
                    rule["split"][names[0]] = 1
            rules.append(rule)
        flags[key] = {
            "type": "string",
            "variants": {n: n.upper() for n in names},
            "default_variant": draw(st.one_of(st.none(), st.sampled_from(names))),
            "state": draw(st.sampled_from(["ENABLED", "ENABLED", "DISABLED"])),
            "rules": rules,
        }
    return {"segments": segments, "flags": flags}


native_contexts = st.fixed_dictionaries(
    {},
    optional={"targetingKey": st.sampled_from(["att-1", "att-2"]), **ATTRS},
)


@settings(
    max_examples=150, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
)
@given(raw=native_documents(), contexts=st.lists(native_contexts, min_size=6, max_size=6))
def test_export_round_trip_decides_the_same(
    raw: dict[str, Any], contexts: list[dict[str, Any]]
) -> None:
    fs = load_flags(json.dumps(raw))
    doc, _ = export_flagd(fs)
    back = import_flagd(json.dumps(doc))
    native, imported = compile_snapshot(fs), compile_snapshot(back)
    core = FlagdCore()
    core.set_flags(json.dumps(doc))
    for i, ctx in enumerate(contexts):
        now = INSTANTS[i % 3] + (i % 2) * 0.5 - 0.25
        CLOCK.now = now
        for key in fs.flags:
            mine = evaluate(native, key, ctx, now)
            theirs = evaluate(imported, key, ctx, now)
            # flagd itself agrees with the imported flag in every case
            attrs = {k: v for k, v in ctx.items() if k != "targetingKey"}
            res = core.resolve_string_value(
                key, None, EvaluationContext(ctx.get("targetingKey"), attrs)
            )
            assert (res.variant, res.reason.value) == (theirs.variant, theirs.reason.value)
            if mine.reason is Reason.SPLIT or mine.error_code in (
                ErrorCode.TARGETING_KEY_MISSING,
                ErrorCode.INVALID_CONTEXT,
            ):
                continue  # splits bucket differently (documented in the export's warnings)
            assert (theirs.value, theirs.variant, theirs.reason) == (
                mine.value,
                mine.variant,
                mine.reason,
            ), (
                key,
                ctx,
                now,
                doc["flags"][key],
            )
