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
    return np.asarray(a).astype(np.int64, copy=False)  # never written to: no copy needed


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
    t0 = int(ctas.good(ctas.gs).min())
    pts = _points(ctas)
    varied, span = _spread(pts)
    gaps = np.diff(np.sort(pts.y))  # between distinct readings (np.unique would load numpy.ma: 30 ms)
    gaps = gaps[gaps != 0]
    step = int(gaps.min()) if gaps.size else 0
    min_span = max(float(min_span_ns), MIN_FIT_SPAN_STEPS * step)
    rates, problems = _rates(pts, varied, span, min_span, clock)
    knots = _Knots.none(pts.k)
    knot_span = max(float(KNOT_SPAN_NS), KNOT_SPAN_STEPS * step)
    if clock != "globaltimer" and np.isfinite(rates.launch) and _may_have_knots(pts, span, knot_span):
        knots = _piecewise_knots(pts, knot_span, *_PLAUSIBLE_NS_PER_CYCLE)
    cmap = _ClockMap(pts.k, pts.mx, pts.my, rates.used, knots)
    n_ok = int(np.count_nonzero(ok))
    cta_sm = pts.s[:n_ok]  # per good CTA: its entry SM's index in pts.sm_ids (its entry pair comes first)
    y_pts, rate_pts = cmap.evaluate(pts.s, pts.dx)  # at every pair, once: the table and the CTAs use them
    sms, wobbly = _sm_table(pts, span, rates, cmap, cta_sm, clock, y_pts)
    ns_per_cycle, offset, own = nan.copy(), nan.copy(), np.zeros(n, bool)
    if clock == "globaltimer":
        ns_per_cycle[ok] = 1.0
        offset[ok] = (ctas.gs[ok] - t0).astype(np.float64)
    elif ctas.all_ok:  # every CTA good: its line as it comes
        ns_per_cycle, offset = _cta_lines(ctas, pts, cta_sm, t0, y_pts, rate_pts)
        own = sms["own_rate"][cta_sm]
    else:
        ns_per_cycle[ok], offset[ok] = _cta_lines(ctas, pts, cta_sm, t0, y_pts, rate_pts)
        own[ok] = sms["own_rate"][cta_sm]
    ghz = 1.0 / rates.launch if np.isfinite(rates.launch) else float("nan")
    odd = _cta_rate_problems(ctas, ghz, step)
    return ClockFit(t0, step, ghz, sms, ns_per_cycle, offset, ref, own, problems + wobbly + odd)


def _cta_rate_problems(c: _Ctas, ghz: float, step: int) -> list[str]:
    """CTAs whose own clock rate (header cycles over header ns, entry to exit, on one SM) is wrong: one of
    their four readings is corrupt.  Reported when it lies outside :data:`CTA_POSSIBLE_GHZ` even with the
    entry-to-exit time off by :data:`GTIME_MAX_STEP_NS`; and when it is off the launch's rate ``ghz`` by
    more than :data:`CTA_RATE_FACTOR` even allowing :data:`GTIME_MAX_STEP_NS` of skew, judged only where the
    CTA ran at least :data:`CTA_RATE_MIN_STEPS` globaltimer steps (the quantisation stays small)."""
    idx = np.flatnonzero(c.end_ok & (c.sm_start == c.sm_end))
    if not idx.size:
        return []
    dg_steps = c.ge[idx] - c.gs[idx]
    dg = dg_steps.astype(np.float64)
    dc = (c.ce[idx] - c.cs[idx]).astype(np.float64)
    lo, hi = CTA_POSSIBLE_GHZ
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = dc / dg
        # the lowest and highest rates the readings allow, with GTIME_MAX_STEP_NS of skew either way (the
        # bare rate of a short CTA flagged 1-2 CTAs in almost every launch of a 17 us kernel on an H100)
        slowest, fastest = dc / (dg + GTIME_MAX_STEP_NS), dc / np.maximum(dg - GTIME_MAX_STEP_NS, 0.0)
        bad = (fastest < lo) | (slowest > hi)
    problems = []
    if bad.any():
        problems.append(
            f"{plural(int(bad.sum()), 'CTA')} whose header readings give a clock rate no GPU runs at "
            f"(outside {lo}-{hi} GHz: a corrupt entry or exit reading; their events are placed with it): "
            f"{_rate_examples(idx, rate, bad, '.3g')}")
    if not np.isfinite(ghz):
        return problems
    long = dg_steps >= CTA_RATE_MIN_STEPS * max(step, 1)
    idx, rate = idx[long], rate[long]
    odd = (slowest[long] > ghz * CTA_RATE_FACTOR) | (fastest[long] < ghz / CTA_RATE_FACTOR)
    if odd.any():
        problems.append(
            f"{plural(int(odd.sum()), 'CTA')} whose header readings give a clock rate far from the launch's "
            f"{ghz:.3f} GHz (a corrupt entry or exit reading; their events are placed with it): "
            f"{_rate_examples(idx, rate, odd, '.2f')}")
    return problems


