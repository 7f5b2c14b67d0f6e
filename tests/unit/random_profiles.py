"""Small random profiles for the statistics tests: properly nested scopes per warp, random gaps (ties
included), warp roles, lost records, several launches and kernels.  Built with the reference encoder
and decoded by ``kperf.tracing.decode``, so the whole path runs.
"""

from __future__ import annotations

import numpy as np
from reference_encoder import SmClock, encode, make_cta

from kperf.dialect.layout import Geometry
from kperf.tracing import decode

G0 = 1_700_000_000_000_000_000


def warp_records(rng: np.random.Generator, n_scopes: int, steps: int, t0: float) -> list:
    """One warp's records ``(scope, is_end, t_ns)``: a random walk of opens and closes, properly nested,
    no scope open twice at once; times never go back (equal times happen)."""
    out, stack, t = [], [], t0 + float(rng.integers(0, 50))
    for _ in range(steps):
        free = [s for s in range(n_scopes) if s not in stack]
        if stack and (not free or rng.random() < 0.5):
            out.append((stack.pop(), True, t))
        else:
            s = int(rng.choice(free))
            stack.append(s)
            out.append((s, False, t))
        t += float(rng.choice([0, 1, 7, 30, 100, 250]))
    while stack:
        out.append((stack.pop(), True, t))
        t += float(rng.integers(0, 40))
    return out


def random_launch(seed: int, *, n_ctas: int = 6, num_warps: int = 3, n_scopes: int = 4, steps: int = 12,
                  clock: str = "clock64", capacity: int = 64, roles: bool = True, kernel: str = "k",
                  launch: int = 0, n_sms: int = 2):
    """A decoded launch of random contents (``capacity`` below a warp's records loses some: unmatched
    starts and lost counts, as on a GPU)."""
    rng = np.random.default_rng(seed)
    g = Geometry(num_warps, capacity, clock)
    sms = {s: SmClock(1.0 + 0.25 * s, (s + 1) << 36) for s in range(n_sms)}
    ctas = []
    for i in range(n_ctas):
        sm, t0 = i % n_sms, float(i // n_sms) * 3000.0 + float(rng.integers(0, 100))
        warps = [warp_records(rng, n_scopes, int(rng.integers(0, steps + 1)), t0) for _ in range(num_warps)]
        t1 = max([t0 + 10.0] + [r[-1][2] + float(rng.integers(0, 60)) for r in warps if r])
        ctas.append(make_cta(clock, sms[sm], sm, t0, t1, warps, gtime_base=G0, ctaid=(i, 0, 0), gtime_step=1))
    names = [f"s{k}" for k in range(n_scopes)]
    d = decode(encode(g, "keep-first", ctas), g, strategy="keep-first", launch=launch, scopes=names,
               kernel=kernel)
    if roles:
        d.warp_roles = ["producer"] + ["consumer"] * (num_warps - 1)
    return d


def random_profile(seed: int, n_launches: int = 2, **kw) -> list:
    """Several random launches (two kernels when there are several launches)."""
    return [random_launch(seed * 100 + i, launch=i, kernel="k" if i % 2 == 0 else "k2", **kw)
            for i in range(n_launches)]
