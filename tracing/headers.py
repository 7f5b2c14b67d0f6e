"""Check the CTA headers of a launch's buffer (format: :mod:`kperf.dialect.layout`).

A CTA region is *good* (``ok``) when its header was written (not all zero) and has the right magic,
a supported version and the geometry's ``num_warps``; only good CTAs are decoded into events.  Its
exit pair (``gtime_end``, ``clock_end``) is usable (``end_ok``) when it was written and does not lie
before the entry pair (the clocks are only compared when the CTA ended on the SM it started on).

A CTA whose flags say *sampled out* (``FLAG_SAMPLED_OUT``) must hold nothing past its header: one that
counted or wrote records is reported, its flag is ignored and its records are decoded like any other
CTA's.  Flag bits this decoder does not know are reported and ignored.

The buffer is laid out by linear CTA id: good headers holding the same ctaid as another region, a ctaid
outside the launch grid (``grid`` when given; else the grid the ctaids imply must not have more CTAs
than the buffer has regions), a grid that does not have one CTA per region, and regions holding another
CTA's ctaid are reported; so is data in a region's padding (kperf zeroes the buffer and no CTA
writes there: the wrong geometry or a corrupt buffer).

Nothing here raises: each kind of bad header becomes one sentence in :attr:`CtaHeaders.problems`,
naming the CTAs (a few, then a count) and what the decoder does about them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kperf.dialect.layout import CTA_HEADER_BYTES, FLAG_SAMPLED_OUT, MAGIC, SUPPORTED_VERSIONS, Geometry

from ._common import fmt_ids, plural


@dataclasses.dataclass
class CtaHeaders:
    """The headers of a launch's CTA regions, checked; per-CTA arrays (int64 for the readings)."""

    fields: np.ndarray  # the raw headers (CTA_HEADER_DTYPE), one per region
    ok: np.ndarray  # bool: a good header (see the module docstring)
    end_ok: np.ndarray  # bool: good, and the exit pair is usable
    sm_start: np.ndarray  # %smid at entry ...
    sm_end: np.ndarray  # ... and before ret
    gtime_start: np.ndarray  # (globaltimer ns, clock64 cycles) at entry ...
    clock_start: np.ndarray
    gtime_end: np.ndarray  # ... and before ret (0, 0 when never written)
    clock_end: np.ndarray
    problems: list[str]
    sampled_out: np.ndarray | None = None  # bool: good, flagged sampled out, and nothing else written


def check_headers(regions: np.ndarray, raw: np.ndarray, geometry: Geometry,
                  grid: tuple[int, ...] | None = None) -> CtaHeaders:
    """Check the headers of ``regions`` (``geometry.cta_dtype()`` array; ``raw``: the same bytes as a
    ``(n_ctas, cta_bytes)`` uint8 array; ``grid``: the launch grid when known) and say what is wrong
    with them."""
    hdr = regions["header"]
    magic_ok = hdr["magic"] == MAGIC
    written = magic_ok.copy()  # a header with the (non-zero) magic was written; the others are read
    if not magic_ok.all():
        rest = np.flatnonzero(~magic_ok)
        written[rest] = raw[rest, :CTA_HEADER_BYTES].any(axis=1)
    valid, field_problems = _check_fields(hdr, written, magic_ok, geometry)
    h = CtaHeaders(
        fields=hdr, ok=written & valid, end_ok=np.zeros(len(hdr), bool),
        sm_start=hdr["smid_start"].astype(np.int64), sm_end=hdr["smid_end"].astype(np.int64),
        gtime_start=hdr["gtime_start"].astype(np.int64), clock_start=hdr["clock_start"].astype(np.int64),
        gtime_end=hdr["gtime_end"].astype(np.int64), clock_end=hdr["clock_end"].astype(np.int64),
        problems=_never_written_problems(raw, written) + field_problems,
    )
    h.end_ok, exit_problems = _check_exit_pairs(h)
    h.sampled_out, flag_problems = _check_flags(h, raw)
    h.problems += exit_problems + flag_problems + _check_ctaids(h, grid) + _check_padding(raw, geometry)
    return h


def _check_padding(raw: np.ndarray, geometry: Geometry) -> list[str]:
    """Regions whose padding (after the counts, and after the record slots and sinks) is not zero: kperf
    zeroes the buffer and no CTA writes there, so a non-zero byte means the wrong geometry (the regions
    are read at the wrong places) or a corrupt buffer."""
    g = geometry
    after_counts = raw[:, g.counts_offset + 4 * g.slots:g.records_offset]
    after_slots = raw[:, g.records_offset + g.slots * g.warp_bytes:]
    if not after_counts.any() and not after_slots.any():  # all zero (one reduction each): no region
        return []
    bad = np.flatnonzero(after_counts.any(axis=1) | after_slots.any(axis=1))
    if not bad.size:
        return []
    return [f"{plural(bad.size, 'CTA region')} with data in the padding no CTA writes (the wrong geometry, "
            f"or a corrupt buffer): region {fmt_ids(bad)}; ignored"]


