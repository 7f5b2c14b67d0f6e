"""Statistics over decoded launches: scopes, warp roles, CTA spans, overlap, bubbles, load imbalance.

Every function takes one :class:`~kperf.tracing.decode.DecodedLaunch`, a list of them (e.g. from
:func:`kperf.tracing.saved.load_profile`) or a ``kperf.Profile``, and returns a :class:`Table`
(columns of numpy arrays) that prints as aligned text, writes CSV (``to_csv``) and turns into a
pandas DataFrame (``to_pandas``, when pandas is installed).  :func:`report` gathers all tables.

Work is vectorised over intervals with numpy (sorts, ``bincount``, ``searchsorted``); Python loops
run over launches, scopes and table rows only.  What each number means: ``docs/statistics.md``.

Units: columns ending in ``_ns`` are nanoseconds on the launch's axis (``DecodedLaunch.t0_ns`` is 0),
``_cycles`` SM clock cycles (NaN for ``clock="globaltimer"`` launches, which record no cycles),
``_frac`` a fraction in [0, 1].

Names used in the tables:
  kernel  the launch's kernel name (``DecodedLaunch.kernel_name`` or ``.kernel`` when present, else
          ``"kernel"``);
  role    the warp's role (``DecodedLaunch.warp_roles``: one string per warp index, or a mapping
          warp -> string, e.g. ``"producer"``/``"consumer"`` in a warp-specialised kernel); without
          roles every warp is in the role ``"all warps"``.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kperf.dialect.errors import KperfError

ALL_WARPS = "all warps"
CTA_START = "(CTA start)"
CTA_END = "(CTA end)"
_UNITS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


# --------------------------------------------------------------------------- tables


@dataclasses.dataclass
class Table:
    """A named table: equal-length numpy columns, printable, exportable.

    Attributes:
        name: short identifier (the CSV file stem, e.g. ``"scopes"``).
        title: a line shown above the text table.
        columns: ``{column name: 1-D numpy array}`` in display order.
        notes: lines shown under the text table (caveats, dropped data).
    """

    name: str
    title: str
    columns: dict[str, np.ndarray]
    notes: list[str] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, column: str) -> np.ndarray:
        return self.columns[column]

    def rows(self) -> list[dict[str, Any]]:
        """The rows as dicts of Python values (for JSON, tests, small tables)."""
        cols = {k: v.tolist() for k, v in self.columns.items()}
        return [{k: cols[k][i] for k in cols} for i in range(len(self))]

    def where(self, **match) -> list[dict[str, Any]]:
        """Rows whose columns equal the given values, e.g. ``t.where(scope="mma")``."""
        return [r for r in self.rows() if all(r[k] == v for k, v in match.items())]

    def select(self, mask: np.ndarray) -> "Table":
        return Table(self.name, self.title, {k: v[mask] for k, v in self.columns.items()}, list(self.notes))

    def to_csv(self, path: str | os.PathLike) -> str:
        """Write the table as CSV (raw values: ns, cycles, fractions; NaN as empty)."""
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        cols = {k: v.tolist() for k, v in self.columns.items()}
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(list(cols))
            for i in range(len(self)):
                w.writerow(["" if isinstance(cols[k][i], float) and cols[k][i] != cols[k][i] else cols[k][i]
                            for k in cols])
        return str(path)

    def to_pandas(self):
        """A ``pandas.DataFrame`` of the columns (pandas is optional: ``pip install pandas``)."""
        try:
            import pandas as pd
        except ImportError as e:
            raise KperfError("pandas is not installed", fix="pip install pandas (or use to_csv())") from e
        return pd.DataFrame({k: v for k, v in self.columns.items()})

    def to_text(self, time_unit: str = "us", max_rows: int | None = None) -> str:
        """Aligned text: ``_ns`` columns in ``time_unit``, ``_frac`` columns as percent."""
        if time_unit not in _UNITS:
            raise KperfError(f"unknown time unit {time_unit!r}", fix=f"use one of {', '.join(_UNITS)}")
        u = _UNITS[time_unit]
        heads, cells, right = [], [], []
        n = len(self) if max_rows is None else min(len(self), max_rows)
        for name, col in self.columns.items():
            col = col[:n]
            if name.endswith("_ns"):
                heads.append(name[:-3] + f"_{time_unit}")
                cells.append([_fmt_float(x / u, 3) for x in col.tolist()])
            elif name.endswith("_frac"):
                heads.append(name[:-5] + " %")
                cells.append([_fmt_float(100 * x, 1) for x in col.tolist()])
            elif col.dtype.kind == "f":
                heads.append(name)
                cells.append([_fmt_float(x, 3 if name.endswith("ghz") else 2 if name.endswith(
                    ("_over_mean", "_cv", "waves")) or name.startswith("value") else 1)
                              for x in col.tolist()])
            else:
                heads.append(name)
                cells.append([str(x) for x in col.tolist()])
            right.append(col.dtype.kind in "fiub")
        widths = [max([len(h)] + [len(c) for c in cs]) for h, cs in zip(heads, cells)]
        def line(parts):
            return "  ".join(p.rjust(w) if r else p.ljust(w) for p, w, r in zip(parts, widths, right)).rstrip()
        out = [self.title, line(heads), "-" * (sum(widths) + 2 * (len(widths) - 1))]
        out += [line([c[i] for c in cells]) for i in range(n)]
        if n < len(self):
            out.append(f"... {len(self) - n} more rows (to_csv() writes all)")
        if not len(self):
            out.append("(no rows)")
        out += [f"note: {x}" for x in self.notes]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.to_text()


def _fmt_float(x: float, digits: int) -> str:
    if x != x:
        return "-"
    return f"{x:,.{digits}f}"


# --------------------------------------------------------------------------- gathering launches


def load_profile_file(path: str | os.PathLike) -> list:
    """The launches of a saved kperf profile (:func:`kperf.tracing.saved.load_profile`)."""
    from kperf.tracing.saved import load_profile
    if not pathlib.Path(path).is_file():
        raise KperfError(f"no profile file at {path}",
                         fix="give the path of a profile saved by `kperf run` or Profile.save()")
    return list(load_profile(path))


def as_launches(profile: Any) -> list:
    """A list of DecodedLaunch from a DecodedLaunch, a list of them, a ``kperf.Profile`` or the path of
    a saved profile."""
    if isinstance(profile, (str, os.PathLike)):
        return load_profile_file(profile)
    if hasattr(profile, "events") and hasattr(profile, "ctas") and hasattr(profile, "intervals"):
        return [profile]
    if hasattr(profile, "decoded") and callable(profile.decoded):
        return list(profile.decoded())
    launches = list(profile)
    for d in launches:
        if not (hasattr(d, "events") and hasattr(d, "ctas")):
            raise KperfError(f"expected decoded launches (kperf.tracing.DecodedLaunch), got {type(d).__name__}",
                             fix="pass kperf.tracing.saved.load_profile(path) or a kperf.Profile")
    return launches


def kernel_name(d) -> str:
    """The kernel name a launch carries (``kernel_name`` or ``kernel`` attribute), else ``"kernel"``."""
    for attr in ("kernel_name", "kernel"):
        v = getattr(d, attr, None)
        if isinstance(v, str) and v:
            return v
        if v is not None and isinstance(getattr(v, "name", None), str):
            return v.name
    return "kernel"


def warp_role_names(d, num_warps: int) -> list[str]:
    """One role name per warp index: from ``d.warp_roles`` (sequence or mapping) or ``"all warps"``."""
    roles = getattr(d, "warp_roles", None)
    if roles is None:
        return [ALL_WARPS] * num_warps
    if isinstance(roles, Mapping):
        table = {int(k): str(v) for k, v in roles.items()}
    else:
        table = {i: str(v) for i, v in enumerate(roles)}
    return [table.get(w, f"warp {w}") for w in range(num_warps)]


class _Codes:
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


@dataclasses.dataclass
class Frame:
    """All launches' intervals and CTAs in flat arrays with integer codes (built once, shared)."""

    launches: list
    kernels: _Codes
    scopes: _Codes
    roles: _Codes
    # one entry per interval with finite times
    li: np.ndarray  # launch index (position in ``launches``)
    kernel: np.ndarray  # kernel code
    gcta: np.ndarray  # global CTA row (index into the c_* arrays)
    warp: np.ndarray
    gwarp: np.ndarray  # global warp number: gcta * max_warps + warp
    scope: np.ndarray  # scope-name code
    role: np.ndarray  # role code
    depth: np.ndarray
    start_ns: np.ndarray
    end_ns: np.ndarray
    dur_cycles: np.ndarray  # NaN for globaltimer launches
    # one entry per CTA region of every launch
    c_li: np.ndarray
    c_kernel: np.ndarray
    c_cta: np.ndarray
    c_sm: np.ndarray
    c_ok: np.ndarray  # ran, with a good header and finite start/end
    c_start: np.ndarray
    c_end: np.ndarray
    c_events: np.ndarray
    declared: set  # (kernel code, scope code) of every scope in the launches' scope tables
    dropped: int  # intervals left out for lack of a time (no clock rate)

    @property
    def dur_ns(self) -> np.ndarray:
        return self.end_ns - self.start_ns


