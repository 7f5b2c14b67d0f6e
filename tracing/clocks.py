"""Put every CTA of a launch on one nanosecond axis.

Each CTA header holds two back-to-back readings of ``(%globaltimer, %clock64)``: one at CTA entry, one
before ``ret``.  ``%globaltimer`` (ns) is one clock for the whole GPU; ``%clock64`` (cycles) is per SM,
with its own offset and its own rate, and that rate moves during a launch (DVFS: an H100 running a
GEMM was seen going from 1.61 to 1.48 GHz, which leaves residuals of several us around one straight
line per SM).  So for every SM the host builds a piecewise-linear map ``globaltimer_ns = Y_sm(cycles)``
through knots: the SM's pairs are binned by globaltimer into bins ``KNOT_SPAN_NS`` (and at least
``KNOT_SPAN_STEPS`` globaltimer steps) wide, each bin's pairs are averaged into one knot, and knots
closer than half a bin are skipped, so the globaltimer's quantisation moves a segment's rate by about
1 % at worst and a knot's position by less than one step.  Before the first and after the last knot the
end segments are extended.  An SM with fewer than two knots (a short launch) uses one straight line
instead: its own least-squares fit over its pairs when they span enough time for a reliable rate (at
least two distinct clock values, a globaltimer span of ``MIN_FIT_SPAN_NS`` and of
``MIN_FIT_SPAN_STEPS`` steps, a plausible rate), else the launch-wide rate (the median of the
well-measured SMs' rates or, when there are none, the pooled within-SM fit) with its own offset.

A CTA's events are then mapped by the straight line through ``Y_sm(clock_start)`` and
``Y_sm(clock_end)`` (its own average rate over its lifetime, exact at both ends; the map's local rate
when the CTA has no exit pair).  Nothing assumes a nominal clock rate: when no rate can be measured at
all, times are NaN and a problem says so.

A CTA whose own average rate (its exit minus entry readings) is off the launch-wide rate by more than
``CTA_RATE_FACTOR`` is reported: one of its header readings is corrupt.  So is a CTA whose own rate
lies outside ``CTA_POSSIBLE_GHZ`` (0.1-10 GHz, allowing for ``GTIME_MAX_STEP_NS`` of globaltimer
quantisation), whatever the launch's rate: the only check of a launch of one CTA, whose launch-wide rate
is its own, in every clock mode.

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
#: A CTA whose own rate (entry to exit) is off the launch-wide rate by more than this factor is reported
#: (clock changes during a launch stay well inside it: an H100 went 1.48-1.86 GHz) ...
CTA_RATE_FACTOR = 1.5
#: ... when it ran at least this many globaltimer steps.
CTA_RATE_MIN_STEPS = 50
#: A CTA whose own rate lies outside this range (GHz) is reported whatever the launch's rate: no GPU's SM
#: clock runs that slow or fast, so one of its header readings is corrupt (the only check of a launch
#: of one CTA, whose launch-wide rate is its own) ...
CTA_POSSIBLE_GHZ = (0.1, 10.0)
#: ... allowing for this much globaltimer quantisation (ns) of its entry-to-exit time (the step is 32 ns
#: on H100/H200, 1 us on some GPUs).
GTIME_MAX_STEP_NS = 2_000

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
    ctas = _Ctas(ok, end_ok, _i64(sm_start), _i64(sm_end), _i64(gtime_start), _i64(clock_start),
                 _i64(gtime_end), _i64(clock_end))
    nan = np.full(n, np.nan)
    ref = ctas.cs.copy() if clock != "globaltimer" else ctas.gs.copy()
    if not ok.any():
        return ClockFit(0, 0, float("nan"), np.zeros(0, SM_CLOCK_DTYPE), nan.copy(), nan.copy(), ref,
                        np.zeros(n, bool), [])
    t0 = int(ctas.gs[ok].min())
    pts = _points(ctas)
    n_distinct, span = _spread(pts)
    gaps = np.diff(np.sort(pts.y))  # between distinct readings (np.unique would load numpy.ma: 30 ms)
    gaps = gaps[gaps != 0]
    step = int(gaps.min()) if gaps.size else 0
    min_span = max(float(min_span_ns), MIN_FIT_SPAN_STEPS * step)
    rates, problems = _rates(pts, n_distinct, span, min_span, clock)
    pieces: list[tuple[np.ndarray, np.ndarray] | None] = [None] * pts.k
    if clock != "globaltimer" and np.isfinite(rates.launch):
        knot_span = max(float(KNOT_SPAN_NS), KNOT_SPAN_STEPS * step)
        pieces = _piecewise_knots(pts.s, pts.dx, pts.dy, pts.k, knot_span, *_PLAUSIBLE_NS_PER_CYCLE)
    cmap = _ClockMap(pts.k, pts.mx, pts.my, rates.used, pieces)
    cta_sm = np.full(n, -1, np.int64)  # per CTA: its entry SM's index in pts.sm_ids
    cta_sm[ok] = np.searchsorted(pts.sm_ids, ctas.sm_start[ok])
    sms, wobbly = _sm_table(pts, span, rates, cmap, cta_sm[ok], clock)
    ns_per_cycle, offset, own = nan.copy(), nan.copy(), np.zeros(n, bool)
    if clock == "globaltimer":
        ns_per_cycle[ok] = 1.0
        offset[ok] = (ctas.gs[ok] - t0).astype(np.float64)
    else:
        ns_per_cycle[ok], offset[ok] = _cta_lines(ctas, pts, cmap, cta_sm[ok], t0)
        own[ok] = sms["own_rate"][cta_sm[ok]]
    ghz = 1.0 / rates.launch if np.isfinite(rates.launch) else float("nan")
    odd = _impossible_cta_rates(ctas) + _odd_cta_rates(ctas, ghz, step)
    return ClockFit(t0, step, ghz, sms, ns_per_cycle, offset, ref, own, problems + wobbly + odd)


def _odd_cta_rates(c: _Ctas, ghz: float, step: int) -> list[str]:
    """CTAs whose own clock rate (header cycles over header ns, entry to exit) is off the launch's by
    more than :data:`CTA_RATE_FACTOR`: one of their four readings is corrupt.  Only CTAs that ran at
    least :data:`CTA_RATE_MIN_STEPS` globaltimer steps are judged (the quantisation stays small)."""
    if not np.isfinite(ghz):
        return []
    dg = c.ge - c.gs
    judged = c.end_ok & (c.sm_start == c.sm_end) & (dg >= CTA_RATE_MIN_STEPS * max(step, 1))
    idx = np.flatnonzero(judged)
    if not idx.size:
        return []
    rate = (c.ce[idx] - c.cs[idx]).astype(np.float64) / dg[idx].astype(np.float64)
    odd = (rate > ghz * CTA_RATE_FACTOR) | (rate < ghz / CTA_RATE_FACTOR)
    if not odd.any():
        return []
    ex = [f"CTA {i} ({r:.2f} GHz)"
          for i, r in zip(idx[odd][:5].tolist(), rate[odd][:5].tolist(), strict=True)]
    return [f"{plural(int(odd.sum()), 'CTA')} whose header readings give a clock rate far from the launch's "
            f"{ghz:.3f} GHz (a corrupt entry or exit reading; their events are placed with it): "
            f"{fmt_ids(ex, 5, total=int(odd.sum()))}"]


def _impossible_cta_rates(c: _Ctas) -> list[str]:
    """CTAs whose own clock rate (header cycles over header ns, entry to exit, on one SM) lies outside
    :data:`CTA_POSSIBLE_GHZ` even with the entry-to-exit time off by :data:`GTIME_MAX_STEP_NS`."""
    judged = c.end_ok & (c.sm_start == c.sm_end)
    idx = np.flatnonzero(judged)
    if not idx.size:
        return []
    dg = (c.ge[idx] - c.gs[idx]).astype(np.float64)
    dc = (c.ce[idx] - c.cs[idx]).astype(np.float64)
    lo, hi = CTA_POSSIBLE_GHZ
    with np.errstate(divide="ignore", invalid="ignore"):
        fastest = dc / np.maximum(dg - GTIME_MAX_STEP_NS, 0.0)
        slowest = dc / (dg + GTIME_MAX_STEP_NS)
        rate = dc / dg
    bad = (fastest < lo) | (slowest > hi)
    if not bad.any():
        return []
    ex = [f"CTA {i} ({r:.3g} GHz)"
          for i, r in zip(idx[bad][:5].tolist(), rate[bad][:5].tolist(), strict=True)]
    return [f"{plural(int(bad.sum()), 'CTA')} whose header readings give a clock rate no GPU runs at "
            f"(outside {lo}-{hi} GHz: a corrupt entry or exit reading; their events are placed with it): "
            f"{fmt_ids(ex, 5, total=int(bad.sum()))}"]


#: the plausible clock rates as ns per cycle: (lowest, highest)
_PLAUSIBLE_NS_PER_CYCLE = (1.0 / PLAUSIBLE_GHZ[1], 1.0 / PLAUSIBLE_GHZ[0])


@dataclasses.dataclass
class _Ctas:
    """The per-CTA inputs of :func:`fit_clocks`, as int64 (bool for the masks)."""

    ok: np.ndarray
    end_ok: np.ndarray  # implies ok
    sm_start: np.ndarray
    sm_end: np.ndarray
    gs: np.ndarray  # globaltimer ns and clock64 cycles at entry ...
    cs: np.ndarray
    ge: np.ndarray  # ... and at exit
    ce: np.ndarray


@dataclasses.dataclass
class _Points:
    """Every valid (clock64, globaltimer) pair of the launch, grouped by SM, with least-squares sums.

    ``dx``, ``dy`` are a pair's cycles and ns after its SM's reference pair (its first one, ``xref``,
    ``yref``), so float64 only ever sees small differences; the per-SM sums are over those.
    """

    sm_ids: np.ndarray  # the SMs that have pairs, increasing
    s: np.ndarray  # per pair: its SM's index in sm_ids
    x: np.ndarray  # per pair: clock64 cycles and globaltimer ns (int64)
    y: np.ndarray
    xref: np.ndarray  # per SM: its reference pair
    yref: np.ndarray
    dx: np.ndarray  # per pair, float
    dy: np.ndarray
    cnt: np.ndarray  # per SM: pairs (float)
    mx: np.ndarray  # per SM: mean dx, mean dy
    my: np.ndarray
    sxx: np.ndarray  # per SM: sum of centred dx * dx and dx * dy
    sxy: np.ndarray

    @property
    def k(self) -> int:
        return len(self.sm_ids)


def _points(c: _Ctas) -> _Points:
    """The pairs: every good CTA's entry pair on its entry SM, every usable exit pair on its exit SM."""
    p_sm = np.concatenate([c.sm_start[c.ok], c.sm_end[c.end_ok]])
    p_x = np.concatenate([c.cs[c.ok], c.ce[c.end_ok]])
    p_y = np.concatenate([c.gs[c.ok], c.ge[c.end_ok]])
    sm_ids, first, p_s = np.unique(p_sm, return_index=True, return_inverse=True)
    p_s = p_s.ravel()
    k = len(sm_ids)
    xref, yref = p_x[first], p_y[first]
    dx = (p_x - xref[p_s]).astype(np.float64)
    dy = (p_y - yref[p_s]).astype(np.float64)
    cnt = np.bincount(p_s, minlength=k).astype(np.float64)
    mx = np.bincount(p_s, dx, k) / cnt
    my = np.bincount(p_s, dy, k) / cnt
    cx, cy = dx - mx[p_s], dy - my[p_s]
    return _Points(sm_ids, p_s, p_x, p_y, xref, yref, dx, dy, cnt, mx, my,
                   sxx=np.bincount(p_s, cx * cx, k), sxy=np.bincount(p_s, cx * cy, k))


