"""Aggregate-level simulation of one experiment under continuous guardrail monitoring.

Used by ``bench/guardrails.py`` (many seeded runs → the validation table in
docs/statistics.md) and by ``tests/test_guardrail_validation.py`` (a CI-sized version).

It exercises exactly the statistics the decision loop runs — ``build_report`` over cumulative
cells, then ``judge`` for a guardrail in statistical and literal mode — on realistic sample
sizes, without the edge, the control plane or the network in between, so hundreds of 72-hour
runs take seconds each rather than hours.

Generative model (per run; every quantity is drawn with numpy from one seeded generator)
-----------------------------------------------------------------------------------------
- **Arrivals**: a Poisson process of ``arrivals_per_min`` attendees per minute over ``hours``;
  each arrival is exposed on arrival and assigned to an arm with the configured weights
  (equivalently: arm a's arrivals are Poisson with rate w_a · λ, times uniform).
  ``lost_share`` drops that share of the *treatment's* exposures from the counts (a logging
  fault: the sample-ratio-mismatch scenario).
- **Conversion**: each attendee converts with probability p_a (control ``base_conversion``,
  treatment p_c · (1 + ``conversion_lift``)) at a time uniform over the
  ``conversion_window_min`` minutes after exposure; a converter's value is log-normal with
  mean ``revenue_mean`` and log-sd ``revenue_log_sd``.
- **Chat**: attendee i has a mean valence μ_i = μ_a + σ_att · z_i (μ_c = ``valence_mean``,
  μ_t = μ_c · (1 + ``sentiment_change``), σ_att = ``valence_attendee_sd``) and posts
  K_i ~ Poisson(``chat_items_mean``) chat items at times uniform over their stay after exposure
  (log-normal, median ``dwell_median_min``, log-sd ``dwell_log_sd``: most reactions come within
  minutes, a tail stays long), each with valence μ_i + σ_item · ε
  (σ_item = ``valence_item_sd``; normal, not clipped to [−1, 1] as the edge's valences are:
  with the defaults about 5 % of control's items exceed 1, which leaves the comparisons'
  statistics — means, variances, relative changes — as a real, slightly wider-tailed metric).
- **Pre-exposure baseline** (the CUPED covariate and the ``baseline_change`` reference): a
  ``baseline_share`` of attendees chatted before exposure; their baseline is
  μ_c + σ_att · z_i + (σ_item/√3) · ε' (the mean of about three earlier items, under control
  conditions — exposure cannot change the past).

The edge ships per-bucket cells; their sums at a look equal the cumulative sums of everything
that had *happened* by then (an attendee's later chat items and conversions land in later
looks). That is what this module builds: for each look, per arm, every cell field summed over
the events with time ≤ the look time, and it feeds one cumulative cell per arm to
``build_report`` — the same numbers the loop's report would see.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from edgeloop.model.aggregates import CELL_FIELDS
from edgeloop.model.guardrails import Guardrail, Mode, parse_rule
from edgeloop.stats import DEFAULT_ALPHA, DEFAULT_TUNING, build_report, judge

CONTROL, TREATMENT = "control", "treatment"
# The seed's guardrail: roll back a variant whose chat sentiment drops more than 15 % below
# control's while it does not lift conversion by 3 % or more.
DEFAULT_RULE = "rollback when sentiment.change < -15% and conversion.lift < 3%"


@dataclass(frozen=True, slots=True)
class Scenario:
    """One experiment's truth and the monitoring schedule (defaults: the calibrated values)."""

    conversion_lift: float = 0.0  # true relative lift of the treatment's conversion rate
    sentiment_change: float = 0.0  # true relative change of the treatment's mean valence
    arrivals_per_min: float = 50.0
    hours: float = 72.0
    look_every_min: float = 15.0
    weights: tuple[float, float] = (0.5, 0.5)  # control, treatment
    lost_share: float = 0.0  # share of treatment exposures lost in logging (SRM scenario)
    base_conversion: float = 0.06  # within the conversion window
    conversion_window_min: float = 15.0
    revenue_mean: float = 12.0
    revenue_log_sd: float = 0.6
    chat_items_mean: float = 5.0  # Poisson mean of chat items per exposed attendee
    dwell_median_min: float = 5.0  # log-normal stay after exposure; chat is spread over it
    dwell_log_sd: float = 0.8
    valence_mean: float = 0.35  # control's mean item valence
    valence_item_sd: float = 0.40  # sd of an item's valence around its author's mean
    valence_attendee_sd: float = 0.08  # sd of authors' mean valences (clustering)
    baseline_share: float = 0.40
    tuning: float = DEFAULT_TUNING  # the confidence sequences' N* (edgeloop's default)
    alpha: float = DEFAULT_ALPHA

    @property
    def looks(self) -> int:
        return round(self.hours * 60 / self.look_every_min)

    def look_minutes(self) -> np.ndarray:
        return self.look_every_min * np.arange(1, self.looks + 1)


