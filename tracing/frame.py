"""All launches of a profile in flat numpy arrays: the common input of every statistics table.

:func:`frame` flattens the launches once: one entry per interval with a time (launch, kernel, global
CTA row, warp, scope, role, depth, start/end ns, cycles) and one per CTA region (SM, span, events).
Kernel, scope and role names become small integer codes (:class:`Codes`), so the tables group with
``bincount``/``lexsort`` over integer keys and turn codes back into names only for their rows.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

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


@dataclasses.dataclass
class Frame:
    """All launches' intervals and CTAs in flat arrays with integer codes (built once, shared)."""

    launches: list
    kernels: Codes
    scopes: Codes
    roles: Codes
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


_INTERVAL_COLUMNS = ("li", "kernel", "gcta", "warp", "scope", "role", "depth", "start_ns", "end_ns",
                     "dur_cycles")
_CTA_COLUMNS = ("c_li", "c_kernel", "c_cta", "c_sm", "c_ok", "c_start", "c_end", "c_events")


def frame(profile: Any) -> Frame:
    """Flatten launches into a :class:`Frame` (accepts what :func:`as_launches` accepts, or a Frame)."""
    if isinstance(profile, Frame):
        return profile
    launches = as_launches(profile)
    kernels, scopes, roles = Codes(), Codes(), Codes()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in _INTERVAL_COLUMNS + _CTA_COLUMNS}
    declared = set()
    dropped = 0
    cta_base = 0
    max_warps = max([int(d.geometry.num_warps) for d in launches] + [1])
    for i, d in enumerate(launches):
        kc = kernels.code(kernel_name(d))
        names = dict(d.scopes or {})
        for nm in names.values():
            declared.add((kc, scopes.code(nm)))
        iv, _ = d.intervals()
        ok_t = np.isfinite(iv["start_ns"]) & np.isfinite(iv["end_ns"])
        dropped += int((~ok_t).sum())
        cols = _interval_columns(d, iv[ok_t], names, scopes, roles)
        cols.update(li=i, kernel=kc, gcta=cta_base + cols["gcta"])
        cols.update(_cta_columns(d), c_li=i, c_kernel=kc)
        n, m = len(cols["warp"]), len(cols["c_cta"])
        for k, v in cols.items():
            parts[k].append(np.full(n if k in _INTERVAL_COLUMNS else m, v, np.int64) if np.isscalar(v) else v)
        cta_base += m
    cat = {k: (v[0] if len(v) == 1 else np.concatenate(v) if v else
               np.zeros(0, np.float64 if k.endswith(("_ns", "cycles", "start", "end")) else np.int64))
           for k, v in parts.items()}
    if not len(cat["c_ok"]):
        cat["c_ok"] = np.zeros(0, bool)
    gwarp = cat["gcta"] * max_warps + cat["warp"]
    return Frame(launches=launches, kernels=kernels, scopes=scopes, roles=roles, gwarp=gwarp,
                 declared=declared, dropped=dropped, **cat)


def _interval_columns(d, iv: np.ndarray, names: dict, scopes: Codes, roles: Codes) -> dict[str, np.ndarray]:
    """A launch's intervals (with times) as frame columns; ``gcta`` still the launch's own CTA index."""
    # scope id -> name code, built over the (few) ids present
    ids = np.unique(iv["scope"]).astype(np.int64)
    lut = np.zeros(int(ids.max()) + 1 if len(ids) else 1, np.int64)
    for sid in ids.tolist():
        lut[sid] = scopes.code(names.get(sid, f"scope {sid}"))
    W = int(d.geometry.num_warps)
    wroles = warp_role_names(d, max(W, int(iv["warp"].max()) + 1 if len(iv) else W))
    rlut = np.array([roles.code(r) for r in wroles], np.int64)
    cyc = (iv["end_cycles"] - iv["start_cycles"]).astype(np.float64)
    return {"gcta": iv["cta"].astype(np.int64), "warp": iv["warp"].astype(np.int64),
            "scope": lut[iv["scope"].astype(np.int64)], "role": rlut[iv["warp"].astype(np.int64)],
            "depth": iv["depth"].astype(np.int64), "start_ns": iv["start_ns"].astype(np.float64),
            "end_ns": iv["end_ns"].astype(np.float64),
            "dur_cycles": np.full(len(iv), np.nan) if d.geometry.clock == "globaltimer" else cyc}


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


def top_level(f: Frame) -> np.ndarray:
    """Indices of depth-0 intervals, in (launch, CTA, warp, time) order."""
    top = np.flatnonzero(f.depth == 0)
    order = np.lexsort((f.start_ns[top], f.gwarp[top], f.li[top]))
    return top[order]