def _rate_examples(idx: np.ndarray, rate: np.ndarray, mask: np.ndarray, spec: str) -> str:
    """The first CTAs ``mask`` picks, with their clock rates (``CTA 7 (0.41 GHz), ...``)."""
    first = zip(idx[mask][:5].tolist(), rate[mask][:5].tolist(), strict=True)
    ex = [f"CTA {i} ({r:{spec}} GHz)" for i, r in first]
    return fmt_ids(ex, 5, total=int(mask.sum()))


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

    def __post_init__(self) -> None:
        self.all_ok, self.all_end = bool(self.ok.all()), bool(self.end_ok.all())

    def good(self, a: np.ndarray) -> np.ndarray:
        """``a[ok]`` (``a`` itself when every CTA is good: read only)."""
        return a if self.all_ok else a[self.ok]

    def ended(self, a: np.ndarray) -> np.ndarray:
        """``a[end_ok]`` (``a`` itself when every CTA has a usable exit pair: read only)."""
        return a if self.all_end else a[self.end_ok]


@dataclasses.dataclass
class _Points:
    """Every valid (clock64, globaltimer) pair of the launch, grouped by SM, with least-squares sums.

    ``dx``, ``dy`` are a pair's cycles and ns after its SM's reference pair (its first one, ``xref``,
    ``yref``), so float64 only ever sees small differences; the per-SM sums are over those.  The good
    CTAs' entry pairs come first, in CTA order, then the usable exit pairs.
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
    order: np.ndarray  # the pairs by (SM, dy), ties in pair order (np.lexsort((dy, s)))
    starts: np.ndarray  # per SM: where its pairs begin in ``order``

    @property
    def k(self) -> int:
        return len(self.sm_ids)


def _sorted_pairs(p_sm: np.ndarray, p_y: np.ndarray) -> tuple | None:
    """The pairs by (SM, globaltimer), ties in pair order, through one sort of an int64 key: (order,
    per SM: where its pairs begin in ``order``, its id, its first pair; per pair: its SM's index).  None
    where SM ids or readings spread too far for the key (a corrupt header)."""
    y0 = int(p_y.min())
    if int(p_sm.min()) < 0 or int(p_sm.max()) >= 1 << 20 or int(p_y.max()) - y0 >= 1 << 42:
        return None
    order = np.argsort((p_sm << 42) | (p_y - y0), kind="stable")
    s_sorted = p_sm[order]
    starts = _edges(s_sorted[1:] != s_sorted[:-1]).nonzero()[0]
    sm_ids = s_sorted[starts]
    return order, starts, sm_ids, np.minimum.reduceat(order, starts), np.searchsorted(sm_ids, p_sm)


def _points(c: _Ctas) -> _Points:
    """The pairs: every good CTA's entry pair on its entry SM, every usable exit pair on its exit SM."""
    p_sm = np.concatenate([c.good(c.sm_start), c.ended(c.sm_end)])
    p_x = np.concatenate([c.good(c.cs), c.ended(c.ce)])
    p_y = np.concatenate([c.good(c.gs), c.ended(c.ge)])
    fast = _sorted_pairs(p_sm, p_y)
    if fast is not None:  # dy below is exact (readings < 2**42 apart): its order is the readings'
        order, starts, sm_ids, first, p_s = fast
    else:
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
    if fast is None:
        order = np.lexsort((dy, p_s))
        starts = np.zeros(k, np.int64)
        np.cumsum(cnt[:-1].astype(np.int64), out=starts[1:])
    return _Points(sm_ids, p_s, p_x, p_y, xref, yref, dx, dy, cnt, mx, my,
                   sxx=np.bincount(p_s, cx * cx, k), sxy=np.bincount(p_s, cx * cy, k), order=order,
                   starts=starts)


def _spread(pts: _Points) -> tuple[np.ndarray, np.ndarray]:
    """Per SM: whether its pairs hold at least two distinct clock values, and their globaltimer span
    (ns)."""
    x_sorted = pts.x[pts.order]
    varied = np.maximum.reduceat(x_sorted, pts.starts) > np.minimum.reduceat(x_sorted, pts.starts)
    y_sorted = pts.dy[pts.order]
    span = np.maximum.reduceat(y_sorted, pts.starts) - np.minimum.reduceat(y_sorted, pts.starts)
    return varied, span


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


def _rates(pts: _Points, varied: np.ndarray, span: np.ndarray, min_span: float,
           clock: str) -> tuple[_Rates, list[str]]:
    """Each SM's rate and the launch-wide rate (see the module docstring), and the problems found."""
    problems = []
    with np.errstate(divide="ignore", invalid="ignore"):
        b_own = np.where(pts.sxx > 0, pts.sxy / pts.sxx, np.nan)  # ns per cycle
    lo, hi = _PLAUSIBLE_NS_PER_CYCLE
    plausible = np.isfinite(b_own) & (b_own >= lo) & (b_own <= hi)
    good = varied & (span >= min_span) & plausible
    bad_rate = varied & (span >= min_span) & ~plausible
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
class _Knots:
    """The knots of every SM that has a piecewise-linear map, as one list: map ``i`` (of the SM index
    ``sm[i]``) runs through ``(x, y)[start[i]:start[i] + count[i]]`` (float cycles and ns from the SM's
    reference pair, increasing); ``of_sm``: per SM index, its map or -1."""

    sm: np.ndarray
    start: np.ndarray
    count: np.ndarray
    x: np.ndarray
    y: np.ndarray
    of_sm: np.ndarray

    @classmethod
    def none(cls, k: int) -> _Knots:
        z, zf = np.zeros(0, np.int64), np.zeros(0)
        return cls(z, z, z, zf, zf, np.full(k, -1, np.int64))

    def segment_ghz(self) -> tuple[np.ndarray, np.ndarray]:
        """Per map: its slowest and fastest segment rate (GHz)."""
        ghz = np.diff(self.x) / np.diff(self.y)  # the pairs of knots inside a map are its segments
        inside = np.ones(len(ghz), bool)
        inside[self.start[1:] - 1] = False
        first = self.start - np.arange(len(self.start))  # each map's first segment in ghz[inside]
        ghz = ghz[inside]
        return np.minimum.reduceat(ghz, first), np.maximum.reduceat(ghz, first)


@dataclasses.dataclass
class _ClockMap:
    """Per SM, ns after its reference pair as a function of cycles after it: piecewise-linear through
    the SM's knots where it has them (``knots``), else the straight line of rate ``b`` through the
    SM's mean pair."""

    k: int
    mx: np.ndarray  # per SM: mean dx, mean dy
    my: np.ndarray
    b: np.ndarray  # per SM: ns per cycle of the straight line
    knots: _Knots

    def evaluate(self, s_idx: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ns since the SM's reference pair, local ns per cycle) at ``x`` cycles after it, for points
        on the SMs ``s_idx``: on a piecewise map its segment's line (the end segments extended)."""
        y, slope = self.my[s_idx] + self.b[s_idx] * (x - self.mx[s_idx]), self.b[s_idx]
        kn = self.knots
        if not len(kn.sm):
            return y, slope
        m = kn.of_sm[s_idx]
        sel = np.flatnonzero(m >= 0)
        m, xs = m[sel], x[sel]
        # per map, np.searchsorted(its knots' x, xs, "right"), for all maps at once: on keys (map, rank
        # of the value among all knots' and points' x), exact, increasing along the knots
        v = np.sort(np.concatenate([kn.x, xs]))
        v = v[_run_starts(v)]
        knot_map = np.repeat(np.arange(len(kn.sm), dtype=np.int64), kn.count)
        keys = knot_map * len(v) + np.searchsorted(v, kn.x)
        found = np.searchsorted(keys, m * len(v) + np.searchsorted(v, xs), "right") - kn.start[m]
        seg = kn.start[m] + np.clip(found - 1, 0, kn.count[m] - 2)
        kx, ky = kn.x[seg], kn.y[seg]
        s = (kn.y[seg + 1] - ky) / (kn.x[seg + 1] - kx)
        y[sel], slope[sel] = ky + s * (xs - kx), s
        return y, slope


def _sm_table(pts: _Points, span: np.ndarray, rates: _Rates, cmap: _ClockMap, good_cta_sm: np.ndarray,
              clock: str, y_pts: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The ``SM_CLOCK_DTYPE`` table (``good_cta_sm``: the SM index of each good CTA; ``y_pts``: the map
    at every pair), and a problem when the map leaves large residuals."""
    k = pts.k
    resid = pts.dy - y_pts  # NaN where no rate is known
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
    kn = cmap.knots
    if len(kn.sm):
        sms["n_segments"][kn.sm] = kn.count - 1
        sms["ghz_min"][kn.sm], sms["ghz_max"][kn.sm] = kn.segment_ghz()
        sms["own_rate"][kn.sm] = True
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


def _cta_lines(c: _Ctas, pts: _Points, s: np.ndarray, t0: int, y_pts: np.ndarray,
               rate_pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ns per cycle, offset ns on the launch axis) of every good CTA (on SM index ``s``): the line
    through the map at its entry and, when it has an exit pair on the same SM, its exit; else the
    map's local rate at its entry.  ``y_pts``, ``rate_pts``: the map and its rate at every pair (the
    good CTAs' entry pairs first, then the usable exit pairs, each in CTA order)."""
    n_ok = len(s)
    x0 = pts.dx[:n_ok]
    y0, rate = y_pts[:n_ok], rate_pts[:n_ok].copy()
    has_exit = c.good(c.end_ok)
    same = has_exit & (c.good(c.sm_end) == c.good(c.sm_start)) & (c.good(c.ce) > c.good(c.cs))
    if c.all_end:  # the exit pairs follow the entry pairs, CTA by CTA
        x1, y1 = pts.dx[n_ok:][same], y_pts[n_ok:][same]
    else:
        exit_pt = n_ok + np.cumsum(has_exit) - 1  # per good CTA: its exit pair (where it has one)
        x1, y1 = pts.dx[exit_pt[same]], y_pts[exit_pt[same]]
    rate[same] = (y1 - y0[same]) / (x1 - x0[same])
    return rate, (pts.yref[s] - t0).astype(np.float64) + y0


def _piecewise_knots(pts: _Points, span: float, lo: float, hi: float) -> _Knots:
    """The knots of every SM's map (float cycles and ns from the SM's reference pair), where it has one.

    The SM's pairs are binned by globaltimer into bins ``span`` ns wide, counted from its first pair,
    and the pairs of each bin are averaged into a knot, skipping a knot that falls less than
    ``span / 2`` after the previous bin's.  Knots are therefore at least ``span / 2`` apart and each
    averages out part of the globaltimer's quantisation.  An SM gets a map only with at least
    two knots, increasing in both coordinates, and plausible rates on every segment.
    """
    order = pts.order
    s, x, y = pts.s[order], pts.dx[order], pts.dy[order]
    y_first = y[pts.starts][s]  # the SM's first (earliest) pair
    bin_ = np.floor((y - y_first) / span).astype(np.int64)
    new = _edges((s[1:] != s[:-1]) | (bin_[1:] != bin_[:-1]))
    g = np.cumsum(new) - 1
    c = np.bincount(g)
    kx, ky, ks = np.bincount(g, x) / c, np.bincount(g, y) / c, s[new]
    # a knot per bin, but none less than span/2 after the previous bin's: kept knots stay span/2 apart
    # (a dropped knot's successor lies in a later bin, at least a whole bin after the last kept one)
    keep = _edges((ks[1:] != ks[:-1]) | (ky[1:] - ky[:-1] >= span / 2))
    kx, ky, ks = kx[keep], ky[keep], ks[keep]
    ddx, ddy = np.diff(kx), np.diff(ky)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = ddy / ddx
    bad = (ks[1:] == ks[:-1]) & ((ddx <= 0) | (ddy <= 0) | (rate < lo) | (rate > hi))
    mapped = np.bincount(ks, minlength=pts.k) >= 2  # two knots or more, every segment fine
    mapped[ks[1:][bad]] = False
    sel = mapped[ks]
    sm = np.flatnonzero(mapped)
    count = np.bincount(ks[sel], minlength=pts.k)[sm]
    start = np.zeros(len(sm), np.int64)
    np.cumsum(count[:-1], out=start[1:])
    of_sm = np.full(pts.k, -1, np.int64)
    of_sm[sm] = np.arange(len(sm))
    return _Knots(sm, start, count, kx[sel], ky[sel], of_sm)


def _may_have_knots(pts: _Points, span: np.ndarray, knot_span: float) -> bool:
    """Whether any SM can get two knots (:func:`_piecewise_knots`): they lie ``knot_span / 2`` apart or
    more, and each is a mean of the SM's pairs, inside its span but for the rounding of the mean (at
    most ``pairs * 2**-53`` times the largest ``|dy|``, here taken twice over)."""
    rounding = len(pts.dy) * 2.3e-16 * float(np.abs(pts.dy).max())
    return bool((float(span.max()) + 2 * rounding) * (1 + 1e-12) >= knot_span / 2)


def _edges(change: np.ndarray) -> np.ndarray:
    """``np.r_[True, change]``: True where a run begins, given where each element differs from the one
    before (np.r_ costs more than the work here)."""
    out = np.empty(len(change) + 1, bool)
    out[0] = True
    out[1:] = change
    return out


def _run_starts(v: np.ndarray) -> np.ndarray:
    """Where a run of equal values in ``v`` begins (bool)."""
    return _edges(v[1:] != v[:-1])
