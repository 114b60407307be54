"""Signed snapshots: what an edge accepts, and each way it refuses one (the rejection reason)."""

from __future__ import annotations

import base64
import json

import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

import edgeloop.sync.snapshot as snapshot_module
from edgeloop.model import FlagSet, load_flags
from edgeloop.sync import (
    SignedSnapshot,
    SnapshotRejected,
    SnapshotSigner,
    SnapshotVerifier,
    decode_signed,
)

DOC = """
metadata: {owner: growth}
segments:
  vip: {attr: tier, eq: vip}
flags:
  promo:
    type: string
    variants: {calm: "Join us", bold: "Last chance!"}
    default_variant: calm
    rules:
      - when: {segment: vip}
        variant: bold
"""
ISSUED_AT = 1_796_148_000.5


@pytest.fixture(scope="module")
def signer() -> SnapshotSigner:
    return SnapshotSigner.generate()


@pytest.fixture(scope="module")
def verifier(signer: SnapshotSigner) -> SnapshotVerifier:
    return SnapshotVerifier(signer.public_key)


@pytest.fixture(scope="module")
def flagset() -> FlagSet:
    return load_flags(DOC, "doc.yaml")


@pytest.fixture(scope="module")
def signed(signer: SnapshotSigner, flagset: FlagSet) -> SignedSnapshot:
    return signer.sign(7, ISSUED_AT, flagset)


def sign_raw(signer: SnapshotSigner, payload: bytes) -> str:
    """Sign arbitrary bytes with the signer's key (as a buggy control plane could)."""
    key = serialization.load_pem_private_key(signer.to_pem(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return base64.b64encode(key.sign(payload)).decode()


def rejected(verifier: SnapshotVerifier, snapshot: SignedSnapshot) -> SnapshotRejected:
    with pytest.raises(SnapshotRejected) as info:
        verifier.verify(snapshot)
    return info.value


# --- the good path ----------------------------------------------------------------------------


def test_a_signed_snapshot_survives_the_wire_and_verifies(
    signed: SignedSnapshot, verifier: SnapshotVerifier, flagset: FlagSet
) -> None:
    wire = msgspec.json.encode(signed)

    verified = verifier.verify(decode_signed(wire))

    assert (verified.version, verified.issued_at) == (7, ISSUED_AT)
    assert verified.flagset == flagset
    assert verified.signed == signed
    assert decode_signed(wire.decode()) == signed  # text works as well as bytes


def test_the_payload_states_its_version_time_and_document(signed: SignedSnapshot) -> None:
    payload = json.loads(signed.payload)
    assert payload["version"] == signed.version == 7
    assert payload["issued_at"] == ISSUED_AT
    assert payload["document"]["flags"]["promo"]["default_variant"] == "calm"


def test_the_public_key_is_32_raw_bytes_in_base64(signer: SnapshotSigner) -> None:
    assert len(base64.b64decode(signer.public_key, validate=True)) == 32


# --- refusals ---------------------------------------------------------------------------------


def test_a_forged_signature_is_rejected(signed: SignedSnapshot, verifier: SnapshotVerifier) -> None:
    other = SnapshotSigner.generate()
    forged = SignedSnapshot(signed.version, signed.payload, sign_raw(other, b"anything"))
    flipped = bytearray(base64.b64decode(signed.signature))
    flipped[0] ^= 1
    one_bit = SignedSnapshot(signed.version, signed.payload, base64.b64encode(flipped).decode())

    for snapshot in (
        forged,
        one_bit,
        SignedSnapshot(signed.version, signed.payload, ""),
        SignedSnapshot(signed.version, signed.payload, "not base64!"),
        SignedSnapshot(signed.version, signed.payload, base64.b64encode(b"short").decode()),
    ):
        error = rejected(verifier, snapshot)
        assert (error.reason, error.detail) == ("bad_signature", "version 7")


def test_a_tampered_payload_is_rejected(signed: SignedSnapshot, verifier: SnapshotVerifier) -> None:
    bolder = signed.payload.replace('"default_variant":"calm"', '"default_variant":"bold"')
    assert bolder != signed.payload
    # Even a change that keeps the JSON's meaning: the signature covers the exact bytes.
    reformatted = json.dumps(json.loads(signed.payload), indent=2)

    for payload in (bolder, reformatted, signed.payload + " "):
        snapshot = SignedSnapshot(signed.version, payload, signed.signature)
        assert rejected(verifier, snapshot).reason == "bad_signature"


def test_an_old_payload_relabelled_as_a_newer_version_is_rejected(
    signed: SignedSnapshot, verifier: SnapshotVerifier
) -> None:
    relabelled = SignedSnapshot(8, signed.payload, signed.signature)

    error = rejected(verifier, relabelled)

    assert (error.reason, error.detail) == ("version_mismatch", "signed 7, labelled 8")


def test_a_snapshot_signed_with_another_key_is_rejected(signed: SignedSnapshot) -> None:
    stranger = SnapshotVerifier(SnapshotSigner.generate().public_key)
    assert rejected(stranger, signed).reason == "bad_signature"


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"{",
        b"null",
        b"[]",
        b'{"version": 1, "payload": "{}"}',  # no signature
        b'{"version": "1", "payload": "{}", "signature": ""}',  # version as text
        b'{"version": 1.5, "payload": "{}", "signature": ""}',
        b'{"version": 1, "payload": {}, "signature": ""}',  # payload must be JSON *text*
        b"\xff\xfe",
        "\ud800",  # text that cannot even be encoded
    ],
)
def test_malformed_wire_json_is_rejected(wire: bytes | str) -> None:
    with pytest.raises(SnapshotRejected) as info:
        decode_signed(wire)
    assert info.value.reason == "malformed"


