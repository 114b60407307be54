"""The edge's own HTTP API on a real server: decide, limits, health, readiness and metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_support import (
    DOC,
    FLAG_KEYS,
    T0,
    FakeClock,
    make_edge,
    metric,
    scrape,
    serve_edge,
    signed,
)
from edgeloop.edge import EdgeNode, create_edge_app
from edgeloop.sync import SnapshotSigner

STEP = 0.0003  # the fake clock moves this much per read: every decide takes exactly 300 µs
MIB = 1 << 20


@pytest.fixture
def signer() -> SnapshotSigner:
    return SnapshotSigner.generate()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0, step=STEP)


@pytest.fixture
def node(tmp_path: Path, signer: SnapshotSigner, clock: FakeClock) -> EdgeNode:
    return make_edge(tmp_path, signer.public_key, clock)


@pytest.fixture
def http(node: EdgeNode) -> Iterator[httpx.Client]:
    with serve_edge(node) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


@pytest.fixture
def ready(node: EdgeNode, signer: SnapshotSigner, http: httpx.Client) -> httpx.Client:
    """A client of an edge serving DOC at version 3, issued 42 s before the fake clock's start."""
    assert node.apply(signed(signer, 3, DOC, issued_at=T0 - 42))
    return http


def decide(client: httpx.Client, body: object) -> httpx.Response:
    return client.post("/v1/decide", json=body)


# health and readiness -------------------------------------------------------------------------


def test_before_the_first_snapshot_the_edge_is_alive_but_not_ready(
    node: EdgeNode, signer: SnapshotSigner, http: httpx.Client
) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    not_ready = http.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["ready"] is False

    refused = decide(http, {"context": {"targetingKey": "a"}})
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["content-type"] == "application/json"

    assert node.apply(signed(signer, 1))
    assert http.get("/readyz").json() == {"ready": True, "version": 1}
    assert http.get("/healthz").status_code == 200
    assert decide(http, {"context": {"targetingKey": "a"}}).status_code == 200


# deciding --------------------------------------------------------------------------------------


def test_decide_one_context_answers_every_flag(ready: httpx.Client) -> None:
    response = decide(ready, {"context": {"targetingKey": "att-1", "country": "US"}})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["version"] == 3
    decisions = body["decisions"]
    assert list(decisions) == list(FLAG_KEYS)  # the document's order
    seen = {k: (d["value"], d["variant"], d["reason"]) for k, d in decisions.items()}
    assert seen == {
        "banner": (True, "on", "TARGETING_MATCH"),
        "headline": ("Go", "short", "DEFAULT"),
        "max-items": (3, "few", "STATIC"),
        "ratio": (0.75, "high", "STATIC"),
        "layout": ({"cols": 3, "dense": True}, "grid", "STATIC"),
        "offer": (seen["offer"][0], seen["offer"][1], "SPLIT"),
        "killed": (None, None, "DISABLED"),
        "vip-only": (None, None, "DEFAULT"),
    }
    assert seen["offer"][:2] in {("offer-a", "A"), ("offer-b", "B")}
    assert decisions["banner"]["metadata"] == {
        "owner": "growth",
        "team": "web",
        "tier": 2,
        "weight": 0.5,
        "public": True,
    }


def test_decide_only_the_listed_flags(ready: httpx.Client) -> None:
    body = decide(
        ready,
        {"context": {"targetingKey": "att-1", "plan": "pro"}, "flags": ["headline", "ghost"]},
    ).json()
    assert list(body["decisions"]) == ["headline", "ghost"]
    assert body["decisions"]["headline"]["value"] == "Go now"
    assert body["decisions"]["headline"]["reason"] == "TARGETING_MATCH"
    ghost = body["decisions"]["ghost"]
    assert ghost["reason"] == "ERROR"
    assert ghost["error_code"] == "FLAG_NOT_FOUND"
    assert ghost["value"] is None


