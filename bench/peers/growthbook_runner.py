"""GrowthBook (``growthbook``): features JSON given locally, an experiment rule with a condition.

No ``api_host``/``client_key``, so the SDK never fetches; no tracking callback. One
``GrowthBook`` instance serves every call: per call, ``set_attributes`` with a fresh attributes
dict, then ``get_feature_value`` / ``is_on`` — the cheapest public path (building a
``GrowthBook`` per request, as its web-framework examples do, costs far more).
"""

from __future__ import annotations

import argparse
from typing import Any

from .flags import CONTROL, EXPERIMENT_FLAG, FALLBACK, MARKETS, ONOFF_FLAG, SPLIT, SPLIT_TOTAL
from .harness import Peer, run_main


def features() -> dict[str, Any]:
    return {
        EXPERIMENT_FLAG: {
            "defaultValue": CONTROL,
            "rules": [
                {
                    "key": EXPERIMENT_FLAG,
                    "condition": {"country": {"$in": list(MARKETS)}},
                    "variations": [name for name, _ in SPLIT],
                    "weights": [weight / SPLIT_TOTAL for _, weight in SPLIT],
                    "coverage": 1.0,
                    "hashAttribute": "id",
                    "hashVersion": 2,
                }
            ],
        },
        ONOFF_FLAG: {"defaultValue": True},
    }


def build(args: argparse.Namespace) -> list[Peer]:
    from growthbook import GrowthBook

    gb = GrowthBook(features=features())

    def experiment(uid: str, country: str) -> str:
        gb.set_attributes({"id": uid, "country": country})
        return gb.get_feature_value(EXPERIMENT_FLAG, FALLBACK)

    def onoff(uid: str, country: str) -> bool:
        gb.set_attributes({"id": uid, "country": country})
        return gb.is_on(ONOFF_FLAG)

    def experiment_loop(ids: list[str], countries: list[str]) -> str:
        value = FALLBACK
        for uid, country in zip(ids, countries, strict=True):
            gb.set_attributes({"id": uid, "country": country})
            value = gb.get_feature_value(EXPERIMENT_FLAG, FALLBACK)
        return value

    def onoff_loop(ids: list[str], countries: list[str]) -> bool:
        on = False
        for uid, country in zip(ids, countries, strict=True):
            gb.set_attributes({"id": uid, "country": country})
            on = gb.is_on(ONOFF_FLAG)
        return on

    peer = Peer(
        name="growthbook",
        label="GrowthBook",
        package="growthbook",
        setup="GrowthBook(features=…) local JSON; experiment rule, condition country $in, "
        "hashAttribute id; per call set_attributes + get_feature_value / is_on",
        experiment=experiment,
        onoff=onoff,
        experiment_loop=experiment_loop,
        onoff_loop=onoff_loop,
        close=gb.destroy,
    )
    return [peer]


if __name__ == "__main__":
    run_main(build, "Time GrowthBook's local evaluation.")
