"""flagd targeting (JsonLogic) compiled once into Python closures.

``compile_targeting(logic)`` returns ``run(data)`` that gives exactly what the interpreter flagd
uses would give, ``json_logic.jsonLogic(logic, data, OPERATORS)`` with panzi-json-logic's
builtins plus flagd's ``fractional``, ``sem_ver``, ``starts_with`` and ``ends_with``: the same
value, or the same kind of exception at the same point of evaluation (an unknown operation
raises ReferenceError only when its branch is reached, after its arguments were evaluated).

How it stays exact:

- the tree is walked the way ``json_logic.apply.apply`` walks it: lists evaluate elementwise
  into a *fresh* list on every call (``==`` on two lists is identity in panzi's semantics, so
  list literals are never shared), dicts that are not exactly one key are literals returned as
  the very same object, a non-list argument is one argument;
- the lazy operations (``if``/``?:``, ``and``, ``or``, ``filter``, ``reduce``, ``map``,
  ``all``, ``some``, ``none``) are compiled with the interpreter's control flow, and everything
  else evaluates its arguments in order and calls panzi's own operation functions (``to_bool``,
  ``not_``, ``op_equals``, ``op_var`` …), so coercion rules cannot drift;
- the few fast paths (``var`` with a constant name, ``==``/``in`` against constant text,
  ``fractional``/``sem_ver`` with constant tables) fall back to those functions whenever the
  runtime values leave the case they were proved for; the tests compare against the
  interpreter on generated trees;
- constant folding is limited to pure operations whose arguments are all constants and whose
  result is an immutable scalar; anything that raises is left to raise at evaluation time.

The operations dict is read when compiling: changing it afterwards does not affect compiled
functions (the interpreter would read it at every call).
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import cbor2
import mmh3
import semver
from json_logic import jsonLogic
from json_logic.builtins import (
    BUILTINS,
    greater_than,
    greater_than_or_equal,
    less_than,
    less_than_or_equal,
    not_,
    op_equals,
    op_in,
    op_var,
    to_bool,
)

__all__ = [
    "FLAGD_OPERATIONS",
    "MAX_WEIGHT_SUM",
    "Compiled",
    "bucket_bytes",
    "compile_jsonlogic",
    "compile_targeting",
    "ends_with",
    "fractional",
    "normalize_numbers",
    "normalize_version",
    "sem_ver",
    "starts_with",
]

MAX_WEIGHT_SUM = 2_147_483_647  # flagd: the sum of fractional weights must fit an int32

Compiled = Callable[[Any], Any]


# ---------------------------------------------------------------------------------------------
# flagd's custom operations (same signatures and results as openfeature-flagd-core's custom_ops)
# ---------------------------------------------------------------------------------------------


def normalize_numbers(data: Any) -> Any:
    """Floats without a fractional part that fit [-2^63, 2^64 - 1] become ints, recursively
    (flagd's CBOR rule for ``fractional``'s bucketing value); dicts and tuples are rebuilt."""
    if isinstance(data, dict):
        return {k: normalize_numbers(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [normalize_numbers(v) for v in data]
    if isinstance(data, float) and data.is_integer() and -(2**63) <= data <= 2**64 - 1:
        return int(data)
    return data


def _cbor_text(text: str) -> bytes:
    """A CBOR text string (major type 3) with its shortest length header."""
    raw = text.encode("utf-8")
    n = len(raw)
    if n < 24:
        return bytes((0x60 | n,)) + raw
    if n < 0x100:
        return bytes((0x78, n)) + raw
    if n < 0x10000:
        return b"\x79" + n.to_bytes(2, "big") + raw
    if n < 0x1_0000_0000:
        return b"\x7a" + n.to_bytes(4, "big") + raw
    return b"\x7b" + n.to_bytes(8, "big") + raw  # pragma: no cover - 4 GiB of text


def bucket_bytes(bucket_by: Any) -> bytes | None:
    """``cbor2.dumps(normalize_numbers(bucket_by), canonical=True)``, or None where flagd's
    encoding fails. Text and ``[text, text]`` (the shorthand form) are built by hand."""
    cls = bucket_by.__class__
    try:
        if cls is list:
            if len(bucket_by) == 2:
                first, second = bucket_by
                if first.__class__ is str and second.__class__ is str:
                    return b"\x82" + _cbor_text(first) + _cbor_text(second)
        elif cls is str:
            return _cbor_text(bucket_by)
    except UnicodeEncodeError:
        pass  # lone surrogates: let cbor2 decide, as flagd does
    try:
        return cbor2.dumps(normalize_numbers(bucket_by), canonical=True)
    except Exception:  # flagd: any encoding failure means "no bucket"
        return None


def _bucket_hash(bucket_by: Any) -> int | None:
    raw = bucket_bytes(bucket_by)
    return None if raw is None else mmh3.hash(raw, 0, False)


class _Table(NamedTuple):
    """Parsed fractional buckets: cumulative range ends and the variant of each range."""

    ends: tuple[int, ...]
    variants: tuple[Any, ...]
    total: int


def _parse_table(args: Sequence[Any]) -> _Table | None:
    """flagd's _parse_fraction over every bucket, then the total-weight checks; None when any
    bucket is malformed or the total is not in 1..MAX_WEIGHT_SUM (flagd returns None then)."""
    ends: list[int] = []
    variants: list[Any] = []
    total = 0
    for arg in args:
        if not isinstance(arg, tuple | list) or not arg or len(arg) > 2:
            return None
        weight = 1
        if len(arg) == 2:
            given = arg[1]
            if isinstance(given, bool) or not isinstance(given, int):
                return None
            weight = max(0, given)
        total += weight
        ends.append(total)
        variants.append(arg[0])
    if total > MAX_WEIGHT_SUM or total <= 0:
        return None
    return _Table(tuple(ends), tuple(variants), total)


def _pick(table: _Table, hash_value: int) -> Any:
    bucket = (hash_value * table.total) >> 32
    return table.variants[bisect.bisect_right(table.ends, bucket)]


def _shorthand_key(data: Any) -> list[Any] | None:
    """[$flagd.flagKey, targetingKey] for the shorthand form, or None without a usable key."""
    targeting_key = data.get("targetingKey")
    if targeting_key is None or not isinstance(targeting_key, str) or not targeting_key:
        return None
    return [data.get("$flagd", {}).get("flagKey", ""), targeting_key]


def fractional(data: Any, *args: Any) -> Any:
    """flagd's ``fractional``: deterministic weighted buckets over a hash of ``bucket_by``."""
    if not args:
        return None
    if isinstance(args[0], list | tuple):
        bucket_by = _shorthand_key(data)
        buckets: Sequence[Any] = args
    else:
        bucket_by, buckets = args[0], args[1:]
    if bucket_by is None:
        return None
    hash_value = _bucket_hash(bucket_by)
    if hash_value is None:
        return None
    table = _parse_table(buckets)
    if table is None:
        return None
    return _pick(table, hash_value)