def frame(profile: Any) -> Frame:
    """Flatten launches into a :class:`Frame` (accepts what :func:`as_launches` accepts, or a Frame)."""
    if isinstance(profile, Frame):
        return profile
    launches = as_launches(profile)
    kernels, scopes, roles = _Codes(), _Codes(), _Codes()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (
        "li", "kernel", "gcta", "warp", "scope", "role", "depth", "start_ns", "end_ns", "dur_cycles",
        "c_li", "c_kernel", "c_cta", "c_sm", "c_ok", "c_start", "c_end", "c_events")}
    declared = set()
    dropped = 0
    cta_base = 0
    max_warps = max([int(d.geometry.num_warps) for d in launches] + [1])
    for i, d in enumerate(launches):
        kc = kernels.code(kernel_name(d))
        names = dict(d.scopes or {})
        for sid, nm in names.items():
            declared.add((kc, scopes.code(nm)))
        iv, _ = d.intervals()
        ok_t = np.isfinite(iv["start_ns"]) & np.isfinite(iv["end_ns"])
        dropped += int((~ok_t).sum())
        iv = iv[ok_t]
        # scope id -> name code, built over the (few) ids present
        ids = np.unique(iv["scope"]).astype(np.int64)
        lut = np.zeros(int(ids.max()) + 1 if len(ids) else 1, np.int64)
        for sid in ids.tolist():
            lut[sid] = scopes.code(names.get(sid, f"scope {sid}"))
        W = int(d.geometry.num_warps)
        wroles = warp_role_names(d, max(W, int(iv["warp"].max()) + 1 if len(iv) else W))
        rlut = np.array([roles.code(r) for r in wroles], np.int64)
        n = len(iv)
        parts["li"].append(np.full(n, i, np.int64))
        parts["kernel"].append(np.full(n, kc, np.int64))
        parts["gcta"].append(cta_base + iv["cta"].astype(np.int64))
        parts["warp"].append(iv["warp"].astype(np.int64))
        parts["scope"].append(lut[iv["scope"].astype(np.int64)])
        parts["role"].append(rlut[iv["warp"].astype(np.int64)])
        parts["depth"].append(iv["depth"].astype(np.int64))
        parts["start_ns"].append(iv["start_ns"].astype(np.float64))
        parts["end_ns"].append(iv["end_ns"].astype(np.float64))
        cyc = (iv["end_cycles"] - iv["start_cycles"]).astype(np.float64)
        parts["dur_cycles"].append(np.full(n, np.nan) if d.geometry.clock == "globaltimer" else cyc)
        # CTAs
        c = d.ctas
        m = len(c)
        start, end = cta_bounds(d)
        parts["c_li"].append(np.full(m, i, np.int64))
        parts["c_kernel"].append(np.full(m, kc, np.int64))
        parts["c_cta"].append(c["cta"].astype(np.int64))
        parts["c_sm"].append(c["sm"].astype(np.int64))
        parts["c_ok"].append(c["ok"] & np.isfinite(start) & np.isfinite(end))
        parts["c_start"].append(start)
        parts["c_end"].append(end)
        parts["c_events"].append(c["n_events"].astype(np.int64))
        cta_base += m
    cat = {k: (v[0] if len(v) == 1 else np.concatenate(v) if v else
               np.zeros(0, np.float64 if k.endswith(("_ns", "cycles", "start", "end")) else np.int64))
           for k, v in parts.items()}
    if not len(cat["c_ok"]):
        cat["c_ok"] = np.zeros(0, bool)
    gwarp = cat["gcta"] * max_warps + cat["warp"]
    return Frame(launches=launches, kernels=kernels, scopes=scopes, roles=roles, gwarp=gwarp,
                 declared=declared, dropped=dropped, **cat)


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
    iv, un = d.intervals()
    if len(iv):  # intervals come sorted by CTA: reduce over each CTA's run
        cta = iv["cta"].astype(np.int64)
        first = np.flatnonzero(np.r_[True, cta[1:] != cta[:-1]])
        lo[cta[first]] = np.fmin.reduceat(iv["start_ns"], first)
        hi[cta[first]] = np.fmax.reduceat(iv["end_ns"], first)
    if len(un):
        t = un["time_ns"]
        fin = np.isfinite(t)
        np.fmin.at(lo, un["cta"][fin].astype(np.int64), t[fin])
        np.fmax.at(hi, un["cta"][fin].astype(np.int64), t[fin])
    has = np.isfinite(lo) & c["ok"]
    start = np.where(has, np.fmin(start, lo), start)
    end = np.where(has & np.isfinite(hi), np.fmax(end, hi), end)
    end = np.where(c["ok"] & ~np.isfinite(end), start, end)
    return start, end


