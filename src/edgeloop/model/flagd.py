"""flagd interop: read flagd flag-definition JSON into a FlagSet, write a FlagSet as flagd JSON.

Import keeps flagd's meaning: ``$evaluators`` references are resolved the way
openfeature-flagd-core's FlagStore does, targeting stays JsonLogic (the engine evaluates it
exactly as flagd does), an empty/null targeting means "no targeting" (flagd's STATIC), a
boolean ``defaultVariant`` names the variant "true"/"false", and the flag set and flag
metadata land on FlagSet.metadata and Flag.metadata. flagd flags carry no type, so the type is
inferred from the variant values. The native document is then validated by the same loader as
flags-as-code files, so every check applies; errors name the flagd file, line and path.

Export writes native rules as JsonLogic ``if`` chains and returns, beside the document, a
warning for everything flagd cannot express exactly (splits bucket differently, regular
expressions, prerequisites, sticky assignment, experiments, JsonLogic's type coercion).
"""

from __future__ import annotations

import copy
import graphlib
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .conditions import All, AnyOf, Clock, Compare, Condition, Not, SegmentRef, segment_refs
from .errors import FlagsValidationError, Path, ValidationIssue
from .flags import Flag, FlagSet, ValueType
from .loader import KEY_PATTERN, load_flags
from .source import SourceError, line_of, parse_document

__all__ = ["FLAGD_SCHEMA", "export_flagd", "import_flagd", "resolve_evaluators"]

FLAGD_SCHEMA = "https://flagd.dev/schema/v0/flags.json"

_FLAG_KEYS = {"state", "variants", "defaultVariant", "targeting", "metadata"}
_IGNORED_FLAG_KEYS = {"source", "selector"}  # flagd-core drops these too


# ---------------------------------------------------------------------------------------------
# Import
# ---------------------------------------------------------------------------------------------


class _Issues:
    def __init__(self, filename: str, lines: dict[Path, int]) -> None:
        self.filename = filename
        self.lines = lines
        self.items: list[ValidationIssue] = []

    def add(self, path: Path, message: str) -> None:
        self.items.append(ValidationIssue(self.filename, line_of(self.lines, path), path, message))


def import_flagd(source: str | bytes | Mapping[str, Any], filename: str = "<flagd>") -> FlagSet:
    """Read a flagd flag-definition document (JSON text or the parsed dict) into a FlagSet.

    Raises FlagsValidationError listing every problem, each with file, line and path.
    """
    lines: dict[Path, int] = {}
    if isinstance(source, Mapping):
        data: Any = source
    else:
        text = source
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                issue = ValidationIssue(filename, 1, (), f"not UTF-8 text ({exc.reason})")
                raise FlagsValidationError([issue]) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            issue = ValidationIssue(filename, exc.lineno, (), f"not valid JSON: {exc.msg}")
            raise FlagsValidationError([issue]) from None
        except RecursionError:
            issue = ValidationIssue(filename, 1, (), "nested too deeply")
            raise FlagsValidationError([issue]) from None
        try:  # line numbers for messages only: JSON is YAML, and our YAML reader keeps lines
            lines = parse_document(text, filename)[1]
        except (SourceError, RecursionError):
            lines = {}
    issues = _Issues(filename, lines)
    doc, where = _to_native(data, issues)
    # The flags that passed flagd's own checks go through the loader even when others failed,
    # so that one pass reports every problem.
    flagset: FlagSet | None = None
    try:
        flagset = load_flags(_json_for_loader(doc), filename)
    except FlagsValidationError as exc:
        issues.items += [_translate(issue, where, issues) for issue in exc.issues]
    if issues.items or flagset is None:
        raise FlagsValidationError(issues.items)
    return flagset


def _translate(issue: ValidationIssue, where: dict[str, Path], issues: _Issues) -> ValidationIssue:
    """A loader issue about the native document, re-addressed to the flagd document."""
    path = issue.path
    message = issue.message
    if len(path) >= 2 and path[0] == "flags" and isinstance(path[1], str):
        base = where.get(path[1], ("flags", path[1]))
        rest = tuple("defaultVariant" if p == "default_variant" else p for p in path[2:])
        if not rest and "letters, digits" in message:
            message = (
                f"flag key {path[1]!r} is valid in flagd but not in edgeloop: {message} "
                f"(pattern {KEY_PATTERN}); rename the flag to import it"
            )
        path = (*base, *rest)
    return ValidationIssue(issues.filename, line_of(issues.lines, path), path, message)