def _string_comp(comparator: Callable[[str, str], bool], args: tuple[Any, ...]) -> bool | None:
    if len(args) != 2:
        return None
    first, second = args
    if not isinstance(first, str) or not isinstance(second, str):
        return None
    return comparator(first, second)


def starts_with(data: Any, *args: Any) -> bool | None:
    return _string_comp(str.startswith, args)


def ends_with(data: Any, *args: Any) -> bool | None:
    return _string_comp(str.endswith, args)


@functools.lru_cache(maxsize=4096)
def _parse_version(version: str) -> semver.Version | None:
    if version.startswith(("v", "V")):
        version = version[1:]
    # Pad partial versions (e.g. "1" → "1.0.0", "1.2" → "1.2.0"), as flagd does.
    numeric = version.split("-")[0].split("+")[0]
    dots = numeric.count(".")
    if dots < 2:
        version = numeric + ".0" * (2 - dots) + version[len(numeric) :]
    try:
        return semver.Version.parse(version)
    except ValueError:
        return None


def normalize_version(arg: Any) -> semver.Version:
    """flagd's version reading: ``str(arg)``, an optional v/V prefix, partial versions padded.
    Raises ValueError for anything else."""
    parsed = _parse_version(str(arg))
    if parsed is None:
        raise ValueError(f"{arg!r} is not a semantic version")
    return parsed


def _semver_eq(a: semver.Version, b: semver.Version) -> bool:
    return a == b


def _semver_ne(a: semver.Version, b: semver.Version) -> bool:
    return a != b


def _semver_lt(a: semver.Version, b: semver.Version) -> bool:
    return a < b


def _semver_le(a: semver.Version, b: semver.Version) -> bool:
    return a <= b


def _semver_gt(a: semver.Version, b: semver.Version) -> bool:
    return a > b


