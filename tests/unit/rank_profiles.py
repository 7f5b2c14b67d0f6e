"""Small profiles of simulated multi-GPU ranks, with known clocks, for the merge tests.

A rank's host clock reads ``true + theta`` and its GPU's globaltimer ``true + theta + phi`` (``true`` is
rank 0's host clock when rank 0 has theta 0).  :func:`exchange` simulates the clock exchange of
``kperf.distributed`` (barriers with random latencies, a GPU probe) and returns each rank's sync
record; :func:`launch` encodes a launch with the reference encoder at a given globaltimer.  So merged
times have a known truth: rank r's event at true time T must land at ``T + phi_0`` on rank 0's axis.
"""

from __future__ import annotations

import numpy as np
from reference_encoder import SmClock, encode, make_cta

from kperf.dialect.layout import Geometry
from kperf.tracing import decode

T0 = 1_700_000_000_000_000_000  # true time of the session start (ns)
SCOPES = ["load", "mma"]


def _barriers(rng, thetas, rounds: int, start: int) -> list[list[list[int]]]:
    """Per rank, ``rounds`` rows (entered, left) read on its own clock."""
    out = [[] for _ in thetas]
    t = start
    for _ in range(rounds):
        enter = t + rng.integers(0, 40_000, len(thetas))  # ranks arrive up to 40 us apart
        done = enter.max()
        leave = done + rng.integers(2_000, 30_000, len(thetas))  # the release reaches each rank later
        for r, th in enumerate(thetas):
            out[r].append([int(enter[r] + th), int(leave[r] + th)])
        t = int(leave.max()) + 1_000
    return out


def _probe(rng, theta: int, phi: int, rounds: int, start: int) -> list[list[int]]:
    """GPU probe rows (host_send, gpu_recv, gpu_send, host_recv) of a rank."""
    rows, t = [], start
    for _ in range(rounds):
        there = t + int(rng.integers(500, 5_000))
        back = there + 300 + int(rng.integers(500, 5_000))
        rows.append([t + theta, there + theta + phi, there + 300 + theta + phi, back + theta])
        t = back + 1_000
    return rows


def exchange(rng, thetas, phis, phase: str, start: int, rounds: int = 8, domains=None) -> list[dict]:
    """Every rank's sync record of one simulated exchange beginning at true time ``start``
    (``domains``: each rank's clock domain, default none known)."""
    gpu = [_probe(rng, th, ph, 4, start) for th, ph in zip(thetas, phis, strict=True)]
    host = _barriers(rng, thetas, rounds, start + 100_000)
    dom = domains or [None] * len(thetas)
    return [{"phase": phase, "host": host[r], "host_ref": host[0], "gpu_method": "pingpong", "gpu": gpu[r],
             "gpu_ref": gpu[0], "gpu_ref_method": "pingpong", "domain": dom[r], "domain_ref": dom[0]}
            for r in range(len(thetas))]


def tag(rank: int, world: int, sync: list[dict], host: str = "node0") -> dict:
    return {"format": "kperf-rank", "version": 1, "rank": rank, "world_size": world, "local_rank": rank,
            "host": host, "device": "Simulated GPU", "device_index": rank, "pid": 1000 + rank,
            "backend": "gloo", "sync": sync}


def launch(gtime: int, dur_ns: int, number: int, kernel: str = "matmul") -> object:
    """A decoded launch of 2 CTAs (one warp each, a "load" then an "mma" scope) starting at globaltimer
    ``gtime`` and lasting ``dur_ns``."""
    g = Geometry(1, 16, "globaltimer")
    sm = SmClock(1.5, 1 << 36)
    half = dur_ns // 2
    ctas = [make_cta("globaltimer", sm, c, 0.0 if c == 0 else 50.0, float(dur_ns),
                     [[(0, False, 100.0), (0, True, float(half)), (1, False, half + 10.0),
                       (1, True, dur_ns - 100.0)]], gtime_base=gtime, ctaid=(c, 0, 0), gtime_step=1)
             for c in range(2)]
    d = decode(encode(g, "keep-first", ctas), g, strategy="keep-first", launch=number, scopes=SCOPES,
               kernel=kernel)
    assert not d.problems, d.problems
    return d


def clocks(world: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """(theta, phi) per rank: hosts seconds apart, GPUs milliseconds off their hosts; rank 0's theta 0."""
    rng = np.random.default_rng(seed)
    thetas = [0] + [int(x) for x in rng.integers(-5_000_000_000, 5_000_000_000, world - 1)]
    phis = [int(x) for x in rng.integers(-3_000_000, 3_000_000, world)]
    return thetas, phis
