"""The control plane's HTTP API, as its clients see it. Read top to bottom as documentation:

1. who may call what: the whole role × endpoint matrix;
2. flags: create, update, archive, validation errors, kill switch, rollback, history, audit;
3. four-eyes launches: drafts, launch requests, approval, rejection, the four_eyes setting;
4. tokens: shown once, stored as hashes, operators manage edge tokens only;
5. snapshots for edges: the latest one (signed), the server-sent-event stream;
6. the OpenAPI description.

Every request carries a bearer token; time comes from the fake ``clock`` (see conftest.py).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx_sse import EventSource, ServerSentEvent, connect_sse

import edgeloop.control.api as control_api
from conftest import START, SYSTEM, FakeClock, bearer
from edgeloop.control import GRANTS, ControlPlane, Permission, Principal, Role
from edgeloop.control.auth import hash_token
from edgeloop.sync import SignedSnapshot, SnapshotVerifier

FLAG = {"type": "boolean", "variants": {"on": True, "off": False}, "default_variant": "off"}
FLAG_ON = {**FLAG, "default_variant": "on"}


def _client(app: FastAPI, token: str) -> TestClient:
    return TestClient(app, headers=bearer(token))


@pytest.fixture
def admin(control_app: FastAPI, tokens: dict[Role, str]) -> TestClient:
    """A client holding the admin token ('ada-admin')."""
    return _client(control_app, tokens[Role.ADMIN])


@pytest.fixture
def designer(control_app: FastAPI, tokens: dict[Role, str]) -> TestClient:
    """A client holding the designer token ('dee-designer')."""
    return _client(control_app, tokens[Role.DESIGNER])


@pytest.fixture
def operator(control_app: FastAPI, tokens: dict[Role, str]) -> TestClient:
    """A client holding the operator token ('otto-operator')."""
    return _client(control_app, tokens[Role.OPERATOR])


@pytest.fixture
def analyst(control_app: FastAPI, tokens: dict[Role, str]) -> TestClient:
    """A client holding the analyst token ('ana-analyst')."""
    return _client(control_app, tokens[Role.ANALYST])


@pytest.fixture
def edge(control_app: FastAPI, tokens: dict[Role, str]) -> TestClient:
    """A client holding the edge token ('edge-1')."""
    return _client(control_app, tokens[Role.EDGE])


def version_of(plane: ControlPlane) -> int:
    return plane.document()[0]


# =============================================================================================
# 1. Who may call what
# =============================================================================================

PUBLIC = None  # no token needed

# Every route the app serves → the permission it requires (a tuple: any one of them will do).
ROUTE_PERMISSION: dict[tuple[str, str], Permission | tuple[Permission, ...] | None] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/v1/public-key"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    # flags
    ("GET", "/v1/flags"): Permission.READ,
    ("GET", "/v1/flags/{key}"): Permission.READ,
    ("PUT", "/v1/flags/{key}"): Permission.WRITE_FLAGS,
    ("DELETE", "/v1/flags/{key}"): Permission.WRITE_FLAGS,
    ("POST", "/v1/flags/{key}/kill"): Permission.TOGGLE,
    ("POST", "/v1/flags/{key}/enable"): Permission.TOGGLE,
    ("POST", "/v1/flags/{key}/rollback"): Permission.ROLLBACK,
    ("GET", "/v1/flags/{key}/history"): Permission.READ,
    ("GET", "/v1/experiments"): Permission.READ,
    ("GET", "/v1/document"): Permission.READ,
    ("PUT", "/v1/document"): Permission.WRITE_FLAGS,
    # drafts and launches
    ("GET", "/v1/drafts"): Permission.READ,
    ("PUT", "/v1/drafts/{key}"): Permission.EDIT_DRAFTS,
    ("POST", "/v1/drafts/{key}/launch"): Permission.EDIT_DRAFTS,
    ("GET", "/v1/launch-requests"): Permission.READ,
    ("POST", "/v1/launch-requests/{request_id}/approve"): Permission.APPROVE_LAUNCH,
    ("POST", "/v1/launch-requests/{request_id}/reject"): Permission.APPROVE_LAUNCH,
    # tokens, audit, settings
    ("GET", "/v1/tokens"): (Permission.MANAGE_TOKENS, Permission.MANAGE_EDGE_TOKENS),
    ("POST", "/v1/tokens"): (Permission.MANAGE_TOKENS, Permission.MANAGE_EDGE_TOKENS),
    ("DELETE", "/v1/tokens/{token_id}"): (Permission.MANAGE_TOKENS, Permission.MANAGE_EDGE_TOKENS),
    ("GET", "/v1/audit"): Permission.READ,
    ("GET", "/v1/settings"): Permission.READ,
    ("PUT", "/v1/settings"): Permission.SETTINGS,
    # snapshots, for edges
    ("GET", "/v1/snapshots/latest"): Permission.READ_SNAPSHOTS,
    ("GET", "/v1/snapshots/stream"): Permission.READ_SNAPSHOTS,
    # telemetry: edges fetch pseudonymization keys and send aggregates; people read totals
    ("GET", "/v1/experiment-keys"): Permission.READ_EXPERIMENT_KEYS,
    ("POST", "/v1/aggregates"): Permission.SEND_AGGREGATES,
    ("GET", "/v1/experiments/{experiment}/aggregates"): Permission.READ,
    # the decision loop: reports and trips to read, reversals for operators
    ("GET", "/v1/experiments/{experiment}/report"): Permission.READ,
    ("GET", "/v1/experiments/{experiment}/trips"): Permission.READ,
    ("POST", "/v1/experiments/{experiment}/restore"): Permission.ROLLBACK,
}

# Who holds each permission: must match auth.GRANTS (checked below), so the matrix's
# expectations, derived from GRANTS, are also the ones written here.
ADMIN, DESIGNER, OPERATOR, ANALYST, EDGE = Role
HOLDERS: dict[Permission, set[Role]] = {
    Permission.READ: {ADMIN, DESIGNER, OPERATOR, ANALYST},
    Permission.WRITE_FLAGS: {ADMIN},
    Permission.EDIT_DRAFTS: {ADMIN, DESIGNER},
    Permission.APPROVE_LAUNCH: {ADMIN, OPERATOR},
    Permission.TOGGLE: {ADMIN, OPERATOR},
    Permission.ROLLBACK: {ADMIN, OPERATOR},
    Permission.MANAGE_TOKENS: {ADMIN},
    Permission.MANAGE_EDGE_TOKENS: {ADMIN, OPERATOR},
    Permission.SETTINGS: {ADMIN},
    Permission.READ_SNAPSHOTS: {ADMIN, EDGE},
    Permission.SEND_AGGREGATES: {EDGE},
    Permission.READ_EXPERIMENT_KEYS: {EDGE},
}


def needed(route: tuple[str, str]) -> tuple[Permission, ...]:
    value = ROUTE_PERMISSION[route]
    return () if value is None else value if isinstance(value, tuple) else (value,)


def served_routes(app: FastAPI) -> set[tuple[str, str]]:
    out = set()
    for route in app.routes:
        methods = getattr(route, "methods", None) or {"WEBSOCKET"}
        out |= {(m, route.path) for m in methods if m != "HEAD"}  # type: ignore[attr-defined]
    return out


def test_every_served_route_has_a_row_in_the_matrix(control_app: FastAPI) -> None:
    served = served_routes(control_app)
    assert sorted(served - ROUTE_PERMISSION.keys()) == [], "routes missing from ROUTE_PERMISSION"
    assert sorted(ROUTE_PERMISSION.keys() - served) == [], "matrix rows for routes not served"
    assert CALLS.keys() == ROUTE_PERMISSION.keys(), "every row needs a valid example request"


def test_grants_are_as_documented() -> None:
    assert {p: {r for r in Role if p in GRANTS[r]} for p in Permission} == HOLDERS


def test_every_permission_guards_some_route() -> None:
    used = {p for route in ROUTE_PERMISSION for p in needed(route)}
    assert used == set(Permission)


# An example request per route that succeeds for a caller holding the permission. A builder
# may first set state up through the plane (a flag to archive, a pending request to approve),
# so that every caller in turn meets the same preconditions.


@dataclass
class Env:
    plane: ControlPlane
    clock: FakeClock
    seq: Iterator[int] = field(default_factory=itertools.count)

    def key(self, prefix: str) -> str:
        return f"{prefix}-{next(self.seq)}"


@dataclass
class Call:
    url: str
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    ok: int = 200


MATRIX_DESIGNER = Principal("matrix-d", "matrix-designer", Role.DESIGNER)


def _seed(env: Env) -> None:
    """Version 1: flag 'promo'. Every example below can run any number of times after it."""
    env.plane.put_flag(SYSTEM, "promo", FLAG, "seed", env.clock())


def _archive(env: Env) -> Call:
    key = env.key("doomed")
    env.plane.put_flag(SYSTEM, key, FLAG, "to be archived", env.clock())
    return Call(f"/v1/flags/{key}?reason=matrix")


def _launch(env: Env) -> Call:
    key = env.key("drafted")
    env.plane.put_draft(MATRIX_DESIGNER, key, FLAG, env.clock())
    return Call(f"/v1/drafts/{key}/launch", json={"reason": "matrix"})


def _pending(env: Env, decision: str) -> Call:
    key = env.key("pending")
    env.plane.put_draft(MATRIX_DESIGNER, key, FLAG, env.clock())
    request = env.plane.request_launch(MATRIX_DESIGNER, key, "matrix", env.clock())
    return Call(f"/v1/launch-requests/{request.id}/{decision}", json={"reason": "matrix"})


def _revoke(env: Env) -> Call:
    record, _ = env.plane.create_token(SYSTEM, env.key("edge"), Role.EDGE, env.clock())
    return Call(f"/v1/tokens/{record.id}")


def _experiment_flag(experiment: str, rolled_back: list[str]) -> dict[str, Any]:
    exp: dict[str, Any] = {"key": experiment, "metrics": {"primary": "conversion_15m"}}
    if rolled_back:
        exp["rolled_back"] = rolled_back
    return {
        "type": "string",
        "variants": {"A": "a", "B": "b"},
        "default_variant": "A",
        "rules": [{"split": {"A": 50, "B": 50}}],
        "experiment": exp,
    }


def _report(env: Env) -> Call:
    key = env.key("exp")
    env.plane.put_flag(SYSTEM, key, _experiment_flag(key, []), "matrix", env.clock())
    return Call(f"/v1/experiments/{key}/report")


def _restore(env: Env) -> Call:
    key = env.key("rolled")
    env.plane.put_flag(SYSTEM, key, _experiment_flag(key, ["B"]), "matrix", env.clock())
    return Call(f"/v1/experiments/{key}/restore", json={"variant": "B", "reason": "matrix"})


DOCUMENT_YAML = (
    b"flags:\n  promo: {type: boolean, variants: {on: true, off: false}, default_variant: off}\n"
)

CALLS: dict[tuple[str, str], Callable[[Env], Call]] = {
    ("GET", "/healthz"): lambda env: Call("/healthz"),
    ("GET", "/v1/public-key"): lambda env: Call("/v1/public-key"),
    ("GET", "/openapi.json"): lambda env: Call("/openapi.json"),
    ("GET", "/docs"): lambda env: Call("/docs"),
    ("GET", "/docs/oauth2-redirect"): lambda env: Call("/docs/oauth2-redirect"),
    ("GET", "/redoc"): lambda env: Call("/redoc"),
    ("GET", "/v1/flags"): lambda env: Call("/v1/flags"),
    ("GET", "/v1/flags/{key}"): lambda env: Call("/v1/flags/promo"),
    ("PUT", "/v1/flags/{key}"): lambda env: Call(
        "/v1/flags/banner", json={"definition": FLAG, "reason": "matrix"}
    ),
    ("DELETE", "/v1/flags/{key}"): _archive,
    ("POST", "/v1/flags/{key}/kill"): lambda env: Call("/v1/flags/promo/kill", json={}),
    ("POST", "/v1/flags/{key}/enable"): lambda env: Call("/v1/flags/promo/enable", json={}),
    ("POST", "/v1/flags/{key}/rollback"): lambda env: Call(
        "/v1/flags/promo/rollback", json={"to_version": 1, "reason": "matrix"}
    ),
    ("GET", "/v1/flags/{key}/history"): lambda env: Call("/v1/flags/promo/history"),
    ("GET", "/v1/experiments"): lambda env: Call("/v1/experiments"),
    ("GET", "/v1/document"): lambda env: Call("/v1/document"),
    ("PUT", "/v1/document"): lambda env: Call(
        "/v1/document?reason=matrix",
        content=DOCUMENT_YAML,
        headers={"Content-Type": "application/yaml"},
    ),
    ("GET", "/v1/drafts"): lambda env: Call("/v1/drafts"),
    ("PUT", "/v1/drafts/{key}"): lambda env: Call("/v1/drafts/promo", json={"definition": FLAG_ON}),
    ("POST", "/v1/drafts/{key}/launch"): _launch,
    ("GET", "/v1/launch-requests"): lambda env: Call("/v1/launch-requests?status=pending"),
    ("POST", "/v1/launch-requests/{request_id}/approve"): lambda env: _pending(env, "approve"),
    ("POST", "/v1/launch-requests/{request_id}/reject"): lambda env: _pending(env, "reject"),
    ("GET", "/v1/tokens"): lambda env: Call("/v1/tokens"),
    ("POST", "/v1/tokens"): lambda env: Call(
        "/v1/tokens", json={"name": env.key("edge"), "role": "edge"}, ok=201
    ),
    ("DELETE", "/v1/tokens/{token_id}"): _revoke,
    ("GET", "/v1/audit"): lambda env: Call("/v1/audit?limit=5"),
    ("GET", "/v1/settings"): lambda env: Call("/v1/settings"),
    ("PUT", "/v1/settings"): lambda env: Call("/v1/settings", json={"four_eyes": True}),
    ("GET", "/v1/snapshots/latest"): lambda env: Call("/v1/snapshots/latest"),
    ("GET", "/v1/snapshots/stream"): lambda env: Call("/v1/snapshots/stream?after=0"),
    ("GET", "/v1/experiment-keys"): lambda env: Call("/v1/experiment-keys"),
    ("POST", "/v1/aggregates"): lambda env: Call(
        "/v1/aggregates",
        json={
            "batch_id": env.key("batch"),
            "edge": "edge-1",
            "created": START,
            "sample_rate": 1.0,
            "cells": [],
            "records": [],
        },
    ),
    ("GET", "/v1/experiments/{experiment}/aggregates"): lambda env: Call(
        "/v1/experiments/promo-exp/aggregates"
    ),
    ("GET", "/v1/experiments/{experiment}/report"): _report,
    ("GET", "/v1/experiments/{experiment}/trips"): lambda env: Call(
        "/v1/experiments/promo-exp/trips"
    ),
    ("POST", "/v1/experiments/{experiment}/restore"): _restore,
}

STREAM = ("GET", "/v1/snapshots/stream")
WHY_401 = {
    "no token": "missing bearer token",
    "unknown token": "unknown or revoked token",
    "revoked token": "unknown or revoked token",
}
Send = Callable[[str, Call, dict[str, str]], tuple[int, Any]]


def _test_client_sender(client: TestClient) -> Send:
    def send(method: str, call: Call, headers: dict[str, str]) -> tuple[int, Any]:
        response = client.request(
            method, call.url, json=call.json, content=call.content, headers=call.headers | headers
        )
        is_json = response.headers.get("content-type", "").startswith("application/json")
        return response.status_code, response.json() if is_json else response.text

    return send


def _live_sender(base_url: str) -> Send:
    """For the endpoint that never ends: status and headers only, then hang up."""

    def send(method: str, call: Call, headers: dict[str, str]) -> tuple[int, Any]:
        with (
            httpx.Client(base_url=base_url, timeout=5) as client,
            client.stream(method, call.url, headers=call.headers | headers) as response,
        ):
            if response.status_code == 200:
                return 200, response.headers["content-type"]
            response.read()
            return response.status_code, response.json()

    return send


@pytest.mark.parametrize("route", sorted(ROUTE_PERMISSION), ids=" ".join)
def test_role_endpoint_matrix(
    route: tuple[str, str],
    control: ControlPlane,
    clock: FakeClock,
    tokens: dict[Role, str],
    control_client: TestClient,
    request: pytest.FixtureRequest,
) -> None:
    """Each route × (each role, no token, unknown token, revoked token):
    401 without a valid token, 403 naming the permission a role lacks, success otherwise."""
    method, _ = route
    env = Env(control, clock)
    _seed(env)
    revoked, revoked_secret = control.create_token(SYSTEM, "revoked-admin", Role.ADMIN, clock())
    control.revoke_token(SYSTEM, revoked.id, clock())
    callers: dict[Role | str, dict[str, str]] = {role: bearer(tokens[role]) for role in Role}
    callers["no token"] = {}
    callers["unknown token"] = bearer("el_000000000000_not-a-token-anyone-was-given")
    callers["revoked token"] = bearer(revoked_secret)
    send = (
        _live_sender(request.getfixturevalue("control_server"))
        if route == STREAM
        else _test_client_sender(control_client)
    )

    permissions = needed(route)
    refused_call = CALLS[route](env)  # a refused call changes nothing, so one serves them all
    problems = []
    for caller, headers in callers.items():
        if not permissions or (
            isinstance(caller, Role) and any(p in GRANTS[caller] for p in permissions)
        ):
            call = CALLS[route](env)  # fresh preconditions for each call that should succeed
            expected = call.ok
        else:
            call = refused_call
            expected = 403 if isinstance(caller, Role) else 401
        status, body = send(method, call, headers)
        if status != expected:
            problems.append(f"{caller}: expected {expected}, got {status} {body}")
        elif expected == 401 and body["detail"] != WHY_401[caller]:
            problems.append(f"{caller}: 401 should say {WHY_401[caller]!r}: {body}")
        elif expected == 403:
            missing = [p for p in permissions if f"'{p}'" not in body["detail"]]
            if missing or f"'{caller}'" not in body["detail"]:
                problems.append(f"{caller}: 403 should name role and {permissions}: {body}")
    assert not problems, "\n".join(problems)


def test_401_says_how_to_authenticate(control_client: TestClient, tokens: dict[Role, str]) -> None:
    for headers in (
        {},
        {"Authorization": tokens[Role.ADMIN]},  # no scheme
        {"Authorization": f"Basic {tokens[Role.ADMIN]}"},  # wrong scheme
        {"Authorization": "Bearer "},
    ):
        response = control_client.get("/v1/flags", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"] == "Bearer"


# =============================================================================================
# 2. Flags
# =============================================================================================


def test_put_creates_then_updates_a_flag_each_change_a_new_version(
    admin: TestClient, control: ControlPlane
) -> None:
    assert admin.get("/v1/flags").json() == {"version": 0, "flags": {}}

    created = admin.put("/v1/flags/promo", json={"definition": FLAG, "reason": "launch"})
    assert created.status_code == 200
    assert created.json() == {"version": 1}
    assert admin.get("/v1/flags/promo").json() == {"key": "promo", "definition": FLAG}

    updated = admin.put("/v1/flags/promo", json={"definition": FLAG_ON, "reason": "default on"})
    assert updated.json() == {"version": 2}
    assert admin.get("/v1/flags").json() == {"version": 2, "flags": {"promo": FLAG_ON}}
    assert admin.get("/v1/document").json() == {
        "version": 2,
        "document": {"flags": {"promo": FLAG_ON}},
    }


def test_a_change_that_changes_nothing_makes_no_new_version(
    admin: TestClient, control: ControlPlane
) -> None:
    admin.put("/v1/flags/promo", json={"definition": FLAG})
    audit_before = admin.get("/v1/audit").json()["entries"]

    same = admin.put("/v1/flags/promo", json={"definition": FLAG, "reason": "again"})
    # Spelling out defaults ("state": "ENABLED", an empty description) is no change either.
    explicit = {**FLAG, "state": "ENABLED", "description": "", "sticky": False}
    spelled_out = admin.put("/v1/flags/promo", json={"definition": explicit})
    already_on = admin.post("/v1/flags/promo/enable", json={"reason": "it is on"})

    assert [r.json()["version"] for r in (same, spelled_out, already_on)] == [1, 1, 1]
    assert control.store.latest_snapshot().version == 1
    assert len(control.store.flag_history("promo")) == 1
    assert admin.get("/v1/audit").json()["entries"] == audit_before


def test_unknown_flag_is_404(admin: TestClient) -> None:
    for response in (
        admin.get("/v1/flags/nope"),
        admin.delete("/v1/flags/nope"),
        admin.post("/v1/flags/nope/kill", json={}),
        admin.post("/v1/flags/nope/enable", json={}),
    ):
        assert response.status_code == 404
        assert response.json() == {"detail": "no flag 'nope'"}
    assert admin.get("/v1/flags/nope/history").json() == {"key": "nope", "history": []}


def test_delete_archives_a_flag_in_a_new_version_and_keeps_its_history(
    admin: TestClient, clock: FakeClock
) -> None:
    admin.put("/v1/flags/promo", json={"definition": FLAG})
    admin.put("/v1/flags/banner", json={"definition": FLAG})
    clock.advance(60)

    archived = admin.delete("/v1/flags/promo", params={"reason": "event over"})

    assert archived.json() == {"version": 3}
    assert admin.get("/v1/flags/promo").status_code == 404
    assert list(admin.get("/v1/flags").json()["flags"]) == ["banner"]
    last = admin.get("/v1/flags/promo/history").json()["history"][-1]
    assert last["action"] == "flag.archive"
    assert (last["before"], last["after"], last["version"]) == (FLAG, None, 3)
    assert last["reason"] == "event over"
    assert admin.delete("/v1/flags/promo").status_code == 404


def test_a_flag_that_is_another_flags_prerequisite_cannot_be_archived(
    admin: TestClient, control: ControlPlane
) -> None:
    admin.put("/v1/flags/base", json={"definition": FLAG})
    gated = {**FLAG, "prerequisites": [{"flag": "base", "variant": "on"}]}
    assert admin.put("/v1/flags/gated", json={"definition": gated}).json() == {"version": 2}
    document_before = admin.get("/v1/document").json()

    refused = admin.delete("/v1/flags/base")

    assert refused.status_code == 422
    [error] = refused.json()["errors"]
    assert error["path"] == "flags.gated.prerequisites[0].flag"
    assert error["message"] == "names a missing or invalid flag 'base'"
    assert admin.get("/v1/document").json() == document_before


def test_a_bad_flag_definition_gets_422_listing_every_error(
    admin: TestClient, control: ControlPlane
) -> None:
    admin.put("/v1/flags/promo", json={"definition": FLAG})
    bad = {
        "type": "boolean",
        "variants": {"on": True, "off": 3},
        "default_variant": "maybe",
        "colour": "red",
    }

    response = admin.put("/v1/flags/broken", json={"definition": bad})

    assert response.status_code == 422
    body = response.json()
    assert body["detail"] == "invalid flags document"
    assert [(e["path"], e["message"]) for e in body["errors"]] == [
        ("flags.broken.colour", "unknown key"),
        ("flags.broken.default_variant", "names a missing variant 'maybe'"),
        ("flags.broken.variants.off", "value 3 is not of the flag's type boolean"),
    ]
    # A JSON body has no lines worth pointing at: the path says where (line 0 = no line).
    for error in body["errors"]:
        assert error["line"] == 0
        assert error["text"] == f"document: {error['path']}: {error['message']}"
    assert version_of(control) == 1
    assert admin.get("/v1/flags").json()["flags"] == {"promo": FLAG}


BAD_YAML = b"""\
flags:
  good:
    type: boolean
    variants: {enabled: true, disabled: false}
    default_variant: disabled
  bad:
    type: boolean
    variants: {enabled: true, disabled: 3}
    default_variant: maybe
    colour: red
