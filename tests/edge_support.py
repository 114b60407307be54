"""Helpers for the edge tests: real uvicorn servers in background threads, planes, edges, probes.

Every server runs on 127.0.0.1 on a socket bound here (port 0 picks a free port, so there is no
pick-then-bind race), in its own thread with its own event loop, exactly as in production but
with the test in charge of when it starts and stops. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import uvloop
from prometheus_client.parser import text_string_to_metric_families

from edgeloop.control import ControlPlane, Principal, Role, create_control_app
from edgeloop.edge import EdgeNode, create_edge_app
from edgeloop.model import flagset_to_raw, load_flags
from edgeloop.store import LastKnownGood, SqliteControlStore
from edgeloop.sync import (
    Backoff,
    HttpSnapshotSource,
    LocalSnapshotSource,
    SignedSnapshot,
    SnapshotSigner,
    SnapshotSource,
    SnapshotVerifier,
)

T0 = 1_796_148_000.0  # 2026-12-01T18:00:00Z: every test's "now"
ADMIN = Principal("test-admin-id", "test-admin", Role.ADMIN)

# One flag per OpenFeature type and per reason the engine can give.
DOC = """
metadata: {owner: growth}
flags:
  banner:
    description: Shown to attendees in core markets
    type: boolean
    variants: {on: true, off: false}
    default_variant: off
    metadata: {team: web, tier: 2, weight: 0.5, public: true}
    rules:
      - when: {attr: country, in: [US, CA]}
        variant: on
  headline:
    type: string
    variants: {short: Go, long: Go now}
    default_variant: short
    rules:
      - when: {attr: plan, eq: pro}
        variant: long
  max-items:
    type: integer
    variants: {few: 3, many: 10}
    default_variant: few
  ratio:
    type: float
    variants: {low: 0.25, high: 0.75}
    default_variant: high
  layout:
    type: object
    variants: {grid: {cols: 3, dense: true}, list: {cols: 1, dense: false}}
    default_variant: grid
  offer:
    type: string
    variants: {A: offer-a, B: offer-b}
    default_variant: A
    rules:
      - split: {A: 50, B: 50}
  killed:
    type: string
    variants: {x: ex}
    default_variant: x
    state: DISABLED
  vip-only:
    type: string
    variants: {vip: gold}
    default_variant: null
    rules:
      - when: {attr: tier, eq: vip}
        variant: vip
