"""How a decision looks on the wire: to /v1/decide, to attached clients, and in OFREP."""

from __future__ import annotations

from typing import Any

from edgeloop.evaluate import Decision, Reason


def decision_view(d: Decision) -> dict[str, Any]:
    """What a client sees of a decision (and what a push compares)."""
    out: dict[str, Any] = {"value": d.value, "variant": d.variant, "reason": str(d.reason)}
    if d.error_code is not None:
        out["errorCode"] = str(d.error_code)
    return out


def ofrep_item(d: Decision) -> dict[str, Any]:
    """One flag in OFREP's shape: evaluationSuccess or evaluationFailure."""
    if d.reason is Reason.ERROR:
        return {
            "key": d.flag_key,
            "errorCode": str(d.error_code),
            "errorDetails": d.error_message or "",
        }
    item: dict[str, Any] = {"key": d.flag_key, "reason": str(d.reason), "metadata": d.metadata}
    if d.variant is not None:
        item["variant"] = d.variant
    # No value (DISABLED, or DEFAULT without a default variant) means "use your code default".
    if d.value is not None:
        item["value"] = d.value
    return item
