"""Checks of what a saved ``.kperf`` profile holds, before any of it is used (:mod:`.saved` loads).

A saved profile comes from a file that may be damaged, hand-edited or written by something else, so
every manifest field is checked for its type and range (:func:`check_manifest`, :func:`check_entry`)
and the decoded tables of a ``"columns"`` launch for their shapes, dtypes and times
(:func:`check_columns`, :func:`check_intervals`): no NaN or infinite event time, no scope interval
that ends before it starts.  A failed check is a :class:`KperfError` that names the file and the field
(``launches[0].geometry.capacity``), never a bare ``TypeError`` or ``KeyError`` later on.

The optional ``traffic.json`` member (the memory traffic ``kperf ncu`` measured, :mod:`.traffic`) is checked
the same way when it is read (:func:`check_traffic`): its format and version, and every field of it that
the traffic tables, bounds and traces read, so that what passes cannot fail them later.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from kperf.dialect.errors import KperfError
from kperf.dialect.layout import CLOCKS, MAX_SCOPES, STRATEGIES, Geometry
from kperf.dialect.options import MAX_CAPACITY, MAX_WARPS

from .clocks import SM_CLOCK_DTYPE
from .launch import CTA_DTYPE, INFO_VALUES, LOST_DTYPE, plain_info

MANIFEST_NAME = "manifest.json"
TRAFFIC_MEMBER = "traffic.json"  # measured traffic (kperf ncu), optional, in any format version
TRAFFIC_FORMAT = "kperf-traffic"
TRAFFIC_VERSION = 1  # the traffic format version this kperf writes and reads
_U32 = 1 << 32
_U64 = 1 << 64
#: decoded tables of a "columns" launch: the fields each must have
TABLE_DTYPES = {"ctas": CTA_DTYPE, "lost": LOST_DTYPE, "sm_clocks": SM_CLOCK_DTYPE}
#: per-event columns of a "columns" launch: the numpy dtype kinds each may have
EVENT_KINDS = {"scope": "iu", "is_end": "b", "cycles": "iu", "time_ns": "f", "seq": "iu"}


def damaged(path: str, cause: str) -> KperfError:
    """The error for a file that is not a readable kperf profile."""
    return KperfError(f"{path} is not a readable kperf profile: {cause}",
                      fix="the file is damaged, truncated or not written by kperf (an interrupted save or "
                          "copy, an edited manifest?); save or copy it again")


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except RecursionError:
        return "a deeply nested value"
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Fields:
    """Typed reads of one manifest object; each failure names the file and the field's path."""

    def __init__(self, path: str, where: str, obj: Any, error: Callable[[str, str], KperfError] = damaged):
        self.path, self.where, self.error = path, where, error
        if not isinstance(obj, dict):
            raise error(path, f"{where}: expected an object, got {_short(obj)}")
        self.obj = obj

    def bad(self, key: str, expected: str) -> KperfError:
        value = self.obj.get(key, "nothing")
        return self.error(self.path, f"{self.where}.{key}: expected {expected}, got {_short(value)}")

    def get(self, key: str, kind: type, expected: str, *, optional: bool = False):
        value = self.obj.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.bad(key, expected)
        return value

    def int(self, key: str, lo: int, hi: int, *, optional: bool = False):
        value = self.get(key, int, f"an int in [{lo}, {hi})", optional=optional)
        if value is not None and not lo <= value < hi:
            raise self.bad(key, f"an int in [{lo}, {hi})")
        return value

    def choice(self, key: str, allowed) -> str:
        value = self.obj.get(key)
        if not isinstance(value, str) or value not in allowed:
            raise self.bad(key, f"one of {', '.join(allowed)}")
        return value

    def list_of(self, key: str, ok, expected: str, *, optional: bool = False) -> list | None:
        value = self.get(key, list, f"a list of {expected}", optional=optional)
        if value is not None and not all(ok(x) for x in value):
            raise self.bad(key, f"a list of {expected}")
        return value


