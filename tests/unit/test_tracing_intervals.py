"""kperf.tracing.pair, and the decode + pair throughput floor."""

from __future__ import annotations

import time

import numpy as np
import pytest
from reference_encoder import CtaSpec, bulk_buffer, encode

from kperf.dialect.layout import Geometry
from kperf.tracing import EVENT_DTYPE, INTERVAL_DTYPE, decode, describe_unmatched, pair

G0 = 1_700_000_000_000_000_000
CS = 10_000_000


def cta(warps, ctaid=0, sm=0):
    return CtaSpec(warps=warps, sm=sm, ctaid=(ctaid, 0, 0), gtime_start=G0, clock_start=CS,
                   gtime_end=G0 + 500_000, clock_end=CS + 1_000_000)


def recs(*spec):
    """recs("S0", "S1", "E1", "E0") -> records 10 cycles apart."""
    return [(int(s[1:]), s[0] == "E", CS + 10 * (i + 1)) for i, s in enumerate(spec)]


def run(warps_per_cta, strategy="keep-first", capacity=16, broken=None):
    """Decode and pair; ``broken``: the problem sentence's start for streams broken on purpose."""
    g = Geometry(max(len(w) for w in warps_per_cta) or 1, capacity, "clock")
    ctas = [cta(w, i, sm=i % 2) for i, w in enumerate(warps_per_cta)]
    d = decode(encode(g, strategy, ctas), g, strategy=strategy)
    if broken is None:
        assert d.problems == []
    else:
        [p] = d.problems
        assert p.startswith(broken), p
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
    d, iv, un = run([[recs("S0", "S0", "E0", "E0", "E1", "S1")]],
                    broken="4 scope records without a partner (2 starts without end, 2 ends without start)")
    assert iv["start_cycles"].tolist() == [CS + 20] and iv["end_cycles"].tolist() == [CS + 30]
    assert un["seq"].tolist() == [0, 3, 4, 5]


def test_groups_are_separate_and_order_is_restored():
    d, iv, un = run([[recs("S0", "E0"), recs("S0")], [recs("E0", "S0", "E0")]],
                    broken="2 scope records without a partner (1 starts without end, 1 ends without start)")
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
    """Catches a per-event Python loop and lost vectorisation: decode + pair of 2.1M events."""
    g, raw = bulk_buffer(n_ctas=512, num_warps=8, capacity=512)  # 2.1M events
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        d = decode(raw, g, strategy="keep-first")
        p = d.pairs()
        best = min(best, time.perf_counter() - t)
    n = d.n_events
    assert n == 512 * 8 * 512 and len(p) == n // 2 and len(p.unmatched) == 0 and d.problems == []
    rate = n / best
    print(f"decode+pair (columns): {rate / 1e6:.1f} M events/s")
    assert rate > 10e6, f"decode+pair at {rate / 1e6:.2f} M events/s"  # ~70 M/s on an idle 2-core machine
    iv, un = pair(d.events)  # the EVENT_DTYPE path gives the same intervals
    iv2, un2 = d.intervals()
    assert np.array_equal(iv, iv2) and len(un) == len(un2) == 0


def reference_pairs(ev, scopes=None):
    """The pairing rule, one event at a time: per (cta, warp, scope), a start followed by an end."""
    last = {}
    out = []
    for i, e in enumerate(ev):
        k = (int(e["cta"]), int(e["warp"]), int(e["scope"]))
        j = last.get(k)
        if (j is not None and not ev[j]["is_end"] and e["is_end"]
                and (scopes is None or int(e["scope"]) < len(scopes))):
            out.append((j, i))
        last[k] = i
    return sorted(out)


@pytest.mark.parametrize("seed", range(6))
def test_pairing_matches_the_rule_on_random_sequences(seed):
    """Well-formed runs with breakage, nested and loose scopes: the fast path and the sort agree
    with the rule."""
    rng = np.random.default_rng(seed)
    for trial in range(40):
        E = int(rng.integers(0, 300))
        ev = np.zeros(E, EVENT_DTYPE)
        ev["cta"] = np.sort(rng.integers(0, 3, E))
        ev["warp"] = rng.integers(0, 3, E)
        ev = ev[np.lexsort((ev["warp"], ev["cta"]))]
        ev["seq"] = np.arange(E)
        ns = int(rng.integers(1, 6))
        if trial % 2:
            ev["is_end"] = np.arange(E) % 2 == 1
            ev["scope"] = np.repeat(rng.integers(0, ns, (E + 1) // 2), 2)[:E]
            if E:
                flip = rng.integers(0, E, 2)
                ev["is_end"][flip] = ~ev["is_end"][flip]
        else:
            ev["scope"] = rng.integers(0, ns, E)
            ev["is_end"] = rng.random(E) < 0.5
        ev["cycles"] = ev["time_ns"] = np.arange(E)
        scopes = None if trial % 3 else [f"s{i}" for i in range(max(ns - 1, 1))]
        iv, un = pair(ev, scopes)
        want = reference_pairs(ev, scopes)
        assert [(int(a), int(b)) for a, b in zip(iv["start_cycles"], iv["end_cycles"], strict=True)] == want
        assert len(un) == E - 2 * len(want)