@pytest.mark.parametrize(
    "payload",
    [
        b"[1, 2]",
        b'{"version": 1, "issued_at": 0}',  # no document
        b'{"version": "1", "issued_at": 0, "document": {}}',
        b"not json at all",
    ],
)
def test_a_correctly_signed_payload_that_is_not_an_envelope_is_rejected(
    signer: SnapshotSigner, verifier: SnapshotVerifier, payload: bytes
) -> None:
    snapshot = SignedSnapshot(1, payload.decode(), sign_raw(signer, payload))
    assert rejected(verifier, snapshot).reason == "malformed"


def test_an_invalid_document_inside_a_correctly_signed_payload_is_rejected(
    signer: SnapshotSigner, verifier: SnapshotVerifier
) -> None:
    document = {"flags": {"promo": {"type": "boolean", "variants": {"on": 1}}}}
    payload = json.dumps({"version": 3, "issued_at": 0.0, "document": document}).encode()
    snapshot = SignedSnapshot(3, payload.decode(), sign_raw(signer, payload))

    error = rejected(verifier, snapshot)

    assert error.reason == "invalid_document"
    assert "snapshot-3:" in error.detail  # names the snapshot, like a file
    assert "flags.promo.variants.on: value 1 is not of the flag's type boolean" in error.detail
    assert "required field 'default_variant' is missing" in error.detail


def test_an_oversized_payload_is_rejected_before_any_crypto(
    signed: SignedSnapshot, verifier: SnapshotVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshot_module, "MAX_SNAPSHOT_BYTES", len(signed.payload) - 1)
    error = rejected(verifier, signed)
    assert (error.reason, error.detail) == ("too_large", f"{len(signed.payload)} bytes")


def test_a_verifier_needs_a_base64_ed25519_public_key() -> None:
    for bad in ("", "not base64!", base64.b64encode(b"too short").decode()):
        with pytest.raises(ValueError, match="not a base64 Ed25519 public key"):
            SnapshotVerifier(bad)


# --- fuzzing: nothing but SnapshotRejected escapes --------------------------------------------


@given(st.binary(max_size=300))
def test_decode_signed_of_any_bytes_returns_a_snapshot_or_rejects(data: bytes) -> None:
    try:
        result = decode_signed(data)
    except SnapshotRejected as exc:
        assert exc.reason == "malformed"
    else:
        assert isinstance(result, SignedSnapshot)


@given(st.text(max_size=200))
def test_decode_signed_of_any_text_returns_a_snapshot_or_rejects(data: str) -> None:
    try:
        decode_signed(data)
    except SnapshotRejected as exc:
        assert exc.reason == "malformed"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
WIRE_KEYS = st.sampled_from(["version", "payload", "signature", "extra"])


@given(st.dictionaries(WIRE_KEYS, JSON_VALUES))
def test_any_json_object_decodes_or_is_rejected_and_verifying_it_only_rejects(
    obj: dict[str, object],
) -> None:
    verifier = SnapshotVerifier(base64.b64encode(bytes(32)).decode())
    try:
        snapshot = decode_signed(json.dumps(obj))
    except SnapshotRejected:
        return
    with pytest.raises(SnapshotRejected):
        verifier.verify(snapshot)


# --- the signer's key on disk -------------------------------------------------------------------


def test_the_signing_key_round_trips_through_pem(
    signer: SnapshotSigner, verifier: SnapshotVerifier, flagset: FlagSet
) -> None:
    pem = signer.to_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")

    restored = SnapshotSigner.from_pem(pem)

    assert restored.public_key == signer.public_key
    assert verifier.verify(restored.sign(9, ISSUED_AT, flagset)).version == 9


def test_from_pem_refuses_a_key_that_is_not_ed25519() -> None:
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="not an Ed25519 private key"):
        SnapshotSigner.from_pem(ec_pem)
    with pytest.raises(ValueError):
        SnapshotSigner.from_pem(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
