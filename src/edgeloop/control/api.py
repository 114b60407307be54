"""The control plane's REST API (FastAPI): a thin shell over ControlPlane.

FastAPI rather than bare Starlette here because the control plane's value is a typed,
documented API (OpenAPI at /openapi.json) for the dashboard and scripts, not raw speed; the
edge, whose value is speed, is plain Starlette/ASGI.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

import msgspec
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from edgeloop.model import load_flags_data
from edgeloop.model.errors import format_path
from edgeloop.privacy import DEFAULT_K, suppressed
from edgeloop.store import StoredSnapshot

from .auth import Permission, Principal, Role, hash_token
from .loop import DecisionLoop
from .reports import report_json
from .service import Conflict, ControlPlane, InvalidBatch, InvalidChange, NotFound

KEEPALIVE_S = 15.0
MAX_AGGREGATE_BYTES = 16 << 20


class Reason(BaseModel):
    reason: str = Field("", max_length=2000, description="Why: kept in the audit log.")


class FlagBody(BaseModel):
    definition: dict[str, Any] = Field(description="The flag as in a flags-as-code document.")
    reason: str = Field("", max_length=2000)


class Rollback(BaseModel):
    to_version: int = Field(ge=1, description="Snapshot version whose definition to restore.")
    reason: str = Field("", max_length=2000)


class NewToken(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    role: Role


class Settings(BaseModel):
    four_eyes: bool = Field(description="A designer's launch needs an operator's approval.")
    webhook_url: str | None = Field(
        None, max_length=2000, description="Where the decision loop posts guardrail trips."
    )


class Restore(BaseModel):
    variant: str = Field(min_length=1, description="The variant to restore, or * to un-pause.")
    reason: str = Field("", max_length=2000)


def _principal(request: Request, authorization: str | None) -> Principal:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    plane: ControlPlane = request.app.state.plane
    record = plane.store.token_by_hash(hash_token(token.strip()))
    if record is None or record.revoked_at is not None:
        raise HTTPException(401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
    return Principal(record.id, record.name, Role(record.role))


def need(*permissions: Permission) -> Callable[..., Principal]:
    """A dependency: the caller's principal, which must hold one of ``permissions``."""

    def check(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
        who = _principal(request, authorization)
        if not any(who.can(p) for p in permissions):
            wanted = " or ".join(f"'{p}'" for p in permissions)
            raise HTTPException(403, f"role '{who.role}' lacks permission {wanted}")
        return who

    return check


_DOCUMENT_BODY: dict[str, Any] = {
    "required": True,
    "description": "A flags-as-code document.",
    "content": {
        "application/yaml": {"schema": {"type": "string"}},
        "application/json": {"schema": {"type": "object"}},
    },
}


def _snapshot_json(s: StoredSnapshot) -> dict[str, Any]:
    return {"version": s.version, "payload": s.payload, "signature": s.signature}


def create_control_app(
    plane: ControlPlane, clock: Callable[[], float] = time.time, loop: DecisionLoop | None = None
) -> FastAPI:
    app = FastAPI(
        title="edgeloop control plane",
        version="0.1.0",
        description="Flags, experiments, roles and audit; every change is a signed snapshot.",
    )
    app.state.plane = plane
    loop = loop or DecisionLoop(plane)
    app.state.loop = loop

    @app.exception_handler(InvalidChange)
    async def invalid(_: Request, exc: InvalidChange) -> JSONResponse:
        errors = [
            {
                "line": i.line,
                "path": format_path(i.path),
                "message": i.message,
                "text": str(i),
            }
            for i in exc.issues
        ]
        return JSONResponse({"detail": "invalid flags document", "errors": errors}, status_code=422)

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Conflict)
    async def conflict(_: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    reader = Depends(need(Permission.READ))
    writer = Depends(need(Permission.WRITE_FLAGS))
    toggler = Depends(need(Permission.TOGGLE))
    roller = Depends(need(Permission.ROLLBACK))
    drafter = Depends(need(Permission.EDIT_DRAFTS))
    configurer = Depends(need(Permission.SETTINGS))

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": plane.hub.version}

    @app.get("/v1/public-key", tags=["sync"])
    def public_key() -> dict[str, str]:
        """The Ed25519 key edges verify snapshots with (public by nature)."""
        return {"public_key": plane.signer.public_key, "algorithm": "Ed25519"}

    # flags -------------------------------------------------------------------------------

    @app.get("/v1/flags", tags=["flags"])
    def list_flags(who: Principal = reader) -> dict[str, Any]:
        version, doc = plane.document()
        return {"version": version, "flags": doc["flags"]}

    @app.get("/v1/flags/{key}", tags=["flags"])
    def get_flag(key: str, who: Principal = reader) -> dict[str, Any]:
        return {"key": key, "definition": plane.flag(key)}

    @app.put("/v1/flags/{key}", tags=["flags"])
    def put_flag(key: str, body: FlagBody, who: Principal = writer) -> dict[str, int]:
        return {"version": plane.put_flag(who, key, body.definition, body.reason, clock())}

    @app.delete("/v1/flags/{key}", tags=["flags"])
    def archive_flag(
        key: str, reason: Annotated[str, Query(max_length=2000)] = "", who: Principal = writer
    ) -> dict[str, int]:
        return {"version": plane.archive_flag(who, key, reason, clock())}

    @app.post("/v1/flags/{key}/kill", tags=["flags"])
    def kill(key: str, body: Reason, who: Principal = toggler) -> dict[str, int]:
        """The kill switch: the flag is DISABLED everywhere in a new snapshot."""
        return {"version": plane.set_state(who, key, "DISABLED", body.reason, clock())}

    @app.post("/v1/flags/{key}/enable", tags=["flags"])
    def enable(key: str, body: Reason, who: Principal = toggler) -> dict[str, int]:
        return {"version": plane.set_state(who, key, "ENABLED", body.reason, clock())}

    @app.post("/v1/flags/{key}/rollback", tags=["flags"])
    def rollback(key: str, body: Rollback, who: Principal = roller) -> dict[str, int]:
        return {"version": plane.rollback_flag(who, key, body.to_version, body.reason, clock())}

    @app.get("/v1/flags/{key}/history", tags=["flags"])
    def history(key: str, who: Principal = reader) -> dict[str, Any]:
        return {"key": key, "history": msgspec.to_builtins(plane.store.flag_history(key))}

    @app.get("/v1/experiments", tags=["flags"])
    def experiments(who: Principal = reader) -> dict[str, Any]:
        version, doc = plane.document()
        found = [
            {"flag": key, **flag["experiment"], "state": flag.get("state", "ENABLED")}
            for key, flag in doc["flags"].items()
            if "experiment" in flag
        ]
        return {"version": version, "experiments": found}

    @app.get("/v1/document", tags=["flags"])
    def get_document(who: Principal = reader) -> dict[str, Any]:
        version, doc = plane.document()
        return {"version": version, "document": doc}

    @app.put("/v1/document", tags=["flags"], openapi_extra={"requestBody": _DOCUMENT_BODY})
    async def put_document(
        request: Request,
        reason: Annotated[str, Query(max_length=2000)] = "",
        who: Principal = writer,
    ) -> dict[str, int]:
        """Replace the whole flags-as-code document (YAML or JSON text).

        The raw body goes to the loader whatever its content type, so a JSON document sent as
        application/json, or text that is not UTF-8, gets the loader's file:line errors too."""
        text = await request.body()
        return {
            "version": await run_in_threadpool(plane.replace_document, who, text, reason, clock())
        }

    # drafts and launches ---------------------------------------------------------------------

    @app.get("/v1/drafts", tags=["launches"])
    def drafts(who: Principal = reader) -> dict[str, Any]:
        return {"drafts": msgspec.to_builtins(plane.store.list_drafts())}

    @app.put("/v1/drafts/{key}", tags=["launches"])
    def put_draft(key: str, body: FlagBody, who: Principal = drafter) -> dict[str, Any]:
        return msgspec.to_builtins(plane.put_draft(who, key, body.definition, clock()))

    @app.post("/v1/drafts/{key}/launch", tags=["launches"])
    def request_launch(key: str, body: Reason, who: Principal = drafter) -> dict[str, Any]:
        return msgspec.to_builtins(plane.request_launch(who, key, body.reason, clock()))

    @app.get("/v1/launch-requests", tags=["launches"])
    def launch_requests(
        status: Literal["pending", "approved", "rejected"] | None = None, who: Principal = reader
    ) -> dict[str, Any]:
        return {"requests": msgspec.to_builtins(plane.store.list_launch_requests(status))}

    approver = Depends(need(Permission.APPROVE_LAUNCH))

    @app.post("/v1/launch-requests/{request_id}/approve", tags=["launches"])
    def approve(request_id: int, body: Reason, who: Principal = approver) -> dict[str, int]:
        return {"version": plane.approve_launch(who, request_id, body.reason, clock())}

    @app.post("/v1/launch-requests/{request_id}/reject", tags=["launches"])
    def reject(request_id: int, body: Reason, who: Principal = approver) -> dict[str, str]:
        plane.reject_launch(who, request_id, body.reason, clock())
        return {"status": "rejected"}

    # tokens, audit, settings -----------------------------------------------------------------

    token_manager = Depends(need(Permission.MANAGE_TOKENS, Permission.MANAGE_EDGE_TOKENS))

    def _may_manage(who: Principal, role: str) -> None:
        if not who.can(Permission.MANAGE_TOKENS) and role != Role.EDGE:
            raise HTTPException(403, f"role '{who.role}' may manage only edge tokens")

    @app.get("/v1/tokens", tags=["tokens"])
    def tokens(who: Principal = token_manager) -> dict[str, Any]:
        found = plane.store.list_tokens()
        if not who.can(Permission.MANAGE_TOKENS):
            found = [t for t in found if t.role == Role.EDGE]
        return {"tokens": msgspec.to_builtins(found)}

    @app.post("/v1/tokens", tags=["tokens"], status_code=201)
    def create_token(body: NewToken, who: Principal = token_manager) -> dict[str, Any]:
        """Create a token. The secret is in this response only: it is stored as a hash."""
        _may_manage(who, body.role)
        record, token = plane.create_token(who, body.name, body.role, clock())
        return {**msgspec.to_builtins(record), "token": token}

    @app.delete("/v1/tokens/{token_id}", tags=["tokens"])
    def revoke_token(token_id: str, who: Principal = token_manager) -> dict[str, str]:
        target = next((t for t in plane.store.list_tokens() if t.id == token_id), None)
        if target is None:
            raise NotFound(f"no token {token_id!r}")
        _may_manage(who, target.role)
        plane.revoke_token(who, token_id, clock())
        return {"status": "revoked"}

    @app.get("/v1/audit", tags=["audit"])
    def audit(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before_id: int | None = None,
        who: Principal = reader,
    ) -> dict[str, Any]:
        return {"entries": msgspec.to_builtins(plane.store.audit_log(limit, before_id))}

    def settings() -> Settings:
        return Settings(four_eyes=plane.four_eyes(), webhook_url=plane.webhook_url())

    @app.get("/v1/settings", tags=["settings"])
    def get_settings(who: Principal = reader) -> Settings:
        return settings()

    @app.put("/v1/settings", tags=["settings"])
    def put_settings(body: Settings, who: Principal = configurer) -> Settings:
        now = clock()
        if body.four_eyes != plane.four_eyes():
            plane.set_four_eyes(who, body.four_eyes, now)
        if body.webhook_url != plane.webhook_url():
            plane.set_webhook_url(who, body.webhook_url, now)
        return settings()

    # the decision loop ------------------------------------------------------------------------

    @app.get("/v1/experiments/{experiment}/report", tags=["experiments"])
    def report(experiment: str, who: Principal = reader) -> dict[str, Any]:
        """Per-variant metrics, comparisons with fixed and always-valid intervals, SRM."""
        flag = _experiment_flag(plane, experiment)
        return report_json(loop.report_for(flag, clock()))

    @app.get("/v1/experiments/{experiment}/trips", tags=["experiments"])
    def trips(experiment: str, who: Principal = reader) -> dict[str, Any]:
        """What the decision loop did, with its evidence, and who reversed it."""
        return {"trips": msgspec.to_builtins(plane.store.trips(experiment))}

    @app.post("/v1/experiments/{experiment}/restore", tags=["experiments"])
    def restore(experiment: str, body: Restore, who: Principal = roller) -> dict[str, int]:
        """Reverse a rollback (or, with variant '*', a pause)."""
        return {"version": loop.restore(who, experiment, body.variant, body.reason, clock())}

    # snapshots for edges ---------------------------------------------------------------------

    snapshot_reader = Depends(need(Permission.READ_SNAPSHOTS))

    @app.get("/v1/snapshots/latest", tags=["sync"])
    def latest(who: Principal = snapshot_reader) -> dict[str, Any]:
        found = plane.store.latest_snapshot()
        if found is None:
            raise NotFound("no snapshot yet: push flags first")
        return _snapshot_json(found)

    @app.get("/v1/snapshots/stream", tags=["sync"], response_class=PlainTextResponse)
    async def stream(
        after: Annotated[int, Query(ge=0)] = 0,
        last_event_id: Annotated[str | None, Header()] = None,
        who: Principal = snapshot_reader,
    ) -> StreamingResponse:
        """Server-sent events: every snapshot newer than ``after`` (or Last-Event-ID), then
        each new one as it is committed. Event id = snapshot version, so a reconnecting client
        resumes exactly where it stopped."""
        start = int(last_event_id) if last_event_id and last_event_id.isdigit() else after
        return StreamingResponse(
            _events(plane, start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # telemetry from edges --------------------------------------------------------------------

    key_reader = Depends(need(Permission.READ_EXPERIMENT_KEYS))
    aggregate_writer = Depends(need(Permission.SEND_AGGREGATES))

    @app.get("/v1/experiment-keys", tags=["sync"])
    def experiment_keys(
        who: Principal = key_reader,
    ) -> dict[str, dict[str, str]]:
        """Per-experiment pseudonymization keys (base64), for edges only."""
        keys = plane.experiment_keys()
        return {"keys": {k: base64.b64encode(v).decode() for k, v in keys.items()}}

    @app.post("/v1/aggregates", tags=["sync"])
    async def aggregates(request: Request, who: Principal = aggregate_writer) -> dict[str, str]:
        """An edge's batch of sufficient statistics and pseudonymous records. Idempotent by
        batch id: a batch sent twice (a lost acknowledgement) is counted once."""
        body = await request.body()
        if len(body) > MAX_AGGREGATE_BYTES:
            raise HTTPException(413, f"batch larger than {MAX_AGGREGATE_BYTES} bytes")
        try:
            fresh = plane.ingest_aggregates(body, clock())
        except InvalidBatch as exc:
            raise HTTPException(400, f"invalid aggregate batch: {exc}") from None
        return {"status": "ingested" if fresh else "duplicate"}

    @app.get("/v1/experiments/{experiment}/aggregates", tags=["flags"])
    def experiment_aggregates(experiment: str, who: Principal = reader) -> dict[str, Any]:
        """Totals per variant, with cells of fewer than k attendees suppressed."""
        totals: dict[str, dict[str, float]] = {}
        for variant, _bucket, stats in plane.store.aggregate_cells(experiment):
            into = totals.setdefault(variant, {})
            for name, value in stats.items():
                into[name] = into.get(name, 0) + value
        released = {}
        for variant, stats in totals.items():
            if suppressed(int(stats.get("exposures", 0))):
                released[variant] = {"suppressed": True}
            else:
                released[variant] = stats
        return {"experiment": experiment, "variants": released, "k": DEFAULT_K}

    return app


def _experiment_flag(plane: ControlPlane, experiment: str) -> Any:
    _version, doc = plane.document()
    flagset = load_flags_data(doc, "live")
    for flag in flagset.flags.values():
        if flag.experiment is not None and flag.experiment.key == experiment:
            return flag
    raise NotFound(f"no live experiment {experiment!r}")


async def _events(plane: ControlPlane, after: int) -> AsyncIterator[bytes]:
    wake = plane.hub.subscribe()
    try:
        yield b": edgeloop snapshot stream\n\n"
        while True:
            wake.clear()
            for snap in plane.store.snapshots_after(after, limit=50):
                data = msgspec.json.encode(_snapshot_json(snap))
                yield b"id: %d\nevent: snapshot\ndata: %s\n\n" % (snap.version, data)
                after = snap.version
            if plane.hub.version > after:
                continue  # more than one page behind: keep draining
            try:
                await asyncio.wait_for(wake.wait(), KEEPALIVE_S)
            except TimeoutError:
                yield b": keepalive\n\n"
    finally:
        plane.hub.unsubscribe(wake)