"""

FLAG_KEYS = ("banner", "headline", "max-items", "ratio", "layout", "offer", "killed", "vip-only")


class FakeClock:
    """A clock for ``clock=`` injection: reads ``now`` and then moves it on by ``step``."""

    def __init__(self, now: float = T0, step: float = 0.0) -> None:
        self.now = now
        self.step = step
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            t = self.now
            self.now += self.step
            return t

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def wait_until(
    predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


# servers ------------------------------------------------------------------------------------


def bind(port: int = 0) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP
    # (a proto-0 listener gives proto-0 connections, Nagle stays on, each response waits 40 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


class _Server(uvicorn.Server):
    """uvicorn, stoppable from another thread either gracefully or like a crashed process."""

    crash = False

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.crash:
            # A killed process: listeners gone, every connection dropped mid-stream.
            for server in self.servers:
                server.close()
            for connection in list(self.server_state.connections):
                connection.transport.abort()
        await super().shutdown(sockets)
        for connection in list(self.server_state.connections):
            connection.transport.close()  # streams that outlived the graceful timeout


class ServerThread:
    """An ASGI app served by uvicorn (plus background coroutines) on a thread of its own."""

    def __init__(
        self,
        app: Any,
        *,
        port: int = 0,
        background: Iterable[Callable[[], Awaitable[Any]]] = (),
        name: str = "server",
    ) -> None:
        self.app = app
        self.sock = bind(port)
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = name
        self.background = list(background)
        self.server = _Server(
            uvicorn.Config(
                app,
                log_level="warning",
                http="httptools",
                ws="websockets-sansio",
                lifespan="off",
                access_log=False,
                timeout_graceful_shutdown=1,
            )
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        loop = uvloop.new_event_loop()  # as in production (services.run)
        self.loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported by stop()
            self.errors.append(exc)
        finally:
            loop.close()

    async def _main(self) -> None:
        jobs = [asyncio.create_task(make()) for make in self.background]
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            for job in jobs:
                job.cancel()
            for result in await asyncio.gather(*jobs, return_exceptions=True):
                if isinstance(result, BaseException) and not isinstance(
                    result, asyncio.CancelledError
                ):
                    self.errors.append(result)

    def start(self, timeout: float = 10.0) -> ServerThread:
        self._thread.start()
        wait_until(
            lambda: self.server.started or not self._thread.is_alive(),
            timeout,
            what=f"{self.name} to start",
        )
        if not self.server.started:
            raise RuntimeError(f"{self.name} failed to start: {self.errors}")
        return self

    def stop(self, *, crash: bool = False, timeout: float = 10.0) -> None:
        """Stop serving. ``crash=True`` drops every open connection like a killed process."""
        if self._thread.is_alive():
            assert self.loop is not None

            def request() -> None:
                self.server.crash = crash
                self.server.should_exit = True

            with contextlib.suppress(RuntimeError):  # loop already closing
                self.loop.call_soon_threadsafe(request)
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise AssertionError(f"{self.name} did not stop within {timeout} s")
        self.sock.close()
        if self.errors:
            raise AssertionError(f"{self.name} background failure: {self.errors!r}")

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port() -> int:
    probe = bind(0)
    try:
        return int(probe.getsockname()[1])
    finally:
        probe.close()


def cli(*args: str) -> list[str]:
    """The installed ``edgeloop`` command (the venv's console script)."""
    return [str(Path(sys.executable).parent / "edgeloop"), *args]


class EdgeProcess:
    """``edgeloop edge`` in a process of its own: the edge exactly as deployed, with its own
    interpreter (so a test's client threads and the server do not share one GIL)."""

    def __init__(self, data_dir: Path, control_url: str, token: str, public_key: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"{data_dir.name}.log"
        self.command = cli(
            "edge",
            "--control",
            control_url,
            "--token",
            token,
            "--public-key",
            public_key,
            "--data-dir",
            str(data_dir),
            "--port",
            str(self.port),
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 45.0) -> EdgeProcess:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=log)

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"edgeloop edge exited: {self.output()}")
            try:
                return httpx.get(self.url + "/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout, interval=0.05, what="`edgeloop edge` to serve a snapshot")
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise AssertionError(f"`edgeloop edge` ignored SIGTERM: {self.output()}") from None


class Recorder:
    """ASGI middleware remembering each HTTP request's path and query (e.g. ``after=N``)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[tuple[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.requests.append((scope["path"], scope["query_string"].decode()))
        await self.app(scope, receive, send)

    def streams(self) -> list[str]:
        """The query strings of the snapshot-stream requests, in order."""
        return [q for p, q in self.requests if p == "/v1/snapshots/stream"]


class CountingSource:
    """Wraps a SnapshotSource and records the version of every snapshot it delivers."""

    def __init__(self, inner: SnapshotSource) -> None:
        self.inner = inner
        self.received: list[int] = []

    async def stream(self, current_version: Callable[[], int]) -> AsyncIterator[SignedSnapshot]:
        async for signed in self.inner.stream(current_version):
            self.received.append(signed.version)
            yield signed


# planes and edges -----------------------------------------------------------------------------


def make_plane(data_dir: Path, doc: str | None = DOC, now: float = T0) -> ControlPlane:
    """A control plane on SQLite under ``data_dir`` (signing key kept there), with ``doc`` live."""
    from edgeloop.cli.services import open_control

    plane = open_control(data_dir)
    if doc is not None:
        plane.replace_document(ADMIN, doc, "test setup", now)
    return plane


def edge_token(plane: ControlPlane, now: float = T0) -> str:
    _, token = plane.create_token(ADMIN, "edge-under-test", Role.EDGE, now)
    return token


def make_edge(
    data_dir: Path, public_key: str, clock: Callable[[], float] | None = None
) -> EdgeNode:
    """An edge node whose last-known-good lives under ``data_dir`` (not loaded: call it)."""
    return EdgeNode(
        SnapshotVerifier(public_key),
        LastKnownGood(data_dir / "edge" / "last-known-good.json"),
        clock=clock or FakeClock(),
    )


def local_source(plane: ControlPlane) -> LocalSnapshotSource:
    return LocalSnapshotSource(plane.store, plane.hub)


def http_source(
    node: EdgeNode,
    control_url: str,
    token: str,
    *,
    base: float = 0.05,
    cap: float = 0.5,
    seed: int = 7,
) -> HttpSnapshotSource:
    """The edge's HTTP (SSE) source with a short, seeded back-off; errors counted on ``node``."""

    def count(reason: str) -> None:
        node.metrics.sync_errors[reason] += 1

    return HttpSnapshotSource(
        control_url,
        token,
        backoff=Backoff(base=base, cap=cap, rng=random.Random(seed)),
        on_error=count,
        timeout=5.0,
    )


def serve_edge(
    node: EdgeNode, source: SnapshotSource | None = None, *, port: int = 0
) -> ServerThread:
    """The edge app on a real server; with ``source``, the node syncs from it on the same loop."""
    background = [] if source is None else [lambda: node.run_sync(source)]
    return ServerThread(create_edge_app(node), port=port, background=background, name="edge")


def serve_control(plane: ControlPlane, *, port: int = 0, record: bool = False) -> ServerThread:
    app: Any = create_control_app(plane, clock=lambda: T0)
    if record:
        app = Recorder(app)
    return ServerThread(app, port=port, name="control")


def close_plane(plane: ControlPlane) -> None:
    store = plane.store
    if isinstance(store, SqliteControlStore):
        store.close()


def signed(
    signer: SnapshotSigner, version: int, doc: str = DOC, issued_at: float = T0
) -> SignedSnapshot:
    """A snapshot signed by ``signer`` without any control plane."""
    return signer.sign(version, issued_at, load_flags(doc, "test-doc"))


def with_flag_state(doc: str, key: str, state: str) -> str:
    """``doc`` with flag ``key``'s state set (by editing the parsed document), as JSON."""
    data = flagset_to_raw(load_flags(doc, "test-doc"))
    data["flags"][key]["state"] = state
    return json.dumps(data)


# probes ----------------------------------------------------------------------------------------


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text → {(sample name, sorted labels): value}, via prometheus_client's parser."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def metric(samples: dict[Any, float], name: str, **labels: str) -> float:
    """One sample's value (0 if absent, as for a counter never incremented)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """The refusals and reconnects the fault tests provoke are expected: keep output readable
    (and per-request client logging off the hot loop). Levels are restored afterwards."""
    names = ("edgeloop.sync", "edgeloop.edge", "uvicorn.error", "httpx", "httpcore")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
