"""The flags the HTTP and propagation benchmarks serve, as an edgeloop document and as Unleash.

``edgeloop_document(n)`` and ``unleash_features(n)`` describe the same ``n`` logical flags:

- ``offers-enabled``: a boolean kill switch, on;
- ``micro-offer``: an experiment, variants A/B/C split 34/33/33 by targeting key, served when
  ``country`` is one of US/CA/GB (everyone else: ``control``);
- then ``flag-0002`` … in turn: another experiment behind a country condition, a kill switch,
  a 50/50 rollout on one platform, and a value targeted on country and dwell time.

A context carries a targeting key, a country, a platform and a dwell time; ``edgeloop_context``
and ``unleash_context`` build the same one in each product's shape (Unleash: ``userId`` and
string ``properties``).
"""

from __future__ import annotations

from typing import Any

EXPERIMENT_FLAG = "micro-offer"
ONOFF_FLAG = "offers-enabled"
CONTROL = "control"
SPLIT: tuple[tuple[str, int], ...] = (("A", 34), ("B", 33), ("C", 33))
MARKETS: tuple[str, ...] = ("US", "CA", "GB")
COUNTRIES: tuple[str, ...] = (*MARKETS, "DE", "FR", "BR", "IN", "JP")
PLATFORMS: tuple[str, ...] = ("ios", "android", "web")


def _key(i: int) -> str:
    return f"flag-{i:04d}"


# edgeloop ----------------------------------------------------------------------------------


def _edgeloop_flag(i: int) -> dict[str, Any]:
    shape = (i - 2) % 4
    if shape == 0:  # an experiment behind a country condition
        markets = list(COUNTRIES[i % 5 : i % 5 + 3])
        return {
            "type": "string",
            "variants": {CONTROL: CONTROL, "A": "A", "B": "B", "C": "C"},
            "default_variant": CONTROL,
            "rules": [
                {
                    "name": "markets",
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
                    "name": "rollout",
                    "when": {"attr": "platform", "eq": PLATFORMS[i % 3]},
                    "split": {"on": 50, "off": 50},
                }
            ],
        }
    return {  # a value targeted on country and dwell time
        "type": "integer",
        "variants": {"low": i % 7, "high": 100 + i % 11},
        "default_variant": "low",
        "rules": [
            {
                "name": "engaged",
                "when": {
                    "all": [
                        {"attr": "country", "eq": COUNTRIES[i % len(COUNTRIES)]},
                        {"attr": "dwell_s", "gte": 30 + i % 60},
                    ]
                },
                "variant": "high",
            }
        ],
    }


def edgeloop_document(n_flags: int) -> dict[str, Any]:
    if n_flags < 2:
        raise ValueError("at least the two logical flags")
    flags: dict[str, Any] = {
        ONOFF_FLAG: {
            "description": "Kill switch for every paid micro-interaction",
            "type": "boolean",
            "variants": {"on": True, "off": False},
            "default_variant": "on",
        },
        EXPERIMENT_FLAG: {
            "description": "Which micro-interaction an attendee sees",
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
    for i in range(2, n_flags):
        flags[_key(i)] = _edgeloop_flag(i)
    return {"metadata": {"owner": "bench"}, "flags": flags}


def edgeloop_context(uid: str, i: int) -> dict[str, Any]:
    return {
        "targetingKey": uid,
        "country": COUNTRIES[i % len(COUNTRIES)],
        "platform": PLATFORMS[i % len(PLATFORMS)],
        "dwell_s": i % 120,
    }


# Unleash (client API features, as the proxy's bootstrap) ----------------------------------


def _variants(split: dict[str, int], stickiness: str = "userId") -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "weight": weight * 10,
            "weightType": "fix",
            "stickiness": stickiness,
            "payload": {"type": "string", "value": name},
        }
        for name, weight in split.items()
    ]


def _rollout(name: str, percent: int, constraints: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "flexibleRollout",
        "parameters": {"rollout": str(percent), "stickiness": "userId", "groupId": name},
        "constraints": constraints,
    }


def _unleash_flag(i: int) -> dict[str, Any]:
    name = _key(i)
    shape = (i - 2) % 4
    if shape == 0:
        markets = list(COUNTRIES[i % 5 : i % 5 + 3])
        strategy = _rollout(
            name, 100, [{"contextName": "country", "operator": "IN", "values": markets}]
        )
        strategy["variants"] = _variants({"A": 30 + i % 10, "B": 35, "C": 35 - i % 10})
        return {"name": name, "type": "experiment", "enabled": True, "strategies": [strategy]}
    if shape == 1:
        return {
            "name": name,
            "type": "kill-switch",
            "enabled": bool(i % 3),
            "strategies": [{"name": "default", "parameters": {}}],
        }
    if shape == 2:
        constraint = {"contextName": "platform", "operator": "IN", "values": [PLATFORMS[i % 3]]}
        return {
            "name": name,
            "type": "release",
            "enabled": True,
            "strategies": [_rollout(name, 50, [constraint])],
        }
    strategy = {
        "name": "default",
        "parameters": {},
        "constraints": [
            {
                "contextName": "country",
                "operator": "IN",
                "values": [COUNTRIES[i % len(COUNTRIES)]],
            },
            {"contextName": "dwell_s", "operator": "NUM_GTE", "value": str(30 + i % 60)},
        ],
        "variants": [
            {
                "name": "high",
                "weight": 1000,
                "weightType": "fix",
                "stickiness": "default",
                "payload": {"type": "number", "value": str(100 + i % 11)},
            }
        ],
    }
    return {"name": name, "type": "operational", "enabled": True, "strategies": [strategy]}


def unleash_features(n_flags: int) -> dict[str, Any]:
    experiment = _rollout(
        EXPERIMENT_FLAG,
        100,
        [{"contextName": "country", "operator": "IN", "values": list(MARKETS)}],
    )
    experiment["variants"] = _variants(dict(SPLIT))
    features = [
        {
            "name": ONOFF_FLAG,
            "type": "kill-switch",
            "enabled": True,
            "strategies": [{"name": "default", "parameters": {}}],
        },
        {
            "name": EXPERIMENT_FLAG,
            "type": "experiment",
            "enabled": True,
            "strategies": [experiment],
        },
    ]
    features += [_unleash_flag(i) for i in range(2, n_flags)]
    return {"version": 2, "features": features}


def unleash_context(uid: str, i: int) -> dict[str, Any]:
    return {
        "userId": uid,
        "properties": {
            "country": COUNTRIES[i % len(COUNTRIES)],
            "platform": PLATFORMS[i % len(PLATFORMS)],
            "dwell_s": str(i % 120),
        },
    }