def _to_native(data: Any, issues: _Issues) -> tuple[dict[str, Any], dict[str, Path]]:
    """The flags-as-code document for a flagd document, and where each flag came from."""
    where: dict[str, Path] = {}
    native: dict[str, Any] = {"flags": {}}
    if not isinstance(data, dict):
        issues.add((), "a flagd document must be a JSON object with a 'flags' key")
        return native, where
    for path in _non_finite(data, ()):
        issues.add(path, "NaN and Infinity are not JSON numbers")
    flags = _flag_entries(data.get("flags", {}), issues)
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict):
        issues.add(("metadata",), "flag set metadata must be an object")
    elif metadata:
        before = len(issues.items)
        _check_metadata(metadata, ("metadata",), issues)
        if len(issues.items) == before and not _non_finite(metadata, ()):
            native["metadata"] = metadata
    evaluators = data.get("$evaluators")
    if evaluators and not isinstance(evaluators, dict):
        issues.add(("$evaluators",), "$evaluators must be an object of named targeting rules")
        evaluators = None
    if evaluators:
        resolved = resolve_evaluators({k: raw for k, (_, raw) in flags.items()}, evaluators)
        flags = {k: (path, resolved[k]) for k, (path, _) in flags.items()}
    for key, (path, raw) in flags.items():
        where[key] = path
        flag = _flag(raw, path, issues)
        if flag is not None and not _non_finite(flag, ()):  # (NaN was reported above)
            native["flags"][key] = flag
    return native, where


def _flag_entries(raw: Any, issues: _Issues) -> dict[str, tuple[Path, Any]]:
    """flag key → (flagd path, definition), from the object form or flagd's array form."""
    if isinstance(raw, dict):
        return {key: (("flags", key), body) for key, body in raw.items()}
    if isinstance(raw, list):
        out: dict[str, tuple[Path, Any]] = {}
        for i, body in enumerate(raw):
            key = body.get("key") if isinstance(body, dict) else None
            if not isinstance(key, str) or not key:
                issues.add(("flags", i), "each flag in the array form needs a non-empty 'key'")
            elif key in out:
                issues.add(("flags", i, "key"), f"duplicate flag key {key!r}")
            else:
                out[key] = (("flags", i), {k: v for k, v in body.items() if k != "key"})
        return out
    issues.add(("flags",), "'flags' must be an object of flag key to flag definition")
    return {}


