"""Data-movement bounds (kperf.tracing.bounds) against values derived by hand, against a literal loop-nest
simulation of every mapping, and against the shape of Orojenesis' GEMM curves.

The simulation walks the tile loop nest of each mapping and counts a tensor's tile each time its
index changes (the output's also when it is written back and read again): an independent
derivation of the reload formula that the vectorized search uses.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from kperf.dialect.errors import KperfError
from kperf.tracing import bounds
from kperf.tracing.bounds_search import tile_candidates
from kperf.tracing.einsum import parse_einsum


def _simulate(e, tiles: dict, order: str) -> int:
    """Bytes moved by the loop nest over tiles in ``order`` (outermost first), one tile per tensor held."""
    trips = {d: -(-e.sizes[d] // tiles[d]) for d in order}
    held, seen, moved = {}, set(), 0
    out = len(e.tensors) - 1

    def tile_bytes(i, key):
        t = e.tensors[i]
        return e.bytes[i] * math.prod(min(tiles[d], e.sizes[d] - key[j] * tiles[d]) for j, d in enumerate(t))

    for idx in itertools.product(*(range(trips[d]) for d in order)):
        at = dict(zip(order, idx, strict=True))
        for i, t in enumerate(e.tensors):
            key = tuple(at[d] for d in t)
            if held.get(i) == key:
                continue
            if i == out and i in held:
                moved += tile_bytes(i, held[i])  # the partial sums go back out
            if i != out or key in seen:
                moved += tile_bytes(i, key)  # an input tile, or partial sums read back
            seen.add(key) if i == out else None
            held[i] = key
    return moved + tile_bytes(out, held[out])


def _simulated_curve(e):
    """(occupancy, traffic) of every mapping over the same tile candidates, by simulation."""
    dims = e.dims
    points = []
    for combo in itertools.product(*(tile_candidates(e.sizes[d]).tolist() for d in dims)):
        tiles = dict(zip(dims, combo, strict=True))
        occ = sum(b * math.prod(tiles[d] for d in t) for t, b in zip(e.tensors, e.bytes, strict=True))
        for order in itertools.permutations(dims):
            points.append((occ, _simulate(e, tiles, "".join(order))))
    return points


@pytest.mark.parametrize("spec,shape", [("mk,kn->mn", "m=6,n=4,k=5"), ("bmk,kn->bmn", "b=2,m=3,k=2,n=2")])
def test_search_matches_a_loop_nest_simulation_of_every_mapping(spec, shape):
    e = parse_einsum(spec, shape, 1)
    points = _simulated_curve(e)
    curve = bounds.einsum_curve(e)
    for cap in range(1, max(o for o, _ in points) + 2):
        fits = [t for o, t in points if o <= cap]
        got = curve.at(cap)
        assert got["min_bytes"] == (min(fits) if fits else None), cap


def test_gemm_hand_values():
    m = n = k = 8
    # the smallest buffer (one element of each tensor): 2MNK operand reads plus the output once
    b = bounds.gemm(m, n, k, 1, capacities=[3, 2, 10**6])
    small, none, big = b.to_json()["capacities"]
    assert small["min_bytes"] == 2 * m * n * k + m * n
    assert none["fits"] is False and none["min_bytes"] is None
    # a buffer holding every operand reaches the compulsory traffic: operands once, output once
    assert big["min_bytes"] == b.compulsory_bytes == (m * k + k * n + m * n)
    assert big["intensity"] == pytest.approx(2 * m * n * k / (m * k + k * n + m * n))
    # fp16 8192^3: compulsory is three 128 MiB matrices
    assert bounds.gemm(8192, 8192, 8192, "fp16").compulsory_bytes == 3 * 8192 * 8192 * 2


def test_gemm_curve_has_the_orojenesis_shape():
    caps = [2.0**i for i in range(10, 31)]
    big = bounds.gemm(8192, 8192, 8192, "bf16", capacities=caps)
    small = bounds.gemm(2048, 2048, 2048, "bf16", capacities=caps)
    tb = np.array([p["min_bytes"] for p in big.to_json()["capacities"]], dtype=float)
    ts = np.array([p["min_bytes"] for p in small.to_json()["capacities"]], dtype=float)
    assert (np.diff(tb) <= 0).all() and (np.diff(ts) <= 0).all()  # never rises with capacity
    assert (tb > ts).all()  # the larger problem moves more at every capacity
    operands = 2 * 8192 * 8192 * 2
    falling = [t for c, t in zip(caps, tb, strict=True) if c < operands / 2]
    assert (np.diff(falling) < 0).all()  # strictly falling until an operand fits
    assert tb[-1] == big.compulsory_bytes and tb[0] > 100 * big.compulsory_bytes
    # the classic asymptote: about 2*MNK*bytes/sqrt(capacity/bytes) on small buffers
    c = 2.0**16
    assert tb[6] == pytest.approx(2 * 8192**3 * 2 / math.sqrt(c / 2), rel=0.6)


def test_batched_and_grouped_gemm():
    one = bounds.gemm(512, 512, 512, "fp16", capacities=[2**16, 2**20]).to_json()["capacities"]
    four = bounds.gemm(512, 512, 512, "fp16", batch=4, capacities=[2**16, 2**20]).to_json()["capacities"]
    assert [p["min_bytes"] * 4 for p in one] == [p["min_bytes"] for p in four]
    shared = bounds.einsum("bmk,kn->bmn", "b=4,m=512,k=512,n=512", "fp16", capacities=[2**16, 2**20])
    # B shared by the batch can be reused across it: never more traffic than four separate GEMMs
    assert all(s["min_bytes"] <= f["min_bytes"] for s, f in
               zip(shared.to_json()["capacities"], four, strict=True))


def test_attention_bounds():
    caps = [2.0**i for i in range(12, 27)]
    a = bounds.attention(2, 4, 1024, 64, capacities=caps)
    c = bounds.attention(2, 4, 1024, 64, causal=True, capacities=caps)
    io = 4 * 2 * 4 * 1024 * 64 * 2
    assert a.compulsory_bytes == c.compulsory_bytes == io
    fused = [a.variants["fused"].at(x)["min_bytes"] for x in caps]
    causal = [c.variants["fused"].at(x)["min_bytes"] for x in caps]
    unfused = [a.variants["unfused"].at(x)["min_bytes"] for x in caps]
    assert fused[-1] == io and all(f >= io for f in fused)
    assert all(x <= y for x, y in zip(causal, fused, strict=True))  # causal visits fewer tiles
    # past small buffers (where fused tiles of whole head rows are large) unfused moves S and P besides
    assert all(u > f for x, u, f in zip(caps, unfused, fused, strict=True) if x >= 2**15)
    assert a.variants["unfused"].compulsory_bytes == io + 4 * 8 * 1024 * 1024 * 2
    # Q-stationary with K, V tiles of one row: K and V move once per query tile
    m_t = 64
    occ = 2 * (2 * m_t * 64 + 2 * 64 + m_t) + 8 * m_t
    assert a.variants["fused"].at(occ)["min_bytes"] <= 8 * (2 * 1024 * 64 * 2 * (1 + 1024 // m_t))
    j = a.to_json()
    assert j["capacities"][-1]["variant"] == "fused" and j["flops"] == 4 * 8 * 1024 * 1024 * 64


def test_json_names_what_the_issue_asks_for():
    j = json.loads(json.dumps(bounds.gemm(256, 256, 256, "bf16").to_json()))
    assert j["compulsory_bytes"] == 3 * 256 * 256 * 2
    assert all({"capacity_bytes", "min_bytes", "intensity"} <= set(p) for p in j["capacities"])
    assert j["variants"]["gemm"]["curve"][0]["occupancy_bytes"] == 6


@pytest.mark.parametrize("call,needle", [
    (lambda: bounds.einsum("mk,kn->mq", "m=1,n=1,k=1,q=1"), "q"),
    (lambda: bounds.einsum("mk,kn->mn", "m=8,k=8"), "no size for n"),
    (lambda: bounds.einsum("mk,kn", "m=8,k=8,n=8"), "cannot read"),
    (lambda: bounds.einsum("mm,mn->mn", "m=8,n=8"), "repeats"),
    (lambda: bounds.gemm(0, 8, 8), "m must be a positive"),
    (lambda: bounds.gemm(8, 8, 8, "fp12"), "unknown dtype"),
    (lambda: bounds.gemm(8, 8, 8, capacities=[-1]), "positive number of bytes"),
])
def test_bad_problems_name_cause_and_fix(call, needle):
    with pytest.raises(KperfError, match=needle) as e:
        call()
    assert e.value.fix