def check_manifest(path: str, m: Any) -> list:
    """The manifest's launch entries, each checked (:func:`check_entry`), their indices distinct."""
    launches = _Fields(path, MANIFEST_NAME, m).get("launches", list, "a list of launch entries")
    seen: dict[int, int] = {}
    for pos, e in enumerate(launches):
        i = check_entry(path, pos, e, len(launches))
        if i in seen:
            raise damaged(path, f"launches[{pos}].index: {i} again (launches[{seen[i]}] has it): two "
                                f"launches would read one buffer")
        seen[i] = pos
    return launches


def check_entry(path: str, pos: int, e: Any, n: int) -> int:
    """Check one launch entry of the manifest (every field it is loaded by); returns its index."""
    f = _Fields(path, f"launches[{pos}]", e)
    index = f.int("index", 0, n)
    f.int("launch", 0, _U32)
    f.get("kernel", str, "a string", optional=True)
    f.list_of("grid", lambda x: _is_int(x) and 1 <= x < _U32, "1 to 3 positive ints", optional=True)
    if not 1 <= len(e.get("grid") or [1]) <= 3:
        raise f.bad("grid", "1 to 3 positive ints")
    f.int("n_ctas", 0, _U32)
    g = check_geometry(path, f"launches[{pos}].geometry", e.get("geometry"))
    f.choice("strategy", STRATEGIES)
    f.list_of("scopes", lambda s: isinstance(s, list) and len(s) == 2 and _is_int(s[0])
              and 0 <= s[0] < MAX_SCOPES and isinstance(s[1], str), "[id, name] pairs", optional=True)
    roles = f.list_of("warp_roles", lambda r: isinstance(r, str), "strings", optional=True)
    if roles is not None and len(roles) != g.num_warps:
        raise f.bad("warp_roles", f"one role per warp ({g.num_warps} strings, as geometry.num_warps), "
                                  f"got {len(roles)}")
    ghz = f.get("clock_ghz", (int, float), "a number of GHz", optional=True)
    if ghz is not None and (isinstance(ghz, bool) or not math.isfinite(ghz)):
        raise f.bad("clock_ghz", "a finite number of GHz")
    f.int("t0_ns", 0, _U64)
    f.int("gtime_step_ns", 0, _U64, optional=True)
    f.int("lost_total", 0, _U64)
    f.list_of("problems", lambda p: isinstance(p, str), "strings")
    info = f.get("info", dict, f"an object of launch facts ({INFO_VALUES} each)", optional=True)
    try:
        plain_info(info)
    except ValueError as err:
        raise damaged(path, f"launches[{pos}].{err} (each value is {INFO_VALUES})") from None
    if f.get("payload", str, "a string") == "packed":
        f.get("packed", dict, "an object of packed column specs (payload packed)")
    return index


def check_geometry(path: str, where: str, g: Any) -> Geometry:
    """The launch's buffer geometry, every field checked."""
    f = _Fields(path, where, g)
    f.int("num_warps", 1, MAX_WARPS + 1)
    f.int("capacity", 1, MAX_CAPACITY + 1)
    f.choice("clock", CLOCKS)
    f.list_of("warps", lambda w: _is_int(w) and 0 <= w < MAX_WARPS, "warp indices", optional=True)
    f.int("sink", 0, MAX_CAPACITY + 1, optional=True)
    try:
        return Geometry.from_json(g)
    except (ValueError, TypeError, KeyError) as e:
        raise damaged(path, f"{where}: {e}") from None


