"""Wiring the services together: data directory, keys, stores, apps and uvicorn servers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import uvicorn

from edgeloop.edge import EdgeNode
from edgeloop.edge import create_edge_app as create_edge_app
from edgeloop.edge.node import AggregateSink, KeySource
from edgeloop.edge.telemetry import DEFAULT_RETENTION_S, Outbox, RawSignalStore
from edgeloop.store import LastKnownGood, SqliteControlStore
from edgeloop.sync import (
    HttpSnapshotSource,
    LocalSnapshotSource,
    SnapshotSigner,
    SnapshotSource,
    SnapshotVerifier,
)

if TYPE_CHECKING:
    from edgeloop.control import ControlPlane
    from edgeloop.control.loop import DecisionLoop

log = logging.getLogger("edgeloop")

# The control plane (FastAPI, numpy, scipy) is imported only by the commands that run it: an
# edge process that never imports it stays small (edge RSS is a measured target).
_CONTROL_NAMES = {
    "ControlPlane": ("edgeloop.control", "ControlPlane"),
    "DecisionLoop": ("edgeloop.control.loop", "DecisionLoop"),
    "create_control_app": ("edgeloop.control", "create_control_app"),
}


def __getattr__(name: str) -> Any:
    if name in _CONTROL_NAMES:
        module, attr = _CONTROL_NAMES[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(name)


CONTROL_DB = "control.db"
SIGNING_KEY = "signing-key.pem"
EDGE_LKG = "edge/last-known-good.json"
EDGE_SIGNALS = "edge/raw-signals.db"
EDGE_OUTBOX = "edge/outbox.db"
SHIP_EVERY_S = 5.0
PURGE_EVERY_S = 60.0


def signer_for(data_dir: Path) -> SnapshotSigner:
    """The control plane's signing key: generated on first start, kept in the data directory."""
    path = data_dir / SIGNING_KEY
    if path.exists():
        return SnapshotSigner.from_pem(path.read_bytes())
    signer = SnapshotSigner.generate()
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(signer.to_pem())
    return signer


def open_control(data_dir: Path) -> ControlPlane:
    from edgeloop.control import ControlPlane

    return ControlPlane(SqliteControlStore(data_dir / CONTROL_DB), signer_for(data_dir))


def open_edge(
    data_dir: Path,
    public_key: str,
    clock: Callable[[], float] = time.time,
    *,
    edge_id: str = "edge",
    retention_s: float = DEFAULT_RETENTION_S,
    sample_rate: float = 1.0,
) -> EdgeNode:
    node = EdgeNode(
        SnapshotVerifier(public_key),
        LastKnownGood(data_dir / EDGE_LKG),
        clock=clock,
        raw_signals=RawSignalStore(data_dir / EDGE_SIGNALS),
        outbox=Outbox(data_dir / EDGE_OUTBOX),
        edge_id=edge_id,
        retention_s=retention_s,
        sample_rate=sample_rate,
    )
    if node.load_last_known_good():
        log.info("serving last-known-good snapshot version %d", node.version)
    return node


def http_source(node: EdgeNode, control_url: str, token: str) -> SnapshotSource:
    def count(reason: str) -> None:
        node.metrics.sync_errors[reason] += 1

    return HttpSnapshotSource(control_url, token, on_error=count)


def local_source(plane: ControlPlane) -> SnapshotSource:
    return LocalSnapshotSource(plane.store, plane.hub)


def local_telemetry(
    plane: ControlPlane, clock: Callable[[], float] = time.time
) -> tuple[AggregateSink, KeySource]:
    """In-process aggregate shipping for `edgeloop up`: same ingest path as over HTTP."""

    async def send(body: bytes) -> None:
        plane.ingest_aggregates(body, clock())

    async def keys() -> dict[str, bytes]:
        return plane.experiment_keys()

    return send, keys


def webhook_notifier(plane: ControlPlane) -> Callable[[dict[str, Any]], None]:
    """Post each guardrail trip to the configured webhook, off the event loop, best effort."""

    def post(payload: dict[str, Any]) -> None:
        url = plane.webhook_url()
        if not url:
            return

        def send() -> None:
            try:
                httpx.post(url, json=payload, timeout=5.0)
            except httpx.HTTPError as exc:
                log.warning("webhook %s failed: %s", url, exc)

        threading.Thread(target=send, daemon=True).start()

    return post


async def decision_loop(loop: DecisionLoop, clock: Callable[[], float], every_s: float) -> None:
    """Evaluate guardrails every ``every_s`` seconds of (wall-clock) time."""
    while True:
        await asyncio.sleep(every_s)
        try:
            for action in loop.tick(clock()):
                log.warning("decision loop: %s %s (%s)", action.action, action.variant, action.rule)
        except Exception:
            log.exception("decision loop round failed")


async def telemetry_loop(
    node: EdgeNode, sink: AggregateSink, keys: KeySource, every_s: float = SHIP_EVERY_S
) -> None:
    """Ship aggregates every few seconds and enforce the retention window every minute."""
    last_purge = 0.0
    while True:
        now = node.clock()
        try:
            await node.ship(sink, keys, now)
            if now - last_purge >= PURGE_EVERY_S:
                node.purge(now)
                last_purge = now
        except Exception:  # keep the loop alive; the next round retries
            log.exception("telemetry round failed")
        await asyncio.sleep(every_s)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to ``serve_all`` (several share a loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Service:
    app: Any
    host: str
    port: int


async def serve_all(
    services: list[Service],
    background: list[Callable[[], Any]] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Run several ASGI apps (and background coroutines) in one event loop until a signal."""
    servers = [
        _Server(
            uvicorn.Config(
                s.app,
                host=s.host,
                port=s.port,
                log_level="warning",
                http="httptools",
                ws="websockets-sansio",
                lifespan="off",
                access_log=False,
                # Snapshot streams (SSE) never end by themselves: without a bound, a SIGTERM
                # waits for every attached edge forever.
                timeout_graceful_shutdown=5,
            )
        )
        for s in services
    ]
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    jobs = [asyncio.create_task(make()) for make in background or []]
    while not all(server.started for server in servers):
        if any(t.done() for t in tasks):
            break  # a server failed to start (port taken): fall through and report
        await asyncio.sleep(0.01)
    if on_ready is not None and all(server.started for server in servers):
        on_ready()
    # Everything loaded so far (modules, the first snapshot) lives as long as the process: keep
    # it out of the collector's sight, or every full collection walks it (~250 ms pauses seen).
    gc.collect()
    gc.freeze()
    try:
        await asyncio.gather(*tasks)
    finally:
        for job in jobs:
            job.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    for task in tasks:
        if task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    if not all(server.started for server in servers):
        raise RuntimeError("a server could not start (is the port in use?)")


def run(coro: Any) -> None:
    try:
        import uvloop

        uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep the CLI usable anyway
        asyncio.run(coro)
