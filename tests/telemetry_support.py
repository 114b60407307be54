"""Helpers for the signal, session, privacy and telemetry tests.

- builders for signals (plain dicts, exactly what a client would POST) and batch bodies;
- ``Platform``: the embedded platform in-process — a control plane and an edge node, each with
  its own data directory so a test can tell which files which side wrote;
- ``ServerThread`` (from edge_support): an ASGI app on a real uvicorn (127.0.0.1) in a thread,
  stoppable gracefully or like a crashed process, restartable on the same port;
- probes: summed aggregates on both sides, and a byte search through every file under a folder.

Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import edge_support
from edgeloop.cli.services import open_control, open_edge
from edgeloop.control import ControlPlane, Principal, Role
from edgeloop.edge import EdgeNode
from edgeloop.model.aggregates import CELL_FIELDS
from edgeloop.sync import SignedSnapshot

T0 = 1_796_148_000.0  # 2026-12-01T18:00:00Z
ADMIN = Principal("telemetry-admin-id", "telemetry-admin", Role.ADMIN)
REPO = Path(__file__).resolve().parent.parent
MICRO_OFFER = (REPO / "examples" / "micro-offer.yaml").read_text()
FLAG = "micro-offer"
EXPERIMENT = "micro-offer-2026-11"
OFFER_VARIANTS = ("A", "B", "C")
COUNT_FIELDS = ("exposures", "converters", "chat_n", "pre_n")  # integers: compared exactly


class FakeClock:
    """A thread-safe clock that moves only when told."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self.now += seconds
            return self.now

    def set(self, now: float) -> float:
        with self._lock:
            self.now = now
            return now


async def wait_for(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01, what: str = ""
) -> Any:
    """Poll ``predicate`` from code on an event loop (which keeps running meanwhile) until it
    returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        await asyncio.sleep(interval)


# signals ---------------------------------------------------------------------------------------


def join(attendee: str, ts: float) -> dict[str, Any]:
    return {"type": "join", "ts": ts, "attendee": attendee}


def leave(attendee: str, ts: float) -> dict[str, Any]:
    return {"type": "leave", "ts": ts, "attendee": attendee}


def emoji(attendee: str, ts: float, e: str = "🎉") -> dict[str, Any]:
    return {"type": "chat_emoji", "ts": ts, "attendee": attendee, "emoji": e}


def chat(attendee: str, ts: float, text: str) -> dict[str, Any]:
    return {"type": "chat_message", "ts": ts, "attendee": attendee, "text": text}


def hover(attendee: str, ts: float, ms: int) -> dict[str, Any]:
    return {"type": "overlay_hover", "ts": ts, "attendee": attendee, "ms": ms}


def dwell(attendee: str, ts: float, ms: int) -> dict[str, Any]:
    return {"type": "overlay_dwell", "ts": ts, "attendee": attendee, "ms": ms}


def click(attendee: str, ts: float, cta: str = "buy") -> dict[str, Any]:
    return {"type": "cta_click", "ts": ts, "attendee": attendee, "cta": cta}


def conversion(attendee: str, ts: float, value: float, kind: str = "purchase") -> dict[str, Any]:
    return {"type": "conversion", "ts": ts, "attendee": attendee, "kind": kind, "value": value}


def returned(attendee: str, ts: float) -> dict[str, Any]:
    return {"type": "return", "ts": ts, "attendee": attendee}


def mic(level: float, ts: float) -> dict[str, Any]:
    return {"type": "mic_activity", "ts": ts, "level": level}


def batch(*signals: dict[str, Any]) -> bytes:
    return json.dumps(list(signals), ensure_ascii=False).encode()


def ingest(node: EdgeNode, *signals: dict[str, Any], now: float | None = None) -> None:
    """Ingest through the edge's real path; every signal must be accepted."""
    result = node.ingest(batch(*signals), node.clock() if now is None else now)
    assert result.rejected == [], result.rejected
    assert result.accepted == len(signals)


# the embedded platform -------------------------------------------------------------------------


@dataclass
class Platform:
    plane: ControlPlane
    node: EdgeNode
    clock: FakeClock
    control_dir: Path
    edge_dir: Path

    def sync(self) -> int:
        """Apply the control plane's latest snapshot on the edge (what the sync loop does)."""
        return sync_edge(self.node, self.plane)

    def close(self) -> None:
        close_edge(self.node)
        self.plane.store.close()