def test_decide_a_batch_of_contexts_in_order(ready: httpx.Client) -> None:
    contexts = [
        {"targetingKey": f"att-{i}", "country": ("US" if i % 2 else "FR"), "plan": "pro"}
        for i in range(50)
    ]
    body = decide(ready, {"contexts": contexts, "flags": ["banner", "offer"]}).json()
    assert body["version"] == 3
    assert len(body["results"]) == len(contexts)
    for context, result in zip(contexts, body["results"], strict=True):
        single = decide(ready, {"context": context, "flags": ["banner", "offer"]}).json()
        assert result == single["decisions"]
        assert result["banner"]["value"] is (context["country"] == "US")
    # Splits are deterministic per attendee and both variants occur in a batch this size.
    assert {r["offer"]["variant"] for r in body["results"]} == {"A", "B"}


def test_an_empty_batch_is_an_empty_answer(ready: httpx.Client) -> None:
    assert decide(ready, {"contexts": []}).json() == {"version": 3, "results": []}


# limits and bad input ------------------------------------------------------------------------


def test_a_body_over_one_mebibyte_is_refused_with_413(ready: httpx.Client) -> None:
    request = b'{"context": {"targetingKey": "a"}}'
    exactly = request + b" " * (MIB - len(request))
    assert len(exactly) == MIB
    assert ready.post("/v1/decide", content=exactly).status_code == 200

    too_big = exactly + b" "
    response = ready.post("/v1/decide", content=too_big)  # announced by Content-Length
    assert response.status_code == 413
    assert "error" in response.json()

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted while reading
        yield request
        for _ in range(17):
            yield b" " * 65536

    response = ready.post("/v1/decide", content=chunked())
    assert response.status_code == 413
    # The connection (and the edge) still serve normally afterwards.
    assert decide(ready, {"context": {"targetingKey": "a"}}).status_code == 200


def test_an_oversized_body_in_a_single_asgi_message_is_413(
    node: EdgeNode, signer: SnapshotSigner
) -> None:
    """Servers other than uvicorn (or test transports) may hand over the whole body at once,
    without Content-Length: the limit holds for the first message too."""
    assert node.apply(signed(signer, 1))
    app = create_edge_app(node)
    body = b'{"context": {}}' + b" " * MIB
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/decide", "headers": []}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413


def test_more_than_a_thousand_contexts_is_400(ready: httpx.Client) -> None:
    contexts = [{"targetingKey": f"a{i}"} for i in range(1000)]
    at_limit = decide(ready, {"contexts": contexts, "flags": ["max-items"]})
    assert at_limit.status_code == 200
    assert len(at_limit.json()["results"]) == 1000

    over = decide(ready, {"contexts": [*contexts, {"targetingKey": "x"}], "flags": ["max-items"]})
    assert over.status_code == 400
    assert "1000" in over.json()["error"]


def test_more_than_a_thousand_listed_flags_is_400(ready: httpx.Client) -> None:
    response = decide(ready, {"context": {}, "flags": [f"f{i}" for i in range(1001)]})
    assert response.status_code == 400
    assert "flags" in response.json()["error"]


@pytest.mark.parametrize(
    "body",
    [
        {"context": {"targetingKey": "a"}, "contexts": [{"targetingKey": "b"}]},
        {},
        {"flags": ["banner"]},
        {"context": None, "contexts": None},
    ],
    ids=["both", "neither", "flags-only", "both-null"],
)
def test_exactly_one_of_context_or_contexts(ready: httpx.Client, body: object) -> None:
    response = decide(ready, body)
    assert response.status_code == 400
    assert "exactly one of 'context' or 'contexts'" in response.json()["error"]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"not json at all",
        b"\xff\xfe\x00",
        b"[]",
        b'"context"',
        b'{"context": []}',
        b'{"context": "att-1"}',
        b'{"contexts": {"targetingKey": "a"}}',
        b'{"contexts": [1, 2]}',
        b'{"context": {}, "flags": "banner"}',
        b'{"context": {}, "flags": [1]}',
        b'{"context": {}, "surprise": true}',
    ],
)
def test_malformed_requests_are_400_with_a_reason(ready: httpx.Client, raw: bytes) -> None:
    response = ready.post("/v1/decide", content=raw)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]


