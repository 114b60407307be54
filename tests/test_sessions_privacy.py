"""Live session context (the features targeting rules read) and the privacy primitives.

Sessions are fed through the edge's real ingest path (``EdgeNode.ingest``) wherever the point is
what a signal does to a feature; the table itself is used directly for expiry and memory.
"""

from __future__ import annotations

import gc
import hashlib
import hmac
import math
import secrets
import statistics
import tracemalloc
from pathlib import Path

import pytest

from edgeloop.edge import EdgeNode
from edgeloop.edge.sentiment import emoji_valence, text_valence
from edgeloop.edge.sessions import (
    CHAT_HALF_LIFE_S,
    DEFAULT_TTL_S,
    MIC_WINDOW_S,
    SENTIMENT_ALPHA,
    SessionTable,
)
from edgeloop.privacy import (
    DEFAULT_K,
    KEY_BYTES,
    count_noiser,
    in_sample,
    new_experiment_key,
    pseudonym,
    suppressed,
)
from edgeloop.store import LastKnownGood
from edgeloop.sync import SnapshotSigner, SnapshotVerifier
from telemetry_support import (
    T0,
    batch,
    chat,
    dwell,
    emoji,
    hover,
    join,
    leave,
    mic,
)

ME = "att-me"
PER_SESSION_MAX_BYTES = 1024


@pytest.fixture
def node(tmp_path: Path) -> EdgeNode:
    """An edge with no snapshot: only sessions matter here."""
    return EdgeNode(
        SnapshotVerifier(SnapshotSigner.generate().public_key),
        LastKnownGood(tmp_path / "lkg.json"),
        clock=lambda: T0,
    )


def ingest(node: EdgeNode, *signals: dict, now: float | None = None) -> None:
    """Through the real ingest path, "now" being the latest signal's time unless given."""
    when = max(s["ts"] for s in signals) if now is None else now
    result = node.ingest(batch(*signals), when)
    assert result.rejected == [] and result.accepted == len(signals), result


def features(node: EdgeNode, now: float, attendee: str = ME) -> dict:
    return node.sessions.context({"targetingKey": attendee}, now)


# rolling features ----------------------------------------------------------------------------


def test_dwell_is_seconds_since_the_first_signal_of_the_session(node: EdgeNode) -> None:
    assert features(node, T0) == {"targetingKey": ME}  # no session, nothing added
    ingest(node, join(ME, T0))
    ingest(node, hover(ME, T0 + 30, 100))
    assert features(node, T0)["dwell_s"] == 0.0
    assert features(node, T0 + 45)["dwell_s"] == 45.0
    assert features(node, T0 - 5)["dwell_s"] == 0.0  # never negative
    # A late-arriving older signal does not restart the session.
    ingest(node, hover(ME, T0 - 20, 100))
    assert features(node, T0 + 60)["dwell_s"] == 60.0


def test_client_context_is_kept_and_live_features_win(node: EdgeNode) -> None:
    ingest(node, join(ME, T0))
    live = node.sessions.context(
        {"targetingKey": ME, "country": "US", "dwell_s": 9999, "reactions_pos": 50}, T0 + 5
    )
    assert live["country"] == "US"
    assert live["dwell_s"] == 5.0  # a client cannot claim a minute of value it did not spend
    assert live["reactions_pos"] == 0
    assert set(live) == {
        "targetingKey",
        "country",
        "dwell_s",
        "reactions_pos",
        "reactions_neg",
        "hover_ms",
        "chat_rate",
        "sentiment",
        "mic_active",
    }


def test_reactions_from_emoji_valence(node: EdgeNode) -> None:
    assert emoji_valence("🎉") > 0.05
    assert emoji_valence("😡") < -0.05
    assert -0.05 <= emoji_valence("😢") <= 0.05  # ranked, but near neutral
    assert emoji_valence("👍🏽") == emoji_valence("👍")  # skin tone does not change it
    assert emoji_valence("not-an-emoji") == 0.0
    ingest(node, join(ME, T0), emoji(ME, T0 + 1, "🎉"), emoji(ME, T0 + 2, "👍🏽"))
    ingest(node, emoji(ME, T0 + 3, "😡"), emoji(ME, T0 + 4, "😢"), emoji(ME, T0 + 5, "zz"))
    f = features(node, T0 + 6)
    assert (f["reactions_pos"], f["reactions_neg"]) == (2, 1)
    assert f["chat_rate"] == 0.0  # emoji are reactions, not chat messages


