"""The control plane's behaviour, independent of HTTP: every change becomes a signed snapshot.

Callers pass ``now``; the HTTP layer reads the clock. Errors are typed so the API can map them:
``InvalidChange`` (422, with the loader's issues), ``NotFound`` (404), ``Conflict`` (409).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import msgspec

from edgeloop.model import (
    FlagsValidationError,
    ValidationIssue,
    flagset_to_raw,
    load_flags,
    load_flags_data,
)
from edgeloop.model.aggregates import decode_aggregate_batch
from edgeloop.privacy import new_experiment_key
from edgeloop.store import (
    AuditRecord,
    ControlStore,
    Draft,
    FlagChange,
    LaunchRequest,
    StoredSnapshot,
    TokenRecord,
    VersionConflict,
)
from edgeloop.sync.hub import SnapshotHub
from edgeloop.sync.snapshot import SnapshotSigner

from .auth import Principal, Role, new_token

EMPTY_DOCUMENT: dict[str, Any] = {"flags": {}}
FOUR_EYES = "four_eyes"  # setting: a designer's launch needs an operator's approval
WEBHOOK_URL = "webhook_url"  # setting: where the decision loop posts its trips


class InvalidChange(Exception):
    def __init__(
        self, issues: list[ValidationIssue] | tuple[ValidationIssue, ...], message: str = ""
    ) -> None:
        self.issues = tuple(issues)
        super().__init__(message or "\n".join(str(i) for i in issues))


class NotFound(Exception):
    pass


class InvalidBatch(Exception):
    pass


class Conflict(Exception):
    pass


class ControlPlane:
    def __init__(
        self, store: ControlStore, signer: SnapshotSigner, hub: SnapshotHub | None = None
    ) -> None:
        self.store = store
        self.signer = signer
        self.hub = hub or SnapshotHub()
        latest = store.latest_snapshot()
        self.hub.version = latest.version if latest else 0

    # reading -----------------------------------------------------------------------------

    def document(self) -> tuple[int, dict[str, Any]]:
        """The live document and its version (0 and an empty document before any change)."""
        latest = self.store.latest_snapshot()
        if latest is None:
            return 0, copy.deepcopy(EMPTY_DOCUMENT)
        return latest.version, json.loads(latest.payload)["document"]

    def flag(self, key: str) -> dict[str, Any]:
        _, doc = self.document()
        found = doc["flags"].get(key)
        if found is None:
            raise NotFound(f"no flag {key!r}")
        return found

    def document_at(self, version: int) -> dict[str, Any]:
        found = self.store.snapshots_after(version - 1, limit=1)
        if not found or found[0].version != version:
            raise NotFound(f"no snapshot version {version}")
        return json.loads(found[0].payload)["document"]

    def four_eyes(self) -> bool:
        value = self.store.get_setting(FOUR_EYES)
        return True if value is None else bool(value)

    # changing flags: every path ends in _commit ------------------------------------------

    def commit(
        self,
        who: Principal,
        action: str,
        target: str,
        new_doc: dict[str, Any],
        reason: str,
        now: float,
        **extra: Any,
    ) -> int:
        version, old_doc = self.document()
        try:
            flagset = load_flags_data(new_doc, "document")
        except FlagsValidationError as exc:
            raise InvalidChange(exc.issues) from None
        # Compare what would be stored (defaults dropped), so restating a default is no change.
        new_doc = flagset_to_raw(flagset)
        changes = _diff(old_doc.get("flags", {}), new_doc.get("flags", {}), action)
        if not changes and _meta(old_doc) == _meta(new_doc):
            return version  # nothing to do: no new snapshot, no audit noise
        # Keys first: a crash after this leaves a spare key, never a live experiment without one.
        self._add_experiment_keys(new_doc, now)
        signed = self.signer.sign(version + 1, now, flagset)
        stored = StoredSnapshot(signed.version, signed.payload, signed.signature, now)
        diffs = {c.flag_key: _field_diff(c.before, c.after) for c in changes}
        audit = AuditRecord(
            at=now,
            actor=who.name,
            role=str(who.role),
            action=action,
            target=target,
            before={k: b for k, (b, _) in diffs.items()},
            after={k: a for k, (_, a) in diffs.items()},
            reason=reason,
        )
        try:
            self.store.commit_snapshot(stored, changes, audit, **extra)
        except VersionConflict as exc:
            raise Conflict(str(exc)) from None
        self._destroy_archived_keys(new_doc, now)
        self.hub.publish(stored.version)
        return stored.version

    # privacy keys and aggregates -------------------------------------------------------------

    @staticmethod
    def _experiments(doc: dict[str, Any]) -> set[str]:
        return {f["experiment"]["key"] for f in doc.get("flags", {}).values() if "experiment" in f}

    def _add_experiment_keys(self, doc: dict[str, Any], now: float) -> None:
        """A key for every live experiment."""
        held = self.store.experiment_keys()
        for experiment in sorted(self._experiments(doc) - held.keys()):
            self.store.add_experiment_key(experiment, new_experiment_key(), now)

    def _destroy_archived_keys(self, doc: dict[str, Any], now: float) -> None:
        """An archived experiment's key is destroyed, after which its pseudonymous records can
        no longer be linked to any attendee."""
        held = self.store.experiment_keys()
        for experiment in sorted(held.keys() - self._experiments(doc)):
            self.store.destroy_experiment_key(experiment)
            system = AuditRecord(now, "system", "system", "experiment.key_destroyed", experiment)
            self.store.append_audit(system)

    def experiment_keys(self) -> dict[str, bytes]:
        return self.store.experiment_keys()

    def ingest_aggregates(self, body: bytes, now: float) -> bool:
        """Idempotent: True if the batch was new, False if it had been ingested before."""
        try:
            batch = decode_aggregate_batch(body)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise InvalidBatch(str(exc)) from None
        return self.store.ingest_batch(batch, now)

    def replace_document(self, who: Principal, text: str | bytes, reason: str, now: float) -> int:
        try:
            flagset = load_flags(text, "document")
        except FlagsValidationError as exc:
            raise InvalidChange(exc.issues) from None
        return self.commit(who, "document.replace", "*", flagset_to_raw(flagset), reason, now)

    def put_flag(self, who: Principal, key: str, definition: Any, reason: str, now: float) -> int:
        _, doc = self.document()
        action = "flag.update" if key in doc["flags"] else "flag.create"
        doc["flags"][key] = definition
        return self.commit(who, action, key, doc, reason, now)

    def archive_flag(self, who: Principal, key: str, reason: str, now: float) -> int:
        _, doc = self.document()
        if key not in doc["flags"]:
            raise NotFound(f"no flag {key!r}")
        del doc["flags"][key]
        return self.commit(who, "flag.archive", key, doc, reason, now)

    def set_state(self, who: Principal, key: str, state: str, reason: str, now: float) -> int:
        """Toggle a flag ENABLED/DISABLED; DISABLED is the kill switch."""
        _, doc = self.document()
        flag = doc["flags"].get(key)
        if flag is None:
            raise NotFound(f"no flag {key!r}")
        flag["state"] = state
        action = "flag.kill" if state == "DISABLED" else "flag.enable"
        return self.commit(who, action, key, doc, reason, now)

    def rollback_flag(
        self, who: Principal, key: str, to_version: int, reason: str, now: float
    ) -> int:
        old = self.document_at(to_version)["flags"].get(key)
        if old is None:
            raise NotFound(f"flag {key!r} did not exist at version {to_version}")
        _, doc = self.document()
        doc["flags"][key] = old
        return self.commit(
            who, "flag.rollback", key, doc, f"to version {to_version}: {reason}", now
        )

    # drafts and four-eyes launches ----------------------------------------------------------

    def put_draft(self, who: Principal, key: str, definition: Any, now: float) -> Draft:
        # Validate the draft in the context of the live document, so a launch cannot fail later
        # for a reason the designer could have seen now.
        _, doc = self.document()
        doc["flags"][key] = definition
        try:
            load_flags_data(doc, "draft")
        except FlagsValidationError as exc:
            raise InvalidChange(exc.issues) from None
        draft = Draft(key, definition, who.name, now)
        self.store.put_draft(draft)
        self.store.append_audit(
            AuditRecord(now, who.name, str(who.role), "draft.update", key, None, definition)
        )
        return draft

    def request_launch(self, who: Principal, key: str, reason: str, now: float) -> LaunchRequest:
        draft = self.store.get_draft(key)
        if draft is None:
            raise NotFound(f"no draft for flag {key!r}")
        request = LaunchRequest(
            0, key, draft.definition, who.name, now, "pending", None, None, reason
        )
        request_id = self.store.add_launch_request(request)
        self.store.append_audit(
            AuditRecord(now, who.name, str(who.role), "launch.request", key, None, None, reason)
        )
        if not self.four_eyes():
            self._launch(
                who,
                request_id,
                key,
                draft.definition,
                "launch without approval (four-eyes off)",
                now,
            )
        found = self.store.get_launch_request(request_id)
        assert found is not None
        return found

    def approve_launch(self, who: Principal, request_id: int, reason: str, now: float) -> int:
        request = self._pending(request_id)
        if request.requested_by == who.name and who.role is not Role.ADMIN:
            raise Conflict(
                "four-eyes: a launch must be approved by someone other than its requester"
            )
        return self._launch(who, request_id, request.flag_key, request.definition, reason, now)

    def reject_launch(self, who: Principal, request_id: int, reason: str, now: float) -> None:
        request = self._pending(request_id)
        self.store.decide_launch_request(request_id, "rejected", who.name, now)
        self.store.append_audit(
            AuditRecord(
                now, who.name, str(who.role), "launch.reject", request.flag_key, None, None, reason
            )
        )

    def _pending(self, request_id: int) -> LaunchRequest:
        request = self.store.get_launch_request(request_id)
        if request is None:
            raise NotFound(f"no launch request {request_id}")
        if request.status != "pending":
            raise Conflict(f"launch request {request_id} is already {request.status}")
        return request

    def _launch(
        self, who: Principal, request_id: int, key: str, definition: Any, reason: str, now: float
    ) -> int:
        before, doc = self.document()
        doc["flags"][key] = definition
        version = self.commit(
            who,
            "launch.approve",
            key,
            doc,
            reason,
            now,
            draft_done=key,
            launch_request=(request_id, "approved", who.name, now),
        )
        if version == before:  # the draft equals the live flag: close the request all the same
            self.store.decide_launch_request(request_id, "approved", who.name, now)
            self.store.delete_draft(key)
            self.store.append_audit(
                AuditRecord(now, who.name, str(who.role), "launch.approve", key, None, None, reason)
            )
        return version

    # tokens and settings -------------------------------------------------------------------

    def create_token(
        self, who: Principal, name: str, role: Role, now: float
    ) -> tuple[TokenRecord, str]:
        token_id, token, token_hash = new_token()
        record = TokenRecord(token_id, name, str(role), now, None)
        self.store.add_token(record, token_hash)
        self.store.append_audit(
            AuditRecord(
                now,
                who.name,
                str(who.role),
                "token.create",
                token_id,
                None,
                {"name": name, "role": str(role)},
            )
        )
        return record, token

    def revoke_token(self, who: Principal, token_id: str, now: float) -> None:
        if not self.store.revoke_token(token_id, now):
            raise NotFound(f"no active token {token_id!r}")
        self.store.append_audit(AuditRecord(now, who.name, str(who.role), "token.revoke", token_id))

    def set_four_eyes(self, who: Principal, enabled: bool, now: float) -> None:
        before = self.four_eyes()
        self.store.set_setting(FOUR_EYES, enabled)
        self.store.append_audit(
            AuditRecord(now, who.name, str(who.role), "settings.update", FOUR_EYES, before, enabled)
        )

    def webhook_url(self) -> str | None:
        value = self.store.get_setting(WEBHOOK_URL)
        return value if isinstance(value, str) and value else None

    def set_webhook_url(self, who: Principal, url: str | None, now: float) -> None:
        before = self.webhook_url()
        self.store.set_setting(WEBHOOK_URL, url or "")
        self.store.append_audit(
            AuditRecord(now, who.name, str(who.role), "settings.update", WEBHOOK_URL, before, url)
        )

    def bootstrap_admin(self, now: float, name: str = "bootstrap-admin") -> str | None:
        """On first start only (no token exists yet): create an admin token and return it."""
        if self.store.list_tokens():
            return None
        system = Principal("system", "system", Role.ADMIN)
        _, token = self.create_token(system, name, Role.ADMIN, now)
        return token


def _meta(doc: dict[str, Any]) -> tuple[Any, Any]:
    return doc.get("metadata"), doc.get("segments")


def _diff(old: dict[str, Any], new: dict[str, Any], action: str) -> list[FlagChange]:
    changes = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before != after:
            changes.append(FlagChange(key, action, before, after))
    return changes


def _field_diff(before: Any, after: Any) -> tuple[Any, Any]:
    """Only the fields of a flag that changed (whole definitions for a created/archived flag)."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return before, after
    keys = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return {k: before[k] for k in keys if k in before}, {k: after[k] for k in keys if k in after}
