"""Moving signed snapshots from the control plane to edges (and, later, aggregates back)."""

from .hub import SnapshotHub
from .snapshot import (
    SignedSnapshot,
    SnapshotRejected,
    SnapshotSigner,
    SnapshotVerifier,
    VerifiedSnapshot,
    decode_signed,
)
from .source import Backoff, HttpSnapshotSource, LocalSnapshotSource, SnapshotSource
from .telemetry import HttpAggregateChannel

__all__ = [
    "Backoff",
    "HttpAggregateChannel",
    "HttpSnapshotSource",
    "LocalSnapshotSource",
    "SignedSnapshot",
    "SnapshotHub",
    "SnapshotRejected",
    "SnapshotSigner",
    "SnapshotSource",
    "SnapshotVerifier",
    "VerifiedSnapshot",
    "decode_signed",
]