# --------------------------------------------------------------------------- vectorised helpers


def group_summary(gid: np.ndarray, n: int, x: np.ndarray) -> dict[str, np.ndarray]:
    """count, total, mean, p50, p95, max of ``x`` per group id in ``[0, n)`` (NaN for empty groups).

    Percentiles interpolate linearly between order statistics, as ``np.percentile``'s default.
    NaN values of ``x`` are left out.
    """
    keep = ~np.isnan(x)
    if not keep.all():
        gid, x = gid[keep], x[keep]
    order = np.lexsort((x, gid))
    xs = x[order]
    cnt = np.bincount(gid, minlength=n).astype(np.int64)
    first = np.cumsum(cnt) - cnt
    total = np.bincount(gid, weights=x, minlength=n).astype(np.float64)
    has = cnt > 0
    out = {"count": cnt, "total": np.where(has, total, 0.0)}
    with np.errstate(invalid="ignore", divide="ignore"):
        out["mean"] = np.where(has, total / np.maximum(cnt, 1), np.nan)
    for q, name in ((0.5, "p50"), (0.95, "p95"), (1.0, "max")):
        pos = (cnt - 1) * q
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, cnt - 1)
        frac = pos - lo
        a = xs[np.clip(first + lo, 0, max(len(xs) - 1, 0))] if len(xs) else np.zeros(n)
        b = xs[np.clip(first + hi, 0, max(len(xs) - 1, 0))] if len(xs) else np.zeros(n)
        out[name] = np.where(has, a + (b - a) * frac, np.nan)
    return out


