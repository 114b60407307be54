"""HTTP benchmark: the edge's decide and OFREP bulk endpoints under load, on loopback.

    .venv/bin/python bench/http_load.py              # the full run (~5 min on 2 cores)
    .venv/bin/python bench/http_load.py --quick      # short runs: a smoke test (~1 min)
    .venv/bin/python bench/http_load.py --nice -10   # on a machine busy with other work (root)
    .venv/bin/python bench/http_load.py --only decide-5,floor-raw --no-save
    .venv/bin/python bench/http_load.py --from-json bench/results/http.json [--markdown]

Setup (once): ``apt-get install wrk`` (Debian's wrk 4.1) and ``npm ci`` in bench/unleash-proxy.

Servers are pinned to core 0 (``taskset -c 0``); wrk runs pinned to core 1 with one thread and
bench/servers/load.lua, which sends a distinct targeting id in every request body.

Servers (bench/servers/):
- the edge: a real ``edgeloop edge`` process (bench/servers/fleet.py) synced over SSE from a
  real ``edgeloop control`` (own data directory, token and key read from what it prints, the
  flags document from flagsets.py pushed with ``PUT /v1/document``, an edge token made with
  ``POST /v1/tokens``), with 5 or 350 flags. The edge serves with the uvicorn setup of every
  edgeloop service (httptools, uvloop, one worker, access log off). Endpoints: ``POST
  /v1/decide`` and OFREP bulk ``POST /ofrep/v1/evaluate/flags``, both evaluating every flag of
  the snapshot. The control plane sits idle on core 0 meanwhile.
- ``floor_server.py``: the Python HTTP floor, a minimal Starlette app (same uvicorn settings)
  that reads the body and returns fixed JSON; and on ``/raw`` the same as a bare ASGI callable
  (uvicorn's own floor: the edge's decide path is raw ASGI too).
- ``../unleash-proxy/server.js``: the Unleash Proxy from npm, bootstrapped offline with the
  same flags (flagsets.py), evaluate-all endpoint ``POST /proxy/all``.

All servers start at once (an idle one costs nothing); each phase below goes round all the
targets in turn, so whatever else the machine does meanwhile falls on all of them alike.
1. verify one answer per target (status, all flags present): a broken setup reports nothing;
2. warm up, then sweep the connection count (closed loop, as fast as wrk goes);
   "max" is the best requests/s of the sweep; the knee is the fewest connections that reach
   95 % of it (more connections only queue), measured again (``Plan.repeats`` runs, each
   round going over all targets): the best of those is the reported max run, and its latency
   is "latency at max";
3. a paced run at 50 % of max (open-loop schedule in load.lua via wrk's ``delay()``; wrk 4.1
   has no fixed-rate mode): latency at half load, with the count of late send slots;
4. after all runs, each server's VmRSS from /proc/PID/status.

Every run also records how much of core 0 the server got and how busy the cores were with
anything else, so a run disturbed by other work on the machine shows as such; ``req/CPU-s``
(max req/s over the server's share of the core) is the throughput a whole core would give.
Before starting, the run waits up to 20 s for an idle machine (and records whether it got one).
``--nice N`` starts every server and wrk with nice N in a scheduling autogroup of nice N: with
Linux autogroups a process's own nice level only counts inside its session's group.

Results: bench/results/http.json and http.md (a markdown fragment). The acceptance checks are
printed as a report; the exit status is 0 whatever they say (1 only if a server or wrk failed).
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH / "servers"))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime as dt  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

from flagsets import (  # noqa: E402
    edgeloop_context,
    edgeloop_document,
    unleash_context,
    unleash_features,
)
from fleet import (  # noqa: E402
    Fleet,
    FleetError,
    Proc,
    boost,
    busy_between,
    cpu_times,
    free_port,
    proc_cpu_s,
    proc_status_kb,
    push_document,
    start_control,
    start_edge,
    wait_quiet,
    wait_until,
)
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

REPO = BENCH.parent
SERVERS = BENCH / "servers"
UNLEASH_DIR = BENCH / "unleash-proxy"
LOAD_LUA = SERVERS / "load.lua"
RESULTS_JSON = BENCH / "results" / "http.json"
RESULTS_MD = BENCH / "results" / "http.md"
PYTHON = REPO / ".venv" / "bin" / "python"
SERVER_CORE = "0"
LOAD_CORE = "1"

# Acceptance (from the issue).
MIN_FLOOR_SHARE = 0.75  # decide (5 flags) rps ≥ 75 % of the floor's
MIN_VS_UNLEASH_5 = 3.0  # decide (5 flags) rps ≥ 3 × Unleash Proxy's
MAX_P99_HALF_MS = 2.0  # decide (5 flags) p99 at 50 % of max
MIN_VS_UNLEASH_350 = 10.0  # evaluate-all (350 flags) rps ≥ 10 × Unleash Proxy's
MAX_P99_MAX_350_MS = 10.0  # evaluate-all (350 flags) p99 at max
MAX_RSS_MB = 100.0

KNEE_SHARE = 0.95
DEADLINE_S = 600


@dataclass(frozen=True)
class Plan:
    sweep: tuple[int, ...] = (4, 8, 16, 32, 64)
    sweep_s: int = 2  # wrk takes whole seconds
    repeats: int = 2
    max_s: int = 7
    half_s: int = 8
    warmup_s: int = 2
    paced_connections: int = 128
    wait_quiet_s: int = 20


QUICK = Plan(sweep=(16, 64), sweep_s=1, repeats=1, max_s=2, half_s=2, warmup_s=1, wait_quiet_s=0)

console = Console(width=None if sys.stdout.isatty() else 150)
log = Console(stderr=True)


class BenchError(RuntimeError):
    pass


# processes ----------------------------------------------------------------------------------


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        conn.close()


def start_servers(fleet: Fleet, names: set[str]) -> dict[str, Proc]:
    """The servers the chosen targets need, all pinned to core 0, each verified up."""
    servers: dict[str, Proc] = {}

    def healthy(proc: Proc, path: str) -> Proc:
        wait_until(f"{proc.name} {path}", lambda: request(proc.port, "GET", path)[0] == 200, 60,
                   proc)  # fmt: skip
        return proc

    if "floor" in names:
        port = free_port()
        argv = [str(PYTHON), str(SERVERS / "floor_server.py"), "--port", str(port)]
        servers["floor"] = healthy(fleet.start("floor", argv, SERVER_CORE, port=port), "/healthz")
    for n in (5, 350):
        if f"edge-{n}" in names:
            # A real control plane and a real `edgeloop edge` syncing from it (SSE): the edge
            # process is exactly what ships, so its RSS is an edge's. The control plane is idle
            # while the edge is under load.
            control = start_control(fleet, f"control-{n}", SERVER_CORE)
            version, token = push_document(control, edgeloop_document(n))
            servers[f"edge-{n}"] = start_edge(
                fleet, f"edge-{n}", SERVER_CORE, control, token, version
            )
        if f"unleash-{n}" in names:
            features = fleet.workdir / f"unleash-{n}.json"
            features.write_text(json.dumps(unleash_features(n)))
            port = free_port()
            proc = fleet.start(
                f"unleash-{n}",
                ["node", "server.js", str(features), str(port)],
                SERVER_CORE,
                cwd=UNLEASH_DIR,
                port=port,
            )
            servers[f"unleash-{n}"] = healthy(proc, "/proxy/health")
    return servers


# targets ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    key: str
    label: str
    product: str  # edgeloop | floor | unleash
    server: str  # which server (key in the servers dict)
    path: str
    kind: str  # load.lua's KIND
    flags: int
    verify: Callable[[bytes, dict[str, str]], None]


def verify_decide(n: int) -> Callable[[bytes, dict[str, str]], None]:
    def check(body: bytes, headers: dict[str, str]) -> None:
        decisions = json.loads(body)["decisions"]
        if len(decisions) != n:
            raise BenchError(f"decide answered {len(decisions)} flags, expected {n}")
        if decisions["micro-offer"]["variant"] not in ("A", "B", "C"):
            raise BenchError(f"micro-offer not split for a US user: {decisions['micro-offer']}")

    return check


def verify_ofrep(n: int) -> Callable[[bytes, dict[str, str]], None]:
    def check(body: bytes, headers: dict[str, str]) -> None:
        flags = json.loads(body)["flags"]
        if len(flags) != n or any("errorCode" in f for f in flags):
            raise BenchError(f"OFREP bulk answered {len(flags)} flags (expected {n}) or errors")

    return check


def verify_unleash(n: int) -> Callable[[bytes, dict[str, str]], None]:
    def check(body: bytes, headers: dict[str, str]) -> None:
        toggles = json.loads(body)["toggles"]
        if len(toggles) != n:
            raise BenchError(f"Unleash /proxy/all answered {len(toggles)} toggles, expected {n}")
        offer = next(t for t in toggles if t["name"] == "micro-offer")
        if offer["variant"]["name"] not in ("A", "B", "C"):
            raise BenchError(f"Unleash micro-offer not split for a US user: {offer}")

    return check


def verify_floor(body: bytes, headers: dict[str, str]) -> None:
    json.loads(body)


def verify_body(target: Target) -> bytes:
    if target.product == "unleash":
        return json.dumps({"context": unleash_context("verify-user", 0)}).encode()
    return json.dumps({"context": edgeloop_context("verify-user", 0)}).encode()


TARGETS = (
    Target("floor", "floor: Starlette", "floor", "floor", "/", "floor", 0,
           verify_floor),
    Target("floor-raw", "floor: bare ASGI", "floor", "floor", "/raw",
           "floor", 0, verify_floor),
    Target("decide-5", "edge /v1/decide", "edgeloop", "edge-5", "/v1/decide", "edge", 5,
           verify_decide(5)),
    Target("ofrep-5", "edge OFREP bulk", "edgeloop", "edge-5", "/ofrep/v1/evaluate/flags",
           "ofrep", 5, verify_ofrep(5)),
    Target("unleash-5", "Unleash /proxy/all", "unleash", "unleash-5", "/proxy/all",
           "unleash", 5, verify_unleash(5)),
    Target("decide-350", "edge /v1/decide", "edgeloop", "edge-350", "/v1/decide", "edge",
           350, verify_decide(350)),
    Target("ofrep-350", "edge OFREP bulk", "edgeloop", "edge-350", "/ofrep/v1/evaluate/flags",
           "ofrep", 350, verify_ofrep(350)),
    Target("unleash-350", "Unleash /proxy/all", "unleash", "unleash-350",
           "/proxy/all", "unleash", 350, verify_unleash(350)),
)  # fmt: skip


# wrk ----------------------------------------------------------------------------------------


@dataclass
class Run:
    connections: int
    duration_s: float
    rate: float  # requested rate, 0 = unpaced
    rps: float
    requests: int
    errors: dict[str, int]
    latency_ms: dict[str, float]
    late_slots: int
    max_late_ms: float
    server_cpu: float  # share of one core the server used
    core0_other: float  # share of core 0 busy with anything but the server
    core1_busy: float  # share of core 1 busy (wrk and anything else)

    def as_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def wrk(
    load: list[str],
    nice: int,
    server: Proc,
    target: Target,
    connections: int,
    duration_s: int,
    rate: float = 0.0,
) -> Run:
    """One wrk run; ``load`` is the command prefix pinning it to core 1 ([nice] taskset)."""
    url = f"http://127.0.0.1:{server.port}{target.path}"
    argv = [
        *load, "wrk", "-t1", f"-c{connections}", f"-d{duration_s}s",
        "--timeout", "5s", "-s", str(LOAD_LUA), url, "--", target.kind, f"{rate:.1f}", "1",
    ]  # fmt: skip
    cpu_before, cores_before, t0 = proc_cpu_s(server.pid), cpu_times(), time.monotonic()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    if nice:
        boost(proc.pid, nice)
    try:
        stdout, stderr = proc.communicate(timeout=duration_s + 20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise BenchError(f"wrk on {target.key} did not finish") from None
    wall = time.monotonic() - t0
    cpu_after, cores_after = proc_cpu_s(server.pid), cpu_times()
    line = next((ln for ln in stdout.splitlines() if ln.startswith("BENCH-JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise BenchError(f"wrk failed on {target.key}: {stdout[-800:]} {stderr[-800:]}")
    data = json.loads(line.removeprefix("BENCH-JSON "))
    server_cpu = (cpu_after - cpu_before) / wall
    busy = busy_between(cores_before, cores_after)
    lat = data["latency_us"]
    return Run(
        connections=connections,
        duration_s=duration_s,
        rate=rate,
        rps=data["requests"] / (data["duration_us"] / 1e6),
        requests=data["requests"],
        errors=data["errors"],
        latency_ms={k: lat[k] / 1000 for k in ("mean", "p50", "p90", "p99", "p999", "max")},
        late_slots=data["late_slots"],
        max_late_ms=data["max_late_ms"],
        server_cpu=server_cpu,
        core0_other=max(0.0, busy[SERVER_CORE] - server_cpu),
        core1_busy=busy[LOAD_CORE],
    )


# measuring ----------------------------------------------------------------------------------


@dataclass
class Result:
    target: Target
    sweep: list[Run] = field(default_factory=list)
    knee: int = 0
    max_runs: list[Run] = field(default_factory=list)
    half: Run | None = None

    @property
    def best(self) -> Run:
        return max(self.max_runs, key=lambda r: r.rps)

    @property
    def max_rps(self) -> float:
        return max(r.rps for r in [*self.sweep, *self.max_runs])

    def as_json(self) -> dict[str, Any]:
        t = self.target
        return {
            "label": t.label,
            "product": t.product,
            "server": t.server,
            "path": t.path,
            "flags": t.flags,
            "max_rps": round(self.max_rps, 1),
            # What one whole core would serve: rps over the share of core 0 the server got
            # (CPU-bound at max), for runs on a machine with other work on it.
            "rps_per_cpu_s": round(max(r.rps / max(r.server_cpu, 0.01) for r in self.max_runs), 1),
            "knee_connections": self.knee,
            "at_max": self.best.as_json(),
            "at_half": self.half.as_json() if self.half else None,
            "sweep": [r.as_json() for r in self.sweep],
            "max_runs": [r.as_json() for r in self.max_runs],
        }


def errors_of(run: Run) -> int:
    return sum(run.errors.values())


def verify(server: Proc, target: Target) -> None:
    status, body, headers = request(
        server.port,
        "POST",
        target.path,
        verify_body(target),
        {"Content-Type": "application/json", "Authorization": "bench-key"},
    )
    if status != 200:
        raise BenchError(f"{target.key}: verification request got {status}: {body[:300]!r}")
    target.verify(body, headers)


def checked(run: Run, target: Target) -> Run:
    if errors_of(run):
        raise BenchError(f"{target.key}: wrk saw errors {run.errors}")
    return run


def measure_all(
    servers: dict[str, Proc], targets: list[Target], plan: Plan, load: list[str], nice: int
) -> list[Result]:
    """Sweep, then max runs, then half-load runs — each phase going round all the targets, so
    that whatever else the machine is doing meanwhile falls on every target alike."""
    results = [Result(t) for t in targets]
    for r in results:
        server, t = servers[r.target.server], r.target
        checked(wrk(load, nice, server, t, 32, plan.warmup_s), t)
        for c in plan.sweep:
            run = checked(wrk(load, nice, server, t, c, plan.sweep_s), t)
            r.sweep.append(run)
        best = max(run.rps for run in r.sweep)
        r.knee = min(run.connections for run in r.sweep if run.rps >= KNEE_SHARE * best)
        log.print(
            f"  {t.key:12} sweep "
            + "  ".join(f"c={run.connections}: {run.rps:,.0f}" for run in r.sweep)
            + f"  → knee c={r.knee}",
            highlight=False,
        )
    for i in range(plan.repeats):
        for r in results:
            server, t = servers[r.target.server], r.target
            run = checked(wrk(load, nice, server, t, r.knee, plan.max_s), t)
            r.max_runs.append(run)
            log.print(
                f"  {t.key:12} max #{i + 1} c={r.knee:<4} {run.rps:9,.0f} req/s  "
                f"p99 {run.latency_ms['p99']:7.2f} ms  server cpu {run.server_cpu:4.0%}  "
                f"other on its core {run.core0_other:4.0%}",
                highlight=False,
            )
    for r in results:
        server, t = servers[r.target.server], r.target
        rate = 0.5 * r.best.rps
        r.half = h = checked(
            wrk(load, nice, server, t, plan.paced_connections, plan.half_s, rate), t
        )
        log.print(
            f"  {t.key:12} half  {rate:9,.0f} → {h.rps:9,.0f} req/s  p99 "
            f"{h.latency_ms['p99']:7.2f} ms  late slots {h.late_slots} "
            f"(worst {h.max_late_ms:.1f} ms)",
            highlight=False,
        )
    return results


def versions() -> dict[str, str]:
    def out(argv: list[str], cwd: Path = REPO) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, cwd=cwd).stdout.strip()
        except OSError:
            return "?"

    unleash = "?"
    with contextlib.suppress(OSError, KeyError, ValueError):
        pkg = UNLEASH_DIR / "node_modules" / "@unleash" / "proxy" / "package.json"
        unleash = json.loads(pkg.read_text())["version"]
    from importlib import metadata

    return {
        "python": platform.python_version(),
        "uvicorn": metadata.version("uvicorn"),
        "starlette": metadata.version("starlette"),
        "wrk": " ".join((out(["wrk", "-v"]).splitlines() or ["?"])[0].split()[:2]),
        "node": out(["node", "--version"]),
        "unleash_proxy": unleash,
        "edgeloop_commit": out(["git", "rev-parse", "--short", "HEAD"]),
        "edgeloop_dirty": str(bool(out(["git", "status", "--porcelain", "src"]))),
    }


def machine() -> dict[str, Any]:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
    }


def run_all(plan: Plan, only: set[str] | None, nice: int) -> dict[str, Any]:
    for tool in ("wrk", "taskset", "node"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is not installed (see the docstring)")
    if not (UNLEASH_DIR / "node_modules" / "@unleash" / "proxy").exists():
        raise BenchError("run `npm ci` in bench/unleash-proxy first")
    started = time.monotonic()
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "plan": plan.__dict__ | {"knee_share": KNEE_SHARE, "nice": nice},
        "targets": {},
        "rss_mb": {},
    }
    targets = [t for t in TARGETS if only is None or t.key in only]
    report["machine"]["quiet"] = wait_quiet(plan.wait_quiet_s, log=log)
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        fleet = Fleet(Path(tmp), nice)
        try:
            # All servers up at once (an idle one costs nothing): the phases interleave targets.
            servers = start_servers(fleet, {t.server for t in targets})
            for t in targets:
                verify(servers[t.server], t)
            log.print(
                "servers up and verified: "
                + ", ".join(f"{k} (pid {v.pid})" for k, v in servers.items())
            )
            for result in measure_all(servers, targets, plan, fleet.prefix(LOAD_CORE), nice):
                report["targets"][result.target.key] = result.as_json()
            for name, server in servers.items():
                report["rss_mb"][name] = {
                    "rss": round(proc_status_kb(server.pid, "VmRSS") / 1024, 1),
                    "peak": round(proc_status_kb(server.pid, "VmHWM") / 1024, 1),
                }
        except FleetError as exc:
            raise BenchError(str(exc)) from None
        finally:
            fleet.stop_all()
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    report["checks"] = checks(report)
    return report


# report -------------------------------------------------------------------------------------


def checks(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The acceptance checks; each may carry a ``context`` note (same run, for comparison)."""
    t = report["targets"]
    out: list[dict[str, Any]] = []

    def add(
        name: str, value: float | None, op: str, limit: float, unit: str = "", context: str = ""
    ) -> None:
        ok = None if value is None else (value >= limit if op == ">=" else value <= limit)
        out.append(
            {"check": name, "value": None if value is None else round(value, 3), "op": op,
             "limit": limit, "unit": unit, "ok": ok, "context": context}
        )  # fmt: skip

    def ratio(a: str, b: str, field: str = "max_rps") -> float | None:
        if a not in t or b not in t:
            return None
        return t[a][field] / t[b][field]

    def per_cpu(a: str, b: str) -> str:
        r = ratio(a, b, "rps_per_cpu_s")
        return "" if r is None else f"per CPU-second of the server: {r:.2f}"

    def lat(key: str, where: str) -> float | None:
        return t[key][where]["latency_ms"]["p99"] if key in t and t[key][where] else None

    def floor_half() -> str:
        p99 = lat("floor-raw", "at_half")
        return "" if p99 is None else f"bare-ASGI floor at its own 50 %: {p99:.2f} ms"

    add("decide (5 flags) rps / floor rps", ratio("decide-5", "floor"), ">=", MIN_FLOOR_SHARE,
        context=per_cpu("decide-5", "floor"))  # fmt: skip
    add("decide (5 flags) rps / Unleash Proxy rps", ratio("decide-5", "unleash-5"), ">=",
        MIN_VS_UNLEASH_5, context=per_cpu("decide-5", "unleash-5"))  # fmt: skip
    add("decide (5 flags) p99 at 50 % of max", lat("decide-5", "at_half"), "<=",
        MAX_P99_HALF_MS, "ms", floor_half())  # fmt: skip
    for key, label in (("ofrep-350", "OFREP bulk"), ("decide-350", "decide")):
        add(f"{label} (350 flags, evaluate-all) rps / Unleash Proxy rps",
            ratio(key, "unleash-350"), ">=", MIN_VS_UNLEASH_350,
            context=per_cpu(key, "unleash-350"))  # fmt: skip
        add(f"{label} (350 flags, evaluate-all) p99 at max", lat(key, "at_max"), "<=",
            MAX_P99_MAX_350_MS, "ms")  # fmt: skip
    edge_rss = [v["rss"] for k, v in report["rss_mb"].items() if k.startswith("edge-")]
    add("edge RSS after the run (largest)", max(edge_rss) if edge_rss else None, "<=",
        MAX_RSS_MB, "MB")  # fmt: skip
    return out


