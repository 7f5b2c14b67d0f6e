"""Numbers a trace shows for a launch as a whole, beside its events: e.g. the memory traffic ``kperf ncu``
measured (:func:`kperf.tracing.traffic.trace_args`).

Both trace writers take them as ``launch_args={launch number: {name: value}}`` with a title
(``launch_args_name``).  The Chrome trace puts them in ``otherData.kperf.launches[i]["args"]`` and on a
global instant event of that title at the launch's start (Chrome JSON has no launch-level slice); the
Perfetto trace on an instant of that title on the launch's track, as typed debug annotations (int,
double, bool, string: the UI shows numbers as numbers).  Values are normalised once here: a missing
number (``None``, NaN) is left out, a whole float becomes an int (byte counts read as integers), numpy
scalars become Python ones, anything else its ``str``.  A launch without an entry, and a call without
``launch_args``, write exactly what they wrote before.

A decoded launch's own facts (``DecodedLaunch.info``: the graph ops an Inductor kernel fused, a CUDA-graph
replay number...) join its entry without the caller passing them (:func:`with_info`); a name the caller
gives wins over the launch's own.  A list (of strings) among them becomes one comma-separated string
(:func:`info_value`), in the traces as in the ``kernels`` table.
"""

from __future__ import annotations

import math
import numbers
import struct
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from . import protowire as pw

DEFAULT_NAME = "launch args"

# DebugAnnotation field numbers (protos/perfetto/trace/track_event/debug_annotation.proto)
_A_BOOL, _A_INT, _A_DOUBLE, _A_STRING, _A_NAME = 2, 4, 5, 6, 10
_INT64 = 1 << 63


def _value(v: Any) -> bool | int | float | str | None:
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, numbers.Integral) and -_INT64 <= int(v) < _INT64:
        return int(v)
    if isinstance(v, numbers.Real):
        f = float(v)
        if not math.isfinite(f):
            return None
        return int(f) if f.is_integer() and abs(f) < _INT64 else f
    return str(v)


def normalize(launch_args: Mapping[int, Mapping[str, Any]] | None) -> dict[int, dict[str, Any]]:
    """``{launch number: {name: value}}`` with plain keys and values (see the module docstring)."""
    if launch_args is None:
        return {}
    if not isinstance(launch_args, Mapping):
        raise TypeError("launch_args must map launch numbers to {name: value} dicts, got "
                        f"{type(launch_args).__name__}")
    out: dict[int, dict[str, Any]] = {}
    for launch, args in launch_args.items():
        if not isinstance(args, Mapping):
            raise TypeError(f"launch_args[{launch!r}] must be a {{name: value}} dict, "
                            f"got {type(args).__name__}")
        vals = {str(k): _value(v) for k, v in args.items()}
        out[int(launch)] = {k: v for k, v in vals.items() if v is not None}
    return out


def info_value(v: Any) -> bool | int | float | str | None:
    """A launch ``info`` value as traces and tables show it: a list as one comma-separated string."""
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v)
    return _value(v)


def info_text(info: Mapping[str, Any] | None) -> str:
    """``"name=value; name=value"`` of a launch's ``info`` (lists comma-separated), ``""`` for none."""
    return "; ".join(f"{k}={info_value(v)}" for k, v in (info or {}).items())


def with_info(launch_args: Mapping[int, Mapping[str, Any]] | None, launches: Iterable[Any]
              ) -> dict[int, dict[str, Any]]:
    """:func:`normalize` of ``launch_args`` with each launch's ``info`` merged into its launch number's
    entry (the names ``launch_args`` gives win); launches without ``info`` change nothing."""
    out = normalize(launch_args)
    for d in launches:
        info = getattr(d, "info", None)
        if not info:
            continue
        own = {str(k): info_value(v) for k, v in info.items()}
        n = int(d.launch)
        out[n] = {**{k: v for k, v in own.items() if v is not None}, **out.get(n, {})}
    return out


def chrome_event(name: str, ts_us: float, at: tuple[int, int], args: Mapping[str, Any]) -> dict:
    """A global instant event (``"s":"g"``: a line across the whole timeline) carrying ``args``."""
    return {"name": name, "ph": "i", "s": "g", "ts": ts_us, "pid": at[0], "tid": at[1], "args": dict(args)}


def annotation(name: str, v: bool | int | float | str) -> bytes:
    """One DebugAnnotation message body: an inline name and a typed value."""
    body = pw.f_bytes(_A_NAME, name)
    if isinstance(v, bool):
        return body + pw.f_varint(_A_BOOL, int(v))
    if isinstance(v, int):
        return body + pw.f_varint(_A_INT, v)
    if isinstance(v, float):
        return body + pw.tag(_A_DOUBLE, pw.WIRE_FIXED64) + struct.pack("<d", v)
    return body + pw.f_bytes(_A_STRING, str(v))
