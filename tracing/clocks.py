"""Put every CTA of a launch on one nanosecond axis.

Each CTA header holds two back-to-back readings of ``(%globaltimer, %clock64)``: one at CTA entry, one
before ``ret``.  ``%globaltimer`` (ns) is one clock for the whole GPU; ``%clock64`` (cycles) is per SM,
with its own offset and possibly its own rate.  For every SM the host fits, by least squares over
all the pairs read on that SM during the launch,

    globaltimer_ns ~= a_sm + b_sm * clock64_cycles          (b_sm in ns per cycle, 1 / b_sm in GHz)

and maps an event's cycles to ``a_sm + b_sm * cycles``.  An SM whose pairs span too little time for a
reliable rate (fewer than two distinct clock values, a globaltimer span under ``MIN_FIT_SPAN_NS``
or under ``MIN_FIT_SPAN_STEPS`` globaltimer steps, or an implausible rate) gets the launch-wide rate (the median of the well-measured SMs' rates or,
when there are none, the pooled within-SM fit, i.e. one common slope after removing every SM's own
offset) with its own offset ``a_sm``.  Nothing assumes a nominal clock rate: when no rate can be
measured at all, times are NaN and a problem says so.

For ``clock="globaltimer"`` events are already in ns and need no conversion; the per-SM rates are
still measured from the headers and reported.

The launch axis is ns since the launch's earliest ``gtime_start`` (``t0_ns``, absolute globaltimer ns,
kept as an int).  All fitting is done on values centred per SM in integer arithmetic first, so float64
never sees a raw globaltimer value (about 1.7e18 ns, beyond float64's integer precision).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ._common import fmt_ids, plural

#: An SM whose (globaltimer) pairs span less than this many ns gets the launch-wide rate ...
MIN_FIT_SPAN_NS = 2_000
#: ... or less than this many globaltimer steps (the step is 32 ns on H100/H200 but 1 us on some
#: GPUs; it is estimated from the launch as the smallest gap between distinct readings).
MIN_FIT_SPAN_STEPS = 100
#: Rates outside this range (GHz) are taken as a failed measurement.
PLAUSIBLE_GHZ = (0.05, 20.0)
#: A fit residual (ns) above this is reported: the SM clock rate likely changed during the launch.
RESIDUAL_WARN_NS = 1_000.0

#: Per-SM clock measurement, one row per SM that ran a CTA of the launch.
SM_CLOCK_DTYPE = np.dtype(
    [
        ("sm", "<u4"),
        ("n_ctas", "<u4"),  # CTAs that started on this SM (with a good header)
        ("n_points", "<u4"),  # (globaltimer, clock64) pairs read on this SM
        ("span_ns", "<f8"),  # globaltimer span of those pairs, ns
        ("ghz", "<f8"),  # clock rate used for this SM, GHz (cycles per ns)
        ("own_rate", "?"),  # True: measured on this SM; False: the launch-wide rate
        ("fit_ghz", "<f8"),  # this SM's own least-squares rate, GHz (NaN when not measurable)
        ("rms_ns", "<f8"),  # RMS residual of the pairs around the line used, ns
        ("max_residual_ns", "<f8"),  # largest absolute residual, ns
    ],
    align=True,
)


@dataclasses.dataclass
class ClockFit:
    """Result of :func:`fit_clocks`.

    Per CTA (arrays of length ``n_ctas``) the mapping from an event's ``cycles`` field to ns on the
    launch axis is ``time_ns = offset_ns + ns_per_cycle * (cycles - ref_cycles)`` where ``ref_cycles``
    is the CTA's ``clock_start`` (clock, clock64) or ``gtime_start`` (globaltimer); ``offset_ns`` is
    therefore where the CTA's entry lies on the launch axis.  NaN for CTAs with a bad header.
    """

    t0_ns: int  # absolute globaltimer ns of the launch's earliest CTA entry
    gtime_step_ns: int  # estimated globaltimer resolution (smallest gap between distinct readings)
    ghz: float  # launch-wide SM clock rate, GHz (NaN when not measurable)
    sms: np.ndarray  # SM_CLOCK_DTYPE
    ns_per_cycle: np.ndarray  # f8 per CTA
    offset_ns: np.ndarray  # f8 per CTA
    ref_cycles: np.ndarray  # i8 per CTA
    own_rate: np.ndarray  # bool per CTA: its SM's own fitted rate was used
    problems: list[str]

    def to_ns(self, cta: np.ndarray, cycles: np.ndarray) -> np.ndarray:
        """ns on the launch axis for events of CTAs ``cta`` (region index) at ``cycles`` (int64)."""
        d = (cycles - self.ref_cycles[cta]).astype(np.float64)
        return self.offset_ns[cta] + self.ns_per_cycle[cta] * d


def _i64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a).astype(np.int64)


def fit_clocks(
    *,
    clock: str,
    sm_start: np.ndarray,
    sm_end: np.ndarray,
    gtime_start: np.ndarray,
    clock_start: np.ndarray,
    gtime_end: np.ndarray,
    clock_end: np.ndarray,
    ok: np.ndarray,
    end_ok: np.ndarray,
    min_span_ns: float = MIN_FIT_SPAN_NS,
) -> ClockFit:
    """Fit every SM's clock against the globaltimer (see the module docstring).

    All inputs are per CTA: SM ids at entry/exit, globaltimer ns and clock64 cycles at entry/exit,
    ``ok`` (header valid: the entry pair is used and the CTA gets a mapping) and ``end_ok`` (the exit
    pair is valid too).  Exit pairs are attributed to ``sm_end``.
    """
    n = len(ok)
    ok = np.asarray(ok, bool)
    end_ok = np.asarray(end_ok, bool) & ok
    problems: list[str] = []
    gs, cs, ge, ce = _i64(gtime_start), _i64(clock_start), _i64(gtime_end), _i64(clock_end)
    sm_start = _i64(sm_start)
    sm_end = _i64(sm_end)

    nan = np.full(n, np.nan)
    ref = cs.copy() if clock != "globaltimer" else gs.copy()
    empty = ClockFit(0, 0, float("nan"), np.zeros(0, SM_CLOCK_DTYPE), nan.copy(), nan.copy(), ref,
                     np.zeros(n, bool), problems)
    if not ok.any():
        return empty
    t0 = int(gs[ok].min())

    # -- points: (sm, clock, gtime) of every valid pair
    p_sm = np.concatenate([sm_start[ok], sm_end[end_ok]])
    p_x = np.concatenate([cs[ok], ce[end_ok]])
    p_y = np.concatenate([gs[ok], ge[end_ok]])
    sm_ids, first, p_s = np.unique(p_sm, return_index=True, return_inverse=True)
    p_s = p_s.ravel()
    k = len(sm_ids)
    # reference point per SM (its first point), so float64 only sees small differences
    xref, yref = p_x[first], p_y[first]
    dx = (p_x - xref[p_s]).astype(np.float64)
    dy = (p_y - yref[p_s]).astype(np.float64)
    cnt = np.bincount(p_s, minlength=k).astype(np.float64)
    mx = np.bincount(p_s, dx, k) / cnt
    my = np.bincount(p_s, dy, k) / cnt
    cx, cy = dx - mx[p_s], dy - my[p_s]
    sxx = np.bincount(p_s, cx * cx, k)
    sxy = np.bincount(p_s, cx * cy, k)

    # distinct clock values and globaltimer span per SM
    order = np.lexsort((p_x, p_s))
    s_sorted, x_sorted = p_s[order], p_x[order]
    new = np.ones(len(order), bool)
    new[1:] = (s_sorted[1:] != s_sorted[:-1]) | (x_sorted[1:] != x_sorted[:-1])
    n_distinct = np.bincount(s_sorted[new], minlength=k)
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    y_sorted = dy[order]
    span = np.maximum.reduceat(y_sorted, starts) - np.minimum.reduceat(y_sorted, starts)

    gaps = np.diff(np.unique(p_y))
    step = int(gaps.min()) if gaps.size else 0
    min_span = max(float(min_span_ns), MIN_FIT_SPAN_STEPS * step)

    with np.errstate(divide="ignore", invalid="ignore"):
        b_own = np.where(sxx > 0, sxy / sxx, np.nan)  # ns per cycle
    lo, hi = 1.0 / PLAUSIBLE_GHZ[1], 1.0 / PLAUSIBLE_GHZ[0]
    plausible = np.isfinite(b_own) & (b_own >= lo) & (b_own <= hi)
    good = (n_distinct >= 2) & (span >= min_span) & plausible
    bad_rate = (n_distinct >= 2) & (span >= min_span) & ~plausible
    if bad_rate.any():
        problems.append(
            f"implausible clock rate measured on {plural(int(bad_rate.sum()), 'SM')} "
            f"(SM {fmt_ids(sm_ids[bad_rate])}: "
            f"{fmt_ids([f'{1 / b:.3g} GHz' if b else 'inf' for b in b_own[bad_rate]])}); "
            "used the launch-wide rate there"
        )

    if good.any():
        b_launch = float(np.median(b_own[good]))
    else:
        tot_xx, tot_xy = float(sxx.sum()), float(sxy.sum())
        b_launch = tot_xy / tot_xx if tot_xx > 0 else float("nan")
        if not (np.isfinite(b_launch) and lo <= b_launch <= hi):
            b_launch = float("nan")
    if clock != "globaltimer" and not np.isfinite(b_launch):
        problems.append(
            "cannot measure the SM clock rate: the CTA headers' (globaltimer, clock64) pairs span "
            "no measurable time; event times are NaN (cycles are still exact)"
        )
    b = np.where(good, b_own, b_launch)

    resid = dy - (my[p_s] + b[p_s] * cx)  # NaN where no rate is known
    rms = np.sqrt(np.bincount(p_s, resid * resid, k) / cnt)
    max_res = np.zeros(k)
    with np.errstate(invalid="ignore"):
        np.fmax.at(max_res, p_s, np.abs(resid))
    max_res[~np.isfinite(rms)] = np.nan

    sms = np.zeros(k, SM_CLOCK_DTYPE)
    sms["sm"] = sm_ids
    cta_s = np.full(n, -1, np.int64)
    cta_s[ok] = np.searchsorted(sm_ids, sm_start[ok])
    sms["n_ctas"] = np.bincount(cta_s[ok], minlength=k)
    sms["n_points"] = cnt
    sms["span_ns"] = span
    sms["ghz"] = 1.0 / b
    sms["own_rate"] = good
    with np.errstate(divide="ignore", invalid="ignore"):
        sms["fit_ghz"] = np.where(b_own > 0, 1.0 / b_own, np.nan)
    sms["rms_ns"] = rms
    sms["max_residual_ns"] = max_res
    if clock != "globaltimer":
        wobbly = np.isfinite(max_res) & (max_res > RESIDUAL_WARN_NS)
        if wobbly.any():
            problems.append(
                f"clock fit residual above {RESIDUAL_WARN_NS:g} ns on {plural(int(wobbly.sum()), 'SM')} "
                f"(SM {fmt_ids(sm_ids[wobbly])}; worst {float(max_res[wobbly].max()):.0f} ns): "
                "the SM clock rate changed during the launch? times there are approximate"
            )

    ns_per_cycle = nan.copy()
    offset = nan.copy()
    own = np.zeros(n, bool)
    s = cta_s[ok]
    if clock == "globaltimer":
        ns_per_cycle[ok] = 1.0
        offset[ok] = (gs[ok] - t0).astype(np.float64)
    else:
        ns_per_cycle[ok] = b[s]
        dx_start = (cs[ok] - xref[s]).astype(np.float64) - mx[s]
        offset[ok] = (yref[s] - t0).astype(np.float64) + my[s] + b[s] * dx_start
        own[ok] = good[s]
    ghz = 1.0 / b_launch if np.isfinite(b_launch) else float("nan")
    return ClockFit(t0, step, ghz, sms, ns_per_cycle, offset, ref, own, problems)
