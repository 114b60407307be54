"""An OpenFeature provider that evaluates edgeloop flags in-process.

    from openfeature import api
    from edgeloop.sdk import EdgeloopProvider

    api.set_provider_and_wait(EdgeloopProvider.from_file("flags.yaml"))
    client = api.get_client()
    offer = client.get_object_details("micro-offer", {}, EvaluationContext("att-1", {...}))

The engine never reads a clock; this is the layer that does, through ``clock`` (default
``time.time``), so tests and the simulator can pass their own.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode as OFErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType
from openfeature.flag_evaluation import Reason as OFReason
from openfeature.provider import AbstractProvider, Metadata

from edgeloop.evaluate import (
    AssignmentStore,
    ErrorCode,
    InMemoryAssignments,
    Reason,
    Snapshot,
    compile_snapshot,
    resolve,
)
from edgeloop.model import FlagSet, ValueType, load_flags_file

__all__ = ["PROVIDER_NAME", "EdgeloopProvider"]

PROVIDER_NAME = "edgeloop"

REASONS: dict[Reason, OFReason] = {
    Reason.STATIC: OFReason.STATIC,
    Reason.TARGETING_MATCH: OFReason.TARGETING_MATCH,
    Reason.SPLIT: OFReason.SPLIT,
    Reason.DEFAULT: OFReason.DEFAULT,
    Reason.DISABLED: OFReason.DISABLED,
    Reason.ERROR: OFReason.ERROR,
}

ERROR_CODES: dict[ErrorCode, OFErrorCode] = {
    ErrorCode.FLAG_NOT_FOUND: OFErrorCode.FLAG_NOT_FOUND,
    ErrorCode.TYPE_MISMATCH: OFErrorCode.TYPE_MISMATCH,
    ErrorCode.PARSE_ERROR: OFErrorCode.PARSE_ERROR,
    ErrorCode.TARGETING_KEY_MISSING: OFErrorCode.TARGETING_KEY_MISSING,
    ErrorCode.INVALID_CONTEXT: OFErrorCode.INVALID_CONTEXT,
    ErrorCode.GENERAL: OFErrorCode.GENERAL,
}

T = TypeVar("T")
Source = FlagSet | Snapshot


def context_dict(context: EvaluationContext | None) -> dict[str, Any]:
    """OpenFeature's context as the engine's plain mapping: attributes plus ``targetingKey``."""
    if context is None:
        return {}
    ctx = dict(context.attributes)
    if context.targeting_key:
        ctx["targetingKey"] = context.targeting_key
    return ctx


def changed_flags(old: FlagSet, new: FlagSet) -> list[str]:
    """Keys whose definition differs (added, removed or edited) between two flag sets."""
    keys = old.flags.keys() | new.flags.keys()
    if old.segments != new.segments or old.metadata != new.metadata:
        return sorted(keys)  # shared parts changed: any flag may decide differently
    return sorted(k for k in keys if old.flags.get(k) != new.flags.get(k))


class EdgeloopProvider(AbstractProvider):
    """Evaluates an edgeloop snapshot in-process, for the official OpenFeature SDK.

    Errors are returned as resolution details carrying an error code (as the SDK's own
    in-memory provider does), not raised, so the client keeps the flag metadata of a failed
    evaluation. ``update`` swaps the snapshot atomically and emits
    PROVIDER_CONFIGURATION_CHANGED.
    """

    def __init__(
        self,
        source: Source,
        *,
        version: int = 0,
        clock: Callable[[], float] = time.time,
        assignments: AssignmentStore | None = None,
    ) -> None:
        """``source`` is a FlagSet (compiled at ``version``) or a compiled Snapshot.

        ``assignments`` remembers sticky flags' first assignments across updates of flag sets
        (an in-memory store by default); a Snapshot passed in brings its own.
        """
        super().__init__()
        self._clock = clock
        self._assignments = assignments if assignments is not None else InMemoryAssignments()
        self._lock = threading.Lock()
        self._snapshot = self._compile(source, version)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        version: int = 0,
        clock: Callable[[], float] = time.time,
        assignments: AssignmentStore | None = None,
    ) -> EdgeloopProvider:
        """A provider over a flags-as-code file; raises FlagsValidationError if it is invalid."""
        return cls(load_flags_file(path), version=version, clock=clock, assignments=assignments)

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def version(self) -> int:
        return self._snapshot.version

    def update(self, source: Source, version: int | None = None) -> None:
        """Swap in a new ruleset; evaluations in flight finish on the old one.

        A FlagSet is compiled at ``version`` (by default the current version + 1).
        """
        with self._lock:
            old = self._snapshot
            new = self._compile(source, old.version + 1 if version is None else version)
            self._snapshot = new
        self.emit_provider_configuration_changed(
            ProviderEventDetails(
                flags_changed=changed_flags(old.flagset, new.flagset),
                message=f"snapshot version {new.version}",
                metadata={"version": new.version},
            )
        )

    def _compile(self, source: Source, version: int) -> Snapshot:
        if isinstance(source, Snapshot):
            return source
        if isinstance(source, FlagSet):
            return compile_snapshot(source, version, self._assignments)
        raise TypeError(f"expected a FlagSet or a Snapshot, not {type(source).__name__}")

    def get_metadata(self) -> Metadata:
        return Metadata(name=PROVIDER_NAME)

    def _resolve(
        self, flag_key: str, default: T, context: EvaluationContext | None, expected: ValueType
    ) -> FlagResolutionDetails[T]:
        decision = resolve(self._snapshot, flag_key, context_dict(context), self._clock(), expected)
        value = decision.value
        if value is None:
            value = default  # DISABLED, ERROR, or DEFAULT without a default variant
        elif expected is ValueType.OBJECT:
            value = copy.deepcopy(value)  # decisions are shared: the caller gets its own copy
        return FlagResolutionDetails(
            value=value,
            variant=decision.variant,
            reason=REASONS[decision.reason],
            error_code=None if decision.error_code is None else ERROR_CODES[decision.error_code],
            error_message=decision.error_message,
            flag_metadata=dict(decision.metadata),
        )

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, ValueType.BOOLEAN)

    def resolve_string_details(
        self,
        flag_key: str,
        default_value: str,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, ValueType.STRING)

    def resolve_integer_details(
        self,
        flag_key: str,
        default_value: int,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, ValueType.INTEGER)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, ValueType.FLOAT)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return self._resolve(flag_key, default_value, evaluation_context, ValueType.OBJECT)
