"""Signed snapshots: the whole ruleset at one version, signed by the control plane (Ed25519).

Wire form (JSON)::

    {"version": 42, "payload": "<JSON text>", "signature": "<base64 Ed25519 over payload bytes>"}

``payload`` is the JSON text of ``{"version": 42, "issued_at": <epoch s>, "document": {...}}``
where ``document`` is a flags-as-code document. The signature covers the payload's exact UTF-8
bytes, so verifying needs no canonical JSON; the version inside the payload must equal the outer
one, so an attacker cannot relabel an old signed payload as a newer version.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgeloop.model import FlagSet, FlagsValidationError, flagset_to_raw, load_flags_data

MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024


class SignedSnapshot(msgspec.Struct, frozen=True):
    version: int
    payload: str
    signature: str


class _Envelope(msgspec.Struct, frozen=True):
    version: int
    issued_at: float
    document: dict[str, object]


class SnapshotRejected(Exception):
    """A snapshot that must not be applied; ``reason`` is a short machine-readable label."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True, slots=True)
class VerifiedSnapshot:
    version: int
    issued_at: float
    flagset: FlagSet
    signed: SignedSnapshot


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class SnapshotSigner:
    """Holds the control plane's private key; signs each new snapshot."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> SnapshotSigner:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes) -> SnapshotSigner:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the signing key is not an Ed25519 private key")
        return cls(key)

    def to_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def public_key(self) -> str:
        """The verifying key as base64 of its 32 raw bytes: what edges are configured with."""
        raw = self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return _b64(raw)

    def sign(self, version: int, issued_at: float, flagset: FlagSet) -> SignedSnapshot:
        envelope = _Envelope(version, issued_at, flagset_to_raw(flagset))
        payload = msgspec.json.encode(envelope)
        return SignedSnapshot(version, payload.decode("utf-8"), _b64(self._key.sign(payload)))


class SnapshotVerifier:
    """Checks a snapshot against the control plane's public key before anything trusts it."""

    def __init__(self, public_key: str) -> None:
        try:
            raw = base64.b64decode(public_key, validate=True)
            self._key = Ed25519PublicKey.from_public_bytes(raw)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"not a base64 Ed25519 public key: {exc}") from None

    def verify(self, signed: SignedSnapshot) -> VerifiedSnapshot:
        payload = signed.payload.encode("utf-8")
        if len(payload) > MAX_SNAPSHOT_BYTES:
            raise SnapshotRejected("too_large", f"{len(payload)} bytes")
        try:
            signature = base64.b64decode(signed.signature, validate=True)
            self._key.verify(signature, payload)
        except (binascii.Error, ValueError, InvalidSignature):
            raise SnapshotRejected("bad_signature", f"version {signed.version}") from None
        try:
            envelope = msgspec.json.decode(payload, type=_Envelope)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise SnapshotRejected("malformed", str(exc)) from None
        if envelope.version != signed.version:
            raise SnapshotRejected(
                "version_mismatch", f"signed {envelope.version}, labelled {signed.version}"
            )
        try:
            flagset = load_flags_data(envelope.document, f"snapshot-{signed.version}")
        except FlagsValidationError as exc:
            raise SnapshotRejected("invalid_document", str(exc)) from None
        return VerifiedSnapshot(envelope.version, envelope.issued_at, flagset, signed)


def decode_signed(data: bytes | str) -> SignedSnapshot:
    """Parse the wire form; raises SnapshotRejected('malformed') on anything else."""
    try:
        return msgspec.json.decode(data, type=SignedSnapshot)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeEncodeError) as exc:
        raise SnapshotRejected("malformed", str(exc)) from None