def test_reactions_from_chat_valence(node: EdgeNode) -> None:
    happy, angry, flat = "love this so much", "this is terrible", "what time is it"
    assert text_valence(happy) > 0.05
    assert text_valence(angry) < -0.05
    assert text_valence(flat) == 0.0
    assert text_valence("   ") == 0.0
    ingest(node, chat(ME, T0, happy), chat(ME, T0 + 1, angry), chat(ME, T0 + 2, angry))
    ingest(node, chat(ME, T0 + 3, flat), chat(ME, T0 + 4, ""))
    f = features(node, T0 + 5)
    assert (f["reactions_pos"], f["reactions_neg"]) == (1, 2)


def test_hover_ms_adds_up_and_dwell_on_an_overlay_does_not_count_as_hover(node: EdgeNode) -> None:
    ingest(node, hover(ME, T0, 1200), hover(ME, T0 + 1, 800), dwell(ME, T0 + 2, 5000))
    assert features(node, T0 + 3)["hover_ms"] == 2000


def test_chat_rate_decays_with_a_one_minute_half_life(node: EdgeNode) -> None:
    ingest(node, chat(ME, T0, "hi"))
    one = features(node, T0)["chat_rate"]
    assert one == pytest.approx(math.log(2))  # one message ≈ ln 2 per minute right after
    assert features(node, T0 + CHAT_HALF_LIFE_S)["chat_rate"] == pytest.approx(one / 2)
    assert features(node, T0 + 2 * CHAT_HALF_LIFE_S)["chat_rate"] == pytest.approx(one / 4)
    assert features(node, T0 + 3600)["chat_rate"] < 1e-9
    # Messages add up at their own times: a second one a minute later sees the first at half.
    ingest(node, chat(ME, T0 + 60, "again"))
    assert features(node, T0 + 60)["chat_rate"] == pytest.approx(1.5 * one)


def test_chat_rate_tracks_a_steady_rate(node: EdgeNode) -> None:
    """Ten messages a minute for ten minutes reads as about ten a minute."""
    signals = [chat(ME, T0 + 6 * i, "ok") for i in range(100)]
    ingest(node, *signals)
    rate = features(node, T0 + 6 * 99)["chat_rate"]
    assert 9.0 <= rate <= 11.0
    assert features(node, T0 + 6 * 99 + 300)["chat_rate"] < rate / 16  # and fades once it stops


def test_sentiment_is_an_exponentially_weighted_mean_of_valence(node: EdgeNode) -> None:
    items = [
        emoji(ME, T0, "🎉"),
        chat(ME, T0 + 1, "this is terrible"),
        emoji(ME, T0 + 2, "👍"),
        chat(ME, T0 + 3, "love this so much"),
        emoji(ME, T0 + 4, "😡"),
    ]
    valences = [
        emoji_valence("🎉"),
        text_valence("this is terrible"),
        emoji_valence("👍"),
        text_valence("love this so much"),
        emoji_valence("😡"),
    ]
    expected = 0.0
    for v in valences:
        expected = (1 - SENTIMENT_ALPHA) * expected + SENTIMENT_ALPHA * v
    ingest(node, *items)
    f = features(node, T0 + 5)
    assert f["sentiment"] == pytest.approx(expected)
    assert -1.0 <= f["sentiment"] <= 1.0


def test_mic_active_is_event_wide_for_ten_seconds_above_the_threshold(node: EdgeNode) -> None:
    ingest(node, join(ME, T0), join("other", T0))
    assert features(node, T0)["mic_active"] is False
    ingest(node, mic(0.15, T0 + 1))  # below 0.2: not loud
    assert features(node, T0 + 1)["mic_active"] is False
    ingest(node, mic(0.6, T0 + 2))
    assert features(node, T0 + 2)["mic_active"] is True
    assert features(node, T0 + 2, "other")["mic_active"] is True  # everyone's context
    assert features(node, T0 + 2 + MIC_WINDOW_S)["mic_active"] is True
    assert features(node, T0 + 2 + MIC_WINDOW_S + 0.01)["mic_active"] is False
    # A late-arriving older reading does not move the window back.
    ingest(node, mic(0.9, T0 - 30))
    assert features(node, T0 + 2 + MIC_WINDOW_S)["mic_active"] is True
    assert len(node.sessions) == 2  # the creator's mic is not an attendee session


