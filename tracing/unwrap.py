"""Absolute 64-bit cycles from the low 32 bits of ``%clock`` (``clock="clock"`` records).

A record stores only ``low32(%clock)``; the CTA header holds full ``%clock64`` readings at entry and
exit.  Per warp, in program order, consecutive differences are taken modulo 2**32 and summed, and the
sum is anchored to the CTA header: the first record's absolute value is
``clock_start + int32(low32(first) - low32(clock_start))`` (signed: other warps may record before
warp 0 reads the header).  A warp that lost its oldest records to ``wrap`` is anchored on
``clock_end`` the same way through its last record instead, which stays right however long the CTA
ran.  When the CTA's header span is under :data:`SIGNED_STEP_MAX_SPAN` cycles no genuine step can
reach 2**31, so a difference >= 2**31 is read as a backward step (reported) rather than a 32-bit wrap.
"""

from __future__ import annotations

import numpy as np

MASK32 = (1 << 32) - 1
#: CTAs whose header span (clock_end - clock_start) is shorter read steps >= 2**31 as backward steps
SIGNED_STEP_MAX_SPAN = 1 << 30  # cycles


def s32(x: np.ndarray) -> np.ndarray:
    """int64 values reduced modulo 2**32 into [-2**31, 2**31)."""
    x = x & MASK32
    return np.where(x >= 1 << 31, x - (1 << 32), x)


def signed_steps(cs: np.ndarray, ce: np.ndarray, end_ok: np.ndarray) -> np.ndarray:
    """Per CTA (or per warp, given its CTA's values): whether a step >= 2**31 is a backward step.

    True where the exit pair is valid and the header span is short enough that no genuine step can
    reach 2**31 (see the module docstring).
    """
    span = ce - cs
    return end_ok & (span >= 0) & (span < SIGNED_STEP_MAX_SPAN)


def unwrap32(lo, run, first_idx, p_cta, first_seq, cs, ce, end_ok):
    """Absolute 64-bit cycles from the low 32 bits of ``%clock`` (see the module docstring).

    ``lo``: low 32 bits per event (int64), grouped in runs (one per warp) of lengths ``run``
    starting at ``first_idx``; ``p_cta``, ``first_seq``: each run's CTA (region index) and the seq
    of its first record; ``cs``, ``ce``, ``end_ok``: per-CTA clock_start, clock_end (int64) and
    whether the exit pair is valid.

    Returns (cycles, step): step is 0 at each warp's first record, negative where the clock went
    backwards.
    """
    E = lo.size
    step = np.zeros(E, np.int64)
    if E == 0:
        return step.copy(), step
    np.subtract(lo[1:], lo[:-1], out=step[1:])
    step &= MASK32
    step[first_idx] = 0
    signed = signed_steps(cs[p_cta], ce[p_cta], end_ok[p_cta])
    if signed.all():
        step[step >= 1 << 31] -= 1 << 32
    elif signed.any():
        neg = (step >= 1 << 31) & np.repeat(signed, run)
        step[neg] -= 1 << 32
    cum = np.cumsum(step)
    last_idx = first_idx + run - 1
    c_first = cum[first_idx]
    rel_last = cum[last_idx] - c_first
    first = anchor(lo[first_idx], lo[last_idx], rel_last, cs[p_cta], ce[p_cta], first_seq, end_ok[p_cta])
    cum += np.repeat(first - c_first, run)
    return cum, step


def anchor(lo_first, lo_last, rel_last, cs, ce, first_seq, end_ok):
    """Absolute cycles of each warp's first record (arrays per warp run).

    From the CTA's entry clock through the low 32 bits of the first record, or, when the warp's first
    records were overwritten (wrap) and the exit pair is valid, back from the exit clock through its
    last record (``rel_last`` cycles after the first): right however long the CTA ran.
    """
    a_start = cs + s32(lo_first - cs)
    a_end = ce + s32(lo_last - ce) - rel_last
    return np.where((first_seq > 0) & end_ok, a_end, a_start)
