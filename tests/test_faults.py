"""Faults at the edge, with real servers talking HTTP: the control plane gone, the edge
restarted without it, bad snapshots on the wire and on disk, and the control plane restarted.

The control plane is "stopped" the way a crashed process stops: its listener closes and every
open connection (the edges' snapshot streams) is dropped mid-stream.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from edge_support import (
    ADMIN,
    DOC,
    T0,
    CountingSource,
    EdgeProcess,
    Recorder,
    ServerThread,
    cli,
    close_plane,
    edge_token,
    free_port,
    http_source,
    local_source,
    make_edge,
    make_plane,
    metric,
    quiet_logs,
    scrape,
    serve_control,
    serve_edge,
    signed,
    wait_until,
    with_flag_state,
)
from edgeloop.cli.services import open_edge
from edgeloop.control import ControlPlane
from edgeloop.edge import EdgeNode
from edgeloop.sync import SignedSnapshot, SnapshotRejected, SnapshotSigner, decode_signed

LKG = Path("edge") / "last-known-good.json"  # under the data directory, as `edgeloop edge`


def persisted_version(path: Path) -> int | None:
    """The version in a last-known-good file (None while there is none yet)."""
    try:
        return decode_signed(path.read_bytes()).version
    except (FileNotFoundError, SnapshotRejected):
        return None


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    with quiet_logs():
        yield


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = make_plane(tmp_path / "control")
    yield plane
    close_plane(plane)


def get(url: str, path: str) -> httpx.Response:
    return httpx.get(url + path, timeout=5)


def samples(url: str) -> dict[Any, float]:
    return scrape(get(url, "/metrics").text)


def decide(url: str, context: dict[str, Any], flags: list[str]) -> httpx.Response:
    return httpx.post(url + "/v1/decide", json={"context": context, "flags": flags}, timeout=5)


US = {"targetingKey": "att-1", "country": "US"}


# (1) the control plane stops while an edge serves ------------------------------------------------

REQUESTS = 10_000
WORKERS = 3  # client processes, each with one keep-alive connection
STOP_AFTER = 500  # the control plane dies with this many answers given
DEADLINE = 45.0  # seconds for all the requests: about 4 on an idle two-core machine, a bound
# against hangs, not a benchmark (a machine busy with other work can be ten times slower)

# A client process: only httpx, so it starts in a fraction of a second, and the clients, the
# edge and this test do not share one interpreter lock. httpx's transport directly: one
# keep-alive connection, none of the client's per-request conveniences (cookies, redirects,
# auth), which cost more CPU than the edge spends answering.
CLIENT = """
import json, sys
import httpx
url, body, expected, n = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode(), int(sys.argv[4])
failures = []
request = httpx.Request("POST", url, content=body, headers={"content-type": "application/json"})
with httpx.HTTPTransport() as transport:
    for _ in range(n):
        try:
            response = transport.handle_request(request)
            content = response.read()
            response.close()
            if response.status_code != 200 or content != expected:
                failures.append(f"{response.status_code}: {content[:200]!r}")
        except httpx.HTTPError as exc:
            failures.append(repr(exc))
