"""Targeting conditions: a small, readable language that the dashboard can build.

A condition is a mapping with one operator::

    {attr: country, in: [US, CA, GB]}            # compare a context attribute
    {attr: dwell_s, gte: 60}
    {all: [cond, cond, ...]}  {any: [...]}  {not: cond}
    {segment: got-value}                         # a named, reusable condition
    {after: "2026-12-01T18:00:00Z"}              # against the evaluation time (passed in)

Parsing returns a typed tree; every problem is appended to ``issues`` as (path, message).
"""

from __future__ import annotations

import graphlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import semver

from .errors import Path

Scalar = str | int | float | bool

COMPARE_OPS: dict[str, str] = {
    "eq": "equals the value",
    "ne": "does not equal the value",
    "in": "is one of a list",
    "not_in": "is none of a list",
    "lt": "is a number below",
    "lte": "is a number at or below",
    "gt": "is a number above",
    "gte": "is a number at or above",
    "starts_with": "is text starting with",
    "ends_with": "is text ending with",
    "contains": "is text containing",
    "matches": "is text matching a regular expression",
    "exists": "is present (true) or absent (false)",
    "semver_eq": "is a semantic version equal to",
    "semver_lt": "is a semantic version below",
    "semver_lte": "is a semantic version at or below",
    "semver_gt": "is a semantic version above",
    "semver_gte": "is a semantic version at or above",
}
NUMERIC_OPS = frozenset({"lt", "lte", "gt", "gte"})
TEXT_OPS = frozenset({"starts_with", "ends_with", "contains"})
LIST_OPS = frozenset({"in", "not_in"})
SEMVER_OPS = frozenset(op for op in COMPARE_OPS if op.startswith("semver_"))
CLOCK_OPS = ("after", "before")
LOGIC_OPS = ("all", "any", "not")
MAX_LIST = 10_000

_ATTR = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$\-]*(\.[A-Za-z0-9_$\-]+)*$")


@dataclass(frozen=True, slots=True)
class Compare:
    attr: str
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class Clock:
    """True when ``now`` is at/after (``after``) or before (``before``) an instant."""

    op: str
    epoch: float


@dataclass(frozen=True, slots=True)
class All:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Condition


@dataclass(frozen=True, slots=True)
class SegmentRef:
    name: str


Condition = Compare | Clock | All | AnyOf | Not | SegmentRef


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and value is not None