def _op(check: dict[str, Any]) -> str:
    return {">=": "≥", "<=": "≤"}.get(check.get("op", ""), "")


def _ms(x: float) -> str:
    return f"{x:.2f}"


def rows(report: dict[str, Any]) -> list[list[str]]:
    t = report["targets"]
    floor = t.get("floor", {}).get("max_rps")
    out = []
    for key, r in t.items():
        unleash = t.get(f"unleash-{r['flags']}", {}).get("max_rps")
        m, h = r["at_max"], r["at_half"]
        rss = report["rss_mb"].get(r["server"], {}).get("rss")
        out.append(
            [
                r["label"],
                str(r["flags"] or "–"),
                f"{r['max_rps']:,.0f}",
                str(r["knee_connections"]),
                _ms(m["latency_ms"]["p50"]),
                _ms(m["latency_ms"]["p99"]),
                _ms(m["latency_ms"]["p999"]),
                f"{h['rps']:,.0f}" if h else "",
                _ms(h["latency_ms"]["p50"]) if h else "",
                _ms(h["latency_ms"]["p99"]) if h else "",
                _ms(h["latency_ms"]["p999"]) if h else "",
                f"{r['max_rps'] / floor:.0%}" if floor and key != "floor" else "",
                f"{r['max_rps'] / unleash:.1f}×" if unleash and r["product"] == "edgeloop" else "",
                f"{rss:.0f}" if rss is not None else "",
                f"{m['server_cpu']:.0%} / {m['core0_other']:.0%}",
                f"{r['rps_per_cpu_s']:,.0f}",
            ]
        )
    return out


