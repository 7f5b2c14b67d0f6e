"""A picture of data-movement bounds: least traffic against on-chip capacity, log-log, one line per curve,
the compulsory traffic and the GPU's capacities marked, measured bytes as points (matplotlib, optional).

The curves fall in steps (Orojenesis' "ski slopes"); measured points sit above their curve, and the
gap at the capacity that matters is what a better mapping could still save.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import numpy as np

from .atomic import atomic_file
from .plots import _pyplot


def plot_bounds(bounds_list: Sequence, path: str | os.PathLike, *, marks: dict[str, float] | None = None,
                measured: Sequence[tuple[str, float, float]] = (), title: str | None = None) -> str:
    """Draw every variant of each :class:`~.bounds.Bound`; ``marks``: ``{label: capacity bytes}`` drawn as
    vertical lines; ``measured``: ``(label, capacity, bytes)`` points.  Returns the path written."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for b in bounds_list:
        for name, c in b.variants.items():
            x = np.r_[c.occupancy, c.occupancy[-1] * 4]
            y = np.r_[c.min_bytes, c.min_bytes[-1]]
            label = b.problem["name"] + (f" ({name})" if len(b.variants) > 1 else "")
            line, = ax.step(x, y, where="post", label=label)
            ax.axhline(c.compulsory_bytes, color=line.get_color(), lw=0.6, ls=":")
    for label, cap in (marks or {}).items():
        ax.axvline(cap, color="grey", lw=0.8, ls="--")
        ax.annotate(label, (cap, 1), xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right",
                    fontsize=8, color="grey")
    for label, cap, measured_bytes in measured:
        ax.plot([cap], [measured_bytes], "o", ms=6, label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("on-chip buffer capacity (bytes)")
    ax.set_ylabel("backing-store traffic (bytes)")
    ax.set_title(title or "Attainable data movement (least traffic over tilings and loop orders)",
                 fontsize=10)
    ax.grid(True, which="major", lw=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = pathlib.Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    with atomic_file(path) as f:
        fig.savefig(f, dpi=120, format=fmt)
    plt.close(fig)
    return str(path)
