"""Propagation benchmark: a toggle on the control plane → every edge → every attached client.

    .venv/bin/python bench/propagation.py            # K = 4 edges, N = 1 000 clients (~1 min)
    .venv/bin/python bench/propagation.py --quick    # fewer toggles: a smoke test
    .venv/bin/python bench/propagation.py --from-json bench/results/propagation.json

Real processes, all on 127.0.0.1: one control plane (``edgeloop control``; its admin token and
public key read from what it prints), the flags document (bench/servers/flagsets.py, 5 flags)
pushed through ``PUT /v1/document``, an edge token made with ``POST /v1/tokens``, and K
``edgeloop edge`` processes syncing over server-sent events. The control plane and the edges
are pinned to core 0; the attached clients (bench/servers/ws_clients.py, two processes, each
holding half of every edge's N/K WebSocket connections, attached via ``/v1/attach``) and this
process are pinned to core 1.

Each toggle alternates ``POST /v1/flags/offers-enabled/kill`` and ``…/enable`` (the kill switch
every client is decided on, so every client gets a push). The clock starts just before the API
call is sent (CLOCK_MONOTONIC, shared by every process); a client's time is when the bytes of
the pushed message with the new snapshot version reached its process. Per toggle we keep: the
API call's own response time, per edge the first client to hear of it (≈ when that edge had
applied the snapshot: it pushes right after applying), and all N clients. Distributions are over
all toggles. Acceptance: p99 over all clients ≤ 20 ms.

Results: bench/results/propagation.json and propagation.md. Exit 0 whatever the check says;
1 if a process failed to start or clients went missing. Every process started here is killed
at the end, on failure too.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.insert(0, str(BENCH / "servers"))

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from flagsets import ONOFF_FLAG, edgeloop_document  # noqa: E402
from fleet import (  # noqa: E402
    Fleet,
    FleetError,
    Proc,
    boost,
    proc_cpu_s,
    proc_status_kb,
    push_document,
    start_control,
    start_edge,
    wait_quiet,
)
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

REPO = BENCH.parent
SERVERS = BENCH / "servers"
RESULTS_JSON = BENCH / "results" / "propagation.json"
RESULTS_MD = BENCH / "results" / "propagation.md"
PYTHON = REPO / ".venv" / "bin" / "python"
SERVER_CORE = "0"
CLIENT_CORE = "1"

MAX_P99_MS = 20.0
DEADLINE_S = 300.0  # the whole run, start to cleanup

console = Console(width=None if sys.stdout.isatty() else 130)
log = Console(stderr=True)


class BenchError(RuntimeError):
    pass


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


# processes ----------------------------------------------------------------------------------


def read_line(proc: Proc, timeout: float) -> str:
    stdout = proc.popen.stdout
    assert stdout is not None
    ready, _, _ = select.select([stdout], [], [], timeout)
    if not ready:
        raise BenchError(f"{proc.name}: no answer in {timeout:.0f} s: {proc.tail()}")
    line = stdout.readline().decode()
    if not line:
        raise BenchError(f"{proc.name} exited: {proc.tail()}")
    return line.strip()


def send_line(proc: Proc, line: str) -> None:
    stdin = proc.popen.stdin
    assert stdin is not None
    stdin.write((line + "\n").encode())
    stdin.flush()


# the run ------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    os.sched_setaffinity(0, {int(CLIENT_CORE)})
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
        boost(os.getpid(), args.nice)  # this session's group: keep it for the run only
    quiet = wait_quiet(args.wait_quiet, log=log)
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quiet": quiet,
        "warmup_toggles": args.warmup,
        "edges": args.edges,
        "clients": args.clients,
        "toggles": args.toggles,
        "flags": args.flags,
        "client_processes": args.client_procs,
        "nice": args.nice,
    }
    if args.clients % (args.edges * args.client_procs):
        raise BenchError("--clients must split evenly over edges × client processes")
    with tempfile.TemporaryDirectory(prefix="bench-propagation-") as tmp:
        fleet = Fleet(Path(tmp), args.nice)
        try:
            control = start_control(fleet, "control", SERVER_CORE)
            version, edge_token = push_document(control, edgeloop_document(args.flags))
            log.print(f"control plane on {control.port}, document version {version}")
            edges = [
                start_edge(fleet, f"edge-{i}", SERVER_CORE, control, edge_token, version)
                for i in range(args.edges)
            ]
            log.print(f"{args.edges} edges serving version {version}")
            api = control.api()

            urls = [f"ws://127.0.0.1:{edge.port}/v1/attach" for edge in edges]
            per = args.clients // (args.edges * args.client_procs)
            clients = []
            for j in range(args.client_procs):
                argv = [str(PYTHON), str(SERVERS / "ws_clients.py"), "--per-edge", str(per)]
                argv += ["--first-id", str(j * per * args.edges)]
                for url in urls:
                    argv += ["--edge", url]
                clients.append(fleet.start(f"clients-{j}", argv, CLIENT_CORE, pipe=True))
            attached = 0
            client_cpu = []
            for proc in clients:
                words = read_line(proc, 60).split()
                if words[0] != "READY":
                    raise BenchError(f"{proc.name}: {words}")
                attached += int(words[1])
                client_cpu.append(float(words[3]))
            if attached != args.clients:
                raise BenchError(f"only {attached} of {args.clients} clients attached")
            log.print(f"{attached} clients attached ({args.client_procs} processes)")

            rng = random.Random(7)
            toggles: list[dict[str, Any]] = []
            server_pids = [control.proc.pid] + [edge.pid for edge in edges]
            for i in range(args.warmup + args.toggles):
                if time.monotonic() - started > DEADLINE_S - 30:
                    log.print("[yellow]deadline near: stopping the toggles early[/yellow]")
                    break
                time.sleep(args.pause + rng.uniform(0, args.pause))
                action = "kill" if i % 2 == 0 else "enable"
                api.reconnect()  # outside the timed window
                cpu0 = [proc_cpu_s(pid) for pid in server_pids]
                t_send = time.monotonic_ns()
                answer = api.call(
                    "POST", f"/v1/flags/{ONOFF_FLAG}/{action}", {"reason": "bench toggle"}
                )
                t_answer = time.monotonic_ns()
                v = answer["version"]
                received = 0
                for proc in clients:
                    send_line(proc, f"WAIT {v} 5")
                cpu_used = 0.0
                for j, proc in enumerate(clients):
                    words = read_line(proc, 10).split()
                    received += int(words[2])
                    cpu = float(words[3])
                    cpu_used += cpu - client_cpu[j]
                    client_cpu[j] = cpu
                cpu1 = [proc_cpu_s(pid) for pid in server_pids]
                toggles.append(
                    {
                        "warmup": i < args.warmup,
                        "action": action,
                        "version": v,
                        "t_send_ns": t_send,
                        "api_ms": (t_answer - t_send) / 1e6,
                        "received": received,
                        "server_cpu_s": {
                            "control": round(cpu1[0] - cpu0[0], 4),
                            "edges": [
                                round(b - a, 4) for a, b in zip(cpu0[1:], cpu1[1:], strict=True)
                            ],
                        },
                        "client_cpu_s": round(cpu_used, 4),
                    }
                )
                if received != args.clients:
                    log.print(f"[yellow]toggle {i}: {received}/{args.clients} clients[/yellow]")
            rss = {edge.name: round(proc_status_kb(edge.pid, "VmRSS") / 1024, 1) for edge in edges}
            dumps = []
            for proc in clients:
                send_line(proc, "DUMP")
                dumps.append(json.loads(read_line(proc, 30)))
        except FleetError as exc:
            raise BenchError(str(exc)) from None
        finally:
            fleet.stop_all()
    report.update(analyse(toggles, dumps, args.edges))
    report["edge_rss_mb"] = rss
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    report["machine"] = {
        "cpu": next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            "?",
        ),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }
    report["check"] = {
        "check": "p99 toggle → client (all clients, all toggles)",
        "value": report["clients_ms"]["p99"],
        "limit": MAX_P99_MS,
        "ok": report["clients_ms"]["p99"] <= MAX_P99_MS and report["missing"] == 0,
    }
    return report


def analyse(toggles: list[dict[str, Any]], dumps: list[dict[str, Any]], k: int) -> dict[str, Any]:
    clients = [c for d in dumps for c in d["clients"]]
    all_ms: list[float] = []
    first_ms: list[float] = []
    last_ms: list[float] = []
    edge_first_ms: list[float] = []
    missing = 0
    per_toggle = []
    for t in toggles:
        if t["warmup"]:
            continue
        v = str(t["version"])
        lat = []
        by_edge: dict[int, list[float]] = {}
        for c in clients:
            at = c["arrivals"].get(v)
            if at is None:
                missing += 1
                continue
            ms = (at - t["t_send_ns"]) / 1e6
            lat.append(ms)
            by_edge.setdefault(c["edge"], []).append(ms)
        all_ms += lat
        firsts = [min(v_) for v_ in by_edge.values()]
        edge_first_ms += firsts
        if lat:
            first_ms.append(min(lat))
            last_ms.append(max(lat))
        per_toggle.append(
            {
                **{key: t[key] for key in ("action", "version", "api_ms", "received")},
                "server_cpu_s": t["server_cpu_s"],
                "client_cpu_s": t["client_cpu_s"],
                "edge_first_ms": [round(x, 3) for x in firsts],
                "clients_ms": {
                    key: round(val, 3) for key, val in summary(lat).items() if key != "n"
                },
            }
        )
    client_cpu = sum(d["cpu_s"] for d in dumps)
    measured = [t for t in toggles if not t["warmup"]]
    messages = max(1, sum(t["received"] for t in measured))
    # CPU per toggle, from /proc (10 ms ticks: meaningful as a mean over the toggles)
    edges_cpu = [sum(t["server_cpu_s"]["edges"]) for t in measured]
    cost = {
        "control_cpu_ms_per_toggle": round(
            1e3 * statistics.fmean(t["server_cpu_s"]["control"] for t in measured), 2
        ),
        "edges_cpu_ms_per_toggle": round(1e3 * statistics.fmean(edges_cpu), 2),
        "edge_cpu_us_per_client_push": round(1e6 * sum(edges_cpu) / messages, 1),
        "client_cpu_us_per_message": round(
            1e6 * sum(t["client_cpu_s"] for t in measured) / messages, 1
        ),
    }
    return {
        "cpu": cost,
        "api_ms": summary([t["api_ms"] for t in toggles if not t["warmup"]]),
        "edge_first_push_ms": summary(edge_first_ms),
        "clients_ms": summary(all_ms),
        "last_client_per_toggle_ms": summary(last_ms),
        "missing": missing,
        "client_cpu_s_total": round(client_cpu, 3),
        "per_toggle": per_toggle,
    }


# report -------------------------------------------------------------------------------------

ROWS = (
    ("API call answered (kill / enable)", "api_ms"),
    ("each edge: first client pushed", "edge_first_push_ms"),
    ("each client: push received", "clients_ms"),
    ("per toggle: last client", "last_client_per_toggle_ms"),
)


def print_report(report: dict[str, Any]) -> None:
    table = Table(
        title=f"Toggle → {report['edges']} edges → {report['clients']} attached clients "
        f"({report['toggles']} toggles), ms after the API call was sent"
    )
    for i, h in enumerate(("", "n", "p50", "p90", "p99", "max")):
        table.add_column(h, justify="left" if i == 0 else "right")
    for label, key in ROWS:
        s = report[key]
        table.add_row(label, f"{s['n']:,}", *(f"{s[q]:.2f}" for q in ("p50", "p90", "p99", "max")))
    console.print(table)
    c = report["check"]
    mark = "[green]PASS[/green]" if c["ok"] else "[red]FAIL[/red]"
    console.print(
        f"{mark}  {c['check']}: {c['value']:.2f} ms (want <= {c['limit']:g} ms); "
        f"missing deliveries: {report['missing']}",
        highlight=False,
    )
    console.print(f"edge RSS with clients attached (MB): {report['edge_rss_mb']}", highlight=False)
    console.print(f"CPU: {report['cpu']}", highlight=False)


def markdown(report: dict[str, Any], command: str) -> str:
    m, cpu = report["machine"], report["cpu"]
    lines = [
        "### Propagation: a toggle reaching every edge and every attached client",
        "",
        "```",
        command,
        "```",
        "",
        f"{m['cpu']}, {m['cores']} cores, Python {m['python']}; {report['date']}. One "
        f"`edgeloop control` and {report['edges']} `edgeloop edge` processes (SSE sync) on "
        f"core 0; {report['clients']} WebSocket clients attached via `/v1/attach` "
        f"({report['clients'] // report['edges']} per edge, {report['client_processes']} "
        "processes) and the toggling script on core 1. "
        f"{report['toggles']} toggles (kill / enable of `{ONOFF_FLAG}`, every client's "
        "decision changes). Times in ms from just before the API call is sent to the arrival "
        "of the pushed message's bytes at the client process (CLOCK_MONOTONIC).",
        "",
        "| | n | p50 | p90 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, key in ROWS:
        s = report[key]
        lines.append(
            f"| {label} | {s['n']:,} | "
            + " | ".join(f"{s[q]:.2f}" for q in ("p50", "p90", "p99", "max"))
            + " |"
        )
    c = report["check"]
    lines += [
        "",
        f"Check: p99 toggle → client ≤ {c['limit']:g} ms: **{c['value']:.2f} ms, "
        f"{'pass' if c['ok'] else 'miss'}** (missing deliveries: {report['missing']}).",
        "",
        f"CPU per toggle (mean, from /proc): control plane {cpu['control_cpu_ms_per_toggle']} "
        f"ms, all edges together {cpu['edges_cpu_ms_per_toggle']} ms "
        f"({cpu['edge_cpu_us_per_client_push']} µs per client pushed, everything included); "
        f"the clients {cpu['client_cpu_us_per_message']} µs per message received (taken before "
        "parsing, and less than the edges spend per message: the clients keep up).",
    ]
    quiet = report.get("quiet", {})
    if quiet and not quiet.get("quiet", True):
        lines += [
            "",
            f"The machine was not quiet (load average {' '.join(quiet['loadavg'])} at the "
            "start, other processes on both cores)"
            + (f"; run with `--nice {report['nice']}`" if report.get("nice") else "")
            + ": the times include waiting for the CPU.",
        ]
    return "\n".join(lines) + "\n"


def _interrupt(signum: int, frame: Any) -> None:
    raise BenchError(f"interrupted by signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edges", type=int, default=4)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--toggles", type=int, default=30)
    parser.add_argument("--flags", type=int, default=5)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--pause", type=float, default=0.4, help="seconds between toggles (+0–1×)")
    parser.add_argument("--warmup", type=int, default=2, help="toggles done first, not counted")
    parser.add_argument("--wait-quiet", type=float, default=20, help="max s to wait for idle")
    parser.add_argument(
        "--nice", type=int, default=0, help="nice level for every process (root for < 0)"
    )
    parser.add_argument("--quick", action="store_true", help="6 toggles")
    parser.add_argument("--from-json", type=Path, help="re-print a saved report")
    parser.add_argument("--markdown", action="store_true", help="with --from-json: as markdown")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    if args.from_json:
        report = json.loads(args.from_json.read_text())
        if args.markdown:
            command = report.get("command", ".venv/bin/python bench/propagation.py")
            sys.stdout.write(markdown(report, command))
        else:
            print_report(report)
        return 0
    if args.quick:
        args.toggles, args.wait_quiet = 6, 0
    # The whole run is bounded; a signal or the deadline still runs the cleanup (finally).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGALRM, _interrupt)
    signal.alarm(int(DEADLINE_S))
    try:
        report = run(args)
    except BenchError as exc:
        log.print(f"[red]failed:[/red] {exc}", highlight=False)
        return 1
    print_report(report)
    if not args.no_save:
        command = (
            ".venv/bin/python bench/propagation.py"
            + (" --quick" if args.quick else "")
            + (f" --nice {args.nice}" if args.nice else "")
        )
        report["command"] = command
        RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_JSON.write_text(json.dumps(report, indent=1) + "\n")
        RESULTS_MD.write_text(markdown(report, command))
        log.print(f"wrote {RESULTS_JSON.relative_to(REPO)} and {RESULTS_MD.relative_to(REPO)}")
    return 0 if report["missing"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