HEADERS = [
    "target",
    "flags",
    "max req/s",
    "conns",
    "p50",
    "p99",
    "p99.9",
    "½ req/s",
    "½ p50",
    "½ p99",
    "½ p99.9",
    "÷ floor",
    "× Unleash",
    "RSS MB",
    "cpu srv/other",
    "req/CPU-s",
]


def print_report(report: dict[str, Any]) -> None:
    table = Table(title="HTTP on loopback: server on core 0, wrk on core 1")
    for i, h in enumerate(HEADERS):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in rows(report):
        table.add_row(*row)
    console.print(table)
    for c in report["checks"]:
        mark = {True: "[green]PASS[/green]", False: "[red]FAIL[/red]", None: "[yellow]n/a[/yellow]"}
        value = "—" if c["value"] is None else f"{c['value']:g} {c.get('unit', '')}".strip()
        note = f"; {c['context']}" if c.get("context") else ""
        console.print(
            f"{mark[c['ok']]}  {c['check']}: {value} (want {_op(c)} {c['limit']:g} "
            f"{c.get('unit', '')}".rstrip()
            + f"){note}",
            highlight=False,
        )
    console.print(
        f"{report['date']}  {report['machine']['cpu']}, {report['machine']['cores']} cores; "
        f"run took {report.get('elapsed_s', 0):.0f} s",
        highlight=False,
    )