def _spread(pts: _Points) -> tuple[np.ndarray, np.ndarray]:
    """Per SM: distinct clock values among its pairs, and the globaltimer span of its pairs (ns)."""
    order = np.lexsort((pts.x, pts.s))
    s_sorted, x_sorted = pts.s[order], pts.x[order]
    new = np.ones(len(order), bool)
    new[1:] = (s_sorted[1:] != s_sorted[:-1]) | (x_sorted[1:] != x_sorted[:-1])
    n_distinct = np.bincount(s_sorted[new], minlength=pts.k)
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    y_sorted = pts.dy[order]
    span = np.maximum.reduceat(y_sorted, starts) - np.minimum.reduceat(y_sorted, starts)
    return n_distinct, span


@dataclasses.dataclass
class _Rates:
    """Clock rates as ns per cycle."""

    own: np.ndarray  # per SM: its own least-squares rate (NaN when not measurable)
    good: np.ndarray  # per SM: its own rate is reliable (enough distinct values and span, plausible)
    launch: float  # the launch-wide rate (NaN when not measurable)
    used: np.ndarray  # per SM: its own rate where good, else the launch-wide one


def _median(x: np.ndarray) -> float:
    """``np.median`` of finite values, the same float (np.median's NaN check loads numpy.ma: 30 ms on
    a process's first decode)."""
    k = len(x) // 2
    if len(x) % 2:
        return float(np.partition(x, k)[k])
    p = np.partition(x, [k - 1, k])
    return float((p[k - 1] + p[k]) / 2)