def test_leave_ends_the_session(node: EdgeNode) -> None:
    ingest(node, join(ME, T0), emoji(ME, T0 + 1, "🎉"))
    ingest(node, leave(ME, T0 + 2))
    assert node.sessions.get(ME) is None
    assert features(node, T0 + 3) == {"targetingKey": ME}
    ingest(node, join(ME, T0 + 10))  # coming back starts a fresh session
    assert features(node, T0 + 15)["dwell_s"] == 5.0
    assert features(node, T0 + 15)["reactions_pos"] == 0


# expiry and memory -----------------------------------------------------------------------------


def test_idle_sessions_expire_after_the_ttl() -> None:
    table = SessionTable(ttl_s=60.0)
    table.touch("idle", T0)
    table.touch("busy", T0)
    table.touch("busy", T0 + 50)
    assert table.expire(T0 + 60) == 0  # exactly the TTL idle: still live
    assert table.expire(T0 + 60.5) == 1
    assert table.get("idle") is None and table.get("busy") is not None
    assert table.expire(T0 + 110) == 0
    assert table.expire(T0 + 111) == 1
    assert len(table) == 0


def test_node_purge_expires_sessions_with_the_default_ttl(node: EdgeNode) -> None:
    ingest(node, join("early", T0), join("late", T0 + 600))
    node.purge(T0 + DEFAULT_TTL_S + 1)
    assert node.sessions.get("early") is None
    assert node.sessions.get("late") is not None
    # An idle session that comes back starts over.
    ingest(node, join("early", T0 + DEFAULT_TTL_S + 2), now=T0 + DEFAULT_TTL_S + 2)
    assert features(node, T0 + DEFAULT_TTL_S + 2, "early")["dwell_s"] == 0.0


def _traced_growth(build: object) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        keep = build()  # type: ignore[operator]
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del keep
    return after - before


def test_memory_per_live_session_is_at_most_one_kilobyte() -> None:
    n = 100_000
    ids = [f"att-{secrets.token_hex(8)}" for _ in range(n)]

    def build() -> SessionTable:
        table = SessionTable()
        for i, attendee in enumerate(ids):
            # A fresh copy of the id: the session owns its key, as after decoding a signal.
            session = table.touch("".join(attendee), T0 + i * 1e-3)
            session.react(0.4)
            session.chat(T0 + i * 1e-3)
            session.hover_ms += 1500
        return table

    per_session = _traced_growth(build) / n
    assert per_session <= PER_SESSION_MAX_BYTES, f"{per_session:.0f} B per session"


