"""In-process notification that a new snapshot version was committed."""

from __future__ import annotations

import asyncio


class SnapshotHub:
    """Tells in-process subscribers (the SSE stream, an embedded edge) that a version exists.

    Thread-safe: a commit may happen on a worker thread; subscribers wait on their own loop.
    """

    def __init__(self) -> None:
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.version = 0

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters.append((asyncio.get_running_loop(), event))
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        self._waiters = [(loop, e) for loop, e in self._waiters if e is not event]

    def publish(self, version: int) -> None:
        self.version = version
        for loop, event in list(self._waiters):
            if loop.is_closed():
                continue
            loop.call_soon_threadsafe(event.set)
