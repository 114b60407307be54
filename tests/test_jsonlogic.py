"""The JsonLogic compiler against its oracles.

- compiled == panzi-json-logic's interpreter with flagd-core's operations, on generated trees
  and data: same value (types, NaN and -0.0 included) or the same exception class;
- our flagd operations == openfeature-flagd-core's custom_ops functions on generated input;
- the hand-built CBOR of the shorthand bucketing key == cbor2's canonical encoding.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Iterator
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from json_logic import jsonLogic

from edgeloop.evaluate import jsonlogic as jl
from edgeloop.evaluate.jsonlogic import (
    FLAGD_OPERATIONS,
    bucket_bytes,
    compile_jsonlogic,
    compile_targeting,
)

flagd_targeting = importlib.import_module(
    "openfeature.contrib.tools.flagd.core.targeting.targeting"
)
flagd_ops = importlib.import_module("openfeature.contrib.tools.flagd.core.targeting.custom_ops")
ORACLE_OPS = flagd_targeting.OPERATORS

SETTINGS = settings(
    max_examples=1500,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(autouse=True)
def _quiet_flagd_logs() -> Iterator[None]:
    # flagd-core logs every malformed fractional/sem_ver call; that is noise here.
    log = logging.getLogger("openfeature.contrib")
    before = log.disabled
    log.disabled = True
    yield
    log.disabled = before


# ------------------------------------------------------------------------------------------
# Comparing outcomes
# ------------------------------------------------------------------------------------------


def same(a: Any, b: Any, seen: set[tuple[int, int]] | None = None) -> bool:
    """Strict structural equality: types must match exactly, NaN equals NaN, -0.0 is not 0.0;
    self-referential containers (reduce can build them) compare by structure once."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list | dict):
        seen = set() if seen is None else seen
        pair = (id(a), id(b))
        if pair in seen:
            return True
        seen.add(pair)
        if len(a) != len(b):
            return False
        if isinstance(a, list):
            return all(same(x, y, seen) for x, y in zip(a, b, strict=True))
        if list(a) != list(b):
            return False
        return all(same(a[k], b[k], seen) for k in a)
    return bool(a == b)


def outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return ("value", fn(*args))
    except Exception as exc:  # the class is what must agree
        return ("raise", type(exc))


def assert_same_outcome(expected: tuple[str, Any], got: tuple[str, Any], *context: Any) -> None:
    if expected[0] == "raise" or got[0] == "raise":
        assert expected == got, (context, expected, got)
    else:
        assert same(expected[1], got[1]), (context, expected, got)


# ------------------------------------------------------------------------------------------
# Generated JsonLogic
# ------------------------------------------------------------------------------------------

KEYS = ["a", "b", "c", "a.b", "0", "1", "x.0", "length", "", "$flagd.flagKey", "targetingKey"]
KEYS += ["$flagd.timestamp", "accumulator", "current", "a.b.c", "nested.list.1"]
TEXTS = ["", "a", "b", "abc", "1", "1.5", "-2", " 3 ", "true", "false", "null", "inf", "x,y"]
TEXTS += ["1.2.3", "v1.2.3", "1.2", "2", "1.2.3-beta.1", "V2.0.0+build", "not.a.version", "é"]

finite = st.floats(allow_nan=False, allow_infinity=False, width=32)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.integers(-(2**70), 2**70),
    finite,
    st.sampled_from([0.0, -0.0, 1.0, 2.5, math.nan, math.inf, -math.inf]),
    st.sampled_from(TEXTS),
    st.text(max_size=4),
)

