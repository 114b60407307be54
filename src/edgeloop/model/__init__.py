"""The definitions: flags, variants, rules, segments, experiments; loading and validation."""

from .conditions import All, AnyOf, Clock, Compare, Condition, Not, SegmentRef
from .document import dump_flags, flagset_to_raw
from .errors import FlagsValidationError, ValidationIssue
from .flagd import export_flagd, import_flagd
from .flags import (
    Channel,
    Experiment,
    ExperimentMetrics,
    Flag,
    FlagSet,
    FlagState,
    Metadata,
    Prerequisite,
    Rule,
    ValueType,
)
from .loader import load_flags, load_flags_data, load_flags_file

__all__ = [
    "All",
    "AnyOf",
    "Channel",
    "Clock",
    "Compare",
    "Condition",
    "Experiment",
    "ExperimentMetrics",
    "Flag",
    "FlagSet",
    "FlagState",
    "FlagsValidationError",
    "Metadata",
    "Not",
    "Prerequisite",
    "Rule",
    "SegmentRef",
    "ValidationIssue",
    "ValueType",
    "dump_flags",
    "export_flagd",
    "flagset_to_raw",
    "import_flagd",
    "load_flags",
    "load_flags_data",
    "load_flags_file",
]
