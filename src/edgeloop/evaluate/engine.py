"""Snapshots and evaluation: the public face of the decision engine.

    snapshot = compile_snapshot(flagset, version=7)
    decision = evaluate(snapshot, "micro-offer", {"targetingKey": "att-1", "country": "US"}, now)

No I/O, no clock: ``now`` (seconds since the epoch) is always an argument.
"""

from __future__ import annotations

import graphlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import msgspec

from edgeloop.model import Flag, FlagSet, FlagState, ValueType

from .compiler import FlagDecisions, Run, SegmentTable, compile_native
from .decision import Decision, ErrorCode, Reason


class AssignmentStore(Protocol):
    """Remembers the variant a unit was first assigned, so that later weight changes
    (ramps, bandits) do not move it. Keys are (flag key, bucketing value)."""

    def get(self, flag_key: str, unit: str) -> str | None: ...

    def put(self, flag_key: str, unit: str, variant: str) -> None: ...


class InMemoryAssignments:
    """An AssignmentStore in a dict: enough for one process; the edge persists its own."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, str], str] = {}

    def get(self, flag_key: str, unit: str) -> str | None:
        return self._data.get((flag_key, unit))

    def put(self, flag_key: str, unit: str, variant: str) -> None:
        self._data[(flag_key, unit)] = variant

    def __len__(self) -> int:
        return len(self._data)


class Snapshot:
    """A whole ruleset compiled for evaluation, at one version. Immutable once built."""

    __slots__ = ("flagset", "runs", "types", "version")

    def __init__(self, flagset: FlagSet, version: int, runs: dict[str, Run]) -> None:
        self.flagset = flagset
        self.version = version
        self.runs = runs
        self.types: dict[str, ValueType] = {k: f.type for k, f in flagset.flags.items()}

    def __contains__(self, flag_key: object) -> bool:
        return flag_key in self.runs

    def __len__(self) -> int:
        return len(self.runs)


def _sticky_wrapper(store: AssignmentStore) -> Callable[..., Callable[[str, Decision], Decision]]:
    def wrap(
        flag: Flag, split: tuple[tuple[str, int], ...], decisions: FlagDecisions
    ) -> Callable[[str, Decision], Decision]:
        live = {name: decisions.of(name, Reason.SPLIT) for name, weight in split if weight > 0}

        def keep_first(unit: str, fresh: Decision) -> Decision:
            kept = store.get(flag.key, unit)
            if kept is not None:
                found = live.get(kept)
                if found is not None:
                    return found
            store.put(flag.key, unit, fresh.variant or "")
            return fresh

        return keep_first

    return wrap


def _targeting_run(
    flag: Flag, decisions: FlagDecisions, prerequisites: list[tuple[Run, str]]
) -> Run:
    """A flag with flagd JsonLogic targeting, resolved exactly as flagd does."""
    from .jsonlogic import compile_targeting

    logic = compile_targeting(flag.targeting)
    key = flag.key
    fallback = decisions.default(Reason.DEFAULT)
    matched = {name: decisions.of(name, Reason.TARGETING_MATCH) for name in flag.variants}

    def run(ctx: Mapping[str, Any], now: float) -> Decision:
        for prerequisite, variant in prerequisites:
            if prerequisite(ctx, now).variant != variant:
                return fallback
        data = dict(ctx)
        data["$flagd"] = {"flagKey": key, "timestamp": int(now)}
        data["targetingKey"] = ctx.get("targetingKey")
        try:
            variant = logic(data)
        except ReferenceError as exc:
            return decisions.error(ErrorCode.PARSE_ERROR, f"invalid targeting: {exc}")
        except Exception as exc:
            return decisions.error(ErrorCode.GENERAL, f"targeting failed: {exc!r}")
        if variant is None:
            return fallback
        if variant.__class__ is bool:
            variant = "true" if variant else "false"
        elif variant.__class__ is not str:
            variant = str(variant)
        found = matched.get(variant)
        if found is None:
            return decisions.error(
                ErrorCode.GENERAL, f"targeting chose unknown variant {variant!r}"
            )
        return found

    return run


def compile_snapshot(
    flagset: FlagSet, version: int = 0, assignments: AssignmentStore | None = None
) -> Snapshot:
    """Compile every flag once. ``assignments`` keeps sticky flags' first assignments across
    snapshots; without one, a sticky flag is sticky only within this snapshot."""
    store = assignments if assignments is not None else InMemoryAssignments()
    sticky_for = _sticky_wrapper(store)
    flags = flagset.flags
    order = graphlib.TopologicalSorter(
        {k: [p.flag for p in f.prerequisites] for k, f in flags.items()}
    ).static_order()
    runs: dict[str, Run] = {}
    segments = SegmentTable(flagset.segments)
    for key in order:
        flag = flags[key]
        decisions = FlagDecisions(
            flag, {**flagset.metadata, **flag.metadata, **_experiment_meta(flag)}, version
        )
        if flag.state is FlagState.DISABLED:
            disabled = decisions.of(None, Reason.DISABLED)
            runs[key] = lambda ctx, now, d=disabled: d
        elif flag.targeting:
            prerequisites = [(runs[p.flag], p.variant) for p in flag.prerequisites]
            runs[key] = _targeting_run(flag, decisions, prerequisites)
        else:
            prerequisites = [(runs[p.flag], p.variant) for p in flag.prerequisites]
            runs[key] = compile_native(flag, segments, decisions, prerequisites, sticky_for)
    # Keep the document's order (topological order was only for wiring prerequisites).
    return Snapshot(flagset, version, {k: runs[k] for k in flags})


def _experiment_meta(flag: Flag) -> dict[str, str]:
    return {} if flag.experiment is None else {"experiment": flag.experiment.key}


def _not_found(snapshot: Snapshot, flag_key: str) -> Decision:
    return Decision(
        flag_key,
        None,
        None,
        Reason.ERROR,
        ErrorCode.FLAG_NOT_FOUND,
        f"flag {flag_key!r} is not in snapshot version {snapshot.version}",
        version=snapshot.version,
    )


def _failed(snapshot: Snapshot, flag_key: str, context: Any, exc: Exception) -> Decision:
    if not isinstance(context, Mapping):
        code, message = ErrorCode.INVALID_CONTEXT, "context must be a mapping of attributes"
    else:
        code, message = ErrorCode.GENERAL, f"evaluation failed: {exc!r}"
    return Decision(flag_key, None, None, Reason.ERROR, code, message, version=snapshot.version)


def evaluate(snapshot: Snapshot, flag_key: str, context: Mapping[str, Any], now: float) -> Decision:
    """Decide one flag for one context at time ``now``. Never raises."""
    try:
        run = snapshot.runs[flag_key]
    except (KeyError, TypeError):  # cheaper than .get() on the hot path, where the key exists
        return _not_found(snapshot, str(flag_key))
    try:
        return run(context, now)
    except Exception as exc:  # a hostile context must not take the edge down
        return _failed(snapshot, flag_key, context, exc)


def evaluate_all(
    snapshot: Snapshot, context: Mapping[str, Any], now: float, keys: list[str] | None = None
) -> dict[str, Decision]:
    """Decide every flag (or the listed ones) for one context."""
    out: dict[str, Decision] = {}
    runs = snapshot.runs
    if keys is None:  # every flag: no lookups (this loop is the whole of an evaluate-all)
        for key, run in runs.items():
            try:
                out[key] = run(context, now)
            except Exception as exc:
                out[key] = _failed(snapshot, key, context, exc)
        return out
    for key in keys:
        run = runs.get(key)
        if run is None:
            out[key] = _not_found(snapshot, key)
            continue
        try:
            out[key] = run(context, now)
        except Exception as exc:
            out[key] = _failed(snapshot, key, context, exc)
    return out


def resolve(
    snapshot: Snapshot,
    flag_key: str,
    context: Mapping[str, Any],
    now: float,
    expected: ValueType,
) -> Decision:
    """Like evaluate, for a caller that needs a value of one type (OpenFeature's typed getters).

    A resolved value of another type becomes a TYPE_MISMATCH error; integers asked for as
    floats are converted.
    """
    decision = evaluate(snapshot, flag_key, context, now)
    value = decision.value
    if decision.variant is None or value is None:
        return decision
    if not expected.accepts(value):
        return msgspec.structs.replace(
            decision,
            value=None,
            variant=None,
            reason=Reason.ERROR,
            error_code=ErrorCode.TYPE_MISMATCH,
            error_message=f"flag {flag_key!r} is {snapshot.types.get(flag_key)}, not {expected}",
        )
    if expected is ValueType.FLOAT and value.__class__ is int:
        return msgspec.structs.replace(decision, value=float(value))
    return decision
