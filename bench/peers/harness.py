"""The harness every SDK runner shares: workload, setup verification, timing, JSON out.

A runner only says how its SDK evaluates the two logical flags (see ``flags``): it builds a
``Peer`` and calls ``run_main``. Everything measured is measured here, the same way for all:

- ids are distinct 20-character strings, pre-generated; call i uses id i, once;
- countries are drawn 3/4 from ``MARKETS``, 1/4 from ``OTHER_COUNTRIES``;
- each timed loop is the runner's own ``for`` loop building the SDK's context per call, timed
  as a whole with ``perf_counter_ns`` (garbage collection paused, as ``timeit`` does);
- N is sized so that one repeat takes about ``--target-ms``; repeats alternate between the
  experiment and the on/off flag; the median of the repeats is reported; CPU time is recorded
  too, so a repeat that waited for a CPU (a busy machine) shows as a CPU share below 1;
- before anything is timed, ``verify`` checks the SDK really serves the split (roughly
  34/33/33 in each market, ``control`` elsewhere, on/off true) and that the timed loop computes
  what a single call computes. A wrong setup raises ``SetupError``: no number is reported.

The result is one JSON object on stdout (the SDKs' own output goes to stderr).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gc
import json
import math
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .flags import CONTROL, MARKETS, OTHER_COUNTRIES, SPLIT, SPLIT_TOTAL

ID_LENGTH = 20
IN_MARKET_SHARE = 0.75
DEFAULT_SEED = 20261130
DEFAULT_REPEATS = 5
DEFAULT_TARGET_MS = 500.0  # one repeat; N is sized to last about this long …
DEFAULT_MAX_CALLS = 2_000_000  # … up to this many calls (2 M ids ≈ 150 MB)

# Verification: 4 000 users per market (shares must be within 5 standard errors: ±3.7 points
# per market, ±2.2 points over the three), 3 000 outside the markets, 2 000 for on/off.
VERIFY_IN_MARKET = 12_000
VERIFY_OTHER = 3_000
VERIFY_ONOFF = 2_000
SHARE_SIGMAS = 5.0

PILOT_CALLS = 2_000  # calibration sample, per metric
MIN_CALLS = 2_000
WARMUP_CALLS = 20_000

# Audit events that mean "this process tried to reach the network".
NETWORK_EVENTS = frozenset(
    {
        "socket.connect",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "socket.sendto",
        "socket.sendmsg",
    }
)

Loop = Callable[[list[str], list[str]], Any]


class SetupError(RuntimeError):
    """The SDK is not set up as the benchmark requires: its numbers would mean nothing."""


def _nothing() -> None:
    return None


@dataclass
class Peer:
    """How one SDK evaluates the two logical flags.

    ``experiment``/``onoff`` evaluate once (used to verify the setup). The ``*_loop`` functions
    are the timed loops: for each (id, country) they build the SDK's context and evaluate, and
    return the last result (variant name / flag value), which verification compares against a
    single call. Results are typed loosely on purpose: verification is what checks them.
    """

    name: str
    label: str
    package: str
    setup: str
    experiment: Callable[[str, str], str | None]
    onoff: Callable[[str, str], object]
    experiment_loop: Callable[[list[str], list[str]], str | None]
    onoff_loop: Callable[[list[str], list[str]], object]
    close: Callable[[], None] = _nothing
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Workload:
    ids: list[str]
    countries: list[str]

    @classmethod
    def generate(cls, n: int, seed: int) -> Workload:
        return cls(make_ids(n, seed), make_countries(n, seed))

    def head(self, n: int) -> Workload:
        return Workload(self.ids[:n], self.countries[:n])


def make_ids(n: int, seed: int) -> list[str]:
    """``n`` distinct, random-looking 20-character ids (15 random bytes, URL-safe base64)."""
    raw = random.Random(seed).randbytes(15 * n)
    text = base64.urlsafe_b64encode(raw).decode("ascii")
    ids = [text[i : i + ID_LENGTH] for i in range(0, ID_LENGTH * n, ID_LENGTH)]
    if len(set(ids)) != n:
        raise RuntimeError("generated ids are not distinct")  # 120 random bits: never, in practice
    return ids


def make_countries(n: int, seed: int) -> list[str]:
    """3/4 of the calls from a market where the experiment runs, 1/4 from elsewhere."""
    population = [*MARKETS, *OTHER_COUNTRIES]
    weights = [IN_MARKET_SHARE / len(MARKETS)] * len(MARKETS) + [
        (1 - IN_MARKET_SHARE) / len(OTHER_COUNTRIES)
    ] * len(OTHER_COUNTRIES)
    return random.Random(seed + 1).choices(population, weights, k=n)


def _shares(counts: Counter[str | None]) -> dict[str, float]:
    n = sum(counts.values())
    return {name: round(counts[name] / n, 4) for name, _ in SPLIT}


def _share_problems(where: str, counts: Counter[str | None]) -> list[str]:
    """A variant's share off its weight by more than SHARE_SIGMAS binomial standard errors."""
    n = sum(counts.values())
    problems = []
    for name, weight in SPLIT:
        expected = weight / SPLIT_TOTAL
        tolerance = SHARE_SIGMAS * math.sqrt(expected * (1 - expected) / n)
        share = counts[name] / n
        if abs(share - expected) > tolerance:
            problems.append(
                f"experiment: variant {name} got {share:.1%} of {n} users in {where}, "
                f"expected {expected:.0%} ± {tolerance:.1%}"
            )
    return problems