json_data = st.recursive(
    scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4),
        st.dictionaries(
            st.sampled_from(["a", "b", "c", "0", "1", "x", "list", "nested"]), kids, max_size=4
        ),
    ),
    max_leaves=12,
)
data_dicts = st.fixed_dictionaries(
    {},
    optional={
        "a": json_data,
        "b": json_data,
        "c": json_data,
        "x": json_data,
        "nested": json_data,
        "targetingKey": st.one_of(
            st.none(), st.sampled_from(["", "user-1", "user-2"]), st.integers()
        ),
        "$flagd": st.one_of(
            st.fixed_dictionaries(
                {"flagKey": st.sampled_from(["flag", ""]), "timestamp": st.integers(0, 2**31)}
            ),
            json_data,
        ),
    },
)
any_data = st.one_of(data_dicts, data_dicts, data_dicts, json_data)

STRICT_OPS = [
    *sorted(op for op in FLAGD_OPERATIONS if op != "log"),
    "nope",
    "a.b",
    "var.x",
    ".",
    "==.b",
]
LAZY_OPS = ["if", "?:", "and", "or", "filter", "reduce", "map", "all", "some", "none"]
SEMVER_OPS = ["=", "!=", "<", "<=", ">", ">=", "^", "~", "==", "x", None]

var_nodes = st.one_of(
    st.builds(lambda k: {"var": k}, st.sampled_from(KEYS)),
    st.builds(lambda k, d: {"var": [k, d]}, st.sampled_from(KEYS), scalars),
    st.builds(lambda k: {"var": k}, st.integers(-1, 3)),
    st.just({"var": []}),
)


