"""One rank's saved profile in a multi-GPU job: a ``.kperf`` file that says which rank wrote it.

A rank's file is an ordinary saved profile (:func:`kperf.tracing.saved.save_profile`: every reader,
``kperf report`` included, loads it as usual) with one more zip member, :data:`TAG_MEMBER`, a JSON
object::

    {"format": "kperf-rank", "version": 1, "rank": 3, "world_size": 8, "local_rank": 3,
     "host": "node12", "device": "NVIDIA H100 80GB HBM3", "device_index": 3, "pid": 4242,
     "backend": "nccl", "sync": [{"phase": "start", "host": [[entered, left], ...],
     "host_ref": [...], "gpu_method": "pingpong", "gpu": [[h_send, g_recv, g_send, h_recv], ...],
     "gpu_ref": [...], "gpu_ref_method": "pingpong", "domain": "node12/<boot id>",
     "domain_ref": "node0/<boot id>"}, {"phase": "end", ...}]}

``sync`` holds the clock exchange of the session's start and end, raw (every reading, ns): this rank's
and rank 0's barrier readings, GPU probes and clock domains (null when unknown), from which
:mod:`.clock_sync` computes the offset to rank 0 and its error bound when the files are merged, so a
better estimator reads old files too.
The member is added after ``save_profile`` wrote the file, to a temporary copy renamed into place, so
the file appears whole or not at all.  Unknown keys are ignored; a malformed tag is a ``KperfError``
naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import zipfile
from collections.abc import Sequence

from kperf.dialect.errors import KperfError

from .clock_sync import GPU_METHODS, RankClock, rank_clock
from .saved import SUFFIX, load_profile, save_profile

TAG_MEMBER = "kperf-rank.json"
TAG_FORMAT = "kperf-rank"
TAG_VERSION = 1


def rank_file_name(rank: int) -> str:
    """``rank3.kperf``: the file a rank's session writes into its folder."""
    return f"rank{rank}{SUFFIX}"


def save_rank_profile(path: str | os.PathLike, launches: Sequence, tag: dict, *,
                      device: str | None = None) -> str:
    """Save ``launches`` (``DecodedLaunch``) as a saved profile tagged with ``tag``; returns the path."""
    path = os.fspath(path)
    check_tag(path, tag)
    return save_profile(path, launches, device=device, extra={TAG_MEMBER: json.dumps(tag, indent=1).encode()})


def _bad(path: str, field: str, expected: str, value) -> KperfError:
    text = repr(value)
    return KperfError(f"{path}: its rank record ({TAG_MEMBER}) has {field} = {text[:60]}, "
                      f"expected {expected}",
                      fix="the file is damaged or was edited; copy the rank's file again or profile the "
                          "job again")


def _int(path: str, tag: dict, key: str, lo: int, hi: int | None = None, optional: bool = False):
    v = tag.get(key)
    if v is None and optional:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or (hi is not None and v >= hi):
        raise _bad(path, key, f"an int >= {lo}" + (f" and < {hi}" if hi is not None else ""), v)
    return v


def check_tag(path: str, tag) -> dict:
    """``tag`` if it is a well-formed rank record, else a ``KperfError`` naming the field."""
    if not isinstance(tag, dict) or tag.get("format") != TAG_FORMAT:
        raise _bad(path, "format", repr(TAG_FORMAT), tag.get("format") if isinstance(tag, dict) else tag)
    v = tag.get("version")
    if not isinstance(v, int) or v > TAG_VERSION or v < 1:
        raise KperfError(f"{path}: rank record of version {v!r}; this kperf reads version {TAG_VERSION}",
                         fix="upgrade kperf (pip install -U kperf)")
    world = _int(path, tag, "world_size", 1)
    _int(path, tag, "rank", 0, world)
    _int(path, tag, "local_rank", 0, optional=True)
    for key in ("host", "device", "backend"):
        if tag.get(key) is not None and not isinstance(tag[key], str):
            raise _bad(path, key, "a string or null", tag[key])
    sync = tag.get("sync", [])
    if not isinstance(sync, list) or not all(isinstance(p, dict) for p in sync):
        raise _bad(path, "sync", "a list of objects", sync)
    for i, p in enumerate(sync):
        if p.get("gpu_method", "none") not in GPU_METHODS:
            raise _bad(path, f"sync[{i}].gpu_method", f"one of {', '.join(GPU_METHODS)}", p.get("gpu_method"))
        for key in ("host", "host_ref", "gpu", "gpu_ref"):
            if not isinstance(p.get(key, []), list):
                raise _bad(path, f"sync[{i}].{key}", "a list of clock readings", p.get(key))
    return tag


