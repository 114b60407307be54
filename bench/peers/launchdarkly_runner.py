"""LaunchDarkly (``launchdarkly-server-sdk``) with a file data source.

The flags are LaunchDarkly flag JSON in a temporary file, read by
``ldclient.integrations.Files.new_data_source`` (no auto-update). ``send_events=False`` (which
also disables diagnostics) and every service URI points at a closed loopback port. Not
``offline=True``: offline makes ``variation`` return the default without evaluating.

``micro-offer``: one rule with the clause country in [US, CA, GB] rolling out variations
A/B/C at 34000/33000/33000 (of 100000) bucketed by key; fallthrough and off serve control.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from .flags import CONTROL, EXPERIMENT_FLAG, FALLBACK, MARKETS, ONOFF_FLAG, SPLIT
from .harness import Peer, run_main

OFFLINE_URI = "http://127.0.0.1:9"  # discard port: nothing listens


def flag_data() -> dict[str, Any]:
    variations = [CONTROL, *(name for name, _ in SPLIT)]
    rollout = [
        {"variation": variations.index(name), "weight": weight * 1000} for name, weight in SPLIT
    ]
    return {
        "flags": {
            EXPERIMENT_FLAG: {
                "key": EXPERIMENT_FLAG,
                "version": 1,
                "on": True,
                "salt": EXPERIMENT_FLAG,
                "variations": variations,
                "offVariation": 0,
                "fallthrough": {"variation": 0},
                "targets": [],
                "prerequisites": [],
                "rules": [
                    {
                        "id": "core-markets",
                        "clauses": [
                            {
                                "attribute": "country",
                                "op": "in",
                                "values": list(MARKETS),
                                "negate": False,
                            }
                        ],
                        "rollout": {"variations": rollout, "bucketBy": "key"},
                    }
                ],
            },
            ONOFF_FLAG: {
                "key": ONOFF_FLAG,
                "version": 1,
                "on": True,
                "salt": ONOFF_FLAG,
                "variations": [True, False],
                "offVariation": 1,
                "fallthrough": {"variation": 0},
                "targets": [],
                "prerequisites": [],
                "rules": [],
            },
        }
    }


def build(args: argparse.Namespace) -> list[Peer]:
    from ldclient import Context, LDClient
    from ldclient.config import Config
    from ldclient.integrations import Files

    workdir = tempfile.TemporaryDirectory(prefix="bench-launchdarkly-")
    source = Path(workdir.name, "flags.json")
    source.write_text(json.dumps(flag_data()))
    config = Config(
        sdk_key="bench-offline",
        update_processor_class=Files.new_data_source(paths=[str(source)], auto_update=False),
        send_events=False,
        diagnostic_opt_out=True,
        base_uri=OFFLINE_URI,
        stream_uri=OFFLINE_URI,
        events_uri=OFFLINE_URI,
    )
    client = LDClient(config=config, start_wait=5)
    if not client.is_initialized():
        raise RuntimeError("LDClient did not initialise from the file data source")

    def experiment(uid: str, country: str) -> str:
        ctx = Context.builder(uid).set("country", country).build()
        return client.variation(EXPERIMENT_FLAG, ctx, FALLBACK)

    def onoff(uid: str, country: str) -> bool:
        ctx = Context.builder(uid).set("country", country).build()
        return client.variation(ONOFF_FLAG, ctx, False)

    def experiment_loop(ids: list[str], countries: list[str]) -> str:
        value = FALLBACK
        for uid, country in zip(ids, countries, strict=True):
            ctx = Context.builder(uid).set("country", country).build()
            value = client.variation(EXPERIMENT_FLAG, ctx, FALLBACK)
        return value

    def onoff_loop(ids: list[str], countries: list[str]) -> bool:
        value = False
        for uid, country in zip(ids, countries, strict=True):
            ctx = Context.builder(uid).set("country", country).build()
            value = client.variation(ONOFF_FLAG, ctx, False)
        return value

    def close() -> None:
        client.close()
        workdir.cleanup()

    peer = Peer(
        name="launchdarkly",
        label="LaunchDarkly",
        package="launchdarkly-server-sdk",
        setup="LDClient with Files.new_data_source (flag JSON), send_events=False, URIs on a "
        "closed loopback port; rule clause country in + rollout 34000/33000/33000 by key; "
        "per call Context.builder(...).set('country').build() + variation",
        experiment=experiment,
        onoff=onoff,
        experiment_loop=experiment_loop,
        onoff_loop=onoff_loop,
        close=close,
    )
    return [peer]


if __name__ == "__main__":
    run_main(build, "Time LaunchDarkly's evaluation from a file data source.")
