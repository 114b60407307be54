"""The decision engine: pure, compiled once per snapshot, no I/O and no clock."""

from .bucketing import assign_variant
from .decision import Decision, ErrorCode, Reason
from .engine import (
    AssignmentStore,
    InMemoryAssignments,
    Snapshot,
    compile_snapshot,
    evaluate,
    evaluate_all,
    resolve,
)

__all__ = [
    "AssignmentStore",
    "Decision",
    "ErrorCode",
    "InMemoryAssignments",
    "Reason",
    "Snapshot",
    "assign_variant",
    "compile_snapshot",
    "evaluate",
    "evaluate_all",
    "resolve",
]
