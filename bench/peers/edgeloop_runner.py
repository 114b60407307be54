"""edgeloop: the flags as a flags-as-code document, compiled to a snapshot, ``evaluate`` per call.

``--flags N`` pads the snapshot with N - 2 other flags (see ``padding_flag``) to show that the
cost of one evaluation does not depend on how many flags the snapshot holds; ``--flags
10,1000,10000`` builds one snapshot of each size and times them in turn, in one process.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from .flags import CONTROL, EXPERIMENT_FLAG, MARKETS, NOW, ONOFF_FLAG, OTHER_COUNTRIES, SPLIT
from .harness import Peer, run_main

PLATFORMS = ("ios", "android", "web")


def logical_flags() -> dict[str, Any]:
    return {
        ONOFF_FLAG: {
            "type": "boolean",
            "variants": {"on": True, "off": False},
            "default_variant": "on",
        },
        EXPERIMENT_FLAG: {
            "type": "string",
            "variants": {CONTROL: CONTROL, **{name: name for name, _ in SPLIT}},
            "default_variant": CONTROL,
            "rules": [
                {
                    "name": "core-markets",
                    "when": {"attr": "country", "in": list(MARKETS)},
                    "split": dict(SPLIT),
                }
            ],
        },
    }


def padding_flag(i: int) -> dict[str, Any]:
    """A realistic neighbour: four shapes in turn, each flag with its own constants."""
    shape = i % 4
    countries = [*MARKETS, *OTHER_COUNTRIES]
    if shape == 0:  # an experiment like micro-offer
        markets = countries[i % 5 : i % 5 + 3]
        return {
            "type": "string",
            "variants": {"control": "control", "A": "A", "B": "B", "C": "C"},
            "default_variant": "control",
            "rules": [
                {
                    "when": {"attr": "country", "in": markets},
                    "split": {"A": 30 + i % 10, "B": 35, "C": 35 - i % 10},
                }
            ],
        }
    if shape == 1:  # a kill switch
        return {
            "type": "boolean",
            "variants": {"on": True, "off": False},
            "default_variant": "on" if i % 3 else "off",
        }
    if shape == 2:  # a 50/50 rollout on one platform
        return {
            "type": "boolean",
            "variants": {"on": True, "off": False},
            "default_variant": "off",
            "rules": [
                {
                    "when": {"attr": "platform", "eq": PLATFORMS[i % 3]},
                    "split": {"on": 50, "off": 50},
                }
            ],
        }
    return {  # a targeted value
        "type": "integer",
        "variants": {"low": i % 7, "high": 100 + i % 11},
        "default_variant": "low",
        "rules": [
            {
                "when": {
                    "all": [
                        {"attr": "country", "eq": countries[i % len(countries)]},
                        {"attr": "dwell_s", "gte": 30 + i % 60},
                    ]
                },
                "variant": "high",
            }
        ],
    }


def document(n_flags: int) -> dict[str, Any]:
    """The two logical flags, padded with ``n_flags - 2`` others."""
    if n_flags < 2:
        raise ValueError("a snapshot needs at least the two logical flags")
    padding = {f"pad-{i:05d}": padding_flag(i) for i in range(n_flags - 2)}
    return {"flags": {**logical_flags(), **padding}}


def build_one(n_flags: int) -> Peer:
    from edgeloop.evaluate import compile_snapshot, evaluate
    from edgeloop.model import load_flags

    text = json.dumps(document(n_flags))
    started = time.perf_counter()
    flagset = load_flags(text, "bench.json")
    loaded = time.perf_counter()
    snap = compile_snapshot(flagset, version=1)
    compiled = time.perf_counter()
    if len(snap) != n_flags:
        raise RuntimeError(f"snapshot holds {len(snap)} flags, expected {n_flags}")

    def experiment(uid: str, country: str) -> str | None:
        return evaluate(
            snap, EXPERIMENT_FLAG, {"targetingKey": uid, "country": country}, NOW
        ).variant

    def onoff(uid: str, country: str) -> object:
        return evaluate(snap, ONOFF_FLAG, {"targetingKey": uid, "country": country}, NOW).value

    def experiment_loop(ids: list[str], countries: list[str]) -> str | None:
        variant = None
        for uid, country in zip(ids, countries, strict=True):
            ctx = {"targetingKey": uid, "country": country}
            variant = evaluate(snap, EXPERIMENT_FLAG, ctx, NOW).variant
        return variant

    def onoff_loop(ids: list[str], countries: list[str]) -> object:
        value = None
        for uid, country in zip(ids, countries, strict=True):
            ctx = {"targetingKey": uid, "country": country}
            value = evaluate(snap, ONOFF_FLAG, ctx, NOW).value
        return value

    return Peer(
        name="edgeloop",
        label="edgeloop",
        package="edgeloop",
        setup="load_flags(JSON document) → compile_snapshot → evaluate(snap, key, dict, now)",
        experiment=experiment,
        onoff=onoff,
        experiment_loop=experiment_loop,
        onoff_loop=onoff_loop,
        info={
            "flags": len(snap),
            "load_flags_s": round(loaded - started, 3),
            "compile_s": round(compiled - loaded, 3),
        },
    )


def build(args: argparse.Namespace) -> list[Peer]:
    return [build_one(int(n)) for n in args.flags.split(",")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--flags", default="2", help="flags in the snapshot (≥ 2); comma-separated for several"
    )


if __name__ == "__main__":
    run_main(build, "Time edgeloop's evaluate().", add_arguments)