def markdown(report: dict[str, Any], command: str) -> str:
    v, m = report["versions"], report["machine"]
    lines = [
        "### HTTP: decide and OFREP bulk under load",
        "",
        "```",
        command,
        "```",
        "",
        f"{m['cpu']}, {m['cores']} cores, Linux {m['kernel']}; Python {v['python']}, uvicorn "
        f"{v['uvicorn']} (httptools, uvloop, one worker, access log off), {v['wrk']}, Node "
        f"{v['node']} with @unleash/proxy {v['unleash_proxy']}; edgeloop {v['edgeloop_commit']}"
        f"{' (+ uncommitted changes)' if v['edgeloop_dirty'] == 'True' else ''}; "
        f"{report['date']}.",
        "",
        "Servers on core 0 (`taskset -c 0`; the edge is a real `edgeloop edge` synced from a "
        "real, idle `edgeloop control`), wrk (one thread, `bench/servers/load.lua`: a distinct "
        "targeting id per request) on core 1. Max = best req/s of a connection sweep "
        f"({', '.join(map(str, report['plan']['sweep']))}); latency at max is measured at the "
        f"knee (fewest connections reaching {KNEE_SHARE:.0%} of max: `conns`), best of the "
        "repeats there. ½ = a paced run at 50 % of max (open-loop schedule through wrk's "
        "`delay()`, 128 connections). Latencies in ms. `cpu srv/other` = share of core 0 the "
        "server used / share anything else used during the max run; `req/CPU-s` = max req/s "
        "over the server's share of the core (what a whole core would serve).",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(HEADERS) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows(report)]
    quiet = report["machine"].get("quiet", {})
    if quiet and not quiet.get("quiet", True):
        lines += [
            "",
            f"The machine was not quiet (load average {' '.join(quiet['loadavg'])} at the "
            "start; other processes shared both cores"
            + (
                f"; run with `--nice {report['plan']['nice']}`, which lifts the benchmark's "
                "processes' scheduling groups"
                if report["plan"].get("nice")
                else ""
            )
            + "): see `cpu srv/other`. Latencies include waiting for the CPU; `req/CPU-s` "
            "is the steadier throughput figure.",
        ]
    lines += [
        "",
        "| check | value | target | | same run, for comparison |",
        "|---|---:|---:|---|---|",
    ]
    for c in report["checks"]:
        value = "—" if c["value"] is None else f"{c['value']:g} {c.get('unit', '')}".strip()
        ok = {True: "pass", False: "**miss**", None: "n/a"}[c["ok"]]
        target = f"{_op(c)} {c['limit']:g} {c.get('unit', '')}".strip()
        lines.append(f"| {c['check']} | {value} | {target} | {ok} | {c.get('context', '')} |")
    return "\n".join(lines) + "\n"