def _non_finite(node: Any, path: Path) -> list[Path]:
    """Where json.loads let NaN or Infinity in (JSON has neither)."""
    if isinstance(node, float):
        return [] if math.isfinite(node) else [path]
    out: list[Path] = []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _non_finite(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _non_finite(value, (*path, i))
    return out


def _check_metadata(metadata: dict[str, Any], path: Path, issues: _Issues) -> None:
    for key, value in metadata.items():
        if not key:
            issues.add(path, "metadata keys must not be empty")
        elif value is None or not isinstance(value, str | int | float):
            issues.add((*path, key), "metadata values must be text, a number or a boolean")


def _flag(raw: Any, path: Path, issues: _Issues) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        issues.add(path, "a flag definition must be an object")
        return None
    before = len(issues.items)
    for name in raw:
        if name not in _FLAG_KEYS and name not in _IGNORED_FLAG_KEYS:
            issues.add(
                (*path, name),
                f"unknown flag field (flagd knows {', '.join(sorted(_FLAG_KEYS))})",
            )
    state = raw.get("state")
    if "state" not in raw:
        issues.add(path, "required field 'state' is missing")
    elif state not in ("ENABLED", "DISABLED"):
        issues.add((*path, "state"), "state must be ENABLED or DISABLED")
    variants = raw.get("variants")
    vtype: ValueType | None = None
    if not isinstance(variants, dict) or not variants:
        issues.add((*path, "variants"), "variants must be a non-empty object")
    else:
        vtype = _infer_type(variants, (*path, "variants"), issues)
    default = raw.get("defaultVariant")
    if isinstance(default, bool):
        default = "true" if default else "false"  # flagd's get_variant
    elif default == "":
        default = None
    elif default is not None and not isinstance(default, str):
        issues.add((*path, "defaultVariant"), "defaultVariant must be a variant name or null")
    targeting = raw.get("targeting")
    if not targeting:
        targeting = None  # flagd: falsy targeting means none (STATIC)
    elif not isinstance(targeting, dict):
        issues.add((*path, "targeting"), "targeting must be a JsonLogic object")
    else:
        _check_refs(targeting, (*path, "targeting"), issues)
    metadata = raw.get("metadata")
    if metadata and not isinstance(metadata, dict):
        issues.add((*path, "metadata"), "flag metadata must be an object")
    elif metadata:
        _check_metadata(metadata, (*path, "metadata"), issues)
    if len(issues.items) != before or vtype is None:
        return None
    out: dict[str, Any] = {
        "type": str(vtype),
        "variants": variants,
        "default_variant": default,
        "state": state,
    }
    if targeting is not None:
        out["targeting"] = targeting
    if metadata:
        out["metadata"] = metadata
    return out


_KIND_ORDER = ("boolean", "string", "integer", "float", "object")


def _infer_type(variants: dict[str, Any], path: Path, issues: _Issues) -> ValueType | None:
    kinds: set[str] = set()
    ok = True
    for name, value in variants.items():
        if isinstance(value, bool):
            kinds.add("boolean")
        elif isinstance(value, str):
            kinds.add("string")
        elif isinstance(value, int):
            kinds.add("integer")
        elif isinstance(value, float):
            kinds.add("float")
        elif isinstance(value, dict | list):
            kinds.add("object")
        else:
            issues.add((*path, name), "a variant value must not be null")
            ok = False
    if kinds == {"integer", "float"}:
        kinds = {"float"}
    if len(kinds) > 1:
        found = ", ".join(k for k in _KIND_ORDER if k in kinds)
        issues.add(
            path,
            f"variants mix value types ({found}); an edgeloop flag has one type "
            "(integers and floats may mix, as float)",
        )
        return None
    if not ok or not kinds:
        return None
    return ValueType(kinds.pop())


def _check_refs(logic: Any, path: Path, issues: _Issues) -> None:
    """A ``$ref`` left after substitution would fail at evaluation: say so now."""
    stack: list[Any] = [logic]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if len(node) == 1 and "$ref" in node:
                name = node["$ref"]
                issues.add(
                    path,
                    f"targeting refers to {{'$ref': {name!r}}} but $evaluators has no entry "
                    "that flagd would substitute there (flagd would fail with PARSE_ERROR "
                    "when that branch is evaluated)",
                )
            stack.extend(node.values())


def _ref_matches(node: Any, name: str) -> bool:
    """Whether flagd-core's regex ``{\\s*"\\$ref":\\s*"NAME"\\s*}`` over ``json.dumps(flags)``
    matches this node: a one-key object whose "$ref" text JSON-encodes to exactly the name."""
    if node.__class__ is not dict or len(node) != 1:
        return False
    ref = node.get("$ref")
    return isinstance(ref, str) and json.dumps(ref)[1:-1] == name


def _substitute(node: Any, name: str, rule: Any) -> Any:
    if _ref_matches(node, name):
        return copy.deepcopy(rule)  # inserted text is not scanned again in the same pass
    if isinstance(node, dict):
        return {k: _substitute(v, name, rule) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, name, rule) for v in node]
    return node


