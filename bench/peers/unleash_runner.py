"""Unleash (``UnleashClient``), bootstrapped offline from a features JSON.

The features JSON (client API format) goes into a ``FileCache`` in a temporary directory via
``bootstrap_from_dict``; the client gets ``disable_metrics``/``disable_registration`` and is
initialised with ``fetch_toggles=False`` (the offline connector: it only re-reads the cache,
here once an hour). Its URL points at a closed loopback port, so any stray request could not
leave the machine — and the harness fails the run if one is even attempted.

``micro-offer``: one ``flexibleRollout`` strategy (100 %, stickiness userId) with the
constraint country IN [US, CA, GB] and strategy variants A/B/C weighted 340/330/330 (fixed,
stickiness userId). Users outside the markets get Unleash's "disabled" variant, read as control.
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

from .flags import CONTROL, EXPERIMENT_FLAG, MARKETS, ONOFF_FLAG, SPLIT
from .harness import Peer, run_main

OFFLINE_URL = "http://127.0.0.1:9/api"  # discard port: nothing listens


def features() -> dict[str, Any]:
    variants = [
        {"name": name, "weight": weight * 10, "weightType": "fix", "stickiness": "userId"}
        for name, weight in SPLIT
    ]
    return {
        "version": 2,
        "features": [
            {
                "name": EXPERIMENT_FLAG,
                "type": "experiment",
                "enabled": True,
                "strategies": [
                    {
                        "name": "flexibleRollout",
                        "parameters": {
                            "rollout": "100",
                            "stickiness": "userId",
                            "groupId": EXPERIMENT_FLAG,
                        },
                        "constraints": [
                            {"contextName": "country", "operator": "IN", "values": list(MARKETS)}
                        ],
                        "variants": variants,
                    }
                ],
            },
            {
                "name": ONOFF_FLAG,
                "type": "release",
                "enabled": True,
                "strategies": [{"name": "default", "parameters": {}}],
            },
        ],
    }


def variant_name(variant: dict[str, Any]) -> str:
    """Unleash answers "not in the experiment" with its disabled variant: that is control."""
    return variant["name"] if variant["enabled"] else CONTROL


def build(args: argparse.Namespace) -> list[Peer]:
    from UnleashClient import UnleashClient
    from UnleashClient.cache import FileCache

    workdir = tempfile.TemporaryDirectory(prefix="bench-unleash-")
    cache = FileCache("edgeloop-bench", directory=workdir.name)
    cache.bootstrap_from_dict(features())
    client = UnleashClient(
        url=OFFLINE_URL,
        app_name="edgeloop-bench",
        disable_metrics=True,
        disable_registration=True,
        refresh_interval=3600,
        cache=cache,
    )
    client.initialize_client(fetch_toggles=False)
    if not client.is_initialized:
        raise RuntimeError("UnleashClient did not initialise from the bootstrapped cache")
    known = set(client.feature_definitions())
    if known != {EXPERIMENT_FLAG, ONOFF_FLAG}:
        raise RuntimeError(f"UnleashClient knows {sorted(known)} after bootstrapping")

    def experiment(uid: str, country: str) -> str:
        return variant_name(
            client.get_variant(EXPERIMENT_FLAG, {"userId": uid, "country": country})
        )

    def onoff(uid: str, country: str) -> bool:
        return client.is_enabled(ONOFF_FLAG, {"userId": uid, "country": country})

    def experiment_loop(ids: list[str], countries: list[str]) -> str:
        variant: dict[str, Any] = {}
        for uid, country in zip(ids, countries, strict=True):
            variant = client.get_variant(EXPERIMENT_FLAG, {"userId": uid, "country": country})
        return variant_name(variant)

    def onoff_loop(ids: list[str], countries: list[str]) -> bool:
        on = False
        for uid, country in zip(ids, countries, strict=True):
            on = client.is_enabled(ONOFF_FLAG, {"userId": uid, "country": country})
        return on

    def close() -> None:
        client.destroy()
        workdir.cleanup()

    peer = Peer(
        name="unleash",
        label="Unleash",
        package="UnleashClient",
        setup="FileCache.bootstrap_from_dict + initialize_client(fetch_toggles=False), metrics and "
        "registration off; flexibleRollout + constraint country IN, variants 340/330/330 "
        "(stickiness userId); per call get_variant / is_enabled with a context dict",
        experiment=experiment,
        onoff=onoff,
        experiment_loop=experiment_loop,
        onoff_loop=onoff_loop,
        close=close,
    )
    return [peer]


if __name__ == "__main__":
    run_main(build, "Time Unleash's offline evaluation.")
