"""Writing a FlagSet back out as a flags-as-code document (the inverse of ``load_flags``)."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from .conditions import condition_to_raw
from .flags import Flag, FlagSet, FlagState
from .source import _core_scalar


class _Dumper(yaml.SafeDumper):
    """SafeDumper (YAML 1.1 rules) that also quotes text the loader's YAML 1.2 core schema
    would read as a number: ``1e5``, ``0o17``, ``+.5`` are plain strings to PyYAML, not to us."""

    def represent_str(self, data: str) -> yaml.ScalarNode:
        node = super().represent_str(data)
        if _LINE_BREAKS.search(data):
            node.style = '"'  # PyYAML folds a raw NEL/U+2028/U+2029 elsewhere; escape them
        elif node.style is None and _reads_as_non_text(data):
            node.style = "'"
        return node


_LINE_BREAKS = re.compile("[\x85\u2028\u2029]")


def _reads_as_non_text(data: str) -> bool:
    try:
        return not isinstance(_core_scalar(data), str)
    except ValueError:  # a number too long for int(): the loader rejects it, so quote it
        return True


_Dumper.add_representer(str, _Dumper.represent_str)

# Characters json.dumps(ensure_ascii=False) leaves raw but a YAML reader rejects (C1 controls,
# DEL, U+FFFE/U+FFFF) or folds as line breaks (NEL, U+2028, U+2029): written as \u escapes.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufffe\uffff]")


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
        if exp.conversion_window_min != 15:
            raw_exp["conversion_window_min"] = exp.conversion_window_min
        if exp.control is not None:
            raw_exp["control"] = exp.control
        if exp.rules:
            raw_exp["rules"] = [
                {"rule": g.rule.text, "min_attendees": g.min_attendees, "mode": str(g.mode)}
                for g in exp.rules
            ]
        if exp.rolled_back:
            raw_exp["rolled_back"] = list(exp.rolled_back)
        if exp.paused:
            raw_exp["paused"] = True
        if exp.allocation is not None:
            a = exp.allocation
            raw_exp["allocation"] = {
                "method": a.method,
                "floor": a.floor,
                "min_samples": a.min_samples,
                "every_min": a.every_min,
            }
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
        text = json.dumps(raw, indent=2, ensure_ascii=False)
        return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n"
    if fmt == "yaml":
        return yaml.dump(raw, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
    raise ValueError(f"unknown format {fmt!r}; expected yaml or json")
