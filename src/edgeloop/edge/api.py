"""The edge's HTTP surface: decide, OFREP, attach (WebSocket), health and metrics.

The decide paths are the product's hot path: raw ASGI, msgspec decodes and encodes, the engine
is compiled, and nothing else happens per request. The rest is ordinary Starlette.
"""

from __future__ import annotations

import math
import zlib
from typing import Any
from urllib.parse import unquote

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from edgeloop.evaluate import ErrorCode, Reason
from edgeloop.model.signals import BatchError

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


Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]


def _error(status: int, message: str, **extra: Any) -> Answer:
    return status, _encode({"error": message, **extra}), []


# OFREP ------------------------------------------------------------------------------------

_OFREP_STATUS = {
    ErrorCode.FLAG_NOT_FOUND: 404,
    ErrorCode.GENERAL: 500,
}


class RateLimiter:
    """Token bucket per client on signals per second (a batch costs its length)."""

    def __init__(
        self, rate: float = 2000.0, burst: float = 4000.0, max_clients: int = 100_000
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self.buckets: dict[str, tuple[float, float]] = {}  # client → (tokens, at)

    def take(self, client: str, cost: float, now: float) -> float:
        """0 if allowed, else seconds until ``cost`` tokens are available."""
        tokens, at = self.buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= cost:
            if len(self.buckets) >= self.max_clients and client not in self.buckets:
                self.buckets.clear()  # forget idle clients rather than grow without bound
            self.buckets[client] = (tokens - cost, now)
            return 0.0
        self.buckets[client] = (tokens, now)
        return (min(cost, self.burst) - tokens) / self.rate


class DecideHandlers:
    """The hot paths as plain functions of (request body, headers) → (status, body, headers).

    Served as raw ASGI (no per-request Request/Response objects): on one core the framework's
    own objects cost more than deciding five flags.
    """

    def __init__(self, node: EdgeNode, limiter: RateLimiter | None = None) -> None:
        self.node = node
        self.limiter = limiter or RateLimiter()

    def signals(self, client: str, body: bytes, headers: dict[bytes, bytes]) -> Answer:
        """POST /v1/signals: per-item validation; 429 with Retry-After over the client's rate."""
        node = self.node
        now = node.clock()
        cost = max(1, body.count(b'"type"'))  # an upper bound on the batch's length, no parsing
        wait = self.limiter.take(client, cost, now)
        if wait > 0:
            seconds = str(max(1, math.ceil(wait))).encode()
            return 429, _encode({"error": "rate limit exceeded"}), [(b"retry-after", seconds)]
        try:
            result = node.ingest(body, now)
        except BatchError as exc:
            return _error(400, str(exc))
        rejected = [{"index": i, "reason": r} for i, r in result.rejected]
        return 200, _encode({"accepted": result.accepted, "rejected": rejected}), []

    def _no_snapshot(self) -> Answer | None:
        if self.node.snapshot is None:
            return 503, b'{"errorDetails":"no snapshot yet"}', [(b"retry-after", b"1")]
        return None

    def decide(self, body: bytes, headers: dict[bytes, bytes]) -> Answer:
        node = self.node
        try:
            req = _decide_decoder.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return _error(400, f"invalid decide request: {exc}")
        if (req.context is None) == (req.contexts is None):
            return _error(400, "send exactly one of 'context' or 'contexts'")
        if req.flags is not None and len(req.flags) > MAX_FLAGS:
            return _error(400, f"at most {MAX_FLAGS} flags per request")
        if req.contexts is not None and len(req.contexts) > MAX_BATCH:
            return _error(400, f"at most {MAX_BATCH} contexts per batch")
        unavailable = self._no_snapshot()
        if unavailable:
            return unavailable
        clock = node.clock
        started = clock()
        encoded_all = node.encoded_all
        if req.context is not None:
            decided = encoded_all(node.decide(req.context, req.flags, started))
            payload: dict[str, Any] = {
                "version": node.version,
                "decisions": {k: e.full for k, e in decided.items()},
            }
        else:
            payload = {
                "version": node.version,
                "results": [
                    {
                        k: e.full
                        for k, e in encoded_all(node.decide(ctx, req.flags, started)).items()
                    }
                    for ctx in req.contexts or ()
                ],
            }
        content = _encode(payload)
        node.metrics.decide_latency.observe(clock() - started)
        return 200, content, []

    def ofrep_one(self, key: str, body: bytes, headers: dict[bytes, bytes]) -> Answer:
        node = self.node
        try:
            context = _ofrep_decoder.decode(body).context
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            failure = {"key": key, "errorCode": "PARSE_ERROR", "errorDetails": str(exc)}
            return 400, _encode(failure), []
        unavailable = self._no_snapshot()
        if unavailable:
            return unavailable
        started = node.clock()
        d = node.decide(context, [key], started)[key]
        status = 200
        if d.reason is Reason.ERROR:
            status = _OFREP_STATUS.get(d.error_code, 400) if d.error_code else 400
        content = bytes(node.encoded(d).ofrep)
        node.metrics.decide_latency.observe(node.clock() - started)
        return status, content, []

    def ofrep_bulk(self, body: bytes, headers: dict[bytes, bytes]) -> Answer:
        node = self.node
        try:
            context = _ofrep_decoder.decode(body).context
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return 400, _encode({"errorCode": "PARSE_ERROR", "errorDetails": str(exc)}), []
        unavailable = self._no_snapshot()
        if unavailable:
            return unavailable
        started = node.clock()
        decisions = node.decide(context, None, started)
        content = _encode(
            {
                "flags": [e.ofrep for e in node.encoded_all(decisions).values()],
                "metadata": {"version": node.version},
            }
        )
        # The ETag names this exact answer: same snapshot and same context give the same bytes.
        etag = b'"%d-%d-%08x"' % (node.version, len(content), zlib.crc32(content))
        node.metrics.decide_latency.observe(node.clock() - started)
        if etag in headers.get(b"if-none-match", b""):
            return 304, b"", [(b"etag", etag)]
        return 200, content, [(b"etag", etag)]


_OFREP_ONE = "/ofrep/v1/evaluate/flags/"
_OFREP_BULK = "/ofrep/v1/evaluate/flags"


class EdgeApp:
    """The edge's ASGI app: POST hot paths handled directly, everything else by Starlette."""

    def __init__(self, node: EdgeNode, rest: Starlette) -> None:
        self.node = node
        self.handlers = DecideHandlers(node)
        self.rest = rest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            handlers = self.handlers
            if path == "/v1/decide":
                handler: Any = handlers.decide
            elif path == "/v1/signals":
                client = _client_id(scope)

                def handler(body: bytes, headers: dict[bytes, bytes]) -> Answer:
                    return handlers.signals(client, body, headers)
            elif path == _OFREP_BULK:
                handler = handlers.ofrep_bulk
            elif path.startswith(_OFREP_ONE) and len(path) > len(_OFREP_ONE):
                key = unquote(path[len(_OFREP_ONE) :])

                def handler(body: bytes, headers: dict[bytes, bytes]) -> Answer:
                    return handlers.ofrep_one(key, body, headers)
            else:
                handler = None
            if handler is not None:
                headers = dict(scope["headers"])
                body = await _read_body(headers, receive)
                if isinstance(body, tuple):
                    status, content, extra = body
                else:
                    status, content, extra = handler(body, headers)
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(content)).encode()),
                            *extra,
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": content})
                if path == "/v1/signals" and status == 200:
                    await self.node.push_touched()
                return
        await self.rest(scope, receive, send)


def _client_id(scope: Scope) -> str:
    """Who a rate limit applies to: an explicit client header, else the peer address."""
    for name, value in scope["headers"]:
        if name == b"x-edgeloop-client":
            return value.decode("latin-1")[:128]
    peer = scope.get("client")
    return peer[0] if peer else "unknown"


async def _read_body(headers: dict[bytes, bytes], receive: Receive) -> bytes | Answer:
    length = headers.get(b"content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        return _error(413, f"body larger than {MAX_BODY_BYTES} bytes")
    body = b""
    more = True
    while more:  # the size is checked after every message, the first one included
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > MAX_BODY_BYTES:
            return _error(413, f"body larger than {MAX_BODY_BYTES} bytes")
    return body


async def _attached_signals(node: EdgeNode, signals: Any, send: Any) -> None:
    """Signals sent over the attach socket: same validation as POST /v1/signals."""
    if not isinstance(signals, list):
        await send({"type": "error", "message": "signals must be a list"})
        return
    try:
        result = node.ingest(_encode(signals), node.clock())
    except BatchError as exc:
        await send({"type": "error", "message": str(exc)})
        return
    if result.rejected:
        rejected = [{"index": i, "reason": r} for i, r in result.rejected]
        await send({"type": "rejected", "rejected": rejected})
    await node.push_touched()


def create_edge_app(node: EdgeNode) -> EdgeApp:
    clock = node.clock
    metrics = node.metrics

    async def attach(websocket: WebSocket) -> None:
        """Register a context; get its decisions now and whenever a new snapshot changes them.

        client → {"type": "attach", "context": {...}, "flags": [...]}   (flags optional)
        client → {"type": "context", "context": {...}}                  (re-decide)
        server → {"type": "decisions", "version": N, "decisions": {key: {...}}}  (changes)
        """
        await websocket.accept()
        client: AttachedClient | None = None

        async def send(message: dict[str, Any]) -> None:
            await websocket.send_text(
                _encode(message).decode()
            )  # text frames: browsers get strings

        try:
            while True:
                frame = await websocket.receive()
                if frame["type"] == "websocket.disconnect":
                    break
                raw = frame.get("text") or frame.get("bytes") or b""
                try:
                    message = msgspec.json.decode(raw)
                except (msgspec.DecodeError, RecursionError):  # msgspec's ~1000-level nest limit
                    await send({"type": "error", "message": "not JSON"})
                    continue
                kind = message.get("type") if isinstance(message, dict) else None
                if kind == "signals":
                    await _attached_signals(node, message.get("signals"), send)
                    continue
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

    rest = Starlette(
        routes=[
            WebSocketRoute("/v1/attach", attach),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
        ]
    )
    return EdgeApp(node, rest)