def resolve_evaluators(flags: dict[str, Any], evaluators: Mapping[str, Any]) -> dict[str, Any]:
    """flagd-core's ``$evaluators`` substitution, done on the structure instead of the text.

    For each evaluator in order, every ``{"$ref": name}`` object anywhere in the flags becomes
    a copy of the rule (so a rule may refer to evaluators listed after it, not before).
    Identical to flagd-core's regex replacement on ``json.dumps(flags)``, except where that
    replacement itself is broken: flagd-core passes ``json.dumps(rule)`` as a ``re.sub``
    template, so a rule whose JSON contains a backslash (escaped quotes, backslashes,
    control characters, any non-ASCII text) is mangled or makes flagd-core fail; here the
    rule is inserted as written.
    """
    out = flags
    for name, rule in evaluators.items():
        out = _substitute(out, name, rule)
    return out


# YAML (our loader reads JSON as YAML) refuses or folds these characters when they appear raw
# inside a quoted scalar; JSON's \uXXXX escape works in both.
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")


def _json_for_loader(doc: dict[str, Any]) -> str:
    text = json.dumps(doc, ensure_ascii=False, allow_nan=False)
    return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------

_SEMVER = {
    "semver_eq": "=",
    "semver_lt": "<",
    "semver_lte": "<=",
    "semver_gt": ">",
    "semver_gte": ">=",
}
_NUMERIC = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
# Whether "0 <op> value" holds (JsonLogic reads a missing attribute as 0 there).
_HOLDS_FOR_ZERO = {
    "lt": lambda v: v > 0,
    "lte": lambda v: v >= 0,
    "gt": lambda v: v < 0,
    "gte": lambda v: v <= 0,
}
_REGEX_META = set(".^$*+?{}[]\\|()")


