"""Pseudonyms: nothing leaves an edge with a raw attendee id.

    pseudonym = hex(HMAC-SHA256(experiment key, utf8(attendee id)))[:32]   (128 bits)

Each experiment has its own random 256-bit key, held by the control plane. When an experiment is
archived its key is destroyed, after which nobody — the control plane included — can recompute
a pseudonym from an attendee id, so the experiment's records can no longer be linked to anyone.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_BYTES = 32
PSEUDONYM_HEX = 32


def new_experiment_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def pseudonym(key: bytes, attendee_id: str) -> str:
    return hmac.new(key, attendee_id.encode("utf-8"), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]
