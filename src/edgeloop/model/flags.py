"""The flag definitions: plain frozen data that the engine compiles and the services pass around."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .conditions import Condition
from .guardrails import Guardrail

Metadata = dict[str, str | int | float | bool]


class ValueType(StrEnum):
    BOOLEAN = "boolean"
    STRING = "string"
    INTEGER = "integer"
    FLOAT = "float"
    OBJECT = "object"

    def accepts(self, value: Any) -> bool:
        """Whether a variant value is of this type (bool is never a number here)."""
        if self is ValueType.BOOLEAN:
            return isinstance(value, bool)
        if self is ValueType.STRING:
            return isinstance(value, str)
        if self is ValueType.INTEGER:
            return isinstance(value, int) and not isinstance(value, bool)
        if self is ValueType.FLOAT:
            return isinstance(value, int | float) and not isinstance(value, bool)
        return isinstance(value, dict | list)


class FlagState(StrEnum):
    ENABLED = "ENABLED"
    DISABLED = "DISABLED"  # the kill switch


class Channel(StrEnum):
    """Where a variant's micro-interaction executes."""

    EDGE_OVERLAY = "edge_overlay"
    CLIENT = "client"
    HYBRID = "hybrid"


@dataclass(frozen=True, slots=True)
class Rule:
    """When ``when`` holds (or is None: always), serve ``variant`` or a weighted ``split``."""

    when: Condition | None = None
    variant: str | None = None
    split: tuple[tuple[str, int], ...] | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Prerequisite:
    """Flag ``flag`` must resolve to ``variant`` for this flag's rules to run."""

    flag: str
    variant: str


@dataclass(frozen=True, slots=True)
class ExperimentMetrics:
    primary: str
    secondary: tuple[str, ...] = ()
    guardrails: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Experiment:
    key: str
    metrics: ExperimentMetrics
    hypothesis: str = ""
    channels: dict[str, Channel] = field(default_factory=dict)
    # Outcomes count for a variant when they happen within this many minutes of exposure.
    conversion_window_min: int = 15
    # The variant others are compared with (default: the first variant of the split).
    control: str | None = None
    rules: tuple[Guardrail, ...] = ()
    # Set by the decision loop or an operator: these variants' traffic is served control.
    rolled_back: tuple[str, ...] = ()
    # A paused experiment serves control to everyone in it and records no new exposures.
    paused: bool = False
    allocation: Allocation | None = None


@dataclass(frozen=True, slots=True)
class Allocation:
    """Adaptive allocation (opt-in): Thompson sampling on the primary metric."""

    method: str = "thompson"
    floor: float = 0.05  # no arm's weight goes below this share
    min_samples: int = 200  # exposures per arm before weights move
    every_min: int = 15  # re-weighting period (event time)


@dataclass(frozen=True, slots=True)
class Flag:
    key: str
    type: ValueType
    variants: dict[str, Any]
    default_variant: str | None
    state: FlagState = FlagState.ENABLED
    description: str = ""
    rules: tuple[Rule, ...] = ()
    # JsonLogic targeting (flagd format); a flag has either ``rules`` or ``targeting``.
    targeting: Any = None
    bucket_by: str = "targetingKey"
    salt: str | None = None
    sticky: bool = False
    prerequisites: tuple[Prerequisite, ...] = ()
    metadata: Metadata = field(default_factory=dict)
    experiment: Experiment | None = None

    @property
    def bucket_salt(self) -> str:
        return self.key if self.salt is None else self.salt

    @property
    def control_variant(self) -> str | None:
        """The experiment's control: as configured, else the first variant of the first split."""
        if self.experiment is not None and self.experiment.control is not None:
            return self.experiment.control
        for rule in self.rules:
            if rule.split:
                return rule.split[0][0]
        return None


@dataclass(frozen=True, slots=True)
class FlagSet:
    """A whole validated document: what a snapshot is compiled from."""

    flags: dict[str, Flag]
    segments: dict[str, Condition] = field(default_factory=dict)
    metadata: Metadata = field(default_factory=dict)