"""

BAD_JSON = b"""\
{
  "flags": {
    "good": {"type": "boolean", "variants": {"enabled": true, "disabled": false},
             "default_variant": "disabled"},
    "bad": {
      "type": "boolean",
      "variants": {"enabled": true, "disabled": 3},
      "default_variant": "maybe",
      "colour": "red"
    }
  }
}
"""


@pytest.mark.parametrize(
    ("body", "content_type", "first_line"),
    [
        (BAD_YAML, "application/yaml", 8),
        (BAD_JSON, "application/json", 7),
        (BAD_JSON, "text/plain", 7),
    ],
    ids=["yaml", "json", "json-as-text"],
)
def test_a_bad_document_gets_422_with_file_line_and_path_of_each_error(
    admin: TestClient, control: ControlPlane, body: bytes, content_type: str, first_line: int
) -> None:
    admin.put("/v1/flags/promo", json={"definition": FLAG})
    document_before = admin.get("/v1/document").json()

    response = admin.put("/v1/document", content=body, headers={"Content-Type": content_type})

    assert response.status_code == 422
    assert [e["text"] for e in response.json()["errors"]] == [
        f"document:{first_line}: flags.bad.variants.disabled: "
        "value 3 is not of the flag's type boolean",
        f"document:{first_line + 1}: flags.bad.default_variant: names a missing variant 'maybe'",
        f"document:{first_line + 2}: flags.bad.colour: unknown key",
    ]
    assert admin.get("/v1/document").json() == document_before


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (
            b"flags:\n  promo: {type: boolean, variants: {a: true}, default_variant: a}\n",
            "application/yaml",
        ),
        (
            b'{"flags": {"promo": '
            b'{"type": "boolean", "variants": {"a": true}, "default_variant": "a"}}}',
            "application/json",
        ),
        (b"flags:\n  promo: {type: boolean, variants: {a: true}, default_variant: a}\n", None),
    ],
    ids=["yaml", "json", "no-content-type"],
)
def test_put_document_replaces_every_flag(
    admin: TestClient, body: bytes, content_type: str | None
) -> None:
    admin.put("/v1/flags/old", json={"definition": FLAG})
    headers = {"Content-Type": content_type} if content_type else {}

    response = admin.put("/v1/document", params={"reason": "sync"}, content=body, headers=headers)

    assert response.json() == {"version": 2}
    promo = {"type": "boolean", "variants": {"a": True}, "default_variant": "a"}
    assert admin.get("/v1/flags").json() == {"version": 2, "flags": {"promo": promo}}
    [entry] = admin.get("/v1/audit", params={"limit": 1}).json()["entries"]
    assert (entry["action"], entry["target"], entry["reason"]) == ("document.replace", "*", "sync")
    assert entry["before"] == {"old": FLAG, "promo": None}
    assert entry["after"] == {"old": None, "promo": promo}


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"", "empty document"), (b"\xff\xfe\x00", "not UTF-8 text"), (b"- 1\n- 2\n", "mapping")],
    ids=["empty", "not-utf8", "a-list"],
)
def test_a_document_that_is_not_a_flags_document_gets_422(
    admin: TestClient, control: ControlPlane, body: bytes, message: str
) -> None:
    response = admin.put("/v1/document", content=body, headers={"Content-Type": "application/yaml"})
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["text"].startswith("document:1: <document>: ")
    assert message in error["message"]
    assert version_of(control) == 0


def test_nothing_stored_is_lost_after_rejected_changes(
    admin: TestClient, designer: TestClient, control: ControlPlane
) -> None:
    admin.put("/v1/flags/base", json={"definition": FLAG})
    gated = {**FLAG, "prerequisites": [{"flag": "base", "variant": "on"}]}
    admin.put("/v1/flags/gated", json={"definition": gated})
    document, audit = admin.get("/v1/document").json(), admin.get("/v1/audit").json()
    latest = control.store.latest_snapshot()

    rejected = [
        admin.put("/v1/flags/gated", json={"definition": {**FLAG, "type": "string"}}),
        admin.put("/v1/flags/new", json={"definition": {"type": "boolean"}}),
        admin.put("/v1/document", content=BAD_YAML, headers={"Content-Type": "application/yaml"}),
        admin.delete("/v1/flags/base"),
        admin.post("/v1/flags/gated/rollback", json={"to_version": 1}),  # not there at v1
        designer.put("/v1/drafts/gated", json={"definition": {**FLAG, "variants": {}}}),
    ]

    assert [r.status_code for r in rejected] == [422, 422, 422, 422, 404, 422]
    assert admin.get("/v1/document").json() == document
    assert admin.get("/v1/audit").json() == audit
    assert control.store.latest_snapshot() == latest
    assert admin.get("/v1/drafts").json() == {"drafts": []}


def test_kill_switch_disables_a_flag_everywhere_and_enable_restores_it(
    admin: TestClient, operator: TestClient, edge: TestClient, control: ControlPlane
) -> None:
    admin.put("/v1/flags/promo", json={"definition": FLAG})
    verifier = SnapshotVerifier(control.signer.public_key)

    killed = operator.post("/v1/flags/promo/kill", json={"reason": "chat is angry"})

    assert killed.json() == {"version": 2}
    assert operator.get("/v1/flags/promo").json()["definition"]["state"] == "DISABLED"
    snapshot = verifier.verify(SignedSnapshot(**edge.get("/v1/snapshots/latest").json()))
    assert (snapshot.version, snapshot.flagset.flags["promo"].state) == (2, "DISABLED")
    assert operator.post("/v1/flags/promo/kill", json={}).json() == {"version": 2}  # no-op

    enabled = operator.post("/v1/flags/promo/enable", json={"reason": "calm again"})

    assert enabled.json() == {"version": 3}
    assert operator.get("/v1/flags/promo").json()["definition"] == FLAG  # ENABLED is the default
    actions = [h["action"] for h in operator.get("/v1/flags/promo/history").json()["history"]]
    assert actions == ["flag.create", "flag.kill", "flag.enable"]


def test_rollback_restores_an_earlier_versions_definition(
    admin: TestClient, operator: TestClient
) -> None:
    admin.put("/v1/flags/promo", json={"definition": FLAG})  # v1
    admin.put("/v1/flags/banner", json={"definition": FLAG})  # v2
    admin.put("/v1/flags/promo", json={"definition": {**FLAG_ON, "description": "bold"}})  # v3
    operator.post("/v1/flags/promo/kill", json={})  # v4

    rolled = operator.post(
        "/v1/flags/promo/rollback", json={"to_version": 1, "reason": "bold did not convert"}
    )

    assert rolled.json() == {"version": 5}
    assert operator.get("/v1/flags/promo").json()["definition"] == FLAG
    assert operator.get("/v1/flags/banner").json()["definition"] == FLAG  # others untouched
    last = operator.get("/v1/flags/promo/history").json()["history"][-1]
    assert (last["action"], last["version"]) == ("flag.rollback", 5)
    assert last["reason"] == "to version 1: bold did not convert"
    # Rolling back to where it already is changes nothing.
    assert operator.post("/v1/flags/promo/rollback", json={"to_version": 1}).json() == {
        "version": 5
    }


def test_rollback_to_a_version_without_the_flag_or_that_does_not_exist_is_404(
    admin: TestClient, operator: TestClient
) -> None:
    admin.put("/v1/flags/promo", json={"definition": FLAG})
    admin.put("/v1/flags/banner", json={"definition": FLAG})

    absent = operator.post("/v1/flags/banner/rollback", json={"to_version": 1})
    future = operator.post("/v1/flags/promo/rollback", json={"to_version": 99})
    zero = operator.post("/v1/flags/promo/rollback", json={"to_version": 0})

    assert (absent.status_code, absent.json()["detail"]) == (
        404,
        "flag 'banner' did not exist at version 1",
    )
    assert (future.status_code, future.json()["detail"]) == (404, "no snapshot version 99")
    assert zero.status_code == 422  # versions start at 1


def test_flag_history_records_who_did_what_before_after_why_and_when(
    admin: TestClient, operator: TestClient, clock: FakeClock
) -> None:
    admin.put("/v1/flags/promo", json={"definition": FLAG, "reason": "new offer"})
    clock.advance(90)
    operator.post("/v1/flags/promo/kill", json={"reason": "too many complaints"})

    history = operator.get("/v1/flags/promo/history").json()

    assert history == {
        "key": "promo",
        "history": [
            {
                "flag_key": "promo",
                "version": 1,
                "at": START,
                "actor": "ada-admin",
                "action": "flag.create",
                "before": None,
                "after": FLAG,
                "reason": "new offer",
            },
            {
                "flag_key": "promo",
                "version": 2,
                "at": START + 90,
                "actor": "otto-operator",
                "action": "flag.kill",
                "before": FLAG,
                "after": {**FLAG, "state": "DISABLED"},
                "reason": "too many complaints",
            },
        ],
    }


def test_audit_log_records_actor_role_action_diff_reason_and_time(
    admin: TestClient, operator: TestClient, analyst: TestClient, clock: FakeClock
) -> None:
    admin.put("/v1/flags/promo", json={"definition": FLAG, "reason": "new offer"})
    clock.advance(30)
    admin.put("/v1/flags/promo", json={"definition": FLAG_ON, "reason": "default on"})
    clock.advance(30)
    operator.post("/v1/flags/promo/kill", json={"reason": "complaints"})

    entries = analyst.get("/v1/audit").json()["entries"]

    # Newest first; before/after hold only the fields that changed, per flag.
    assert [{k: v for k, v in e.items() if k != "id"} for e in entries[:3]] == [
        {
            "at": START + 60,
            "actor": "otto-operator",
            "role": "operator",
            "action": "flag.kill",
            "target": "promo",
            "before": {"promo": {}},
            "after": {"promo": {"state": "DISABLED"}},
            "reason": "complaints",
        },
        {
            "at": START + 30,
            "actor": "ada-admin",
            "role": "admin",
            "action": "flag.update",
            "target": "promo",
            "before": {"promo": {"default_variant": "off"}},
            "after": {"promo": {"default_variant": "on"}},
            "reason": "default on",
        },
        {
            "at": START,
            "actor": "ada-admin",
            "role": "admin",
            "action": "flag.create",
            "target": "promo",
            "before": {"promo": None},
            "after": {"promo": FLAG},
            "reason": "new offer",
        },
    ]
    # The fixtures' tokens were created by 'system' before any of this.
    assert {e["action"] for e in entries[3:]} == {"token.create"}
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids, reverse=True)
    page = analyst.get("/v1/audit", params={"limit": 2, "before_id": ids[0]}).json()["entries"]
    assert [e["id"] for e in page] == ids[1:3]


def test_experiments_lists_flags_that_carry_an_experiment(admin: TestClient) -> None:
    experiment = {"key": "promo-exp", "metrics": {"primary": "conversion_15m"}}
    admin.put("/v1/flags/promo", json={"definition": {**FLAG, "experiment": experiment}})
    admin.put("/v1/flags/plain", json={"definition": FLAG})

    assert admin.get("/v1/experiments").json() == {
        "version": 2,
        "experiments": [{"flag": "promo", **experiment, "state": "ENABLED"}],
    }


# =============================================================================================
# 3. Four-eyes launches
# =============================================================================================


def test_a_designers_launch_waits_for_an_operators_approval(
    designer: TestClient, operator: TestClient, control: ControlPlane, clock: FakeClock
) -> None:
    draft = designer.put("/v1/drafts/promo", json={"definition": FLAG})
    assert draft.json() == {
        "flag_key": "promo",
        "definition": FLAG,
        "author": "dee-designer",
        "updated_at": START,
    }
    clock.advance(10)

    launch = designer.post("/v1/drafts/promo/launch", json={"reason": "ready for the stream"})

    request = launch.json()
    assert (request["status"], request["requested_by"], request["decided_by"]) == (
        "pending",
        "dee-designer",
        None,
    )
    assert designer.get("/v1/flags/promo").status_code == 404  # not live yet
    assert version_of(control) == 0
    pending = operator.get("/v1/launch-requests", params={"status": "pending"}).json()
    assert [r["id"] for r in pending["requests"]] == [request["id"]]
    clock.advance(10)

    approved = operator.post(
        f"/v1/launch-requests/{request['id']}/approve", json={"reason": "looks good"}
    )

    assert approved.json() == {"version": 1}
    assert operator.get("/v1/flags/promo").json()["definition"] == FLAG
    assert operator.get("/v1/drafts").json() == {"drafts": []}
    [done] = operator.get("/v1/launch-requests").json()["requests"]
    assert (done["status"], done["decided_by"], done["decided_at"]) == (
        "approved",
        "otto-operator",
        START + 20,
    )
    actions = [(e["actor"], e["action"]) for e in operator.get("/v1/audit").json()["entries"]]
    assert actions[:3] == [
        ("otto-operator", "launch.approve"),
        ("dee-designer", "launch.request"),
        ("dee-designer", "draft.update"),
    ]


def test_drafts_are_validated_against_the_live_flags(
    designer: TestClient, admin: TestClient
) -> None:
    admin.put("/v1/flags/base", json={"definition": FLAG})
    missing = {**FLAG, "prerequisites": [{"flag": "ghost", "variant": "on"}]}
    bad_variant = {**FLAG, "prerequisites": [{"flag": "base", "variant": "maybe"}]}

    for definition, (path, message) in [
        (missing, ("flags.promo.prerequisites[0].flag", "names a missing or invalid flag 'ghost'")),
        (
            bad_variant,
            ("flags.promo.prerequisites[0].variant", "flag 'base' has no variant 'maybe'"),
        ),
        ({"type": "boolean"}, ("flags.promo", "required field 'default_variant' is missing")),
    ]:
        response = designer.put("/v1/drafts/promo", json={"definition": definition})
        assert response.status_code == 422
        errors = response.json()["errors"]
        assert (errors[0]["path"], errors[0]["message"]) == (path, message)
        assert all(e["text"].startswith("draft:") for e in errors)
    assert designer.get("/v1/drafts").json() == {"drafts": []}
    assert designer.post("/v1/drafts/promo/launch", json={}).status_code == 404


def test_a_rejected_launch_stays_off_and_keeps_the_draft(
    designer: TestClient, operator: TestClient, control: ControlPlane
) -> None:
    designer.put("/v1/drafts/promo", json={"definition": FLAG})
    request_id = designer.post("/v1/drafts/promo/launch", json={}).json()["id"]

    rejected = operator.post(
        f"/v1/launch-requests/{request_id}/reject", json={"reason": "needs a guardrail"}
    )

    assert rejected.json() == {"status": "rejected"}
    assert version_of(control) == 0
    assert [d["flag_key"] for d in designer.get("/v1/drafts").json()["drafts"]] == ["promo"]
    [request] = designer.get("/v1/launch-requests", params={"status": "rejected"}).json()[
        "requests"
    ]
    assert (request["status"], request["decided_by"]) == ("rejected", "otto-operator")
    [entry] = operator.get("/v1/audit", params={"limit": 1}).json()["entries"]
    assert (entry["action"], entry["reason"]) == ("launch.reject", "needs a guardrail")
    # A decided request cannot be decided again, either way.
    for decision in ("approve", "reject"):
        again = operator.post(f"/v1/launch-requests/{request_id}/{decision}", json={})
        assert (again.status_code, again.json()["detail"]) == (
            409,
            f"launch request {request_id} is already rejected",
        )


def test_approving_twice_is_a_conflict(designer: TestClient, operator: TestClient) -> None:
    designer.put("/v1/drafts/promo", json={"definition": FLAG})
    request_id = designer.post("/v1/drafts/promo/launch", json={}).json()["id"]

    first = operator.post(f"/v1/launch-requests/{request_id}/approve", json={})
    second = operator.post(f"/v1/launch-requests/{request_id}/approve", json={})

    assert first.status_code == 200
    assert (second.status_code, second.json()["detail"]) == (
        409,
        f"launch request {request_id} is already approved",
    )
    assert operator.post("/v1/launch-requests/999/approve", json={}).status_code == 404


def test_the_requester_cannot_approve_their_own_launch_unless_admin(
    control: ControlPlane, control_app: FastAPI, admin: TestClient, clock: FakeClock
) -> None:
    # Sam holds a designer token and an operator token: both say 'sam'.
    sam_designs = _client(
        control_app, control.create_token(SYSTEM, "sam", Role.DESIGNER, clock())[1]
    )
    sam_operates = _client(
        control_app, control.create_token(SYSTEM, "sam", Role.OPERATOR, clock())[1]
    )
    sam_designs.put("/v1/drafts/promo", json={"definition": FLAG})
    request_id = sam_designs.post("/v1/drafts/promo/launch", json={}).json()["id"]

    own = sam_operates.post(f"/v1/launch-requests/{request_id}/approve", json={})

    assert own.status_code == 409
    assert "approved by someone other than its requester" in own.json()["detail"]
    assert version_of(control) == 0
    # An admin may launch their own request (the admin is trusted with everything anyway).
    admin.put("/v1/drafts/banner", json={"definition": FLAG})
    admins_own = admin.post("/v1/drafts/banner/launch", json={}).json()
    assert admins_own["status"] == "pending"
    assert admin.post(f"/v1/launch-requests/{admins_own['id']}/approve", json={}).json() == {
        "version": 1
    }


def test_with_four_eyes_off_a_designers_launch_applies_at_once(
    admin: TestClient, designer: TestClient, analyst: TestClient, control: ControlPlane
) -> None:
    assert analyst.get("/v1/settings").json()["four_eyes"] is True  # on by default

    assert admin.put("/v1/settings", json={"four_eyes": False}).json()["four_eyes"] is False
    designer.put("/v1/drafts/promo", json={"definition": FLAG})
    launched = designer.post("/v1/drafts/promo/launch", json={"reason": "small event"}).json()

    assert (launched["status"], launched["decided_by"]) == ("approved", "dee-designer")
    assert designer.get("/v1/flags/promo").json()["definition"] == FLAG
    assert version_of(control) == 1
    assert designer.get("/v1/drafts").json() == {"drafts": []}
    setting = [
        e for e in analyst.get("/v1/audit").json()["entries"] if e["action"] == "settings.update"
    ]
    assert [(s["actor"], s["before"], s["after"]) for s in setting] == [("ada-admin", True, False)]


def test_approving_a_launch_that_changes_nothing_still_closes_the_request(
    admin: TestClient, designer: TestClient, operator: TestClient
) -> None:
    admin.put("/v1/flags/promo", json={"definition": FLAG})
    designer.put("/v1/drafts/promo", json={"definition": FLAG})
    request_id = designer.post("/v1/drafts/promo/launch", json={}).json()["id"]

    operator.post(f"/v1/launch-requests/{request_id}/approve", json={})

    [request] = operator.get("/v1/launch-requests").json()["requests"]
    assert request["status"] == "approved"
    assert operator.get("/v1/drafts").json() == {"drafts": []}


# =============================================================================================
# 4. Tokens
# =============================================================================================


def test_a_new_tokens_secret_is_shown_once_and_works_as_a_bearer_token(
    admin: TestClient, control_app: FastAPI, clock: FakeClock
) -> None:
    created = admin.post("/v1/tokens", json={"name": "dashboard", "role": "analyst"})

    assert created.status_code == 201
    body = created.json()
    secret = body.pop("token")
    assert body == {
        "id": body["id"],
        "name": "dashboard",
        "role": "analyst",
        "created_at": START,
        "revoked_at": None,
    }
    assert secret.startswith(f"el_{body['id']}_")
    assert _client(control_app, secret).get("/v1/flags").status_code == 200

    listed = admin.get("/v1/tokens")
    assert secret not in listed.text
    assert hash_token(secret) not in listed.text
    [entry] = [t for t in listed.json()["tokens"] if t["id"] == body["id"]]
    assert set(entry) == {"id", "name", "role", "created_at", "revoked_at"}


def test_the_database_never_holds_a_tokens_secret(
    admin: TestClient, control: ControlPlane, tmp_path
) -> None:
    secret = admin.post("/v1/tokens", json={"name": "ci", "role": "admin"}).json()["token"]

    stored = b"".join(p.read_bytes() for p in sorted(tmp_path.glob("control.db*")))

    assert secret.encode() not in stored
    assert hash_token(secret).encode() in stored  # proof that this is where tokens live


def test_an_operator_manages_edge_tokens_only(
    operator: TestClient, admin: TestClient, tokens: dict[Role, str]
) -> None:
    new_edge = operator.post("/v1/tokens", json={"name": "stage-left", "role": "edge"})
    assert new_edge.status_code == 201

    for role in ("admin", "designer", "operator", "analyst"):
        refused = operator.post("/v1/tokens", json={"name": "x", "role": role})
        assert (refused.status_code, refused.json()["detail"]) == (
            403,
            "role 'operator' may manage only edge tokens",
        )
    listed = operator.get("/v1/tokens").json()["tokens"]
    assert {t["role"] for t in listed} == {"edge"}
    assert {t["name"] for t in listed} == {"edge-1", "stage-left"}

    admin_id = next(
        t["id"] for t in admin.get("/v1/tokens").json()["tokens"] if t["role"] == "admin"
    )
    assert operator.delete(f"/v1/tokens/{admin_id}").status_code == 403
    assert admin.get("/v1/flags").status_code == 200  # still valid
    assert operator.delete(f"/v1/tokens/{new_edge.json()['id']}").json() == {"status": "revoked"}


def test_a_revoked_token_is_refused(
    admin: TestClient, control_app: FastAPI, clock: FakeClock
) -> None:
    created = admin.post("/v1/tokens", json={"name": "edge-2", "role": "edge"}).json()
    edge_2 = _client(control_app, created["token"])
    admin.put("/v1/flags/promo", json={"definition": FLAG})
    assert edge_2.get("/v1/snapshots/latest").status_code == 200
    clock.advance(5)

    assert admin.delete(f"/v1/tokens/{created['id']}").json() == {"status": "revoked"}

    refused = edge_2.get("/v1/snapshots/latest")
    assert (refused.status_code, refused.json()["detail"]) == (401, "unknown or revoked token")
    [listed] = [t for t in admin.get("/v1/tokens").json()["tokens"] if t["id"] == created["id"]]
    assert listed["revoked_at"] == START + 5
    assert admin.delete(f"/v1/tokens/{created['id']}").status_code == 404  # already revoked
    assert admin.delete("/v1/tokens/nope").status_code == 404
    [entry] = admin.get("/v1/audit", params={"limit": 1}).json()["entries"]
    assert (entry["action"], entry["target"], entry["actor"]) == (
        "token.revoke",
        created["id"],
        "ada-admin",
    )


# =============================================================================================
# 5. Snapshots for edges
# =============================================================================================


def test_the_latest_snapshot_is_signed_and_verifiable(
    admin: TestClient, edge: TestClient, control: ControlPlane
) -> None:
    assert edge.get("/v1/snapshots/latest").status_code == 404  # nothing pushed yet
    admin.put("/v1/flags/promo", json={"definition": FLAG})
    admin.put("/v1/flags/banner", json={"definition": FLAG_ON})
    public_key = admin.get("/v1/public-key").json()
    assert public_key == {"public_key": control.signer.public_key, "algorithm": "Ed25519"}

    latest = edge.get("/v1/snapshots/latest").json()
    verified = SnapshotVerifier(public_key["public_key"]).verify(SignedSnapshot(**latest))

    assert verified.version == latest["version"] == 2
    assert verified.issued_at == START
    assert sorted(verified.flagset.flags) == ["banner", "promo"]
    assert json.loads(latest["payload"])["document"] == admin.get("/v1/document").json()["document"]


def _snapshot_events(source: EventSource) -> Iterator[ServerSentEvent]:
    return (event for event in source.iter_sse() if event.event == "snapshot")


def _versions(plane: ControlPlane, count: int) -> None:
    """Make ``count`` more snapshot versions by flipping the flag's default."""
    for _ in range(count):
        current = plane.document()[1]["flags"].get("promo", FLAG_ON)
        flipped = FLAG if current["default_variant"] == "on" else FLAG_ON
        plane.put_flag(SYSTEM, "promo", flipped, "flip", START)


