"""Attached clients for bench/propagation.py: many WebSocket connections in one asyncio process.

    python bench/servers/ws_clients.py --edge ws://127.0.0.1:P1/v1/attach --edge ... \\
        --per-edge 125 --first-id 0

Each connection attaches with its own context (``flagsets.edgeloop_context``) and records, for
every pushed ``decisions`` message, the snapshot version and when its bytes arrived: the
timestamp is taken in the connection's ``data_received`` (the moment the event loop hands the
process the bytes, before the websockets library parses them), on CLOCK_MONOTONIC, which every
process on the machine shares — so it compares with the sender's clock in the parent.

Protocol with the parent, one line each way:
  stdout  READY <connections> <version> <cpu_s>   all attached, initial decisions received
  stdin   WAIT <version> <timeout_s>         → stdout  DONE <version> <received> <cpu_s>
  stdin   DUMP                               → stdout  one JSON line, then exit
(``cpu_s`` is this process's CPU time so far, to check the clients are not the bottleneck.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections import Counter
from typing import Any

import msgspec
import uvloop
from flagsets import edgeloop_context
from websockets.asyncio.client import ClientConnection, connect


class StampedConnection(ClientConnection):
    rx_ns = 0

    def data_received(self, data: bytes) -> None:
        self.rx_ns = time.monotonic_ns()
        super().data_received(data)


class Client:
    def __init__(self, edge: int, uid: int) -> None:
        self.edge = edge
        self.uid = uid
        self.arrivals: dict[int, int] = {}  # version → first arrival (monotonic ns)
        self.changes: dict[int, list[str]] = {}


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


async def run(args: argparse.Namespace) -> None:
    clients: list[Client] = []
    conns: list[StampedConnection] = []
    readers: list[asyncio.Task[None]] = []
    gate = asyncio.Semaphore(64)
    counts: Counter[int] = Counter()  # version → clients that have it
    attached = 0
    progress = asyncio.Event()

    async def reader(conn: StampedConnection, client: Client) -> None:
        nonlocal attached
        async for raw in conn:
            at = conn.rx_ns
            message = msgspec.json.decode(raw)
            if message.get("type") != "decisions":
                continue
            version = message["version"]
            if version not in client.arrivals:
                if not client.arrivals:
                    attached += 1
                client.arrivals[version] = at
                client.changes[version] = sorted(message.get("decisions", {}))
                counts[version] += 1
                progress.set()

    async def open_one(edge: int, url: str, uid: int) -> None:
        client = Client(edge, uid)
        async with gate:
            conn = await connect(
                url,
                create_connection=StampedConnection,
                compression=None,
                ping_interval=None,
                open_timeout=30,
                max_queue=64,
            )
            context = edgeloop_context(f"attendee-{uid:06d}", uid)
            await conn.send(msgspec.json.encode({"type": "attach", "context": context}))
        clients.append(client)
        conns.append(conn)
        readers.append(asyncio.create_task(reader(conn, client)))

    uid = args.first_id
    jobs = []
    for edge, url in enumerate(args.edge):
        for _ in range(args.per_edge):
            jobs.append(open_one(edge, url, uid))
            uid += 1
    await asyncio.gather(*jobs)

    async def wait_all(version: int | None, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while True:
            done = attached if version is None else counts[version]
            left = deadline - time.monotonic()
            if done == len(clients) or left <= 0:
                return done
            progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(progress.wait(), left)

    got = await wait_all(None, 30)
    first = min((min(c.arrivals) for c in clients if c.arrivals), default=0)
    print(f"READY {got} {first} {cpu_s():.4f}", flush=True)

    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while True:
        line = (await stdin.readline()).decode().split()
        if not line or line[0] == "DUMP":
            break
        if line[0] == "WAIT":
            version, timeout = int(line[1]), float(line[2])
            got = await wait_all(version, timeout)
            print(f"DONE {version} {got} {cpu_s():.4f}", flush=True)
    dump: dict[str, Any] = {
        "clients": [
            {"edge": c.edge, "uid": c.uid, "arrivals": c.arrivals, "changes": c.changes}
            for c in clients
        ],
        "cpu_s": cpu_s(),
    }
    print(json.dumps(dump), flush=True)
    for task in readers:
        task.cancel()
    await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--edge", action="append", required=True, help="ws URL (repeatable)")
    parser.add_argument("--per-edge", type=int, required=True)
    parser.add_argument("--first-id", type=int, default=0)
    args = parser.parse_args()
    uvloop.run(run(args))


if __name__ == "__main__":
    main()