def test_memory_per_live_session_through_the_ingest_path(tmp_path: Path) -> None:
    """Everything the node keeps per attendee after signals (sessions and bookkeeping)."""
    node = EdgeNode(
        SnapshotVerifier(SnapshotSigner.generate().public_key),
        LastKnownGood(tmp_path / "lkg.json"),
        clock=lambda: T0,
    )
    n = 50_000  # the table test above covers 100 000; this one adds the whole ingest path
    bodies = [
        batch(*(emoji(f"att-{secrets.token_hex(8)}", T0, "🎉") for _ in range(100)))
        for _ in range(n // 100)
    ]

    def build() -> EdgeNode:
        for body in bodies:
            node.ingest(body, T0)
        return node

    per_session = _traced_growth(build) / n
    assert len(node.sessions) == n
    assert per_session <= PER_SESSION_MAX_BYTES, f"{per_session:.0f} B per session"


# pseudonyms ------------------------------------------------------------------------------------


def test_pseudonym_matches_hmac_sha256_rfc4231_vector() -> None:
    # RFC 4231 test case 2: HMAC-SHA256(key "Jefe", "what do ya want for nothing?").
    full = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert pseudonym(b"Jefe", "what do ya want for nothing?") == full[:32]


def test_pseudonym_is_truncated_hmac_sha256_of_the_utf8_id() -> None:
    key = bytes(range(32))
    for attendee in ("att-1", "att-ünïcödé-🎉", "x" * 128):
        independent = hmac.new(key, attendee.encode("utf-8"), hashlib.sha256).hexdigest()
        assert pseudonym(key, attendee) == independent[:32]
        assert len(pseudonym(key, attendee)) == 32
    assert pseudonym(key, "att-1") == pseudonym(key, "att-1")
    assert pseudonym(key, "att-1") != pseudonym(key, "att-2")
    assert pseudonym(key, "att-1") != pseudonym(bytes(32), "att-1")  # per-experiment keys


def test_experiment_keys_are_random_256_bit() -> None:
    keys = {new_experiment_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(len(k) == KEY_BYTES == 32 for k in keys)


# deterministic sampling ------------------------------------------------------------------------

IDS = [f"att-{i}" for i in range(20_000)]


@pytest.mark.parametrize("rate", [0.01, 0.1, 0.25, 0.5, 0.9])
def test_sampling_rate_is_respected(rate: float) -> None:
    key = b"k" * 32
    share = sum(in_sample(pseudonym(key, a), rate) for a in IDS) / len(IDS)
    sd = math.sqrt(rate * (1 - rate) / len(IDS))
    assert abs(share - rate) <= 5 * sd, (share, rate)


def test_sampling_is_deterministic_nested_and_independent_across_experiments() -> None:
    k1, k2 = b"1" * 32, b"2" * 32
    first = [in_sample(pseudonym(k1, a), 0.3) for a in IDS]
    assert first == [in_sample(pseudonym(k1, a), 0.3) for a in IDS]  # no re-rolling
    wider = [in_sample(pseudonym(k1, a), 0.6) for a in IDS]
    assert all(w for f, w in zip(first, wider, strict=True) if f)  # in at 0.3 ⇒ in at 0.6
    other = [in_sample(pseudonym(k2, a), 0.3) for a in IDS]
    both = sum(a and b for a, b in zip(first, other, strict=True)) / len(IDS)
    assert abs(both - 0.09) < 0.015  # independent: 0.3 × 0.3


def test_sampling_edges() -> None:
    assert in_sample("00000000" + "0" * 24, 1.0)
    assert in_sample("ffffffff" + "f" * 24, 1.0)
    assert not in_sample("00000000" + "0" * 24, 0.0)
    assert not in_sample("00000000", -1.0)
    assert in_sample("00000000", 1e-9)  # the lowest pseudonym is in any positive sample
    assert not in_sample("ffffffff", 0.999999)
    assert in_sample("7fffffff", 0.5)
    assert not in_sample("80000000", 0.5)


# release rules ---------------------------------------------------------------------------------


def test_k_suppression() -> None:
    assert DEFAULT_K == 10
    assert suppressed(0) and suppressed(DEFAULT_K - 1)
    assert not suppressed(DEFAULT_K) and not suppressed(10_000)
    assert suppressed(4, k=5) and not suppressed(5, k=5)


@pytest.mark.parametrize("epsilon", [0.0, -1.0, float("nan")])
def test_count_noiser_refuses_a_non_positive_epsilon(epsilon: float) -> None:
    with pytest.raises(ValueError, match="epsilon"):
        count_noiser(epsilon)


def _discrete_laplace_variance(scale: float) -> float:
    q = math.exp(-1.0 / scale)
    return 2 * q / (1 - q) ** 2


@pytest.mark.parametrize("epsilon", [1.0, 0.5])
def test_count_noiser_adds_centred_discrete_laplace_noise(epsilon: float) -> None:
    noisy = count_noiser(epsilon)
    samples = [noisy(1000) for _ in range(4000)]
    assert all(isinstance(x, int) for x in samples)
    mean, variance = statistics.fmean(samples), statistics.pvariance(samples)
    expected = _discrete_laplace_variance(1.0 / epsilon)
    assert abs(mean - 1000) < 5 * math.sqrt(expected / len(samples))  # unbiased
    assert 0.8 * expected < variance < 1.2 * expected  # scale 1/epsilon
    assert len(set(samples)) > 5  # it is noise, not a constant offset
    # Heavier tails than a normal of the same variance would be a discrete-Laplace tell:
    # P(|noise| >= 1) = 2q/(1+q) with q = exp(-epsilon).
    q = math.exp(-epsilon)
    off = sum(x != 1000 for x in samples) / len(samples)
    assert abs(off - 2 * q / (1 + q)) < 0.04


def test_count_noiser_never_releases_a_negative_count() -> None:
    noisy = count_noiser(0.5)
    samples = [noisy(0) for _ in range(2000)]
    assert min(samples) == 0
    assert statistics.fmean(samples) > 0  # clamped at zero, so biased up near zero
