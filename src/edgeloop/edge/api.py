"""The edge's HTTP surface (Starlette): decide, OFREP, attach (WebSocket), health and metrics.

The decide paths are the product's hot path: msgspec decodes and encodes, the engine is
compiled, and nothing else happens per request.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from edgeloop.evaluate import Decision, ErrorCode, Reason

from .node import AttachedClient, EdgeNode

MAX_BODY_BYTES = 1 << 20
MAX_BATCH = 1000
MAX_FLAGS = 1000

_JSON = "application/json"


class DecideRequest(msgspec.Struct, forbid_unknown_fields=True):
    context: dict[str, Any] | None = None
    contexts: list[dict[str, Any]] | None = None
    flags: list[str] | None = None


class OfrepRequest(msgspec.Struct):
    context: dict[str, Any] = {}


_decide_decoder = msgspec.json.Decoder(DecideRequest)
_ofrep_decoder = msgspec.json.Decoder(OfrepRequest)
_encode = msgspec.json.Encoder().encode


def _error(status: int, message: str, **extra: Any) -> Response:
    return Response(_encode({"error": message, **extra}), status, media_type=_JSON)


async def _body(request: Request) -> bytes | Response:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        return _error(413, f"body larger than {MAX_BODY_BYTES} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return _error(413, f"body larger than {MAX_BODY_BYTES} bytes")
    return body


# OFREP ------------------------------------------------------------------------------------

_OFREP_STATUS = {
    ErrorCode.FLAG_NOT_FOUND: 404,
    ErrorCode.GENERAL: 500,
}


def ofrep_item(d: Decision) -> dict[str, Any]:
    """One flag in OFREP's shape: evaluationSuccess or evaluationFailure."""
    if d.reason is Reason.ERROR:
        return {
            "key": d.flag_key,
            "errorCode": str(d.error_code),
            "errorDetails": d.error_message or "",
        }
    item: dict[str, Any] = {"key": d.flag_key, "reason": str(d.reason), "metadata": d.metadata}
    if d.variant is not None:
        item["variant"] = d.variant
    # No value (DISABLED, or DEFAULT without a default variant) means "use your code default".
    if d.value is not None:
        item["value"] = d.value
    return item


def create_edge_app(node: EdgeNode) -> Starlette:
    clock = node.clock
    metrics = node.metrics

    async def decide(request: Request) -> Response:
        body = await _body(request)
        if isinstance(body, Response):
            return body
        try:
            req = _decide_decoder.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return _error(400, f"invalid decide request: {exc}")
        if (req.context is None) == (req.contexts is None):
            return _error(400, "send exactly one of 'context' or 'contexts'")
        if req.flags is not None and len(req.flags) > MAX_FLAGS:
            return _error(400, f"at most {MAX_FLAGS} flags per request")
        if node.snapshot is None:
            return _error(503, "no snapshot yet", retry_after=1)
        started = clock()
        if req.context is not None:
            payload = {
                "version": node.version,
                "decisions": node.decide(req.context, req.flags, started),
            }
        else:
            contexts = req.contexts or []
            if len(contexts) > MAX_BATCH:
                return _error(400, f"at most {MAX_BATCH} contexts per batch")
            payload = {
                "version": node.version,
                "results": [node.decide(ctx, req.flags, started) for ctx in contexts],
            }
        content = _encode(payload)
        metrics.decide_latency.observe(clock() - started)
        return Response(content, media_type=_JSON)

    async def ofrep_one(request: Request) -> Response:
        key = request.path_params["key"]
        body = await _body(request)
        if isinstance(body, Response):
            return body
        try:
            context = _ofrep_decoder.decode(body).context
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return Response(
                _encode({"key": key, "errorCode": "PARSE_ERROR", "errorDetails": str(exc)}),
                400,
                media_type=_JSON,
            )
        if node.snapshot is None:
            return Response(_encode({"errorDetails": "no snapshot yet"}), 503, media_type=_JSON)
        started = clock()
        d = node.decide(context, [key], started)[key]
        status = 200
        if d.reason is Reason.ERROR:
            status = _OFREP_STATUS.get(d.error_code, 400) if d.error_code else 400
        content = _encode(ofrep_item(d))
        metrics.decide_latency.observe(clock() - started)
        return Response(content, status, media_type=_JSON)

    async def ofrep_bulk(request: Request) -> Response:
        body = await _body(request)
        if isinstance(body, Response):
            return body
        try:
            context = _ofrep_decoder.decode(body).context
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return Response(
                _encode({"errorCode": "PARSE_ERROR", "errorDetails": str(exc)}),
                400,
                media_type=_JSON,
            )
        if node.snapshot is None:
            return Response(_encode({"errorDetails": "no snapshot yet"}), 503, media_type=_JSON)
        started = clock()
        decisions = node.decide(context, None, started)
        content = _encode(
            {
                "flags": [ofrep_item(d) for d in decisions.values()],
                "metadata": {"version": node.version},
            }
        )
        # The ETag names this exact answer: same snapshot and same context give the same bytes.
        etag = '"' + hashlib.blake2b(content, digest_size=12).hexdigest() + '"'
        metrics.decide_latency.observe(clock() - started)
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers={"ETag": etag})
        return Response(content, media_type=_JSON, headers={"ETag": etag})

    async def attach(websocket: WebSocket) -> None:
        """Register a context; get its decisions now and whenever a new snapshot changes them.

        client → {"type": "attach", "context": {...}, "flags": [...]}   (flags optional)
        client → {"type": "context", "context": {...}}                  (re-decide)
        server → {"type": "decisions", "version": N, "decisions": {key: {...}}}  (changes)
        """
        await websocket.accept()
        client: AttachedClient | None = None

        async def send(message: dict[str, Any]) -> None:
            await websocket.send_bytes(_encode(message))

        try:
            while True:
                frame = await websocket.receive()
                if frame["type"] == "websocket.disconnect":
                    break
                raw = frame.get("text") or frame.get("bytes") or b""
                try:
                    message = msgspec.json.decode(raw)
                except msgspec.DecodeError:
                    await send({"type": "error", "message": "not JSON"})
                    continue
                kind = message.get("type") if isinstance(message, dict) else None
                context = message.get("context") if isinstance(message, dict) else None
                if kind not in ("attach", "context") or not isinstance(context, dict):
                    await send(
                        {
                            "type": "error",
                            "message": "expected {type: attach|context, context: {...}}",
                        }
                    )
                    continue
                if kind == "attach" and client is None:
                    flags = message.get("flags")
                    if flags is not None and not (
                        isinstance(flags, list) and all(isinstance(f, str) for f in flags)
                    ):
                        await send({"type": "error", "message": "flags must be a list of keys"})
                        continue
                    client = AttachedClient(send, context, flags)
                    await node.attach(client)
                elif client is not None:
                    await node.update_context(client, context)
                else:
                    await send({"type": "error", "message": "attach first"})
        except WebSocketDisconnect:
            pass
        finally:
            if client is not None:
                node.detach(client)

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type=_JSON)

    async def readyz(request: Request) -> Response:
        if node.snapshot is None:
            return Response(b'{"ready":false,"reason":"no snapshot yet"}', 503, media_type=_JSON)
        return Response(_encode({"ready": True, "version": node.version}), media_type=_JSON)

    registry = metrics.registry(clock)

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/v1/decide", decide, methods=["POST"]),
            Route("/ofrep/v1/evaluate/flags/{key}", ofrep_one, methods=["POST"]),
            Route("/ofrep/v1/evaluate/flags", ofrep_bulk, methods=["POST"]),
            WebSocketRoute("/v1/attach", attach),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
        ]
    )