def union(gid: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge intervals per group into disjoint segments: (seg_gid, seg_start, seg_end), sorted."""
    if len(gid) == 0:
        return gid[:0].astype(np.int64), start[:0].astype(np.float64), end[:0].astype(np.float64)
    order = np.lexsort((start, gid))
    g, s, e = gid[order].astype(np.int64), start[order].astype(np.float64), end[order].astype(np.float64)
    e = np.maximum(e, s)
    # running max of the ends within a group: shift each group above the previous one's range
    lo = float(s.min())
    span = float(e.max()) - lo + 1.0
    shifted = (e - lo) + g * span
    run = np.maximum.accumulate(shifted)
    new = np.ones(len(g), bool)
    new[1:] = (g[1:] != g[:-1]) | ((s[1:] - lo) + g[1:] * span > run[:-1])
    first = np.flatnonzero(new)
    return g[first], s[first], np.maximum.reduceat(e, first)


def covered(seg_gid, seg_start, seg_end, gid, a, b) -> np.ndarray:
    """Length of each ``[a, b]`` (group ``gid``) covered by the disjoint sorted segments of its group."""
    out = np.zeros(len(gid), np.float64)
    if len(seg_gid) == 0 or len(gid) == 0:
        return out
    lo = min(float(seg_start.min()), float(np.min(a)))
    span = max(float(seg_end.max()), float(np.max(b))) - lo + 1.0
    key = (seg_start - lo) + seg_gid * span
    length = seg_end - seg_start
    prefix = np.concatenate([[0.0], np.cumsum(length)])
    g = gid.astype(np.int64)
    n_groups = int(max(seg_gid[-1], g.max())) + 1
    first_seg = np.searchsorted(seg_gid, np.arange(n_groups), side="left")
    base = prefix[first_seg][g]  # length of the earlier groups' segments

    def upto(t):  # measure of the group's segments in (-inf, t]
        i = np.searchsorted(key, (t - lo) + g * span, side="right") - 1
        ic = np.maximum(i, 0)
        mine = (i >= 0) & (seg_gid[ic] == g)
        inside = np.clip(t - seg_start[ic], 0.0, length[ic])
        return np.where(mine, prefix[ic] - base + inside, 0.0)

    return np.maximum(upto(b) - upto(a), 0.0)


def _names(codes: _Codes, idx: np.ndarray) -> np.ndarray:
    arr = codes.array()
    return arr[idx].astype(str) if len(idx) else np.zeros(0, dtype="U1")


# --------------------------------------------------------------------------- the tables


def scope_stats(profile: Any, *, by: str = "scope") -> Table:
    """Duration statistics per scope (``by="scope"``) or per warp role and scope (``by="role"``).

    Columns: kernel, [role,] scope, count, total/mean/p50/p95/max in ns and in cycles, and ``share``:
    the scope's total as a fraction of all intervals' total in the same kernel (nested scopes count
    in their parents too, so shares can add up to more than 1).  Scopes of the scope table that never
    ran are listed with count 0 (``by="scope"``).
    """
    if by not in ("scope", "role"):
        raise KperfError(f"scope_stats(by={by!r})", fix="use by='scope' or by='role'")
    f = frame(profile)
    S, R = len(f.scopes.names), max(len(f.roles.names), 1)
    key = f.kernel * S + f.scope
    if by == "role":
        key = (f.kernel * R + f.role) * S + f.scope
    n = len(f.kernels.names) * S * (R if by == "role" else 1)
    ns = group_summary(key, n, f.dur_ns)
    cy = group_summary(key, n, f.dur_cycles)
    present = ns["count"] > 0
    if by == "scope":
        for kc, sc in f.declared:
            present[kc * S + sc] = True
    rows = np.flatnonzero(present)
    kern = rows // (S * (R if by == "role" else 1))
    role = (rows // S) % R
    scope = rows % S
    ktotal = np.bincount(f.kernel, weights=f.dur_ns, minlength=len(f.kernels.names))
    with np.errstate(invalid="ignore", divide="ignore"):
        share = ns["total"][rows] / ktotal[kern]
    order = np.lexsort((-ns["total"][rows], role, kern)) if by == "role" else np.lexsort((-ns["total"][rows], kern))
    rows, kern, role, scope, share = rows[order], kern[order], role[order], scope[order], share[order]
    cols = {"kernel": _names(f.kernels, kern)}
    if by == "role":
        cols["role"] = _names(f.roles, role)
    cols["scope"] = _names(f.scopes, scope)
    cols["count"] = ns["count"][rows]
    for k in ("total", "mean", "p50", "p95", "max"):
        cols[f"{k}_ns"] = ns[k][rows]
    cols["share_frac"] = share
    for k in ("total", "mean", "p50", "p95", "max"):
        cols[f"{k}_cycles"] = cy[k][rows]
    notes = []
    if f.dropped:
        notes.append(f"{f.dropped} intervals without a time (no clock rate) are left out")
    title = "Scopes" if by == "scope" else "Scopes per warp role"
    return Table("scopes" if by == "scope" else "roles", title, cols, notes)


def role_stats(profile: Any) -> Table:
    """:func:`scope_stats` per warp role and scope."""
    return scope_stats(profile, by="role")


def cta_spans(profile: Any) -> Table:
    """One row per CTA that ran: where, when, how long, and how much of it some scope covered.

    Columns: kernel, launch, cta, sm, start_ns, end_ns, span_ns (entry to exit), events, intervals,
    busy_ns (time covered by a scope on at least one of its warps), idle_ns (span - busy).
    """
    f = frame(profile)
    nc = len(f.c_ok)
    seg_g, seg_s, seg_e = union(f.gcta, f.start_ns, f.end_ns)
    busy = np.bincount(seg_g, weights=seg_e - seg_s, minlength=nc)
    n_iv = np.bincount(f.gcta, minlength=nc)
    rows = np.flatnonzero(f.c_ok)
    span = f.c_end - f.c_start
    cols = {
        "kernel": _names(f.kernels, f.c_kernel[rows]),
        "launch": np.array([f.launches[i].launch for i in f.c_li[rows].tolist()], np.int64),
        "cta": f.c_cta[rows], "sm": f.c_sm[rows],
        "start_ns": f.c_start[rows], "end_ns": f.c_end[rows], "span_ns": span[rows],
        "events": f.c_events[rows], "intervals": n_iv[rows],
        "busy_ns": busy[rows], "idle_ns": np.maximum(span[rows] - busy[rows], 0.0),
    }
    return Table("ctas", "CTA spans", cols)


def overlap(profile: Any, *, min_frac: float = 0.0) -> Table:
    """How much of each scope's time another scope covers, on any warp of the same CTA.

    For scopes A != B of one kernel: ``covered_ns`` is the sum over A's intervals of the time during
    which at least one warp of the same CTA (its own warp included) was inside B; ``covered_frac`` is
    ``covered_ns / a_total_ns``.  E.g. A = a TMA wait on a producer warp, B = the MMA of the consumer
    warps: a high fraction means the wait is hidden behind MMA.  Rows with ``covered_frac < min_frac``
    are left out; rows are sorted by kernel, then A's total, then the fraction.
    """
    f = frame(profile)
    S = len(f.scopes.names)
    K = len(f.kernels.names)
    dur = f.dur_ns
    a_total = np.bincount(f.kernel * S + f.scope, weights=dur, minlength=K * S)
    cov = np.zeros((K * S, S))
    ka_all = f.kernel * S + f.scope
    for b in np.unique(f.scope).tolist():  # a loop over scopes
        sel = f.scope == b
        seg = union(f.gcta[sel], f.start_ns[sel], f.end_ns[sel])
        q = ~sel  # B's own intervals are not asked about B
        c = covered(*seg, f.gcta[q], f.start_ns[q], f.end_ns[q])
        cov[:, b] = np.bincount(ka_all[q], weights=c, minlength=K * S)
    ka, b_ = np.nonzero(cov >= 0)
    kern, a = ka // S, ka % S
    present_b = np.zeros(K * S, bool)
    present_b[np.unique(f.kernel * S + f.scope)] = True
    keep = (a != b_) & (a_total[ka] > 0) & present_b[kern * S + b_]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = cov[ka, b_] / a_total[ka]
    keep &= frac >= min_frac
    ka, b_, kern, a, frac = ka[keep], b_[keep], kern[keep], a[keep], frac[keep]
    order = np.lexsort((-frac, -a_total[ka], kern))
    ka, b_, kern, a, frac = ka[order], b_[order], kern[order], a[order], frac[order]
    cols = {"kernel": _names(f.kernels, kern), "scope": _names(f.scopes, a), "covered_by": _names(f.scopes, b_),
            "scope_total_ns": a_total[ka], "covered_ns": cov[ka, b_], "covered_frac": frac}
    return Table("overlap", "Overlap: time of `scope` during which some warp of the CTA is in `covered_by`",
                 cols)


def _top_level(f: Frame) -> np.ndarray:
    """Indices of depth-0 intervals, in (launch, CTA, warp, time) order."""
    top = np.flatnonzero(f.depth == 0)
    order = np.lexsort((f.start_ns[top], f.gwarp[top], f.li[top]))
    return top[order]


def gaps(profile: Any) -> Table:
    """Idle gaps (bubbles) of each warp between consecutive top-level scopes, by boundary and role.

    A warp's top-level scopes are those not nested in another scope of the same warp.  Between two
    consecutive ones, ``before`` -> ``after``, the warp is in no scope; the gap before its first
    scope counts from the CTA's entry (``(CTA start)``), the gap after its last to the CTA's exit
    (``(CTA end)``).  Columns: kernel, role, before, after, count, total/mean/p50/p95/max ns.
    """
    f = frame(profile)
    top = _top_level(f)
    g = f.gwarp[top]
    S = len(f.scopes.names)
    start_code, end_code = S, S + 1
    same = g[1:] == g[:-1]
    inner = np.flatnonzero(same)
    first = np.flatnonzero(np.r_[True, ~same]) if len(top) else np.zeros(0, np.int64)
    last = np.flatnonzero(np.r_[~same, True]) if len(top) else np.zeros(0, np.int64)
    cs = f.c_start[f.gcta[top]]
    ce = f.c_end[f.gcta[top]]
    before = np.concatenate([f.scope[top][inner], np.full(len(first), start_code), f.scope[top][last]])
    after = np.concatenate([f.scope[top][inner + 1], f.scope[top][first], np.full(len(last), end_code)])
    gap = np.concatenate([f.start_ns[top][inner + 1] - f.end_ns[top][inner],
                          f.start_ns[top][first] - cs[first], ce[last] - f.end_ns[top][last]])
    gap = np.maximum(gap, 0.0)
    pos = np.concatenate([inner, first, last])
    kern, role = f.kernel[top][pos], f.role[top][pos]
    R, B = max(len(f.roles.names), 1), S + 2
    key = ((kern * R + role) * B + before) * B + after
    uniq, gid = np.unique(key, return_inverse=True)
    sm = group_summary(gid.reshape(-1), len(uniq), gap)
    k_, rest = np.divmod(uniq, R * B * B)
    r_, rest = np.divmod(rest, B * B)
    b_, a_ = np.divmod(rest, B)
    names = f.scopes.names + [CTA_START, CTA_END]
    order = np.lexsort((-sm["total"], r_, k_))
    cols = {"kernel": _names(f.kernels, k_[order]), "role": _names(f.roles, r_[order]),
            "before": np.array(names, dtype=object)[b_[order]].astype(str),
            "after": np.array(names, dtype=object)[a_[order]].astype(str),
            "count": sm["count"][order]}
    for k in ("total", "mean", "p50", "p95", "max"):
        cols[f"{k}_ns"] = sm[k][order]
    return Table("gaps", "Idle gaps between a warp's top-level scopes", cols)


def idle(profile: Any) -> Table:
    """Per warp role: how much of its warps' CTA spans no scope covers; plus the CTA-wide figure.

    Rows per (kernel, role): warps (that recorded at least one scope), span_ns (sum of their CTAs'
    spans), busy_ns (time inside a top-level scope), idle_ns = span - busy, idle_frac.  A row with
    role ``"any warp (CTA)"`` per kernel counts a CTA as busy while any of its warps is in a scope.
    """
    f = frame(profile)
    top = _top_level(f)
    gw = f.gwarp[top]
    uw, inv = np.unique(gw, return_inverse=True)
    busy_w = np.bincount(inv.reshape(-1), weights=f.dur_ns[top], minlength=len(uw))
    first = np.zeros(len(uw), np.int64)
    if len(top):
        first[inv.reshape(-1)[::-1]] = np.arange(len(top))[::-1]
    gc = f.gcta[top][first]
    span_w = (f.c_end - f.c_start)[gc]
    k_w, r_w = f.kernel[top][first], f.role[top][first]
    R = max(len(f.roles.names), 1)
    key = k_w * R + r_w
    uk, ginv = np.unique(key, return_inverse=True)
    ginv = ginv.reshape(-1)
    warps = np.bincount(ginv, minlength=len(uk))
    span = np.bincount(ginv, weights=span_w, minlength=len(uk))
    busy = np.bincount(ginv, weights=busy_w, minlength=len(uk))
    kern = list((uk // R).tolist())
    role = list(_names(f.roles, uk % R))
    # CTA-wide: union over the CTA's warps
    seg_g, seg_s, seg_e = union(f.gcta, f.start_ns, f.end_ns)
    nc = len(f.c_ok)
    cbusy = np.bincount(seg_g, weights=seg_e - seg_s, minlength=nc)
    has = f.c_ok & (np.bincount(f.gcta, minlength=nc) > 0)
    K = len(f.kernels.names)
    c_span = np.bincount(f.c_kernel[has], weights=(f.c_end - f.c_start)[has], minlength=K)
    c_busy = np.bincount(f.c_kernel[has], weights=cbusy[has], minlength=K)
    c_n = np.bincount(f.c_kernel[has], minlength=K)
    kern += list(range(K))
    role += ["any warp (CTA)"] * K
    warps = np.r_[warps, c_n]
    span = np.r_[span, c_span]
    busy = np.r_[busy, c_busy]
    kern = np.array(kern, np.int64)
    order = np.argsort(kern, kind="stable")
    idle_ns = np.maximum(span - busy, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = idle_ns / span
    cols = {"kernel": _names(f.kernels, kern[order]), "role": np.array(role, dtype=object)[order].astype(str),
            "warps": warps[order], "span_ns": span[order], "busy_ns": busy[order],
            "idle_ns": idle_ns[order], "idle_frac": frac[order]}
    return Table("idle", "Idle time: CTA span not covered by any scope (per warp, summed by role)", cols,
                 ["'warps' counts warps with at least one scope; for the CTA row it counts CTAs"])


def _sm_rows(f: Frame) -> dict[str, np.ndarray]:
    """Per (launch index, SM), sorted: li, sm, ctas, busy (union of CTA spans), first entry, last exit."""
    ok = np.flatnonzero(f.c_ok)
    key = f.c_li[ok] * (1 << 20) + f.c_sm[ok]
    uk, inv = np.unique(key, return_inverse=True)
    inv = inv.reshape(-1)
    seg_g, seg_s, seg_e = union(inv, f.c_start[ok], f.c_end[ok])
    first = np.full(len(uk), np.inf)
    last = np.full(len(uk), -np.inf)
    np.minimum.at(first, inv, f.c_start[ok])
    np.maximum.at(last, inv, f.c_end[ok])
    return {"li": uk >> 20, "sm": uk & ((1 << 20) - 1), "ctas": np.bincount(inv, minlength=len(uk)),
            "busy": np.bincount(seg_g, weights=seg_e - seg_s, minlength=len(uk)), "first": first, "last": last}


def sm_stats(profile: Any) -> Table:
    """One row per (launch, SM): CTAs run, busy time (union of its CTAs' spans), first entry, last exit,
    and the SM clock rate measured for the launch (GHz, NaN when unknown)."""
    f = frame(profile)
    r = _sm_rows(f)
    li, sm = r["li"], r["sm"]
    ghz = np.full(len(li), np.nan)
    for i, d in enumerate(f.launches):  # a loop over launches
        sc = d.sm_clocks
        mine = np.flatnonzero(li == i)
        if len(sc) and len(mine):
            j = np.minimum(np.searchsorted(sc["sm"], sm[mine]), len(sc) - 1)
            hit = sc["sm"][j] == sm[mine]
            ghz[mine[hit]] = sc["ghz"][j[hit]]
    k_of = np.array([f.kernels.code(kernel_name(d)) for d in f.launches], np.int64)
    n_of = np.array([d.launch for d in f.launches], np.int64)
    cols = {"kernel": _names(f.kernels, k_of[li]) if len(li) else np.zeros(0, "U1"),
            "launch": n_of[li] if len(li) else np.zeros(0, np.int64),
            "sm": sm, "ctas": r["ctas"], "busy_ns": r["busy"], "first_ns": r["first"], "last_ns": r["last"],
            "ghz": ghz}
    return Table("sms", "SMs", cols)


def imbalance(profile: Any) -> Table:
    """Load imbalance per launch, across CTAs and across SMs.

    Columns: kernel, launch, ctas, sms, waves (ctas / sms), kernel_span_ns (first CTA entry to last
    CTA exit); CTA spans: mean, max, ``cta_max_over_mean``, ``cta_cv`` (std / mean); SM busy time
    (union of the SM's CTA spans): mean, max, ``sm_max_over_mean``; ``tail_ns``: from the moment the
    first SM ran out of work (its last CTA ended) to the end of the launch; ``sm_idle_frac``: the
    share of (SMs used x kernel span) during which an SM ran no CTA of the launch.
    """
    f = frame(profile)
    r = _sm_rows(f)
    L = len(f.launches)
    ok = f.c_ok
    cli = f.c_li[ok]
    span = (f.c_end - f.c_start)[ok]
    n = np.bincount(cli, minlength=L)
    tot = np.bincount(cli, weights=span, minlength=L)
    sq = np.bincount(cli, weights=span**2, minlength=L)
    mx = np.full(L, np.nan)
    k_start = np.full(L, np.inf)
    k_end = np.full(L, -np.inf)
    np.fmax.at(mx, cli, span)
    np.minimum.at(k_start, cli, f.c_start[ok])
    np.maximum.at(k_end, cli, f.c_end[ok])
    n_sm = np.bincount(r["li"], minlength=L)
    sb_tot = np.bincount(r["li"], weights=r["busy"], minlength=L)
    sb_max = np.full(L, np.nan)
    sm_done = np.full(L, np.inf)
    np.fmax.at(sb_max, r["li"], r["busy"])
    np.minimum.at(sm_done, r["li"], r["last"])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = tot / n
        kspan = np.where(n > 0, k_end - k_start, np.nan)
        sb_mean = sb_tot / n_sm
        cols = {
            "kernel": np.array([kernel_name(d) for d in f.launches] or [""], dtype=object)[:L].astype(str),
            "launch": np.array([d.launch for d in f.launches], np.int64),
            "ctas": n, "sms": n_sm, "waves": n / n_sm, "kernel_span_ns": kspan,
            "cta_mean_ns": mean, "cta_max_ns": mx, "cta_max_over_mean": mx / mean,
            "cta_cv": np.sqrt(np.maximum(sq / n - mean**2, 0.0)) / mean,
            "sm_busy_mean_ns": sb_mean, "sm_busy_max_ns": sb_max, "sm_max_over_mean": sb_max / sb_mean,
            "tail_ns": np.where(n > 0, k_end - sm_done, np.nan),
            "sm_idle_frac": 1.0 - sb_tot / (n_sm * kspan),
        }
    return Table("imbalance", "Load imbalance across CTAs and SMs (per launch)", cols)


# --------------------------------------------------------------------------- a report of everything


class Tables:
    """Named statistics tables (``self.tables``): ``x[name]`` is one, ``str(x)`` prints ``x.to_text()``,
    ``to_csv(dir)`` writes one CSV per table (``<csv_prefix><name>.csv``), ``to_pandas()`` gives
    ``{name: DataFrame}``."""

    tables: dict[str, Table]
    csv_prefix = ""

    def __getitem__(self, name: str) -> Table:
        return self.tables[name]

    def __str__(self) -> str:
        return self.to_text()

    def to_csv(self, out_dir: str | os.PathLike) -> dict[str, str]:
        out = pathlib.Path(out_dir)
        return {n: t.to_csv(out / f"{self.csv_prefix}{n}.csv") for n, t in self.tables.items()}

    def to_pandas(self) -> dict:
        return {n: t.to_pandas() for n, t in self.tables.items()}


@dataclasses.dataclass
class Report(Tables):
    """All statistics tables of a profile (see ``Tables``: print, CSV, pandas)."""

    tables: dict[str, Table]
    header: list[str]

    def to_text(self, time_unit: str = "us", max_rows: int | None = 40,
                include: Sequence[str] | None = None) -> str:
        names = list(include) if include is not None else [n for n in self.tables if n != "ctas"]
        parts = ["\n".join(self.header)]
        for n in names:
            t = self.tables[n]
            if n == "overlap" and len(t):  # pairs that never overlap are noise in print (kept in the data)
                none = t["covered_ns"] <= 0
                t = t.select(~none)
                if none.any():
                    t.notes.append(f"{int(none.sum())} scope pairs that never overlap are not shown "
                                   "(they are in the CSV)")
            parts.append(t.to_text(time_unit, max_rows))
        return "\n\n".join(parts)


def report(profile: Any) -> Report:
    """Every table: scopes, roles, gaps, idle, overlap, imbalance, sms, ctas."""
    f = frame(profile)
    if not f.launches:
        raise KperfError("the profile holds no launches", fix="profile a kernel that has kperf scopes")
    header = []
    for d in f.launches:
        text = d.summary()
        header.append(text if kernel_name(d) in text.split("\n")[0] else f"[{kernel_name(d)}] {text}")
    if f.dropped:
        header.append(f"{f.dropped} intervals have no time (no SM clock rate could be measured) and are "
                      "left out of every table")
    tables = {"scopes": scope_stats(f), "roles": scope_stats(f, by="role"), "gaps": gaps(f), "idle": idle(f),
              "overlap": overlap(f), "imbalance": imbalance(f), "sms": sm_stats(f), "ctas": cta_spans(f)}
    return Report(tables, header)


__all__ = ["ALL_WARPS", "Frame", "Report", "Table", "as_launches", "cta_bounds", "cta_spans", "frame", "gaps",
           "group_summary", "idle", "imbalance", "kernel_name", "overlap", "report", "role_stats",
           "scope_stats", "sm_stats", "union", "covered", "warp_role_names"]