def test_only_post_decides(ready: httpx.Client) -> None:
    assert ready.get("/v1/decide").status_code in (404, 405)
    assert ready.get("/no/such/path").status_code == 404


# metrics ------------------------------------------------------------------------------------


def test_metrics_in_prometheus_text_format(
    node: EdgeNode, signer: SnapshotSigner, ready: httpx.Client
) -> None:
    for i in range(4):
        decide(ready, {"context": {"targetingKey": f"att-{i}", "country": "US"}})
    decide(ready, {"contexts": [{"country": "FR"}, {"country": "CA"}], "flags": ["banner"]})
    ready.post("/ofrep/v1/evaluate/flags/killed", json={"context": {"targetingKey": "z"}})
    decide(ready, {"context": {}, "flags": ["ghost"]})

    # Refusals are counted by reason; the served snapshot stays.
    forged = signed(SnapshotSigner.generate(), 9)
    assert not node.apply(forged)
    assert not node.apply(signed(signer, 2))
    assert not node.apply(signed(signer, 1))

    response = ready.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = scrape(response.text)

    # Decisions by flag and reason.
    assert metric(samples, "edgeloop_decisions_total", flag="banner", reason="TARGETING_MATCH") == 5
    assert metric(samples, "edgeloop_decisions_total", flag="banner", reason="DEFAULT") == 1
    assert metric(samples, "edgeloop_decisions_total", flag="headline", reason="DEFAULT") == 4
    assert metric(samples, "edgeloop_decisions_total", flag="offer", reason="SPLIT") == 4
    assert metric(samples, "edgeloop_decisions_total", flag="killed", reason="DISABLED") == 5
    assert metric(samples, "edgeloop_decisions_total", flag="ghost", reason="ERROR") == 1

    # The latency histogram: one observation per request, each exactly STEP (the fake clock).
    requests = 7
    assert metric(samples, "edgeloop_decide_seconds_count") == requests
    assert metric(samples, "edgeloop_decide_seconds_sum") == pytest.approx(
        requests * STEP, abs=1e-5
    )  # float steps at 1.8e9
    assert metric(samples, "edgeloop_decide_seconds_bucket", le="0.00025") == 0
    assert metric(samples, "edgeloop_decide_seconds_bucket", le="0.0005") == requests
    assert metric(samples, "edgeloop_decide_seconds_bucket", le="+Inf") == requests

    # The snapshot served, its age by the injected clock, and the refusals.
    assert metric(samples, "edgeloop_snapshot_version") == 3
    assert metric(samples, "edgeloop_snapshot_age_seconds") == pytest.approx(42, abs=0.1)
    assert metric(samples, "edgeloop_snapshots_applied_total") == 1
    assert metric(samples, "edgeloop_sync_errors_total", reason="bad_signature") == 1
    assert metric(samples, "edgeloop_sync_errors_total", reason="stale") == 2
    assert metric(samples, "edgeloop_attached_clients") == 0


def test_metrics_before_any_snapshot(http: httpx.Client) -> None:
    samples = scrape(http.get("/metrics").text)
    assert metric(samples, "edgeloop_snapshot_version") == 0
    assert metric(samples, "edgeloop_snapshot_age_seconds") == 0
    assert metric(samples, "edgeloop_decide_seconds_count") == 0
    assert metric(samples, "edgeloop_attached_clients") == 0


def test_decide_json_is_plain_json(ready: httpx.Client) -> None:
    """Answers are ordinary JSON any client can read (no NaN, no binary)."""
    text = decide(ready, {"context": {"targetingKey": "a"}}).text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
