"""Every rank of a multi-GPU job on one time axis: the launches of all ranks' profiles, aligned.

:func:`merge` takes the ranks' profiles (:mod:`.rank_file`) and shifts each launch onto rank 0's
globaltimer by its rank's offset at the launch's start (:mod:`.clock_sync`: measured at session start
and end, linear in between).  One shift per launch, not per event: within a launch (microseconds to
milliseconds) the drift moves the offset by far less than its error bound, and a launch's events keep
their exact spacing.

Launches of different ranks are matched into *steps* by kernel name and occurrence: the k-th launch of
kernel ``matmul`` on every rank is step k of ``matmul``, so a rank that launched an extra kernel does
not shift the others' matching (a job launches the same kernels in the same order on every rank).
The launch table (:data:`LAUNCH_DTYPE`) is what the statistics (:mod:`.rank_stats`) and the merged
trace (:mod:`.merge_trace`) read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from kperf.dialect.errors import KperfError

from .labels import kernel_name
from .rank_file import RankProfile, load_ranks

#: One row per launch of every rank, sorted by (rank, position in the rank's profile).
LAUNCH_DTYPE = np.dtype([
    ("rank", "<u4"),
    ("index", "<u4"),  # position of the launch in its rank's profile
    ("launch", "<u4"),  # the launch number the rank's process gave it
    ("kernel", "<u4"),  # index into Merged.kernels
    ("step", "<u4"),  # occurrence of this kernel on this rank: 0, 1, 2, ...
    ("start_ns", "<i8"),  # first CTA entry, rank 0's globaltimer (absolute ns)
    ("end_ns", "<i8"),  # last CTA exit (or latest event), same axis
    ("duration_ns", "<f8"),
    ("shift_ns", "<i8"),  # added to the rank's own globaltimer to reach rank 0's
    ("err_ns", "<f8"),  # bound on the error of shift_ns
    ("lost", "<u8"),  # records lost to capacity in this launch
])


@dataclasses.dataclass
class Merged:
    """All ranks' launches on rank 0's globaltimer axis.

    Attributes:
        ranks: the ranks' profiles, sorted by rank.
        launches: ``LAUNCH_DTYPE`` table.
        kernels: kernel names (``launches["kernel"]`` indexes it).
        aligned: whether clock offsets were applied (False: globaltimers as recorded).
        notes: what the reader should know (missing ranks, unaligned files, inconsistent exchanges).
    """

    ranks: list[RankProfile]
    launches: np.ndarray
    kernels: list[str]
    aligned: bool
    notes: list[str] = dataclasses.field(default_factory=list)

    def decoded(self, row: int):
        """The ``DecodedLaunch`` of row ``row`` of the launch table."""
        r = self.launches[row]
        return self._by_rank[int(r["rank"])].launches[int(r["index"])]

    def rank(self, rank: int) -> RankProfile:
        return self._by_rank[rank]

    def __post_init__(self):
        self._by_rank = {r.rank: r for r in self.ranks}


def _rank_rows(r: RankProfile, names: dict[str, int], align: bool) -> np.ndarray:
    rows = np.zeros(len(r.launches), LAUNCH_DTYPE)
    t0 = np.array([int(d.t0_ns) for d in r.launches], np.int64)
    dur = np.array([float(d.duration_ns) for d in r.launches])
    kid = np.array([names.setdefault(kernel_name(d), len(names)) for d in r.launches], np.int64)
    shift, err = r.clock.shift(t0) if align else (np.zeros(len(t0), np.int64), np.zeros(len(t0)))
    rows["rank"], rows["index"] = r.rank, np.arange(len(r.launches))
    rows["launch"] = [int(d.launch) for d in r.launches]
    rows["kernel"] = kid
    rows["step"] = _occurrence(kid)
    rows["start_ns"] = t0 + shift
    rows["end_ns"] = rows["start_ns"] + np.ceil(dur).astype(np.int64)
    rows["duration_ns"], rows["shift_ns"], rows["err_ns"] = dur, shift, err
    rows["lost"] = [int(d.lost_total) for d in r.launches]
    return rows


def _occurrence(key: np.ndarray) -> np.ndarray:
    """For each entry, how many equal keys come before it (0 for the first of each)."""
    order = np.argsort(key, kind="stable")
    k = key[order]
    first = np.r_[0, np.flatnonzero(k[1:] != k[:-1]) + 1] if len(k) else np.zeros(0, np.int64)
    run_start = np.repeat(first, np.diff(np.r_[first, len(k)]))
    out = np.empty(len(key), np.int64)
    out[order] = np.arange(len(k)) - run_start
    return out


def merge(ranks: Sequence[RankProfile], *, align: bool = True, notes: Sequence[str] = ()) -> Merged:
    """The ranks' launches on one axis (rank 0's globaltimer); ``align=False`` keeps each rank's own."""
    ranks = sorted(ranks, key=lambda r: r.rank)
    if not ranks:
        raise KperfError("nothing to merge: no rank profiles given",
                         fix="give the .kperf files of a job's ranks, or the folder holding them")
    names: dict[str, int] = {}
    table = np.concatenate([_rank_rows(r, names, align) for r in ranks])
    out = list(notes)
    aligned = align and any(r.clock.aligned for r in ranks)
    if align and not all(r.clock.aligned for r in ranks if r.tagged):
        out.append("some ranks recorded no clock exchange: their times are their own globaltimer's")
    bad = [r.rank for r in ranks if any(not p.delta.consistent for p in r.clock.points)]
    if bad:
        out.append(f"ranks {bad}: the exchange rounds disagreed (a clock stepped during the exchange?); "
                   "their offsets come from the narrowest round and may be off by more than the bound says")
    return Merged(ranks, table, list(names), aligned, out)


def merge_files(paths: Sequence, *, align: bool = True) -> Merged:
    """:func:`merge` of the profiles in ``paths`` (``.kperf`` files or folders of them)."""
    ranks, notes = load_ranks(paths)
    return merge(ranks, align=align, notes=notes)
