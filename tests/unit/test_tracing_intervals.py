"""kperf.tracing.pair, and the decode + pair throughput floor."""

from __future__ import annotations

import time

import numpy as np
import pytest

from kperf.layout import Geometry
from kperf.tracing import EVENT_DTYPE, INTERVAL_DTYPE, decode, describe_unmatched, pair
from reference_encoder import CtaSpec, bulk_buffer, encode

G0 = 1_700_000_000_000_000_000
CS = 10_000_000


def cta(warps, ctaid=0, sm=0):
    return CtaSpec(warps=warps, sm=sm, ctaid=(ctaid, 0, 0), gtime_start=G0, clock_start=CS,
                   gtime_end=G0 + 500_000, clock_end=CS + 1_000_000)


def recs(*spec):
    """recs("S0", "S1", "E1", "E0") -> records 10 cycles apart."""
    return [(int(s[1:]), s[0] == "E", CS + 10 * (i + 1)) for i, s in enumerate(spec)]


def run(warps_per_cta, strategy="keep-first", capacity=16):
    g = Geometry(max(len(w) for w in warps_per_cta) or 1, capacity, "clock")
    ctas = [cta(w, i, sm=i % 2) for i, w in enumerate(warps_per_cta)]
    d = decode(encode(g, strategy, ctas), g, strategy=strategy)
    assert d.problems == []
    return d, *pair(d.events)


def test_nesting_depth_and_fields():
    d, iv, un = run([[recs("S0", "S1", "S2", "E2", "E1", "S1", "E1", "E0"), recs("S3", "E3")]])
    assert iv.dtype == INTERVAL_DTYPE and un.dtype == EVENT_DTYPE and len(un) == 0
    assert iv[["warp", "scope", "depth"]].tolist() == [(0, 0, 0), (0, 1, 1), (0, 2, 2), (0, 1, 1), (1, 3, 0)]
    assert iv["start_cycles"].tolist() == [CS + 10, CS + 20, CS + 30, CS + 60, CS + 10]
    assert iv["end_cycles"].tolist() == [CS + 80, CS + 50, CS + 40, CS + 70, CS + 20]
    np.testing.assert_allclose(iv["end_ns"] - iv["start_ns"], (iv["end_cycles"] - iv["start_cycles"]) / 2.0)


def test_keep_first_drops_trailing_ends():
    # capacity 4 keeps S0 S1 E1 S1: two starts never see their ends
    d, iv, un = run([[recs("S0", "S1", "E1", "S1", "E1", "E0")]], capacity=4)
    assert iv[["scope", "depth"]].tolist() == [(1, 1)]
    assert un[["scope", "is_end", "seq"]].tolist() == [(0, False, 0), (1, False, 3)]
    assert d.lost_total == 2
    assert "2 starts without end, 0 ends without start" in describe_unmatched(un)


def test_wrap_loses_leading_starts():
    # capacity 4 keeps the last four: E1 S1 E1 E0 (seq 2..5)
    d, iv, un = run([[recs("S0", "S1", "E1", "S1", "E1", "E0")]], strategy="wrap", capacity=4)
    assert iv[["scope"]].tolist() == [(1,)]
    assert un[["scope", "is_end", "seq"]].tolist() == [(1, True, 2), (0, True, 5)]


def test_broken_alternation_pairs_neighbours():
    d, iv, un = run([[recs("S0", "S0", "E0", "E0", "E1", "S1")]])
    assert iv["start_cycles"].tolist() == [CS + 20] and iv["end_cycles"].tolist() == [CS + 30]
    assert un["seq"].tolist() == [0, 3, 4, 5]


def test_groups_are_separate_and_order_is_restored():
    d, iv, un = run([[recs("S0", "E0"), recs("S0")], [recs("E0", "S0", "E0")]])
    assert iv[["cta", "sm", "warp"]].tolist() == [(0, 0, 0), (1, 1, 0)]
    assert un[["cta", "warp", "is_end"]].tolist() == [(0, 1, False), (1, 0, True)]
    # shuffled input gives the same answer
    rng = np.random.default_rng(1)
    iv2, un2 = pair(d.events[rng.permutation(len(d.events))])
    assert iv2.tolist() == iv.tolist() and un2.tolist() == un.tolist()


def test_several_launches():
    d, iv, un = run([[recs("S0", "S1", "E1", "E0")]])
    e2 = d.events.copy()
    e2["launch"] = 70_000  # beyond 2**16: the slow grouping path
    iv2, un2 = pair(np.concatenate([d.events, e2]))
    assert iv2["launch"].tolist() == [0, 0, 70_000, 70_000] and len(un2) == 0
    assert iv2["depth"].tolist() == [0, 1, 0, 1]


def test_scopes_filter_leaves_others_unmatched():
    d, iv, un = run([[recs("S0", "S5", "E5", "E0")]])
    iv, un = pair(d.events, scopes=["a", "b"])
    assert iv["scope"].tolist() == [0] and un["scope"].tolist() == [5, 5]


def test_empty():
    iv, un = pair(np.zeros(0, EVENT_DTYPE))
    assert len(iv) == 0 and len(un) == 0
    with pytest.raises(TypeError):
        pair(np.zeros(3, np.int64))


def test_decode_and_pair_throughput():
    """Catches a per-event Python loop: a few million events must take well under a second."""
    g, raw = bulk_buffer(n_ctas=512, num_warps=8, capacity=512)  # 2.1M events
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        d = decode(raw, g, strategy="keep-first")
        iv, un = pair(d.events)
        best = min(best, time.perf_counter() - t)
    n = len(d.events)
    assert n == 512 * 8 * 512 and len(iv) == n // 2 and len(un) == 0 and d.problems == []
    rate = n / best
    print(f"decode+pair: {rate / 1e6:.1f} M events/s")
    assert rate > 5e6, f"decode+pair at {rate / 1e6:.2f} M events/s"
