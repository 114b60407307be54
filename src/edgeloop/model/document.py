"""Writing a FlagSet back out as a flags-as-code document (the inverse of ``load_flags``)."""

from __future__ import annotations

import json
from typing import Any

import yaml

from .conditions import condition_to_raw
from .flags import Flag, FlagSet, FlagState


def flag_to_raw(flag: Flag) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if flag.description:
        out["description"] = flag.description
    out["type"] = str(flag.type)
    out["variants"] = dict(flag.variants)
    out["default_variant"] = flag.default_variant
    if flag.state is not FlagState.ENABLED:
        out["state"] = str(flag.state)
    if flag.rules:
        rules = []
        for rule in flag.rules:
            raw: dict[str, Any] = {}
            if rule.name is not None:
                raw["name"] = rule.name
            if rule.when is not None:
                raw["when"] = condition_to_raw(rule.when)
            if rule.variant is not None:
                raw["variant"] = rule.variant
            if rule.split is not None:
                raw["split"] = dict(rule.split)
            rules.append(raw)
        out["rules"] = rules
    if flag.targeting is not None:
        out["targeting"] = flag.targeting
    if flag.bucket_by != "targetingKey":
        out["bucket_by"] = flag.bucket_by
    if flag.salt is not None:
        out["salt"] = flag.salt
    if flag.sticky:
        out["sticky"] = True
    if flag.prerequisites:
        out["prerequisites"] = [{"flag": p.flag, "variant": p.variant} for p in flag.prerequisites]
    if flag.metadata:
        out["metadata"] = dict(flag.metadata)
    if flag.experiment is not None:
        exp = flag.experiment
        metrics: dict[str, Any] = {"primary": exp.metrics.primary}
        if exp.metrics.secondary:
            metrics["secondary"] = list(exp.metrics.secondary)
        if exp.metrics.guardrails:
            metrics["guardrails"] = list(exp.metrics.guardrails)
        raw_exp: dict[str, Any] = {"key": exp.key}
        if exp.hypothesis:
            raw_exp["hypothesis"] = exp.hypothesis
        raw_exp["metrics"] = metrics
        if exp.channels:
            raw_exp["channels"] = {k: str(v) for k, v in exp.channels.items()}
        out["experiment"] = raw_exp
    return out


def flagset_to_raw(flagset: FlagSet) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if flagset.metadata:
        out["metadata"] = dict(flagset.metadata)
    if flagset.segments:
        out["segments"] = {k: condition_to_raw(c) for k, c in flagset.segments.items()}
    out["flags"] = {k: flag_to_raw(f) for k, f in flagset.flags.items()}
    return out


def dump_flags(flagset: FlagSet, fmt: str = "yaml") -> str:
    """Serialize as ``yaml`` or ``json``; ``load_flags`` reads either back to an equal FlagSet."""
    raw = flagset_to_raw(flagset)
    if fmt == "json":
        return json.dumps(raw, indent=2, ensure_ascii=False) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
    raise ValueError(f"unknown format {fmt!r}; expected yaml or json")