def _rates(pts: _Points, n_distinct: np.ndarray, span: np.ndarray, min_span: float,
           clock: str) -> tuple[_Rates, list[str]]:
    """Each SM's rate and the launch-wide rate (see the module docstring), and the problems found."""
    problems = []
    with np.errstate(divide="ignore", invalid="ignore"):
        b_own = np.where(pts.sxx > 0, pts.sxy / pts.sxx, np.nan)  # ns per cycle
    lo, hi = _PLAUSIBLE_NS_PER_CYCLE
    plausible = np.isfinite(b_own) & (b_own >= lo) & (b_own <= hi)
    good = (n_distinct >= 2) & (span >= min_span) & plausible
    bad_rate = (n_distinct >= 2) & (span >= min_span) & ~plausible
    if bad_rate.any():
        problems.append(
            f"implausible clock rate measured on {plural(int(bad_rate.sum()), 'SM')} "
            f"(SM {fmt_ids(pts.sm_ids[bad_rate])}: "
            f"{fmt_ids([f'{1 / b:.3g} GHz' if b else 'inf' for b in b_own[bad_rate]])}); "
            "used the launch-wide rate there"
        )
    if good.any():
        b_launch = _median(b_own[good])
    else:  # no SM measured well on its own: the pooled within-SM fit
        tot_xx, tot_xy = float(pts.sxx.sum()), float(pts.sxy.sum())
        b_launch = tot_xy / tot_xx if tot_xx > 0 else float("nan")
        if not (np.isfinite(b_launch) and lo <= b_launch <= hi):
            b_launch = float("nan")
    if clock != "globaltimer" and not np.isfinite(b_launch):
        problems.append(
            "cannot measure the SM clock rate: the CTA headers' (globaltimer, clock64) pairs span "
            "no measurable time; event times are NaN (cycles are still exact)"
        )
    return _Rates(b_own, good, b_launch, np.where(good, b_own, b_launch)), problems