def test_the_stream_sends_every_version_after_n_in_order_then_new_ones_as_they_come(
    control_server: str, control: ControlPlane, tokens: dict[Role, str]
) -> None:
    _versions(control, 55)  # more than one page (50) of snapshots
    verifier = SnapshotVerifier(control.signer.public_key)
    timeout = httpx.Timeout(5.0)
    with (
        httpx.Client(
            base_url=control_server, headers=bearer(tokens[Role.EDGE]), timeout=timeout
        ) as client,
        connect_sse(client, "GET", "/v1/snapshots/stream", params={"after": 3}) as source,
    ):
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        events = _snapshot_events(source)
        backlog = list(itertools.islice(events, 52))
        assert [int(e.id) for e in backlog] == list(range(4, 56))

        client.put(  # a change made while the edge listens arrives at once
            "/v1/flags/banner",
            json={"definition": FLAG},
            headers=bearer(tokens[Role.ADMIN]),
        )
        live = next(events)

    assert live.id == "56"
    snapshot = verifier.verify(msgspec.json.decode(live.data, type=SignedSnapshot))
    assert snapshot.version == 56
    assert "banner" in snapshot.flagset.flags
    for event in backlog:
        assert verifier.verify(msgspec.json.decode(event.data, type=SignedSnapshot)).version == int(
            event.id
        )