print(json.dumps({"done": n, "failed": len(failures), "first": failures[:5]}))
"""


def test_control_plane_down_while_serving_10000_decisions_no_failure(
    tmp_path: Path, plane: ControlPlane
) -> None:
    """The edge runs as deployed (`edgeloop edge`, its own process), synced over HTTP SSE;
    10 000 decide requests come from client processes; the control plane crashes early on."""
    control = serve_control(plane).start()
    version = plane.set_state(ADMIN, "banner", "DISABLED", "kill before the outage", T0 + 1)
    edge = EdgeProcess(tmp_path / "edge", control.url, edge_token(plane), plane.signer.public_key)
    clients: list[subprocess.Popen[str]] = []
    try:
        edge.start()
        wait_until(
            lambda: get(edge.url, "/readyz").json().get("version") == version,
            10,
            what="the edge to sync the kill",
        )
        flags = ["banner", "headline", "offer"]
        body = json.dumps({"context": US, "flags": flags})
        reference = httpx.post(edge.url + "/v1/decide", content=body, timeout=5)
        assert reference.json()["version"] == version
        assert reference.json()["decisions"]["banner"]["reason"] == "DISABLED"
        expected = reference.text  # same snapshot, same context: the same bytes every time

        def answered() -> float:
            found = samples(edge.url)
            return metric(found, "edgeloop_decisions_total", flag="banner", reason="DISABLED")

        started = time.monotonic()
        shares = [REQUESTS // WORKERS + (i < REQUESTS % WORKERS) for i in range(WORKERS)]
        for share in shares:
            command = [sys.executable, "-c", CLIENT, edge.url + "/v1/decide", body, expected]
            clients.append(
                subprocess.Popen(
                    [*command, str(share)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        wait_until(lambda: answered() >= STOP_AFTER, 20, 0.02, what="the first answers")
        control.stop(crash=True)
        answered_before_outage = answered()

        reports = []
        for client in clients:
            out, err = client.communicate(timeout=max(1.0, DEADLINE - (time.monotonic() - started)))
            assert client.returncode == 0, err
            reports.append(json.loads(out))
        assert [r["failed"] for r in reports] == [0] * WORKERS, [r["first"] for r in reports]
        assert sum(r["done"] for r in reports) == REQUESTS

        # Most answers were given with the control plane gone; the edge knew it was gone.
        after = samples(edge.url)
        total = metric(after, "edgeloop_decisions_total", flag="banner", reason="DISABLED")
        assert total == REQUESTS + 1  # and the reference request
        assert total - answered_before_outage >= REQUESTS // 2
        assert metric(after, "edgeloop_sync_errors_total", reason="unreachable") >= 1
        assert metric(after, "edgeloop_snapshot_version") == version
        assert get(edge.url, "/readyz").json() == {"ready": True, "version": version}
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait(5)
        edge.stop()
        control.stop()


# (2) the edge restarts while the control plane is down ------------------------------------------


def test_edge_restarted_while_control_plane_down_serves_the_persisted_snapshot(
    tmp_path: Path, plane: ControlPlane
) -> None:
    edge_dir = tmp_path / "edge-data"
    control = serve_control(plane).start()
    token = edge_token(plane)
    node = make_edge(edge_dir, plane.signer.public_key)
    edge = serve_edge(node, http_source(node, control.url, token)).start()
    version = plane.set_state(ADMIN, "banner", "DISABLED", "kill", T0 + 1)
    wait_until(lambda: node.version == version, 10, what="sync")
    # Clients are pushed first; the last-known-good file follows off the event loop.
    wait_until(lambda: persisted_version(edge_dir / LKG) == version, 10, what="persisted")
    answer = decide(edge.url, US, ["banner", "headline"]).json()
    edge.stop()
    control.stop(crash=True)

    # What is on disk is exactly the signed snapshot the edge served.
    persisted = decode_signed((edge_dir / LKG).read_bytes())
    assert persisted.version == version
    stored = plane.store.latest_snapshot()
    assert stored is not None
    assert (persisted.payload, persisted.signature) == (stored.payload, stored.signature)

    # A new edge process on the same data directory, wired as `edgeloop edge` wires it.
    restarted = open_edge(edge_dir, plane.signer.public_key)
    assert restarted.version == version
    edge = serve_edge(restarted, http_source(restarted, control.url, token)).start()
    try:
        assert get(edge.url, "/readyz").json() == {"ready": True, "version": version}
        assert decide(edge.url, US, ["banner", "headline"]).json() == answer
        wait_until(
            lambda: (
                metric(samples(edge.url), "edgeloop_sync_errors_total", reason="unreachable") >= 2
            ),
            10,
            what="the restarted edge to keep retrying the control plane",
        )
        # Still serving, still the same answer, nothing refused.
        after = samples(edge.url)
        assert metric(after, "edgeloop_snapshot_version") == version
        assert metric(after, "edgeloop_snapshots_applied_total") == 1
        assert decide(edge.url, US, ["banner", "headline"]).json() == answer
    finally:
        edge.stop()


def test_a_refused_token_is_counted_and_retried_with_back_off(
    tmp_path: Path, plane: ControlPlane
) -> None:
    control = serve_control(plane).start()
    node = make_edge(tmp_path / "edge", plane.signer.public_key)
    edge = serve_edge(node, http_source(node, control.url, "el_not_a_real_token")).start()
    try:
        wait_until(
            lambda: node.metrics.sync_errors["http_401"] >= 2, 10, what="refused connections"
        )
        assert get(edge.url, "/readyz").status_code == 503  # nothing trusted, nothing served
        found = samples(edge.url)
        assert metric(found, "edgeloop_sync_errors_total", reason="http_401") >= 2
        assert node.snapshot is None
    finally:
        edge.stop()
        control.stop()


# (3) bad snapshots: forged, replayed, relabelled, truncated ---------------------------------------


def sse(snapshot: SignedSnapshot | bytes) -> bytes:
    data = snapshot if isinstance(snapshot, bytes) else msgspec.json.encode(snapshot)
    version = b"0" if isinstance(snapshot, bytes) else str(snapshot.version).encode()
    return b"id: " + version + b"\nevent: snapshot\ndata: " + data + b"\n\n"


class ScriptedControl:
    """A control plane impostor: its snapshot stream sends ``first``, waits for ``release``,
    sends ``then`` and holds the stream open; each stream request's ``after`` is recorded."""

    def __init__(self, first: list[bytes], then: list[bytes]) -> None:
        self.first = first
        self.then = then
        self.release = threading.Event()
        self.afters: list[str | None] = []

    def app(self) -> Starlette:
        async def stream(request: Request) -> StreamingResponse:
            self.afters.append(request.query_params.get("after"))

            async def events() -> AsyncIterator[bytes]:
                yield b": scripted\n\n"
                for event in self.first:
                    yield event
                while not self.release.is_set():
                    await asyncio.sleep(0.01)
                for event in self.then:
                    yield event
                while True:
                    await asyncio.sleep(1)
                    yield b": keepalive\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

        return Starlette(routes=[Route("/v1/snapshots/stream", stream)])


