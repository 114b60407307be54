"""The SQLite control store: schema migrations, WAL, all-or-nothing commits, durable state."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import edgeloop.store.control as control_store
from conftest import START, SYSTEM
from edgeloop.control import ControlPlane, Role
from edgeloop.control.auth import hash_token
from edgeloop.store import (
    AuditRecord,
    Draft,
    FlagChange,
    LaunchRequest,
    SqliteControlStore,
    StoredSnapshot,
    TokenRecord,
    VersionConflict,
)
from edgeloop.store.control import MIGRATIONS
from edgeloop.sync import SnapshotSigner

FLAG = {"type": "boolean", "variants": {"on": True, "off": False}, "default_variant": "off"}


def snapshot(version: int) -> StoredSnapshot:
    return StoredSnapshot(version, f'{{"version": {version}}}', f"sig-{version}", START + version)


def audit(action: str = "flag.update", target: str = "promo") -> AuditRecord:
    return AuditRecord(START, "ada", "admin", action, target, {"x": 1}, {"x": 2}, "why")


def change(key: str = "promo") -> FlagChange:
    return FlagChange(key, "flag.update", {"default_variant": "off"}, {"default_variant": "on"})


def pragma(path: Path, name: str) -> object:
    """Read a PRAGMA through a connection of our own, not the store's."""
    with sqlite3.connect(path) as db:
        return db.execute(f"PRAGMA {name}").fetchone()[0]


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {r[0] for r in rows} - {"sqlite_sequence"}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "control.db"


@pytest.fixture
def store(db_path: Path):
    s = SqliteControlStore(db_path)
    yield s
    s.close()


# --- schema -----------------------------------------------------------------------------------


def test_a_new_file_gets_every_migration_and_records_the_schema_version(
    store: SqliteControlStore, db_path: Path
) -> None:
    assert pragma(db_path, "user_version") == len(MIGRATIONS)
    assert {
        "snapshots",
        "flag_history",
        "audit",
        "tokens",
        "drafts",
        "launch_requests",
        "settings",
    } <= tables(db_path)


def test_reopening_does_not_migrate_again(store: SqliteControlStore, db_path: Path) -> None:
    store.set_setting("four_eyes", False)
    store.close()

    again = SqliteControlStore(db_path)  # CREATE TABLE would fail if migrations re-ran

    assert pragma(db_path, "user_version") == len(MIGRATIONS)
    assert again.get_setting("four_eyes") is False
    again.close()


def test_an_older_schema_is_upgraded_step_by_step(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control_store, "MIGRATIONS", MIGRATIONS[:1])
    old = SqliteControlStore(db_path)
    old.add_token(TokenRecord("t1", "ada", "admin", START, None), "hash-1")
    old.close()
    assert pragma(db_path, "user_version") == 1
    monkeypatch.setattr(
        control_store, "MIGRATIONS", (*MIGRATIONS, "CREATE TABLE added_later (x TEXT)")
    )

    upgraded = SqliteControlStore(db_path)

    assert pragma(db_path, "user_version") == len(MIGRATIONS) + 1
    assert "added_later" in tables(db_path)
    assert upgraded.token_by_hash("hash-1") == TokenRecord("t1", "ada", "admin", START, None)
    upgraded.close()


