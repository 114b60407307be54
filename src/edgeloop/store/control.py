"""Control-plane state behind one small interface; SQLite is the embedded default.

Snapshots are the source of truth for flags: each accepted change appends one signed snapshot
(the whole document at a new version) together with its flag-history rows and audit entry, in
one transaction. A PostgreSQL adapter implements the same ``ControlStore`` protocol.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import msgspec

from edgeloop.model.aggregates import AggregateBatch, UnitRecord


class StoredSnapshot(msgspec.Struct, frozen=True):
    version: int
    payload: str
    signature: str
    issued_at: float


class AuditEntry(msgspec.Struct, frozen=True):
    id: int
    at: float
    actor: str
    role: str
    action: str
    target: str
    before: Any
    after: Any
    reason: str


class HistoryEntry(msgspec.Struct, frozen=True):
    flag_key: str
    version: int
    at: float
    actor: str
    action: str
    before: Any
    after: Any
    reason: str


class TokenRecord(msgspec.Struct, frozen=True):
    id: str
    name: str
    role: str
    created_at: float
    revoked_at: float | None


class Draft(msgspec.Struct, frozen=True):
    flag_key: str
    definition: dict[str, Any]
    author: str
    updated_at: float


class LaunchRequest(msgspec.Struct, frozen=True):
    id: int
    flag_key: str
    definition: dict[str, Any]
    requested_by: str
    requested_at: float
    status: str  # pending | approved | rejected
    decided_by: str | None
    decided_at: float | None
    reason: str


class FlagChange(msgspec.Struct, frozen=True):
    flag_key: str
    action: str
    before: Any
    after: Any


class AuditRecord(msgspec.Struct, frozen=True):
    """An audit entry before it is stored (the store assigns the id)."""

    at: float
    actor: str
    role: str
    action: str
    target: str
    before: Any = None
    after: Any = None
    reason: str = ""


class Trip(msgspec.Struct, frozen=True):
    """A guardrail that fired (or an operator's manual action on one), with its evidence."""

    id: int
    experiment: str
    rule: str
    variant: str
    action: str
    at: float
    version: int | None
    evidence: Any
    reversed_by: str | None
    reversed_at: float | None


class VersionConflict(Exception):
    """Someone else committed first; re-read and retry."""


class ControlStore(Protocol):
    def latest_snapshot(self) -> StoredSnapshot | None: ...
    def snapshots_after(self, version: int, limit: int = 100) -> list[StoredSnapshot]: ...
    def commit_snapshot(
        self,
        snapshot: StoredSnapshot,
        changes: Sequence[FlagChange],
        audit: AuditRecord,
        *,
        draft_done: str | None = None,
        launch_request: tuple[int, str, str, float] | None = None,
    ) -> None: ...
    def flag_history(self, flag_key: str) -> list[HistoryEntry]: ...
    def append_audit(self, audit: AuditRecord) -> int: ...
    def audit_log(self, limit: int = 100, before_id: int | None = None) -> list[AuditEntry]: ...
    def add_token(self, record: TokenRecord, token_hash: str) -> None: ...
    def token_by_hash(self, token_hash: str) -> TokenRecord | None: ...
    def list_tokens(self) -> list[TokenRecord]: ...
    def revoke_token(self, token_id: str, at: float) -> bool: ...
    def put_draft(self, draft: Draft) -> None: ...
    def get_draft(self, flag_key: str) -> Draft | None: ...
    def list_drafts(self) -> list[Draft]: ...
    def delete_draft(self, flag_key: str) -> None: ...
    def add_launch_request(self, request: LaunchRequest) -> int: ...
    def get_launch_request(self, request_id: int) -> LaunchRequest | None: ...
    def list_launch_requests(self, status: str | None = None) -> list[LaunchRequest]: ...
    def decide_launch_request(
        self, request_id: int, status: str, actor: str, at: float
    ) -> None: ...
    def get_setting(self, key: str) -> Any: ...
    def experiment_keys(self) -> dict[str, bytes]: ...
    def add_experiment_key(self, experiment: str, key: bytes, at: float) -> None: ...
    def destroy_experiment_key(self, experiment: str) -> bool: ...
    def ingest_batch(self, batch: AggregateBatch, at: float) -> bool: ...
    def aggregate_cells(self, experiment: str) -> list[tuple[str, float, dict[str, float]]]: ...
    def unit_records(self, experiment: str) -> list[UnitRecord]: ...
    def add_trip(self, trip: Trip) -> int: ...
    def trips(self, experiment: str) -> list[Trip]: ...
    def reverse_trips(self, experiment: str, variant: str, actor: str, at: float) -> int: ...
    def set_setting(self, key: str, value: Any) -> None: ...
    def close(self) -> None: ...


# Each entry migrates the schema from version i to i + 1; never edit a released one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE snapshots (
        version INTEGER PRIMARY KEY,
        payload TEXT NOT NULL,
        signature TEXT NOT NULL,
        issued_at REAL NOT NULL
    );
    CREATE TABLE flag_history (
        flag_key TEXT NOT NULL,
        version INTEGER NOT NULL REFERENCES snapshots(version),
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        before TEXT,
        after TEXT,
        reason TEXT NOT NULL,
        PRIMARY KEY (flag_key, version)
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        role TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        before TEXT,
        after TEXT,
        reason TEXT NOT NULL
    );
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE TABLE drafts (
        flag_key TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        author TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE launch_requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        flag_key TEXT NOT NULL,
        definition TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        requested_at REAL NOT NULL,
        status TEXT NOT NULL,
        decided_by TEXT,
        decided_at REAL,
        reason TEXT NOT NULL
    );
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    """
    CREATE TABLE experiment_keys (
        experiment TEXT PRIMARY KEY,
        key BLOB NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE ingested_batches (
        batch_id TEXT PRIMARY KEY,
        edge TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE TABLE aggregate_cells (
        experiment TEXT NOT NULL,
        variant TEXT NOT NULL,
        bucket REAL NOT NULL,
        stats TEXT NOT NULL,
        PRIMARY KEY (experiment, variant, bucket)
    );
    CREATE TABLE unit_records (
        experiment TEXT NOT NULL,
        pseudonym TEXT NOT NULL,
        kind TEXT NOT NULL,
        at REAL NOT NULL,
        variant TEXT,
        value REAL NOT NULL
    );
    CREATE INDEX unit_records_experiment ON unit_records (experiment, pseudonym);
    """,
    """
    CREATE TABLE guardrail_trips (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        experiment TEXT NOT NULL,
        rule TEXT NOT NULL,
        variant TEXT NOT NULL,
        action TEXT NOT NULL,
        at REAL NOT NULL,
        version INTEGER,
        evidence TEXT NOT NULL,
        reversed_by TEXT,
        reversed_at REAL
    );
    CREATE INDEX guardrail_trips_key ON guardrail_trips (experiment, rule, variant);
    """,
)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class SqliteControlStore:
    """ControlStore on one SQLite file in WAL mode; one connection guarded by a lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives a crash of the process, not a power cut of the host (the
        # last transactions may be lost then); FULL would fsync every change and every ingested
        # batch, which holds a kill switch back by a disk flush. Fleets use PostgreSQL.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        # Deleted rows (a destroyed experiment key) are overwritten on disk, not just unlinked.
        self._db.execute("PRAGMA secure_delete=ON")
        self._migrate()

    def _migrate(self) -> None:
        with self._tx():
            current = self._db.execute("PRAGMA user_version").fetchone()[0]
            if current > len(MIGRATIONS):
                raise RuntimeError(
                    f"{self.path} has schema version {current}, newer than this edgeloop "
                    f"({len(MIGRATIONS)}): upgrade edgeloop"
                )
            for i in range(current, len(MIGRATIONS)):
                for statement in MIGRATIONS[i].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {i + 1}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # snapshots -------------------------------------------------------------------------

    def latest_snapshot(self) -> StoredSnapshot | None:
        rows = self._rows(
            "SELECT version, payload, signature, issued_at FROM snapshots "
            "ORDER BY version DESC LIMIT 1"
        )
        return StoredSnapshot(*rows[0]) if rows else None

    def snapshots_after(self, version: int, limit: int = 100) -> list[StoredSnapshot]:
        rows = self._rows(
            "SELECT version, payload, signature, issued_at FROM snapshots WHERE version > ? "
            "ORDER BY version LIMIT ?",
            version,
            limit,
        )
        return [StoredSnapshot(*r) for r in rows]

    def commit_snapshot(
        self,
        snapshot: StoredSnapshot,
        changes: Sequence[FlagChange],
        audit: AuditRecord,
        *,
        draft_done: str | None = None,
        launch_request: tuple[int, str, str, float] | None = None,
    ) -> None:
        with self._tx() as db:
            latest = db.execute("SELECT MAX(version) FROM snapshots").fetchone()[0] or 0
            if snapshot.version != latest + 1:
                raise VersionConflict(f"expected version {latest + 1}, got {snapshot.version}")
            db.execute(
                "INSERT INTO snapshots VALUES (?, ?, ?, ?)",
                (snapshot.version, snapshot.payload, snapshot.signature, snapshot.issued_at),
            )
            db.executemany(
                "INSERT INTO flag_history VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        c.flag_key,
                        snapshot.version,
                        audit.at,
                        audit.actor,
                        c.action,
                        _dumps(c.before),
                        _dumps(c.after),
                        audit.reason,
                    )
                    for c in changes
                ],
            )
            self._insert_audit(db, audit)
            if draft_done is not None:
                db.execute("DELETE FROM drafts WHERE flag_key = ?", (draft_done,))
            if launch_request is not None:
                request_id, status, actor, at = launch_request
                db.execute(
                    "UPDATE launch_requests SET status = ?, decided_by = ?, decided_at = ? "
                    "WHERE id = ?",
                    (status, actor, at, request_id),
                )

    def flag_history(self, flag_key: str) -> list[HistoryEntry]:
        rows = self._rows(
            "SELECT flag_key, version, at, actor, action, before, after, reason "
            "FROM flag_history WHERE flag_key = ? ORDER BY version",
            flag_key,
        )
        return [
            HistoryEntry(r[0], r[1], r[2], r[3], r[4], _loads(r[5]), _loads(r[6]), r[7])
            for r in rows
        ]

    # audit -----------------------------------------------------------------------------

    @staticmethod
    def _insert_audit(db: sqlite3.Connection, a: AuditRecord) -> int:
        cursor = db.execute(
            "INSERT INTO audit (at, actor, role, action, target, before, after, reason) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                a.at,
                a.actor,
                a.role,
                a.action,
                a.target,
                _dumps(a.before),
                _dumps(a.after),
                a.reason,
            ),
        )
        return int(cursor.lastrowid or 0)

    def append_audit(self, audit: AuditRecord) -> int:
        with self._tx() as db:
            return self._insert_audit(db, audit)

    def audit_log(self, limit: int = 100, before_id: int | None = None) -> list[AuditEntry]:
        rows = self._rows(
            "SELECT id, at, actor, role, action, target, before, after, reason FROM audit "
            "WHERE id < ? ORDER BY id DESC LIMIT ?",
            before_id if before_id is not None else 2**62,
            limit,
        )
        return [
            AuditEntry(r[0], r[1], r[2], r[3], r[4], r[5], _loads(r[6]), _loads(r[7]), r[8])
            for r in rows
        ]

    # tokens ----------------------------------------------------------------------------

    def add_token(self, record: TokenRecord, token_hash: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.name,
                    record.role,
                    token_hash,
                    record.created_at,
                    record.revoked_at,
                ),
            )

    def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        rows = self._rows(
            "SELECT id, name, role, created_at, revoked_at FROM tokens WHERE hash = ?", token_hash
        )
        return TokenRecord(*rows[0]) if rows else None

    def list_tokens(self) -> list[TokenRecord]:
        rows = self._rows(
            "SELECT id, name, role, created_at, revoked_at FROM tokens ORDER BY created_at"
        )
        return [TokenRecord(*r) for r in rows]

    def revoke_token(self, token_id: str, at: float) -> bool:
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (at, token_id),
            )
            return cursor.rowcount == 1

    # drafts and launch requests ----------------------------------------------------------

    def put_draft(self, draft: Draft) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO drafts VALUES (?, ?, ?, ?) ON CONFLICT(flag_key) DO UPDATE SET "
                "definition = excluded.definition, author = excluded.author, "
                "updated_at = excluded.updated_at",
                (draft.flag_key, _dumps(draft.definition), draft.author, draft.updated_at),
            )

    def get_draft(self, flag_key: str) -> Draft | None:
        rows = self._rows(
            "SELECT flag_key, definition, author, updated_at FROM drafts WHERE flag_key = ?",
            flag_key,
        )
        return Draft(rows[0][0], _loads(rows[0][1]), rows[0][2], rows[0][3]) if rows else None

    def list_drafts(self) -> list[Draft]:
        rows = self._rows(
            "SELECT flag_key, definition, author, updated_at FROM drafts ORDER BY flag_key"
        )
        return [Draft(r[0], _loads(r[1]), r[2], r[3]) for r in rows]

    def delete_draft(self, flag_key: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM drafts WHERE flag_key = ?", (flag_key,))

    def add_launch_request(self, request: LaunchRequest) -> int:
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO launch_requests (flag_key, definition, requested_by, requested_at, "
                "status, decided_by, decided_at, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    request.flag_key,
                    _dumps(request.definition),
                    request.requested_by,
                    request.requested_at,
                    request.status,
                    request.decided_by,
                    request.decided_at,
                    request.reason,
                ),
            )
            return int(cursor.lastrowid or 0)

    _LAUNCH_COLUMNS = (
        "id, flag_key, definition, requested_by, requested_at, status, decided_by, decided_at, "
        "reason"
    )

    @staticmethod
    def _launch(row: tuple[Any, ...]) -> LaunchRequest:
        return LaunchRequest(
            row[0], row[1], _loads(row[2]), row[3], row[4], row[5], row[6], row[7], row[8]
        )

    def get_launch_request(self, request_id: int) -> LaunchRequest | None:
        rows = self._rows(
            f"SELECT {self._LAUNCH_COLUMNS} FROM launch_requests WHERE id = ?", request_id
        )
        return self._launch(rows[0]) if rows else None

    def list_launch_requests(self, status: str | None = None) -> list[LaunchRequest]:
        if status is None:
            rows = self._rows(f"SELECT {self._LAUNCH_COLUMNS} FROM launch_requests ORDER BY id")
        else:
            rows = self._rows(
                f"SELECT {self._LAUNCH_COLUMNS} FROM launch_requests WHERE status = ? ORDER BY id",
                status,
            )
        return [self._launch(r) for r in rows]

    def decide_launch_request(self, request_id: int, status: str, actor: str, at: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE launch_requests SET status = ?, decided_by = ?, decided_at = ? "
                "WHERE id = ?",
                (status, actor, at, request_id),
            )

    # settings --------------------------------------------------------------------------

    def get_setting(self, key: str) -> Any:
        rows = self._rows("SELECT value FROM settings WHERE key = ?", key)
        return json.loads(rows[0][0]) if rows else None

    def set_setting(self, key: str, value: Any) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO settings VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )

    # privacy keys and aggregates ---------------------------------------------------------

    def experiment_keys(self) -> dict[str, bytes]:
        return {
            r[0]: bytes(r[1]) for r in self._rows("SELECT experiment, key FROM experiment_keys")
        }

    def add_experiment_key(self, experiment: str, key: bytes, at: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO experiment_keys VALUES (?, ?, ?)", (experiment, key, at)
            )

    def destroy_experiment_key(self, experiment: str) -> bool:
        with self._tx() as db:
            cursor = db.execute("DELETE FROM experiment_keys WHERE experiment = ?", (experiment,))
            destroyed = cursor.rowcount == 1
        if destroyed:
            with self._lock:  # move the freed pages out of the WAL into the (overwritten) file
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return destroyed

    def ingest_batch(self, batch: AggregateBatch, at: float) -> bool:
        """Add a batch's deltas once; a batch id seen before is acknowledged and ignored."""
        with self._tx() as db:
            seen = db.execute(
                "SELECT 1 FROM ingested_batches WHERE batch_id = ?", (batch.batch_id,)
            ).fetchone()
            if seen:
                return False
            db.execute(
                "INSERT INTO ingested_batches VALUES (?, ?, ?)", (batch.batch_id, batch.edge, at)
            )
            for cell in batch.cells:
                row = db.execute(
                    "SELECT stats FROM aggregate_cells WHERE experiment = ? AND variant = ? "
                    "AND bucket = ?",
                    (cell.experiment, cell.variant, cell.bucket),
                ).fetchone()
                stats = json.loads(row[0]) if row else {}
                for name, value in cell.stats.items():
                    stats[name] = stats.get(name, 0) + value
                db.execute(
                    "INSERT INTO aggregate_cells VALUES (?, ?, ?, ?) ON CONFLICT "
                    "(experiment, variant, bucket) DO UPDATE SET stats = excluded.stats",
                    (cell.experiment, cell.variant, cell.bucket, json.dumps(stats, sort_keys=True)),
                )
            db.executemany(
                "INSERT INTO unit_records VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (r.experiment, r.pseudonym, r.kind, r.at, r.variant, r.value)
                    for r in batch.records
                ],
            )
            return True

    def aggregate_cells(self, experiment: str) -> list[tuple[str, float, dict[str, float]]]:
        rows = self._rows(
            "SELECT variant, bucket, stats FROM aggregate_cells WHERE experiment = ? "
            "ORDER BY bucket, variant",
            experiment,
        )
        return [(r[0], r[1], json.loads(r[2])) for r in rows]

    def unit_records(self, experiment: str) -> list[UnitRecord]:
        rows = self._rows(
            "SELECT experiment, pseudonym, kind, at, variant, value FROM unit_records "
            "WHERE experiment = ? ORDER BY at",
            experiment,
        )
        return [UnitRecord(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    # guardrail trips ---------------------------------------------------------------------

    def add_trip(self, trip: Trip) -> int:
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO guardrail_trips (experiment, rule, variant, action, at, version, "
                "evidence, reversed_by, reversed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    trip.experiment,
                    trip.rule,
                    trip.variant,
                    trip.action,
                    trip.at,
                    trip.version,
                    _dumps(trip.evidence),
                    trip.reversed_by,
                    trip.reversed_at,
                ),
            )
            return int(cursor.lastrowid or 0)

    def trips(self, experiment: str) -> list[Trip]:
        rows = self._rows(
            "SELECT id, experiment, rule, variant, action, at, version, evidence, reversed_by, "
            "reversed_at FROM guardrail_trips WHERE experiment = ? ORDER BY id",
            experiment,
        )
        return [Trip(*r[:7], _loads(r[7]), r[8], r[9]) for r in rows]

    def reverse_trips(self, experiment: str, variant: str, actor: str, at: float) -> int:
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE guardrail_trips SET reversed_by = ?, reversed_at = ? "
                "WHERE experiment = ? AND variant = ? AND reversed_by IS NULL",
                (actor, at, experiment, variant),
            )
            return cursor.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()