def verify(peer: Peer, seed: int) -> dict[str, Any]:
    """Check the SDK serves the logical flags; raise SetupError listing every problem."""
    problems: list[str] = []
    ids = make_ids(VERIFY_IN_MARKET + VERIFY_OTHER, seed + 7919)
    inside, outside = ids[:VERIFY_IN_MARKET], ids[VERIFY_IN_MARKET:]

    in_counts: dict[str, Counter[str | None]] = {market: Counter() for market in MARKETS}
    for i, uid in enumerate(inside):
        market = MARKETS[i % len(MARKETS)]
        in_counts[market][peer.experiment(uid, market)] += 1
    variants = {name for name, _ in SPLIT}
    for market, counts in in_counts.items():
        stray = {k: v for k, v in counts.items() if k not in variants}
        if stray:
            problems.append(f"experiment: users in {market} got {stray}, expected only A/B/C")
    in_counts["all markets"] = sum(in_counts.values(), Counter())
    shares = {where: _shares(counts) for where, counts in in_counts.items()}
    for where, counts in in_counts.items():
        problems.extend(_share_problems(where, counts))

    out_counts: Counter[str | None] = Counter(
        peer.experiment(uid, OTHER_COUNTRIES[i % len(OTHER_COUNTRIES)])
        for i, uid in enumerate(outside)
    )
    if set(out_counts) != {CONTROL}:
        problems.append(
            f"experiment: users outside {MARKETS} got {dict(out_counts)}, expected control"
        )

    mixed = Workload.generate(VERIFY_ONOFF, seed + 104729)
    onoff_counts = Counter(
        peer.onoff(u, c) for u, c in zip(mixed.ids, mixed.countries, strict=True)
    )
    if set(onoff_counts) != {True}:
        problems.append(f"on/off: got {dict(onoff_counts)}, expected always True")

    # The timed loops must compute exactly what one call computes (same flag, same context).
    for metric, loop, one in (
        ("experiment", peer.experiment_loop, peer.experiment),
        ("on/off", peer.onoff_loop, peer.onoff),
    ):
        for k in (1, 2, 3, 5, 8, 13, 21, 34, 55, 89):
            part = mixed.head(k)
            got, want = loop(part.ids, part.countries), one(part.ids[-1], part.countries[-1])
            if got != want:
                problems.append(
                    f"{metric}: timed loop ended on {got!r}, a single call gives {want!r}"
                )
                break
    if problems:
        raise SetupError("; ".join(problems))
    return {
        "in_market_users": VERIFY_IN_MARKET,
        "in_market_shares": shares,
        "other_users": VERIFY_OTHER,
        "other_outcomes": dict(out_counts),
        "onoff_outcomes": {str(k): v for k, v in onoff_counts.items()},
    }


def time_loop(loop: Loop, work: Workload) -> tuple[int, int]:
    """Wall-clock and CPU nanoseconds for one run of ``loop`` over the whole workload.

    The wall clock (``perf_counter_ns``) is the measurement; CPU time only tells whether the
    process had a CPU to itself meanwhile (on a busy machine the two part ways).
    """
    gc.collect()
    gc.disable()
    try:
        cpu, start = time.process_time_ns(), time.perf_counter_ns()
        loop(work.ids, work.countries)
        return time.perf_counter_ns() - start, time.process_time_ns() - cpu
    finally:
        gc.enable()


def calls_for(loop: Loop, target_ns: float, max_calls: int, seed: int) -> int:
    """How many calls make one repeat last about ``target_ns``."""
    pilot = Workload.generate(PILOT_CALLS, seed + 15485863)
    loop(pilot.ids, pilot.countries)  # warm-up
    per_call = time_loop(loop, pilot)[0] / PILOT_CALLS
    return max(MIN_CALLS, min(max_calls, int(target_ns / per_call)))


