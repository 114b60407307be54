"""Telemetry end to end: push on a rule boundary, privacy of what leaves the edge, archived
experiments, at-least-once shipping through a control-plane crash, the outbox bound, rate limits.

These are the issue's acceptance points; each test names the one it checks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from websockets.sync.client import ClientConnection, connect

from edgeloop.cli.services import local_telemetry, open_control, open_edge, telemetry_loop
from edgeloop.control import ControlPlane, Role, create_control_app
from edgeloop.edge import EdgeNode, create_edge_app
from edgeloop.edge.telemetry import Outbox
from edgeloop.model.aggregates import AggregateBatch, decode_aggregate_batch
from edgeloop.privacy import pseudonym
from edgeloop.sync import HttpAggregateChannel
from telemetry_support import (
    ADMIN,
    EXPERIMENT,
    FLAG,
    MICRO_OFFER,
    OFFER_VARIANTS,
    T0,
    FakeClock,
    Platform,
    ServerThread,
    assert_same_totals,
    batch,
    chat,
    click,
    close_edge,
    control_totals,
    conversion,
    dwell,
    edge_totals,
    emoji,
    files_under,
    find_in_files,
    hover,
    ingest,
    join,
    leave,
    make_platform,
    offer_context,
    raw_signal_timestamps,
    returned,
    sync_edge,
    wait_for,
)

VARIANT_VALUES = {
    "ambient": {"overlay": "none"},
    "A": {"overlay": "merch_popup", "trial_token": True},
    "B": {"chat_offer": "exclusive_emoji_pack"},
    "C": {"audio_cue": "timed", "ticket_discount": 0.10},
}


@pytest.fixture(autouse=True)
def _quiet() -> None:
    # Shipping failures are what several tests provoke on purpose.
    for name in ("edgeloop", "edgeloop.edge", "edgeloop.sync", "uvicorn.error", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)


@pytest.fixture
def platform(tmp_path: Path) -> Any:
    p = make_platform(tmp_path)
    yield p
    p.close()


def attendee_id() -> str:
    return f"att-{secrets.token_hex(6)}"


# (a) an attendee's offer appears by push within one signal of crossing the rule boundary ---------

# Each step: seconds after the first signal, the signal, and whether it is the crossing one.
SCENARIOS: dict[str, list[tuple[float, str, bool]]] = {
    # Dwell crosses a minute first; the first *positive* reaction is what opens the gate.
    "reaction-last": [
        (0, "join", False),
        (30, "hover", False),
        (61, "dwell", False),
        (62, "angry-emoji", False),  # a reaction, but a negative one
        (63, "neutral-chat", False),
        (64, "happy-emoji", True),
    ],
    # A reaction early; the signal that makes dwell_s reach exactly 60 opens the gate.
    "dwell-last": [
        (0, "join", False),
        (10, "happy-emoji", False),
        (59.5, "hover", False),
        (60, "click", True),
    ],
}


def _signal(kind: str, attendee: str, ts: float) -> dict[str, Any]:
    return {
        "join": lambda: join(attendee, ts),
        "hover": lambda: hover(attendee, ts, 800),
        "dwell": lambda: dwell(attendee, ts, 4000),
        "click": lambda: click(attendee, ts),
        "angry-emoji": lambda: emoji(attendee, ts, "😡"),
        "happy-emoji": lambda: emoji(attendee, ts, "🎉"),
        "neutral-chat": lambda: chat(attendee, ts, "what time is it"),
    }[kind]()


def _ws(url: str) -> ClientConnection:
    return connect(url.replace("http://", "ws://") + "/v1/attach", proxy=None, open_timeout=5)


def _attach(ws: ClientConnection, context: dict[str, Any]) -> dict[str, Any]:
    ws.send(json.dumps({"type": "attach", "context": context, "flags": [FLAG]}))
    first = json.loads(ws.recv(timeout=5))
    assert first["type"] == "decisions"
    return first


def _until_barrier(ws: ClientConnection) -> list[dict[str, Any]]:
    """Everything the server pushed before it answers a barrier frame (frames on one socket are
    handled in order, so a push caused by an earlier signal on this socket comes first)."""
    ws.send("barrier: not JSON")
    seen = []
    while True:
        message = json.loads(ws.recv(timeout=5))
        if message == {"type": "error", "message": "not JSON"}:
            return seen
        seen.append(message)


@pytest.mark.parametrize("channel", ["post", "socket"])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_a_offer_is_pushed_by_exactly_the_signal_that_crosses_the_rule_boundary(
    tmp_path: Path, scenario: str, channel: str
) -> None:
    clock = FakeClock()
    p = make_platform(tmp_path, clock)
    me, abroad = attendee_id(), attendee_id()
    try:
        with (
            ServerThread(create_edge_app(p.node), name="edge") as edge,
            httpx.Client(base_url=edge.url, timeout=5, trust_env=False) as http,
            _ws(edge.url) as ws,
            _ws(edge.url) as ws_abroad,
        ):
            first = _attach(ws, offer_context(me, "US"))
            assert first["decisions"][FLAG]["variant"] == "ambient"
            assert first["decisions"][FLAG]["value"] == VARIANT_VALUES["ambient"]
            # Same behaviour outside the core markets: the rule never matches, nothing pushed.
            assert _attach(ws_abroad, offer_context(abroad, "DE"))["decisions"][FLAG][
                "variant"
            ] == ("ambient")
            pushed_at: list[int] = []
            for step, (offset, kind, crossing) in enumerate(SCENARIOS[scenario]):
                now = clock.set(T0 + offset)
                signals = [_signal(kind, me, now), _signal(kind, abroad, now)]
                if channel == "post":
                    response = http.post("/v1/signals", content=batch(*signals))
                    assert response.status_code == 200, response.text
                    assert response.json() == {"accepted": 2, "rejected": []}
                else:
                    for socket_, signal in ((ws, signals[0]), (ws_abroad, signals[1])):
                        socket_.send(json.dumps({"type": "signals", "signals": [signal]}))
                pushes = _until_barrier(ws)
                assert _until_barrier(ws_abroad) == [], "no offer outside the core markets"
                exposed = (EXPERIMENT, me) in p.node.telemetry.exposures
                if not crossing:
                    assert pushes == [], f"pushed before the boundary, at {kind} (+{offset} s)"
                    assert not exposed, "an exposure before the attendee saw the experiment"
                    continue
                assert len(pushes) == 1, pushes
                message = pushes[0]
                assert message["type"] == "decisions"
                assert message["version"] == p.node.version
                decision = message["decisions"][FLAG]
                assert decision["variant"] in OFFER_VARIANTS
                assert decision["reason"] == "SPLIT"
                assert decision["value"] == VARIANT_VALUES[decision["variant"]]
                assert exposed
                assert p.node.telemetry.exposures[(EXPERIMENT, me)].variant == decision["variant"]
                pushed_at.append(step)
            assert pushed_at == [len(SCENARIOS[scenario]) - 1]
            # And nothing more: the next signal leaves the decision (and so the socket) alone.
            clock.advance(1)
            follow_up = [emoji(me, clock(), "🎉")]
            if channel == "post":
                assert http.post("/v1/signals", content=batch(*follow_up)).status_code == 200
            else:
                ws.send(json.dumps({"type": "signals", "signals": follow_up}))
            assert _until_barrier(ws) == []
            assert (EXPERIMENT, abroad) not in p.node.telemetry.exposures
    finally:
        p.close()


def test_a_hostile_frames_on_the_attach_socket_get_an_error_not_a_dead_socket(
    platform: Platform,
) -> None:
    """Regression: JSON nested past msgspec's limit raised RecursionError in the socket handler
    (and in decode_batch): the socket died (POST /v1/signals answered 500)."""
    me = attendee_id()
    deep = "[" * 5000 + "]" * 5000
    with ServerThread(create_edge_app(platform.node), name="edge") as edge, _ws(edge.url) as ws:
        _attach(ws, offer_context(me))
        ws.send(deep)
        assert json.loads(ws.recv(timeout=5)) == {"type": "error", "message": "not JSON"}
        ws.send('{"type": "signals", "signals": [%s]}' % ("[" * 990 + "]" * 990))
        reply = json.loads(ws.recv(timeout=5))
        assert reply["type"] in ("error", "rejected")
        # Still attached and served.
        ws.send(json.dumps({"type": "signals", "signals": [join(me, platform.clock())]}))
        assert _until_barrier(ws) == []
        assert platform.node.sessions.get(me) is not None
        with httpx.Client(base_url=edge.url, timeout=5, trust_env=False) as http:
            response = http.post("/v1/signals", content=deep.encode())
            assert response.status_code == 400


# a simulated event ------------------------------------------------------------------------------


def run_event(
    p: Platform,
    attendees: list[str],
    rng: random.Random,
    *,
    minutes: int = 120,
    ship_every_min: int = 10,
    sink: Any = None,
    keys: Any = None,
) -> dict[str, Any]:
    """Minute by minute: attendees join and react, are decided for a minute later (the offer's
    gate), chat, hover, convert, leave and come back; aggregates ship every few minutes."""
    if sink is None:
        sink, keys = local_telemetry(p.plane, p.clock)
    start = {a: rng.randrange(0, minutes - 30) for a in attendees}
    country = {a: rng.choice(["US", "US", "CA", "GB", "DE", "BR"]) for a in attendees}
    counts: dict[str, Any] = {"signals": 0, "decisions": 0, "conversions": 0, "returns": 0}
    counts["raw"] = raw = []
    for minute in range(minutes):
        now = p.clock.set(T0 + 60 * minute)
        signals: list[dict[str, Any]] = []
        decide: list[str] = []
        for a, s in start.items():
            age = minute - s
            if age == 0:
                signals += [join(a, now), emoji(a, now, rng.choice(["🎉", "👍", "❤️", "😂"]))]
            elif age == 1:
                decide.append(a)
                signals.append(hover(a, now, rng.randrange(100, 3000)))
            elif age == 2:
                text = rng.choice(["love this so much", "this is terrible", "hi from " + a[:3]])
                signals += [chat(a, now, text), dwell(a, now, 5000), click(a, now)]
            elif age == 3 and rng.random() < 0.5:
                signals.append(conversion(a, now, rng.choice([5.0, 10.0, 25.0])))
                counts["conversions"] += 1
            elif age == 5:
                signals.append(leave(a, now))
            elif age == 25 and rng.random() < 0.4:
                signals += [join(a, now), returned(a, now)]
                counts["returns"] += 1
        if signals:
            result = p.node.ingest(batch(*signals), now)
            assert result.rejected == []
            counts["signals"] += result.accepted
            raw += signals
        for a in decide:
            p.node.decide(offer_context(a, country[a]), None, now)
            counts["decisions"] += 1
        if minute % ship_every_min == ship_every_min - 1:
            asyncio.run(p.node.ship(sink, keys, now))
    asyncio.run(p.node.ship(sink, keys, p.clock()))
    return counts


# (b) privacy end to end ------------------------------------------------------------------------


def test_b_no_raw_attendee_id_reaches_any_file_the_control_plane_wrote(tmp_path: Path) -> None:
    retention = 3600.0
    p = make_platform(tmp_path, retention_s=retention)
    rng = random.Random(2026)
    attendees = [attendee_id() for _ in range(150)]
    try:
        counts = run_event(p, attendees, rng)
        assert counts["conversions"] > 0 and counts["returns"] > 0
        # Something did cross: cells, and user-level records under pseudonyms.
        totals = control_totals(p.plane)
        assert sum(c["exposures"] for c in totals.values()) > 20
        assert_same_totals(edge_totals(p.node), totals)
        records = p.plane.store.unit_records(EXPERIMENT)
        assert {r.kind for r in records} == {"exposure", "conversion", "return"}
        key = p.plane.experiment_keys()[EXPERIMENT]
        aliases = {pseudonym(key, a): a for a in attendees}
        assert {r.pseudonym for r in records} <= set(aliases)  # pseudonyms, and only those
        needles = [a.encode() for a in attendees]
        # Positive control: the search finds ids where they are by design (the edge's own files).
        assert find_in_files(p.edge_dir, needles)
        control_files = {f.name for f in files_under(p.control_dir)}
        assert {"control.db", "control.db-wal", "signing-key.pem"} <= control_files
        assert find_in_files(p.control_dir, needles) == []
        # Also once the control plane has shut down and checkpointed its WAL into the file.
        p.plane.store.close()
        assert find_in_files(p.control_dir, needles) == []
        # What the API shows is just as free of them.
        reopened = open_control(p.control_dir)
        try:
            _, token = reopened.create_token(ADMIN, "analyst", Role.ANALYST, p.clock())
            with TestClient(create_control_app(reopened, clock=p.clock)) as client:
                shown = client.get(
                    f"/v1/experiments/{EXPERIMENT}/aggregates",
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert shown.status_code == 200
                assert not any(a in shown.text for a in attendees)
        finally:
            reopened.store.close()

        # Retention: purge with a clock past the window; nothing raw older than it remains.
        node = p.node
        assert node.raw_signals is not None
        end = p.clock()
        total = node.raw_signals.count()
        assert total == counts["signals"]
        cutoff = end - retention
        assert node.raw_signals.count(before=cutoff) > 0
        assert sorted(raw_signal_timestamps(node.raw_signals.path)) == sorted(
            s["ts"] for s in counts["raw"]
        )
        removed = node.purge(end)
        assert removed > 0
        assert node.raw_signals.count(before=cutoff) == 0
        # Read back directly: not one raw signal older than the window is left.
        left = raw_signal_timestamps(node.raw_signals.path)
        assert left and min(left) >= cutoff
        assert len(left) == node.raw_signals.count() == total - removed
        assert max(left) == max(s["ts"] for s in counts["raw"])  # the last hour is kept
        later = end + retention + 1
        node.purge(later)
        assert raw_signal_timestamps(node.raw_signals.path) == []
        assert node.raw_signals.count() == 0
        assert node.telemetry.exposures == {}  # attribution windows closed long ago
        assert node.telemetry.by_attendee == {}
        assert len(node.sessions) == 0
    finally:
        close_edge(p.node)


# (c) an archived experiment's key is destroyed; its pending records never leave the edge --------


class CapturingSink:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.batches: list[AggregateBatch] = []

    async def __call__(self, body: bytes) -> None:
        await self.inner(body)
        self.batches.append(decode_aggregate_batch(body))

    def records(self, experiment: str = EXPERIMENT) -> list[Any]:
        return [r for b in self.batches for r in b.records if r.experiment == experiment]


def _expose_some(p: Platform, attendees: list[str]) -> None:
    now = p.clock()
    ingest(p.node, *(s for a in attendees for s in (join(a, now), emoji(a, now))))
    now = p.clock.advance(61)
    for a in attendees:
        p.node.decide(offer_context(a), None, now)
    assert all((EXPERIMENT, a) in p.node.telemetry.exposures for a in attendees)


def _key_needles(key: bytes) -> list[bytes]:
    return [key, key.hex().encode(), base64.b64encode(key), base64.urlsafe_b64encode(key)]


@pytest.mark.parametrize("order", ["snapshot-then-ship", "ship-then-snapshot"])
def test_c_archiving_destroys_the_key_and_pending_records_stay_on_the_edge(
    platform: Platform, order: str
) -> None:
    p = platform
    send, keys = local_telemetry(p.plane, p.clock)
    sink = CapturingSink(send)
    first = [attendee_id() for _ in range(12)]
    _expose_some(p, first)
    asyncio.run(p.node.ship(sink, keys, p.clock()))
    assert len(sink.records()) == len(first)  # shipped while live
    key = p.plane.experiment_keys()[EXPERIMENT]
    assert find_in_files(p.control_dir, [key])  # positive control: the live key is on disk
    _, edge_token = p.plane.create_token(ADMIN, "edge-c", Role.EDGE, p.clock())

    # More exposures and conversions: records pending on the edge when the flag is archived.
    second = [attendee_id() for _ in range(12)]
    _expose_some(p, second)
    ingest(p.node, *(conversion(a, p.clock.advance(1), 10.0) for a in second[:6]))
    pending = [r for r in p.node.telemetry.pending if r.experiment == EXPERIMENT]
    assert len(pending) == 18
    stored_before = len(p.plane.store.unit_records(EXPERIMENT))

    p.plane.archive_flag(ADMIN, FLAG, "experiment over", p.clock())

    # The control plane's key is gone: store, API, and every byte on disk.
    assert EXPERIMENT not in p.plane.store.experiment_keys()
    with TestClient(create_control_app(p.plane, clock=p.clock)) as client:
        shown = client.get("/v1/experiment-keys", headers={"Authorization": f"Bearer {edge_token}"})
        assert shown.status_code == 200
        assert EXPERIMENT not in shown.json()["keys"]
    assert any(
        e.action == "experiment.key_destroyed" and e.target == EXPERIMENT
        for e in p.plane.store.audit_log(limit=20)
    )
    assert find_in_files(p.control_dir, _key_needles(key)) == []

    if order == "ship-then-snapshot":
        # The edge learns of the archive from the keys before the snapshot reaches it.
        asyncio.run(p.node.ship(sink, keys, p.clock.advance(1)))
        assert sink.records()[len(first) :] == []
        p.sync()
    else:
        p.sync()
    assert FLAG not in (p.node.snapshot.runs if p.node.snapshot else {})
    asyncio.run(p.node.ship(sink, keys, p.clock.advance(1)))
    asyncio.run(p.node.ship(sink, keys, p.clock.advance(1)))

    assert len(sink.records()) == len(first)  # not one more record of it left the edge
    assert [r for r in p.node.telemetry.pending if r.experiment == EXPERIMENT] == []
    assert len(p.plane.store.unit_records(EXPERIMENT)) == stored_before == len(first)
    # Nobody can recompute a pseudonym now: the control plane holds no key for it.
    assert EXPERIMENT not in p.plane.experiment_keys()
    p.plane.store.close()
    assert find_in_files(p.control_dir, _key_needles(key)) == []


def test_c_archived_records_stay_on_the_edge_even_if_key_refresh_fails(platform: Platform) -> None:
    """The edge applied the archive but cannot reach the control plane for keys: the key it
    cached earlier must not be used to ship the archived experiment's records later."""
    p = platform
    send, keys = local_telemetry(p.plane, p.clock)
    sink = CapturingSink(send)
    _expose_some(p, [attendee_id() for _ in range(3)])
    asyncio.run(p.node.ship(sink, keys, p.clock()))
    shipped = len(sink.records())
    assert shipped == 3
    _expose_some(p, [attendee_id() for _ in range(3)])  # pending when the flag is archived

    p.plane.archive_flag(ADMIN, FLAG, "experiment over", p.clock())
    p.sync()

    async def unreachable() -> dict[str, bytes]:
        raise ConnectionError("control plane unreachable")

    asyncio.run(p.node.ship(sink, unreachable, p.clock.advance(1)))
    asyncio.run(p.node.ship(sink, keys, p.clock.advance(1)))
    assert len(sink.records()) == shipped
    assert [r for r in p.node.telemetry.pending if r.experiment == EXPERIMENT] == []