def sign_raw(signer: SnapshotSigner, version: int, envelope: dict[str, Any]) -> SignedSnapshot:
    """Sign any payload with the control plane's real key (for a well-signed bad document)."""
    key: Any = load_pem_private_key(signer.to_pem(), password=None)
    payload = json.dumps(envelope).encode()
    signature = base64.b64encode(key.sign(payload)).decode()
    return SignedSnapshot(version, payload.decode(), signature)


def test_forged_replayed_and_relabelled_snapshots_are_refused_and_counted(
    tmp_path: Path,
) -> None:
    signer = SnapshotSigner.generate()
    v1, v2 = signed(signer, 1), signed(signer, 2, with_flag_state(DOC, "banner", "DISABLED"))
    v3 = signed(signer, 3, with_flag_state(DOC, "headline", "DISABLED"))
    forged = signed(SnapshotSigner.generate(), 3)  # right shape, someone else's key
    envelope = json.loads(v3.payload)
    envelope["document"]["flags"]["banner"]["state"] = "ENABLED"
    tampered = SignedSnapshot(3, json.dumps(envelope), v3.signature)  # edited after signing
    relabelled = SignedSnapshot(7, v2.payload, v2.signature)  # an old payload called new
    bad_document = sign_raw(
        signer, 3, {"version": 3, "issued_at": T0, "document": {"flags": {"x": {"type": "?"}}}}
    )
    script = ScriptedControl(
        first=[
            sse(v1),
            sse(v2),
            sse(forged),
            sse(tampered),
            sse(v1),  # replayed: older than what is served
            sse(relabelled),
            sse(bad_document),
            sse(b'{"version": 3, "payload": '),  # truncated on the wire
            sse(v2),  # a resend of the current one: ignored, not an error
        ],
        then=[sse(v3)],
    )
    impostor = ServerThread(script.app(), name="scripted-control").start()
    node = make_edge(tmp_path, signer.public_key)
    edge = serve_edge(node, http_source(node, impostor.url, "token")).start()
    expected = {
        "bad_signature": 2,
        "stale": 1,
        "version_mismatch": 1,
        "invalid_document": 1,
        "malformed": 1,
    }
    try:

        def refusals() -> dict[str, float]:
            found = samples(edge.url)
            return {r: metric(found, "edgeloop_sync_errors_total", reason=r) for r in expected}

        wait_until(lambda: refusals() == expected, 10, what=f"refusals {expected}")
        # The previous snapshot is kept: served, and on disk.
        assert node.version == 2
        assert decide(edge.url, US, ["banner"]).json()["decisions"]["banner"]["reason"] == (
            "DISABLED"
        )
        assert decode_signed((tmp_path / LKG).read_bytes()).version == 2
        assert metric(samples(edge.url), "edgeloop_snapshots_applied_total") == 2

        # A good one after all that is applied as usual.
        script.release.set()
        wait_until(lambda: node.version == 3, 10, what="the good snapshot")
        wait_until(lambda: persisted_version(tmp_path / LKG) == 3, 10, what="it persisted")
        assert refusals() == expected
        assert script.afters == ["0"]  # one stream, never dropped for a bad snapshot
    finally:
        edge.stop()
        impostor.stop()