def _logic(kids: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    args = st.one_of(st.lists(kids, max_size=4), kids)
    weight = st.one_of(st.integers(-2, 100), st.sampled_from([True, 1.0, "5", None, 2**31]))
    bucket = st.one_of(
        st.builds(
            lambda v, w: [v, w], st.one_of(st.sampled_from(["on", "off", "a"]), kids), weight
        ),
        st.builds(lambda v: [v], st.sampled_from(["on", "off"])),
        kids,
    )
    buckets = st.lists(bucket, max_size=4)
    return st.one_of(
        st.lists(kids, max_size=4),
        # (distinct strategy objects: one_of would merge repeats of one object)
        *[st.builds(lambda op, a: {op: a}, st.sampled_from(STRICT_OPS), args) for _ in range(6)],
        *[st.builds(lambda op, a: {op: a}, st.sampled_from(LAZY_OPS), args) for _ in range(3)],
        st.builds(lambda b: {"fractional": b}, buckets),
        st.builds(lambda k, b: {"fractional": [k, *b]}, kids, buckets),
        st.builds(
            lambda v, o, w: {"sem_ver": [v, o, w]},
            kids,
            st.one_of(st.sampled_from(SEMVER_OPS), kids),
            st.one_of(st.sampled_from(TEXTS), kids),
        ),
        st.builds(lambda n, h: {"in": [n, h]}, kids, st.lists(scalars, max_size=4)),
        st.builds(lambda a, b: {"==": [a, b]}, kids, st.sampled_from(TEXTS)),
        st.dictionaries(st.sampled_from(["x", "y", "var"]), kids, min_size=2, max_size=3),
        st.just({}),
    )


logic_trees = st.recursive(st.one_of(scalars, var_nodes), _logic, max_leaves=18)


@SETTINGS
@given(logic=logic_trees, data=any_data)
def test_compiled_equals_interpreter(logic: Any, data: Any) -> None:
    expected = outcome(jsonLogic, logic, data, ORACLE_OPS)
    compiled = compile_targeting(logic)  # compiling never raises
    assert_same_outcome(expected, outcome(compiled, data), logic, data)
    # A compiled function is reusable: a second run on the same data agrees too.
    assert_same_outcome(expected, outcome(compiled, data), logic, data)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(logic=logic_trees, datas=st.lists(any_data, min_size=2, max_size=4))
def test_one_compiled_function_many_data(logic: Any, datas: list[Any]) -> None:
    compiled = compile_targeting(logic)
    for data in datas:
        assert_same_outcome(
            outcome(jsonLogic, logic, data, ORACLE_OPS), outcome(compiled, data), logic, data
        )


@pytest.mark.parametrize(
    ("logic", "data"),
    [
        ({"==": [[1], [1]]}, {}),  # two fresh lists: identity, so False
        ({"==": [{"var": "a"}, {"var": "a"}]}, {"a": [1]}),  # the same list twice: True
        ({"==": [{"x": 1, "y": 2}, {"x": 1, "y": 2}]}, {}),  # literal dicts are distinct objects
        ({"reduce": [[1, 2], {"==": [{"var": "accumulator"}, [1]]}, [1]]}, {}),
        ({"reduce": [[1], {"var": ""}]}, {}),  # the accumulator becomes the context itself
        ({"reduce": [{"var": "a"}, {"+": [1, 2]}, {"var": "not evaluated"}]}, {"a": 5}),
        ({"if": []}, {}),
        ({"if": [True]}, {}),
        ({"if": [False, 1]}, {}),
        ({"if": [0, 1, "", 2]}, {}),
        ({"?:": [[], 1, [0], 2, 3]}, {}),
        ({"and": []}, {}),
        ({"or": [0, "", None]}, {}),
        ({"filter": [[1, 0, 2]]}, {}),
        ({"map": [[1, 2]]}, {}),
        ({"all": [[], True]}, {}),
        ({"none": [5]}, {}),
        ({"nope": [{"/": [1, 0]}]}, {}),  # the argument fails before the unknown operation
        ({"if": [False, {"nope": []}, "ok"]}, {}),  # an unknown operation never reached
        ({"var.x": []}, {}),  # a dotted name through an operation: TypeError, like apply()
        ({"missing.x": []}, {}),
        ({"a.b": []}, {}),
        ({".": []}, {}),
        ({"var": ["a", "b", "c"]}, {}),  # op_var takes no third argument: TypeError
        ({"var": "a.1"}, {"a": ["x", "y"]}),
        ({"var": "a.length"}, {"a": "text"}),
        ({"var": "a"}, ["list data"]),
        ({"var": 1}, ["x", "y"]),
        ({"in": ["b", ["a", "b"]]}, {}),
        ({"in": [1, ["1", True]]}, {}),
        ({"in": [{"var": "a"}, ["x", "y"]]}, {"a": ["x"]}),
        ({"==": [{"var": "a"}, "1"]}, {"a": 1}),
        ({"==": [{"var": "a"}, "x"]}, {"a": None}),
        ({"==": [{"var": "a"}, "x"]}, {"a": {"k": 1}}),  # str vs dict: to_string
        ({"==": [{"var": "a"}, "x"]}, {"a": 1.5j}),  # not JSON: TypeError from op_equals
        ({"<": [1, 2, 3]}, {}),
        ({"<": [{"var": "a"}, "b"]}, {"a": "a"}),
        ({"/": [1, 0]}, {}),
        ({"%": [1, 0]}, {}),
        ({"fractional": []}, {}),
        ({"fractional": [["a", 1]]}, 5),  # data without .get: AttributeError, like flagd
        ({"fractional": [["a", 1]]}, {"targetingKey": "k", "$flagd": 3}),
        ({"fractional": [{"var": "a"}, ["on", 1], ["off", 1]]}, {"a": ["k1", "k2"]}),
        ({"fractional": [{"var": "a"}, ["on", 1], ["off", 1]]}, {"a": 2.0}),
        ({"sem_ver": [{"var": "v"}, "^", "1"]}, {"v": "v1.9"}),
        ({"sem_ver": [{"var": "v"}, ">", "bad"]}, {"v": "1.0.0"}),
        ({"sem_ver": [{"var": "v"}, "?", "1.0.0"]}, {"v": "1.0.0"}),
    ],
)
def test_corner_cases(logic: Any, data: Any) -> None:
    expected = outcome(jsonLogic, logic, data, ORACLE_OPS)
    assert_same_outcome(expected, outcome(compile_targeting(logic), data), logic, data)


def test_deep_tree_falls_back_to_the_interpreter() -> None:
    logic: Any = "leaf"
    for _ in range(5000):
        logic = {"if": [True, logic]}
    compiled = compile_targeting(logic)
    assert outcome(compiled, {}) == outcome(jsonLogic, logic, {}, ORACLE_OPS)


def test_log_prints_like_the_interpreter(capsys: pytest.CaptureFixture[str]) -> None:
    logic = {"log": [{"var": "a"}]}
    assert compile_targeting(logic)({"a": [1, "x"]}) == [1, "x"]
    compiled_out = capsys.readouterr().out
    jsonLogic(logic, {"a": [1, "x"]}, ORACLE_OPS)
    assert compiled_out == capsys.readouterr().out == '[1, "x"]\n'


def test_custom_operations_table() -> None:
    ops = {"twice": lambda data, x=None: [x, x], "ns": {"inner": lambda data, *a: len(a)}}
    for logic in ({"twice": 3}, {"ns.inner": [1, 2]}, {"ns.other": []}, {"ns": []}, {"var": "a"}):
        expected = outcome(jsonLogic, logic, {"a": 1}, ops)
        assert_same_outcome(expected, outcome(compile_jsonlogic(logic, ops), {"a": 1}), logic)


def test_constant_folding_keeps_fresh_lists_and_late_errors() -> None:
    run = compile_targeting({"merge": [[1], [2]]})
    first, second = run({}), run({})
    assert first == second == [1, 2] and first is not second
    # (panzi's to_string checks int before bool: True becomes "True")
    assert compile_targeting({"cat": ["a", 1, True]})({}) == "a1True"
    with pytest.raises(ZeroDivisionError):
        compile_targeting({"/": [1, 0]})({})


# ------------------------------------------------------------------------------------------
# flagd's custom operations == openfeature-flagd-core's
# ------------------------------------------------------------------------------------------

weights = st.one_of(
    st.integers(-5, 10), st.integers(0, 2**31), st.sampled_from([True, 2.0, "3", None, [1]])
)
fraction_args = st.one_of(
    st.builds(
        lambda v, w: [v, w], st.one_of(st.sampled_from(["on", "off", "x"]), scalars), weights
    ),
    st.builds(lambda v: [v], st.sampled_from(["on", "off"])),
    st.builds(lambda v, w: (v, w), st.sampled_from(["on", "off"]), st.integers(0, 5)),
    st.lists(scalars, max_size=3),
    scalars,
)
bucket_values = st.one_of(
    st.text(max_size=30),
    st.lists(st.text(max_size=10), min_size=2, max_size=2),
    json_data,
    st.tuples(st.text(max_size=5), st.text(max_size=5)),
    st.floats(),
    st.sampled_from([2.0**63, -(2.0**63), 2.0**64, 1e300, [1.0, [2.0, {"k": 3.0}]]]),
)
flagd_data = st.fixed_dictionaries(
    {},
    optional={
        "targetingKey": st.one_of(st.none(), st.text(max_size=10), st.integers(), st.just("")),
        "$flagd": st.one_of(st.fixed_dictionaries({"flagKey": st.text(max_size=8)}), st.just({})),
    },
)


@SETTINGS
@given(
    data=flagd_data,
    first=st.one_of(bucket_values, fraction_args),
    rest=st.lists(fraction_args, max_size=5),
)
def test_fractional_equals_flagd(data: dict[str, Any], first: Any, rest: list[Any]) -> None:
    args = (first, *rest)
    expected = outcome(flagd_ops.fractional, data, *args)
    assert_same_outcome(expected, outcome(jl.fractional, data, *args), data, args)
    # and through the compiler (constant tables, shorthand and longhand)
    logic = {"fractional": [{"var": "first"}, *rest]}
    compiled = outcome(compile_targeting(logic), {**data, "first": first})
    interpreted = outcome(jsonLogic, logic, {**data, "first": first}, ORACLE_OPS)
    assert_same_outcome(interpreted, compiled, logic)


@settings(max_examples=400, derandomize=True, deadline=None)
@given(
    keys=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=20),
    flag=st.text(max_size=8),
)
def test_fractional_shorthand_equals_flagd(keys: list[str], flag: str) -> None:
    logic = {"fractional": [["a", 10], ["b", 0], ["c", 30], ["d", 1]]}
    compiled = compile_targeting(logic)
    for key in keys:
        data = {"targetingKey": key, "$flagd": {"flagKey": flag}}
        assert compiled(data) == jsonLogic(logic, data, ORACLE_OPS)


