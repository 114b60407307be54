"""Exposures, outcomes and the aggregates that leave the edge.

Raw telemetry stays here: signals go to an edge-local SQLite file and are purged after the
retention window; exposures (first decision per experiment × attendee) live in memory for the
attribution window. What leaves is built by ``take_batch``:

- **cells**: per experiment × variant × time bucket (of exposure), additive sufficient statistics
  — shipped as deltas, so the control plane only ever adds;
- **records**: pseudonymous user-level exposure / conversion / return records, for attendees in
  the privacy sample only, pseudonymized under the experiment's key at shipping time.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from edgeloop.model.aggregates import CELL_FIELDS, AggregateBatch, BatchCell, UnitRecord
from edgeloop.privacy import in_sample, pseudonym

DEFAULT_RETENTION_S = 24 * 3600.0
DEFAULT_BUCKET_S = 300.0
DEFAULT_WINDOW_S = 15 * 60.0


class Cell:
    __slots__ = CELL_FIELDS

    def __init__(self) -> None:
        for name in CELL_FIELDS:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in CELL_FIELDS}

    def add(self, other: dict[str, float]) -> None:
        for name in CELL_FIELDS:
            setattr(self, name, getattr(self, name) + other.get(name, 0))


@dataclass(slots=True)
class Exposure:
    experiment: str
    variant: str
    at: float
    bucket: float
    baseline: float | None
    window_s: float
    converted: bool = False
    revenue: float = 0.0  # this attendee's conversion value in the window so far
    chat_k: int = 0  # this attendee's chat items after exposure so far
    chat_s: float = 0.0  # and the sum of their valences


@dataclass(slots=True)
class _PendingRecord:
    experiment: str
    attendee: str
    kind: str
    at: float
    variant: str | None = None
    value: float = 0.0


@dataclass
class ExperimentTelemetry:
    """Per-edge accounting of exposures and outcomes, and the deltas not yet shipped."""

    bucket_s: float = DEFAULT_BUCKET_S
    sample_rate: float = 1.0
    exposures: dict[tuple[str, str], Exposure] = field(default_factory=dict)
    by_attendee: dict[str, list[Exposure]] = field(default_factory=dict)
    deltas: dict[tuple[str, str, float], Cell] = field(default_factory=dict)
    totals: dict[tuple[str, str], Cell] = field(default_factory=dict)  # all-time, for checks
    pending: list[_PendingRecord] = field(default_factory=list)

    def _cell(self, e: Exposure) -> list[Cell]:
        key = (e.experiment, e.variant, e.bucket)
        delta = self.deltas.get(key)
        if delta is None:
            delta = self.deltas[key] = Cell()
        total = self.totals.get((e.experiment, e.variant))
        if total is None:
            total = self.totals[(e.experiment, e.variant)] = Cell()
        return [delta, total]

    def expose(
        self,
        experiment: str,
        attendee: str,
        variant: str,
        now: float,
        baseline: float | None,
        window_s: float = DEFAULT_WINDOW_S,
    ) -> bool:
        """Record the first decision of an experiment for an attendee; later ones are ignored."""
        key = (experiment, attendee)
        if key in self.exposures:
            return False
        bucket = now - now % self.bucket_s
        e = Exposure(experiment, variant, now, bucket, baseline, window_s)
        self.exposures[key] = e
        self.by_attendee.setdefault(attendee, []).append(e)
        for cell in self._cell(e):
            cell.exposures += 1
            if baseline is not None:
                cell.pre_n += 1
                cell.pre_sum += baseline
                cell.pre_sq += baseline * baseline
        self.pending.append(_PendingRecord(experiment, attendee, "exposure", now, variant))
        return True

    def convert(self, attendee: str, value: float, now: float) -> None:
        for e in self.by_attendee.get(attendee, ()):
            if not e.at <= now <= e.at + e.window_s:
                continue
            for cell in self._cell(e):
                if not e.converted:
                    cell.converters += 1
                    if e.baseline is not None:
                        cell.pre_conv += e.baseline
                cell.revenue += value
                # Σ over attendees of (their revenue)²: (r + v)² − r² per further conversion
                cell.revenue_sq += (2 * e.revenue + value) * value
            e.converted = True
            e.revenue += value
            self.pending.append(
                _PendingRecord(e.experiment, attendee, "conversion", now, e.variant, value)
            )

    def chat(self, attendee: str, valence: float, now: float) -> None:
        for e in self.by_attendee.get(attendee, ()):
            if now < e.at:
                continue
            k, s = e.chat_k, e.chat_s
            for cell in self._cell(e):
                cell.chat_n += 1
                cell.chat_sum += valence
                cell.chat_sq += valence * valence
                # (k + 1)² − k², (s + v)² − s², (k + 1)(s + v) − k s: the unit-level sums grow
                # by these, so cells stay additive.
                cell.chat_k2 += 2 * k + 1
                cell.chat_s2 += 2 * s * valence + valence * valence
                cell.chat_ks += s + (k + 1) * valence
            e.chat_k, e.chat_s = k + 1, s + valence

    def returned(self, attendee: str, now: float, experiments: Iterable[str]) -> None:
        """A later visit: recorded under every live experiment (the control plane matches it
        to exposures by pseudonym, so no edge needs to remember exposures for 90 days)."""
        for experiment in experiments:
            self.pending.append(_PendingRecord(experiment, attendee, "return", now))

    def forget_before(self, cutoff: float) -> None:
        """Drop exposures older than ``cutoff`` whose attribution windows have closed."""
        old = [k for k, e in self.exposures.items() if e.at + e.window_s < cutoff]
        for key in old:
            e = self.exposures.pop(key)
            left = [x for x in self.by_attendee.get(key[1], []) if x is not e]
            if left:
                self.by_attendee[key[1]] = left
            else:
                self.by_attendee.pop(key[1], None)

    def take_batch(self, edge: str, keys: dict[str, bytes], now: float) -> AggregateBatch | None:
        """Everything shippable now, or None. Records of experiments whose key this edge does
        not have (yet) stay pending; records of archived experiments (no key will come) are
        dropped by ``drop_records_except``."""
        cells = [
            BatchCell(exp, variant, bucket, cell.as_dict())
            for (exp, variant, bucket), cell in self.deltas.items()
        ]
        records: list[UnitRecord] = []
        waiting: list[_PendingRecord] = []
        for r in self.pending:
            key = keys.get(r.experiment)
            if key is None:
                waiting.append(r)
                continue
            alias = pseudonym(key, r.attendee)
            if in_sample(alias, self.sample_rate):
                records.append(UnitRecord(r.experiment, alias, r.kind, r.at, r.variant, r.value))
        if not cells and not records:
            return None
        self.deltas = {}
        self.pending = waiting
        return AggregateBatch(uuid.uuid4().hex, edge, now, self.sample_rate, cells, records)

    def drop_records_except(self, experiments: set[str]) -> None:
        self.pending = [r for r in self.pending if r.experiment in experiments]


RawBatch = tuple[float, float, int, bytes]  # (oldest ts, newest ts, signals, JSON array)


class RawSignalStore:
    """Raw signals on the edge only, for the retention window (then purged).

    Stored as the accepted batches themselves (one row per batch, the JSON as received when
    every item was accepted): one insert per batch instead of one per signal. A batch is purged
    as soon as its *oldest* signal is past the window, so nothing older ever remains.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA secure_delete=ON")  # purged rows are overwritten, not just freed
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS signal_batches (oldest REAL NOT NULL, "
            "newest REAL NOT NULL, signals INTEGER NOT NULL, body BLOB NOT NULL)"
        )
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS signal_batches_oldest ON signal_batches (oldest)"
        )

    def add(self, batch: RawBatch) -> None:
        self._db.execute("INSERT INTO signal_batches VALUES (?, ?, ?, ?)", batch)

    def purge(self, before: float) -> int:
        """Delete every batch holding a signal older than ``before``; returns signals deleted."""
        with self._db:
            removed = self.count(before)
            self._db.execute("DELETE FROM signal_batches WHERE oldest < ?", (before,))
        return removed

    def count(self, before: float | None = None) -> int:
        """Signals stored (in batches whose oldest signal is older than ``before``)."""
        if before is None:
            row = self._db.execute("SELECT COALESCE(SUM(signals), 0) FROM signal_batches")
        else:
            row = self._db.execute(
                "SELECT COALESCE(SUM(signals), 0) FROM signal_batches WHERE oldest < ?", (before,)
            )
        return int(row.fetchone()[0])

    def close(self) -> None:
        self._db.close()


class Outbox:
    """Batches waiting to reach the control plane, on disk, oldest first, bounded."""

    def __init__(self, path: str | Path, max_batches: int = 10_000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_batches = max_batches
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: survives a process crash
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "batch_id TEXT NOT NULL UNIQUE, body BLOB NOT NULL)"
        )

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def full(self) -> bool:
        return len(self) >= self.max_batches

    def put(self, batch: AggregateBatch) -> None:
        self._db.execute(
            "INSERT INTO outbox (batch_id, body) VALUES (?, ?)",
            (batch.batch_id, msgspec.json.encode(batch)),
        )

    def peek(self, limit: int = 10) -> list[tuple[str, bytes]]:
        rows = self._db.execute(
            "SELECT batch_id, body FROM outbox ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [(r[0], bytes(r[1])) for r in rows]

    def remove(self, batch_id: str) -> None:
        self._db.execute("DELETE FROM outbox WHERE batch_id = ?", (batch_id,))

    def close(self) -> None:
        self._db.close()
