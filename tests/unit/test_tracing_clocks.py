"""The per-SM clock map under a clock rate that changes during the launch (DVFS)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from reference_encoder import encode, make_cta

from kperf.dialect.layout import Geometry
from kperf.tracing import decode

G0 = 1_700_000_000_000_000_000


@dataclasses.dataclass
class DriftingClock:
    """An SM clock at ``ghz0`` until ``t_knee`` ns, then slowing linearly to ``ghz1`` at ``t_end``.

    Shaped like an H100 running a long GEMM (1.61 -> 1.48 GHz was seen).  ``cycles(t)`` is the
    integral of the rate, so the clock is exact at every instant, as the hardware's is.
    """

    ghz0: float
    ghz1: float
    t_knee: float
    t_end: float
    offset: int

    def rate(self, t: float) -> float:
        f = min(max((t - self.t_knee) / (self.t_end - self.t_knee), 0.0), 1.0)
        return self.ghz0 + (self.ghz1 - self.ghz0) * f

    def cycles(self, t: float) -> int:
        c = self.ghz0 * min(t, self.t_knee)  # constant rate, then a ramp, then constant again
        ramp_end = min(max(t, self.t_knee), self.t_end)
        c += (self.ghz0 + self.rate(ramp_end)) / 2 * (ramp_end - self.t_knee)
        c += self.ghz1 * max(t - self.t_end, 0.0)
        return self.offset + int(round(c))


def _launch(clock: str, *, n_sms=3, waves=24, cta_ns=60_000.0, seed=1):
    rng = np.random.default_rng(seed)
    t_end = waves * (cta_ns + 500)
    sms = [DriftingClock(1.61, 1.48, t_end * 0.3, t_end, int(rng.integers(1 << 36, 1 << 44)))
           for _ in range(n_sms)]
    ctas, truth = [], []
    for wave in range(waves):
        for sm, sc in enumerate(sms):
            for slot in range(2):  # two co-resident CTAs per SM, staggered
                t0 = wave * (cta_ns + 500) + slot * 7_000 + float(rng.uniform(0, 300))
                t1 = t0 + cta_ns
                warps = []
                for w in range(2):
                    ts = np.sort(rng.uniform(t0 + 20, t1 - 20, 8))
                    warps.append([(w % 2, bool(i & 1), float(t)) for i, t in enumerate(ts)])
                    truth += ts.tolist()
                ctas.append(make_cta(clock, sc, sm, t0, t1, warps, gtime_base=G0,
                                     ctaid=(len(ctas), 0, 0)))
    return sms, ctas, np.array(truth)


@pytest.mark.parametrize("clock", ["clock", "clock64"])
def test_drifting_sm_clock_is_followed(clock):
    sms, ctas, truth = _launch(clock)
    g = Geometry(2, 8, clock)
    d = decode(encode(g, "keep-first", ctas), g, strategy="keep-first")
    assert d.problems == []
    t_truth = truth - (d.t0_ns - G0)
    err = np.abs(d.events["time_ns"] - t_truth)
    # globaltimer steps are 32 ns; a single straight line per SM is off by microseconds here
    assert err.max() < 60.0, err.max()
    row = d.sm_clocks
    assert (row["n_segments"] > 10).all()
    np.testing.assert_allclose(row["ghz_max"], 1.61, rtol=5e-3)
    assert (row["ghz_min"] < 1.50).all() and (row["ghz_min"] > 1.47).all()
    assert (row["max_residual_ns"] < 40).all()

    # the test means something: one least-squares line through the same pairs misses by > 1 us
    x = np.array([c.clock_start for c in ctas if c.sm == 0], float)
    y = np.array([c.gtime_start for c in ctas if c.sm == 0], float) - G0
    fit = np.polyval(np.polyfit(x - x[0], y, 1), x - x[0])
    assert np.abs(fit - y).max() > 1_000


def test_durations_inside_a_cta_use_its_own_rate():
    sms, ctas, truth = _launch("clock64", n_sms=1, waves=20)
    g = Geometry(2, 8, "clock64")
    d = decode(encode(g, "keep-first", ctas), g, strategy="keep-first")
    # the CTA's rate is the ratio of its own header spans (to the globaltimer's quantisation)
    last = d.ctas[-1]
    own = (last["clock_end"] - last["clock_start"]) / (last["gtime_end"] - last["gtime_start"])
    assert 1.0 / last["ns_per_cycle"] == pytest.approx(own, rel=2e-3)
    assert own < 1.50