@settings(max_examples=800, derandomize=True, deadline=None)
@given(
    first=st.one_of(st.sampled_from(TEXTS), scalars, json_data),
    op=st.one_of(st.sampled_from(SEMVER_OPS), scalars),
    second=st.one_of(
        st.sampled_from(TEXTS),
        scalars,
        st.from_regex(r"\A[vV]?\d{1,3}(\.\d{1,3}){0,3}(-[a-z0-9.]{1,5})?\Z"),
    ),
    extra=st.lists(scalars, max_size=1),
)
def test_sem_ver_equals_flagd(first: Any, op: Any, second: Any, extra: list[Any]) -> None:
    for args in ((first, op, second), (first, op, second, *extra), (first, op)):
        expected = outcome(flagd_ops.sem_ver, {}, *args)
        assert_same_outcome(expected, outcome(jl.sem_ver, {}, *args), args)
    logic = {"sem_ver": [{"var": "v"}, op, second]}
    assert_same_outcome(
        outcome(jsonLogic, logic, {"v": first}, ORACLE_OPS),
        outcome(compile_targeting(logic), {"v": first}),
        logic,
    )


@settings(max_examples=400, derandomize=True, deadline=None)
@given(args=st.lists(st.one_of(st.text(max_size=5), scalars), max_size=3))
def test_string_ops_equal_flagd(args: list[Any]) -> None:
    for mine, theirs in (
        (jl.starts_with, flagd_ops.starts_with),
        (jl.ends_with, flagd_ops.ends_with),
    ):
        assert_same_outcome(outcome(theirs, {}, *args), outcome(mine, {}, *args), args)


