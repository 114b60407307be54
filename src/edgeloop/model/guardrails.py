"""Guardrail rules: a small language a person can read and the dashboard can build.

    rollback when sentiment.change < -15% and conversion.lift < 3%
    pause when conversion.lift < -20% or revenue.lift < -20%
    alert when sentiment.baseline_change < -10%

Grammar (case-sensitive keywords, any whitespace):

    rule       := action "when" branch ("or" branch)*
    branch     := comparison ("and" comparison)*
    comparison := metric "." measure op number ["%"]
    action     := rollback | pause | alert
    op         := < | <= | > | >=

A number with % is a fraction (3% = 0.03). Which measures a metric has is in ``MEASURES``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    ROLLBACK = "rollback"  # the variant's traffic goes to control
    PAUSE = "pause"  # the whole experiment serves control; no new exposures
    ALERT = "alert"  # notify and audit only


class Mode(StrEnum):
    STATISTICAL = "statistical"  # a comparison counts when the always-valid interval says so
    LITERAL = "literal"  # point estimates, exactly as written


# metric → the measures a rule may compare
MEASURES: dict[str, tuple[str, ...]] = {
    "conversion": ("lift", "diff"),
    "revenue": ("lift", "diff"),
    "sentiment": ("change", "diff", "baseline_change"),
    "retention_d7": ("lift", "diff"),
    "retention_d30": ("lift", "diff"),
    "retention_d90": ("lift", "diff"),
}
OPS = ("<=", ">=", "<", ">")


@dataclass(frozen=True, slots=True)
class Comparison:
    metric: str
    measure: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.metric}.{self.measure} {self.op} {self.threshold:g}"

    def holds(self, value: float) -> bool:
        if self.op == "<":
            return value < self.threshold
        if self.op == "<=":
            return value <= self.threshold
        if self.op == ">":
            return value > self.threshold
        return value >= self.threshold


@dataclass(frozen=True, slots=True)
class GuardrailRule:
    action: Action
    branches: tuple[tuple[Comparison, ...], ...]  # or of ands
    text: str

    @property
    def comparisons(self) -> tuple[Comparison, ...]:
        return tuple(c for branch in self.branches for c in branch)


class RuleSyntaxError(ValueError):
    pass


_TOKEN = re.compile(
    r"\s*(?:(?P<num>[-+]?(?:\d+\.?\d*|\.\d+))(?P<pct>%)?|(?P<op><=|>=|<|>)|(?P<word>[A-Za-z_][A-Za-z0-9_]*)|(?P<dot>\.)|(?P<bad>\S))"
)


def parse_rule(text: str) -> GuardrailRule:
    """Parse one rule; RuleSyntaxError names the problem (and the offending word)."""
    if not isinstance(text, str) or not text.strip():
        raise RuleSyntaxError("empty rule; expected e.g. 'rollback when sentiment.change < -15%'")
    tokens: list[tuple[str, str]] = []
    for m in _TOKEN.finditer(text):
        if m.group("bad"):
            raise RuleSyntaxError(f"unexpected character {m.group('bad')!r}")
        if m.group("num") is not None:
            value = float(m.group("num")) / (100 if m.group("pct") else 1)
            tokens.append(("num", repr(value)))
        elif m.group("op"):
            tokens.append(("op", m.group("op")))
        elif m.group("word"):
            tokens.append(("word", m.group("word")))
        elif m.group("dot"):
            tokens.append(("dot", "."))
    pos = 0

    def take(kind: str, what: str) -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise RuleSyntaxError(f"rule ends early: expected {what}")
        k, v = tokens[pos]
        if k != kind:
            raise RuleSyntaxError(f"expected {what}, found {v!r}")
        pos += 1
        return v

    action_word = take("word", "an action (rollback, pause or alert)")
    if action_word not in Action.__members__.values():
        raise RuleSyntaxError(f"unknown action {action_word!r}; expected rollback, pause or alert")
    if take("word", "'when'") != "when":
        raise RuleSyntaxError("expected 'when' after the action")

    def comparison() -> Comparison:
        metric = take("word", "a metric such as sentiment or conversion")
        if metric not in MEASURES:
            raise RuleSyntaxError(
                f"unknown metric {metric!r}; expected one of {', '.join(MEASURES)}"
            )
        take("dot", f"'.' and a measure after {metric}")
        measure = take("word", f"a measure of {metric}")
        if measure not in MEASURES[metric]:
            known = ", ".join(MEASURES[metric])
            raise RuleSyntaxError(f"{metric} has no measure {measure!r}; expected one of {known}")
        op = take("op", "a comparison (<, <=, > or >=)")
        threshold = float(take("num", "a number such as -15% or 0.03"))
        return Comparison(metric, measure, op, threshold)

    branches: list[tuple[Comparison, ...]] = []
    branch = [comparison()]
    while pos < len(tokens):
        word = take("word", "'and', 'or' or the end of the rule")
        if word == "and":
            branch.append(comparison())
        elif word == "or":
            branches.append(tuple(branch))
            branch = [comparison()]
        else:
            raise RuleSyntaxError(f"expected 'and', 'or' or the end of the rule, found {word!r}")
    branches.append(tuple(branch))
    return GuardrailRule(Action(action_word), tuple(branches), text.strip())


@dataclass(frozen=True, slots=True)
class Guardrail:
    rule: GuardrailRule
    min_attendees: int = 100
    mode: Mode = Mode.STATISTICAL
