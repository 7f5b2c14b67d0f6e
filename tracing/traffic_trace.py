"""Measured traffic in a trace: what ``kperf export`` and ``kperf view`` pass to the trace writers for a
saved profile that holds it (``kperf ncu``; the profile's ``traffic.json`` member, or the side file of an
earlier kperf: :func:`.traffic.find`).

Each matched launch gets :func:`.traffic.trace_args` (DRAM bytes read and written, L2 and L2<->SM bytes,
L2 hit rate, kperf's own record bytes, ncu's launch ID) and, when the traffic describes a problem,
its bounds (:mod:`.traffic_bounds`): per level the bound at the capacity and measured / bound.  The
writers show them on the launch (:mod:`.launch_args`).  A profile without measured traffic gets
nothing, so its trace is what it was; unreadable traffic, or bounds of a device whose capacities are
not known, become warnings and the trace is written without them: the events are still worth seeing.
"""

from __future__ import annotations

import os

from kperf.dialect.errors import KperfError

from .traffic import find, trace_args
from .traffic_bounds import bounds_table

TRACE_NAME = "memory traffic (ncu)"
_LEVELS = {"DRAM (L2 capacity)": "dram", "L2<->SM (SMEM capacity)": "l2_sm"}


def bound_args(data: dict) -> dict[int, dict]:
    """Per launch, the bound of each level and measured / bound (``dram_bound_bytes``,
    ``dram_measured_over_bound``, ``l2_sm_...``) and the problem's name; with several problems for one
    launch, the keys of the second and later ones name it."""
    out: dict[int, dict] = {}
    for r in bounds_table(data).rows():
        args = out.setdefault(int(r["launch"]), {})
        problems = args.setdefault("problem", r["problem"])
        prefix = "" if problems == r["problem"] else f"{r['problem']}: "
        level = _LEVELS.get(r["level"], r["level"])
        args[f"{prefix}{level}_bound_bytes"] = r["bound_bytes"]
        args[f"{prefix}{level}_measured_over_bound"] = r["measured_over_bound"]
    return out


def trace_options(profile: str | os.PathLike) -> tuple[dict, list[str]]:
    """The trace writers' keyword arguments for a saved profile's measured traffic (``{}`` without any),
    and warnings for what is left out."""
    try:
        data = find(profile)
    except KperfError as e:
        return {}, [f"the trace leaves out the measured traffic: {e}"]
    if data is None:
        return {}, []
    args, warnings = trace_args(data), []
    if data.get("problems"):
        try:
            bounds = bound_args(data)
        except KperfError as e:
            warnings.append(f"the trace leaves out the bounds: {e}")
        else:
            for launch, extra in bounds.items():
                args.setdefault(launch, {}).update(extra)
    return {"launch_args": args, "launch_args_name": TRACE_NAME}, warnings