def check_columns(path: str, where: str, seg: dict, cols: dict, tables: dict) -> None:
    """The decoded tables of a ``"columns"`` launch: shapes, dtypes, finite event times."""
    n_seg = None
    for name, a in seg.items():
        if a.ndim != 1 or a.dtype.kind not in "iu" or (n_seg is not None and len(a) != n_seg):
            raise damaged(path, f"{where} seg_{name}: expected one int per segment, got {a.dtype} {a.shape}")
        n_seg = len(a)
    counts = seg["n"]
    if len(counts) and counts.min() < 0:
        raise damaged(path, f"{where} seg_n: a negative event count")
    total = int(counts.sum())
    for name, a in cols.items():
        if a.ndim != 1 or len(a) != total or a.dtype.kind not in EVENT_KINDS[name]:
            raise damaged(path, f"{where} {name}: expected {total} events of kind {EVENT_KINDS[name]!r}, got "
                                f"{a.dtype} {a.shape}")
    bad = ~np.isfinite(cols["time_ns"])
    if bad.any():
        raise damaged(path, f"{where} time_ns: {int(bad.sum())} of {total} event times are NaN or infinite "
                            f"(the first is event {int(np.argmax(bad))})")
    for name, dtype in TABLE_DTYPES.items():
        a = tables[name]
        missing = sorted(set(dtype.names) - set(a.dtype.names or ()))
        if a.ndim != 1 or missing:
            raise damaged(path, f"{where} {name}: not a table of {name} (missing fields: "
                                f"{', '.join(missing) or 'none'}; shape {a.shape})")


def _refuse(path: str, where: str, bad: np.ndarray, what: str, values: np.ndarray, unit: str) -> None:
    """A KperfError when any of ``bad`` (one bool per row of ``values``) is set."""
    if bad.any():
        first = int(np.argmax(bad))
        raise damaged(path, f"{where} {what} ({int(bad.sum())} of {len(bad)} {unit}s; the first: "
                            f"{unit} {first}, value {values[first]})")


def check_ids(path: str, where: str, seg: dict, cols: dict, ctas: np.ndarray, *, launch: int, n_ctas: int,
              num_warps: int, scopes: dict | None) -> None:
    """The ids and flags of a ``"columns"`` launch (after :func:`check_columns`): segments of this
    launch, each naming a CTA of the CTA table and its SM, a warp of the geometry, in (CTA, warp) order
    once each; event scopes of the scope table; ``is_end`` bytes 0 or 1."""
    if len(ctas) != n_ctas:
        raise damaged(path, f"{where} ctas: {len(ctas)} CTAs, but the manifest says n_ctas {n_ctas}")
    cta, warp = seg["cta"], seg["warp"]
    _refuse(path, where, seg["launch"] != launch, f"seg_launch: not the launch number {launch}",
            seg["launch"], "segment")
    _refuse(path, where, (cta < 0) | (cta >= n_ctas), f"seg_cta: a CTA outside [0, {n_ctas}) (the CTA table)",
            cta, "segment")
    _refuse(path, where, (warp < 0) | (warp >= num_warps),
            f"seg_warp: a warp outside [0, {num_warps}) (geometry.num_warps)", warp, "segment")
    _refuse(path, where, (seg["first_seq"] < 0) | (seg["first_seq"] >= _U32), "seg_first_seq: out of range",
            seg["first_seq"], "segment")
    d_cta, d_warp = np.diff(cta.astype(np.int64)), np.diff(warp.astype(np.int64))
    order = np.concatenate([[False], (d_cta < 0) | ((d_cta == 0) & (d_warp <= 0))])
    _refuse(path, where, order, "seg_cta, seg_warp: segments not in (CTA, warp) order, once each",
            cta, "segment")
    if len(cta):
        own = seg["sm"] != ctas["sm"][cta]
        _refuse(path, where, own, "seg_sm: not the SM of the segment's CTA (ctas.sm)", seg["sm"], "segment")
    _check_events(path, where, cols, scopes)


def _check_events(path: str, where: str, cols: dict, scopes: dict | None) -> None:
    scope = cols["scope"]
    ids = np.array(sorted(scopes) if scopes is not None else [], np.int64)
    bad = ~np.isin(scope, ids) if scopes is not None else (scope < 0) | (scope >= MAX_SCOPES)
    table = "not in the scope table (launches[].scopes)" if scopes is not None \
        else f"outside [0, {MAX_SCOPES})"
    _refuse(path, where, bad, f"scope: a scope id {table}", scope, "event")
    flags = cols["is_end"].view(np.uint8)
    _refuse(path, where, flags > 1, "is_end: a bool byte other than 0 or 1", flags, "event")


