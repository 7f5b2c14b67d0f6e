"""All launches of a profile as the statistics tables read them, launch by launch.

:func:`frame` reads what is small once: the names (kernel, scope and role names become small integer
codes, :class:`Codes`, in the order the launches name them, so tables group with ``bincount`` over
integer keys and turn codes back into names only for their rows) and one row per CTA region of every
launch (SM, span, events).  The intervals -- one entry per scope interval with a time -- are never
copied into one flat table of all launches: :meth:`Frame.parts` gives them launch by launch as
:class:`Intervals`, columns in (CTA, warp, start) order as decoding leaves them, taken from the
launch's event columns by position (strided views, not copies, when every record pairs with the
next).  A table's working memory therefore follows one launch, not the length of the session; the
part of a one-launch profile is kept for the next table, those of longer profiles are rebuilt (cheap
next to the tables).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .interval_algebra import row_sweep
from .labels import kernel_name, warp_role_names
from .loading import as_launches


class Codes:
    """Strings -> small ints, in order of first appearance."""

    def __init__(self):
        self.names: list[str] = []
        self._index: dict[str, int] = {}

    def code(self, name: str) -> int:
        i = self._index.get(name)
        if i is None:
            i = self._index[name] = len(self.names)
            self.names.append(name)
        return i

    def array(self) -> np.ndarray:
        return np.array(self.names, dtype=object)

    def names_of(self, idx: np.ndarray) -> np.ndarray:
        """The names of the codes ``idx``, as a numpy string column."""
        return self.array()[idx].astype(str) if len(idx) else np.zeros(0, dtype="U1")


#: intervals per piece a table reads at a time (its temporaries stay small and in cache)
CHUNK = 1 << 18

ALL = slice(None)


def pieces(n: int, size: int | None = None) -> Iterator[slice]:
    """``slice(0, size), slice(size, 2 * size), ...`` over ``n`` items (``size``: :data:`CHUNK`)."""
    size = size or CHUNK
    for a in range(0, n, size):
        yield slice(a, min(a + size, n))


def repeat_runs(offsets: np.ndarray, per_run: np.ndarray, sl: slice = ALL) -> np.ndarray:
    """``np.repeat(per_run, np.diff(offsets))[sl]`` without building the whole repeat."""
    a, b, _ = sl.indices(int(offsets[-1]) if len(offsets) else 0)
    r0 = max(int(np.searchsorted(offsets, a, side="right")) - 1, 0)
    r1 = int(np.searchsorted(offsets, b, side="left"))
    return np.repeat(per_run[r0:r1], np.diff(np.clip(offsets[r0 : r1 + 1], a, b)))


def _take(column: np.ndarray, pos: np.ndarray | slice, sl: slice) -> np.ndarray:
    """``column[pos][sl]``: a view when ``pos`` is a slice, a gather of the part asked for otherwise."""
    return column[pos][sl] if isinstance(pos, slice) else column[pos[sl]]


@dataclasses.dataclass(eq=False)
class Intervals:
    """One launch's intervals that have a time, in (CTA, warp, start seq) order.

    Per interval: ``scope`` (scope-name code), ``depth``, ``start_ns``, ``end_ns``.  They come in runs,
    one per warp with intervals: ``run[i]:run[i + 1]`` are run ``i``'s, in program (= start) order;
    per run its CTA (``run_cta``: row of the frame's CTA columns), warp and role code.  Tables read
    them in pieces (``sl``, :func:`pieces`), so no column of the launch's length is ever computed
    whole; what they share (the top-level intervals, the walk through each CTA) is kept in ``memo``.
    """

    li: int
    scope: np.ndarray
    depth: np.ndarray | None  # None: every interval is top-level (depth 0)
    start_ns: np.ndarray
    end_ns: np.ndarray
    run: np.ndarray
    run_cta: np.ndarray
    run_warp: np.ndarray
    run_role: np.ndarray
    cycles: tuple | None  # (cycles column, start positions, end positions); None: globaltimer
    points: Callable[[], tuple]  # the intervals' start and end points per CTA, for row_sweep
    codes: np.ndarray  # the scope codes of the intervals, sorted
    memo: dict = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.start_ns)

    def cached(self, key: str, fn: Callable[[], Any]) -> Any:
        if key not in self.memo:
            self.memo[key] = fn()
        return self.memo[key]

    @property
    def run_len(self) -> np.ndarray:
        return np.diff(self.run)

    def per_interval(self, per_run: np.ndarray, sl: slice = ALL) -> np.ndarray:
        """A per-run value for each interval (of the piece ``sl``)."""
        return repeat_runs(self.run, per_run, sl)

    def dur_ns(self, sl: slice = ALL) -> np.ndarray:
        return self.end_ns[sl] - self.start_ns[sl]

    def dur_cycles(self, sl: slice = ALL) -> np.ndarray:
        """Durations in SM cycles (float64; NaN for ``clock="globaltimer"`` launches)."""
        if self.cycles is None:
            return np.full(len(range(*sl.indices(len(self)))), np.nan)
        cyc, s_pos, e_pos = self.cycles
        return (_take(cyc, e_pos, sl) - _take(cyc, s_pos, sl)).astype(np.float64)

    def sweep(self, cover: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(CTA rows, busy time of each: the union of its intervals; overlap matrix between the scopes
        present, their codes) from one walk through every CTA's interval start and end points in time
        order (:func:`~kperf.tracing.interval_algebra.row_sweep`); the matrix only when ``cover``."""
        if "sweep_cover" in self.memo:
            return self.memo["sweep_cover"]
        if not cover and "sweep_busy" in self.memo:
            return self.memo["sweep_busy"]
        first, rows, time, is_end, scope = self.points()
        if not cover:
            busy, _ = row_sweep(first, time, is_end)
            return self.cached("sweep_busy", lambda: (rows, busy, None, None))
        codes = self.codes  # the scope codes present: the matrix's rows
        local = np.zeros(int(codes.max()) + 1 if len(codes) else 1, np.int16)
        local[codes] = np.arange(len(codes))
        busy, mat = row_sweep(first, time, is_end, scope, local)
        return self.cached("sweep_cover", lambda: (rows, busy, mat, codes))

    def top(self) -> tuple[np.ndarray | None, np.ndarray]:
        """The top-level (depth 0) intervals in (CTA, warp, start time) order: (their indices, None when
        every interval is top-level; how many each run holds)."""
        return self.cached("top", self._top)

    def _top(self) -> tuple[np.ndarray | None, np.ndarray]:
        top0 = None if self.depth is None else self.depth == 0
        if top0 is None or top0.all():
            top, per_run = None, self.run_len
        else:
            top = np.flatnonzero(top0)
            per_run = np.add.reduceat(top0.astype(np.int64), self.run[:-1]) if len(self.run) > 1 \
                else np.zeros(0, np.int64)
        s = self.start_ns if top is None else self.start_ns[top]
        if len(s) < 2:
            return top, per_run
        inner = np.ones(len(s) - 1, bool)  # pairs of neighbours within one run
        inner[(np.cumsum(per_run)[per_run > 0] - 1)[:-1]] = False
        if bool((s[1:] >= s[:-1])[inner].all()):  # decoded launches: times rise within a warp
            return top, per_run
        run_of = np.repeat(np.arange(len(per_run)), per_run)  # a saved table whose times do not:
        idx = np.arange(len(self)) if top is None else top  # sort them, stably, as before
        return idx[np.lexsort((s, run_of))], per_run


@dataclasses.dataclass(eq=False)
class Frame:
    """A profile's launches, its names as codes, and one row per CTA region of every launch."""

    launches: list
    kernels: Codes
    scopes: Codes
    roles: Codes
    kernel_of: np.ndarray  # kernel code of each launch
    # one entry per CTA region of every launch; launch li's rows are c_first[li]:c_first[li + 1]
    c_li: np.ndarray
    c_kernel: np.ndarray
    c_cta: np.ndarray
    c_sm: np.ndarray
    c_ok: np.ndarray  # ran, with a good header and finite start/end
    c_start: np.ndarray
    c_end: np.ndarray
    c_events: np.ndarray
    c_first: np.ndarray
    declared: set  # (kernel code, scope code) of every scope in the launches' scope tables
    dropped: int  # intervals left out for lack of a time (no clock rate)
    n_intervals: int  # intervals with a time, all launches
    scope_luts: list  # per launch: scope id -> scope code
    scope_codes: list  # per launch: the scope codes of its intervals, sorted
    role_luts: list  # per launch: warp -> role code
    memo: dict = dataclasses.field(default_factory=dict)
    sweep_cover: bool = False  # the overlap table will be asked for: one walk per CTA serves both

    def parts(self) -> Iterator[Intervals]:
        """Each launch's :class:`Intervals`, in launch order (a one-launch profile's is kept)."""
        for li in range(len(self.launches)):
            if len(self.launches) == 1:
                yield self.cached("part", lambda li=li: self._part(li))
            else:
                yield self._part(li)

    def cached(self, key, fn: Callable[[], Any]) -> Any:
        if key not in self.memo:
            self.memo[key] = fn()
        return self.memo[key]

    def cta_busy(self) -> tuple[np.ndarray, np.ndarray]:
        """Per CTA row: the time some scope covered on at least one of its warps (the union of its
        intervals), and its number of intervals."""
        def compute():
            busy, n_iv = np.zeros(len(self.c_ok)), np.zeros(len(self.c_ok), np.int64)
            for part in self.parts():
                rows, b, _, _ = part.sweep(self.sweep_cover)
                busy[rows] = b
                n_iv += np.bincount(part.run_cta, weights=part.run_len, minlength=len(n_iv)).astype(np.int64)
            return busy, n_iv
        return self.cached("cta_busy", compute)

    def one_kernel(self) -> Frame:
        """This frame with all its kernels as one (named ``"a+b"``), so tables group by scope or role
        only; launch parts already built are shared."""
        one = Codes()
        one.code("+".join(self.kernels.names) if self.kernels.names else "kernel")
        return dataclasses.replace(self, kernels=one, kernel_of=np.zeros_like(self.kernel_of),
                                   c_kernel=np.zeros_like(self.c_kernel),
                                   declared={(0, s) for _, s in self.declared},
                                   memo={k: v for k, v in self.memo.items() if k == "part"})

    def _part(self, li: int) -> Intervals:
        return _launch_intervals(self.launches[li], li, int(self.c_first[li]), self.scope_luts[li],
                                 self.role_luts[li], self.scope_codes[li])


def frame(profile: Any) -> Frame:
    """The :class:`Frame` of a profile (accepts what :func:`as_launches` accepts, or a Frame)."""
    if isinstance(profile, Frame):
        return profile
    launches = as_launches(profile)
    kernels, scopes, roles = Codes(), Codes(), Codes()
    cta_parts: dict[str, list] = {k: [] for k in ("c_li", "c_kernel", "c_cta", "c_sm", "c_ok", "c_start",
                                                  "c_end", "c_events")}
    declared, kernel_of, scope_luts, role_luts, scope_codes = set(), [], [], [], []
    dropped = n_intervals = 0
    c_first = [0]
    for i, d in enumerate(launches):
        kc = kernels.code(kernel_name(d))
        kernel_of.append(kc)
        names = dict(d.scopes or {})
        for nm in names.values():
            declared.add((kc, scopes.code(nm)))
        ids, warps, n_ok, n_bad = _interval_ids(d)
        dropped += n_bad
        n_intervals += n_ok
        lut = np.zeros(int(ids.max()) + 1 if len(ids) else 1, np.int32)
        for sid in ids.tolist():  # a loop over the scope ids present
            lut[sid] = scopes.code(names.get(sid, f"scope {sid}"))
        scope_luts.append(lut)
        scope_codes.append(np.array(sorted(set(lut[ids].tolist())), np.int64))
        W = int(d.geometry.num_warps)
        wroles = warp_role_names(d, max(W, warps))
        role_luts.append(np.array([roles.code(r) for r in wroles], np.int64))
        cols = _cta_columns(d)
        cols.update(c_li=np.full(len(cols["c_cta"]), i, np.int64), c_kernel=np.full(len(cols["c_cta"]), kc,
                                                                                    np.int64))
        for k, v in cols.items():
            cta_parts[k].append(v)
        c_first.append(c_first[-1] + len(cols["c_cta"]))
    cat = {k: (np.concatenate(v) if v else np.zeros(0, bool if k == "c_ok" else
                                                    np.float64 if k in ("c_start", "c_end") else np.int64))
           for k, v in cta_parts.items()}
    return Frame(launches=launches, kernels=kernels, scopes=scopes, roles=roles,
                 kernel_of=np.array(kernel_of, np.int64), c_first=np.array(c_first, np.int64),
                 declared=declared, dropped=dropped, n_intervals=n_intervals, scope_luts=scope_luts,
                 scope_codes=scope_codes, role_luts=role_luts, **cat)


def _pair_columns(d) -> tuple[np.ndarray, np.ndarray, np.ndarray | slice, np.ndarray | slice]:
    """(start_ns, end_ns, start positions, end positions) of a launch's intervals: strided views and
    slices when every event pairs with the next, else gathers."""
    p, t = d.pairs(), d.columns["time_ns"]
    if p.adjacent:
        return t[0::2], t[1::2], slice(0, None, 2), slice(1, None, 2)
    return t[p.start], t[p.end], p.start, p.end


def _interval_ids(d) -> tuple[np.ndarray, int, int, int]:
    """(scope ids present among the intervals with a time, warps to name (max warp + 1), intervals with
    a time, intervals without)."""
    cols = d.columns
    if not len(d.pairs()):
        return np.zeros(0, np.int64), 0, 0, 0
    p = d.pairs()
    sc = cols["scope"][0::2] if p.adjacent else cols["scope"][p.start]
    if not np.isfinite(cols["time_ns"]).all():  # a launch without a clock rate: intervals with times
        s_ns, e_ns, _, _ = _pair_columns(d)
        sc = sc[np.isfinite(s_ns) & np.isfinite(e_ns)]
    counts = np.zeros(1, np.int64)
    for sl in pieces(len(sc)):  # bincount converts to intp: in pieces, that copy stays small
        c = np.bincount(sc[sl])
        counts = np.r_[counts, np.zeros(max(len(c) - len(counts), 0), np.int64)]
        counts[: len(c)] += c
    ids = np.flatnonzero(counts)
    warps = int(cols.seg["warp"].max()) + 1 if len(sc) else 0
    n_ok = len(sc)
    return ids, warps, n_ok, len(d.pairs()) - n_ok


def _launch_intervals(d, li: int, cta_base: int, lut: np.ndarray, rlut: np.ndarray,
                      codes: np.ndarray) -> Intervals:
    """A launch's intervals with a time as an :class:`Intervals` part."""
    cols, p = d.columns, d.pairs()
    s_ns, e_ns, s_pos, e_pos = _pair_columns(d)
    scope, depth = cols["scope"][s_pos], None if p.adjacent else p.depth  # None: all 0
    # intervals per segment (warp): starts are increasing, so one search per segment
    if not len(p):
        per_seg = np.zeros(cols.n_segments, np.int64)
    else:
        per_seg = cols.seg["n"] // 2 if p.adjacent else np.diff(np.searchsorted(p.start, cols.start))
    seg = np.flatnonzero(per_seg)
    counts = per_seg[seg]
    ok = None if np.isfinite(cols["time_ns"]).all() else np.isfinite(s_ns) & np.isfinite(e_ns)
    if ok is not None:  # a launch without a clock rate: keep the intervals that have times
        keep = np.flatnonzero(ok)
        s_pos, e_pos = p.start[keep], p.end[keep]
        s_ns, e_ns, scope, depth = s_ns[keep], e_ns[keep], scope[keep], p.depth[keep]
        run_of = np.repeat(np.arange(len(seg)), counts)[keep]
        counts = np.bincount(run_of, minlength=len(seg))
        seg, counts = seg[counts > 0], counts[counts > 0]
    run = np.zeros(len(seg) + 1, np.int64)
    np.cumsum(counts, out=run[1:])
    identity = len(lut) <= 1 << 16 and bool((lut == np.arange(len(lut))).all())
    code = scope if identity else lut[scope]
    warp = cols.seg["warp"][seg]
    cycles = None if d.geometry.clock == "globaltimer" else (cols["cycles"], s_pos, e_pos)
    return Intervals(li=li, scope=code, depth=depth, start_ns=s_ns, end_ns=e_ns, run=run,
                     run_cta=cta_base + cols.seg["cta"][seg], run_warp=warp, run_role=rlut[warp],
                     cycles=cycles, points=lambda: _sweep_points(d, cta_base, None if identity else lut),
                     codes=codes)


def _sweep_points(d, cta_base: int, lut: np.ndarray | None) -> tuple:
    """(offsets, CTA row, time, is_end, scope code) of the start and end points of a launch's intervals
    with a time, grouped by CTA, each warp's in program (= time) order: the events themselves, less
    those that found no partner (views when every event pairs with its neighbour)."""
    cols, p = d.columns, d.pairs()
    t = cols["time_ns"]
    keep = None
    if not p.adjacent:
        keep = np.ones(len(cols), bool)
        keep[p.unmatched] = False
    if not np.isfinite(t).all():
        keep = np.isfinite(t) if keep is None else keep & np.isfinite(t)
    idx: np.ndarray | slice = slice(None)
    per_seg = cols.seg["n"]
    if keep is not None:
        idx = np.flatnonzero(keep)
        per_seg = np.add.reduceat(keep.astype(np.int64), cols.start[:-1]) if cols.n_segments else per_seg
    seg_cta = cols.seg["cta"]
    new_cta = np.flatnonzero(np.r_[True, seg_cta[1:] != seg_cta[:-1]]) if len(seg_cta) \
        else np.zeros(0, np.int64)
    seg_first = np.r_[0, np.cumsum(per_seg)]
    first = seg_first[np.r_[new_cta, len(seg_cta)]]
    has = np.diff(first) > 0
    first = np.r_[first[:-1][has], first[-1]]
    sc = cols["scope"][idx]
    sc = sc if lut is None else lut[sc]
    return first, cta_base + seg_cta[new_cta][has], t[idx], cols["is_end"][idx], sc


def _cta_columns(d) -> dict[str, np.ndarray]:
    """A launch's CTA regions as frame columns (without launch and kernel)."""
    c = d.ctas
    start, end = cta_bounds(d)
    return {"c_cta": c["cta"].astype(np.int64), "c_sm": c["sm"].astype(np.int64),
            "c_ok": c["ok"] & np.isfinite(start) & np.isfinite(end), "c_start": start, "c_end": end,
            "c_events": c["n_events"].astype(np.int64)}


def cta_bounds(d) -> tuple[np.ndarray, np.ndarray]:
    """(start_ns, end_ns) of every CTA of a launch on its ns axis; NaN for CTAs that did not run.

    Start is the CTA's entry (header); end its exit (header) when the exit pair is valid, else its
    last event (or its start when it has none).  Events earlier/later than these extend them.
    """
    c = d.ctas
    start = np.where(c["ok"], c["offset_ns"], np.nan).astype(np.float64)
    if d.geometry.clock == "globaltimer":
        d_end = c["gtime_end"].astype(np.int64) - c["gtime_start"].astype(np.int64)
    else:
        d_end = c["clock_end"].astype(np.int64) - c["clock_start"].astype(np.int64)
    end = np.where(c["end_ok"], start + c["ns_per_cycle"] * d_end, np.nan)
    lo = np.full(len(c), np.inf)
    hi = np.full(len(c), -np.inf)
    cols = d.columns
    seg = np.flatnonzero(cols.seg["n"] > 0)
    if len(seg):  # every event is an interval's start or end or unmatched: their extremes per warp
        t = cols["time_ns"]
        first = cols.start[seg]
        cta = cols.seg["cta"][seg]
        np.fmin.at(lo, cta, np.fmin.reduceat(t, first))
        np.fmax.at(hi, cta, np.fmax.reduceat(t, first))
    has = np.isfinite(lo) & c["ok"]
    start = np.where(has, np.fmin(start, lo), start)
    end = np.where(has & np.isfinite(hi), np.fmax(end, hi), end)
    end = np.where(c["ok"] & ~np.isfinite(end), start, end)
    return start, end