class _Export:
    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.compared = False
        self.flagd_attrs: set[str] = set()

    def warn(self, where: str, message: str) -> None:
        self.warnings.append(f"{where}: {message}")

    # -- conditions ----------------------------------------------------------------------

    def condition(self, cond: Condition, where: str) -> Any:
        if isinstance(cond, All):
            return {"and": [self.condition(c, where) for c in cond.items]}
        if isinstance(cond, AnyOf):
            return {"or": [self.condition(c, where) for c in cond.items]}
        if isinstance(cond, Not):
            return {"!": [self.condition(cond.item, where)]}
        if isinstance(cond, SegmentRef):
            return {"$ref": cond.name}
        if isinstance(cond, Clock):
            return self.clock(cond, where)
        return self.compare(cond, where)

    def clock(self, cond: Clock, where: str) -> Any:
        epoch: float | int = cond.epoch
        if float(epoch).is_integer():
            epoch = int(epoch)
        else:
            epoch = math.ceil(epoch)
            instant = datetime.fromtimestamp(cond.epoch, tz=UTC).isoformat()
            self.warn(
                where,
                f"'{cond.op}: {instant}' has a fraction of a second, but flagd's "
                f"$flagd.timestamp counts whole seconds: compared with {epoch} instead, so "
                "the switch happens up to a second later in flagd",
            )
        symbol = ">=" if cond.op == "after" else "<"
        return {symbol: [{"var": "$flagd.timestamp"}, epoch]}

    def compare(self, cond: Compare, where: str) -> Any:
        self.compared = True
        if cond.attr == "$flagd" or cond.attr.startswith("$flagd."):
            self.flagd_attrs.add(cond.attr)
        x = {"var": cond.attr}
        op, value = cond.op, cond.value
        present = {"!==": [x, None]}
        if op == "eq":
            return {"===": [x, value]}
        if op == "ne":
            return {"and": [present, {"!==": [x, value]}]}
        if op == "in":
            return {"in": [x, list(value)]}
        if op == "not_in":
            return {"and": [present, {"!": [{"in": [x, list(value)]}]}]}
        if op in _NUMERIC:
            test = {_NUMERIC[op]: [x, value]}
            # JsonLogic reads a missing attribute as 0; edgeloop never matches it.
            return {"and": [present, test]} if _HOLDS_FOR_ZERO[op](value) else test
        if op in ("starts_with", "ends_with"):
            return {op: [x, value]}
        if op == "contains":
            # starts_with(x, "") is true for text only (flagd's string ops reject the rest)
            return {"and": [{"starts_with": [x, ""]}, {"in": [value, x]}]}
        if op == "exists":
            return present if value else {"===": [x, None]}
        if op in _SEMVER:
            return {"sem_ver": [x, _SEMVER[op], value]}
        return self.regex(cond, x, where)

    def regex(self, cond: Compare, x: Any, where: str) -> Any:
        """Plain-text patterns have exact flagd equivalents; other patterns do not."""
        pattern: str = cond.value
        start = pattern.startswith("^") or pattern.startswith("\\A")
        body = pattern[1:] if pattern.startswith("^") else pattern[2:] if start else pattern
        end = ""
        for suffix in ("\\Z", "$"):
            if body.endswith(suffix) and not body.endswith("\\" + suffix):
                end, body = suffix, body[: -len(suffix)]
                break
        literal = _regex_literal(body)
        if literal is not None:
            # '$' also matches just before a final newline; '\Z' only at the very end
            endings = [literal, literal + "\n"] if end == "$" else [literal]
            if start and end:
                return {"in": [x, endings]}
            if start:
                return {"starts_with": [x, literal]}
            if end:
                return {"or": [{"ends_with": [x, e]} for e in endings]}
            return {"and": [{"starts_with": [x, ""]}, {"in": [literal, x]}]}
        self.warn(
            where,
            f"'{cond.attr} matches {pattern!r}': flagd has no regular expressions; "
            "exported as false (the condition never holds in flagd)",
        )
        return False

    # -- flags -------------------------------------------------------------------------

    def targeting(self, flag: Flag, where: str) -> Any:
        chain: list[Any] = []
        for i, rule in enumerate(flag.rules):
            here = f"{where}.rules[{i}]"
            if rule.variant is not None:
                out: Any = rule.variant
            else:
                assert rule.split is not None
                out = self.split(flag, rule.split, here)
            if rule.when is None:
                chain.append(out)
                break
            chain += [self.condition(rule.when, here), out]
        return {"if": chain}

    def split(self, flag: Flag, split: tuple[tuple[str, int], ...], where: str) -> Any:
        live = [name for name, weight in split if weight > 0]
        weights = ", ".join(f"{name}: {weight}" for name, weight in split)
        if len(live) == 1:
            self.warn(
                where,
                f"split {{{weights}}} has one live variant: exported as {live[0]!r} "
                "(flagd reports TARGETING_MATCH where edgeloop reports SPLIT)",
            )
            return live[0]
        buckets = [[name, weight] for name, weight in split]
        if flag.bucket_by == "targetingKey" and flag.salt in (None, flag.key):
            by = "[$flagd.flagKey, targetingKey]"
            logic: Any = {"fractional": buckets}
        else:
            salt = flag.bucket_salt
            by = f"'{salt}' + {flag.bucket_by}"
            logic = {"fractional": [{"cat": [salt, {"var": flag.bucket_by}]}, *buckets]}
        self.warn(
            where,
            f"split {{{weights}}} exported as flagd 'fractional' with the same weights, but "
            f"the bucketing differs: flagd hashes {by} into cumulative ranges, edgeloop uses "
            "weighted rendezvous hashing (docs/bucketing.md); the share of each variant is "
            "the same, individual attendees land differently. flagd also reports "
            "TARGETING_MATCH instead of SPLIT, and serves the default variant (edgeloop: an "
            f"error) when {flag.bucket_by} is missing",
        )
        return logic

    def flag(self, flag: Flag) -> dict[str, Any]:
        where = f"flags.{flag.key}"
        out: dict[str, Any] = {
            "state": str(flag.state),
            "variants": copy.deepcopy(flag.variants),
            "defaultVariant": flag.default_variant,
        }
        if flag.targeting:
            out["targeting"] = copy.deepcopy(flag.targeting)
        elif flag.rules:
            out["targeting"] = self.targeting(flag, where)
        metadata: dict[str, Any] = dict(flag.metadata)
        extra: dict[str, Any] = {}
        if flag.description:
            extra["description"] = flag.description
        if flag.experiment is not None:
            exp = flag.experiment
            extra["experiment"] = exp.key
            extra["experiment.primary"] = exp.metrics.primary
            if exp.metrics.secondary:
                extra["experiment.secondary"] = ",".join(exp.metrics.secondary)
            if exp.metrics.guardrails:
                extra["experiment.guardrails"] = ",".join(exp.metrics.guardrails)
            if exp.hypothesis:
                extra["experiment.hypothesis"] = exp.hypothesis
            channels = ", ".join(f"{v}: {c}" for v, c in exp.channels.items())
            self.warn(
                where,
                "the experiment block is not expressible in flagd: its key and metrics are "
                "kept as flag metadata (experiment, experiment.*)"
                + (f"; per-variant channels ({channels}) are dropped" if channels else ""),
            )
        for key, value in extra.items():
            if key in metadata:
                self.warn(where, f"metadata already has {key!r}; the flag's own value is kept")
            else:
                metadata[key] = value
        if metadata:
            out["metadata"] = metadata
        if flag.prerequisites:
            names = ", ".join(f"{p.flag}={p.variant}" for p in flag.prerequisites)
            self.warn(
                where,
                f"prerequisites ({names}) dropped: a flagd flag cannot depend on another "
                "flag, so flagd evaluates this flag as if they always held",
            )
        if flag.sticky:
            self.warn(
                where,
                "sticky dropped: flagd has no assignment store, an attendee's variant "
                "follows the current weights",
            )
        if flag.type is ValueType.FLOAT and all(
            isinstance(v, int) and not isinstance(v, bool) for v in flag.variants.values()
        ):
            self.warn(
                where,
                "declared float but every value is an integer: flagd has no flag types, so "
                "an import reads it back as an integer flag",
            )
        if flag.type is ValueType.OBJECT and any(
            isinstance(v, list) for v in flag.variants.values()
        ):
            self.warn(where, "list values are outside flagd's schema (object variants)")
        return out