def _semver_ge(a: semver.Version, b: semver.Version) -> bool:
    return a >= b


def _semver_caret(a: semver.Version, b: semver.Version) -> bool:
    return a.major == b.major


def _semver_tilde(a: semver.Version, b: semver.Version) -> bool:
    return a.major == b.major and a.minor == b.minor


_SEMVER_OPS: tuple[tuple[str, Callable[[semver.Version, semver.Version], bool]], ...] = (
    ("=", _semver_eq),
    ("!=", _semver_ne),
    ("<", _semver_lt),
    ("<=", _semver_le),
    (">", _semver_gt),
    (">=", _semver_ge),
    ("^", _semver_caret),
    ("~", _semver_tilde),
)


def _semver_op(op: Any) -> Callable[[semver.Version, semver.Version], bool] | None:
    for name, compare in _SEMVER_OPS:  # the same == tests, in the same order, as flagd
        if op == name:
            return compare
    return None


def sem_ver(data: Any, *args: Any) -> bool | None:
    """flagd's ``sem_ver``: [version, operator, version] with = != < <= > >= ^ ~."""
    if len(args) != 3:
        return None
    first, op, second = args
    try:
        left = normalize_version(first)
        right = normalize_version(second)
    except ValueError:
        return None
    compare = _semver_op(op)
    return None if compare is None else compare(left, right)


FLAGD_OPERATIONS: dict[str, Any] = {
    **BUILTINS,
    "fractional": fractional,
    "starts_with": starts_with,
    "ends_with": ends_with,
    "sem_ver": sem_ver,
}

# Operations without side effects whose result depends on their arguments only.
_PURE = frozenset(
    [
        "==",
        "!=",
        "===",
        "!==",
        "<",
        ">",
        "<=",
        ">=",
        "!",
        "!!",
        "+",
        "*",
        "-",
        "/",
        "%",
        "in",
        "min",
        "max",
        "cat",
        "substr",
    ]
)
_PURE_FLAGD = {"starts_with": starts_with, "ends_with": ends_with, "sem_ver": sem_ver}
_SCALARS = (str, int, float, bool, type(None))


# ---------------------------------------------------------------------------------------------
# The compiler
# ---------------------------------------------------------------------------------------------


class _Dynamic:
    __slots__ = ()

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return "<dynamic>"


_DYNAMIC: Any = _Dynamic()


class _Node(NamedTuple):
    fn: Compiled
    # The value when the node always returns this very object (non-list literals), else _DYNAMIC.
    value: Any = _DYNAMIC
    # For a list literal whose items are all constants: those items (a fresh list per call).
    items: tuple[Any, ...] | None = None


def _constant(value: Any) -> _Node:
    def run(data: Any) -> Any:
        return value

    return _Node(run, value)


_NONE = _constant(None)


def _empty_list(data: Any) -> list[Any]:
    return []


def _false(data: Any) -> bool:
    return False


def _true(data: Any) -> bool:
    return True


def compile_targeting(logic: Any) -> Compiled:
    """Compile flagd targeting once; the result maps JsonLogic data to the targeting's value."""
    return compile_jsonlogic(logic, FLAGD_OPERATIONS)


def compile_jsonlogic(logic: Any, operations: dict[str, Any] | None = None) -> Compiled:
    """Compile any JsonLogic with an operations table (default: flagd's)."""
    ops = FLAGD_OPERATIONS if operations is None else operations
    try:
        return _Compiler(ops).compile(logic).fn
    except RecursionError:
        # Nested deeper than the compiler can walk: interpret it, with identical semantics.
        def interpret(data: Any) -> Any:
            return jsonLogic(logic, data, ops)

        return interpret


