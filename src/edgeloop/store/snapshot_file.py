"""The edge's last-known-good snapshot on disk, written so that a crash never leaves half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import msgspec


class LastKnownGood:
    """Persists the raw signed snapshot bytes; the reader re-verifies them on load.

    Writes go to a temporary file in the same directory, are fsynced, then renamed over the
    old file (atomic on POSIX), and the directory is fsynced so the rename survives a crash.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def save(self, signed: msgspec.Struct) -> None:
        data = msgspec.json.encode(signed)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".lkg-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def load(self) -> bytes | None:
        """The stored bytes, or None if there is no file yet."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