def test_the_stream_resumes_after_last_event_id(
    control_server: str, control: ControlPlane, tokens: dict[Role, str]
) -> None:
    _versions(control, 4)
    headers = bearer(tokens[Role.EDGE]) | {"Last-Event-ID": "2"}
    with (
        httpx.Client(base_url=control_server, headers=headers, timeout=5.0) as client,
        # Last-Event-ID (set by a reconnecting EventSource) wins over ?after=.
        connect_sse(client, "GET", "/v1/snapshots/stream", params={"after": 0}) as source,
    ):
        assert [e.id for e in itertools.islice(_snapshot_events(source), 2)] == ["3", "4"]


def test_an_idle_stream_sends_keepalive_comments(
    control_server: str, tokens: dict[Role, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control_api, "KEEPALIVE_S", 0.05)
    with (
        httpx.Client(
            base_url=control_server, headers=bearer(tokens[Role.EDGE]), timeout=5.0
        ) as client,
        client.stream("GET", "/v1/snapshots/stream") as response,
    ):
        lines = response.iter_lines()
        assert next(lines) == ": edgeloop snapshot stream"
        assert ": keepalive" in itertools.islice(lines, 4)


# =============================================================================================
# 6. OpenAPI
# =============================================================================================


def test_openapi_describes_every_endpoint(control_client: TestClient, control_app: FastAPI) -> None:
    response = control_client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec["info"]["title"] == "edgeloop control plane"
    documented = {(m.upper(), path) for path, ops in spec["paths"].items() for m in ops}
    api_routes = {
        (m, path)
        for m, path in served_routes(control_app)
        if path not in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
    }
    assert documented == api_routes
    body = spec["paths"]["/v1/document"]["put"]["requestBody"]["content"]
    assert {"application/yaml", "application/json"} <= body.keys()
    assert "swagger-ui" in control_client.get("/docs").text.lower()
