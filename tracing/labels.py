"""How kernels, SMs, CTAs and warps are named in tables, plots and traces: one place for every form.

A launch may carry ``warp_roles``: one role per warp index (a sequence) or a mapping ``warp -> role``
(e.g. ``"producer"``/``"consumer"`` in a warp-specialised kernel).  :func:`role_table` reads either
form; the labels below differ only in how much room their viewer has:

- tables group warps by role name (:func:`warp_role_names`, ``"all warps"`` without roles);
- a trace names an SM ``"SM 124"`` and a CTA ``"CTA 37"`` (its linear id, the one ``--ctas`` takes),
  with its grid coordinates when the grid has more than one dimension: ``"CTA 37 (5,4,0)"``
  (:func:`cta_label`);
- a Perfetto warp track, under its CTA, reads ``"producer (warp 4)"`` or ``"warp 4"``
  (:func:`role_with_warp`);
- a Chrome JSON thread reads ``"CTA 37 producer (warp 4)"`` or ``"CTA 37 (warp 4)"``
  (:func:`cta_warp_label`): Perfetto shows a JSON thread as its name followed by its tid, and the
  closing parenthesis keeps that number apart from the warp's; a JSON process is named ``"SM"`` and
  has the SM's number as its pid, so Perfetto shows it as ``"SM 124"`` (see :mod:`.chrome`);
- a plot lane reads ``"CTA 3 warp 4 (producer)"`` (:func:`warp_with_role`).

A trace file's name says its format (:func:`named_format`): ``.json`` Chrome JSON, ``.pftrace`` or
``.perfetto-trace`` Perfetto protobuf, either with ``.gz`` after it; each writer refuses a name that
says the other format (:func:`refuse_other_format`), so no ``.json`` file ever holds protobuf.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from kperf.dialect.errors import KperfError

#: The role of every warp of a launch without ``warp_roles``.
ALL_WARPS = "all warps"


def kernel_name(d: Any) -> str:
    """The kernel name a launch carries (``kernel_name`` or ``kernel`` attribute), else ``"kernel"``."""
    for attr in ("kernel_name", "kernel"):
        v = getattr(d, attr, None)
        if isinstance(v, str) and v:
            return v
        if v is not None and isinstance(getattr(v, "name", None), str):
            return v.name
    return "kernel"


def role_table(roles: Mapping[int, Any] | Any | None) -> dict[int, str]:
    """``{warp: role}`` from a sequence (index = warp) or a mapping; ``{}`` for ``None``."""
    if roles is None:
        return {}
    if isinstance(roles, Mapping):
        return {int(k): str(v) for k, v in roles.items()}
    return {i: str(v) for i, v in enumerate(roles)}


def warp_role_names(d: Any, num_warps: int) -> list[str]:
    """One role name per warp index: from ``d.warp_roles`` (sequence or mapping) or ``"all warps"``."""
    roles = getattr(d, "warp_roles", None)
    if roles is None:
        return [ALL_WARPS] * num_warps
    table = role_table(roles)
    return [table.get(w, f"warp {w}") for w in range(num_warps)]


def sm_label(sm: int) -> str:
    """``"SM 124"``."""
    return f"SM {sm}"


def cta_label(cta: int, ctaid: tuple[int, int, int] | None = None) -> str:
    """``"CTA 37"``, or ``"CTA 37 (5,4,0)"`` with the CTA's grid coordinates (given for grids of more
    than one dimension, where the linear id alone does not say where the CTA sits)."""
    return f"CTA {cta}" if ctaid is None else f"CTA {cta} ({ctaid[0]},{ctaid[1]},{ctaid[2]})"


def cta_warp_label(roles: dict[int, str], w: int) -> str:
    """The warp part of a Chrome JSON thread name: ``"producer (warp 4)"`` or ``"(warp 4)"``."""
    return f"{roles[w]} (warp {w})" if w in roles else f"(warp {w})"


def role_with_warp(roles: dict[int, str], w: int) -> str:
    """``"producer (warp 4)"``, or ``"warp 4"`` for a warp without a role."""
    return f"{roles[w]} (warp {w})" if w in roles else f"warp {w}"


def warp_with_role(role: str | None, w: int) -> str:
    """``"warp 4 (producer)"``, or ``"warp 4"`` when the role says nothing more (none, ``"all warps"``,
    or the ``"warp 4"`` that :func:`warp_role_names` gives a warp a mapping leaves out)."""
    return f"warp {w}" if role in (None, ALL_WARPS, f"warp {w}") else f"warp {w} ({role})"


#: trace file extensions (``.gz`` may follow) and the format each names
TRACE_SUFFIXES = {".json": "chrome", ".pftrace": "perfetto", ".perfetto-trace": "perfetto"}
FORMAT_NAMES = {"chrome": "Chrome JSON", "perfetto": "Perfetto protobuf"}


def named_format(path: Any) -> str | None:
    """The trace format a file name says (``"chrome"``, ``"perfetto"``), ``None`` when it says none
    (or ``path`` is a file object)."""
    if not isinstance(path, (str, os.PathLike)):
        return None
    name = os.path.basename(os.fspath(path))
    name = name[:-3] if name.endswith(".gz") else name
    return next((fmt for suf, fmt in TRACE_SUFFIXES.items() if name.endswith(suf) and name != suf), None)


def refuse_other_format(path: Any, fmt: str) -> None:
    """A ``KperfError`` when ``path``'s name says another trace format than ``fmt``, the writer's."""
    named = named_format(path)
    if named not in (None, fmt):
        suffix = next(s for s, f in TRACE_SUFFIXES.items() if f == fmt)
        raise KperfError(f"{path} names a {FORMAT_NAMES[named]} trace, but this writer writes "
                         f"{FORMAT_NAMES[fmt]}", fix=f"name the file {suffix} (or {suffix}.gz), or use the "
                         f"{FORMAT_NAMES[named]} writer (Profile.to_chrome_trace / Profile.to_perfetto)")