class _Compiler:
    def __init__(self, operations: dict[str, Any]) -> None:
        self.ops = operations

    def compile(self, logic: Any) -> _Node:
        if isinstance(logic, list):
            return self._list([self.compile(item) for item in logic])
        if not isinstance(logic, dict) or len(logic) != 1:
            return _constant(logic)
        op = next(iter(logic))
        args = logic[op]
        if not isinstance(args, list):
            args = [args]
        if op == "if" or op == "?:":
            return self._if(args)
        if op == "and":
            return self._and(args)
        if op == "or":
            return self._or(args)
        if op == "filter":
            return self._filter(args)
        if op == "reduce":
            return self._reduce(args)
        if op == "map":
            return self._map(args)
        if op in ("all", "some", "none"):
            return self._quantifier(op, args)
        nodes = [self.compile(arg) for arg in args]
        if op in self.ops:
            return self._operation(op, self.ops[op], args, nodes)
        return _Node(_unknown_operation(op, self.ops, [n.fn for n in nodes]))

    # -- literals --------------------------------------------------------------------------

    @staticmethod
    def _list(nodes: list[_Node]) -> _Node:
        if all(n.value is not _DYNAMIC for n in nodes):
            items = tuple(n.value for n in nodes)

            def fresh(data: Any) -> list[Any]:
                return [*items]

            return _Node(fresh, items=items)
        fns = tuple(n.fn for n in nodes)

        def build(data: Any) -> list[Any]:
            return [fn(data) for fn in fns]

        return _Node(build)

    # -- lazy operations -------------------------------------------------------------------

    def _if(self, args: list[Any]) -> _Node:
        argc = len(args)
        if argc == 0:
            return _NONE
        if argc == 1:
            return self.compile(args[0])
        pairs = tuple(
            (self.compile(args[i]).fn, self.compile(args[i + 1]).fn) for i in range(0, argc - 1, 2)
        )
        otherwise = self.compile(args[-1]).fn if argc % 2 else _NONE.fn
        if len(pairs) == 1:
            ((test, then),) = pairs

            def if_one(data: Any) -> Any:
                hit = test(data)
                if hit is True or (hit is not False and hit is not None and to_bool(hit)):
                    return then(data)
                return otherwise(data)

            return _Node(if_one)

        def if_chain(data: Any) -> Any:
            for test, then in pairs:
                hit = test(data)
                if hit is True or (hit is not False and hit is not None and to_bool(hit)):
                    return then(data)
            return otherwise(data)

        return _Node(if_chain)

    def _and(self, args: list[Any]) -> _Node:
        if not args:
            return _NONE
        fns = tuple(self.compile(arg).fn for arg in args)
        if len(fns) == 1:
            return _Node(fns[0])

        def and_(data: Any) -> Any:
            current = None
            for fn in fns:
                current = fn(data)
                if current is not True and not_(current):
                    return current
            return current

        return _Node(and_)

    def _or(self, args: list[Any]) -> _Node:
        if not args:
            return _NONE
        fns = tuple(self.compile(arg).fn for arg in args)
        if len(fns) == 1:
            return _Node(fns[0])

        def or_(data: Any) -> Any:
            current = None
            for fn in fns:
                current = fn(data)
                if current is True or (current is not False and to_bool(current)):
                    return current
            return current

        return _Node(or_)

    def _filter(self, args: list[Any]) -> _Node:
        if len(args) < 2:
            return _Node(_empty_list)
        source = self.compile(args[0]).fn
        test = self.compile(args[1]).fn

        def filter_(data: Any) -> list[Any]:
            items = source(data)
            if not isinstance(items, list):
                return []
            return [item for item in items if to_bool(test(item))]

        return _Node(filter_)

    def _reduce(self, args: list[Any]) -> _Node:
        argc = len(args)
        if argc < 1:
            return _NONE
        source = self.compile(args[0]).fn
        step = self.compile(args[1]).fn if argc > 1 else _NONE.fn
        init = args[2] if argc > 2 else None  # not evaluated: the interpreter doesn't either

        def reduce_(data: Any) -> Any:
            items = source(data)
            if not isinstance(items, list):
                return init
            context: dict[str, Any] = {"accumulator": init}
            for item in items:
                context["current"] = item
                context["accumulator"] = step(context)
            return context["accumulator"]

        return _Node(reduce_)

    def _map(self, args: list[Any]) -> _Node:
        argc = len(args)
        if argc < 1:
            return _Node(_empty_list)
        source = self.compile(args[0]).fn
        step = self.compile(args[1]).fn if argc > 1 else _NONE.fn

        def map_(data: Any) -> list[Any]:
            items = source(data)
            if not isinstance(items, list):
                return []
            return [step(item) for item in items]

        return _Node(map_)

    def _quantifier(self, op: str, args: list[Any]) -> _Node:
        if len(args) < 2:
            return _Node(_true if op == "none" else _false)
        source = self.compile(args[0]).fn
        test = self.compile(args[1]).fn
        if op == "all":

            def all_(data: Any) -> bool:
                items = source(data)
                if not isinstance(items, list) or not items:
                    return False
                return all(to_bool(test(item)) for item in items)

            return _Node(all_)
        if op == "some":

            def some_(data: Any) -> bool:
                items = source(data)
                if not isinstance(items, list):
                    return False
                return any(to_bool(test(item)) for item in items)

            return _Node(some_)

        def none_(data: Any) -> bool:
            items = source(data)
            if not isinstance(items, list):
                return True
            return not any(to_bool(test(item)) for item in items)

        return _Node(none_)

    # -- strict operations -----------------------------------------------------------------

    def _operation(self, op: str, fn: Any, args: list[Any], nodes: list[_Node]) -> _Node:
        folded = self._fold(op, fn, nodes)
        if folded is not None:
            return folded
        special = self._special(op, fn, args, nodes)
        if special is not None:
            return special
        return _Node(_call(fn, [n.fn for n in nodes]))

    def _fold(self, op: str, fn: Any, nodes: list[_Node]) -> _Node | None:
        pure = (op in _PURE and BUILTINS.get(op) is fn) or _PURE_FLAGD.get(op) is fn
        if not pure or any(n.value is _DYNAMIC for n in nodes):
            return None
        try:
            value = fn(None, *(n.value for n in nodes))
        except Exception:
            return None  # raise at evaluation time, like the interpreter
        if value.__class__ not in _SCALARS:
            return None
        return _constant(value)

    def _special(self, op: str, fn: Any, args: list[Any], nodes: list[_Node]) -> _Node | None:
        n = len(nodes)
        if fn is op_var and 1 <= n <= 2:
            return _var(nodes)
        if op == "==" and fn is op_equals and n == 2:
            return _equals(nodes)
        if op == "in" and fn is op_in and n == 2 and nodes[1].items is not None:
            return _in_constant(nodes[0].fn, nodes[1].items)
        if op == "!" and fn is BUILTINS["!"] and n == 1:
            return _unary(not_, nodes[0].fn)
        if op == "!!" and fn is BUILTINS["!!"] and n == 1:
            return _unary(to_bool, nodes[0].fn)
        if n == 2 and op in _BINARY and fn is BUILTINS[op]:
            return _binary(_BINARY[op], nodes[0].fn, nodes[1].fn)
        if fn is fractional:
            return _fractional(args, nodes)
        if fn is sem_ver and n == 3:
            return _sem_ver(nodes)
        return None


