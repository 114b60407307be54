"""The edge node's state: the snapshot it serves, how it gets new ones, and who it pushes to."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from edgeloop.evaluate import (
    AssignmentStore,
    Decision,
    InMemoryAssignments,
    Reason,
    Snapshot,
    compile_snapshot,
    evaluate_all,
)
from edgeloop.model.signals import (
    ChatEmoji,
    ChatMessage,
    Conversion,
    CtaClick,
    Join,
    Leave,
    MicActivity,
    OverlayDwell,
    OverlayHover,
    Return,
    Signal,
    decode_batch,
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
from .sentiment import emoji_valence, text_valence
from .sessions import SessionTable
from .telemetry import DEFAULT_RETENTION_S, ExperimentTelemetry, Outbox, RawSignalStore

log = logging.getLogger("edgeloop.edge")

Send = Callable[[dict[str, Any]], Awaitable[None]]
KeySource = Callable[[], Awaitable[dict[str, bytes]]]
AggregateSink = Callable[[bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    rejected: list[tuple[int, str]]


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
        raw_signals: RawSignalStore | None = None,
        outbox: Outbox | None = None,
        edge_id: str = "edge",
        retention_s: float = DEFAULT_RETENTION_S,
        sample_rate: float = 1.0,
    ) -> None:
        self.verifier = verifier
        self.lkg = last_known_good
        self.clock = clock
        self.assignments = assignments or InMemoryAssignments()
        self.snapshot: Snapshot | None = None
        self.metrics = EdgeMetrics()
        self.clients: set[AttachedClient] = set()
        self.by_attendee: dict[str, set[AttachedClient]] = {}
        self.sessions = SessionTable()
        self.telemetry = ExperimentTelemetry(sample_rate=sample_rate)
        self.raw_signals = raw_signals
        self.outbox = outbox
        self.edge_id = edge_id
        self.retention_s = retention_s
        self.keys: dict[str, bytes] = {}
        self._touched: set[str] = set()
        self._windows: dict[str, float] = {}  # experiment → attribution window (s)

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
        self._windows = {
            f.experiment.key: f.experiment.conversion_window_min * 60.0
            for f in verified.flagset.flags.values()
            if f.experiment is not None
        }
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
            try:
                applied = self.apply(signed)
            except Exception as exc:  # e.g. the disk is full: count it, keep syncing
                self._refuse("apply_failed", repr(exc))
                continue
            if applied:
                await self.push_changes()

    # deciding ----------------------------------------------------------------------------

    def decide(
        self, context: Mapping[str, Any], flags: list[str] | None, now: float
    ) -> dict[str, Decision]:
        snapshot = self.snapshot
        if snapshot is None:
            return {}
        live = self.sessions.context(context, now) if self.sessions.sessions else context
        decisions = evaluate_all(snapshot, live, now, flags)
        counts = self.metrics.decisions
        for key, d in decisions.items():
            counts[(key, d.reason)] += 1
            if d.reason is Reason.SPLIT and "experiment" in d.metadata:
                self._expose(str(d.metadata["experiment"]), live, d, now)
        return decisions

    def _expose(self, experiment: str, context: Mapping[str, Any], d: Decision, now: float) -> None:
        """The first decision of an experiment for an attendee is their exposure."""
        attendee = context.get("targetingKey")
        if not isinstance(attendee, str) or d.variant is None:
            return
        session = self.sessions.get(attendee)
        baseline = session.sentiment if session is not None else None
        window = self._windows.get(experiment, 15 * 60.0)
        # A rolled-back variant's attendees are served control but stay assigned to it
        # (intention to treat), so the arms keep their configured sizes.
        variant = str(d.metadata.get("assigned", d.variant))
        self.telemetry.expose(experiment, attendee, variant, now, baseline, window)

    # signals -------------------------------------------------------------------------------

    def ingest(self, body: bytes, now: float) -> IngestResult:
        """Validate a batch of signals and fold each into sessions, telemetry and raw storage.

        Raises model.signals.BatchError for a body that is not a batch at all.
        """
        batch = decode_batch(body, now)
        rows: list[tuple[float, str, str | None, bytes]] = []
        touched: set[str] = set()
        for signal in batch.accepted:
            attendee = self._apply_signal(signal)
            tag = signal.__struct_config__.tag
            rows.append((signal.ts, str(tag), attendee, _encode_signal(signal)))
            if attendee is not None:
                touched.add(attendee)
        if rows and self.raw_signals is not None:
            self.raw_signals.add(rows)
        self.metrics.sessions = len(self.sessions)
        self.metrics.signals_accepted += len(batch.accepted)
        self.metrics.signals_rejected += len(batch.rejected)
        self._touched.update(touched)
        return IngestResult(len(batch.accepted), [(r.index, r.reason) for r in batch.rejected])

    def _apply_signal(self, signal: Signal) -> str | None:
        sessions, telemetry, ts = self.sessions, self.telemetry, signal.ts
        kind = type(signal)
        if kind is MicActivity:
            sessions.mic(signal.level, ts)  # type: ignore[union-attr]
            return None
        attendee: str = signal.attendee  # type: ignore[union-attr]
        if kind is Leave:
            sessions.end(attendee)
            return attendee
        session = sessions.touch(attendee, ts)
        if kind is ChatEmoji:
            valence = emoji_valence(signal.emoji)  # type: ignore[union-attr]
            session.react(valence)
            telemetry.chat(attendee, valence, ts)
        elif kind is ChatMessage:
            valence = text_valence(signal.text)  # type: ignore[union-attr]
            session.react(valence)
            session.chat(ts)
            telemetry.chat(attendee, valence, ts)
        elif kind is OverlayHover:
            session.hover_ms += signal.ms  # type: ignore[union-attr]
        elif kind is Conversion:
            telemetry.convert(attendee, signal.value, ts)  # type: ignore[union-attr]
        elif kind is Return:
            telemetry.returned(attendee, ts, self._windows)
        elif kind not in (Join, OverlayDwell, CtaClick):  # pragma: no cover - exhaustive
            raise TypeError(f"unhandled signal {kind.__name__}")
        return attendee

    async def push_touched(self) -> None:
        """Re-decide for attached attendees whose signals changed their context; push changes."""
        touched, self._touched = self._touched, set()
        targets = [c for a in touched for c in self.by_attendee.get(a, ())]
        if targets:
            await asyncio.gather(*(self._push(c, full=False) for c in targets))

    # telemetry housekeeping and shipping ------------------------------------------------------

    def purge(self, now: float) -> int:
        """Enforce the retention window on everything raw this edge holds."""
        cutoff = now - self.retention_s
        removed = self.raw_signals.purge(cutoff) if self.raw_signals is not None else 0
        self.telemetry.forget_before(cutoff)
        self.sessions.expire(now)
        return removed

    async def ship(self, sink: AggregateSink, keys: KeySource | None, now: float) -> int:
        """Queue what is shippable on disk, then send queued batches oldest first.

        At-least-once: a batch leaves the outbox only after the control plane acknowledged it,
        and the control plane ingests each batch id once. Returns batches sent.
        """
        if self.outbox is None:
            return 0
        if keys is not None:
            try:
                self.keys = await keys()
            except Exception as exc:
                log.info("experiment keys unavailable: %r", exc)
        # Archived experiments get no key any more: their raw records must never leave, not even
        # under a key cached before the archive (when the key refresh above failed).
        live = set(self._windows)
        self.keys = {k: v for k, v in self.keys.items() if k in live}
        self.telemetry.drop_records_except(live)
        if self.outbox.full():
            if not self.metrics.outbox_full:
                log.warning(
                    "aggregate outbox full (%d batches): holding deltas in memory", len(self.outbox)
                )
            self.metrics.outbox_full = True
        else:
            self.metrics.outbox_full = False
            batch = self.telemetry.take_batch(self.edge_id, self.keys, now)
            if batch is not None:
                self.outbox.put(batch)
        sent = 0
        for batch_id, body in self.outbox.peek(50):
            try:
                await sink(body)
            except Exception as exc:
                self.metrics.ship_errors += 1
                log.info("shipping batch %s failed: %r", batch_id, exc)
                break
            self.outbox.remove(batch_id)
            sent += 1
        self.metrics.batches_shipped += sent
        self.metrics.outbox_depth = len(self.outbox)
        return sent

    # push --------------------------------------------------------------------------------

    async def attach(self, client: AttachedClient) -> None:
        self.clients.add(client)
        self._index(client)
        self.metrics.attached = len(self.clients)
        await self._push(client, full=True)

    def detach(self, client: AttachedClient) -> None:
        self.clients.discard(client)
        self._unindex(client)
        self.metrics.attached = len(self.clients)

    async def update_context(self, client: AttachedClient, context: dict[str, Any]) -> None:
        self._unindex(client)
        client.context = context
        self._index(client)
        await self._push(client, full=False)

    def _index(self, client: AttachedClient) -> None:
        attendee = client.context.get("targetingKey")
        if isinstance(attendee, str):
            self.by_attendee.setdefault(attendee, set()).add(client)

    def _unindex(self, client: AttachedClient) -> None:
        attendee = client.context.get("targetingKey")
        if isinstance(attendee, str):
            found = self.by_attendee.get(attendee)
            if found is not None:
                found.discard(client)
                if not found:
                    del self.by_attendee[attendee]

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


_signal_encoder = msgspec.json.Encoder()


def _encode_signal(signal: Signal) -> bytes:
    return _signal_encoder.encode(signal)