# (d) kill the control plane mid-event, restart it: aggregates drain, none lost, none doubled -----


class FlakySink:
    """The edge's HTTP channel, able to lose one acknowledgement (delivered, then an error)."""

    def __init__(self, channel: HttpAggregateChannel) -> None:
        self.channel = channel
        self.lose_next_ack = False
        self.delivered: list[bytes] = []
        self.lost_ack: bytes | None = None

    async def __call__(self, body: bytes) -> None:
        await self.channel.send(body)
        self.delivered.append(body)
        if self.lose_next_ack:
            self.lose_next_ack = False
            self.lost_ack = body
            raise httpx.ReadError("connection reset before the acknowledgement arrived")


def test_d_control_plane_crash_mid_event_none_lost_none_doubled(tmp_path: Path) -> None:
    clock = FakeClock()
    control_dir, edge_dir = tmp_path / "control", tmp_path / "edge"
    plane = open_control(control_dir)
    plane.replace_document(ADMIN, MICRO_OFFER, "event", clock())
    _, edge_token = plane.create_token(ADMIN, "edge-d", Role.EDGE, clock())
    _, reader_token = plane.create_token(ADMIN, "analyst-d", Role.ANALYST, clock())
    server = ServerThread(create_control_app(plane, clock=clock), name="control").start()
    port, url = server.port, server.url
    node = open_edge(edge_dir, plane.signer.public_key, clock, edge_id="edge-d")
    sync_edge(node, plane)
    channel = HttpAggregateChannel(url, edge_token, timeout=2.0)
    sink = FlakySink(channel)
    rng = random.Random(7)
    state: dict[str, Any] = {"plane": plane, "server": server}

    def wave(size: int) -> None:
        """A wave of attendees: join and react, a minute later decided, then some convert."""
        people = [attendee_id() for _ in range(size)]
        now = clock.advance(5)
        node.ingest(batch(*(s for a in people for s in (join(a, now), emoji(a, now)))), now)
        now = clock.advance(61)
        for a in people:
            node.decide(offer_context(a, rng.choice(["US", "CA", "GB"])), None, now)
        now = clock.advance(30)
        signals = [
            conversion(a, now, rng.choice([5.0, 12.5])) for a in people if rng.random() < 0.4
        ]
        signals += [chat(a, now, "love this so much") for a in people[:5]]
        node.ingest(batch(*signals), now)

    async def event() -> None:
        loop_task = asyncio.create_task(telemetry_loop(node, sink, channel.keys, every_s=0.05))
        try:
            wave(40)
            await wait_for(lambda: node.metrics.batches_shipped >= 1, what="first shipment")
            await wait_for(lambda: len(node.outbox) == 0 and not node.telemetry.deltas)

            # A lost acknowledgement: the control plane got the batch, the edge never heard.
            sink.lose_next_ack = True
            wave(20)
            await wait_for(lambda: sink.lost_ack is not None, what="a lost ack")
            await wait_for(lambda: sink.delivered.count(sink.lost_ack) == 2, what="the resend")
            await wait_for(lambda: len(node.outbox) == 0, what="the outbox to drain")

            # Kill the control plane mid-event; the edge keeps deciding and counting.
            errors_before = node.metrics.ship_errors
            await asyncio.to_thread(state["server"].stop)
            state["plane"].store.close()
            for _ in range(4):
                wave(25)
                await asyncio.sleep(0.12)
            await wait_for(lambda: node.metrics.ship_errors > errors_before, what="ship errors")
            await wait_for(lambda: len(node.outbox) >= 3, what="batches queued on disk")
            queued = len(node.outbox)
            assert node.metrics.outbox_depth >= 3

            # Restart it on the same data directory and port: the outbox drains.
            state["plane"] = restarted = open_control(control_dir)
            state["server"] = await asyncio.to_thread(
                ServerThread(create_control_app(restarted, clock=clock), port=port).start
            )
            await wait_for(lambda: len(node.outbox) == 0, what="the outbox to drain")
            assert node.metrics.batches_shipped >= queued
            wave(10)  # and life goes on
            await wait_for(lambda: len(node.outbox) == 0 and not node.telemetry.deltas)
            await wait_for(lambda: len(node.outbox) == 0)
        finally:
            loop_task.cancel()
            await asyncio.gather(loop_task, return_exceptions=True)
            await channel.close()

    try:
        asyncio.run(asyncio.wait_for(event(), 25))
        restarted: ControlPlane = state["plane"]
        # A duplicate delivered by hand (another lost ack) is acknowledged and not counted.
        assert sink.lost_ack is not None
        with httpx.Client(base_url=url, timeout=5, trust_env=False) as http:
            again = http.post(
                "/v1/aggregates",
                content=sink.lost_ack,
                headers={"Authorization": f"Bearer {edge_token}"},
            )
            assert again.status_code == 200 and again.json() == {"status": "duplicate"}
            shown = http.get(
                f"/v1/experiments/{EXPERIMENT}/aggregates",
                headers={"Authorization": f"Bearer {reader_token}"},
            ).json()["variants"]

        edge = edge_totals(node)
        assert sum(c["exposures"] for c in edge.values()) == 40 + 20 + 4 * 25 + 10
        assert sum(c["converters"] for c in edge.values()) > 0
        assert_same_totals(edge, control_totals(restarted))
        assert_same_totals(edge, shown)  # ≥ k exposures per variant: nothing suppressed
        exposure_records = [
            r for r in restarted.store.unit_records(EXPERIMENT) if r.kind == "exposure"
        ]
        assert len(exposure_records) == 170  # user-level records: once each as well
        assert len({r.pseudonym for r in exposure_records}) == 170
    finally:
        state["server"].stop(crash=True)  # like a killed process
        state["plane"].store.close()
        close_edge(node)


