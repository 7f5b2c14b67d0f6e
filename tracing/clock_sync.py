"""Ranks of a multi-GPU job on one time axis: clock offsets from exchanged timestamps, with error bounds.

Each rank's events are in its GPU's ``%globaltimer`` ns (:mod:`.clocks` puts every SM of a launch on
it).  Different GPUs' globaltimers, and different hosts' clocks, disagree by up to seconds, so a rank's
times reach rank 0's axis through a chain of three measured offsets:

- ``phi_r = globaltimer_r - host_r``: the GPU's clock against its host's ``CLOCK_REALTIME``, from a
  probe that passes a message host -> GPU -> host (``kperf.gpu_clock``);
- ``theta_r = host_r - host_0``: the host's clock against rank 0's host, from barriers over the job's
  process group (``kperf.distributed``); exactly 0 when both ranks read the same clock (the same
  machine: the same host name and kernel boot id, its *clock domain*), the common case of the GPUs of
  one node, whose bound is then the two GPU probes' alone;
- an event at ``g`` on rank r's globaltimer lies at ``g + delta_r`` on rank 0's, with
  ``delta_r = phi_0 - phi_r - theta_r`` (exactly 0 for rank 0 itself).

Each offset is an interval, not a guess.  A sample is a pair of messages, one each way, between two
clocks A and B (offset ``B - A``): A reads ``a1`` before sending, B reads ``b1`` after receiving and
``b2`` before answering, A reads ``a2`` after receiving, and causality gives
``b2 - a2 <= B - A <= b1 - a1`` whatever the latencies (NTP's bound, with its width the round trip
minus B's turnaround).  For a barrier, ``a1``/``a2`` are a rank's reads right before entering and
after leaving it: no rank leaves before every rank entered.  The intersection of every round's
interval is the estimate (its midpoint) and the error bound (its half width); rounds that do not
intersect (a clock stepped by NTP during the exchange) fall back to the narrowest round and are
flagged.  Offsets are measured at session start and end: between the two the offset moves linearly
(clock drift, reported in ppm), outside they are extrapolated with an error that grows with the
drift's own uncertainty.

Values are int64 ns: raw clock readings (about 1.7e18) exceed float64's integer precision, so every
difference is taken in integers before anything becomes a float.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from kperf.dialect.errors import KperfError

#: What a probe of the GPU clock measured: a message each way ("pingpong"), a launch bracketed by
#: host reads ("bracket"), or nothing (no GPU: the globaltimer is taken as the host clock).
GPU_METHODS = ("pingpong", "bracket", "none")


@dataclasses.dataclass(frozen=True)
class Offset:
    """One clock's offset against another, ns: the estimate, the half width of the interval that
    certainly holds it, how many rounds measured it, and whether the rounds agreed."""

    est: int
    err: float
    rounds: int
    consistent: bool = True

    def __sub__(self, other: Offset) -> Offset:
        return Offset(self.est - other.est, self.err + other.err, min(self.rounds, other.rounds),
                      self.consistent and other.consistent)


EXACT = Offset(0, 0.0, 0)


def _i64(samples, width: int, what: str) -> np.ndarray:
    if len(samples) == 0:
        return np.zeros((0, width), np.int64)
    try:
        a = np.asarray(samples, np.int64)
    except (TypeError, ValueError, OverflowError):
        raise KperfError(f"{what}: clock samples must be integers (ns)",
                         fix="the rank's saved clock record is damaged; profile the job again") from None
    if a.ndim != 2 or a.shape[1] != width:
        raise KperfError(f"{what}: expected samples of {width} readings each, got shape {a.shape}",
                         fix="the rank's saved clock record is damaged; profile the job again")
    return a


def intersect(lo: np.ndarray, hi: np.ndarray) -> Offset:
    """The offset that every round's interval ``[lo_k, hi_k]`` holds: their intersection, or the
    narrowest round when they do not meet (then ``consistent`` is False)."""
    lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
    if not len(lo):
        return EXACT
    top, bottom = int(lo.max()), int(hi.min())
    if top <= bottom:
        return Offset((top + bottom) // 2, (bottom - top) / 2, len(lo))
    k = int(np.argmin(hi - lo))
    return Offset((int(lo[k]) + int(hi[k])) // 2, max(int(hi[k]) - int(lo[k]), 0) / 2, len(lo), False)


def host_offset(own: Sequence, ref: Sequence) -> Offset:
    """``theta = host_own - host_ref`` from barrier rounds: each row ``(entered, left)``, read on both
    ranks around the same barrier (row k of ``own`` with row k of ``ref``)."""
    a = _i64(own, 2, "host clock exchange")
    b = _i64(ref, 2, "host clock exchange of rank 0")
    n = min(len(a), len(b))
    # no rank leaves a barrier before every rank entered it
    return intersect(a[:n, 0] - b[:n, 1], a[:n, 1] - b[:n, 0])


def gpu_offset(samples: Sequence) -> Offset:
    """``phi = globaltimer - host`` from probe rows ``(host_send, gpu_recv, gpu_send, host_recv)``: the
    host read ``host_send`` before its message, the GPU read ``gpu_recv`` after it arrived and
    ``gpu_send`` before answering, the host read ``host_recv`` once the answer arrived."""
    s = _i64(samples, 4, "GPU clock probe")
    return intersect(s[:, 2] - s[:, 3], s[:, 1] - s[:, 0])


@dataclasses.dataclass(frozen=True)
class SyncPoint:
    """``delta`` (rank -> rank 0's globaltimer) measured at ``gpu_ns`` on the rank's own globaltimer;
    ``host_link``: how its host clock was related to rank 0's (:data:`HOST_LINKS`)."""

    gpu_ns: int
    delta: Offset
    host_link: str = "barriers"


#: how a rank's host clock relates to rank 0's: it is rank 0, it reads the same clock (same clock
#: domain), or through the barrier rounds
HOST_LINKS = ("reference", "shared", "barriers")


def shares_host_clock(phase: dict) -> bool:
    """Whether the record says this rank and rank 0 read one host clock (the same clock domain)."""
    mine, ref = phase.get("domain"), phase.get("domain_ref")
    return isinstance(mine, str) and bool(mine) and mine == ref


def sync_point(phase: dict, is_reference: bool) -> SyncPoint:
    """The sync point of one exchange record (``kperf.distributed``'s ``sync`` entries).

    ``phase`` holds ``host``/``host_ref`` (barrier rows of this rank and of rank 0),
    ``gpu``/``gpu_ref`` (probe rows) and ``domain``/``domain_ref`` (the clock domains, optional); for
    rank 0 the offsets cancel exactly, and within one clock domain ``theta`` is 0."""
    host = _i64(phase.get("host") or [], 2, "host clock exchange")
    phi = gpu_offset(phase.get("gpu") or [])
    if not len(host):
        raise KperfError("a clock exchange record holds no host clock readings",
                         fix="the rank's saved clock record is damaged; profile the job again")
    mid = int(host[:, 0].min() + (host[:, 1].max() - host[:, 0].min()) // 2)
    if is_reference:
        return SyncPoint(mid + phi.est, EXACT, "reference")
    phi0 = gpu_offset(phase.get("gpu_ref") or [])
    if shares_host_clock(phase):
        return SyncPoint(mid + phi.est, phi0 - phi, "shared")
    theta = host_offset(phase.get("host") or [], phase.get("host_ref") or [])
    return SyncPoint(mid + phi.est, phi0 - phi - theta)


@dataclasses.dataclass(frozen=True)
class RankClock:
    """How one rank's globaltimer maps onto rank 0's: the sync points (session start, end)."""

    points: tuple[SyncPoint, ...] = ()

    @property
    def aligned(self) -> bool:
        return bool(self.points)

    @property
    def host_link(self) -> str:
        """How its host clock was related to rank 0's (:data:`HOST_LINKS`; ``"-"`` unaligned)."""
        return self.points[0].host_link if self.points else "-"

    @property
    def drift_ppm(self) -> float:
        """How fast ``delta`` moved between the first and the last point, ppm (ns per ms; NaN with one)."""
        if len(self.points) < 2:
            return float("nan")
        p, q = self.points[0], self.points[-1]
        dt = q.gpu_ns - p.gpu_ns
        return (q.delta.est - p.delta.est) / dt * 1e6 if dt > 0 else float("nan")

    def shift(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(delta_ns, err_ns)`` at each globaltimer reading ``g`` (int64 ns) of this rank: delta rounded
        to ns (int64), linear between the points, extended past them; err a float bound."""
        g = np.asarray(g, np.int64)
        if not self.points:
            return np.zeros(g.shape, np.int64), np.zeros(g.shape)
        p = self.points[0]
        if len(self.points) == 1 or self.points[-1].gpu_ns <= p.gpu_ns:
            return np.full(g.shape, p.delta.est, np.int64), np.full(g.shape, p.delta.err)
        q = self.points[-1]
        span = q.gpu_ns - p.gpu_ns
        x = (g - p.gpu_ns).astype(np.float64) / span  # 0 at the first point, 1 at the last
        delta = p.delta.est + np.rint(x * (q.delta.est - p.delta.est)).astype(np.int64)
        inside = p.delta.err + np.clip(x, 0.0, 1.0) * (q.delta.err - p.delta.err)
        # past the points the drift's own uncertainty, (err_p + err_q) per span, adds up
        beyond = np.maximum(-x, x - 1.0).clip(0.0) * (p.delta.err + q.delta.err)
        return delta, inside + beyond


def rank_clock(sync: Sequence[dict] | None, is_reference: bool) -> RankClock:
    """The :class:`RankClock` of a rank's exchange records (empty: unaligned, delta 0)."""
    if not sync:
        return RankClock()
    points = sorted((sync_point(p, is_reference) for p in sync), key=lambda s: s.gpu_ns)
    return RankClock(tuple(points))
