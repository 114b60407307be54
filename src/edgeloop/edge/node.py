"""The edge node's state: the snapshot it serves, how it gets new ones, and who it pushes to."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgeloop.evaluate import (
    AssignmentStore,
    Decision,
    InMemoryAssignments,
    Snapshot,
    compile_snapshot,
    evaluate_all,
)
from edgeloop.store import LastKnownGood
from edgeloop.sync import (
    SignedSnapshot,
    SnapshotRejected,
    SnapshotSource,
    SnapshotVerifier,
    decode_signed,
)

from .metrics import EdgeMetrics

log = logging.getLogger("edgeloop.edge")

Send = Callable[[dict[str, Any]], Awaitable[None]]


def decision_view(d: Decision) -> dict[str, Any]:
    """What a client sees of a decision (and what a push compares)."""
    out: dict[str, Any] = {"value": d.value, "variant": d.variant, "reason": str(d.reason)}
    if d.error_code is not None:
        out["errorCode"] = str(d.error_code)
    return out


@dataclass(eq=False)
class AttachedClient:
    """A client (overlay page, chat bot) that wants its decisions pushed when they change."""

    send: Send
    context: dict[str, Any]
    flags: list[str] | None = None
    last: dict[str, dict[str, Any]] = field(default_factory=dict)


class EdgeNode:
    def __init__(
        self,
        verifier: SnapshotVerifier,
        last_known_good: LastKnownGood,
        *,
        clock: Callable[[], float],
        assignments: AssignmentStore | None = None,
    ) -> None:
        self.verifier = verifier
        self.lkg = last_known_good
        self.clock = clock
        self.assignments = assignments or InMemoryAssignments()
        self.snapshot: Snapshot | None = None
        self.metrics = EdgeMetrics()
        self.clients: set[AttachedClient] = set()

    @property
    def version(self) -> int:
        return 0 if self.snapshot is None else self.snapshot.version

    # snapshots ---------------------------------------------------------------------------

    def load_last_known_good(self) -> bool:
        """Serve the persisted snapshot (e.g. on start with the control plane unreachable)."""
        raw = self.lkg.load()
        if raw is None:
            return False
        try:
            signed = decode_signed(raw)
        except SnapshotRejected as exc:
            self._refuse("lkg_" + exc.reason, exc.detail)
            return False
        return self.apply(signed, persist=False)

    def apply(self, signed: SignedSnapshot, *, persist: bool = True) -> bool:
        """Verify and atomically swap in a snapshot; refuse bad or old ones (kept out, counted)."""
        try:
            verified = self.verifier.verify(signed)
        except SnapshotRejected as exc:
            self._refuse(exc.reason, exc.detail)
            return False
        if verified.version < self.version:
            self._refuse("stale", f"version {verified.version} < serving {self.version}")
            return False
        if verified.version == self.version:
            return False  # already serving it (a resend after reconnect)
        compiled = compile_snapshot(verified.flagset, verified.version, self.assignments)
        if persist:
            self.lkg.save(signed)  # before serving: a restart must not go back in time
        self.snapshot = compiled  # one reference assignment: readers see old or new, never half
        self.metrics.version = verified.version
        self.metrics.issued_at = verified.issued_at
        self.metrics.snapshots_applied += 1
        log.info("serving snapshot version %d", verified.version)
        return True

    def _refuse(self, reason: str, detail: str) -> None:
        self.metrics.sync_errors[reason] += 1
        log.warning("refused snapshot (%s): %s", reason, detail)

    async def run_sync(self, source: SnapshotSource) -> None:
        """Apply snapshots from ``source`` forever, pushing changed decisions after each."""
        async for signed in source.stream(lambda: self.version):
            if self.apply(signed):
                await self.push_changes()

    # deciding ----------------------------------------------------------------------------

    def decide(
        self, context: Mapping[str, Any], flags: list[str] | None, now: float
    ) -> dict[str, Decision]:
        snapshot = self.snapshot
        if snapshot is None:
            return {}
        decisions = evaluate_all(snapshot, context, now, flags)
        counts = self.metrics.decisions
        for key, d in decisions.items():
            counts[(key, d.reason)] += 1
        return decisions

    # push --------------------------------------------------------------------------------

    async def attach(self, client: AttachedClient) -> None:
        self.clients.add(client)
        self.metrics.attached = len(self.clients)
        await self._push(client, full=True)

    def detach(self, client: AttachedClient) -> None:
        self.clients.discard(client)
        self.metrics.attached = len(self.clients)

    async def update_context(self, client: AttachedClient, context: dict[str, Any]) -> None:
        client.context = context
        await self._push(client, full=False)

    async def push_changes(self) -> None:
        """After a new snapshot: send each attached client the decisions that changed for it."""
        clients = list(self.clients)
        if clients:
            await asyncio.gather(*(self._push(c, full=False) for c in clients))

    async def _push(self, client: AttachedClient, *, full: bool) -> None:
        decisions = self.decide(client.context, client.flags, self.clock())
        views = {k: decision_view(d) for k, d in decisions.items()}
        changed = views if full else {k: v for k, v in views.items() if client.last.get(k) != v}
        removed = [] if full else [k for k in client.last if k not in views]
        client.last = views
        if not changed and not removed:
            return
        message: dict[str, Any] = {
            "type": "decisions",
            "version": self.version,
            "decisions": changed,
        }
        if removed:
            message["removed"] = removed
        try:
            await client.send(message)
        except Exception as exc:  # a dead socket must not stop the others' pushes
            log.info("dropping attached client: %r", exc)
            self.detach(client)