def check_intervals(path: str, where: str, intervals: np.ndarray) -> None:
    """No scope interval of a loaded launch ends before it starts."""
    rev = np.flatnonzero(intervals["end_ns"] < intervals["start_ns"])
    if len(rev):
        r = intervals[rev[0]]
        raise damaged(path, f"{where}: {len(rev)} scope intervals end before they start (the first: CTA "
                            f"{int(r['cta'])} warp {int(r['warp'])} scope {int(r['scope'])}, "
                            f"{float(r['start_ns']):.1f} ns to {float(r['end_ns']):.1f} ns)")


# --------------------------------------------------------------------------- measured traffic


def traffic_error(where: str, cause: str) -> KperfError:
    """The error for measured traffic (a profile's member or a side file, ``where``) that cannot be used."""
    return KperfError(f"{where} is not readable measured traffic: {cause}",
                      fix="measure it again: kperf ncu OUT -- script.py stores fresh numbers in "
                          "OUT/profile.kperf (the profile's launches load without them; "
                          "kperf.tracing.saved.attach_traffic(PROFILE, None) removes a damaged member)")


def _number(x: Any, lo: float = -math.inf) -> bool:
    """A finite JSON number (not a bool) of at least ``lo``."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return False
    try:
        return math.isfinite(float(x)) and x >= lo
    except OverflowError:  # an int too large for a float
        return False


def _regex(x: Any) -> bool:
    try:
        return isinstance(x, str) and re.compile(x) is not None
    except (re.error, RecursionError, OverflowError):
        return False


def check_traffic(where: str, data: Any) -> dict:
    """Measured traffic as :mod:`.traffic` builds it, checked: ``format``, ``version`` (a newer one asks for
    a newer kperf), each launch's ``launch``, ``kernel``, ``ncu_id``, ``metrics`` (finite numbers or null)
    and ``kperf_record_bytes``; the ``device``, ``problems``, ``notes`` and unmatched lists.  Returns it."""
    if not isinstance(data, dict) or data.get("format") != TRAFFIC_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise traffic_error(where, f"format {_short(found)}, not {TRAFFIC_FORMAT!r}")
    v = data.get("version")
    if _is_int(v) and v > TRAFFIC_VERSION:
        raise KperfError(f"{where} holds measured traffic of format version {v}; this kperf reads "
                         f"version {TRAFFIC_VERSION}",
                         fix="upgrade kperf (pip install -U kperf), or measure again with this kperf")
    f = _Fields(where, "traffic", data, traffic_error)
    f.int("version", TRAFFIC_VERSION, TRAFFIC_VERSION + 1)
    for pos, x in enumerate(f.get("launches", list, "a list of measured launches")):
        e = _Fields(where, f"traffic.launches[{pos}]", x, traffic_error)
        e.int("launch", 0, _U32)
        e.get("kernel", str, "a string")
        e.int("ncu_id", 0, 1 << 63)
        metrics = e.get("metrics", dict, "an object of metric values")
        if not all(isinstance(k, str) and (m is None or _number(m)) for k, m in metrics.items()):
            raise e.bad("metrics", "an object of finite numbers or nulls")
        e.int("kperf_record_bytes", 0, 1 << 63, optional=True)
    device = f.get("device", dict, "an object", optional=True)
    if device is not None:
        d = _Fields(where, "traffic.device", device, traffic_error)
        d.get("name", str, "a string", optional=True)
        for key in ("l2_bytes", "smem_per_sm_bytes", "sms"):
            if device.get(key) is not None and not _number(device[key], 0):
                raise d.bad(key, "a number of at least 0")
    f.list_of("problems", lambda p: isinstance(p, dict) and isinstance(p.get("kind"), str)
              and _regex(p.get("kernel")), "problems (objects with a kind and a kernel pattern)",
              optional=True)
    f.list_of("notes", lambda n: isinstance(n, str), "strings", optional=True)
    f.get("unmatched_ncu", list, "a list", optional=True)
    f.get("unmatched_profile", list, "a list", optional=True)
    return data