# (op_less_than & co. with exactly two arguments call these.)
_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "<": less_than,
    ">": greater_than,
    "<=": less_than_or_equal,
    ">=": greater_than_or_equal,
}


def _call(fn: Any, fns: list[Compiled]) -> Compiled:
    """``fn(data, *[f(data) for f in fns])`` without building the list for small arities."""
    n = len(fns)
    if n == 0:

        def call0(data: Any) -> Any:
            return fn(data)

        return call0
    if n == 1:
        (a,) = fns

        def call1(data: Any) -> Any:
            return fn(data, a(data))

        return call1
    if n == 2:
        a, b = fns

        def call2(data: Any) -> Any:
            return fn(data, a(data), b(data))

        return call2
    if n == 3:
        a, b, c = fns

        def call3(data: Any) -> Any:
            return fn(data, a(data), b(data), c(data))

        return call3
    every = tuple(fns)

    def call_n(data: Any) -> Any:
        return fn(data, *[f(data) for f in every])

    return call_n


def _unknown_operation(op: Any, operations: dict[str, Any], fns: list[Compiled]) -> Compiled:
    """An operation missing from the table: evaluate the arguments, then fail (or resolve a
    dotted name through nested tables) exactly as apply() does."""
    every = tuple(fns)

    def unknown(data: Any) -> Any:
        args = [f(data) for f in every]
        if "." in op:
            props = op.split(".")
            ops: Any = operations
            for index, prop in enumerate(props):
                if isinstance(ops, dict) and prop not in ops:
                    name = ".".join(props[: index + 1])
                    raise ReferenceError(f"Unrecognized operation: {name!r}")
                ops = ops[prop]
            return ops(data, *args)
        raise ReferenceError(f"Unrecognized operation: {op!r}")

    return unknown


def _unary(fn: Callable[[Any], Any], a: Compiled) -> _Node:
    def unary(data: Any) -> Any:
        return fn(a(data))

    return _Node(unary)


def _binary(fn: Callable[[Any, Any], Any], a: Compiled, b: Compiled) -> _Node:
    def binary(data: Any) -> Any:
        return fn(a(data), b(data))

    return _Node(binary)