@settings(max_examples=400, derandomize=True, deadline=None)
@given(value=st.one_of(json_data, st.floats(), st.tuples(st.floats(), st.integers())))
def test_normalize_numbers_equals_flagd(value: Any) -> None:
    assert same(flagd_ops.normalize_numbers(value), jl.normalize_numbers(value))


# ------------------------------------------------------------------------------------------
# The CBOR fast path
# ------------------------------------------------------------------------------------------


@settings(max_examples=1000, derandomize=True, deadline=None)
@given(first=st.text(), second=st.text())
def test_cbor_fast_path_equals_cbor2(first: str, second: str) -> None:
    for value in ([first, second], first):
        try:
            expected: bytes | None = cbor2.dumps(value, canonical=True)
        except Exception:
            expected = None
        assert bucket_bytes(value) == expected


@pytest.mark.parametrize("length", [0, 1, 23, 24, 255, 256, 65535, 65536, 70000])
@pytest.mark.parametrize("char", ["a", "é", "€", "😀"])
def test_cbor_fast_path_length_headers(length: int, char: str) -> None:
    text = char * (length // len(char.encode("utf-8")) or length)
    for value in ([text, "k"], ["k", text], text):
        assert bucket_bytes(value) == cbor2.dumps(value, canonical=True)


def test_cbor_lone_surrogate_follows_cbor2() -> None:
    value = ["flag", "\ud800"]
    try:
        expected: bytes | None = cbor2.dumps(value, canonical=True)
    except Exception:
        expected = None
    assert bucket_bytes(value) == expected