def test_a_failing_migration_leaves_the_file_at_its_old_version(
    store: SqliteControlStore, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.set_setting("kept", 1)
    store.close()
    broken = "CREATE TABLE half_done (x TEXT); THIS IS NOT SQL"
    monkeypatch.setattr(control_store, "MIGRATIONS", (*MIGRATIONS, broken))

    with pytest.raises(sqlite3.OperationalError):
        SqliteControlStore(db_path)

    assert pragma(db_path, "user_version") == len(MIGRATIONS)
    assert "half_done" not in tables(db_path)
    monkeypatch.setattr(control_store, "MIGRATIONS", MIGRATIONS)
    reopened = SqliteControlStore(db_path)
    assert reopened.get_setting("kept") == 1
    reopened.close()


def test_a_file_from_a_newer_edgeloop_is_refused_untouched(
    store: SqliteControlStore, db_path: Path
) -> None:
    store.close()
    with sqlite3.connect(db_path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")

    with pytest.raises(RuntimeError, match="newer than this edgeloop"):
        SqliteControlStore(db_path)

    assert pragma(db_path, "user_version") == len(MIGRATIONS) + 1


def test_the_file_is_in_wal_mode(store: SqliteControlStore, db_path: Path) -> None:
    store.set_setting("x", 1)
    assert pragma(db_path, "journal_mode") == "wal"
    assert db_path.with_name("control.db-wal").exists()


# --- commits ----------------------------------------------------------------------------------


def test_a_commit_writes_snapshot_history_and_audit_together(store: SqliteControlStore) -> None:
    store.put_draft(Draft("promo", FLAG, "dee", START))
    request_id = store.add_launch_request(
        LaunchRequest(0, "promo", FLAG, "dee", START, "pending", None, None, "")
    )

    store.commit_snapshot(
        snapshot(1),
        [change("promo"), change("banner")],
        audit("launch.approve"),
        draft_done="promo",
        launch_request=(request_id, "approved", "otto", START + 1),
    )

    assert store.latest_snapshot() == snapshot(1)
    [promo] = store.flag_history("promo")
    assert (promo.version, promo.actor, promo.reason) == (1, "ada", "why")
    assert (promo.before, promo.after) == ({"default_variant": "off"}, {"default_variant": "on"})
    assert len(store.flag_history("banner")) == 1
    [entry] = store.audit_log()
    assert (entry.action, entry.before, entry.after) == ("launch.approve", {"x": 1}, {"x": 2})
    assert store.get_draft("promo") is None
    decided = store.get_launch_request(request_id)
    assert (decided.status, decided.decided_by, decided.decided_at) == (
        "approved",
        "otto",
        START + 1,
    )


def _nothing_of_the_failed_commit(store: SqliteControlStore, request_id: int) -> None:
    assert store.latest_snapshot() == snapshot(1)
    assert [h.version for h in store.flag_history("promo")] == [1]
    assert store.flag_history("banner") == []
    assert [e.action for e in store.audit_log()] == ["flag.create"]
    assert store.get_draft("banner") is not None
    assert store.get_launch_request(request_id).status == "pending"


@pytest.mark.parametrize("version", [1, 3], ids=["same-version-again", "skipping-a-version"])
def test_a_version_conflict_writes_nothing(store: SqliteControlStore, version: int) -> None:
    store.commit_snapshot(snapshot(1), [change("promo")], audit("flag.create"))
    store.put_draft(Draft("banner", FLAG, "dee", START))
    request_id = store.add_launch_request(
        LaunchRequest(0, "banner", FLAG, "dee", START, "pending", None, None, "")
    )

    with pytest.raises(VersionConflict, match=f"expected version 2, got {version}"):
        store.commit_snapshot(
            snapshot(version),
            [change("promo"), change("banner")],
            audit("launch.approve"),
            draft_done="banner",
            launch_request=(request_id, "approved", "otto", START),
        )

    _nothing_of_the_failed_commit(store, request_id)


def test_a_commit_that_fails_halfway_is_rolled_back_entirely(store: SqliteControlStore) -> None:
    store.commit_snapshot(snapshot(1), [change("promo")], audit("flag.create"))
    store.put_draft(Draft("banner", FLAG, "dee", START))
    request_id = store.add_launch_request(
        LaunchRequest(0, "banner", FLAG, "dee", START, "pending", None, None, "")
    )

    # The snapshot row goes in first; the second history row for 'banner' breaks its key.
    with pytest.raises(sqlite3.IntegrityError):
        store.commit_snapshot(
            snapshot(2),
            [change("banner"), change("banner")],
            audit("launch.approve"),
            draft_done="banner",
            launch_request=(request_id, "approved", "otto", START),
        )

    _nothing_of_the_failed_commit(store, request_id)
    store.commit_snapshot(snapshot(2), [change("banner")], audit())  # the store still works
    assert store.latest_snapshot() == snapshot(2)


def test_two_writers_on_one_file_cannot_both_commit_the_same_version(
    store: SqliteControlStore, db_path: Path
) -> None:
    other = SqliteControlStore(db_path)
    store.commit_snapshot(snapshot(1), [change("promo")], audit("first"))

    with pytest.raises(VersionConflict):
        other.commit_snapshot(snapshot(1), [change("banner")], audit("second"))

    assert other.latest_snapshot() == snapshot(1)
    assert [e.action for e in other.audit_log()] == ["first"]
    other.close()


def test_snapshots_after_returns_newer_versions_in_order_up_to_limit(
    store: SqliteControlStore,
) -> None:
    for version in range(1, 8):
        store.commit_snapshot(snapshot(version), [], audit())

    def versions(after: int, limit: int = 100) -> list[int]:
        return [s.version for s in store.snapshots_after(after, limit=limit)]

    assert versions(0) == [1, 2, 3, 4, 5, 6, 7]
    assert versions(3, limit=2) == [4, 5]
    assert versions(6) == [7]
    assert versions(7) == []
    assert versions(-10, limit=1) == [1]
    assert store.snapshots_after(4, limit=1) == [snapshot(5)]


def test_empty_store_reads(store: SqliteControlStore) -> None:
    assert store.latest_snapshot() is None
    assert store.snapshots_after(0) == []
    assert store.audit_log() == []
    assert store.list_tokens() == []
    assert store.get_setting("four_eyes") is None
    assert store.get_launch_request(1) is None


# --- the other tables ---------------------------------------------------------------------------


def test_audit_log_is_newest_first_and_pages_by_id(store: SqliteControlStore) -> None:
    ids = [store.append_audit(audit(f"a{i}")) for i in range(5)]

    assert [e.id for e in store.audit_log()] == ids[::-1]
    assert [e.action for e in store.audit_log(limit=2)] == ["a4", "a3"]
    assert [e.action for e in store.audit_log(limit=2, before_id=ids[3])] == ["a2", "a1"]


def test_tokens_are_found_by_hash_and_revoked_once(store: SqliteControlStore) -> None:
    store.add_token(TokenRecord("t1", "edge-1", "edge", START, None), "hash-1")

    assert store.token_by_hash("hash-1") == TokenRecord("t1", "edge-1", "edge", START, None)
    assert store.token_by_hash("hash-2") is None
    assert store.revoke_token("t1", START + 5) is True
    assert store.revoke_token("t1", START + 6) is False  # already revoked: the time stays
    assert store.revoke_token("nope", START) is False
    assert store.token_by_hash("hash-1").revoked_at == START + 5


def test_drafts_are_upserted_and_settings_hold_json(store: SqliteControlStore) -> None:
    store.put_draft(Draft("promo", FLAG, "dee", START))
    store.put_draft(Draft("promo", {**FLAG, "default_variant": "on"}, "sam", START + 1))
    store.set_setting("shape", {"a": [1, 2.5, None, True]})

    assert store.list_drafts() == [
        Draft("promo", {**FLAG, "default_variant": "on"}, "sam", START + 1)
    ]
    assert store.get_setting("shape") == {"a": [1, 2.5, None, True]}


def test_reopening_the_file_keeps_all_state(db_path: Path) -> None:
    signer = SnapshotSigner.generate()
    plane = ControlPlane(SqliteControlStore(db_path), signer)
    plane.put_flag(SYSTEM, "promo", FLAG, "first", START)
    plane.set_state(SYSTEM, "promo", "DISABLED", "kill", START + 1)
    record, secret = plane.create_token(SYSTEM, "edge-1", Role.EDGE, START + 2)
    revoked, _ = plane.create_token(SYSTEM, "old", Role.ANALYST, START + 2)
    plane.revoke_token(SYSTEM, revoked.id, START + 3)
    plane.store.put_draft(Draft("banner", FLAG, "dee", START + 4))
    plane.set_four_eyes(SYSTEM, False, START + 5)
    before = (
        plane.document(),
        plane.store.snapshots_after(0),
        plane.store.flag_history("promo"),
        plane.store.audit_log(),
        plane.store.list_tokens(),
        plane.store.list_drafts(),
    )
    plane.store.close()

    reopened = ControlPlane(SqliteControlStore(db_path), signer)

    after = (
        reopened.document(),
        reopened.store.snapshots_after(0),
        reopened.store.flag_history("promo"),
        reopened.store.audit_log(),
        reopened.store.list_tokens(),
        reopened.store.list_drafts(),
    )
    assert after == before
    assert reopened.hub.version == 2  # edges are told where the reopened plane stands
    assert reopened.four_eyes() is False
    assert reopened.store.token_by_hash(hash_token(secret)) == record
    # The next change continues the version sequence.
    assert reopened.set_state(SYSTEM, "promo", "ENABLED", "back", START + 6) == 3
    reopened.store.close()
