"""Push to attached clients over WebSocket: attach, kills through the control plane, context
updates, bad messages and disconnects, against real servers (edge and control plane)."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from edge_support import (
    ADMIN,
    T0,
    ServerThread,
    edge_token,
    http_source,
    local_source,
    make_edge,
    make_plane,
    metric,
    scrape,
    serve_control,
    serve_edge,
    wait_until,
)
from edgeloop.control import ControlPlane
from edgeloop.edge import EdgeNode

PROMPTLY = 2.0  # seconds from the control plane's commit to the attached client's screen
QUIET = 0.3  # how long "nothing was pushed" is watched for, on top of the ping below


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = make_plane(tmp_path / "control")
    yield plane
    plane.store.close()


@pytest.fixture(params=["local", "http"])
def edge(request: pytest.FixtureRequest, tmp_path: Path, plane: ControlPlane) -> Iterator[Edge]:
    """An edge synced from ``plane``: in-process (LocalSnapshotSource) or over HTTP SSE."""
    node = make_edge(tmp_path / "edge", plane.signer.public_key)
    control: ServerThread | None = None
    if request.param == "local":
        source: Any = local_source(plane)
    else:
        control = serve_control(plane).start()
        source = http_source(node, control.url, edge_token(plane))
    server = serve_edge(node, source).start()
    try:
        wait_until(lambda: node.version == plane.hub.version, 10, what="the first sync")
        yield Edge(node, server, request.param)
    finally:
        server.stop()
        if control is not None:
            control.stop()


class Edge:
    def __init__(self, node: EdgeNode, server: ServerThread, transport: str) -> None:
        self.node = node
        self.server = server
        self.transport = transport
        self.ws_url = server.url.replace("http://", "ws://") + "/v1/attach"

    def connect(self) -> ClientConnection:
        return connect(self.ws_url, open_timeout=5, close_timeout=2)

    def attached(self) -> float:
        samples = scrape(httpx.get(self.server.url + "/metrics", timeout=5).text)
        return metric(samples, "edgeloop_attached_clients")


def send(ws: ClientConnection, message: Any) -> None:
    ws.send(message if isinstance(message, str | bytes) else json.dumps(message))


def receive(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


def assert_nothing_pushed(ws: ClientConnection) -> None:
    """No message is pending: after a pause, a deliberately bad message's error comes first."""
    time.sleep(QUIET)
    send(ws, "ping?")
    assert receive(ws) == {"type": "error", "message": "not JSON"}


def attach(ws: ClientConnection, context: dict[str, Any], flags: list[str] | None = None) -> Any:
    message: dict[str, Any] = {"type": "attach", "context": context}
    if flags is not None:
        message["flags"] = flags
    send(ws, message)
    return receive(ws)


US = {"targetingKey": "att-1", "country": "US"}


def test_attach_gets_every_decision_at_once(edge: Edge, plane: ControlPlane) -> None:
    with edge.connect() as ws:
        first = attach(ws, US)
        assert first["type"] == "decisions"
        assert first["version"] == plane.hub.version
        decisions = first["decisions"]
        assert decisions["banner"] == {"value": True, "variant": "on", "reason": "TARGETING_MATCH"}
        assert decisions["killed"] == {"value": None, "variant": None, "reason": "DISABLED"}
        assert decisions["max-items"] == {"value": 3, "variant": "few", "reason": "STATIC"}
        assert set(decisions) == set(plane.document()[1]["flags"])
    with edge.connect() as ws:
        listed = attach(ws, US, ["headline", "ghost"])
        assert listed["decisions"] == {
            "headline": {"value": "Go", "variant": "short", "reason": "DEFAULT"},
            "ghost": {
                "value": None,
                "variant": None,
                "reason": "ERROR",
                "errorCode": "FLAG_NOT_FOUND",
            },
        }


def test_a_kill_reaches_attached_clients_promptly(edge: Edge, plane: ControlPlane) -> None:
    with edge.connect() as ws:
        attach(ws, US, ["banner", "headline"])
        killed_at = time.monotonic()
        version = plane.set_state(ADMIN, "banner", "DISABLED", "harmful variant", T0 + 1)
        pushed = receive(ws, timeout=PROMPTLY)
        assert time.monotonic() - killed_at < PROMPTLY
        # Only what changed, at the new version.
        assert pushed == {
            "type": "decisions",
            "version": version,
            "decisions": {"banner": {"value": None, "variant": None, "reason": "DISABLED"}},
        }
        assert edge.node.version == version

        # And back on.
        version = plane.set_state(ADMIN, "banner", "ENABLED", "fixed", T0 + 2)
        pushed = receive(ws, timeout=PROMPTLY)
        assert pushed["version"] == version
        assert pushed["decisions"] == {
            "banner": {"value": True, "variant": "on", "reason": "TARGETING_MATCH"}
        }


def test_only_clients_whose_decisions_changed_are_sent_anything(
    edge: Edge, plane: ControlPlane
) -> None:
    with edge.connect() as watches_banner, edge.connect() as watches_headline:
        attach(watches_banner, US, ["banner"])
        attach(watches_headline, US, ["headline"])
        version = plane.set_state(ADMIN, "banner", "DISABLED", "kill", T0 + 1)
        assert receive(watches_banner, PROMPTLY)["version"] == version
        assert_nothing_pushed(watches_headline)


