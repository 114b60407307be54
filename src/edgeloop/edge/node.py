"""The edge node's state: the snapshot it serves, how it gets new ones, and who it pushes to."""

from __future__ import annotations

import asyncio
import logging
import operator
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
from edgeloop.model import FlagSet
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
from .views import decision_view, ofrep_item

log = logging.getLogger("edgeloop.edge")

Send = Callable[[dict[str, Any]], Awaitable[None]]
KeySource = Callable[[], Awaitable[dict[str, bytes]]]
AggregateSink = Callable[[bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    rejected: list[tuple[int, str]]


@dataclass(frozen=True, slots=True)
class Encoded:
    decision: Decision
    full: msgspec.Raw  # for /v1/decide
    view: bytes  # what an attached client is pushed (and what a push compares)
    ofrep: msgspec.Raw  # an OFREP evaluation item


@dataclass(eq=False)
class AttachedClient:
    """A client (overlay page, chat bot) that wants its decisions pushed when they change."""

    send: Send
    context: dict[str, Any]
    flags: list[str] | None = None
    last: dict[str, bytes] = field(default_factory=dict)  # flag → encoded view last sent


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
        # id(decision) → (decision, its JSON, its client view's JSON); decisions are shared
        # objects built at compile time, so each is encoded once per snapshot, not per request.
        self._encoded: dict[int, Encoded] = {}
        self._touched: set[str] = set()
        self._windows: dict[str, float] = {}  # experiment → attribution window (s)
        self._experiment_flags: dict[str, str] = {}  # flag key → its experiment's key
        self._changed_flags: frozenset[str] | None = None  # by the last snapshot (None: all)

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
        self._changed_flags = _changed_flags(
            None if self.snapshot is None else self.snapshot.flagset, verified.flagset
        )
        if persist:
            self.lkg.save(signed)  # before serving: a restart must not go back in time
        self.snapshot = compiled  # one reference assignment: readers see old or new, never half
        self._encoded = {}
        self._windows = {
            f.experiment.key: f.experiment.conversion_window_min * 60.0
            for f in verified.flagset.flags.values()
            if f.experiment is not None
        }
        self._experiment_flags = {
            k: f.experiment.key for k, f in verified.flagset.flags.items() if f.experiment
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
                applied = self.apply(signed, persist=False)
            except Exception as exc:
                self._refuse("apply_failed", repr(exc))
                continue
            if applied:
                # Clients first: the fsyncs of persisting run on a thread meanwhile, so a kill
                # switch is not held back by the disk. (A crash in that window restarts on the
                # previous version until the next sync.)
                await asyncio.gather(asyncio.to_thread(self._persist, signed), self.push_changes())

    def _persist(self, signed: SignedSnapshot) -> None:
        try:
            self.lkg.save(signed)
        except Exception as exc:  # e.g. the disk is full: count it, keep serving and syncing
            self._refuse("persist_failed", repr(exc))

    # deciding ----------------------------------------------------------------------------

    def encoded_all(self, decisions: dict[str, Decision]) -> dict[str, Encoded]:
        """``encoded`` for a whole evaluate-all answer, with the cache hit inlined."""
        cache, encoded = self._encoded, self.encoded
        out = {}
        for key, d in decisions.items():
            entry = cache.get(id(d))
            out[key] = entry if entry is not None and entry.decision is d else encoded(d)
        return out

    def encoded(self, d: Decision) -> Encoded:
        """The decision's wire forms, encoded once per snapshot (decisions are shared objects
        built at compile time), not once per request."""
        entry = self._encoded.get(id(d))
        if entry is not None and entry.decision is d:
            return entry
        entry = Encoded(
            d,
            msgspec.Raw(_signal_encoder.encode(d)),
            _signal_encoder.encode(decision_view(d)),
            msgspec.Raw(_signal_encoder.encode(ofrep_item(d))),
        )
        if d.reason is not Reason.ERROR:  # some errors are built per call: never cached
            self._encoded[id(d)] = entry
        return entry

    def decide(
        self, context: Mapping[str, Any], flags: list[str] | None, now: float
    ) -> dict[str, Decision]:
        snapshot = self.snapshot
        if snapshot is None:
            return {}
        live = self.sessions.context(context, now) if self.sessions.sessions else context
        decisions = evaluate_all(snapshot, live, now, flags)
        # Counted in C (zip/map into Counter.update): a per-flag Python loop here cost a third
        # of an evaluate-all request at 350 flags.
        self.metrics.decisions.update(zip(decisions, map(_reason, decisions.values()), strict=True))
        for key, experiment in self._experiment_flags.items():
            d = decisions.get(key)
            if d is not None and d.reason is Reason.SPLIT:
                self._expose(experiment, live, d, now)
        return decisions

    def _expose(self, experiment: str, context: Mapping[str, Any], d: Decision, now: float) -> None:
        """The first decision of an experiment for an attendee is their exposure."""
        attendee = context.get("targetingKey")
        if not isinstance(attendee, str) or d.variant is None:
            return
        session = self.sessions.get(attendee)
        baseline = session.baseline() if session is not None else None
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
        accepted = batch.accepted
        touched: set[str] = set()
        for signal in accepted:
            attendee = self._apply_signal(signal)
            if attendee is not None:
                touched.add(attendee)
        if accepted and self.raw_signals is not None:
            raw = body if not batch.rejected else _signal_encoder.encode(accepted)
            stamps = [s.ts for s in accepted]
            self.raw_signals.add((min(stamps), max(stamps), len(accepted), raw))
        self.metrics.sessions = len(self.sessions)
        self.metrics.signals_accepted += len(batch.accepted)
        self.metrics.signals_rejected += len(batch.rejected)
        if self.by_attendee:  # only attendees someone is attached for can need a push
            self._touched.update(a for a in touched if a in self.by_attendee)
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

    def _note_outbox(self, *, full: bool) -> None:
        """The outbox-full gauge, and one log line each time the outbox fills."""
        if full and not self.metrics.outbox_full and self.outbox is not None:
            log.warning(
                "aggregate outbox full (%d batches): holding deltas in memory", len(self.outbox)
            )
        self.metrics.outbox_full = full

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
            self._note_outbox(full=True)
        else:
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
        self._note_outbox(full=self.outbox.full())
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
        """After a new snapshot: send each attached client the decisions that changed for it.

        Only flags whose definition changed are re-decided (a one-flag kill re-evaluates one
        flag per client, not all of them)."""
        clients = list(self.clients)
        if clients:
            only = self._changed_flags
            await asyncio.gather(*(self._push(c, full=False, only=only) for c in clients))

    async def _push(
        self, client: AttachedClient, *, full: bool, only: frozenset[str] | None = None
    ) -> None:
        snapshot = self.snapshot
        keys = client.flags
        removed: list[str] = []
        if only is not None and snapshot is not None:
            if keys is None:  # every flag: a flag gone from the snapshot is "removed"
                keys = [k for k in only if k in snapshot]
                removed = [k for k in only if k in client.last and k not in snapshot]
            else:  # flags asked for by name: a gone one is decided FLAG_NOT_FOUND
                keys = [k for k in keys if k in only]
        decisions = self.decide(client.context, keys, self.clock())
        views = {k: e.view for k, e in self.encoded_all(decisions).items()}
        last = client.last
        changed = {k: msgspec.Raw(v) for k, v in views.items() if full or last.get(k) != v}
        if only is None:
            removed = [] if full else [k for k in last if k not in views]
            client.last = views
        else:
            client.last = {k: v for k, v in {**last, **views}.items() if k not in removed}
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


def _changed_flags(old: FlagSet | None, new: FlagSet) -> frozenset[str] | None:
    """Flags whose decisions a new snapshot may change; None when any may (segments or
    flag-set metadata changed, or there was no snapshot before)."""
    if old is None or old.segments != new.segments or old.metadata != new.metadata:
        return None
    keys = old.flags.keys() | new.flags.keys()
    return frozenset(k for k in keys if old.flags.get(k) != new.flags.get(k))


_signal_encoder = msgspec.json.Encoder()
_reason = operator.attrgetter("reason")
