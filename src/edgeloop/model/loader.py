"""Loading a flags-as-code document: structure (pydantic), then meaning, all errors at once."""

from __future__ import annotations

import math
import re
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from .conditions import Condition, expanded_sizes, parse_condition, segment_refs
from .errors import FlagsValidationError, Path, ValidationIssue
from .flags import (
    Allocation,
    Channel,
    Experiment,
    ExperimentMetrics,
    Flag,
    FlagSet,
    FlagState,
    Prerequisite,
    Rule,
    ValueType,
)
from .guardrails import Guardrail, Mode, RuleSyntaxError, parse_rule
from .source import SourceError, line_of, parse_document

KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,199}$"
METRIC_PATTERN = r"^[a-z][a-z0-9_]{0,99}$"
MAX_EXPANDED_CONDITIONS = 10_000  # a segment with every reference spelled out
MAX_WEIGHT_SUM = 2_147_483_647  # weights are integers; their sum must fit flagd's int32 too

Key = Annotated[str, Field(pattern=KEY_PATTERN)]
VariantName = Annotated[str, Field(min_length=1, max_length=200)]
MetricName = Annotated[str, Field(pattern=METRIC_PATTERN)]
MetaValue = str | int | float | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _PrerequisiteIn(_Strict):
    flag: Key
    variant: VariantName


class _RuleIn(_Strict):
    name: str | None = None
    when: Any = None
    variant: VariantName | None = None
    split: dict[VariantName, Annotated[int, Field(ge=0)]] | None = None


class _MetricsIn(_Strict):
    primary: MetricName
    secondary: list[MetricName] = []
    guardrails: list[MetricName] = []


class _GuardrailIn(_Strict):
    rule: Annotated[str, Field(min_length=1, max_length=1000)]
    min_attendees: Annotated[int, Field(ge=1)] = 100
    mode: Literal["statistical", "literal"] = "statistical"


class _AllocationIn(_Strict):
    method: Literal["thompson"] = "thompson"
    floor: Annotated[float, Field(ge=0, le=0.5)] = 0.05
    min_samples: Annotated[int, Field(ge=1)] = 200
    every_min: Annotated[int, Field(ge=1)] = 15


class _ExperimentIn(_Strict):
    key: Key
    hypothesis: str = ""
    metrics: _MetricsIn
    channels: dict[VariantName, Literal["edge_overlay", "client", "hybrid"]] = {}
    conversion_window_min: Annotated[int, Field(ge=1, le=7 * 24 * 60)] = 15
    control: VariantName | None = None
    rules: list[_GuardrailIn] = []
    rolled_back: list[VariantName] = []
    paused: bool = False
    allocation: _AllocationIn | None = None


class _FlagIn(_Strict):
    description: str = ""
    type: Literal["boolean", "string", "integer", "float", "object"]
    variants: dict[VariantName, Any] = Field(min_length=1)
    default_variant: VariantName | None
    state: Literal["ENABLED", "DISABLED"] = "ENABLED"
    rules: list[Any] = []  # each checked as a _RuleIn, so one bad rule hides no other error
    targeting: dict[str, Any] | None = None
    bucket_by: Annotated[str, Field(min_length=1, max_length=200)] = "targetingKey"
    salt: Annotated[str, Field(max_length=200)] | None = None
    sticky: bool = False
    prerequisites: list[_PrerequisiteIn] = []
    metadata: dict[Annotated[str, Field(min_length=1)], MetaValue] = {}
    experiment: Any = None  # checked as an _ExperimentIn


_TOP_LEVEL = {"flags", "segments", "metadata", "$schema"}
_FRIENDLY = {
    "extra_forbidden": "unknown key",
    "missing": "required field is missing",
}


class _Collector:
    def __init__(self, filename: str, lines: dict[Path, int]) -> None:
        self.filename = filename
        self.lines = lines
        self.issues: list[ValidationIssue] = []

    def add(self, path: Path, message: str) -> None:
        self.issues.append(ValidationIssue(self.filename, line_of(self.lines, path), path, message))

    def add_pydantic(self, base: Path, error: pydantic.ValidationError) -> None:
        for err in error.errors(include_url=False):
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
            message = _FRIENDLY.get(err["type"], err["msg"])
            if err["type"] == "string_pattern_mismatch" and "pattern" in err.get("ctx", {}):
                message = _pattern_message(err["ctx"]["pattern"])
            self.add((*base, *loc), message)


