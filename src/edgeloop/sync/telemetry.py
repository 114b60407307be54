"""Aggregates edge → control plane over HTTP, and the experiment keys the edge needs for them."""

from __future__ import annotations

import base64

import httpx


class HttpAggregateChannel:
    """POST /v1/aggregates (idempotent by batch id) and GET /v1/experiment-keys, as an edge."""

    def __init__(self, control_url: str, token: str, timeout: float = 10.0) -> None:
        self.base = control_url.rstrip("/")
        self.client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    async def send(self, body: bytes) -> None:
        response = await self.client.post(
            self.base + "/v1/aggregates",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        response.raise_for_status()

    async def keys(self) -> dict[str, bytes]:
        response = await self.client.get(self.base + "/v1/experiment-keys")
        response.raise_for_status()
        return {k: base64.b64decode(v) for k, v in response.json()["keys"].items()}

    async def close(self) -> None:
        await self.client.aclose()