# (e) the outbox bound: when full, a metric and a log line; nothing lost --------------------------


def _gauge(node: EdgeNode, name: str) -> float:
    text = generate_latest(node.metrics.registry(node.clock)).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"no metric {name}")


def test_e_a_full_outbox_raises_a_metric_and_a_log_line_and_loses_nothing(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    p = platform
    assert p.node.outbox is not None
    p.node.outbox.close()
    p.node.outbox = Outbox(p.edge_dir / "small-outbox.db", max_batches=3)
    send, keys = local_telemetry(p.plane, p.clock)

    async def down(body: bytes) -> None:
        raise ConnectionError("control plane unreachable")

    with caplog.at_level(logging.WARNING, logger="edgeloop.edge"):
        for _ in range(7):
            _expose_some(p, [attendee_id() for _ in range(4)])
            ingest(p.node, conversion(next(iter(p.node.telemetry.by_attendee)), p.clock(), 5.0))
            asyncio.run(p.node.ship(down, keys, p.clock()))
    assert len(p.node.outbox) == 3  # bounded
    assert p.node.metrics.outbox_full is True
    assert _gauge(p.node, "edgeloop_aggregate_outbox_full") == 1
    assert _gauge(p.node, "edgeloop_aggregate_outbox_batches") == 3
    full_lines = [r for r in caplog.records if "outbox full" in r.getMessage()]
    assert len(full_lines) == 1  # once when it fills, not once per round
    assert full_lines[0].levelno == logging.WARNING
    assert p.node.telemetry.deltas  # what did not fit is held in memory
    assert control_totals(p.plane) == {}

    # The control plane is back: everything arrives, once.
    for _ in range(3):
        asyncio.run(p.node.ship(send, keys, p.clock.advance(1)))
    assert len(p.node.outbox) == 0
    assert not p.node.telemetry.deltas
    assert _gauge(p.node, "edgeloop_aggregate_outbox_full") == 0
    edge = edge_totals(p.node)
    assert sum(c["exposures"] for c in edge.values()) == 28
    assert_same_totals(edge, control_totals(p.plane))
    assert len(p.plane.store.unit_records(EXPERIMENT)) == 28 + 7


# (f) rate limit --------------------------------------------------------------------------------


def test_f_signals_over_the_per_client_rate_get_429_with_retry_after(platform: Platform) -> None:
    p = platform  # the edge's clock is frozen: no tokens come back until it moves
    full = batch(*(join(f"att-{i}", p.clock()) for i in range(1000)))
    me = {"x-edgeloop-client": "overlay-7"}
    with TestClient(create_edge_app(p.node)) as client:
        for _ in range(4):  # the burst: 4 000 signals
            ok = client.post("/v1/signals", content=full, headers=me)
            assert ok.status_code == 200 and ok.json()["accepted"] == 1000
        accepted = p.node.metrics.signals_accepted
        over = client.post("/v1/signals", content=batch(join("att-x", p.clock())), headers=me)
        assert over.status_code == 429
        assert over.json() == {"error": "rate limit exceeded"}
        assert int(over.headers["retry-after"]) >= 1
        big = client.post("/v1/signals", content=full, headers=me)
        assert big.status_code == 429
        assert int(big.headers["retry-after"]) == 1  # 1 000 tokens at 2 000/s: half a second
        assert p.node.metrics.signals_accepted == accepted  # refused means not ingested
        # Another client has its own budget.
        other = client.post("/v1/signals", content=full, headers={"x-edgeloop-client": "chat-bot"})
        assert other.status_code == 200
        # After Retry-After seconds the first client may send again.
        p.clock.advance(int(big.headers["retry-after"]))
        again = client.post("/v1/signals", content=full, headers=me)
        assert again.status_code == 200 and again.json()["accepted"] == 1000