_ADAPTERS: dict[tuple[type[BaseModel], str], pydantic.TypeAdapter[Any]] = {}


def _fields(model: type[BaseModel], raw: Any, path: Path, out: _Collector) -> dict[str, Any] | None:
    """Check each field of ``model`` on its own; return the ones that passed (defaults filled).

    Field by field rather than whole-model so that one wrong field does not hide the meaning
    checks of the others: a document's author sees every error in one pass.
    """
    if not isinstance(raw, dict):
        out.add(path, "expected a mapping")
        return None
    for name in raw:
        if name not in model.model_fields:
            out.add((*path, name), "unknown key")
    good: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name not in raw:
            if info.is_required():
                out.add(path, f"required field '{name}' is missing")
            else:
                good[name] = info.get_default(call_default_factory=True)
            continue
        adapter = _ADAPTERS.get((model, name))
        if adapter is None:
            annotation = info.annotation
            if info.metadata:
                annotation = Annotated[annotation, *info.metadata]
            adapter = pydantic.TypeAdapter(annotation)
            _ADAPTERS[(model, name)] = adapter
        try:
            good[name] = adapter.validate_python(raw[name], strict=True)
        except pydantic.ValidationError as exc:
            out.add_pydantic((*path, name), exc)
    return good


def _pattern_message(pattern: str) -> str:
    if pattern == KEY_PATTERN:
        return "expected a key of letters, digits, '_', '.', ':' or '-' (at most 200 characters)"
    if pattern == METRIC_PATTERN:
        return "expected a metric name in lower_snake_case, e.g. conversion_15m"
    return f"does not match {pattern}"


def load_flags(text: str | bytes, filename: str = "<flags>") -> FlagSet:
    """Parse and validate a flags-as-code document (YAML or JSON).

    Raises FlagsValidationError listing every problem, each as ``file:line: path: message``.
    Nothing else escapes: any input either loads or raises that error.
    """
    try:
        data, lines, source_issues = parse_document(text, filename)
    except SourceError as exc:
        raise FlagsValidationError([exc.issue]) from None
    out = _Collector(filename, lines)
    out.issues.extend(source_issues)
    flagset = _build(data, out)
    if out.issues or flagset is None:
        raise FlagsValidationError(out.issues)
    return flagset


def load_flags_data(data: Any, filename: str = "<flags>") -> FlagSet:
    """Validate a document that is already decoded (from a JSON API, a verified snapshot).

    The same checks as ``load_flags`` without re-parsing text (pure-Python YAML parsing costs
    about a millisecond per flag); issues carry line 0, as there is no text to point into.
    """
    out = _Collector(filename, {})
    try:
        flagset = _build(data, out)
    except RecursionError:
        out.add((), "nested too deeply")
        flagset = None
    if out.issues or flagset is None:
        raise FlagsValidationError(out.issues)
    return flagset