def _var(nodes: list[_Node]) -> _Node | None:
    """``var`` with a constant, non-empty text name: plain dict walks inline, op_var otherwise."""
    key = nodes[0].value
    if key.__class__ is not str or not key:
        return None
    default_node = nodes[1] if len(nodes) == 2 else _NONE
    default_const = default_node.value
    props = tuple(key.split("."))
    if len(props) == 1:
        if default_const is None:

            def var_get(data: Any) -> Any:
                if data.__class__ is dict:
                    return data.get(key)
                return op_var(data, key)

            return _Node(var_get)
        default_fn = default_node.fn

        def var_get_default(data: Any) -> Any:
            default = default_fn(data)
            if data.__class__ is dict:
                value = data.get(key)
                return default if value is None else value
            return op_var(data, key, default)

        return _Node(var_get_default)
    default_fn = default_node.fn

    def var_path(data: Any) -> Any:
        default = default_fn(data)
        value = data
        for prop in props:
            if value.__class__ is not dict:
                return op_var(data, key, default)  # lists, text, …: panzi's own rules
            value = value.get(prop)
        return default if value is None else value

    return _Node(var_path)


def _equals(nodes: list[_Node]) -> _Node:
    left, right = nodes
    if right.value.__class__ is str:
        text: str = right.value
        a = left.fn

        def equals_text(data: Any) -> bool:
            value = a(data)
            if value.__class__ is str:
                return value == text
            return op_equals(data, value, text)

        return _Node(equals_text)
    a, b = left.fn, right.fn

    def equals(data: Any) -> bool:
        return op_equals(data, a(data), b(data))

    return _Node(equals)


def _in_constant(needle: Compiled, items: tuple[Any, ...]) -> _Node:
    """``in`` against a list literal of constants: ``needle in list`` without the list."""
    if all(item.__class__ is str for item in items):
        members = frozenset(items)

        def in_texts(data: Any) -> bool:
            value = needle(data)
            if value.__class__ is str:
                return value in members
            return value in items

        return _Node(in_texts)

    def in_items(data: Any) -> bool:
        return needle(data) in items

    return _Node(in_items)


def _fraction_values(nodes: Sequence[_Node]) -> list[Any] | None:
    """The evaluated buckets when every one is a constant (or a literal list of constants)."""
    values: list[Any] = []
    for node in nodes:
        if node.items is not None:
            values.append(list(node.items))
        elif node.value is not _DYNAMIC:
            values.append(node.value)
        else:
            return None
    return values


def _fractional(args: list[Any], nodes: list[_Node]) -> _Node | None:
    if not nodes:
        return _NONE
    if isinstance(args[0], list):
        # A literal list first: always the shorthand form, bucketing by [flagKey, targetingKey].
        values = _fraction_values(nodes)
        if values is None:
            return None
        table = _parse_table(values)

        def fractional_shorthand(data: Any) -> Any:
            bucket_by = _shorthand_key(data)
            if bucket_by is None:
                return None
            hash_value = _bucket_hash(bucket_by)
            if hash_value is None or table is None:
                return None
            return _pick(table, hash_value)

        return _Node(fractional_shorthand)
    rest_values = _fraction_values(nodes[1:])
    if rest_values is None:
        return None
    rest_table = _parse_table(rest_values)
    first = nodes[0].fn
    rest_fns = tuple(n.fn for n in nodes[1:])

    def fractional_longhand(data: Any) -> Any:
        bucket_by = first(data)
        if isinstance(bucket_by, list | tuple):  # evaluated to a list: the shorthand after all
            return fractional(data, bucket_by, *[f(data) for f in rest_fns])
        if bucket_by is None:
            return None
        hash_value = _bucket_hash(bucket_by)
        if hash_value is None or rest_table is None:
            return None
        return _pick(rest_table, hash_value)

    return _Node(fractional_longhand)


def _sem_ver(nodes: list[_Node]) -> _Node | None:
    first, op_node, second = nodes
    op, bound = op_node.value, second.value
    if op is _DYNAMIC or bound is _DYNAMIC:
        return None
    try:
        right: semver.Version | None = normalize_version(bound)
    except ValueError:
        right = None
    compare = _semver_op(op)
    a = first.fn

    def sem_ver_const(data: Any) -> bool | None:
        try:
            left = normalize_version(a(data))
        except ValueError:
            return None
        if right is None or compare is None:
            return None
        return compare(left, right)

    return _Node(sem_ver_const)