def test_a_context_update_redecides_and_pushes_only_changes(edge: Edge) -> None:
    with edge.connect() as ws:
        first = attach(ws, {"targetingKey": "att-1", "country": "FR"})
        assert first["decisions"]["banner"]["reason"] == "DEFAULT"
        version = first["version"]

        send(ws, {"type": "context", "context": {"targetingKey": "att-1", "country": "US"}})
        assert receive(ws) == {
            "type": "decisions",
            "version": version,
            "decisions": {"banner": {"value": True, "variant": "on", "reason": "TARGETING_MATCH"}},
        }

        # The same context again: nothing changed, nothing sent.
        send(ws, {"type": "context", "context": {"targetingKey": "att-1", "country": "US"}})
        assert_nothing_pushed(ws)

        # The context is replaced, not merged: dropping country turns the banner off again,
        # and plan=pro turns the long headline on, in one message.
        send(ws, {"type": "context", "context": {"targetingKey": "att-1", "plan": "pro"}})
        changed = receive(ws)["decisions"]
        assert changed == {
            "banner": {"value": False, "variant": "off", "reason": "DEFAULT"},
            "headline": {"value": "Go now", "variant": "long", "reason": "TARGETING_MATCH"},
        }

        # A second "attach" on the same socket is a context update too.
        send(ws, {"type": "attach", "context": {"targetingKey": "att-1", "country": "CA"}})
        assert set(receive(ws)["decisions"]) == {"banner", "headline"}


BAD_MESSAGES: list[tuple[Any, str]] = [
    ("{not json", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    ("[1, 2]", "expected {type: attach|context, context: {...}}"),
    ({"type": "subscribe", "context": {}}, "expected {type: attach|context, context: {...}}"),
    ({"type": "attach"}, "expected {type: attach|context, context: {...}}"),
    ({"type": "attach", "context": "att-1"}, "expected {type: attach|context, context: {...}}"),
    ({"type": "attach", "context": {}, "flags": "banner"}, "flags must be a list of keys"),
    ({"type": "attach", "context": {}, "flags": [1]}, "flags must be a list of keys"),
    ({"type": "context", "context": {}}, "attach first"),
]


def test_bad_messages_get_an_error_and_the_socket_stays_usable(edge: Edge) -> None:
    with edge.connect() as ws:
        for message, error in BAD_MESSAGES:
            send(ws, message)
            assert receive(ws) == {"type": "error", "message": error}, message
        assert edge.attached() == 0  # none of them attached anything
        assert attach(ws, US, ["headline"])["decisions"]["headline"]["value"] == "Go"
        assert edge.attached() == 1
        # Once attached, a bad message is still just an error; the attachment stays.
        send(ws, {"type": "context", "context": None})
        assert receive(ws)["type"] == "error"
        send(ws, {"type": "context", "context": {"targetingKey": "att-1", "plan": "pro"}})
        assert receive(ws)["decisions"] == {
            "headline": {"value": "Go now", "variant": "long", "reason": "TARGETING_MATCH"}
        }
    wait_until(lambda: edge.attached() == 0, 5, what="detach")


def test_disconnects_detach(edge: Edge, plane: ControlPlane) -> None:
    with contextlib.ExitStack() as stack:
        clean = stack.enter_context(edge.connect())
        abrupt = stack.enter_context(edge.connect())
        stack.enter_context(edge.connect())  # connected, never attached: not counted
        attach(clean, US)
        attach(abrupt, US)
        assert edge.attached() == 2
        assert edge.node.metrics.attached == 2

        clean.close()
        wait_until(lambda: edge.attached() == 1, 5, what="a closed socket to detach")

        # A client that vanishes without a close frame (network gone, tab killed).
        abrupt.socket.shutdown(socket.SHUT_RDWR)
        abrupt.socket.close()
        wait_until(lambda: edge.attached() == 0, 5, what="a dropped socket to detach")

    # Pushing to nobody is fine, and new clients still attach and get pushes.
    plane.set_state(ADMIN, "banner", "DISABLED", "kill", T0 + 1)
    wait_until(lambda: edge.node.version == plane.hub.version, 5, what="sync")
    with edge.connect() as ws:
        assert attach(ws, US, ["banner"])["decisions"]["banner"]["reason"] == "DISABLED"
        assert edge.attached() == 1
    wait_until(lambda: edge.attached() == 0, 5, what="detach")
    assert edge.node.clients == set()


def test_an_archived_flag_is_pushed_as_removed(edge: Edge, plane: ControlPlane) -> None:
    with edge.connect() as everything, edge.connect() as listed:
        attach(everything, US)
        attach(listed, US, ["headline"])
        version = plane.archive_flag(ADMIN, "headline", "retired", T0 + 1)
        assert receive(everything, PROMPTLY) == {
            "type": "decisions",
            "version": version,
            "decisions": {},
            "removed": ["headline"],
        }
        # A client that asked for the flag by name is told it is gone.
        gone = receive(listed, PROMPTLY)["decisions"]["headline"]
        assert (gone["reason"], gone["errorCode"], gone["value"]) == (
            "ERROR",
            "FLAG_NOT_FOUND",
            None,
        )
