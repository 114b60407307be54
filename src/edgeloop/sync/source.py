"""Where an edge gets snapshots from: one small interface, several transports.

A ``SnapshotSource`` yields signed snapshots newer than the version the edge already has,
forever, reconnecting by itself. The edge verifies and applies; the source only transports.
- ``HttpSnapshotSource``: server-sent events from the control plane (resumes by version);
- ``LocalSnapshotSource``: in-process, for the embedded ``edgeloop up``;
- a NATS JetStream source slots in behind the same interface.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import httpx
from httpx_sse import aconnect_sse

from edgeloop.store import ControlStore

from .hub import SnapshotHub
from .snapshot import SignedSnapshot, SnapshotRejected, decode_signed

log = logging.getLogger("edgeloop.sync")


class SnapshotSource(Protocol):
    def stream(self, current_version: Callable[[], int]) -> AsyncIterator[SignedSnapshot]:
        """Snapshots newer than ``current_version()``, read again at every (re)connect."""
        ...


class Backoff:
    """Exponential back-off with full jitter (AWS architecture blog's 'full jitter')."""

    def __init__(
        self, base: float = 0.1, cap: float = 10.0, rng: random.Random | None = None
    ) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0
        self.rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2**self.attempt))
        self.attempt += 1
        return self.rng.uniform(0, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class HttpSnapshotSource:
    """Server-sent events from ``{control}/v1/snapshots/stream?after=N``."""

    def __init__(
        self,
        control_url: str,
        token: str,
        *,
        backoff: Backoff | None = None,
        on_error: Callable[[str], None] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.url = control_url.rstrip("/") + "/v1/snapshots/stream"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.backoff = backoff or Backoff()
        self.on_error = on_error or (lambda reason: None)
        # Reads wait for the next event indefinitely: the server sends keep-alives every 15 s.
        self.timeout = httpx.Timeout(timeout, read=60.0)

    async def stream(self, current_version: Callable[[], int]) -> AsyncIterator[SignedSnapshot]:
        async with httpx.AsyncClient(timeout=self.timeout, headers=self.headers) as client:
            while True:
                after = current_version()
                try:
                    async with aconnect_sse(
                        client, "GET", self.url, params={"after": after}
                    ) as sse:
                        if sse.response.status_code != 200:
                            reason = f"http_{sse.response.status_code}"
                            await sse.response.aread()
                            raise ConnectionError(reason)
                        async for event in sse.aiter_sse():
                            # Reset only once the stream delivers: a control plane that accepts
                            # and drops at once must still be retried with growing delays.
                            self.backoff.reset()
                            if event.event != "snapshot":
                                continue
                            try:
                                yield decode_signed(event.data)
                            except SnapshotRejected as exc:
                                self.on_error(exc.reason)
                except (httpx.HTTPError, ConnectionError, OSError) as exc:
                    reason = str(exc) if isinstance(exc, ConnectionError) else "unreachable"
                    self.on_error(reason)
                    log.warning("snapshot stream from %s: %s; retrying", self.url, exc)
                await asyncio.sleep(self.backoff.next_delay())


class LocalSnapshotSource:
    """In-process: reads the control plane's store when its hub says a version exists."""

    def __init__(self, store: ControlStore, hub: SnapshotHub) -> None:
        self.store = store
        self.hub = hub

    async def stream(self, current_version: Callable[[], int]) -> AsyncIterator[SignedSnapshot]:
        wake = self.hub.subscribe()
        seen = 0  # a snapshot the edge refused is not offered again in a tight loop
        try:
            while True:
                wake.clear()
                seen = max(seen, current_version())
                for stored in self.store.snapshots_after(seen, limit=50):
                    seen = stored.version
                    yield SignedSnapshot(stored.version, stored.payload, stored.signature)
                if self.hub.version > seen:
                    continue
                await wake.wait()
        finally:
            self.hub.unsubscribe(wake)
