"""Deterministic bucketing for native splits: weighted rendezvous hashing over MurmurHash3.

The exact bytes and formula are specified in docs/bucketing.md; this module is the reference
implementation that the compiled engine must agree with (tests check both on many keys).

For a split with variants v_0..v_{k-1} (in declared order) and integer weights w_i:

    seed  = murmur3_x86_32(utf8(salt), seed=0)                  # salt defaults to the flag key
    h_j   = murmur3_x64_128(utf8(unit), seed=(seed + j) mod 2^32) for j = 0, 1, …  (128-bit,
            read as an unsigned little-endian integer, as mmh3.hash128 returns it)
    x_i   = (h_{i // 8} >> (16 * (i % 8))) & 0xFFFF              # 16 bits per variant
    s_i   = LN[x_i] * (w_f / w_i)     with LN[x] = ln((x + 0.5) / 65536), over the variants
                                      with w_i > 0 only, w_f the first such variant's weight
    pick  = the i with the largest s_i; ties go to the earliest variant

Why rendezvous hashing rather than cumulative ranges: raising one variant's weight (the others
keeping their proportions) only ever moves attendees *into* that variant, for any number of
variants; cumulative ranges shift every later variant's range and reshuffle attendees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import mmh3

LANES_PER_HASH = 8
LANE_BITS = 16
LANE_MASK = (1 << LANE_BITS) - 1
# ln of the lane's midpoint: every lane value maps to a strictly negative, finite score.
LN: list[float] = [math.log((x + 0.5) / 65536.0) for x in range(1 << LANE_BITS)]


def split_seed(salt: str) -> int:
    return mmh3.hash(salt.encode("utf-8"), 0, signed=False)


def lane_seed(seed: int, chunk: int) -> int:
    return (seed + chunk) & 0xFFFFFFFF


def assign_variant(unit: str, salt: str, weights: Sequence[tuple[str, int]]) -> str | None:
    """The variant a unit (usually the targeting key) lands in; None if every weight is 0."""
    seed = split_seed(salt)
    best_name: str | None = None
    best_score = -math.inf
    hashes: dict[int, int] = {}
    live = [(i, name, weight) for i, (name, weight) in enumerate(weights) if weight > 0]
    if not live:
        return None
    first_weight = live[0][2]
    for i, name, weight in live:
        chunk = i // LANES_PER_HASH
        if chunk not in hashes:
            hashes[chunk] = mmh3.hash128(
                unit.encode("utf-8"), lane_seed(seed, chunk), x64arch=True, signed=False
            )
        lane = (hashes[chunk] >> (LANE_BITS * (i % LANES_PER_HASH))) & LANE_MASK
        score = LN[lane] if weight == first_weight else LN[lane] * (first_weight / weight)
        if score > best_score:
            best_name, best_score = name, score
    return best_name
