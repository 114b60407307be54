"""flagd, evaluated in process: ``--api core`` calls ``FlagdCore`` (openfeature-flagd-core)
directly; ``--api openfeature`` goes through the OpenFeature SDK with the real
``FlagdProvider`` (openfeature-provider-flagd) in FILE resolver mode — an offline flag source
file, watched by a local thread, no gRPC. Both read the same flagd JSON document:
``micro-offer`` targets with ``if`` / ``in`` around ``fractional`` (bucketed by flag key +
targetingKey, flagd's default), ``offers-enabled`` is static.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from .flags import CONTROL, EXPERIMENT_FLAG, FALLBACK, MARKETS, ONOFF_FLAG, SPLIT
from .harness import Peer, run_main


def flagd_document() -> dict[str, Any]:
    return {
        "$schema": "https://flagd.dev/schema/v0/flags.json",
        "flags": {
            EXPERIMENT_FLAG: {
                "state": "ENABLED",
                "variants": {CONTROL: CONTROL, **{name: name for name, _ in SPLIT}},
                "defaultVariant": CONTROL,
                "targeting": {
                    "if": [
                        {"in": [{"var": "country"}, list(MARKETS)]},
                        {"fractional": [[name, weight] for name, weight in SPLIT]},
                        CONTROL,
                    ]
                },
            },
            ONOFF_FLAG: {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": "on",
            },
        },
    }


def build_core() -> Peer:
    from openfeature.contrib.tools.flagd.core import FlagdCore
    from openfeature.evaluation_context import EvaluationContext

    core = FlagdCore()
    core.set_flags(json.dumps(flagd_document()))

    def experiment(uid: str, country: str) -> str:
        ctx = EvaluationContext(targeting_key=uid, attributes={"country": country})
        return core.resolve_string_value(EXPERIMENT_FLAG, FALLBACK, ctx).value

    def onoff(uid: str, country: str) -> bool:
        ctx = EvaluationContext(targeting_key=uid, attributes={"country": country})
        return core.resolve_boolean_value(ONOFF_FLAG, False, ctx).value

    def experiment_loop(ids: list[str], countries: list[str]) -> str:
        value = FALLBACK
        for uid, country in zip(ids, countries, strict=True):
            ctx = EvaluationContext(targeting_key=uid, attributes={"country": country})
            value = core.resolve_string_value(EXPERIMENT_FLAG, FALLBACK, ctx).value
        return value

    def onoff_loop(ids: list[str], countries: list[str]) -> bool:
        value = False
        for uid, country in zip(ids, countries, strict=True):
            ctx = EvaluationContext(targeting_key=uid, attributes={"country": country})
            value = core.resolve_boolean_value(ONOFF_FLAG, False, ctx).value
        return value

    return Peer(
        name="flagd-core",
        label="flagd core",
        package="openfeature-flagd-core",
        setup="FlagdCore().set_flags(flagd JSON); if/in + fractional; per call "
        "EvaluationContext + resolve_string_value / resolve_boolean_value",
        experiment=experiment,
        onoff=onoff,
        experiment_loop=experiment_loop,
        onoff_loop=onoff_loop,
    )


def build_openfeature() -> Peer:
    from openfeature import api
    from openfeature.contrib.provider.flagd import FlagdProvider
    from openfeature.contrib.provider.flagd.config import ResolverType
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.provider import ProviderStatus

    workdir = tempfile.TemporaryDirectory(prefix="bench-flagd-")
    source = Path(workdir.name, "flags.flagd.json")
    source.write_text(json.dumps(flagd_document()))
    provider = FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=str(source))
    # set_provider alone returns before the file is read: early calls would get the default.
    api.set_provider_and_wait(provider)
    client = api.get_client()
    if client.get_provider_status() is not ProviderStatus.READY:
        raise RuntimeError(f"flagd provider is {client.get_provider_status()}, not READY")

    def experiment(uid: str, country: str) -> str:
        ctx = EvaluationContext(targeting_key=uid, attributes={"country": country})
        return client.get_string_value(EXPERIMENT_FLAG, FALLBACK, ctx)

    def onoff(uid: str, country: str) -> bool:
        ctx = EvaluationContext(targeting_key=uid, attributes={"country": country})
        return client.get_boolean_value(ONOFF_FLAG, False, ctx)

    def experiment_loop(ids: list[str], countries: list[str]) -> str:
        value = FALLBACK
        for uid, country in zip(ids, countries, strict=True):
            ctx = EvaluationContext(targeting_key=uid, attributes={"country": country})
            value = client.get_string_value(EXPERIMENT_FLAG, FALLBACK, ctx)
        return value

    def onoff_loop(ids: list[str], countries: list[str]) -> bool:
        value = False
        for uid, country in zip(ids, countries, strict=True):
            ctx = EvaluationContext(targeting_key=uid, attributes={"country": country})
            value = client.get_boolean_value(ONOFF_FLAG, False, ctx)
        return value

    def close() -> None:
        api.shutdown()
        workdir.cleanup()

    return Peer(
        name="flagd-openfeature",
        label="flagd via OpenFeature",
        package="openfeature-provider-flagd",
        setup="OpenFeature SDK + FlagdProvider(resolver_type=FILE, offline_flag_source_path) "
        "with set_provider_and_wait; per call EvaluationContext + get_string_value / "
        "get_boolean_value",
        experiment=experiment,
        onoff=onoff,
        experiment_loop=experiment_loop,
        onoff_loop=onoff_loop,
        close=close,
        info={"openfeature-sdk": metadata.version("openfeature-sdk")},
    )


def build(args: argparse.Namespace) -> list[Peer]:
    return [build_core() if args.api == "core" else build_openfeature()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api", choices=("core", "openfeature"), default="core")


if __name__ == "__main__":
    run_main(build, "Time flagd's in-process evaluation.", add_arguments)