def read_rank_tag(path: str | os.PathLike) -> dict | None:
    """The rank record of a saved profile, ``None`` for a profile saved outside a multi-GPU session."""
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as z:
            if TAG_MEMBER not in z.namelist():
                return None
            text = z.read(TAG_MEMBER)
    except (zipfile.BadZipFile, OSError, EOFError):
        return None  # load_profile reports what is wrong with the file itself
    try:
        tag = json.loads(text)
    except ValueError as e:
        raise _bad(path, "its text", "JSON", str(e)) from None
    return check_tag(path, tag)


@dataclasses.dataclass
class RankProfile:
    """One rank's launches and what its file says of it."""

    rank: int
    world_size: int
    path: str
    launches: list
    clock: RankClock
    host: str = ""
    device: str = ""
    tagged: bool = True
    gpu_method: str = "none"

    @property
    def label(self) -> str:
        """``"rank 3 (node12, NVIDIA H100 80GB HBM3)"``."""
        where = ", ".join(x for x in (self.host, self.device) if x)
        return f"rank {self.rank}" + (f" ({where})" if where else "")


def load_rank(path: str | os.PathLike, rank: int | None = None) -> RankProfile:
    """A rank's profile; an untagged profile becomes rank ``rank`` of an unknown world, unaligned."""
    path = os.fspath(path)
    launches = list(load_profile(path))
    tag = read_rank_tag(path)
    if tag is None:
        return RankProfile(rank or 0, 0, path, launches, RankClock(), tagged=False)
    sync = tag.get("sync") or []
    try:
        clock = rank_clock(sync, is_reference=tag["rank"] == 0)
    except KperfError as e:
        raise KperfError(f"{path}: {e}", fix=e.fix) from None
    method = sync[0].get("gpu_method", "none") if sync else "none"
    return RankProfile(tag["rank"], tag["world_size"], path, launches, clock, tag.get("host") or "",
                       tag.get("device") or "", True, method)


def profile_paths(paths: Sequence[str | os.PathLike]) -> list[str]:
    """The ``.kperf`` files named: files as given, folders by their ``rank*.kperf`` files, else all their
    ``*.kperf`` files (sorted)."""
    out: list[str] = []
    for p in map(pathlib.Path, paths):
        if p.is_dir():  # the ranks' files when it holds some (a plain profile.kperf beside them is not one)
            found = sorted(str(f) for f in p.glob(f"rank*{SUFFIX}") if f.is_file()) \
                or sorted(str(f) for f in p.glob(f"*{SUFFIX}") if f.is_file())
            if not found:
                raise KperfError(f"{p} holds no {SUFFIX} files",
                                 fix="give the folder the ranks' sessions wrote "
                                     "(kperf.distributed.session(out_dir))")
            out += found
        elif p.is_file():
            out.append(str(p))
        else:
            raise KperfError(f"no profile at {p}", fix="give .kperf files or the folder holding them")
    return out


def load_ranks(paths: Sequence[str | os.PathLike]) -> tuple[list[RankProfile], list[str]]:
    """Every rank's profile from files and folders, sorted by rank, and notes on what is missing.

    Profiles without a rank record (saved outside a multi-GPU session) are accepted only all together:
    they become ranks 0, 1, ... in the order given, unaligned."""
    files = profile_paths(paths)
    ranks = [load_rank(f, i) for i, f in enumerate(files)]
    tagged = [r for r in ranks if r.tagged]
    notes: list[str] = []
    if tagged and len(tagged) != len(ranks):
        plain = next(r.path for r in ranks if not r.tagged)
        raise KperfError(f"{plain} is not a rank's profile (no {TAG_MEMBER}), but other files are",
                         fix="merge the files of one job's ranks only (kperf.distributed.session "
                             "writes them)")
    if not tagged:
        notes.append("no file carries a rank record: files are ranks 0.. in the order given, and their "
                     "clocks are not aligned (globaltimers taken as they are)")
        return ranks, notes
    worlds = {r.world_size for r in ranks}
    if len(worlds) > 1:
        sizes = ", ".join(map(str, sorted(worlds)))
        raise KperfError(f"the files come from jobs of different sizes ({sizes} ranks)",
                         fix="merge the files of one job only")
    seen: dict[int, str] = {}
    for r in ranks:
        if r.rank in seen:
            raise KperfError(f"rank {r.rank} is given twice: {seen[r.rank]} and {r.path}",
                             fix="give each rank's file once (the files of one run)")
        seen[r.rank] = r.path
    ranks.sort(key=lambda r: r.rank)
    missing = sorted(set(range(worlds.pop())) - set(seen))
    if missing:
        from ._common import fmt_ids
        notes.append(f"ranks {fmt_ids(missing)} are missing: merged the {len(ranks)} given")
    return ranks, notes
