"""The micro-event simulator: attendees with known true effects, driving a real edge.

An :class:`EventSpec` describes an event — how long, how many arrivals per minute (possibly
varying over time), who the audience is (segments with their dwell and chat habits), how
positive the chat is — and, per variant, the **true effects** of being served it
(:class:`VariantEffect`: 15-minute conversion probability, order value, relative shift of chat
valence after exposure, retention curve). A :class:`MicroEventSimulator` then plays the event
against a :class:`SimTarget`, in **event time** that the caller advances:

- time moves in steps (default one event minute); nothing here reads a clock — every timestamp
  is ``spec.start`` plus simulated offsets, so 72 hours of event run in seconds and the same seed
  gives the same event;
- each attendee's future (join, chat and emoji spread over their dwell, overlay hovers, leave;
  later a CTA click and conversion; returns days later) sits in a priority queue (a calendar
  queue of one-minute buckets) and is sent to the target as signal batches, step by step;
- after each step the simulator asks the edge for a decision for every attendee who did
  something and has not been exposed yet (a client re-deciding as its context changes). The offer
  appears only once the edge's live context passes the monetize-after-value gate; an attendee
  behaves according to the variant they were **served** — the simulator learns it from the
  decision, exactly like a client, and knows nothing else about assignment or rollbacks;
- ``every(seconds, fn)`` hooks periodic work in event time (aggregate shipping, decision-loop
  ticks, purges).

Targets: :class:`InProcessTarget` calls ``EdgeNode.ingest`` / ``decide`` directly with the event
time (large statistical runs), :class:`HttpTarget` POSTs ``/v1/signals`` and ``/v1/decide`` to a
running edge (demos and end-to-end tests). **Over HTTP the edge decides and validates signal
timestamps with its own clock**: event time must then track that clock — real time (a few
arrivals per minute), or an edge whose clock the test sets to each step's end. Signals more than
5 minutes ahead of (or 24 hours behind) the edge's clock are rejected.

Chat valence: the simulator draws every chat item from a fixed palette of emoji and messages
whose valences (Emoji Sentiment Ranking / VADER, the edge's own scorers) are listed in
``PALETTE``; the mix of positive, neutral and negative items is chosen so that the expected
valence equals the attendee's base valence times ``1 + valence_shift`` of the served variant.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import numpy as np

DAY_S = 86400.0
NEUTRAL_SHARE = 0.15  # of chat items, whatever the mood: questions, greetings, 🤔
MAX_SIGNALS_PER_BATCH = 1000  # the edge's limit per POST /v1/signals
MAX_CONTEXTS_PER_DECIDE = 1000  # the edge's limit per POST /v1/decide
BUCKET_S = 60.0  # the calendar queue's bucket width

# Chat items and their valence as the edge scores them (docs/telemetry.md: emoji by the Emoji
# Sentiment Ranking, text by VADER's compound score). tests/test_sim.py checks these numbers
# against edgeloop.edge.sentiment, so the simulated mood is what the edge measures.
PALETTE: dict[str, dict[str, tuple[tuple[str, float], ...]]] = {
    "positive": {
        "emoji": (
            ("❤", 0.746),
            ("😍", 0.678),
            ("👍", 0.522),
            ("👏", 0.521),
            ("🎉", 0.74),
            ("😊", 0.645),
            ("🙌", 0.56),
            ("😀", 0.572),
        ),
        "text": (
            ("love this!", 0.6696),
            ("this is great", 0.6249),
            ("so good", 0.4927),
            ("wow amazing", 0.8225),
            ("lol", 0.4215),
        ),
    },
    "neutral": {
        "emoji": (("🤔", 0.0), ("🙄", 0.0)),
        "text": (("hi from Berlin", 0.0), ("what song is this?", 0.0)),
    },
    "negative": {
        "emoji": (
            ("😐", -0.393),
            ("😒", -0.375),
            ("😠", -0.302),
            ("😑", -0.314),
            ("👎", -0.19),
            ("😡", -0.173),
        ),
        "text": (
            ("ugh, another ad", -0.4215),
            ("stop selling stuff", -0.296),
            ("this is annoying", -0.4019),
            ("not cool", -0.2411),
            ("this sucks", -0.3612),
        ),
    },
}

COUNTRIES: tuple[tuple[str, float], ...] = (
    ("US", 0.40),
    ("GB", 0.12),
    ("CA", 0.08),
    ("DE", 0.10),
    ("BR", 0.10),
    ("IN", 0.10),
    ("JP", 0.10),
)


# the specification -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetentionCurve:
    """P(an exposed attendee comes back on day d after exposure), d = 1, 2, …

    Given at days 1, 7 and 30 and interpolated log-linearly in between (and beyond 30 on the
    last segment's slope): a typical decaying return curve. ``on_day(7)`` is the true D7
    retention the report's ``retention_d7`` estimates (returned on day 7, i.e. in [7, 8) days).
    """

    d1: float = 0.30
    d7: float = 0.12
    d30: float = 0.05

    def __post_init__(self) -> None:
        for name in ("d1", "d7", "d30"):
            p = getattr(self, name)
            if not 0 < p <= 1:
                raise ValueError(f"RetentionCurve.{name} must be in (0, 1], got {p}")

    def on_day(self, day: int) -> float:
        if day < 1:
            return 0.0
        pts = ((1, self.d1), (7, self.d7), (30, self.d30))
        (a, pa), (b, pb) = (pts[0], pts[1]) if day <= 7 else (pts[1], pts[2])
        t = (math.log(day) - math.log(a)) / (math.log(b) - math.log(a))
        return min(1.0, math.exp(math.log(pa) + t * (math.log(pb) - math.log(pa))))

    def probabilities(self, days: int) -> np.ndarray:
        """P(return on day d) for d = 1..days."""
        return np.array([self.on_day(d) for d in range(1, days + 1)])


@dataclass(frozen=True, slots=True)
class VariantEffect:
    """The true effect of being *served* a variant (ground truth the platform must recover)."""

    conversion_15m: float  # P(converting within 15 minutes of exposure)
    revenue_mean: float = 0.0  # mean value of a conversion (gamma distributed, shape 2)
    valence_shift: float = 0.0  # relative shift of chat valence after exposure (-0.30 = -30 %)
    retention: RetentionCurve | None = field(default_factory=RetentionCurve)  # None: no returns
    conversion_kind: str = "purchase"  # purchase | subscription | trial_claim | donation | ticket
    cta: str | None = None  # a CTA the attendee clicks just before converting

    def __post_init__(self) -> None:
        if not 0 <= self.conversion_15m <= 1:
            raise ValueError(f"conversion_15m must be in [0, 1], got {self.conversion_15m}")
        if self.revenue_mean < 0:
            raise ValueError(f"revenue_mean must be >= 0, got {self.revenue_mean}")
        if self.valence_shift < -1:
            raise ValueError(f"valence_shift must be >= -1, got {self.valence_shift}")


@dataclass(frozen=True, slots=True)
class Segment:
    """Part of the audience with its own habits."""

    name: str
    share: float
    dwell_median_s: float  # log-normal dwell (one visit)
    chat_per_min: float  # chat items (emoji and messages) per minute while present
    dwell_sigma: float = 0.8
    conversion_factor: float = 1.0  # multiplies the served variant's conversion probability
    hover_per_min: float = 0.2  # overlay hovers per minute


DEFAULT_AUDIENCE: tuple[Segment, ...] = (
    Segment("drifter", 0.45, dwell_median_s=75, chat_per_min=0.3),
    Segment("regular", 0.40, dwell_median_s=300, chat_per_min=0.5),
    Segment("superfan", 0.15, dwell_median_s=900, chat_per_min=0.8),
)


@dataclass(frozen=True, slots=True)
class DailyCycle:
    """Arrivals per minute that swing around ``mean`` once a day, peaking at ``peak_hour`` of
    event time (live audiences come in evening waves)."""

    mean: float
    swing: float = 0.5  # relative amplitude: 0.5 → between 0.5 × and 1.5 × mean
    peak_hour: float = 2.0

    def __call__(self, elapsed_s: float) -> float:
        phase = 2 * math.pi * (elapsed_s / 3600.0 - self.peak_hour) / 24.0
        return max(0.0, self.mean * (1 + self.swing * math.cos(phase)))


ArrivalRate = float | Callable[[float], float]


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One micro-event: who comes, how they behave, and the true effect of each variant."""

    flag: str  # the experiment flag attendees are decided on
    start: float  # event time of the first minute (epoch seconds)
    duration_s: float  # arrivals happen in [start, start + duration_s)
    arrivals_per_min: ArrivalRate  # a number, or a function of seconds since start
    effects: Mapping[str, VariantEffect]  # per served variant; others: no conversion, no shift
    audience: tuple[Segment, ...] = DEFAULT_AUDIENCE
    countries: tuple[tuple[str, float], ...] = COUNTRIES
    base_valence: float = 0.35  # mean chat valence before any offer
    valence_sd: float = 0.08  # attendee-to-attendee spread of base valence
    emoji_share: float = 0.85  # of chat items, the rest are messages
    seed: int = 7
    id_prefix: str = "att"
    retention_days: int = 31  # returns are simulated for this many days after exposure

    def __post_init__(self) -> None:
        if self.duration_s <= 0:
            raise ValueError("duration_s must be positive")
        if not self.audience or abs(sum(s.share for s in self.audience) - 1) > 1e-6:
            raise ValueError("audience shares must sum to 1")
        lo, hi = _valence_range()
        if not lo <= self.base_valence <= hi:
            raise ValueError(f"base_valence must be in [{lo:.2f}, {hi:.2f}]")

    def rate(self, elapsed_s: float) -> float:
        r = self.arrivals_per_min
        return float(r(elapsed_s)) if callable(r) else float(r)

    @property
    def end(self) -> float:
        return self.start + self.duration_s


# targets ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Served:
    """What a decision told the attendee's client (the simulator sees nothing more)."""

    variant: str | None
    reason: str
    # The decision's metadata "assigned" (a rolled-back variant whose attendee is served the
    # control). Bookkeeping only: behaviour follows ``variant``, what the attendee was shown.
    assigned: str | None = None

    @property
    def exposed(self) -> bool:
        """A split decision is the attendee's exposure to the experiment."""
        return self.reason == "SPLIT" and self.variant is not None


@dataclass(frozen=True, slots=True)
class SendResult:
    accepted: int
    rejected: int


class SimTarget(Protocol):
    def send(self, signals: list[dict[str, Any]], now: float) -> SendResult:
        """Deliver one batch (≤ 1 000 signals) at event time ``now``."""
        ...

    def decide(self, contexts: list[dict[str, Any]], flag: str, now: float) -> list[Served]:
        """Decide ``flag`` for each context (≤ 1 000) at event time ``now``."""
        ...


class _Node(Protocol):  # the part of edgeloop.edge.EdgeNode the in-process target uses
    def ingest(self, body: bytes, now: float) -> Any: ...
    def decide(self, context: Mapping[str, Any], flags: list[str] | None, now: float) -> Any: ...


_encode = msgspec.json.Encoder().encode


def _served(d: Any) -> Served:
    """A Served from an engine Decision or its JSON form."""
    if isinstance(d, dict):
        variant, reason, meta = d.get("variant"), d.get("reason"), d.get("metadata") or {}
    else:
        variant, reason, meta = d.variant, d.reason, d.metadata
    assigned = meta.get("assigned") if isinstance(meta, dict) else None
    return Served(variant, str(reason), assigned if isinstance(assigned, str) else None)


class InProcessTarget:
    """Signals and decisions straight into an EdgeNode, at the simulator's event time."""

    def __init__(self, node: _Node) -> None:
        self.node = node

    def send(self, signals: list[dict[str, Any]], now: float) -> SendResult:
        result = self.node.ingest(_encode(signals), now)
        return SendResult(result.accepted, len(result.rejected))

    def decide(self, contexts: list[dict[str, Any]], flag: str, now: float) -> list[Served]:
        flags = [flag]
        out = []
        for ctx in contexts:
            d = self.node.decide(ctx, flags, now).get(flag)
            out.append(Served(None, "NONE") if d is None else _served(d))
        return out


class HttpTarget:
    """``POST /v1/signals`` and ``POST /v1/decide`` on a running edge.

    The edge stamps decisions (and judges signal timestamps) with **its own clock**, not the
    ``now`` passed here: run the event in real time, or against an edge whose clock follows the
    simulation (tests). A 429 is retried after its ``Retry-After`` (at most ``max_retries``).
    """

    def __init__(
        self,
        edge_url: str,
        client_id: str = "edgeloop-sim",
        *,
        timeout: float = 10.0,
        max_retries: int = 5,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        import time

        import httpx

        self.base = edge_url.rstrip("/")
        self.client = httpx.Client(
            timeout=timeout,
            headers={"X-Edgeloop-Client": client_id, "Content-Type": "application/json"},
        )
        self.max_retries = max_retries
        self.sleep = sleep or time.sleep

    def _post(self, path: str, body: bytes) -> Any:
        for _attempt in range(self.max_retries + 1):
            response = self.client.post(self.base + path, content=body)
            if response.status_code in (429, 503):
                self.sleep(float(response.headers.get("retry-after", "1")))
                continue
            response.raise_for_status()
            return response.json()
        response.raise_for_status()
        raise RuntimeError(f"{path}: still {response.status_code} after retries")

    def send(self, signals: list[dict[str, Any]], now: float) -> SendResult:
        answer = self._post("/v1/signals", _encode(signals))
        return SendResult(int(answer["accepted"]), len(answer["rejected"]))

    def decide(self, contexts: list[dict[str, Any]], flag: str, now: float) -> list[Served]:
        answer = self._post("/v1/decide", _encode({"contexts": contexts, "flags": [flag]}))
        out = []
        for decisions in answer["results"]:
            d = decisions.get(flag)
            out.append(Served(None, "NONE") if d is None else _served(d))
        return out

    def close(self) -> None:
        self.client.close()


# the simulation --------------------------------------------------------------------------

# Event kinds in the queue.
_JOIN, _CHAT, _HOVER, _LEAVE, _CLICK, _CONVERT, _RETURN = range(7)


class AttendeeState:
    """One simulated attendee as the simulator tracks them (``MicroEventSimulator.attendees``)."""

    __slots__ = (
        "assigned",
        "country",
        "exposed_at",
        "id",
        "joined_at",
        "p_pos",
        "present",
        "segment",
        "served",
        "valence",
    )

    def __init__(self, ident: str, segment: int, country: str, valence: float) -> None:
        self.id = ident
        self.segment = segment
        self.country = country
        self.valence = valence  # base chat valence before any offer
        self.present = False
        self.served: str | None = None  # the variant served at exposure
        self.assigned: str | None = None
        self.exposed_at: float | None = None
        self.joined_at: float | None = None  # event time of the (last) join
        self.p_pos = 0.0  # share of positive chat items (sets the expected valence)


@dataclass(frozen=True, slots=True)
class VariantOutcome:
    """What the simulator generated for one served variant (its ground truth, realized)."""

    exposed: int
    conversions: int
    revenue: float
    chat_items: int
    chat_valence_sum: float
    returns: int

    @property
    def conversion_rate(self) -> float:
        return self.conversions / self.exposed if self.exposed else math.nan

    @property
    def mean_valence(self) -> float:
        return self.chat_valence_sum / self.chat_items if self.chat_items else math.nan


@dataclass(frozen=True, slots=True)
class SimSummary:
    """Everything the simulator observed and generated; equal for equal seeds and targets."""

    now: float
    attendees: int
    signals_sent: int
    signals_accepted: int
    signals_rejected: int
    decisions: int
    exposed: int
    by_served: dict[str, VariantOutcome]
    # (assigned, served) → exposures: ("C", "A") counts C's attendees served A after a rollback
    assigned_served: dict[tuple[str, str], int]
    first_redirect: dict[str, float]  # assigned variant → event time it was first served other


class _Hook:
    __slots__ = ("every", "fn", "next")

    def __init__(self, every: float, fn: Callable[[float], Any], first: float) -> None:
        self.every = every
        self.fn = fn
        self.next = first


class MicroEventSimulator:
    """Plays an :class:`EventSpec` against a :class:`SimTarget` in event time.

    Future events live in a calendar queue — one bucket per event minute, each bucket sorted by
    timestamp when its minute comes (a priority queue that costs O(1) per insertion) — so
    returns a month ahead cost nothing until their day.
    """

    def __init__(self, spec: EventSpec, target: SimTarget, *, step_s: float = 60.0) -> None:
        if step_s <= 0:
            raise ValueError("step_s must be positive")
        self.spec = spec
        self.target = target
        self.step_s = step_s
        self.now = spec.start
        self.rng = np.random.default_rng(spec.seed)
        self.attendees: list[AttendeeState] = []
        self._calendar: dict[int, list[tuple[float, int, int, float]]] = {}
        self._next_bucket = 0  # buckets before this one are consumed
        self._hooks: list[_Hook] = []
        seg = spec.audience
        self._shares = np.array([s.share for s in seg])
        self._log_median = np.log([s.dwell_median_s for s in seg])
        self._sigma = np.array([s.dwell_sigma for s in seg])
        self._chat_rate = np.array([s.chat_per_min for s in seg]) / 60.0
        self._hover_rate = np.array([s.hover_per_min for s in seg]) / 60.0
        self._country_names = [c for c, _ in spec.countries]
        weights = np.array([w for _, w in spec.countries], dtype=float)
        self._country_p = weights / weights.sum()
        self._returns = {
            v: e.retention.probabilities(spec.retention_days)
            for v, e in spec.effects.items()
            if e.retention is not None
        }
        self._vp, self._vn = mood_means(spec.emoji_share)
        self._items = {
            (mood, emoji): PALETTE[mood]["emoji" if emoji else "text"]
            for mood in PALETTE
            for emoji in (True, False)
        }
        # observations
        self.signals_sent = 0
        self.signals_accepted = 0
        self.signals_rejected = 0
        self.decisions = 0
        self._conversions: Counter[str] = Counter()
        self._revenue: Counter[str] = Counter()
        self._chat_n: Counter[str] = Counter()
        self._chat_sum: Counter[str] = Counter()
        self._return_n: Counter[str] = Counter()
        self._exposed: Counter[str] = Counter()
        self._assigned_served: Counter[tuple[str, str]] = Counter()
        self._first_redirect: dict[str, float] = {}

    # hooks -------------------------------------------------------------------------------

    def every(
        self, seconds: float, fn: Callable[[float], Any], *, first: float | None = None
    ) -> _Hook:
        """Call ``fn(now)`` at the end of the first step reaching each multiple of ``seconds``
        of event time (from ``first``, default ``start + seconds``). Hooks run in the order
        they were added, after the step's signals and decisions."""
        if seconds <= 0:
            raise ValueError("seconds must be positive")
        hook = _Hook(seconds, fn, self.spec.start + seconds if first is None else first)
        self._hooks.append(hook)
        return hook

    def remove(self, hook: _Hook) -> None:
        self._hooks.remove(hook)

    def clear_hooks(self) -> None:
        """Drop every periodic hook (e.g. to run on after the event with other periods)."""
        self._hooks.clear()

    # running -------------------------------------------------------------------------------

    def run(
        self,
        until: float,
        *,
        step_s: float | None = None,
        on_step: Callable[[float], Any] | None = None,
    ) -> None:
        """Advance event time to ``until`` in steps (the last one may be shorter)."""
        step = self.step_s if step_s is None else step_s
        while self.now < until - 1e-9:
            self.step(min(step, until - self.now))
            if on_step is not None:
                on_step(self.now)

    def step(self, seconds: float | None = None) -> float:
        """One step: arrivals, due events as signal batches, decisions, hooks. Returns ``now``."""
        seconds = self.step_s if seconds is None else seconds
        t0, t1 = self.now, self.now + seconds
        if t0 < self.spec.end:
            self._arrive(t0, min(t1, self.spec.end))
        signals, touched = self._signals(self._take(t1))
        for i in range(0, len(signals), MAX_SIGNALS_PER_BATCH):
            chunk = signals[i : i + MAX_SIGNALS_PER_BATCH]
            result = self.target.send(chunk, t1)
            self.signals_sent += len(chunk)
            self.signals_accepted += result.accepted
            self.signals_rejected += result.rejected
        self.now = t1
        self._decide(touched, t1)
        for hook in self._hooks:
            if t1 >= hook.next - 1e-9:
                hook.fn(t1)
                while hook.next <= t1 + 1e-9:
                    hook.next += hook.every
        return t1

    # the calendar queue ----------------------------------------------------------------------

    def _push(self, ts: float, kind: int, who: int, value: float = 0.0) -> None:
        bucket = int((ts - self.spec.start) // BUCKET_S)
        found = self._calendar.get(bucket)
        if found is None:
            self._calendar[bucket] = [(ts, kind, who, value)]
        else:
            found.append((ts, kind, who, value))

    def _take(self, until: float) -> list[tuple[float, int, int, float]]:
        """Every queued event before ``until``, by time (ties in insertion order)."""
        calendar = self._calendar
        last = int((until - self.spec.start) // BUCKET_S)
        due: list[tuple[float, int, int, float]] = []
        for bucket in range(self._next_bucket, last):
            found = calendar.pop(bucket, None)
            if found:
                due.extend(found)
        self._next_bucket = max(self._next_bucket, last)
        partial = calendar.get(last)
        if partial:
            now = [e for e in partial if e[0] < until]
            if now:
                due.extend(now)
                calendar[last] = [e for e in partial if e[0] >= until]
        due.sort(key=_at)
        return due

    @property
    def returns(self) -> int:
        """Return visits sent so far."""
        return sum(self._return_n.values())

    def pending(self) -> int:
        """Events still queued (returns days ahead, conversions minutes ahead)."""
        return sum(len(b) for b in self._calendar.values())

    # arrivals ------------------------------------------------------------------------------

    def _arrive(self, t0: float, t1: float) -> None:
        spec, rng = self.spec, self.rng
        mid = (t0 + t1) / 2 - spec.start
        n = int(rng.poisson(spec.rate(mid) * (t1 - t0) / 60.0))
        if n == 0:
            return
        seg = rng.choice(len(self._shares), size=n, p=self._shares)
        arrive = (t0 + np.sort(rng.random(n)) * (t1 - t0)).tolist()
        dwell_a = np.exp(self._log_median[seg] + self._sigma[seg] * rng.standard_normal(n))
        n_chat = rng.poisson(self._chat_rate[seg] * dwell_a).tolist()
        n_hover = rng.poisson(self._hover_rate[seg] * dwell_a).tolist()
        countries = rng.choice(len(self._country_names), size=n, p=self._country_p).tolist()
        lo, hi = _valence_range()
        valence = np.clip(spec.base_valence + spec.valence_sd * rng.standard_normal(n), lo, hi)
        chat_u = rng.random(sum(n_chat)).tolist()
        hover_u = rng.random(sum(n_hover)).tolist()
        hover_ms = rng.exponential(800.0, sum(n_hover)).tolist()
        dwell, valence_l, seg_l = dwell_a.tolist(), valence.tolist(), seg.tolist()
        push, names, prefix = self._push, self._country_names, f"{spec.id_prefix}-{spec.seed}-"
        ci = hi_ = 0
        for i in range(n):
            who = len(self.attendees)
            a = AttendeeState(f"{prefix}{who:07d}", seg_l[i], names[countries[i]], valence_l[i])
            a.p_pos = self._p_positive(a.valence)
            self.attendees.append(a)
            start, d = arrive[i], dwell[i]
            push(start, _JOIN, who)
            for u in chat_u[ci : ci + n_chat[i]]:
                push(start + u * d, _CHAT, who)
            ci += n_chat[i]
            for j in range(hi_, hi_ + n_hover[i]):
                push(start + hover_u[j] * d, _HOVER, who, hover_ms[j])
            hi_ += n_hover[i]
            push(start + d, _LEAVE, who)

    def _p_positive(self, mean: float) -> float:
        """The share of positive chat items that gives an expected valence of ``mean``."""
        vp, vn = self._vp, self._vn
        p = (mean - (1 - NEUTRAL_SHARE) * vn) / (vp - vn)
        return min(1 - NEUTRAL_SHARE, max(0.0, p))

    # events → signals ------------------------------------------------------------------------

    def _signals(
        self, due: list[tuple[float, int, int, float]]
    ) -> tuple[list[dict[str, Any]], list[int]]:
        people, effects = self.attendees, self.spec.effects
        n_chat = sum(1 for e in due if e[1] == _CHAT)
        u = self.rng.random(3 * n_chat).tolist() if n_chat else []
        k = 0
        emoji_share, items = self.spec.emoji_share, self._items
        signals: list[dict[str, Any]] = []
        append = signals.append
        touched: dict[int, None] = {}
        for ts, kind, who, value in due:
            a = people[who]
            if kind == _CHAT:
                u_mood, u_medium, u_item = u[k], u[k + 1], u[k + 2]
                k += 3
                if not a.present:
                    continue
                p = a.p_pos
                mood = (
                    "positive"
                    if u_mood < p
                    else "neutral"
                    if u_mood < p + NEUTRAL_SHARE
                    else "negative"
                )
                emoji = u_medium < emoji_share
                palette = items[(mood, emoji)]
                text, valence = palette[int(u_item * len(palette))]
                if emoji:
                    append({"type": "chat_emoji", "ts": ts, "attendee": a.id, "emoji": text})
                else:
                    append({"type": "chat_message", "ts": ts, "attendee": a.id, "text": text})
                served = a.served
                if served is None:
                    touched[who] = None
                else:
                    self._chat_n[served] += 1
                    self._chat_sum[served] += valence
            elif kind == _JOIN:
                a.present = True
                a.joined_at = ts
                append({"type": "join", "ts": ts, "attendee": a.id})
                touched[who] = None
            elif kind == _HOVER:
                if not a.present:
                    continue
                ms = int(value) + 1
                append({"type": "overlay_hover", "ts": ts, "attendee": a.id, "ms": ms})
                if a.served is None:
                    touched[who] = None
            elif kind == _LEAVE:
                a.present = False
                touched.pop(who, None)
                append({"type": "leave", "ts": ts, "attendee": a.id})
            elif kind == _CLICK:
                cta = effects[a.served].cta  # type: ignore[index]
                append({"type": "cta_click", "ts": ts, "attendee": a.id, "cta": cta})
            elif kind == _CONVERT:
                served = a.served
                assert served is not None
                append(
                    {
                        "type": "conversion",
                        "ts": ts,
                        "attendee": a.id,
                        "kind": effects[served].conversion_kind,
                        "value": value,
                        "currency": "USD",
                    }
                )
                self._conversions[served] += 1
                self._revenue[served] += value
            else:  # _RETURN
                append({"type": "return", "ts": ts, "attendee": a.id})
                if a.served is not None:
                    self._return_n[a.served] += 1
        return signals, list(touched)

    # decisions -------------------------------------------------------------------------------

    def _decide(self, touched: list[int], now: float) -> None:
        everyone = self.attendees
        people = [i for i in touched if everyone[i].present and everyone[i].served is None]
        for i in range(0, len(people), MAX_CONTEXTS_PER_DECIDE):
            chunk = people[i : i + MAX_CONTEXTS_PER_DECIDE]
            contexts = [
                {"targetingKey": everyone[w].id, "country": everyone[w].country} for w in chunk
            ]
            answers = self.target.decide(contexts, self.spec.flag, now)
            self.decisions += len(contexts)
            for who, served in zip(chunk, answers, strict=True):
                if served.exposed:
                    self._expose(who, served, now)

    def _expose(self, who: int, served: Served, now: float) -> None:
        a, rng, spec = self.attendees[who], self.rng, self.spec
        variant = served.variant
        assert variant is not None
        assigned = served.assigned or variant
        a.served, a.assigned, a.exposed_at = variant, assigned, now
        self._exposed[variant] += 1
        self._assigned_served[(assigned, variant)] += 1
        if assigned != variant and assigned not in self._first_redirect:
            self._first_redirect[assigned] = now
        effect = spec.effects.get(variant)
        if effect is None:
            return
        a.p_pos = self._p_positive(a.valence * (1 + effect.valence_shift))
        factor = spec.audience[a.segment].conversion_factor
        if rng.random() < min(1.0, effect.conversion_15m * factor):
            at = now + float(rng.uniform(20.0, 14 * 60.0))  # inside the 15-minute window
            value = round(float(rng.gamma(2.0, effect.revenue_mean / 2.0)), 2)
            if effect.cta is not None:
                self._push(at - float(rng.uniform(2.0, 15.0)), _CLICK, who)
            self._push(at, _CONVERT, who, value)
        p = self._returns.get(variant)
        if p is not None:
            days = (np.flatnonzero(rng.random(len(p)) < p) + 1).tolist()
            offsets = rng.random(len(days)).tolist()
            for d, u in zip(days, offsets, strict=True):
                self._push(now + (d + u) * DAY_S, _RETURN, who)

    # results -------------------------------------------------------------------------------

    def summary(self) -> SimSummary:
        variants = sorted(set(self._exposed) | set(self.spec.effects))
        return SimSummary(
            now=self.now,
            attendees=len(self.attendees),
            signals_sent=self.signals_sent,
            signals_accepted=self.signals_accepted,
            signals_rejected=self.signals_rejected,
            decisions=self.decisions,
            exposed=sum(self._exposed.values()),
            by_served={
                v: VariantOutcome(
                    self._exposed[v],
                    self._conversions[v],
                    round(self._revenue[v], 2),
                    self._chat_n[v],
                    round(self._chat_sum[v], 6),
                    self._return_n[v],
                )
                for v in variants
            },
            assigned_served=dict(sorted(self._assigned_served.items())),
            first_redirect=dict(sorted(self._first_redirect.items())),
        )


def _at(event: tuple[float, int, int, float]) -> float:
    return event[0]


def _medium_mean(mood: str, medium: str) -> float:
    items = PALETTE[mood][medium]
    return sum(v for _, v in items) / len(items)


def mood_means(emoji_share: float) -> tuple[float, float]:
    """Mean valence of a positive and of a negative chat item when a share ``emoji_share`` of
    items are emoji (the medium is drawn independently of the mood; items uniformly within)."""

    def mean(mood: str) -> float:
        e, t = _medium_mean(mood, "emoji"), _medium_mean(mood, "text")
        return emoji_share * e + (1 - emoji_share) * t

    return mean("positive"), mean("negative")


def _valence_range() -> tuple[float, float]:
    """Expected valences the palette can produce whatever the emoji share (from all-negative
    to all-positive mixes of mood, with the neutral share fixed)."""
    lo = max(_medium_mean("negative", "emoji"), _medium_mean("negative", "text"))
    hi = min(_medium_mean("positive", "emoji"), _medium_mean("positive", "text"))
    return (1 - NEUTRAL_SHARE) * lo, (1 - NEUTRAL_SHARE) * hi
