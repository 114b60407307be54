"""Real edgeloop processes for the benchmarks: a control plane, its edges, and their cleanup.

``Fleet`` starts every process pinned to a core (``taskset -c``) in its own process group and
``stop_all`` ends exactly those groups (TERM, then KILL after 5 s). ``start_control`` runs
``edgeloop control`` and reads the admin token and public key it prints; ``Api`` talks to its
REST API (document push, tokens, toggles); ``start_edge`` runs ``edgeloop edge`` against it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EDGELOOP = REPO / ".venv" / "bin" / "edgeloop"


class FleetError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self) -> str:
        if self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-1500:]
        return ""

    def alive(self) -> bool:
        return self.popen.poll() is None


def boost(pid: int, nice: int) -> None:
    """Give ``pid``'s scheduling autogroup the nice level ``nice`` (root for < 0).

    With autogroups (Linux's default for desktop-ish kernels, and here), every session competes
    as one group and a process's own nice level only matters inside its group: a process in its
    own session (as every benchmark process is) is prioritised through its group."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))


class Fleet:
    """Every process a benchmark starts; ``stop_all`` ends them (the process groups it made)."""

    def __init__(self, workdir: Path, nice: int = 0) -> None:
        self.workdir = workdir
        self.nice = nice  # e.g. -10 on a machine shared with other work (root for < 0)
        self.procs: list[Proc] = []

    def prefix(self, core: str) -> list[str]:
        """``[nice -n N] taskset -c CORE``: how every benchmark process is started."""
        pinned = ["taskset", "-c", core]
        return ["nice", "-n", str(self.nice), *pinned] if self.nice else pinned

    def start(
        self,
        name: str,
        argv: list[str],
        core: str,
        *,
        pipe: bool = False,
        cwd: Path = REPO,
        port: int = 0,
    ) -> Proc:
        env = {**os.environ, "COLUMNS": "300", "PYTHONDONTWRITEBYTECODE": "1"}
        log_path = self.workdir / f"{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                [*self.prefix(core), *argv],
                cwd=cwd,
                stdin=subprocess.PIPE if pipe else subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipe else log,
                stderr=log,
                start_new_session=True,
                env=env,
            )
        proc = Proc(name, popen, log_path, port)
        self.procs.append(proc)
        if self.nice:
            boost(popen.pid, self.nice)
        return proc

    def stop(self, proc: Proc) -> None:
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.popen.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.popen.wait(5)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.procs:
            try:
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.popen.wait(5)


def wait_until(
    what: str, check: Callable[[], Any], timeout: float, proc: Proc | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise FleetError(f"{proc.name} exited: {proc.tail()}")
        with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
            result = check()
            if result:
                return result
        time.sleep(0.05)
    raise FleetError(f"timed out waiting for {what}" + (f": {proc.tail()}" if proc else ""))


def get_json(port: int, path: str) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


class Api:
    """The control plane's REST API over one keep-alive connection."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def reconnect(self) -> None:
        """A fresh connection, connected now (uvicorn drops idle keep-alives after 5 s)."""
        self.conn.close()
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        self.conn.connect()

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=headers)
        response = self.conn.getresponse()
        payload = response.read()
        if response.status >= 300:
            raise FleetError(f"{method} {path}: {response.status} {payload[:300]!r}")
        return json.loads(payload) if payload else None

    def close(self) -> None:
        self.conn.close()


@dataclass
class Control:
    proc: Proc
    port: int
    admin_token: str
    public_key: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self) -> Api:
        api = Api(self.port, self.admin_token)
        api.reconnect()
        return api


def start_control(fleet: Fleet, name: str, core: str) -> Control:
    """``edgeloop control`` on a fresh data directory; its printed admin token and key."""
    port = free_port()
    argv = [str(EDGELOOP), "control", "--data-dir", str(fleet.workdir / name)]
    proc = fleet.start(name, [*argv, "--port", str(port)], core, port=port)

    def printed() -> tuple[str, str] | None:
        text = proc.log_path.read_text(errors="replace").replace("\n", " ")
        token = re.search(r"admin token\s+(el_[A-Za-z0-9_-]+)", text)
        key = re.search(r"public key\s+([A-Za-z0-9+/=]{40,})", text)
        return (token.group(1), key.group(1)) if token and key else None

    token, key = wait_until(f"{name}'s admin token and public key", printed, 60, proc)
    return Control(proc, port, token, key)


def push_document(control: Control, document: dict[str, Any]) -> tuple[int, str]:
    """Push the flags document; make an edge token. Returns (snapshot version, edge token)."""
    api = control.api()
    try:
        raw = json.dumps(document).encode()
        version = api.call("PUT", "/v1/document?reason=bench", raw=raw)["version"]
        token = api.call("POST", "/v1/tokens", {"name": "bench-edges", "role": "edge"})["token"]
    finally:
        api.close()
    return version, token


def start_edge(
    fleet: Fleet, name: str, core: str, control: Control, edge_token: str, version: int
) -> Proc:
    """``edgeloop edge`` syncing from ``control``; returns once it serves ``version``."""
    port = free_port()
    argv = [
        str(EDGELOOP),
        "edge",
        "--control",
        control.url,
        "--token",
        edge_token,
        "--public-key",
        control.public_key,
        "--data-dir",
        str(fleet.workdir / name),
        "--port",
        str(port),
        "--edge-id",
        name,
    ]
    proc = fleet.start(name, argv, core, port=port)

    def ready() -> bool:
        status, body = get_json(port, "/readyz")
        return status == 200 and body.get("version", 0) >= version

    wait_until(f"{name} to serve version {version}", ready, 60, proc)
    return proc


def proc_status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise FleetError(f"/proc/{pid}/status has no {field}")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_times() -> dict[str, tuple[int, int]]:
    """Per core: (busy, total) jiffies from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3].isdigit():
            name, *values = line.split()
            v = [int(x) for x in values[:8]]
            idle = v[3] + v[4]
            out[name[3:]] = (sum(v) - idle, sum(v))
    return out


def busy_between(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> dict:
    return {
        core: (after[core][0] - before[core][0]) / max(1, after[core][1] - before[core][1])
        for core in after
    }


def wait_quiet(max_wait_s: float, threshold: float = 0.15, log: Any = None) -> dict[str, Any]:
    """Wait (up to ``max_wait_s``) for a second in which every core is under ``threshold`` busy.

    Benchmarks on a shared machine: what else was running is recorded, not hidden."""
    started = time.monotonic()
    samples = []
    while True:
        before = cpu_times()
        time.sleep(1.0)
        busy = busy_between(before, cpu_times())
        samples.append(busy)
        if max(busy.values()) < threshold:
            break
        if time.monotonic() - started >= max_wait_s:
            break
        if log is not None and len(samples) == 1:
            log.print(
                "waiting for a quiet machine (cores busy: "
                + ", ".join(f"{k}: {v:.0%}" for k, v in sorted(busy.items()))
                + f"), up to {max_wait_s:.0f} s …",
                highlight=False,
            )
    return {
        "waited_s": round(time.monotonic() - started, 1),
        "busy_at_start": {k: round(v, 3) for k, v in samples[-1].items()},
        "quiet": max(samples[-1].values()) < threshold,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }
