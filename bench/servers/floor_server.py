"""The Python HTTP floor for bench/http.py: a minimal Starlette app that returns fixed JSON.

Served exactly like an edgeloop service (``edgeloop.cli.services``: uvicorn with httptools,
uvloop, one worker, access log off). The handler reads the request body (a decide request has
one, and reading it is part of any real handler) and returns a fixed JSON object: what is
left is the cost of uvicorn + Starlette routing per request, the floor for any Python edge.
``POST /raw`` answers the same as a bare ASGI callable (no Starlette): uvicorn's own floor.

    python bench/servers/floor_server.py --port 18700
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from edgeloop.cli import services

FIXED = b'{"version":1,"decisions":{"offers-enabled":{"value":true,"variant":"on"}}}'


def create_floor_app() -> Any:
    async def fixed(request: Request) -> Response:
        await request.body()
        return Response(FIXED, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    starlette = Starlette(routes=[Route("/", fixed, methods=["POST"]), Route("/healthz", healthz)])
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(FIXED)).encode()),
        ],
    }
    body = {"type": "http.response.body", "body": FIXED}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        """POST /raw: the same answer as plain ASGI, no framework (uvicorn's own floor)."""
        if scope["type"] == "http" and scope["path"] == "/raw":
            message = await receive()
            while message.get("more_body"):
                message = await receive()
            await send(start)
            await send(body)
            return
        await starlette(scope, receive, send)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()

    def ready() -> None:
        print(f"floor ready on {args.host}:{args.port}")
        sys.stdout.flush()

    services.run(
        services.serve_all(
            [services.Service(create_floor_app(), args.host, args.port)], on_ready=ready
        )
    )


if __name__ == "__main__":
    main()
