"""Reading a YAML or JSON document into plain data plus a map from field path to line number.

PyYAML builds the node graph (it keeps line marks); we construct the values ourselves so that
- scalars follow YAML 1.2's core schema (``on``/``off``/``yes``/``no`` stay strings, dates stay
  strings) — a flags file written by a non-engineer must not turn variant ``off`` into ``False``;
- mapping keys are always the key's text, and duplicate keys are reported, not silently merged;
- every value's line is remembered under its path, for ``file:line: path: message`` errors.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml

from .errors import Path, ValidationIssue

# Limits that keep a hostile document (alias bombs, absurd nesting) from exhausting the process.
MAX_NODES = 1_000_000
MAX_DEPTH = 200

_INT = re.compile(r"^[-+]?[0-9]+$")  # YAML 1.2 core: 012 is the integer 12
_INT_OCT = re.compile(r"^0o[0-7]+$")
_INT_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(inf|Inf|INF)$")
_NAN = re.compile(r"^\.(nan|NaN|NAN)$")
_SURROGATE = re.compile("[\ud800-\udfff]")
_NULL = {"", "~", "null", "Null", "NULL"}
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}


def _core_scalar(text: str) -> Any:
    """Resolve a plain (unquoted) scalar with YAML 1.2 core-schema rules."""
    if text in _NULL:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if _INT.match(text):
        return int(text)
    if _INT_OCT.match(text):
        return int(text[2:], 8)
    if _INT_HEX.match(text):
        return int(text[2:], 16)
    if _FLOAT.match(text):
        return float(text)
    if _INF.match(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.match(text):
        return math.nan
    return text


class _Loader(yaml.SafeLoader):
    """SafeLoader without implicit resolvers: plain scalars arrive as text for _core_scalar."""

    yaml_implicit_resolvers: dict[Any, Any] = {}  # noqa: RUF012 - PyYAML's class-level table


class SourceError(Exception):
    def __init__(self, issue: ValidationIssue) -> None:
        self.issue = issue
        super().__init__(str(issue))


class _Builder:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.lines: dict[Path, int] = {}
        self.issues: list[ValidationIssue] = []
        self.nodes = 0

    def fail(self, line: int, path: Path, message: str) -> SourceError:
        return SourceError(ValidationIssue(self.filename, line, path, message))

    def text(self, node: yaml.ScalarNode, path: Path) -> str:
        """A scalar's text; JSON-style ``\\ud83d\\ude00`` escapes become one character."""
        value: str = node.value
        if node.style == '"' and _SURROGATE.search(value):
            try:
                value = value.encode("utf-16", "surrogatepass").decode("utf-16")
            except UnicodeDecodeError:
                line = node.start_mark.line + 1
                raise self.fail(line, path, "unpaired UTF-16 surrogate in a \\u escape") from None
        return value

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.nodes += 1
        line = node.start_mark.line + 1
        if self.nodes > MAX_NODES:
            raise self.fail(line, path, f"document too large (more than {MAX_NODES} values)")
        if len(path) > MAX_DEPTH:
            raise self.fail(line, path, f"nested deeper than {MAX_DEPTH} levels")
        self.lines.setdefault(path, line)
        if isinstance(node, yaml.ScalarNode):
            # With no implicit resolvers every untagged scalar carries the str tag; anything
            # else was tagged explicitly (!!python/object, !!binary, !custom …): not for flags.
            if node.tag != "tag:yaml.org,2002:str":
                raise self.fail(line, path, f"unsupported YAML tag {node.tag!r}")
            if node.style is not None:
                return self.text(node, path)
            try:
                return _core_scalar(node.value)
            except ValueError:  # int() refuses more than sys.get_int_max_str_digits() digits
                raise self.fail(line, path, "number has too many digits") from None
        if isinstance(node, yaml.SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                raise self.fail(line, path, f"unsupported YAML tag {node.tag!r}")
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            if node.tag != "tag:yaml.org,2002:map":
                raise self.fail(line, path, f"unsupported YAML tag {node.tag!r}")
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key_line = key_node.start_mark.line + 1
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self.fail(key_line, path, "mapping keys must be plain text")
                if key_node.value == "<<" and key_node.style is None:
                    raise self.fail(key_line, path, "YAML merge keys (<<) are not supported")
                key = self.text(key_node, path)
                child = (*path, key)
                if key in out:
                    self.issues.append(
                        ValidationIssue(self.filename, key_line, child, "duplicate key")
                    )
                    continue
                self.lines.setdefault(child, key_line)
                out[key] = self.build(value_node, child)
            return out
        raise self.fail(
            line, path, "unsupported YAML node"
        )  # pragma: no cover - PyYAML has 3 kinds


def parse_document(
    text: str | bytes, filename: str
) -> tuple[Any, dict[Path, int], list[ValidationIssue]]:
    """Parse YAML or JSON text.

    Returns the data, the path→line map and the non-fatal issues (duplicate keys).
    Raises SourceError for text that is not a document at all.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SourceError(
                ValidationIssue(filename, 1, (), f"not UTF-8 text ({exc.reason})")
            ) from None
    builder = _Builder(filename)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        what = exc.problem or exc.context or "malformed document"
        raise SourceError(
            ValidationIssue(filename, line, (), f"not valid YAML/JSON: {what}")
        ) from None
    except yaml.YAMLError as exc:
        raise SourceError(ValidationIssue(filename, 1, (), f"not valid YAML/JSON: {exc}")) from None
    except RecursionError:
        raise SourceError(ValidationIssue(filename, 1, (), "nested too deeply")) from None
    if node is None:
        raise SourceError(ValidationIssue(filename, 1, (), "empty document"))
    try:
        data = builder.build(node, ())
    except RecursionError:
        raise SourceError(ValidationIssue(filename, 1, (), "nested too deeply")) from None
    return data, builder.lines, builder.issues


def line_of(lines: dict[Path, int], path: Path) -> int:
    """The line of the nearest enclosing value that the source recorded (0: no source text)."""
    if not lines:
        return 0
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path, 1)
