"""Which CTAs a trace shows.  Statistics always cover every event; a trace of a large launch holds a
subset a viewer can open.

A selection is written as a short spec (the same in Python and on the command line):

- ``all``: every CTA;
- ``first-wave``: the CTAs that started before the first CTA on their SM ended (the first wave of a
  persistent-looking launch: one or a few CTAs per SM);
- ``first:N``: the N lowest CTA ids;
- ``ctas:0-15,37``: these CTA ids (linear ids, ranges inclusive);
- ``sms:0,1,8-9``: every CTA that started on these SMs;
- ``every:K``: CTA ids 0, K, 2K, ...;
- ``sample:N`` or ``sample:N:SEED``: N CTAs drawn at random (seeded, default seed 0).

Ids lie in [0, 2**32) and a spec names at most :data:`MAX_IDS` of them; counts lie in [1, 2**32) and
seeds in [0, 2**64): anything else is a ``KperfError`` naming the spec and the range.

With no selection given (``None``), a launch of at most :data:`DEFAULT_MAX_EVENTS` events is written
whole and a larger one as its first wave, with a note in the trace and one printed line saying how
many events were left out and how to get them all.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

from kperf.dialect.errors import KperfError

from ._common import fmt_ids, plural

#: A launch with more events than this gets the first wave by default.
DEFAULT_MAX_EVENTS = 1_000_000

KINDS = ("all", "first-wave", "first", "ctas", "sms", "every", "sample")
_SPEC_HELP = "all, first-wave, first:N, ctas:0-15,37, sms:0,1, every:K or sample:N[:SEED]"


@dataclasses.dataclass(frozen=True)
class Selection:
    """A parsed selection spec (see the module docstring)."""

    kind: str = "all"
    ids: tuple[int, ...] = ()  # ctas / sms
    n: int = 0  # first: N, every: K, sample: N
    seed: int = 0

    def __str__(self) -> str:
        if self.kind in ("ctas", "sms"):
            return f"{self.kind}:{','.join(str(i) for i in self.ids)}"
        if self.kind in ("first", "every"):
            return f"{self.kind}:{self.n}"
        if self.kind == "sample":
            return f"sample:{self.n}" + (f":{self.seed}" if self.seed else "")
        return self.kind

    def describe(self) -> str:
        return {"all": "every CTA", "first-wave": "the first wave (CTAs that started before the first "
                "CTA on their SM ended)", "first": f"the first {self.n} CTAs",
                "ctas": f"CTAs {fmt_ids(self.ids, total=len(self.ids))}",
                "sms": f"the CTAs on SMs {fmt_ids(self.ids, total=len(self.ids))}",
                "every": f"every {self.n}th CTA",
                "sample": f"{self.n} CTAs sampled at random (seed {self.seed})",
                }[self.kind]


#: ids (CTA, SM) a selection may name: below 2**32, at most MAX_IDS of them
ID_LIMIT = 1 << 32
MAX_IDS = 1 << 20
#: largest count of first:N / every:K / sample:N, and seeds below 2**64
COUNT_LIMIT = 1 << 32
SEED_LIMIT = 1 << 64


def _ints(text: str, spec: str) -> tuple[int, ...]:
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
            else:
                lo = hi = int(part)
        except ValueError:
            raise KperfError(f"cannot read {part!r} in the trace selection {spec!r} as an id or a range",
                             fix="write ids and inclusive ranges like ctas:0-15,37") from None
        if lo < 0:
            raise KperfError(f"negative id in the trace selection {spec!r}", fix="ids start at 0")
        if hi >= ID_LIMIT:
            raise KperfError(f"id {hi} in the trace selection {spec!r} is out of range: ids lie in "
                             f"[0, {ID_LIMIT})", fix="give CTA or SM ids of the launch, e.g. sms:0-3")
        if hi - lo + 1 + len(out) > MAX_IDS:
            raise KperfError(f"the trace selection {spec!r} names more than {MAX_IDS:,} ids",
                             fix="select fewer CTAs, or use all, first:N, every:K or sample:N")
        out.update(range(lo, hi + 1))
    return tuple(sorted(out))


def parse_selection(spec: str | Selection | None) -> Selection | None:
    """A :class:`Selection` from a spec string (``None`` stays ``None``: the default)."""
    if spec is None or isinstance(spec, Selection):
        return spec
    if not isinstance(spec, str):
        raise KperfError(f"a trace selection is a string, got {type(spec).__name__}", fix=f"use {_SPEC_HELP}")
    s = spec.strip().lower()
    kind, _, arg = s.partition(":")
    if kind not in KINDS:
        raise KperfError(f"unknown trace selection {spec!r}", fix=f"use {_SPEC_HELP}")
    if kind in ("all", "first-wave"):
        if arg:
            raise KperfError(f"trace selection {kind!r} takes no argument, got {spec!r}", fix=f"write {kind}")
        return Selection(kind)
    if not arg:
        raise KperfError(f"trace selection {kind!r} needs an argument", fix=f"use {_SPEC_HELP}")
    if kind in ("ctas", "sms"):
        return Selection(kind, ids=_ints(arg, spec))
    parts = arg.split(":")
    try:
        n = int(parts[0])
        seed = int(parts[1]) if kind == "sample" and len(parts) > 1 else 0
        in_range = 0 < n < COUNT_LIMIT and 0 <= seed < SEED_LIMIT
        if len(parts) > (2 if kind == "sample" else 1) or not in_range:
            raise ValueError
    except ValueError:
        raise KperfError(f"trace selection {spec!r}: expected a positive count below {COUNT_LIMIT}"
                         + (f" and a seed in [0, {SEED_LIMIT})" if kind == "sample" else ""),
                         fix=f"use {_SPEC_HELP}") from None
    return Selection(kind, n=n, seed=seed)


def cta_mask(decoded, sel: Selection) -> np.ndarray:
    """Boolean mask over ``decoded.ctas`` of the CTAs ``sel`` picks (good CTAs only)."""
    ctas = decoded.ctas
    ok = ctas["ok"].copy()
    n = len(ctas)
    cta_id = np.arange(n)
    if sel.kind == "all":
        return ok
    if sel.kind == "first-wave":
        return ok & first_wave(ctas)
    if sel.kind == "first":
        good = np.flatnonzero(ok)[: sel.n]
        m = np.zeros(n, bool)
        m[good] = True
        return m
    if sel.kind == "ctas":
        ids = np.array(sel.ids, np.int64)
        return ok & np.isin(cta_id, ids)
    if sel.kind == "sms":
        return ok & np.isin(ctas["sm"].astype(np.int64), np.array(sel.ids, np.int64))
    if sel.kind == "every":
        return ok & (cta_id % sel.n == 0)
    good = np.flatnonzero(ok)  # sample
    pick = np.random.default_rng(sel.seed).choice(good, size=min(sel.n, len(good)), replace=False)
    m = np.zeros(n, bool)
    m[pick] = True
    return m


def first_wave(ctas: np.ndarray) -> np.ndarray:
    """CTAs (``CTA_DTYPE`` rows) that started before the earliest end of a CTA on their SM.

    SMs where no CTA has a valid exit time keep all their CTAs."""
    ok = ctas["ok"]
    sm = ctas["sm"].astype(np.int64)
    gs = ctas["gtime_start"].astype(np.int64)
    ge = ctas["gtime_end"].astype(np.int64)
    ended = ok & ctas["end_ok"]
    top = int(sm.max()) + 1 if len(sm) else 0
    big = np.iinfo(np.int64).max
    first_end = np.full(top, big, np.int64)
    np.minimum.at(first_end, sm[ended], ge[ended])
    return ok & (gs < first_end[sm]) if top else ok


@dataclasses.dataclass
class Subset:
    """What a trace of one launch holds.

    ``segments``: indices of the selected segments of ``decoded.columns``; ``intervals`` /
    ``unmatched``: indices into ``decoded.pairs()`` (``start`` / ``unmatched``); ``None`` means all.
    """

    selection: Selection
    automatic: bool  # chosen by default (the launch was too large)
    ctas: np.ndarray  # bool per CTA region
    segments: np.ndarray | None
    intervals: np.ndarray | None
    unmatched: np.ndarray | None
    n_events: int
    n_events_total: int
    n_intervals: int
    n_intervals_total: int

    @property
    def whole(self) -> bool:
        return self.n_events == self.n_events_total

    def note(self) -> str:
        """One line: what the trace holds and how to get everything."""
        kept_ctas = int(self.ctas.sum())
        return (f"trace holds {self.selection.describe()}: {plural(kept_ctas, 'CTA')} of "
                f"{len(self.ctas)}, {self.n_events:,} of {self.n_events_total:,} events "
                f"({self.n_events_total - self.n_events:,} left out; statistics cover all); "
                "write them all with select='all' (kperf export --select all)")

    def meta(self) -> dict:
        return {"selection": str(self.selection), "automatic": self.automatic,
                "ctas": int(self.ctas.sum()), "ctas_total": int(len(self.ctas)),
                "events": self.n_events, "events_total": self.n_events_total,
                "intervals": self.n_intervals, "intervals_total": self.n_intervals_total}


def ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(lo[i], hi[i])`` for all i (int64), without a Python loop."""
    lo = np.asarray(lo, np.int64)
    n = np.asarray(hi, np.int64) - lo
    total = int(n.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    starts = np.cumsum(n) - n
    return np.arange(total, dtype=np.int64) + np.repeat(lo - starts, n)


def subset(decoded, select: str | Selection | None = None, *, max_events: int = DEFAULT_MAX_EVENTS,
           announce: bool = True) -> Subset:
    """The part of ``decoded`` (a ``DecodedLaunch``) that a trace written with ``select`` holds.

    With ``select=None`` a launch of more than ``max_events`` events gets its first wave, and (when
    ``announce``) one line on stderr says so.
    """
    sel = parse_selection(select)
    automatic = sel is None
    cols = decoded.columns
    total = len(cols)
    if sel is None:
        sel = Selection("all") if total <= max_events else Selection("first-wave")
    pairs = decoded.pairs()
    mask = cta_mask(decoded, sel)
    if sel.kind == "all" or mask.sum() == decoded.ctas["ok"].sum():
        return Subset(sel, automatic, mask, None, None, None, total, total, len(pairs), len(pairs))
    seg_keep = np.flatnonzero(mask[cols.seg["cta"]])
    lo, hi = cols.start[seg_keep], cols.start[seg_keep + 1]
    iv = ranges(np.searchsorted(pairs.start, lo), np.searchsorted(pairs.start, hi))
    un = ranges(np.searchsorted(pairs.unmatched, lo), np.searchsorted(pairs.unmatched, hi))
    n_events = int((hi - lo).sum())
    out = Subset(sel, automatic, mask, seg_keep, iv, un, n_events, total, len(iv), len(pairs))
    if automatic and announce and n_events < total:
        name = f" {decoded.kernel}" if decoded.kernel else ""
        print(f"kperf: launch {decoded.launch}{name}: {out.note()}", file=sys.stderr)
    return out
