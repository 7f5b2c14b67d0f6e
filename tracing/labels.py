"""How kernels and warps are named in tables, plots and traces: one place for every form.

A launch may carry ``warp_roles``: one role per warp index (a sequence) or a mapping ``warp -> role``
(e.g. ``"producer"``/``"consumer"`` in a warp-specialised kernel).  :func:`role_table` reads either
form; the labels below differ only in how much room their viewer has:

- tables group warps by role name (:func:`warp_role_names`, ``"all warps"`` without roles);
- a Chrome thread name reads ``"CTA 3 producer"`` (:func:`role_or_warp`);
- a Perfetto track reads ``"producer (warp 4)"`` (:func:`role_with_warp`);
- a plot lane reads ``"CTA 3 warp 4 (producer)"`` (:func:`warp_with_role`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


def role_or_warp(roles: dict[int, str], w: int) -> str:
    """``"producer"``, or ``"warp 4"`` for a warp without a role."""
    return roles.get(w, f"warp {w}")


def role_with_warp(roles: dict[int, str], w: int) -> str:
    """``"producer (warp 4)"``, or ``"warp 4"`` for a warp without a role."""
    return f"{roles[w]} (warp {w})" if w in roles else f"warp {w}"


def warp_with_role(role: str | None, w: int) -> str:
    """``"warp 4 (producer)"``, or ``"warp 4"`` when the role says nothing more (none, ``"all warps"``,
    or the ``"warp 4"`` that :func:`warp_role_names` gives a warp a mapping leaves out)."""
    return f"warp {w}" if role in (None, ALL_WARPS, f"warp {w}") else f"warp {w} ({role})"
