"""What the engine answers: a Decision in OpenFeature's vocabulary."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec


class Reason(StrEnum):
    STATIC = "STATIC"  # no rules: the default variant, always
    TARGETING_MATCH = "TARGETING_MATCH"  # a rule (or flagd targeting) chose the variant
    SPLIT = "SPLIT"  # a weighted split bucketed the attendee into the variant
    DEFAULT = "DEFAULT"  # rules exist but none matched (or a prerequisite failed)
    DISABLED = "DISABLED"  # the kill switch: the caller's default applies
    ERROR = "ERROR"  # see error_code; the caller's default applies


class ErrorCode(StrEnum):
    FLAG_NOT_FOUND = "FLAG_NOT_FOUND"
    TYPE_MISMATCH = "TYPE_MISMATCH"
    PARSE_ERROR = "PARSE_ERROR"
    TARGETING_KEY_MISSING = "TARGETING_KEY_MISSING"
    INVALID_CONTEXT = "INVALID_CONTEXT"
    GENERAL = "GENERAL"


class Decision(msgspec.Struct, frozen=True):
    """One flag decided for one context.

    Decisions are shared between calls (the engine pre-builds them at compile time), so
    treat ``value`` and ``metadata`` as read-only.
    ``value`` and ``variant`` are None for DISABLED and ERROR decisions, and for DEFAULT
    when the flag has no default variant: the caller's own default applies then.
    """

    flag_key: str
    value: Any
    variant: str | None
    reason: Reason
    error_code: ErrorCode | None = None
    error_message: str | None = None
    metadata: dict[str, str | int | float | bool] = {}
    version: int = 0

    @property
    def is_error(self) -> bool:
        return self.reason is Reason.ERROR