def _look_index(times: np.ndarray, every: float) -> np.ndarray:
    """The first look (1-based) at which an event at ``times`` minutes has happened."""
    return np.ceil(times / every).astype(np.int64)


def _sorted_uniforms(k: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each group i of k[i] items (groups in order), k[i] sorted Uniform(0, 1) draws —
    the order statistics, as partial sums of k[i] + 1 exponentials over their total."""
    m = k + 1
    e = rng.standard_exponential(int(m.sum()))
    ends = np.cumsum(m) - 1
    c = np.cumsum(e)
    starts = ends - m + 1
    base = np.repeat(c[starts] - e[starts], m)
    within = c - base  # cumulative sums restarting in each group
    total = np.repeat(within[ends], m)
    keep = np.ones(e.size, dtype=bool)
    keep[ends] = False  # the (k + 1)-th partial sum is the total itself
    return (within / total)[keep]


def _arm(
    s: Scenario, rng: np.random.Generator, share: float, conversion: float, valence: float
) -> np.ndarray:
    """Cumulative cell sums at every look for one arm: an array (looks + 1, len(fields)),
    row j = the sums over everything that had happened by look j (row 0: nothing)."""
    total_min = s.hours * 60.0
    every = s.look_every_min
    n_looks = s.looks
    n = int(rng.poisson(s.arrivals_per_min * share * total_min))
    exposed_at = rng.uniform(0.0, total_min, n)
    z = rng.standard_normal(n)
    mu = valence + s.valence_attendee_sd * z
    out = np.zeros((n_looks + 2, len(CELL_FIELDS)))
    col = {name: i for i, name in enumerate(CELL_FIELDS)}

    def add(name: str, at_look: np.ndarray, weights: np.ndarray | None = None) -> None:
        if name not in col:
            return
        out[:, col[name]] += np.bincount(
            np.minimum(at_look, n_looks + 1), weights=weights, minlength=n_looks + 2
        )

    exposure_look = _look_index(exposed_at, every)
    add("exposures", exposure_look)

    has_pre = rng.random(n) < s.baseline_share
    x = (
        s.valence_mean
        + s.valence_attendee_sd * z
        + s.valence_item_sd / math.sqrt(3) * (rng.standard_normal(n))
    )
    pre_look = exposure_look[has_pre]
    add("pre_n", pre_look)
    add("pre_sum", pre_look, x[has_pre])
    add("pre_sq", pre_look, x[has_pre] ** 2)

    converted = rng.random(n) < conversion
    conv_at = exposed_at[converted] + rng.uniform(0.0, s.conversion_window_min, converted.sum())
    conv_look = _look_index(conv_at, every)
    sigma = s.revenue_log_sd
    value = rng.lognormal(math.log(s.revenue_mean) - sigma**2 / 2, sigma, converted.sum())
    add("converters", conv_look)
    add("revenue", conv_look, value)
    add("revenue_sq", conv_look, value**2)
    pre_conv = np.where(has_pre[converted], x[converted], 0.0)
    add("pre_conv", conv_look, pre_conv)

    k = rng.poisson(s.chat_items_mean, n)
    dwell = np.exp(math.log(s.dwell_median_min) + s.dwell_log_sd * rng.standard_normal(n))
    owner = np.repeat(np.arange(n), k)
    u = _sorted_uniforms(k, rng)  # where in the stay each item falls, in time order per owner
    item_at = exposed_at[owner] + u * dwell[owner]
    valence_items = mu[owner] + s.valence_item_sd * rng.standard_normal(owner.size)
    item_look = _look_index(item_at, every)
    add("chat_n", item_look)
    add("chat_sum", item_look, valence_items)
    add("chat_sq", item_look, valence_items**2)
    if {"chat_k2", "chat_s2", "chat_ks"} <= col.keys() and owner.size:
        # The unit-level sums grow item by item exactly as on the edge: an attendee's item
        # that finds k earlier items summing to s adds 2k + 1 to Σk², 2sv + v² to Σs² and
        # s + (k + 1)v to Σks, at the look the item lands in.
        v = valence_items
        starts = np.cumsum(k) - k
        k_prev = np.arange(owner.size) - starts[owner]
        csum = np.cumsum(v)
        s_prev = csum - v - (csum[starts[owner]] - v[starts[owner]])
        add("chat_k2", item_look, 2.0 * k_prev + 1)
        add("chat_s2", item_look, 2.0 * s_prev * v + v * v)
        add("chat_ks", item_look, s_prev + (k_prev + 1) * v)
    return np.cumsum(out, axis=0)[: n_looks + 1]


def simulate(s: Scenario, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Cumulative cell sums per arm per look (see ``_arm``)."""
    w_c, w_t = s.weights
    total = w_c + w_t
    control = _arm(s, rng, w_c / total, s.base_conversion, s.valence_mean)
    treatment = _arm(
        s,
        rng,
        w_t / total * (1 - s.lost_share),
        s.base_conversion * (1 + s.conversion_lift),
        s.valence_mean * (1 + s.sentiment_change),
    )
    return {CONTROL: control, TREATMENT: treatment}


EVENTS = ("rollback", "literal_rollback", "win", "loss", "srm", "srm_sequential")


@dataclass(frozen=True, slots=True)
class RunResult:
    """Event minutes (from the start) of the first look at which each thing happened, or None.

    - ``rollback``: the guardrail fired in statistical mode (the default);
    - ``literal_rollback``: the same rule fired in literal mode (point estimates);
    - ``win`` / ``loss``: conversion lift's always-valid interval entirely above / below 0;
    - ``srm``: the report's fixed-sample χ² alert (p < 0.001);
    - ``srm_sequential``: the anytime-valid SRM test (p < 0.001), what auto-pauses.
    """

    seed: int
    rollback: float | None = None
    literal_rollback: float | None = None
    win: float | None = None
    loss: float | None = None
    srm: float | None = None
    srm_sequential: float | None = None
    extra: dict[str, float | None] = field(default_factory=dict)  # per extra rule (statistical)

    def at(self, what: str) -> float | None:
        return self.extra[what] if what in self.extra else getattr(self, what)


def cells_at(sums: dict[str, np.ndarray], look: int) -> list[tuple[str, float, dict[str, float]]]:
    """One cumulative cell per arm at ``look``: what ``build_report`` would sum to."""
    return [
        (arm, 0.0, dict(zip(CELL_FIELDS, sums[arm][look].tolist(), strict=True)))
        for arm in (CONTROL, TREATMENT)
    ]


def run(
    s: Scenario,
    seed: int,
    rule: str = DEFAULT_RULE,
    *,
    min_attendees: int = 100,
    extra_rules: Sequence[str] = (),
    track: Sequence[str] = EVENTS,
) -> RunResult:
    """One seeded run: simulate, then look every ``look_every_min`` minutes as the loop does,
    until every event in ``track`` (and every extra rule) has happened or the event ends."""
    rng = np.random.default_rng(seed)
    sums = simulate(s, rng)
    stat = Guardrail(parse_rule(rule), min_attendees, Mode.STATISTICAL)
    literal = Guardrail(parse_rule(rule), min_attendees, Mode.LITERAL)
    extras = {r: Guardrail(parse_rule(r), min_attendees, Mode.STATISTICAL) for r in extra_rules}
    weights = {CONTROL: s.weights[0], TREATMENT: s.weights[1]}
    first: dict[str, float | None] = dict.fromkeys([*EVENTS, *extra_rules])
    pending = set(track) | set(extra_rules)
    minutes = s.look_minutes()
    for j in range(1, s.looks + 1):
        if not pending:
            break
        now = float(minutes[j - 1])
        report = build_report(
            "sim",
            CONTROL,
            weights,
            cells_at(sums, j),
            (),
            now * 60.0,
            alpha=s.alpha,
            tuning=s.tuning,
        )
        happened: dict[str, bool] = {}
        if "rollback" in pending:
            happened["rollback"] = judge(stat, report, TREATMENT).fired
        if "literal_rollback" in pending:
            happened["literal_rollback"] = judge(literal, report, TREATMENT).fired
        lift = report.comparison(TREATMENT, "conversion", "lift")
        if lift is not None:
            happened["win"] = lift.sequence.lower > 0
            happened["loss"] = lift.sequence.upper < 0
        happened["srm"] = report.srm.mismatch
        happened["srm_sequential"] = report.srm.sequential_mismatch
        for text, g in extras.items():
            if text in pending:
                happened[text] = judge(g, report, TREATMENT).fired
        for name, yes in happened.items():
            if yes and name in pending:
                first[name] = now
                pending.discard(name)
    return RunResult(
        seed, **{e: first[e] for e in EVENTS}, extra={r: first[r] for r in extra_rules}
    )


def rate(results: Sequence[RunResult], what: str, within: float | None = None) -> float:
    """Share of runs in which ``what`` happened (by ``within`` event minutes, if given)."""
    hits = 0
    for r in results:
        at = r.at(what)
        if at is not None and (within is None or at <= within):
            hits += 1
    return hits / len(results) if results else math.nan


def times(results: Sequence[RunResult], what: str) -> list[float]:
    """The event minutes at which ``what`` happened, over the runs in which it did."""
    return sorted(t for t in (r.at(what) for r in results) if t is not None)


def scenario(**changes: object) -> Scenario:
    return replace(Scenario(), **changes)  # type: ignore[arg-type]