def sync_edge(node: EdgeNode, plane: ControlPlane) -> int:
    latest = plane.store.latest_snapshot()
    assert latest is not None
    node.apply(SignedSnapshot(latest.version, latest.payload, latest.signature))
    return node.version


def close_edge(node: EdgeNode) -> None:
    if node.raw_signals is not None:
        node.raw_signals.close()
    if node.outbox is not None:
        node.outbox.close()


def make_platform(
    tmp_path: Path,
    clock: FakeClock | None = None,
    *,
    doc: str = MICRO_OFFER,
    retention_s: float | None = None,
    sample_rate: float = 1.0,
) -> Platform:
    """A control plane (``tmp_path/control``) with ``doc`` live and an edge (``tmp_path/edge``)
    serving it, exactly as ``edgeloop up`` wires them but with the data directories apart."""
    clock = clock or FakeClock()
    control_dir, edge_dir = tmp_path / "control", tmp_path / "edge"
    plane = open_control(control_dir)
    plane.replace_document(ADMIN, doc, "telemetry test", clock())
    extra: dict[str, Any] = {} if retention_s is None else {"retention_s": retention_s}
    node = open_edge(
        edge_dir, plane.signer.public_key, clock, sample_rate=sample_rate, edge_id="edge-t", **extra
    )
    platform = Platform(plane, node, clock, control_dir, edge_dir)
    platform.sync()
    return platform


def offer_context(attendee: str, country: str = "US") -> dict[str, Any]:
    return {"targetingKey": attendee, "country": country}


# aggregates on both sides ----------------------------------------------------------------------


def edge_totals(node: EdgeNode, experiment: str = EXPERIMENT) -> dict[str, dict[str, float]]:
    """What the edge counted, all time, per variant."""
    return {
        variant: cell.as_dict()
        for (exp, variant), cell in node.telemetry.totals.items()
        if exp == experiment
    }


def control_totals(
    plane: ControlPlane, experiment: str = EXPERIMENT
) -> dict[str, dict[str, float]]:
    """What the control plane holds, summed over time buckets, per variant."""
    out: dict[str, dict[str, float]] = {}
    for variant, _bucket, stats in plane.store.aggregate_cells(experiment):
        into = out.setdefault(variant, dict.fromkeys(CELL_FIELDS, 0))
        for name, value in stats.items():
            into[name] += value
    return out


def assert_same_totals(
    edge: dict[str, dict[str, float]], control: dict[str, dict[str, float]]
) -> None:
    """Field by field: counts exactly, float sums to rounding (they are added in other orders)."""
    assert sorted(edge) == sorted(control), (edge, control)
    for variant, cell in edge.items():
        for name in CELL_FIELDS:
            mine, theirs = cell[name], control[variant][name]
            if name in COUNT_FIELDS:
                assert mine == theirs, f"{variant}.{name}: edge {mine} != control {theirs}"
            else:
                assert abs(mine - theirs) <= 1e-9 * max(1.0, abs(mine)), (
                    f"{variant}.{name}: edge {mine} != control {theirs}"
                )


# files -----------------------------------------------------------------------------------------


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def find_in_files(root: Path, needles: Iterable[bytes]) -> list[tuple[str, bytes]]:
    """Every (file, needle) where the needle's bytes occur in a file under ``root``."""
    wanted = list(needles)
    found = []
    for path in files_under(root):
        data = path.read_bytes()
        found.extend((str(path.relative_to(root)), n) for n in wanted if n in data)
    return found


def raw_signal_timestamps(db_path: Path) -> list[float]:
    """Every raw signal's timestamp found in an edge's raw-signal SQLite file, read directly
    (not through the store's own counting): a ``ts`` column of per-signal rows, or the ``ts``
    of each signal in JSON arrays stored per batch — whichever layout the store uses."""
    found: list[float] = []
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            cursor = db.execute(f'SELECT * FROM "{table}"')
            names = [c[0] for c in cursor.description]
            for row in cursor:
                if "ts" in names:
                    found.append(float(row[names.index("ts")]))
                    continue
                for value in row:
                    if not isinstance(value, bytes | str):
                        continue
                    try:
                        items = json.loads(value)
                    except ValueError:
                        continue
                    if isinstance(items, list):
                        found.extend(float(i["ts"]) for i in items if isinstance(i, dict))
    finally:
        db.close()
    return found


# a real server in a thread: the one edge_support provides ----------------------------------------

ServerThread = edge_support.ServerThread
