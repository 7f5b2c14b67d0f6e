"""Events as column arrays: the compact form the decoder, the pairing and the writers work on.

A launch's events are grouped in *segments*, one per warp that has events, in (launch, cta, warp)
order; inside a segment they are in program order (``seq`` increasing).  Per event only ``scope``,
``is_end``, ``cycles`` and ``time_ns`` are stored (17 or 21 bytes instead of the 48 of an
``EVENT_DTYPE`` row); ``launch``, ``cta``, ``sm``, ``warp`` and ``seq`` come from the segments when
asked for.  :meth:`EventColumns.to_structured` builds the ``EVENT_DTYPE`` table.
"""

from __future__ import annotations

import numpy as np

#: One record, decoded.  Sorted by (cta, warp, seq) in a DecodedLaunch.
EVENT_DTYPE = np.dtype(
    [
        ("launch", "<u4"),  # launch number given to decode()
        ("cta", "<u4"),  # linear CTA id (= region index in the buffer)
        ("sm", "<u4"),  # %smid at the CTA's entry
        ("warp", "<u2"),  # warp index within the CTA
        ("scope", "<u4"),  # scope id (index into the kernel's scope table)
        ("is_end", "?"),  # True: scope end, False: scope start
        ("seq", "<u4"),  # index of the record in its warp's stream, 0-based, lost records counted
        ("cycles", "<i8"),  # absolute SM cycles (clock64 domain); globaltimer ns for clock="globaltimer"
        ("time_ns", "<f8"),  # ns since the launch's earliest CTA entry (t0_ns), common to all SMs
    ],
    align=True,
)

#: per-event fields stored as columns; the others come from the segments
STORED = ("scope", "is_end", "cycles", "time_ns")
SEGMENT_FIELDS = ("launch", "cta", "sm", "warp")


class EventColumns:
    """Events of one or more launches as columns, grouped in segments (one per warp with events).

    Args:
        seg: ``{"launch", "cta", "sm", "warp", "first_seq", "n"}`` int64 arrays, one entry per
            segment: the segment's warp, the ``seq`` of its first event and its number of events.
        scope, is_end, cycles, time_ns: per-event columns.
        seq: per-event ``seq`` when it is not ``first_seq`` + position (records were dropped).
        start: the segments' offsets (``[0, *cumsum(n)]``, int64) when the caller has them.
    """

    def __init__(self, seg: dict[str, np.ndarray], scope: np.ndarray, is_end: np.ndarray,
                 cycles: np.ndarray, time_ns: np.ndarray, seq: np.ndarray | None = None,
                 start: np.ndarray | None = None):
        self.seg = {k: np.asarray(v, np.int64) for k, v in seg.items()}
        if start is None:
            start = np.zeros(len(self.seg["n"]) + 1, np.int64)
            np.cumsum(self.seg["n"], out=start[1:])
        self.start = start  # segment offsets
        self.cols = {"scope": scope, "is_end": is_end, "cycles": cycles, "time_ns": time_ns}
        if seq is not None:
            self.cols["seq"] = seq
        if int(self.start[-1]) != len(scope):
            raise ValueError(f"segments hold {int(self.start[-1])} events but the columns {len(scope)}")

    def __len__(self) -> int:
        return len(self.cols["scope"])

    @property
    def n_segments(self) -> int:
        return len(self.seg["n"])

    def segment_of(self, idx: np.ndarray) -> np.ndarray:
        """Segment index of the events at positions ``idx``."""
        return np.searchsorted(self.start, idx, side="right") - 1

    def column(self, name: str, idx: np.ndarray | slice | None = None) -> np.ndarray:
        """The ``EVENT_DTYPE`` field ``name`` for all events, or for the positions / slice ``idx``."""
        if name in self.cols:
            c = self.cols[name]
            return c if idx is None else c[idx]
        if name not in EVENT_DTYPE.names:
            raise KeyError(f"no event field {name!r}; fields: {', '.join(EVENT_DTYPE.names)}")
        pos = self._positions(idx)
        if pos is None:  # everything: repeat per segment
            if name == "seq":
                return (np.arange(len(self), dtype=np.int64)
                        + np.repeat(self.seg["first_seq"] - self.start[:-1], self.seg["n"]))
            return np.repeat(self.seg[name], self.seg["n"])
        s = self.segment_of(pos)
        if name == "seq":
            return self.seg["first_seq"][s] + (pos - self.start[s])
        return self.seg[name][s]

    def _positions(self, idx) -> np.ndarray | None:
        if idx is None:
            return None
        if isinstance(idx, slice):
            return np.arange(*idx.indices(len(self)), dtype=np.int64)
        return np.asarray(idx, np.int64)

    __getitem__ = column

    def segments_of_range(self, a: int, b: int) -> np.ndarray:
        """Segment index of each event in positions ``a .. b-1`` (no search per event)."""
        sa = int(np.searchsorted(self.start, a, side="right")) - 1
        sb = int(np.searchsorted(self.start, b, side="left"))
        edges = np.clip(self.start[sa : sb + 1], a, b)
        return np.repeat(np.arange(sa, sb, dtype=np.int64), np.diff(edges))

    def to_structured(self, idx: np.ndarray | slice | None = None, chunk: int = 1 << 16) -> np.ndarray:
        """The events (all, or at positions / slice ``idx``) as an ``EVENT_DTYPE`` array."""
        pos = self._positions(idx)
        n = len(self) if pos is None else len(pos)
        out = np.zeros(n, EVENT_DTYPE)
        for a in range(0, n, chunk):  # chunks keep each block in cache across its fields
            b = min(a + chunk, n)
            if pos is None:
                p, s = slice(a, b), self.segments_of_range(a, b)
                local = np.arange(a, b, dtype=np.int64) - self.start[s]
            else:
                p = pos[a:b]
                s = self.segment_of(p)
                local = p - self.start[s]
            o = out[a:b]
            for f in SEGMENT_FIELDS:
                o[f] = self.seg[f][s]
            o["seq"] = self.cols["seq"][p] if "seq" in self.cols else self.seg["first_seq"][s] + local
            for f in STORED:
                o[f] = self.cols[f][p]
        return out

    @classmethod
    def from_structured(cls, events: np.ndarray) -> EventColumns:
        """Columns of an ``EVENT_DTYPE`` array sorted by (launch, cta, warp, seq)."""
        e = events
        E = len(e)
        new = np.ones(E, bool)
        if E:
            new[1:] = ((e["launch"][1:] != e["launch"][:-1]) | (e["cta"][1:] != e["cta"][:-1])
                       | (e["warp"][1:] != e["warp"][:-1]))
        first = np.flatnonzero(new)
        n = np.diff(np.r_[first, E])
        seg = {f: e[f][first] for f in SEGMENT_FIELDS}
        seg["first_seq"] = e["seq"][first]
        seg["n"] = n
        return cls(seg, e["scope"].copy(), e["is_end"].copy(), e["cycles"].copy(), e["time_ns"].copy(),
                   seq=e["seq"].astype(np.int64))
