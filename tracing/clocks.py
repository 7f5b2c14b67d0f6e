"""Put every CTA of a launch on one nanosecond axis.

Each CTA header holds two back-to-back readings of ``(%globaltimer, %clock64)``: one at CTA entry, one
before ``ret``.  ``%globaltimer`` (ns) is one clock for the whole GPU; ``%clock64`` (cycles) is per SM,
with its own offset and its own rate, and that rate moves during a launch (DVFS: an H100 running a
GEMM was seen going from 1.61 to 1.48 GHz, which leaves residuals of several us around one straight
line per SM).  So for every SM the host builds a piecewise-linear map ``globaltimer_ns = Y_sm(cycles)``
through knots: the SM's pairs are binned by globaltimer into bins ``KNOT_SPAN_NS`` (and at least
``KNOT_SPAN_STEPS`` globaltimer steps) wide, each bin's pairs are averaged into one knot, and knots
closer than half a bin are skipped, so the globaltimer's quantisation moves a segment's rate by about
1 % at worst and a knot's position by less than one step.  Before the first and after the last knot the end segments are
extended.  An SM with fewer than two knots (a short launch) uses one straight line instead: its own
least-squares fit over its pairs when they span enough time for a reliable rate (at least two distinct
clock values, a globaltimer span of ``MIN_FIT_SPAN_NS`` and of ``MIN_FIT_SPAN_STEPS`` steps, a
plausible rate), else the launch-wide rate (the median of the well-measured SMs' rates or, when there
are none, the pooled within-SM fit) with its own offset.

A CTA's events are then mapped by the straight line through ``Y_sm(clock_start)`` and
``Y_sm(clock_end)`` (its own average rate over its lifetime, exact at both ends; the map's local rate
when the CTA has no exit pair).  Nothing assumes a nominal clock rate: when no rate can be measured at
all, times are NaN and a problem says so.

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
#: Knots of an SM's piecewise-linear clock map are at least this many ns apart ...
KNOT_SPAN_NS = 5_000
#: ... and at least this many globaltimer steps (a 32 ns step gives 6.4 us).
KNOT_SPAN_STEPS = 200
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
        ("ghz", "<f8"),  # average clock rate on this SM (least squares over its pairs), GHz
        ("own_rate", "?"),  # True: measured on this SM; False: the launch-wide rate
        ("n_segments", "<u4"),  # segments of the piecewise-linear map (1: one straight line)
        ("ghz_min", "<f8"),  # slowest and ...
        ("ghz_max", "<f8"),  # ... fastest segment rate, GHz (the clock's range during the launch)
        ("fit_ghz", "<f8"),  # this SM's own least-squares rate, GHz (NaN when not measurable)
        ("rms_ns", "<f8"),  # RMS residual of the pairs around the map used, ns
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

    # -- the map per SM: piecewise-linear through knots where the pairs allow it, else one line
    pieces: list[tuple[np.ndarray, np.ndarray] | None] = [None] * k
    if clock != "globaltimer" and np.isfinite(b_launch):
        knot_span = max(float(KNOT_SPAN_NS), KNOT_SPAN_STEPS * step)
        pieces = _piecewise_knots(p_s, dx, dy, k, knot_span, lo, hi)

    def line(s_idx: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return my[s_idx] + b[s_idx] * (x - mx[s_idx]), b[s_idx]

    def evaluate(s_idx: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ns since the SM's reference pair, local ns per cycle) at ``x`` cycles after it."""
        y, slope = line(s_idx, x)
        order = np.argsort(s_idx, kind="stable")  # the points of SM i: order[bounds[i]:bounds[i + 1]]
        bounds = np.searchsorted(s_idx[order], np.arange(k + 1))
        for sm in np.flatnonzero([pc is not None for pc in pieces]):  # a loop over SMs
            sel = order[bounds[sm]:bounds[sm + 1]]
            if len(sel):
                y[sel], slope[sel] = _interp(*pieces[sm], x[sel])
        return y, slope

    resid = dy - evaluate(p_s, dx)[0]  # NaN where no rate is known
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
    sms["n_segments"] = 1
    sms["ghz_min"] = sms["ghz_max"] = 1.0 / b
    for sm, pc in enumerate(pieces):
        if pc is not None:
            kx, ky = pc
            seg_ghz = np.diff(kx) / np.diff(ky)
            sms["n_segments"][sm] = len(seg_ghz)
            sms["ghz_min"][sm], sms["ghz_max"][sm] = seg_ghz.min(), seg_ghz.max()
            sms["own_rate"][sm] = True
    with np.errstate(divide="ignore", invalid="ignore"):
        sms["fit_ghz"] = np.where(b_own > 0, 1.0 / b_own, np.nan)
    sms["rms_ns"] = rms
    sms["max_residual_ns"] = max_res
    if clock != "globaltimer":
        wobbly = np.isfinite(max_res) & (max_res > RESIDUAL_WARN_NS)
        if wobbly.any():
            problems.append(
                f"clock map residual above {RESIDUAL_WARN_NS:g} ns on {plural(int(wobbly.sum()), 'SM')} "
                f"(SM {fmt_ids(sm_ids[wobbly])}; worst {float(max_res[wobbly].max()):.0f} ns): "
                "the SM clock rate changed faster than the CTA headers can follow; times there are approximate"
            )

    ns_per_cycle = nan.copy()
    offset = nan.copy()
    own = np.zeros(n, bool)
    s = cta_s[ok]
    if clock == "globaltimer":
        ns_per_cycle[ok] = 1.0
        offset[ok] = (gs[ok] - t0).astype(np.float64)
    else:
        x0 = (cs[ok] - xref[s]).astype(np.float64)
        y0, rate = evaluate(s, x0)
        # a CTA with an exit pair on the same SM: the line through the map at its entry and exit
        same = end_ok[ok] & (sm_end[ok] == sm_start[ok]) & (ce[ok] > cs[ok])
        x1 = (ce[ok] - xref[s]).astype(np.float64)
        y1, _ = evaluate(s[same], x1[same])
        rate[same] = (y1 - y0[same]) / (x1[same] - x0[same])
        ns_per_cycle[ok] = rate
        offset[ok] = (yref[s] - t0).astype(np.float64) + y0
        own[ok] = sms["own_rate"][s]
    ghz = 1.0 / b_launch if np.isfinite(b_launch) else float("nan")
    return ClockFit(t0, step, ghz, sms, ns_per_cycle, offset, ref, own, problems)


