"""Shared fixtures: a control plane on a temporary SQLite file, a fake clock, clients, tokens.

- ``clock``: a :class:`FakeClock`; the control app reads time only from it.
- ``control``: a :class:`ControlPlane` on ``tmp_path/'control.db'`` with a fresh signing key.
- ``control_app`` / ``control_client``: the FastAPI app over ``control`` and a TestClient for it.
- ``tokens``: one bearer token (the secret) per :class:`Role`.
- ``control_server``: the same app served by a real uvicorn on 127.0.0.1 (for streaming).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from edgeloop.control import ControlPlane, Principal, Role, create_control_app
from edgeloop.store import SqliteControlStore
from edgeloop.sync import SnapshotSigner

START = 1_796_148_000.0  # 2026-12-01T18:00:00Z: where every fake clock starts
SYSTEM = Principal("system", "system", Role.ADMIN)  # who creates the fixtures' tokens

# The name on each role's fixture token: audit entries and launch requests show these names.
TOKEN_NAMES: dict[Role, str] = {
    Role.ADMIN: "ada-admin",
    Role.DESIGNER: "dee-designer",
    Role.OPERATOR: "otto-operator",
    Role.ANALYST: "ana-analyst",
    Role.EDGE: "edge-1",
}


class FakeClock:
    """A clock that moves only when told: ``clock()`` reads it, ``clock.advance(s)`` moves it."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock starting at ``START``; advance it with ``clock.advance(seconds)``."""
    return FakeClock()


@pytest.fixture
def control(tmp_path) -> Iterator[ControlPlane]:
    """A control plane on a fresh SQLite file ``tmp_path/'control.db'`` and a new signing key."""
    plane = ControlPlane(SqliteControlStore(tmp_path / "control.db"), SnapshotSigner.generate())
    yield plane
    plane.store.close()


@pytest.fixture
def control_app(control: ControlPlane, clock: FakeClock) -> FastAPI:
    """The control plane's FastAPI app over ``control``, reading time from ``clock``."""
    return create_control_app(control, clock=clock)


@pytest.fixture
def control_client(control_app: FastAPI) -> Iterator[TestClient]:
    """A TestClient for ``control_app`` (no Authorization header unless a test passes one).

    Server errors are raised in the test, not turned into 500 responses.
    """
    with TestClient(control_app) as client:
        yield client


@pytest.fixture
def tokens(control: ControlPlane, clock: FakeClock) -> dict[Role, str]:
    """One valid bearer token per role, named as in ``TOKEN_NAMES``, created by ``SYSTEM``."""
    return {
        role: control.create_token(SYSTEM, TOKEN_NAMES[role], role, clock())[1] for role in Role
    }


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def control_server(control_app: FastAPI) -> Iterator[str]:
    """``control_app`` served by uvicorn on 127.0.0.1 (a free port); yields the base URL.

    Clients must close their streams; shutdown waits at most 2 s for open connections.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        control_app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
