"""Compiling native flags into plain Python functions, once per snapshot.

Each flag becomes one function ``run(ctx, now) -> Decision`` whose body is generated source:
conditions are inlined as boolean expressions, splits as straight-line rendezvous hashing, and
every possible Decision is built ahead of time, so an evaluation parses nothing, interprets
nothing and allocates nothing. Constants (attribute names, lists, decisions) are passed in as
arguments of a factory, so the generated source depends only on a flag's *shape*: flags of the
same shape share one compiled factory, which keeps compiling 10 000 flags fast.
"""

from __future__ import annotations

import graphlib
import re
from collections.abc import Callable, Mapping
from typing import Any

import mmh3
import msgspec
import semver

from edgeloop.model import (
    All,
    AnyOf,
    Clock,
    Compare,
    Condition,
    Flag,
    Not,
    SegmentRef,
    ValueType,
)
from edgeloop.model.conditions import segment_refs

from .bucketing import LANE_BITS, LANE_MASK, LANES_PER_HASH, LN, lane_seed, split_seed
from .decision import Decision, ErrorCode, Reason

Run = Callable[[Mapping[str, Any], float], Decision]

_NUMBER = (int, float)  # a class check against this tuple excludes bool, on purpose
_FACTORIES: dict[str, Callable[..., Run]] = {}


class _Source:
    """Accumulates generated lines and the constants they refer to (as c0, c1, …)."""

    def __init__(self) -> None:
        self.consts: list[Any] = []
        self.lines: list[str] = []
        self.temps = 0

    def const(self, value: Any) -> str:
        self.consts.append(value)
        return f"c{len(self.consts) - 1}"

    def temp(self) -> str:
        self.temps += 1
        return f"_t{self.temps}"

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def build(self) -> Run:
        params = ", ".join(f"c{i}" for i in range(len(self.consts)))
        body = "\n".join(self.lines)
        source = f"def make({params}):\n    def run(ctx, now):\n{body}\n    return run\n"
        factory = _FACTORIES.get(source)
        if factory is None:
            namespace: dict[str, Any] = {
                "_hash128": mmh3.hash128,
                "_LN": LN,
                "_NUMBER": _NUMBER,
            }
            exec(compile(source, "<edgeloop flag>", "exec"), namespace)
            factory = namespace["make"]
            _FACTORIES[source] = factory
        return factory(*self.consts)


def _attr_read(src: _Source, attr: str) -> str:
    """Expression reading one context attribute; dotted names walk nested mappings."""
    if "." not in attr:
        return f"ctx.get({src.const(attr)})"
    return f"{src.const(_path_reader(attr.split('.')))}(ctx)"


def _path_reader(parts: list[str]) -> Callable[[Mapping[str, Any]], Any]:
    def read(ctx: Mapping[str, Any]) -> Any:
        value: Any = ctx
        for part in parts:
            if not isinstance(value, Mapping):
                return None
            value = value.get(part)
        return value

    return read


def _semver_test(op: str, bound: str) -> Callable[[Any], bool]:
    target = semver.Version.parse(bound)
    compare = {
        "semver_eq": lambda v: v == target,
        "semver_lt": lambda v: v < target,
        "semver_lte": lambda v: v <= target,
        "semver_gt": lambda v: v > target,
        "semver_gte": lambda v: v >= target,
    }[op]

    def test(value: Any) -> bool:
        if not isinstance(value, str) or not semver.Version.is_valid(value):
            return False
        return bool(compare(semver.Version.parse(value)))

    return test


class SegmentTable:
    """A snapshot's segments, ready to be referred to from conditions.

    A segment that refers to no other segment is inlined where it is used (it costs no call).
    One that refers to others is compiled once into its own function, in dependency order, and
    called: inlining those would copy each level into the next, which grows as 2^depth.
    """

    def __init__(self, conditions: Mapping[str, Condition]) -> None:
        self.conditions = conditions
        self.functions: dict[str, Callable[[Mapping[str, Any], float], bool]] = {}
        graph = {name: segment_refs(cond) for name, cond in conditions.items()}
        for name in graphlib.TopologicalSorter(graph).static_order():
            if graph.get(name):
                src = _Source()
                src.emit(2, f"return {condition_expr(src, conditions[name], self)}")
                self.functions[name] = src.build()  # type: ignore[assignment]