def load_flags_file(path: str | FsPath) -> FlagSet:
    path = FsPath(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        issue = ValidationIssue(str(path), 1, (), f"cannot read file: {exc.strerror or exc}")
        raise FlagsValidationError([issue]) from None
    return load_flags(raw, path.name)


def _build(data: Any, out: _Collector) -> FlagSet | None:
    if not isinstance(data, dict):
        out.add((), "a flags document must be a mapping with a 'flags' key")
        return None
    for key in data:
        if key not in _TOP_LEVEL:
            out.add((key,), "unknown key (expected flags, segments, metadata)")
    raw_flags = data.get("flags")
    if not isinstance(raw_flags, dict):
        out.add(("flags",), "required: a mapping of flag key to flag definition")
        raw_flags = {}
    raw_segments = data.get("segments", {})
    if not isinstance(raw_segments, dict):
        out.add(("segments",), "expected a mapping of segment name to condition")
        raw_segments = {}
    metadata = _metadata(data.get("metadata", {}), ("metadata",), out)

    segments = _segments(raw_segments, out)
    flags: dict[str, Flag] = {}
    for key, raw in raw_flags.items():
        flag = _flag(key, raw, segments, out)
        if flag is not None:
            flags[key] = flag
    _check_prerequisites(flags, out)
    if out.issues:
        return None
    return FlagSet(flags=flags, segments=segments, metadata=metadata)


def _metadata(raw: Any, path: Path, out: _Collector) -> dict[str, MetaValue]:
    try:
        return pydantic.TypeAdapter(dict[str, MetaValue]).validate_python(raw, strict=True)
    except pydantic.ValidationError as exc:
        out.add_pydantic(path, exc)
        return {}


def _segments(raw: dict[str, Any], out: _Collector) -> dict[str, Condition]:
    parsed: dict[str, Condition] = {}
    problems: list[tuple[Path, str]] = []
    for name, body in raw.items():
        if not re.match(KEY_PATTERN, name):
            problems.append((("segments", name), _pattern_message(KEY_PATTERN)))
            continue
        cond = parse_condition(body, ("segments", name), problems)
        if cond is not None:
            parsed[name] = cond
    for path, message in problems:
        out.add(path, message)
    # Segments may refer to segments: every name must exist and there must be no cycle.
    for name, cond in parsed.items():
        for ref in sorted(segment_refs(cond)):
            if ref not in raw:
                out.add(("segments", name), f"refers to unknown segment {ref!r}")
    cycle = _find_cycle({n: segment_refs(c) & parsed.keys() for n, c in parsed.items()})
    if cycle:
        out.add(
            ("segments", cycle[0]), f"segments refer to each other in a cycle: {' → '.join(cycle)}"
        )
    else:
        sizes = expanded_sizes(parsed)
        for name, size in sizes.items():
            if size > MAX_EXPANDED_CONDITIONS:
                out.add(
                    ("segments", name),
                    f"expands to more than {MAX_EXPANDED_CONDITIONS} conditions through the "
                    "segments it refers to (repeated references multiply)",
                )
    return parsed


def _flag(key: str, raw: Any, segments: dict[str, Condition], out: _Collector) -> Flag | None:
    path: Path = ("flags", key)
    if not re.match(KEY_PATTERN, key):
        out.add(path, _pattern_message(KEY_PATTERN))
        return None
    before = len(out.issues)
    spec = _fields(_FlagIn, raw, path, out)
    if spec is None:
        return None
    vtype = ValueType(spec["type"]) if "type" in spec else None
    variants: dict[str, Any] | None = spec.get("variants")

    if variants is not None and vtype is not None:
        for name, value in variants.items():
            if not vtype.accepts(value):
                out.add(
                    (*path, "variants", name),
                    f"value {_short(value)} is not of the flag's type {vtype}",
                )
            elif isinstance(value, float) and not math.isfinite(value):
                out.add((*path, "variants", name), "value must be a finite number")
    default = spec.get("default_variant")
    if variants is not None and default is not None and default not in variants:
        out.add((*path, "default_variant"), f"names a missing variant {default!r}")
    if spec.get("rules") and spec.get("targeting") is not None:
        out.add((*path, "targeting"), "a flag has either rules or (flagd) targeting, not both")

    rules = [
        _rule(rule, (*path, "rules", i), variants, segments, out)
        for i, rule in enumerate(spec.get("rules", []))
    ]
    experiment = None
    if spec.get("experiment") is not None:
        experiment = _experiment(spec["experiment"], (*path, "experiment"), variants, out)
        if experiment is not None and experiment.allocation and not spec.get("sticky", True):
            out.add(
                (*path, "experiment", "allocation"),
                "adaptive allocation needs 'sticky: true' on the flag, so attendees keep their "
                "variant when the weights move",
            )
    if len(out.issues) != before or vtype is None or variants is None:
        return None
    return Flag(
        key=key,
        type=vtype,
        variants=dict(variants),
        default_variant=default,
        state=FlagState(spec["state"]),
        description=spec["description"],
        rules=tuple(r for r in rules if r is not None),
        targeting=spec["targeting"],
        bucket_by=spec["bucket_by"],
        salt=spec["salt"],
        sticky=spec["sticky"],
        prerequisites=tuple(Prerequisite(p.flag, p.variant) for p in spec["prerequisites"]),
        metadata=dict(spec["metadata"]),
        experiment=experiment,
    )


def _experiment(
    raw: Any, path: Path, variants: dict[str, Any] | None, out: _Collector
) -> Experiment | None:
    try:
        exp = _ExperimentIn.model_validate(raw, strict=True)
    except pydantic.ValidationError as exc:
        out.add_pydantic(path, exc)
        return None
    for name in exp.channels:
        if variants is not None and name not in variants:
            out.add((*path, "channels", name), f"names a missing variant {name!r}")
    if exp.control is not None and variants is not None and exp.control not in variants:
        out.add((*path, "control"), f"names a missing variant {exp.control!r}")
    for i, name in enumerate(exp.rolled_back):
        if variants is not None and name not in variants:
            out.add((*path, "rolled_back", i), f"names a missing variant {name!r}")
        elif name == exp.control:
            out.add((*path, "rolled_back", i), "the control cannot be rolled back")
    guardrails = []
    for i, g in enumerate(exp.rules):
        try:
            rule = parse_rule(g.rule)
        except RuleSyntaxError as exc:
            out.add((*path, "rules", i, "rule"), str(exc))
            continue
        guardrails.append(Guardrail(rule, g.min_attendees, Mode(g.mode)))
    allocation = None
    if exp.allocation is not None:
        a = exp.allocation
        allocation = Allocation(a.method, a.floor, a.min_samples, a.every_min)
    return Experiment(
        key=exp.key,
        hypothesis=exp.hypothesis,
        metrics=ExperimentMetrics(
            primary=exp.metrics.primary,
            secondary=tuple(exp.metrics.secondary),
            guardrails=tuple(exp.metrics.guardrails),
        ),
        channels={n: Channel(c) for n, c in exp.channels.items()},
        conversion_window_min=exp.conversion_window_min,
        control=exp.control,
        rules=tuple(guardrails),
        rolled_back=tuple(exp.rolled_back),
        paused=exp.paused,
        allocation=allocation,
    )


def _rule(
    raw: Any,
    path: Path,
    variants: dict[str, Any] | None,
    segments: dict[str, Condition],
    out: _Collector,
) -> Rule | None:
    before = len(out.issues)
    spec = _fields(_RuleIn, raw, path, out)
    if spec is None:
        return None
    known = variants or {}
    when = None
    if spec.get("when") is not None:
        problems: list[tuple[Path, str]] = []
        when = parse_condition(spec["when"], (*path, "when"), problems)
        for p, message in problems:
            out.add(p, message)
        if when is not None:
            for ref in sorted(segment_refs(when)):
                if ref not in segments:
                    out.add((*path, "when"), f"refers to unknown segment {ref!r}")
    variant, split = spec.get("variant"), spec.get("split")
    if "variant" in spec and "split" in spec and (variant is None) == (split is None):
        out.add(path, "a rule serves exactly one of 'variant' or 'split'")
    if variant is not None and variants is not None and variant not in known:
        out.add((*path, "variant"), f"names a missing variant {variant!r}")
    if split is not None:
        for name in split:
            if variants is not None and name not in known:
                out.add((*path, "split", name), f"names a missing variant {name!r}")
        total = sum(split.values())
        if total <= 0:
            out.add((*path, "split"), "weights sum to 0")
        elif total > MAX_WEIGHT_SUM:
            out.add((*path, "split"), f"weights sum to more than {MAX_WEIGHT_SUM}")
    if len(out.issues) != before:
        return None
    return Rule(
        when=when,
        variant=variant,
        split=tuple(split.items()) if split is not None else None,
        name=spec.get("name"),
    )


def _check_prerequisites(flags: dict[str, Flag], out: _Collector) -> None:
    for flag in flags.values():
        for i, pre in enumerate(flag.prerequisites):
            where: Path = ("flags", flag.key, "prerequisites", i)
            target = flags.get(pre.flag)
            if pre.flag == flag.key:
                out.add((*where, "flag"), "a flag cannot be its own prerequisite")
            elif target is None:
                out.add((*where, "flag"), f"names a missing or invalid flag {pre.flag!r}")
            elif pre.variant not in target.variants:
                out.add((*where, "variant"), f"flag {pre.flag!r} has no variant {pre.variant!r}")
    graph = {
        k: {p.flag for p in f.prerequisites if p.flag in flags and p.flag != k}
        for k, f in flags.items()
    }
    cycle = _find_cycle(graph)
    if cycle:
        out.add(("flags", cycle[0], "prerequisites"), f"prerequisite cycle: {' → '.join(cycle)}")


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle in a directed graph, as a closed path of names, or None."""
    color: dict[str, int] = {}
    for start in sorted(graph):
        if color.get(start):
            continue
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        trail = [start]
        color[start] = 1
        while stack:
            node, children = stack[-1]
            if not children:
                color[node] = 2
                stack.pop()
                trail.pop()
                continue
            child = children.pop()
            state = color.get(child, 0)
            if state == 1:
                return [*trail[trail.index(child) :], child]
            if state == 0:
                color[child] = 1
                trail.append(child)
                stack.append((child, sorted(graph.get(child, ()))))
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
