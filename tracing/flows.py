"""Flows: connect where asynchronous work was issued to where it completed, per launch.

kperf's automatic insertion (``kperf.passes.auto_insert``) records both ends of async work and puts
the pairs in the kernel metadata (``metadata["kperf"]["flows"]``, scope ids):

- ``{"kind": "tma", "issue": [ids], "complete": [ids]}``: a TMA copy (``tma.load ...`` scope, start
  record = issue time) and the mbarrier wait that consumes it (``tma.wait ...`` scope, end record =
  the data is there).  The k-th issue in a CTA feeds the k-th wait of each consuming warp group
  (TMA copies into a ring of buffers are consumed in issue order).  The source is the first warp
  that issues; the destination is the first warp of each consuming role (``warp_roles``) or, without
  roles, of each warpgroup.
- ``{"kind": "wgmma", "issue": [ids], "complete": [ids], "pendings": {id: n}}``: async wgmma issues
  and ``warp_group_dot_wait {pendings = n}`` waits in the same warp.  Issue j (counting from 0 in its
  warp) is complete at the first wait that leaves at most ``n`` newer groups in flight, i.e. the
  first wait with ``issues_before_it - n > j``.  Drawn for the first warp of each warpgroup.

:func:`compute_flows` is vectorised with numpy (one pass per flow spec, none per event) and returns a
``FLOW_DTYPE`` array that the trace writers draw as arrows; :func:`flows_per_launch` reads the forms
in which the writers accept flows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: A flow between two points of one CTA (e.g. an async copy issued by a producer warp and waited on
#: by a consumer warp); writers draw an arrow from (src_warp, src_ns) to (dst_warp, dst_ns).
FLOW_DTYPE = np.dtype(
    [
        ("cta", "<i8"),  # CTA index in the launch (region index)
        ("src_warp", "<i4"),
        ("src_ns", "<f8"),  # ns on the launch axis, as EVENT_DTYPE.time_ns
        ("dst_warp", "<i4"),
        ("dst_ns", "<f8"),
        ("name", "<i4"),  # id in the kernel's scope table (the flow's name)
    ]
)

_SHIFT = np.int64(1) << np.int64(32)


def _empty() -> np.ndarray:
    return np.zeros(0, FLOW_DTYPE)


def _rank(keys: np.ndarray) -> np.ndarray:
    """0-based position of each element within its run of equal (sorted) keys."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    return np.arange(n, dtype=np.int64) - run_start


def _groups(warps: np.ndarray, roles: Sequence[str] | None) -> np.ndarray:
    """A group id per warp: its role's index in ``roles`` (distinct strings), else its warpgroup."""
    if roles:
        names = {r: k for k, r in enumerate(dict.fromkeys(roles))}
        table = np.array([names[r] for r in roles] + [len(names)], dtype=np.int64)
        return table[np.minimum(warps.astype(np.int64), len(roles))]
    return warps.astype(np.int64) // 4


def _leaders(ev: np.ndarray, roles) -> np.ndarray:
    """Mask of events in the lowest warp of their group (per group, over the whole launch)."""
    if len(ev) == 0:
        return np.zeros(0, bool)
    warp = ev["warp"].astype(np.int64)
    g = _groups(warp, roles)
    lead = np.full(int(g.max()) + 1, np.iinfo(np.int64).max)
    np.minimum.at(lead, g, warp)
    return warp == lead[g]


def _tma(events: np.ndarray, spec: dict, roles) -> list[np.ndarray]:
    out = []
    scope = events["scope"].astype(np.int64)
    for issue in spec["issue"]:
        src = events[(scope == issue) & ~events["is_end"]]
        if len(src) == 0:
            continue
        src = src[src["warp"] == src["warp"].min()]  # the first issuing warp; events stay (cta, seq) sorted
        s_key = src["cta"].astype(np.int64) * _SHIFT + _rank(src["cta"].astype(np.int64))
        for done in spec["complete"]:
            dst = events[(scope == done) & events["is_end"]]
            dst = dst[_leaders(dst, roles)]
            if len(dst) == 0:
                continue
            cw = dst["cta"].astype(np.int64) * 65536 + dst["warp"].astype(np.int64)
            d_key = dst["cta"].astype(np.int64) * _SHIFT + _rank(cw)
            pos = np.searchsorted(s_key, d_key)
            pos_c = np.minimum(pos, len(s_key) - 1)
            hit = (pos < len(s_key)) & (s_key[pos_c] == d_key)
            f = np.zeros(int(hit.sum()), FLOW_DTYPE)
            f["cta"] = dst["cta"][hit]
            f["src_warp"] = src["warp"][pos_c[hit]]
            f["src_ns"] = src["time_ns"][pos_c[hit]]
            f["dst_warp"] = dst["warp"][hit]
            f["dst_ns"] = dst["time_ns"][hit]
            f["name"] = issue
            out.append(f)
    return out