def _parse_instant(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp()


def parse_condition(raw: Any, path: Path, issues: list[tuple[Path, str]]) -> Condition | None:
    """Parse one condition; return None (and record why) when it is malformed."""
    if not isinstance(raw, dict):
        issues.append((path, "a condition must be a mapping such as {attr: country, in: [US]}"))
        return None
    if "attr" in raw:
        return _parse_compare(raw, path, issues)
    keys = list(raw)
    if len(keys) != 1:
        issues.append(
            (
                path,
                f"a condition needs exactly one of attr, {', '.join(LOGIC_OPS)}, segment, "
                f"after, before; got {', '.join(map(str, keys)) or 'nothing'}",
            )
        )
        return None
    op = keys[0]
    value = raw[op]
    here = (*path, op)
    if op in ("all", "any"):
        if not isinstance(value, list) or not value:
            issues.append((here, f"'{op}' takes a non-empty list of conditions"))
            return None
        items = [parse_condition(item, (*here, i), issues) for i, item in enumerate(value)]
        if any(item is None for item in items):
            return None
        parsed = tuple(i for i in items if i is not None)
        return All(parsed) if op == "all" else AnyOf(parsed)
    if op == "not":
        item = parse_condition(value, here, issues)
        return None if item is None else Not(item)
    if op == "segment":
        if not isinstance(value, str) or not value:
            issues.append((here, "'segment' takes a segment name"))
            return None
        return SegmentRef(value)
    if op in CLOCK_OPS:
        epoch = _parse_instant(value)
        if epoch is None:
            issues.append(
                (here, "expected an ISO-8601 instant with a zone, e.g. 2026-12-01T18:00:00Z")
            )
            return None
        return Clock(op, epoch)
    issues.append((here, f"unknown condition operator {op!r}"))
    return None


def _parse_compare(
    raw: dict[str, Any], path: Path, issues: list[tuple[Path, str]]
) -> Compare | None:
    attr = raw["attr"]
    ok = True
    if not isinstance(attr, str) or not _ATTR.match(attr):
        issues.append(((*path, "attr"), "expected an attribute name such as country or dwell_s"))
        ok = False
    ops = [k for k in raw if k != "attr"]
    unknown = [k for k in ops if k not in COMPARE_OPS]
    for k in unknown:
        issues.append(
            ((*path, k), f"unknown comparison {k!r}; expected one of {', '.join(COMPARE_OPS)}")
        )
    known = [k for k in ops if k in COMPARE_OPS]
    if len(known) != 1:
        if not unknown:
            issues.append(
                (
                    path,
                    "a comparison needs one operator besides attr, e.g. {attr: country, eq: US}",
                )
            )
        return None
    if unknown:
        return None
    op = known[0]
    value = raw[op]
    here = (*path, op)
    if op in LIST_OPS:
        if not isinstance(value, list) or not value or not all(_is_scalar(v) for v in value):
            issues.append((here, "expected a non-empty list of text, numbers or booleans"))
            return None
        if len(value) > MAX_LIST:
            issues.append((here, f"list longer than {MAX_LIST} items"))
            return None
        value = tuple(value)
    elif op in NUMERIC_OPS:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            issues.append((here, "expected a number"))
            return None
    elif op in TEXT_OPS:
        if not isinstance(value, str):
            issues.append((here, "expected text"))
            return None
    elif op == "matches":
        if not isinstance(value, str):
            issues.append((here, "expected a regular expression"))
            return None
        try:
            re.compile(value)
        except (re.error, OverflowError, RecursionError) as exc:
            # OverflowError: a{99999999999}; RecursionError: thousands of nested groups.
            issues.append((here, f"invalid regular expression: {exc}"))
            return None
    elif op == "exists":
        if not isinstance(value, bool):
            issues.append((here, "expected true or false"))
            return None
    elif op in SEMVER_OPS:
        if not isinstance(value, str) or not semver.Version.is_valid(value):
            issues.append((here, "expected a semantic version such as 2.1.0"))
            return None
    elif not _is_scalar(value):  # eq, ne
        issues.append((here, "expected text, a number or a boolean"))
        return None
    return Compare(attr, op, value) if ok else None


def segment_refs(cond: Condition) -> set[str]:
    """Names of the segments a condition refers to directly."""
    if isinstance(cond, SegmentRef):
        return {cond.name}
    if isinstance(cond, All | AnyOf):
        out: set[str] = set()
        for item in cond.items:
            out |= segment_refs(item)
        return out
    if isinstance(cond, Not):
        return segment_refs(cond.item)
    return set()


def expanded_sizes(segments: dict[str, Condition]) -> dict[str, int]:
    """How many conditions each (acyclic) segment amounts to with every reference spelled out."""
    sizes: dict[str, int] = {}

    def size(cond: Condition) -> int:
        if isinstance(cond, All | AnyOf):
            return 1 + sum(size(c) for c in cond.items)
        if isinstance(cond, Not):
            return 1 + size(cond.item)
        if isinstance(cond, SegmentRef):
            return of(cond.name)
        return 1

    def of(name: str) -> int:
        if name not in sizes:
            sizes[name] = 0  # a reference to a missing segment counts as nothing
            target = segments.get(name)
            sizes[name] = size(target) if target is not None else 1
        return sizes[name]

    order = graphlib.TopologicalSorter({n: segment_refs(c) for n, c in segments.items()})
    for name in order.static_order():  # leaves first: no deep recursion through references
        of(name)
    return {n: sizes[n] for n in segments}


def condition_to_raw(cond: Condition) -> dict[str, Any]:
    """The document form of a condition: ``parse_condition(condition_to_raw(c)) == c``."""
    if isinstance(cond, Compare):
        value = list(cond.value) if isinstance(cond.value, tuple) else cond.value
        return {"attr": cond.attr, cond.op: value}
    if isinstance(cond, Clock):
        instant = datetime.fromtimestamp(cond.epoch, tz=UTC).isoformat().replace("+00:00", "Z")
        return {cond.op: instant}
    if isinstance(cond, All):
        return {"all": [condition_to_raw(c) for c in cond.items]}
    if isinstance(cond, AnyOf):
        return {"any": [condition_to_raw(c) for c in cond.items]}
    if isinstance(cond, Not):
        return {"not": condition_to_raw(cond.item)}
    return {"segment": cond.name}