def condition_expr(src: _Source, cond: Condition, segments: SegmentTable) -> str:
    """A Python boolean expression over ``ctx`` and ``now``.

    A missing attribute, or one of the wrong type, never matches (except ``exists: false``):
    targeting must not throw on whatever a client sends.
    """
    if isinstance(cond, All):
        return "(" + " and ".join(condition_expr(src, c, segments) for c in cond.items) + ")"
    if isinstance(cond, AnyOf):
        return "(" + " or ".join(condition_expr(src, c, segments) for c in cond.items) + ")"
    if isinstance(cond, Not):
        return f"(not {condition_expr(src, cond.item, segments)})"
    if isinstance(cond, SegmentRef):
        compiled = segments.functions.get(cond.name)
        if compiled is not None:
            return f"{src.const(compiled)}(ctx, now)"
        return condition_expr(src, segments.conditions[cond.name], segments)
    if isinstance(cond, Clock):
        epoch = src.const(cond.epoch)
        return f"(now >= {epoch})" if cond.op == "after" else f"(now < {epoch})"
    return _compare_expr(src, cond)


def _compare_expr(src: _Source, cond: Compare) -> str:
    read = _attr_read(src, cond.attr)
    op, value = cond.op, cond.value
    t = src.temp()
    if op == "exists":
        return f"({read} is {'not ' if value else ''}None)"
    if op in ("eq", "ne"):
        match = _equals(src, t, value)
        if op == "eq":
            return f"(({t} := {read}) is not None and {match})"
        return f"(({t} := {read}) is not None and not {match})"
    if op in ("in", "not_in"):
        # 'in' is 'eq' to any member: one set per kind, each behind a class check that keeps
        # unhashable values out and True apart from 1 (in a mixed set, 1 would find True).
        groups = (
            ("{t}.__class__ is str", [v for v in value if v.__class__ is str]),
            ("{t}.__class__ in _NUMBER", [v for v in value if v.__class__ in _NUMBER and v == v]),
            ("{t}.__class__ is bool", [v for v in value if v.__class__ is bool]),
        )
        tests = [
            f"{check.format(t=t)} and {t} in {src.const(frozenset(members))}"
            for check, members in groups
            if members
        ] or ["False"]
        tests[0] = tests[0].replace(f"{t}.__class__", f"({t} := {read}).__class__", 1)
        inside = "(" + " or ".join(f"({test})" for test in tests) + ")"
        if op == "in":
            return inside
        return f"({read} is not None and not {inside})"
    if op in ("lt", "lte", "gt", "gte"):
        symbol = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}[op]
        return f"(({t} := {read}).__class__ in _NUMBER and {t} {symbol} {src.const(value)})"
    if op in ("starts_with", "ends_with"):
        method = "startswith" if op == "starts_with" else "endswith"
        return f"(({t} := {read}).__class__ is str and {t}.{method}({src.const(value)}))"
    if op == "contains":
        return f"(({t} := {read}).__class__ is str and {src.const(value)} in {t})"
    if op == "matches":
        search = src.const(re.compile(value).search)
        return f"(({t} := {read}).__class__ is str and {search}({t}) is not None)"
    return f"{src.const(_semver_test(op, value))}({read})"


