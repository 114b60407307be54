"""The one error a flags document raises: every problem at once, with file, line and path."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Path = tuple[str | int, ...]


def format_path(path: Path) -> str:
    """`("flags", "micro-offer", "rules", 1, "split")` → `flags.micro-offer.rules[1].split`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "<document>"


@dataclass(frozen=True, slots=True)
class ValidationIssue:
    file: str
    line: int
    path: Path
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {format_path(self.path)}: {self.message}"


class FlagsValidationError(ValueError):
    """Raised by the loader with *all* problems found in a document, never just the first."""

    def __init__(self, issues: Sequence[ValidationIssue]) -> None:
        self.issues: tuple[ValidationIssue, ...] = tuple(
            sorted(issues, key=lambda i: (i.line, format_path(i.path), i.message))
        )
        super().__init__("\n".join(str(i) for i in self.issues))
