"""Statistics over decoded launches: scopes, warp roles, CTA spans, overlap, bubbles, load imbalance.

Every function takes one :class:`~kperf.tracing.decode.DecodedLaunch`, a list of them (e.g. from
:func:`kperf.tracing.saved.load_profile`) or a ``kperf.Profile``, and returns a :class:`Table`
(columns of numpy arrays) that prints as aligned text, writes CSV (``to_csv``) and turns into a
pandas DataFrame (``to_pandas``, when pandas is installed).  :func:`report` gathers all tables.

This module is the entry point; the parts live by concern, and their public names are re-exported
here:

- :mod:`.tables`: ``Table``/``Tables`` (text, CSV, pandas); :mod:`.units`: time units;
- :mod:`.loading`: what counts as a profile (``as_launches``, ``load_profile_file``);
- :mod:`.frame`: all launches in flat arrays (``frame``, ``Frame``, ``cta_bounds``);
- :mod:`.labels`: kernel names and warp roles (``kernel_name``, ``warp_role_names``, ``ALL_WARPS``);
- :mod:`.interval_algebra` (``union``, ``covered``) and :mod:`.group_stats` (``group_summary``):
  the vectorised helpers;
- the tables: :mod:`.scope_tables` (scopes, roles, overlap), :mod:`.idle_tables` (gaps, idle),
  :mod:`.balance_tables` (ctas, sms, imbalance).

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

import dataclasses
from collections.abc import Sequence
from typing import Any

from kperf.dialect.errors import KperfError

from .balance_tables import cta_spans, imbalance, sm_stats
from .frame import Frame, cta_bounds, frame
from .group_stats import group_summary
from .idle_tables import CTA_END, CTA_START, gaps, idle
from .interval_algebra import covered, union
from .labels import ALL_WARPS, kernel_name, warp_role_names
from .loading import as_launches, load_profile_file
from .scope_tables import overlap, role_stats, scope_stats
from .tables import Table, Tables


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


__all__ = ["ALL_WARPS", "CTA_END", "CTA_START", "Frame", "Report", "Table", "Tables", "as_launches",
           "covered", "cta_bounds", "cta_spans", "frame", "gaps", "group_summary", "idle", "imbalance",
           "kernel_name", "load_profile_file", "overlap", "report", "role_stats", "scope_stats", "sm_stats",
           "union", "warp_role_names"]
