"""Persistence behind small interfaces: control-plane state and the edge's last-known-good."""

from .control import (
    AuditEntry,
    AuditRecord,
    ControlStore,
    Draft,
    FlagChange,
    HistoryEntry,
    LaunchRequest,
    SqliteControlStore,
    StoredSnapshot,
    TokenRecord,
    Trip,
    VersionConflict,
)
from .snapshot_file import LastKnownGood

__all__ = [
    "AuditEntry",
    "AuditRecord",
    "ControlStore",
    "Draft",
    "FlagChange",
    "HistoryEntry",
    "LastKnownGood",
    "LaunchRequest",
    "SqliteControlStore",
    "StoredSnapshot",
    "TokenRecord",
    "Trip",
    "VersionConflict",
]