def _piecewise_knots(p_s: np.ndarray, dx: np.ndarray, dy: np.ndarray, k: int, span: float,
                     lo: float, hi: float) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """Per SM, knots ``(x, y)`` (float cycles and ns from the SM's reference pair) of its map, or None.

    The SM's pairs are binned by globaltimer into bins ``span`` ns wide, counted from its first pair,
    and the pairs of each bin are averaged into a knot, skipping a knot that falls less than
    ``span / 2`` after the previous bin's.  Knots are therefore at least ``span / 2`` apart and each
    averages out part of the globaltimer's quantisation.  An SM gets a map only with at least
    two knots, increasing in both coordinates, and plausible rates on every segment.
    """
    order = np.lexsort((dy, p_s))
    s, x, y = p_s[order], dx[order], dy[order]
    first = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    y_first = np.repeat(y[first], np.diff(np.r_[first, len(s)]))
    bin_ = np.floor((y - y_first) / span).astype(np.int64)
    new = np.r_[True, (s[1:] != s[:-1]) | (bin_[1:] != bin_[:-1])]
    g = np.cumsum(new) - 1
    c = np.bincount(g)
    kx, ky, ks = np.bincount(g, x) / c, np.bincount(g, y) / c, s[new]
    # a knot per bin, but none less than span/2 after the previous bin's: kept knots stay span/2 apart
    # (a dropped knot's successor lies in a later bin, at least a whole bin after the last kept one)
    keep = np.r_[True, (ks[1:] != ks[:-1]) | (ky[1:] - ky[:-1] >= span / 2)]
    kx, ky, ks = kx[keep], ky[keep], ks[keep]
    bounds = np.searchsorted(ks, np.arange(k + 1))
    out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * k
    for sm in range(k):  # a loop over SMs
        a, e = bounds[sm], bounds[sm + 1]
        if e - a < 2:
            continue
        ddx, ddy = np.diff(kx[a:e]), np.diff(ky[a:e])
        if (ddx <= 0).any() or (ddy <= 0).any():
            continue
        rate = ddy / ddx
        if ((rate < lo) | (rate > hi)).any():
            continue
        out[sm] = (kx[a:e], ky[a:e])
    return out


def _interp(kx: np.ndarray, ky: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Piecewise-linear ``y(x)`` through knots ``(kx, ky)``, end segments extended; and its slope."""
    seg = np.clip(np.searchsorted(kx, x, "right") - 1, 0, len(kx) - 2)
    slope = (ky[seg + 1] - ky[seg]) / (kx[seg + 1] - kx[seg])
    return ky[seg] + slope * (x - kx[seg]), slope