def measure(
    loops: dict[Any, Loop], repeats: int, target_ms: float, max_calls: int, seed: int
) -> dict[Any, dict[str, Any]]:
    """Median ns per evaluation of each loop; the repeats go round all loops in turn."""
    target_ns = target_ms * 1e6
    calls = {key: calls_for(loop, target_ns, max_calls, seed) for key, loop in loops.items()}
    full = Workload.generate(max(calls.values()), seed)
    work = {key: full.head(n) for key, n in calls.items()}
    for key, loop in loops.items():
        warm = work[key].head(WARMUP_CALLS)
        loop(warm.ids, warm.countries)
    wall: dict[Any, list[float]] = {key: [] for key in loops}
    cpu: dict[Any, list[float]] = {key: [] for key in loops}
    for _ in range(repeats):
        for key, loop in loops.items():
            wall_ns, cpu_ns = time_loop(loop, work[key])
            wall[key].append(wall_ns / calls[key])
            cpu[key].append(cpu_ns / calls[key])
    return {
        key: {
            "calls": calls[key],
            "ns_per_eval": [round(x, 1) for x in wall[key]],
            "median_ns": round(statistics.median(wall[key]), 1),
            "cpu_ns_per_eval": [round(x, 1) for x in cpu[key]],
            "cpu_share": [round(c / w, 3) for c, w in zip(cpu[key], wall[key], strict=True)],
        }
        for key in loops
    }


class NetworkGuard:
    """Records every attempt to reach the network (via Python's audit hooks)."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def install(self) -> None:
        attempts, watched = self.attempts, NETWORK_EVENTS

        def hook(event: str, args: tuple[Any, ...]) -> None:
            if event in watched:
                attempts.append(f"{event}{args[1:]!r}"[:200])

        sys.addaudithook(hook)

    def check(self) -> None:
        if self.attempts:
            raise SetupError(f"the SDK tried to reach the network: {self.attempts[:5]}")


def _socket_fds() -> int:
    """Open sockets of this process (catches C-level networking the audit hooks cannot see)."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return -1
    count = 0
    for name in names:
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{name}").startswith("socket:")
    return count


def common_arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument(
        "--target-ms", type=float, default=DEFAULT_TARGET_MS, help="duration of one repeat"
    )
    parser.add_argument("--max-calls", type=int, default=DEFAULT_MAX_CALLS)
    parser.add_argument("--metrics", default="experiment,onoff", help="comma-separated")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    return parser


def describe(peer: Peer) -> dict[str, Any]:
    return {
        "peer": peer.name,
        "label": peer.label,
        "package": peer.package,
        "version": metadata.version(peer.package),
        "setup": peer.setup,
        "info": peer.info,
    }


def run_main(
    build: Callable[[argparse.Namespace], list[Peer]],
    description: str,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """Build the peers, verify each, time them (repeats interleaved across all of them); print
    one JSON object ``{"ok", "runs": [one per peer], ...}``; exit 1 if anything failed.

    Usually one peer; several (e.g. one snapshot size each) are measured in one process so
    that their repeats alternate and a slow spell of the machine hits all of them alike.
    """
    parser = common_arguments(description)
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args()
    guard = NetworkGuard()
    guard.install()  # before the SDK is even imported (runners import it inside ``build``)
    result: dict[str, Any] = {"ok": False, "python": platform.python_version()}
    try:
        with contextlib.redirect_stdout(sys.stderr):
            peers = build(args)
            try:
                runs = [describe(peer) for peer in peers]
                result["runs"] = runs
                for peer, run in zip(peers, runs, strict=True):
                    run["verification"] = verify(peer, args.seed)
                guard.check()
                metrics = args.metrics.split(",")
                loops = {
                    (i, m): {"experiment": peer.experiment_loop, "onoff": peer.onoff_loop}[m]
                    for i, peer in enumerate(peers)
                    for m in metrics
                }
                measured = measure(loops, args.repeats, args.target_ms, args.max_calls, args.seed)
                for i, run in enumerate(runs):
                    run["metrics"] = {m: measured[(i, m)] for m in metrics}
                result["background_threads"] = sorted(
                    t.name for t in threading.enumerate() if t is not threading.main_thread()
                )
                result["open_sockets"] = _socket_fds()
                result["peak_rss_mb"] = round(
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
                )
            finally:
                for peer in peers:
                    peer.close()
        guard.check()
        result["ok"] = True
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
    result["network_attempts"] = guard.attempts
    print(json.dumps(result))
    sys.exit(0 if result["ok"] else 1)


def run_json_job(
    command: Sequence[str], cwd: Path, timeout_s: float, stderr_lines: int = 15
) -> dict[str, Any]:
    """Run a benchmark worker with a fixed hash seed (same dict and set layouts every run, so
    runs stay comparable) and return the JSON object it prints last, plus its wall time; a
    worker that fails or prints no JSON gives ``{"ok": False, ...}`` with its stderr's tail."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            list(command),
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout_s} s"}
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        result = {"ok": False, "error": f"no JSON result (exit status {proc.returncode})"}
    if not result.get("ok"):
        result["stderr_tail"] = proc.stderr.splitlines()[-stderr_lines:]
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result