@dataclasses.dataclass
class _ClockMap:
    """Per SM, ns after its reference pair as a function of cycles after it: piecewise-linear through
    the SM's knots where it has them (``pieces``), else the straight line of rate ``b`` through the
    SM's mean pair."""

    k: int
    mx: np.ndarray  # per SM: mean dx, mean dy
    my: np.ndarray
    b: np.ndarray  # per SM: ns per cycle of the straight line
    pieces: list[tuple[np.ndarray, np.ndarray] | None]  # per SM: knots (x, y), or None

    def evaluate(self, s_idx: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ns since the SM's reference pair, local ns per cycle) at ``x`` cycles after it, for points
        on the SMs ``s_idx``."""
        y, slope = self.my[s_idx] + self.b[s_idx] * (x - self.mx[s_idx]), self.b[s_idx]
        order = np.argsort(s_idx, kind="stable")  # the points of SM i: order[bounds[i]:bounds[i + 1]]
        bounds = np.searchsorted(s_idx[order], np.arange(self.k + 1))
        for sm in np.flatnonzero([pc is not None for pc in self.pieces]):  # a loop over SMs
            sel = order[bounds[sm]:bounds[sm + 1]]
            if len(sel):
                y[sel], slope[sel] = _interp(*self.pieces[sm], x[sel])
        return y, slope


def _sm_table(pts: _Points, span: np.ndarray, rates: _Rates, cmap: _ClockMap, good_cta_sm: np.ndarray,
              clock: str) -> tuple[np.ndarray, list[str]]:
    """The ``SM_CLOCK_DTYPE`` table (``good_cta_sm``: the SM index of each good CTA), and a problem
    when the map leaves large residuals."""
    k = pts.k
    resid = pts.dy - cmap.evaluate(pts.s, pts.dx)[0]  # NaN where no rate is known
    rms = np.sqrt(np.bincount(pts.s, resid * resid, k) / pts.cnt)
    max_res = np.zeros(k)
    with np.errstate(invalid="ignore"):
        np.fmax.at(max_res, pts.s, np.abs(resid))
    max_res[~np.isfinite(rms)] = np.nan

    sms = np.zeros(k, SM_CLOCK_DTYPE)
    sms["sm"] = pts.sm_ids
    sms["n_ctas"] = np.bincount(good_cta_sm, minlength=k)
    sms["n_points"] = pts.cnt
    sms["span_ns"] = span
    sms["ghz"] = 1.0 / rates.used
    sms["own_rate"] = rates.good
    sms["n_segments"] = 1
    sms["ghz_min"] = sms["ghz_max"] = 1.0 / rates.used
    for sm, pc in enumerate(cmap.pieces):  # a loop over SMs
        if pc is not None:
            kx, ky = pc
            seg_ghz = np.diff(kx) / np.diff(ky)
            sms["n_segments"][sm] = len(seg_ghz)
            sms["ghz_min"][sm], sms["ghz_max"][sm] = seg_ghz.min(), seg_ghz.max()
            sms["own_rate"][sm] = True
    with np.errstate(divide="ignore", invalid="ignore"):
        sms["fit_ghz"] = np.where(rates.own > 0, 1.0 / rates.own, np.nan)
    sms["rms_ns"] = rms
    sms["max_residual_ns"] = max_res
    wobbly = np.isfinite(max_res) & (max_res > RESIDUAL_WARN_NS)
    if clock == "globaltimer" or not wobbly.any():
        return sms, []
    return sms, [
        f"clock map residual above {RESIDUAL_WARN_NS:g} ns on {plural(int(wobbly.sum()), 'SM')} "
        f"(SM {fmt_ids(pts.sm_ids[wobbly])}; worst {float(max_res[wobbly].max()):.0f} ns): "
        "the SM clock rate changed faster than the CTA headers can follow; times there are approximate"
    ]


def _cta_lines(c: _Ctas, pts: _Points, cmap: _ClockMap, s: np.ndarray,
               t0: int) -> tuple[np.ndarray, np.ndarray]:
    """(ns per cycle, offset ns on the launch axis) of every good CTA (on SM index ``s``): the line
    through the map at its entry and, when it has an exit pair on the same SM, its exit; else the
    map's local rate at its entry."""
    ok = c.ok
    x0 = (c.cs[ok] - pts.xref[s]).astype(np.float64)
    y0, rate = cmap.evaluate(s, x0)
    same = c.end_ok[ok] & (c.sm_end[ok] == c.sm_start[ok]) & (c.ce[ok] > c.cs[ok])
    x1 = (c.ce[ok] - pts.xref[s]).astype(np.float64)
    y1, _ = cmap.evaluate(s[same], x1[same])
    rate[same] = (y1 - y0[same]) / (x1[same] - x0[same])
    return rate, (pts.yref[s] - t0).astype(np.float64) + y0


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
