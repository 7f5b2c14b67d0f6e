"""Statistics over decoded launches: scopes, warp roles, CTA spans, overlap, bubbles, load imbalance.

Every function takes one :class:`~kperf.tracing.decode.DecodedLaunch`, a list of them (e.g. from
:func:`kperf.tracing.saved.load_profile`) or a ``kperf.Profile``, and returns a :class:`Table`
(columns of numpy arrays) that prints as aligned text, writes CSV (``to_csv``) and turns into a
pandas DataFrame (``to_pandas``, when pandas is installed).  :func:`report` gathers the tables, each
computed when first read (:class:`LazyTables`): ``kperf report --tables scopes`` computes one.

This module is the entry point; the parts live by concern, and their public names are re-exported
here:

- :mod:`.tables`: ``Table``/``Tables`` (text, CSV, pandas); :mod:`.units`: time units;
- :mod:`.loading`: what counts as a profile (``as_launches``, ``load_profile_file``);
- :mod:`.frame`: the launches' names as codes, their CTAs, and their intervals launch by launch in
  sorted columns, read in pieces (``frame``, ``Frame``, ``cta_bounds``);
- :mod:`.labels`: kernel names and warp roles (``kernel_name``, ``warp_role_names``, ``ALL_WARPS``);
- :mod:`.interval_algebra` (``union``, ``covered``, the walk through each CTA's intervals) and
  :mod:`.group_stats` (``group_summary``; order statistics in bounded memory): the vectorised helpers;
- the tables: :mod:`.kernel_tables` (kernels: one row per kernel over its launches),
  :mod:`.scope_tables` (scopes, roles, overlap), :mod:`.idle_tables` (gaps, idle),
  :mod:`.balance_tables` (ctas, sms, imbalance).

Work is vectorised over intervals with numpy (``bincount``, selections, a sort per CTA's points); the
intervals come sorted from decoding and are never copied whole; Python loops run over launches,
pieces, scopes and table rows only.  What each number means: ``docs/statistics.md``.

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
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from kperf.dialect.errors import KperfError

from .balance_tables import cta_spans, imbalance, sm_stats
from .frame import Frame, cta_bounds, frame
from .group_stats import group_summary
from .idle_tables import CTA_END, CTA_START, gaps, idle
from .interval_algebra import covered, union
from .kernel_tables import MANY_LAUNCHES, kernel_stats, launch_lines
from .labels import ALL_WARPS, kernel_name, warp_role_names
from .loading import as_launches, load_profile_file
from .progress import progress
from .scope_tables import overlap, role_stats, scope_stats
from .tables import Table, Tables

#: every table of a report, in print order, and what computes it
TABLES: dict[str, Callable[[Frame], Table]] = {
    "kernels": kernel_stats, "scopes": scope_stats, "roles": role_stats, "gaps": gaps, "idle": idle,
    "overlap": overlap, "imbalance": imbalance, "sms": sm_stats, "ctas": cta_spans,
}


class LazyTables(Mapping):
    """``{name: Table}`` whose tables are computed when first read (``name in x`` computes nothing)."""

    def __init__(self, f: Frame, names: Sequence[str]):
        self._frame, self._names, self._done = f, list(names), {}

    def __getitem__(self, name: str) -> Table:
        if name not in self._names:
            raise KeyError(name)
        if name not in self._done:
            self._done[name] = TABLES[name](self._frame)
        return self._done[name]

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def prepare(self, names: Sequence[str]) -> None:
        """Compute ``names`` now (a progress bar on a terminal for a large profile); with the overlap
        among them, one walk through each CTA's intervals serves the busy times of ``idle`` and ``ctas``."""
        if "overlap" in names and "overlap" not in self._done:
            self._frame.sweep_cover = True
        todo = [n for n in names if n in self._names and n not in self._done]
        with progress(len(todo), "statistics", events=2 * self._frame.n_intervals, unit="table") as bar:
            for name in todo:
                bar.set_postfix_str(name)
                self[name]
                bar.update()

    def __repr__(self) -> str:
        return f"LazyTables({self._names}, computed={list(self._done)})"


@dataclasses.dataclass
class Report(Tables):
    """All statistics tables of a profile (see ``Tables``: print, CSV, pandas), each computed when
    first asked for."""

    tables: Mapping[str, Table]
    header: list[str]

    def to_text(self, time_unit: str = "us", max_rows: int | None = 40,
                include: Sequence[str] | None = None) -> str:
        names = list(include) if include is not None else [n for n in self.tables if n != "ctas"]
        if isinstance(self.tables, LazyTables):
            self.tables.prepare(names)
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

    def to_csv(self, out_dir: str | os.PathLike) -> dict[str, str]:
        if isinstance(self.tables, LazyTables):
            self.tables.prepare(list(self.tables))
        return super().to_csv(out_dir)


def report(profile: Any, tables: Sequence[str] | None = None) -> Report:
    """The statistics tables of a profile: kernels, scopes, roles, gaps, idle, overlap, imbalance, sms, ctas
    (or those named in ``tables``), each computed when first read.  The header has each launch's summary;
    past :data:`~.kernel_tables.MANY_LAUNCHES` launches only those of the launches that lost or rejected
    records or have problems (:func:`~.kernel_tables.launch_lines`)."""
    f = frame(profile)
    if not f.launches:
        raise KperfError("the profile holds no launches", fix="profile a kernel that has kperf scopes")
    names = list(TABLES) if tables is None else list(tables)
    bad = [t for t in names if t not in TABLES]
    if bad:
        raise KperfError(f"unknown table {', '.join(bad)}", fix=f"choose among {', '.join(TABLES)}")

    def lines_of(d) -> list[str]:
        text = d.summary()
        return [text if kernel_name(d) in text.split("\n")[0] else f"[{kernel_name(d)}] {text}"]

    header = launch_lines(f.launches, lines_of)
    if f.dropped:
        header.append(f"{f.dropped} intervals have no time (no SM clock rate could be measured) and are "
                      "left out of every table")
    return Report(LazyTables(f, names), header)


__all__ = ["ALL_WARPS", "CTA_END", "CTA_START", "Frame", "Report", "Table", "Tables", "as_launches",
           "covered", "cta_bounds", "cta_spans", "frame", "gaps", "group_summary", "idle", "imbalance",
           "kernel_name", "kernel_stats", "launch_lines", "load_profile_file", "MANY_LAUNCHES", "overlap",
           "report", "role_stats", "scope_stats", "sm_stats", "union", "warp_role_names", "TABLES",
           "LazyTables"]
