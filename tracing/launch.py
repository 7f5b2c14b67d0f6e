"""What :func:`~kperf.tracing.decode.decode` returns: one launch's events and the tables around them.

:class:`DecodedLaunch` holds the events (:class:`~kperf.tracing.columns.EventColumns`, with an
``EVENT_DTYPE`` table built on demand), one ``CTA_DTYPE`` row per CTA region, one ``LOST_DTYPE`` row
per warp that overflowed, one ``REJECTED_DTYPE`` row per record the decoder did not trust (left out of
the events: :mod:`~kperf.tracing.record_checks`), the clock measurement (``t0_ns``, ``clock_ghz``,
``sm_clocks``) and the data problems found while decoding, plus what the caller told the decoder about
the kernel (name, scope table, warp roles, grid) and facts about the launch as a whole that the runtime
knows (``info``: e.g. the graph ops an Inductor kernel fused, a CUDA-graph replay number; :func:`plain_info`
says what it may hold), so traces and saved profiles need nothing else.

Units: ``cycles`` are SM clock cycles in the ``%clock64`` domain of the CTA headers (for
``clock="globaltimer"`` they are absolute globaltimer ns); ``time_ns`` is ns since the launch's
earliest CTA entry (``DecodedLaunch.t0_ns``, absolute globaltimer ns), on one axis for all SMs.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from kperf.dialect.layout import Geometry

from .columns import EventColumns
from .intervals import Pairs, pair_columns
from .launch_args import info_text
from .record_checks import REJECT_REASONS, REJECTED_DTYPE

#: One row per CTA region of the buffer.
CTA_DTYPE = np.dtype(
    [
        ("cta", "<u4"),  # linear CTA id (= region index)
        ("sm", "<u4"),  # %smid at entry
        ("sm_end", "<u4"),  # %smid before ret
        ("ctaid_x", "<u4"),
        ("ctaid_y", "<u4"),
        ("ctaid_z", "<u4"),
        ("gtime_start", "<u8"),  # globaltimer ns at entry (absolute)
        ("gtime_end", "<u8"),  # globaltimer ns before ret (absolute; 0 if never written)
        ("clock_start", "<u8"),  # clock64 cycles at entry
        ("clock_end", "<u8"),  # clock64 cycles before ret
        ("ok", "?"),  # header present with the right magic, version and num_warps
        ("sampled_out", "?"),  # sampling (cta_stride / sms) left this CTA out: no records, none lost
        ("end_ok", "?"),  # the exit (globaltimer, clock64) pair is present and consistent
        ("own_rate", "?"),  # its SM's own fitted clock rate was used (else the launch-wide rate)
        ("ns_per_cycle", "<f8"),  # clock conversion used for this CTA (1.0 for globaltimer)
        # ns on the launch axis of the CTA's reference point (clock_start, or gtime_start for
        # globaltimer): time_ns = offset_ns + ns_per_cycle * (cycles - reference)
        ("offset_ns", "<f8"),
        ("n_events", "<u4"),  # records decoded into events
        ("n_lost", "<u8"),  # records lost to the capacity limit (sum over warps)
    ],
    align=True,
)

#: One row per (CTA, warp) whose count exceeded the capacity.
LOST_DTYPE = np.dtype(
    [
        ("cta", "<u4"),
        ("warp", "<u2"),
        ("count", "<u4"),  # records the warp attempted
        ("kept", "<u4"),  # records stored (= capacity)
        ("lost", "<u4"),  # count - kept, exact
    ],
    align=True,
)


@dataclasses.dataclass
class DecodedLaunch:
    """Everything decoded from one launch's buffer.

    Attributes:
        launch: the launch number given to :func:`decode`.
        geometry, strategy: as given.
        columns: the events as :class:`~kperf.tracing.columns.EventColumns`, in (cta, warp, seq)
            order, good CTAs only; ``events`` is the same as an ``EVENT_DTYPE`` table (built on first use).
        ctas: ``CTA_DTYPE`` array, one row per CTA region (good or not).
        lost: ``LOST_DTYPE`` array, one row per (cta, warp) that overflowed.
        lost_total: records lost in the whole launch (exact).
        rejected: ``REJECTED_DTYPE`` array, one row per record the decoder did not trust (invalid tag,
            scope not in the table, time outside its CTA's span or out of order, or the partner of such
            a record; :mod:`kperf.tracing.record_checks`): left out of the events, the intervals and
            everything built on them, and described in ``problems``.
        problems: human-readable descriptions of data problems (empty when all is well).
        t0_ns: absolute globaltimer ns of the launch's earliest CTA entry; ``time_ns`` is relative to it.
        clock_ghz: launch-wide SM clock rate measured from the CTA headers, GHz (NaN if not measurable).
        sm_clocks: ``SM_CLOCK_DTYPE`` array, the per-SM clock measurement.
        scopes: ``{id: name}`` of the scope table given to :func:`decode`, or ``None``.
        gtime_step_ns: the globaltimer resolution seen in the headers (smallest gap between distinct
            readings), ns.
        kernel: the kernel's name ("" when unknown).
        warp_roles: one role name per warp (e.g. ``"producer"``), or ``None``.
        grid: the launch grid ``(x, y, z)`` when known.
        info: facts about the launch as a whole, ``{name: value}`` (a string, int, float, bool or list of
            strings; :func:`plain_info`), e.g. ``{"inductor_ops": "aten.addmm, aten.relu", "replay": 3}``;
            saved with the launch, shown on it in both traces and summed up per kernel in the
            ``kernels`` table.  ``None`` when the runtime told nothing.
        raw: the buffer's bytes (uint8 view, not a copy) as decoded, kept so the launch can be saved
            and re-decoded by a later decoder; ``None`` when not kept.
    """

    launch: int
    geometry: Geometry
    strategy: str
    columns: EventColumns
    ctas: np.ndarray
    lost: np.ndarray
    lost_total: int
    problems: list[str]
    t0_ns: int
    clock_ghz: float
    sm_clocks: np.ndarray
    scopes: dict[int, str] | None = None
    gtime_step_ns: int = 0
    kernel: str = ""
    warp_roles: list[str] | None = None
    grid: tuple[int, int, int] | None = None
    rejected: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, REJECTED_DTYPE))
    info: dict[str, str | int | float | bool | list[str]] | None = None
    raw: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    _events: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    _pairs: Pairs | None = dataclasses.field(default=None, repr=False, compare=False)
    _intervals: tuple | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def n_ctas(self) -> int:
        return len(self.ctas)

    @property
    def n_events(self) -> int:
        return len(self.columns)

    @property
    def rejected_total(self) -> int:
        """Records left out of the events as untrustworthy (``rejected``)."""
        return len(self.rejected)

    @property
    def events(self) -> np.ndarray:
        """All events as an ``EVENT_DTYPE`` array, sorted by (cta, warp, seq) (built once)."""
        if self._events is None:
            self._events = self.columns.to_structured()
        return self._events

    @property
    def scope_list(self) -> list[str]:
        """Scope names by id (``"scope <id>"`` for ids without a name), up to the largest id used."""
        names = self.scopes or {}
        top = max(names, default=-1)
        if len(self.columns):
            top = max(top, int(self.columns["scope"].max()))
        return [names.get(i, f"scope {i}") for i in range(top + 1)]

    def warp_name(self, warp: int) -> str:
        """``"producer"`` (its role) or ``"warp 3"``."""
        if self.warp_roles and 0 <= warp < len(self.warp_roles):
            return str(self.warp_roles[warp])
        return f"warp {warp}"

    @property
    def duration_ns(self) -> float:
        """ns from the earliest CTA entry to the latest CTA exit (or latest event, if later)."""
        ends = [0.0]
        good = self.ctas[self.ctas["end_ok"]]
        if len(good):
            ends.append(float((good["gtime_end"].astype(np.int64) - self.t0_ns).max()))
        if len(self.columns):
            ends.append(float(np.nanmax(self.columns["time_ns"])))
        return max(ends)

    def pairs(self) -> Pairs:
        """Matched scopes as event positions (:class:`~kperf.tracing.intervals.Pairs`), computed once."""
        if self._pairs is None:
            self._pairs = pair_columns(self.columns)
        return self._pairs

    def intervals(self) -> tuple[np.ndarray, np.ndarray]:
        """``pair(self.events)``: (INTERVAL_DTYPE array, unmatched EVENT_DTYPE array), computed once."""
        if self._intervals is None:
            self._intervals = self.pairs().to_structured(self.columns)
        return self._intervals

    def _clock_range(self) -> str:
        """`` (1.48-1.86 GHz during the launch)`` when the SM clocks moved by more than 2%."""
        sc = self.sm_clocks
        if not len(sc) or "ghz_min" not in (sc.dtype.names or ()):
            return ""
        lo, hi = float(np.nanmin(sc["ghz_min"])), float(np.nanmax(sc["ghz_max"]))
        return f" ({lo:.2f}-{hi:.2f} GHz during the launch)" if np.isfinite(lo) and hi > 1.02 * lo else ""

    def summary(self) -> str:
        """A few lines for a terminal."""
        ok = int(self.ctas["ok"].sum())
        name = f" {self.kernel}" if self.kernel else ""
        lines = [
            f"launch {self.launch}{name}: {self.n_events} events from {ok}/{self.n_ctas} CTAs "
            f"on {len(self.sm_clocks)} SMs, clock {self.geometry.clock}, {self.strategy}, "
            f"SM clock {self.clock_ghz:.3f} GHz{self._clock_range()}",
        ]
        if self.info:
            lines.append(f"  info: {info_text(self.info)}")
        sampled_out = int(self.ctas["sampled_out"].sum())
        if sampled_out:
            lines.append(f"  {sampled_out} CTAs sampled out (cta_stride / sms): no records, none lost")
        if self.lost_total:
            lines.append(f"  {self.lost_total} records lost in {len(self.lost)} warps "
                         f"(capacity {self.geometry.capacity} per warp)")
        if self.rejected_total:
            codes, n = np.unique(self.rejected["reason"], return_counts=True)
            why = ", ".join(f"{k} {REJECT_REASONS.get(int(c), f'reason {c}')}" for c, k in
                            zip(codes.tolist(), n.tolist(), strict=True))
            lines.append(f"  {self.rejected_total} records rejected ({why}): left out of the events, "
                         "intervals and statistics")
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)


_INT64 = 1 << 63
#: what a value of ``DecodedLaunch.info`` may be (for messages)
INFO_VALUES = "a string, an int, a finite float, a bool or a list of strings"


def _info_value(key: str, v: Any) -> str | int | float | bool | list[str]:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, numbers.Integral):
        if not -_INT64 <= int(v) < _INT64:
            raise ValueError(f"info[{key!r}]: the int {int(v)} does not fit in 64 bits")
        return int(v)
    if isinstance(v, numbers.Real):
        if not math.isfinite(float(v)):
            raise ValueError(f"info[{key!r}]: {float(v)} is not a finite number")
        return float(v)
    if isinstance(v, str):
        return v
    if isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v):
        return list(v)
    text = repr(v)
    raise ValueError(f"info[{key!r}] is {text[:57] + '...' if len(text) > 60 else text}, not {INFO_VALUES}")


def plain_info(info: Mapping[str, Any] | None) -> dict[str, str | int | float | bool | list[str]] | None:
    """``info`` as plain JSON values: string keys; values strings, ints (64-bit), finite floats, bools or
    lists of strings (a tuple becomes a list, numpy scalars Python ones).  ``None`` stays ``None``; a
    value of any other kind raises ``ValueError`` naming its key."""
    if info is None:
        return None
    if not isinstance(info, Mapping):
        raise ValueError(f"info is a {type(info).__name__}, not a {{name: value}} dict")
    out = {}
    for k, v in info.items():
        if not isinstance(k, str):
            raise ValueError(f"info has the key {k!r}, not a string")
        out[k] = _info_value(k, v)
    return out