def _regex_literal(body: str) -> str | None:
    """The text a regular expression matches literally, or None if it has any regex syntax
    (only backslash-escaped punctuation is allowed)."""
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            if i + 1 >= len(body) or body[i + 1].isalnum() or body[i + 1] == "_":
                return None
            out.append(body[i + 1])
            i += 2
            continue
        if ch in _REGEX_META:
            return None
        out.append(ch)
        i += 1
    return "".join(out)


def _segment_order(flagset: FlagSet, used: set[str]) -> list[str]:
    """Every segment the flags need, dependents first: flagd substitutes $evaluators in
    document order, so a rule must come before the rules it refers to."""
    needed: set[str] = set()
    todo = list(used)
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(segment_refs(flagset.segments[name]))
    graph = {name: segment_refs(flagset.segments[name]) for name in sorted(needed)}
    return list(reversed(list(graphlib.TopologicalSorter(graph).static_order())))


def export_flagd(flagset: FlagSet) -> tuple[dict[str, Any], list[str]]:
    """The flagd document for a FlagSet, and what it could not express exactly."""
    ex = _Export()
    flags: dict[str, Any] = {}
    used: set[str] = set()
    for key, flag in flagset.flags.items():
        flags[key] = ex.flag(flag)
        if not flag.targeting:
            for rule in flag.rules:
                if rule.when is not None:
                    used |= segment_refs(rule.when)
    doc: dict[str, Any] = {"$schema": FLAGD_SCHEMA}
    if flagset.metadata:
        doc["metadata"] = dict(flagset.metadata)
    doc["flags"] = flags
    if used:
        doc["$evaluators"] = {
            name: ex.condition(flagset.segments[name], f"segments.{name}")
            for name in _segment_order(flagset, used)
        }
    if ex.compared:
        ex.warnings.append(
            "conditions: JsonLogic coerces types where edgeloop does not. A missing attribute "
            "behaves the same (the export adds presence checks), but an attribute of the wrong "
            "type can match in flagd and never in edgeloop: text '19' for a number comparison, "
            "1 for eq true, true for eq 1, a number, a partial or a v-prefixed version for "
            "semver_*, and dotted names that pass through a list"
        )
    if ex.flagd_attrs:
        names = ", ".join(sorted(ex.flagd_attrs))
        ex.warnings.append(
            f"conditions on {names}: flagd replaces $flagd in the context with its own values "
            "(flagKey, timestamp), so these read flagd's values, not the caller's"
        )
    return doc, ex.warnings