def _check_flags(h: CtaHeaders, raw: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """``sampled_out`` per CTA, and the problems: flags that say sampled out in a CTA that counted or
    wrote records (a sampled-out CTA writes neither), and flag bits this decoder does not know."""
    problems = []
    flags = h.fields["flags"]
    if not flags.any():
        return np.zeros(len(flags), bool), problems
    sampled = h.ok & (flags & FLAG_SAMPLED_OUT != 0)
    idx = np.flatnonzero(sampled)
    if idx.size:
        has_data = raw[idx, CTA_HEADER_BYTES:].any(axis=1)
        bad = idx[has_data]
        if bad.size:
            sampled[bad] = False
            problems.append(
                f"{plural(bad.size, 'CTA')} whose header flags say sampled out but whose counts or record "
                f"slots hold data (a corrupt flags word): CTA {fmt_ids(bad)}; flag ignored, the records "
                "decoded and checked like any other CTA's")
    unknown = np.flatnonzero(h.ok & (flags & ~np.uint16(FLAG_SAMPLED_OUT) != 0))
    if unknown.size:
        problems.append(
            f"{plural(unknown.size, 'CTA')} with header flag bits this decoder does not know (corrupt "
            "flags or a newer kperf): "
            + fmt_ids([f"CTA {c} (0x{int(flags[c]):04X})" for c in unknown[:8]], total=unknown.size)
            + "; ignored")
    return sampled, problems


def _never_written_problems(raw: np.ndarray, written: np.ndarray) -> list[str]:
    """CTAs whose header is all zero (did not run, or another launch's buffer)."""
    never = np.flatnonzero(~written)
    if not never.size:
        return []
    with_data = never[raw[never, CTA_HEADER_BYTES:].any(axis=1)]
    msg = (f"{plural(never.size, 'CTA')} never wrote {'its' if never.size == 1 else 'their'} header "
           "(all-zero header: the CTA did not run, "
           f"or the buffer is not this launch's): CTA {fmt_ids(never)}")
    if with_data.size:
        msg += (f"; yet {plural(with_data.size, 'of them has', 'of them have')} record data: "
                f"CTA {fmt_ids(with_data)}")
    return [msg + "; left out of the events"]


def _check_fields(hdr: np.ndarray, written: np.ndarray, magic_ok: np.ndarray,
                  geometry: Geometry) -> tuple[np.ndarray, list[str]]:
    """Whether magic (``magic_ok``, given), version and num_warps are right, per CTA; and the problems of
    the written CTAs where one is not, each reported by the first field that is wrong."""
    problems = []
    magic, version, nwarps = hdr["magic"], hdr["version"], hdr["num_warps"]
    version_ok = version == SUPPORTED_VERSIONS[0]
    for v in SUPPORTED_VERSIONS[1:]:  # np.isin costs 10 times more
        version_ok |= version == v
    nw_ok = nwarps == geometry.num_warps
    valid = magic_ok & version_ok & nw_ok
    if valid.all():
        return valid, problems
    bad = np.flatnonzero(written & ~magic_ok)
    if bad.size:
        problems.append(
            f"{plural(bad.size, 'CTA')} with a bad magic (expected 0x{MAGIC:08X}): "
            + fmt_ids([f"CTA {c} (0x{int(magic[c]):08X})" for c in bad[:8]], total=bad.size)
            + "; left out of the events"
        )
    bad = np.flatnonzero(written & magic_ok & ~version_ok)
    if bad.size:
        problems.append(
            f"{plural(bad.size, 'CTA')} with format version "
            f"{fmt_ids(np.unique(version[bad]))}, this decoder reads version {fmt_ids(SUPPORTED_VERSIONS)}: "
            f"CTA {fmt_ids(bad)}; left out of the events"
        )
    bad = np.flatnonzero(written & magic_ok & version_ok & ~nw_ok)
    if bad.size:
        problems.append(
            f"{plural(bad.size, 'CTA')} whose header says num_warps "
            f"{fmt_ids(np.unique(nwarps[bad]))} but the geometry has {geometry.num_warps} (wrong geometry?): "
            f"CTA {fmt_ids(bad)}; left out of the events"
        )
    return valid, problems


def _check_exit_pairs(h: CtaHeaders) -> tuple[np.ndarray, list[str]]:
    """``end_ok`` per CTA, and the problems: exit pairs never written, running backwards, or read on
    another SM than the entry pair."""
    problems = []
    ok, gs, cs, ge, ce = h.ok, h.gtime_start, h.clock_start, h.gtime_end, h.clock_end
    end_written = (ge != 0) | (ce != 0)
    same_sm = h.sm_start == h.sm_end
    end_ok = ok & end_written & (ge >= gs) & (~same_sm | (ce >= cs))
    if not (ok & ~(end_ok & same_sm)).any():  # every good CTA ended fine on its SM: none of the below
        return end_ok, problems
    bad = np.flatnonzero(ok & ~end_written)
    if bad.size:
        problems.append(f"{plural(bad.size, 'CTA')} never wrote exit timestamps (did not reach ret?): "
                          f"CTA {fmt_ids(bad)}")
    bad = np.flatnonzero(ok & end_written & ~end_ok)
    if bad.size:
        problems.append(f"{plural(bad.size, 'CTA')} with exit timestamps before entry timestamps: "
                          f"CTA {fmt_ids(bad)}; exit pair not used for the clock fit")
    bad = np.flatnonzero(ok & ~same_sm & end_written)
    if bad.size:
        problems.append(f"{plural(bad.size, 'CTA')} ended on another SM than it started on (migrated?): "
                          f"CTA {fmt_ids(bad)}; their events are placed with the entry SM's clock")
    return end_ok, problems


def _check_ctaids(h: CtaHeaders, grid: tuple[int, ...] | None) -> list[str]:
    """The buffer is laid out by linear CTA id: good headers holding the same ctaid as another region's,
    a ctaid outside the launch grid (``grid`` when given, else the grid the ctaids imply must not have
    more CTAs than there are regions), and regions holding another CTA's ctaid (when the grid has exactly
    one CTA per region)."""
    ok, n = h.ok, len(h.ok)
    idx = np.flatnonzero(ok)
    if not idx.size:
        return []
    every = idx.size == n
    x, y, z = ((h.fields[f] if every else h.fields[f][idx]).astype(np.int64)
               for f in ("ctaid_x", "ctaid_y", "ctaid_z"))
    if grid is None and _one_per_region(x, y, z, idx, n):
        return []
    cid = np.stack([x, y, z], axis=1)
    problems = []
    dup = idx[_repeated_rows(cid)]
    if dup.size:
        problems.append(f"{plural(dup.size, 'CTA region')} holding the same ctaid as another region (a "
                        f"region copied or overwritten): region {fmt_ids(dup)}")
    if grid is not None:
        dims = np.array((tuple(int(g) for g in grid) + (1, 1, 1))[:3], np.int64)
        outside = idx[(cid >= dims).any(axis=1)]
        if outside.size:
            problems.append(f"{plural(outside.size, 'CTA region')} holding a ctaid outside the launch grid "
                            f"{'x'.join(map(str, dims.tolist()))}: region {fmt_ids(outside)}")
        if int(dims.prod()) != n:
            problems.append(f"the launch grid {'x'.join(map(str, dims.tolist()))} has {int(dims.prod())} "
                            f"CTAs but the buffer {plural(n, 'region')} (the wrong grid or CTA count?)")
            return problems
    else:
        dims = cid.max(axis=0) + 1
        if int(dims.prod()) > n:
            return problems + [
                f"the CTA headers' ctaids imply a grid of at least {'x'.join(map(str, dims.tolist()))} = "
                f"{int(dims.prod())} CTAs, more than the buffer's {plural(n, 'region')} (corrupt ctaids): "
                f"largest ctaid {fmt_ids(cid.max(axis=0))}"]
        if int(dims.prod()) != n:
            return problems
    lin = cid[:, 0] + dims[0] * (cid[:, 1] + dims[1] * cid[:, 2])
    bad = idx[lin != idx]
    if bad.size:
        problems.append(f"{plural(bad.size, 'CTA region')} holding another CTA's ctaid "
                        f"(grid {'x'.join(map(str, dims.tolist()))}): region {fmt_ids(bad)}")
    return problems


def _one_per_region(x: np.ndarray, y: np.ndarray, z: np.ndarray, idx: np.ndarray, n: int) -> bool:
    """Whether the good regions ``idx`` hold the ctaids (``x``, ``y``, ``z``) of a grid of ``n`` CTAs, each
    its own region's (then no two hold the same ctaid, and none lies outside the grid they imply)."""
    dims = (int(x.max()) + 1, int(y.max()) + 1, int(z.max()) + 1)
    if dims[0] * dims[1] * dims[2] != n:  # exact: Python ints
        return False
    return bool(np.array_equal(x + dims[0] * (y + dims[1] * z), idx))


def _repeated_rows(cid: np.ndarray) -> np.ndarray:
    """bool per row of ``cid`` (ctaids, int64 (n, 3), not negative): another row holds the same ctaid.
    Counted on each ctaid's linear id where the ctaids span a grid of few CTAs (a sort otherwise)."""
    dims = [int(d) + 1 for d in cid.max(axis=0)]
    if dims[0] * dims[1] * dims[2] > max(4 * len(cid), 1 << 16):  # exact: Python ints
        _, inv, cnt = np.unique(cid, axis=0, return_inverse=True, return_counts=True)
        return cnt[inv.ravel()] > 1
    lin = cid[:, 0] + dims[0] * (cid[:, 1] + dims[1] * cid[:, 2])  # distinct ctaids, distinct ids
    return np.bincount(lin)[lin] > 1