def _interrupt(signum: int, frame: Any) -> None:
    raise BenchError(f"interrupted by signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--only", help="comma-separated target keys, e.g. decide-5,floor")
    parser.add_argument("--from-json", type=Path, help="re-print a saved report")
    parser.add_argument("--markdown", action="store_true", help="with --from-json: as markdown")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run servers and wrk at this nice level (e.g. -10 on a machine busy with other "
        "work; root only)",
    )
    args = parser.parse_args()

    if args.from_json:
        report = json.loads(args.from_json.read_text())
        report["checks"] = checks(report)
        if args.markdown:
            sys.stdout.write(
                markdown(report, report.get("command", ".venv/bin/python bench/http_load.py"))
            )
        else:
            print_report(report)
        return 0
    plan = QUICK if args.quick else Plan()
    only = set(args.only.split(",")) if args.only else None
    # Bounded: a signal or the deadline still runs the cleanup (every server is stopped).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGALRM, _interrupt)
    signal.alarm(DEADLINE_S)
    try:
        report = run_all(plan, only, args.nice)
    except BenchError as exc:
        log.print(f"[red]failed:[/red] {exc}", highlight=False)
        return 1
    print_report(report)
    command = (
        ".venv/bin/python bench/http_load.py"
        + (" --quick" if args.quick else "")
        + (f" --nice {args.nice}" if args.nice else "")
    )
    report["command"] = command
    if not args.no_save and only is None:
        RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_JSON.write_text(json.dumps(report, indent=1) + "\n")
        RESULTS_MD.write_text(markdown(report, command))
        log.print(f"wrote {RESULTS_JSON.relative_to(REPO)} and {RESULTS_MD.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