def _wgmma(events: np.ndarray, spec: dict) -> list[np.ndarray]:
    scope = events["scope"].astype(np.int64)
    pend = {int(k): int(v) for k, v in spec.get("pendings", {}).items()}
    is_issue = np.isin(scope, np.asarray(spec["issue"], np.int64)) & ~events["is_end"]
    is_wait = np.isin(scope, np.asarray(list(pend), np.int64)) & events["is_end"]
    keep = (is_issue | is_wait) & (events["warp"] % 4 == 0)
    ev, issue = events[keep], is_issue[keep]
    if not issue.any() or issue.all():
        return []
    group = ev["cta"].astype(np.int64) * 65536 + ev["warp"].astype(np.int64)  # (cta, warp), sorted
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    seg = np.cumsum(np.r_[True, group[1:] != group[:-1]]) - 1
    before = np.cumsum(issue) - issue  # issues earlier in the whole array
    issued_in_group = before - before[starts][seg]  # issues earlier in this warp
    wait = ~issue
    # each wait's pendings, looked up by scope id (every wait's scope is a key of pend)
    pk = np.array(sorted(pend), np.int64)
    pv = np.array([pend[k] for k in sorted(pend)], np.int64)
    p = pv[np.searchsorted(pk, ev["scope"][wait].astype(np.int64))] if len(pk) else np.zeros(0, np.int64)
    # per wait: how many of this warp's issues are complete after it, as a running max per warp
    done = issued_in_group[wait] - p
    w_seg = seg[wait]
    big = np.int64(1) << np.int64(40)
    run = np.maximum.accumulate(w_seg * big + done)  # segments ascend, so the max never crosses warps
    j = issued_in_group[issue]
    i_seg = seg[issue]
    pos = np.searchsorted(run, i_seg * big + j, side="right")  # first wait with done > j in this warp
    pos_c = np.minimum(pos, max(len(run) - 1, 0))
    ok = (pos < len(run)) & (w_seg[pos_c] == i_seg)
    src, dst = ev[issue][ok], ev[wait][pos_c[ok]]
    f = np.zeros(len(src), FLOW_DTYPE)
    f["cta"], f["src_warp"], f["src_ns"] = src["cta"], src["warp"], src["time_ns"]
    f["dst_warp"], f["dst_ns"], f["name"] = dst["warp"], dst["time_ns"], src["scope"]
    return [f]


def compute_flows(data: Any, flows: Sequence[dict] | None,
                  warp_roles: Sequence[str] | None = None) -> np.ndarray:
    """``FLOW_DTYPE`` arrows for one launch.

    Args:
        data: a ``DecodedLaunch`` (its ``events`` and ``warp_roles``) or an ``EVENT_DTYPE`` array
            sorted by (cta, warp, seq).
        flows: the kernel's flow specs (``metadata["kperf"]["flows"]``, ``KernelInfo.flows``).
        warp_roles: one role per warp; default: ``data.warp_roles``.
    """
    events = getattr(data, "events", data)
    if warp_roles is None:
        warp_roles = getattr(data, "warp_roles", None)
    if not flows or events is None or len(events) == 0:
        return _empty()
    parts: list[np.ndarray] = []
    for spec in flows:
        if spec.get("kind") == "tma":
            parts += _tma(events, spec, warp_roles)
        elif spec.get("kind") == "wgmma":
            parts += _wgmma(events, spec)
    if not parts:
        return _empty()
    out = np.concatenate(parts)
    return out[np.lexsort((out["src_ns"], out["cta"]))]


def in_flight_ns(flows: np.ndarray) -> np.ndarray:
    """Time each async operation was in flight (completion minus issue), ns."""
    return flows["dst_ns"] - flows["src_ns"]


def flows_per_launch(flows: Any, launches: Sequence[Any]) -> list[np.ndarray | None]:
    """One ``FLOW_DTYPE`` array (or ``None``) per launch, from the forms the trace writers accept.

    Args:
        flows: ``None``, one array (a single launch), a list (one per launch) or
            ``{launch number: array}``.
        launches: the ``DecodedLaunch`` objects, in the writer's order.
    """
    if flows is None:
        return [None] * len(launches)
    if isinstance(flows, np.ndarray):
        if len(launches) != 1:
            raise ValueError("one flows array for several launches: pass a list (one per launch) or "
                             "a dict {launch number: flows}")
        flows = [flows]
    if isinstance(flows, Mapping):
        flows = [flows.get(d.launch) for d in launches]
    flows = list(flows)
    if len(flows) != len(launches):
        raise ValueError(f"{len(flows)} flow arrays for {len(launches)} launches")
    for f in flows:
        if f is not None and np.asarray(f).dtype != FLOW_DTYPE:
            raise TypeError(f"flows must be FLOW_DTYPE arrays, got dtype {np.asarray(f).dtype}")
    return flows