def _equals(src: _Source, t: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"({t} is {src.const(value)})"
    if isinstance(value, int | float):
        return f"({t}.__class__ in _NUMBER and {t} == {src.const(value)})"
    return f"({t} == {src.const(value)})"


class FlagDecisions:
    """Every Decision one flag can return, built once."""

    def __init__(self, flag: Flag, metadata: dict[str, Any], version: int) -> None:
        self.flag = flag
        self.metadata = metadata
        self.version = version
        self._cache: dict[tuple[str | None, Reason], Decision] = {}

    def of(self, variant: str | None, reason: Reason) -> Decision:
        key = (variant, reason)
        found = self._cache.get(key)
        if found is None:
            meta = self.metadata
            exp = self.flag.experiment
            if exp is not None and variant in exp.channels:
                meta = {**meta, "channel": str(exp.channels[variant])}
            value = None if variant is None else self.flag.variants[variant]
            if (
                self.flag.type is ValueType.FLOAT
                and value.__class__ is int
                and not self.flag.targeting
            ):
                # A native float flag answers floats, whatever the file wrote; a flagd flag
                # keeps flagd's answers exactly (flagd returns the integer).
                value = float(value)
            found = Decision(
                self.flag.key, value, variant, reason, metadata=meta, version=self.version
            )
            self._cache[key] = found
        return found

    def redirected(self, assigned: str, served: str) -> Decision:
        """A rolled-back variant: the attendee stays *assigned* to it (for analysis) but is
        served the control."""
        key = (f"{assigned}->{served}", Reason.SPLIT)
        found = self._cache.get(key)
        if found is None:
            base = self.of(served, Reason.SPLIT)
            meta = {**base.metadata, "assigned": assigned}
            found = msgspec.structs.replace(base, metadata=meta)
            self._cache[key] = found
        return found

    def default(self, reason: Reason) -> Decision:
        return self.of(self.flag.default_variant, reason)

    def error(self, code: ErrorCode, message: str) -> Decision:
        return Decision(
            self.flag.key,
            None,
            None,
            Reason.ERROR,
            code,
            message,
            metadata=self.metadata,
            version=self.version,
        )


def _unit_normalizer(decisions: FlagDecisions, attr: str) -> Callable[[Any], str | Decision]:
    """Turns a non-text bucketing value into text, or into the error Decision it deserves."""
    missing = decisions.error(
        ErrorCode.TARGETING_KEY_MISSING, f"split needs context attribute {attr!r}"
    )
    invalid = decisions.error(
        ErrorCode.INVALID_CONTEXT, f"context attribute {attr!r} must be text or an integer"
    )

    def normalize(value: Any) -> str | Decision:
        if value is None or value == "":
            return missing
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return invalid  # also text that is not UTF-8 encodable (a lone surrogate)

    return normalize


def _served(flag: Flag, variant: str, decisions: FlagDecisions) -> Decision:
    """What an attendee bucketed into ``variant`` is served: the variant, or the control if
    the variant was rolled back."""
    exp, control = flag.experiment, flag.control_variant
    if exp is not None and control is not None and variant in exp.rolled_back:
        return decisions.redirected(variant, control)
    return decisions.of(variant, Reason.SPLIT)


def _emit_split(
    src: _Source,
    depth: int,
    flag: Flag,
    weights: tuple[tuple[str, int], ...],
    decisions: FlagDecisions,
    sticky: Callable[[str, Decision], Decision] | None,
) -> None:
    live = [(i, name, w) for i, (name, w) in enumerate(weights) if w > 0]
    picks = [src.const(_served(flag, name, decisions)) for _i, name, _w in live]
    if len(live) == 1:
        src.emit(depth, f"return {picks[0]}")
        return
    unit, data = src.temp(), src.temp()
    normalize = src.const(_unit_normalizer(decisions, flag.bucket_by))
    seed = split_seed(flag.bucket_salt)
    # The happy path reads the unit and encodes it in one go; anything odd takes the slow path:
    # missing (KeyError), "" or 0 (TypeError below), an int, bytes or a list (no .encode), text
    # with a lone surrogate (UnicodeEncodeError). mmh3 only ever gets bytes: given a str with a
    # lone surrogate, mmh3 5.3.1 crashes the process (segmentation fault).
    src.emit(depth, "try:")
    if "." in flag.bucket_by:
        src.emit(depth + 1, f"{unit} = {_attr_read(src, flag.bucket_by)}")
    else:
        src.emit(depth + 1, f"{unit} = ctx[{src.const(flag.bucket_by)}]")
    src.emit(depth + 1, f"if not {unit}:")
    src.emit(depth + 2, "raise TypeError")
    src.emit(depth + 1, f"{data} = {unit}.encode()")
    src.emit(depth, "except (KeyError, TypeError, AttributeError, UnicodeEncodeError):")
    src.emit(depth + 1, f"{unit} = {normalize}({_attr_read(src, flag.bucket_by)})")
    src.emit(depth + 1, f"if {unit}.__class__ is not str:")
    src.emit(depth + 2, f"return {unit}")
    src.emit(depth + 1, f"{data} = {unit}.encode()")
    src.emit(depth, f"_h0 = _hash128({data}, {src.const(lane_seed(seed, 0))})")
    # Scores are ln(lane) * (w_first / w_i): the first live variant's score needs no multiply.
    first_weight = live[0][2]
    hashed = {0}
    exprs: list[str] = []
    for i, _name, weight in live:
        chunk, lane = divmod(i, LANES_PER_HASH)
        h = f"_h{chunk}"
        if chunk not in hashed:
            hashed.add(chunk)
            src.emit(depth, f"{h} = _hash128({data}, {src.const(lane_seed(seed, chunk))})")
        shift = lane * LANE_BITS
        bits = f"({h} >> {shift}) & {LANE_MASK}" if shift else f"{h} & {LANE_MASK}"
        factor = "" if weight == first_weight else f" * {src.const(first_weight / weight)}"
        exprs.append(f"_LN[{bits}]{factor}")
    ret = (
        (lambda d: f"return {d}")
        if sticky is None
        else (lambda d: f"return {src.const(sticky)}({unit}, {d})")
    )
    if len(live) == 2:
        src.emit(depth, f"if {exprs[1]} > {exprs[0]}:")
        src.emit(depth + 1, ret(picks[1]))
        src.emit(depth, ret(picks[0]))
        return
    if len(live) == 3:
        # A decision tree: fewer stores than the running maximum; ties go to the earlier.
        s0, s1, s2 = src.temp(), src.temp(), src.temp()
        src.emit(depth, f"{s0} = {exprs[0]}")
        src.emit(depth, f"{s1} = {exprs[1]}")
        src.emit(depth, f"{s2} = {exprs[2]}")
        src.emit(depth, f"if {s1} > {s0}:")
        src.emit(depth + 1, f"if {s1} >= {s2}:")
        src.emit(depth + 2, ret(picks[1]))
        src.emit(depth + 1, ret(picks[2]))
        src.emit(depth, f"if {s0} >= {s2}:")
        src.emit(depth + 1, ret(picks[0]))
        src.emit(depth, ret(picks[2]))
        return
    best, pick, score = src.temp(), src.temp(), src.temp()
    src.emit(depth, f"{best} = {exprs[0]}")
    src.emit(depth, f"{pick} = {picks[0]}")
    for expr, decision in zip(exprs[1:], picks[1:], strict=True):
        src.emit(depth, f"{score} = {expr}")
        src.emit(depth, f"if {score} > {best}:")
        src.emit(depth + 1, f"{best} = {score}")
        src.emit(depth + 1, f"{pick} = {decision}")
    src.emit(depth, ret(pick))


def compile_native(
    flag: Flag,
    segments: SegmentTable,
    decisions: FlagDecisions,
    prerequisites: list[tuple[Run, str]],
    sticky_for: Callable[[Flag, tuple[tuple[str, int], ...], FlagDecisions], Any] | None,
) -> Run:
    """The run function of an ENABLED native flag (rules, prerequisites, default)."""
    if not flag.rules and not prerequisites:
        static = decisions.default(Reason.STATIC if flag.default_variant else Reason.DEFAULT)
        return lambda ctx, now: static
    src = _Source()
    fallback = src.const(decisions.default(Reason.DEFAULT))
    for run, variant in prerequisites:
        src.emit(2, f"if {src.const(run)}(ctx, now).variant != {src.const(variant)}:")
        src.emit(3, f"return {fallback}")
    for rule in flag.rules:
        depth = 2
        if rule.when is not None:
            src.emit(2, f"if {condition_expr(src, rule.when, segments)}:")
            depth = 3
        if rule.variant is not None:
            src.emit(
                depth, f"return {src.const(decisions.of(rule.variant, Reason.TARGETING_MATCH))}"
            )
        elif flag.experiment is not None and flag.experiment.paused and flag.control_variant:
            # A paused experiment serves its control and records no exposures (not a SPLIT).
            paused = decisions.of(flag.control_variant, Reason.TARGETING_MATCH)
            src.emit(depth, f"return {src.const(paused)}")
        else:
            assert rule.split is not None  # the loader guarantees variant xor split
            sticky = sticky_for(flag, rule.split, decisions) if sticky_for and flag.sticky else None
            _emit_split(src, depth, flag, rule.split, decisions, sticky)
        if rule.when is None:
            break  # an unconditional rule ends the list: later rules are unreachable
    else:
        src.emit(2, f"return {fallback}")
    return src.build()
