"""Time and peak memory of ``compile_snapshot`` on a large flag set, in a fresh process.

Two steps, each its own process:

``--prepare FILE --flags N``  load the N-flag document (``load_flags``) and pickle the FlagSet.
``--measure FILE``            unpickle it, then compile once: wall time, and RSS before vs. the
                              peak (VmHWM, reset just before compiling where the kernel allows).

Why the hand-over: parsing and validating leaves hundreds of MB of freed-but-kept heap in the
loading process; compiling there would reuse it and show almost no extra RSS. Unpickling
builds the same FlagSet with next to no garbage, so the measured growth is the compiler's own.
"""

from __future__ import annotations

import argparse
import gc
import json
import pickle
import resource
import sys
import time
from pathlib import Path
from typing import Any

from .edgeloop_runner import document
from .flags import CONTROL, EXPERIMENT_FLAG, MARKETS, NOW

MB = 1024 * 1024


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> bool:
    """Make VmHWM restart from the current RSS (Linux ≥ 4.0); False if not permitted."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def prepare(path: Path, n_flags: int) -> dict[str, Any]:
    from edgeloop.model import load_flags

    text = json.dumps(document(n_flags))
    started = time.perf_counter()
    flagset = load_flags(text, "bench.json")
    loaded = time.perf_counter() - started
    path.write_bytes(pickle.dumps(flagset, protocol=pickle.HIGHEST_PROTOCOL))
    return {"flags": len(flagset.flags), "load_flags_s": round(loaded, 3)}


def measure(path: Path) -> dict[str, Any]:
    from edgeloop.evaluate import compile_snapshot, evaluate

    flagset = pickle.loads(path.read_bytes())
    gc.collect()
    hwm_reset = _reset_peak()
    before_kb = _status_kb("VmRSS")
    started = time.perf_counter()
    snap = compile_snapshot(flagset, version=1)
    elapsed = time.perf_counter() - started
    peak_kb = (
        _status_kb("VmHWM") if hwm_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    )
    after_kb = _status_kb("VmRSS")
    decision = evaluate(
        snap, EXPERIMENT_FLAG, {"targetingKey": "x" * 20, "country": MARKETS[0]}, NOW
    )
    if len(snap) != len(flagset.flags) or decision.variant in (None, CONTROL):
        raise RuntimeError(f"compiled snapshot is wrong: {len(snap)} flags, {decision}")
    return {
        "flags": len(snap),
        "compile_s": round(elapsed, 4),
        "rss_before_mb": round(before_kb * 1024 / MB, 1),
        "peak_rss_mb": round(peak_kb * 1024 / MB, 1),
        "extra_peak_rss_mb": round((peak_kb - before_kb) * 1024 / MB, 1),
        "retained_rss_mb": round((after_kb - before_kb) * 1024 / MB, 1),
        # Without the reset, the peak is the whole process's (ru_maxrss): an upper bound.
        "peak_is_compile_only": hwm_reset,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    step = parser.add_mutually_exclusive_group(required=True)
    step.add_argument("--prepare", type=Path, metavar="FILE")
    step.add_argument("--measure", type=Path, metavar="FILE")
    parser.add_argument("--flags", type=int, default=10_000)
    args = parser.parse_args()
    try:
        result = prepare(args.prepare, args.flags) if args.prepare else measure(args.measure)
        result["ok"] = True
    except Exception as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