def test_a_truncated_or_tampered_snapshot_file_is_refused(tmp_path: Path) -> None:
    signer = SnapshotSigner.generate()
    node = make_edge(tmp_path, signer.public_key)
    assert node.apply(signed(signer, 4))
    path = tmp_path / LKG
    good = path.read_bytes()

    # A running edge re-reading a damaged file keeps what it serves.
    path.write_bytes(good[: len(good) // 2])
    assert not node.load_last_known_good()
    assert node.version == 4
    assert node.metrics.sync_errors["lkg_malformed"] == 1

    # A restarted edge refuses it and is not ready rather than wrong.
    restarted = make_edge(tmp_path, signer.public_key)
    assert not restarted.load_last_known_good()
    assert restarted.snapshot is None
    with serve_edge(restarted) as edge:
        assert get(edge.url, "/readyz").status_code == 503
        assert decide(edge.url, US, ["banner"]).status_code == 503
        found = samples(edge.url)
        assert metric(found, "edgeloop_sync_errors_total", reason="lkg_malformed") == 1
        assert metric(found, "edgeloop_snapshot_version") == 0
        # The control plane comes back with a good snapshot: applied and persisted again.
        assert restarted.apply(signed(signer, 5))
        assert get(edge.url, "/readyz").json() == {"ready": True, "version": 5}
    assert decode_signed(path.read_bytes()).version == 5

    # A file whose payload was edited, or that another key signed, is refused too.
    envelope = json.loads(decode_signed(good).payload)
    envelope["document"]["flags"]["banner"]["state"] = "DISABLED"
    edited = SignedSnapshot(4, json.dumps(envelope), decode_signed(good).signature)
    for bad in (edited, signed(SnapshotSigner.generate(), 9)):
        path.write_bytes(msgspec.json.encode(bad))
        fresh = make_edge(tmp_path, signer.public_key)
        assert not fresh.load_last_known_good()
        assert fresh.snapshot is None
        assert fresh.metrics.sync_errors["bad_signature"] == 1
    # Empty and missing files: nothing to serve, nothing counted as an attack for a missing one.
    path.write_bytes(b"")
    assert not make_edge(tmp_path, signer.public_key).load_last_known_good()
    path.unlink()
    fresh = make_edge(tmp_path, signer.public_key)
    assert not fresh.load_last_known_good()
    assert sum(fresh.metrics.sync_errors.values()) == 0


def test_a_failed_last_known_good_write_does_not_stop_syncing(
    tmp_path: Path, plane: ControlPlane
) -> None:
    node = make_edge(tmp_path / "edge", plane.signer.public_key)
    edge = serve_edge(node, local_source(plane)).start()
    try:
        wait_until(lambda: node.version == 1, 5, what="the first sync")
        wait_until(lambda: persisted_version(tmp_path / "edge" / LKG) == 1, 5, what="persisted")
        lkg_dir = tmp_path / "edge" / LKG.parent
        shutil.rmtree(lkg_dir)
        lkg_dir.write_text("a file where the directory was: every save fails")
        plane.set_state(ADMIN, "banner", "DISABLED", "kill", T0 + 1)
        time.sleep(0.3)
        lkg_dir.unlink()  # the disk is fine again
        v3 = plane.set_state(ADMIN, "headline", "DISABLED", "kill", T0 + 2)
        wait_until(lambda: node.version == v3, 3, what="a later snapshot to be applied")
    finally:
        with contextlib.suppress(AssertionError):  # the dead sync task is reported by stop()
            edge.stop()


# (4) the control plane restarts: edges resume where they were ----------------------------------

EDGES = 3


def test_control_plane_restart_edges_resume_without_a_reload_storm(tmp_path: Path) -> None:
    data_dir = tmp_path / "control"
    plane = make_plane(data_dir)
    control = serve_control(plane, record=True).start()
    port = control.port
    token = edge_token(plane)
    nodes: list[EdgeNode] = []
    sources: list[CountingSource] = []
    edges: list[ServerThread] = []
    try:
        for i in range(EDGES):
            node = make_edge(tmp_path / f"edge-{i}", plane.signer.public_key)
            source = CountingSource(http_source(node, control.url, token, seed=i))
            nodes.append(node)
            sources.append(source)
            edges.append(serve_edge(node, source).start())
        v2 = plane.set_state(ADMIN, "banner", "DISABLED", "kill", T0 + 1)
        wait_until(lambda: all(n.version == v2 for n in nodes), 10, what="edges at v2")
        assert [s.received for s in sources] == [[1, 2]] * EDGES

        # Crash: the streams drop; the edges retry with back-off, serving v2 all along.
        control.stop(crash=True)
        close_plane(plane)
        outage = time.monotonic()
        wait_until(
            lambda: all(n.metrics.sync_errors["unreachable"] >= 3 for n in nodes),
            10,
            what="the edges to notice the outage and retry",
        )
        for edge in edges:
            assert decide(edge.url, US, ["banner"]).json()["version"] == v2
        down_for = time.monotonic() - outage
        attempts = [n.metrics.sync_errors["unreachable"] for n in nodes]
        # Back-off, not a tight loop: even the first retry waits up to 50 ms, later ones more.
        assert max(attempts) <= 2 + down_for / 0.02, attempts

        # Restart on the same data directory and port.
        plane = make_plane(data_dir, doc=None)
        assert plane.hub.version == v2
        restarted = serve_control(plane, port=port, record=True).start()
        control = restarted
        recorder: Recorder = restarted.app
        wait_until(lambda: len(recorder.streams()) >= EDGES, 10, what="the edges to reconnect")
        # Every edge asked for what is newer than its version and got nothing to reload.
        assert sorted(recorder.streams()) == [f"after={v2}"] * EDGES
        time.sleep(0.2)
        assert [s.received for s in sources] == [[1, 2]] * EDGES
        assert all(n.metrics.snapshots_applied == 2 for n in nodes)

        # New changes reach every edge, once each.
        v3 = plane.set_state(ADMIN, "banner", "ENABLED", "fixed", T0 + 2)
        wait_until(lambda: all(n.version == v3 for n in nodes), 10, what="edges at v3")
        assert [s.received for s in sources] == [[1, 2, 3]] * EDGES
        for edge in edges:
            answer = decide(edge.url, US, ["banner"]).json()
            assert answer["version"] == v3
            assert answer["decisions"]["banner"]["reason"] == "TARGETING_MATCH"
        assert len(recorder.streams()) == EDGES  # no reconnects once resumed
    finally:
        for edge in edges:
            edge.stop()
        control.stop()
        close_plane(plane)


def test_the_control_process_stops_on_sigterm_with_edges_streaming(tmp_path: Path) -> None:
    """`edgeloop control` must exit on SIGTERM even while edges hold their snapshot streams
    open (they never end by themselves): an orchestrator's stop must not hang until SIGKILL."""
    data_dir = tmp_path / "control"
    plane = make_plane(data_dir)
    token = edge_token(plane)
    close_plane(plane)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = cli("control", "--data-dir", str(data_dir), "--port", str(port))
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def up() -> bool:
            try:
                return httpx.get(url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 45, interval=0.05, what="`edgeloop control` to start")
        with contextlib.ExitStack() as stack:
            for _ in range(2):  # two edges, streaming
                client = stack.enter_context(httpx.Client(timeout=httpx.Timeout(5, read=None)))
                auth = {"Authorization": f"Bearer {token}"}
                request = client.build_request("GET", url + "/v1/snapshots/stream", headers=auth)
                stream = client.send(request, stream=True)
                stack.callback(stream.close)
                assert stream.status_code == 200
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
