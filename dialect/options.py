"""Profiling options: one frozen dataclass, round-tripped through Triton's ``instrumentation_mode``.

Triton puts ``knobs.compilation.instrumentation_mode`` into the compile options and so into the cache
key; kperf sets it to ``ProfileConfig.to_mode()`` while compiling a profiled kernel, which keeps
instrumented and plain binaries apart in Triton's cache and tells kperf's stage hook what to build.
Every option below is part of that string (docs/options.md lists them with their measured costs).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .errors import KperfError
from .layout import CLOCKS, GRANULARITIES, MAX_SM_ID, STORES, STRATEGIES
from .selectors import parse_selectors

#: ``hoist_arith``: which scopes' records arithmetic may move across (``kperf.passes.ptx_hoist``).
HOIST_ARITH = ("off", "auto", "all")

MODE_PREFIX = "kperf"

#: Warps in a CTA at most (CUDA's 1024 threads per block).
MAX_WARPS = 32
#: The largest ``capacity``.  The lowering handles every byte count of a CTA region in 32 bits: it
#: multiplies the CTA id by ``Geometry.cta_bytes`` and the slot by ``Geometry.warp_bytes`` with
#: ``mul.wide.u32`` immediates and compares the record counter with ``capacity`` in ``u32``
#: (``passes/ptx_snippets.py``).  With 16-byte records (``clock64``/``globaltimer``) and 32 recording
#: warps, 2**22 records per warp make a 2 GiB region, which leaves room in 32 bits for the header, the
#: counts and a ``fold`` sink as large again; more would overflow.
MAX_CAPACITY = 1 << 22
_CAPACITY_FIX = (f"the lowering computes each CTA's buffer region (capacity x 16-byte records x up to "
                 f"{MAX_WARPS} warps) in 32 bits, so capacity is at most {MAX_CAPACITY} = 2**22; record "
                 f"fewer warps (granularity, warp_mask) or use strategy='wrap' to keep the latest records")


@dataclasses.dataclass(frozen=True)
class ProfileConfig:
    """How records are lowered and stored.

    Every option is checked when the config is made: a value of the wrong type (a string for ``sms``,
    a bool for ``capacity``) or out of range raises :class:`OptionError`, which names the option.

    Args:
        capacity: record slots per warp (8 bytes each with ``clock="clock"``, 16 otherwise). A warp
            that records more than this loses the excess (``keep-first``) or its oldest records
            (``wrap``); either way the count is exact and reported.  1024 holds a 128-iteration
            K loop with 4 records per iteration and an outer scope with room to spare.  At most
            ``MAX_CAPACITY`` (2**22), so that every byte count of the buffer fits the lowering's 32 bits.
        strategy: ``"keep-first"`` (keep the first ``capacity`` records) or ``"wrap"`` (ring buffer:
            keep the latest; ``capacity`` must then be a power of two).
        clock: ``"clock"`` (32-bit SM cycles, unwrapped on the host; cheapest), ``"clock64"``
            (64-bit SM cycles) or ``"globaltimer"`` (ns, but only 32 ns to 1 us resolution).
        store: ``"global"`` (each record is stored to the profile buffer in global memory),
            ``"smem"`` (records are staged in shared memory past the kernel's own and copied out by
            each warp before ``ret``; an error if they do not fit) or ``"auto"`` (``smem`` when it
            fits the target's shared memory, else ``global``).
        fold: ``keep-first`` only: instead of a capacity check per record, clamp the slot pointer
            once per basic block and let records past the capacity land in a few sink slots
            (one SASS instruction less per record; same records kept, same exact counts).
            ``None`` (default): on for ``keep-first``, which measured cheaper on an H100
            (docs/options.md has the numbers).
        granularity: which warps record: ``"warp"`` (all), ``"warpgroup"`` (warp 0 of each group
            of 4 warps), ``"cta"`` (warp 0 only) or ``"role"`` (the first warp of each role of a
            warp-specialized kernel: producer, first consumer warpgroup, other partitions; warp 0
            in a kernel that is not).  Only recording warps get buffer slots.
        warp_mask: if non-zero, a bitmask of warps allowed to record (bit w = warp w), combined
            with ``granularity``.
        cta_stride: record only CTAs whose linear id is a multiple of this (1: all CTAs).
        sms: if non-empty, record only CTAs that start on these SM ids (``%smid``).
        clone: with ``cta_stride``/``sms`` sampling, sampled-out CTAs run an uninstrumented copy of
            the kernel body (no per-record cost at all) instead of the predicated-off records.
        vector_pointer: give the record pointer a lane-dependent offset that lane 0, the only lane that
            stores, does not see: ptxas can then not keep the (warp-uniform) pointer in uniform registers
            and copy it into a vector register pair before every store (2 SASS instructions a record
            where it did so, e.g. the FA3 pipelines' consumer loops).  ``store="global"`` only.
        merge_blocks: bump the record counter (and clamp the slot pointer) only where control flow
            joins or leaves: not at labels no branch names (debug-line labels) nor around record-free
            spin loops (every TMA barrier wait).  ``False``: at every label and branch, as before
            (``kperf.passes.ptx_blocks``; docs/options.md has the measured difference).
        hoist_tags: keep each record's tag word in a register of its own, set once after the kernel's
            declarations from an opaque zero (``%nsmid >> 31``) that ptxas cannot fold, rather than moved
            into a register at every record: one SASS instruction less per record inside loops, at one
            register per distinct tag live through the kernel (it can spill in a kernel near its register
            budget).  Off by default: no gain measured on a GPU, a loss where it spilled (docs/options.md).
        hoist_arith: ``"auto"`` (default): the pure integer arithmetic that follows a record of
            automatic insertion around one op (not a loop body) and feeds that op (a ``wgmma``
            descriptor, a barrier address) moves in front of the record and of the barrier wait before
            it, where ptxas puts it in the plain kernel: ptxas moves nothing across a clock read, so
            that arithmetic otherwise runs after the wait (``kperf.passes.ptx_hoist``).  ``"all"``:
            the scopes written in the source too (the address arithmetic of the op a scope wraps then
            leaves the scope).  ``"off"``: nothing moves.
        defer_stores: a record reads the clock into a register where it stands; its tag move and store
            are written at the next ``wgmma.commit_group`` of its basic block (where the warp waits for
            the tensor cores anyway), at the block's end, or once 8 clocks are held, whichever comes
            first.  ptxas moves nothing across a clock read, so where a record stands is what its
            instructions cost on the critical path.
        record_cost: cycles one record adds to a measured interval, subtracted on the host
            (``time -= record_cost * seq`` per warp); 0 = off.  Measure it for your GPU and
            options with ``bench/calibration.py`` (docs/accuracy.md).
        auto: automatic insertion on the final TTGIR: selectors (presets ``mma``, ``tma``, ``waits``,
            ``loops`` or op names, see ``kperf.passes.auto_insert``), comma separated; stored
            canonically as ``"mma+tma"``.  Empty: only the records in the source.
        override: digest of the TTGIR override folder in use (set by ``kperf.override``); it puts
            the override files' content into Triton's cache key.
    """

    capacity: int = 1024
    strategy: str = "keep-first"
    clock: str = "clock"
    store: str = "global"
    fold: bool | None = None
    granularity: str = "warp"
    warp_mask: int = 0
    cta_stride: int = 1
    sms: tuple[int, ...] = ()
    clone: bool = True
    vector_pointer: bool = True
    merge_blocks: bool = True
    hoist_tags: bool = False
    hoist_arith: str = "auto"
    defer_stores: bool = False
    record_cost: float = 0.0
    auto: str = ""
    override: str = ""

    def __post_init__(self) -> None:
        _check_int("capacity", self.capacity, 1, MAX_CAPACITY, "record slots per warp", _CAPACITY_FIX)
        object.__setattr__(self, "capacity", int(self.capacity))
        for name, allowed in (("strategy", STRATEGIES), ("clock", CLOCKS), ("store", STORES),
                              ("granularity", GRANULARITIES)):
            _one_of(name, getattr(self, name), allowed)
        if self.strategy == "wrap" and self.capacity & (self.capacity - 1):
            raise OptionError("capacity", self.capacity, "strategy='wrap' needs a power-of-two capacity, "
                                                         f"got {self.capacity}",
                              fix=f"use capacity={1 << self.capacity.bit_length()}")
        if self.fold is not None:
            _check_bool("fold", self.fold)
        if self.fold is None:
            object.__setattr__(self, "fold", self.strategy == "keep-first")
        if self.fold and self.strategy != "keep-first":
            raise OptionError("fold", self.fold, "fold=True applies to strategy='keep-first' only "
                              "(wrap indexes every record)",
                              fix="drop fold=True or use strategy='keep-first'")
        _check_int("warp_mask", self.warp_mask, 0, (1 << 32) - 1, "a 32-bit mask (bit w = warp w)",
                   "0 lets every warp record; bit w set lets warp w record, e.g. 0x11 for warps 0 and 4")
        _check_int("cta_stride", self.cta_stride, 1, (1 << 32) - 1, "record CTAs whose 32-bit id it divides",
                   "1 records every CTA; 8 records one CTA in 8")
        for name in ("warp_mask", "cta_stride"):
            object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "sms", _check_sms(self.sms))
        _check_bool("clone", self.clone)
        _check_bool("merge_blocks", self.merge_blocks)
        _check_bool("hoist_tags", self.hoist_tags)
        _one_of("hoist_arith", self.hoist_arith, HOIST_ARITH)
        _check_bool("defer_stores", self.defer_stores)
        _check_bool("vector_pointer", self.vector_pointer)
        _check_record_cost(self.record_cost)
        object.__setattr__(self, "record_cost", float(self.record_cost))
        for name in ("auto", "override"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise OptionError(name, value, f"must be a string, got {type(value).__name__} {value!r}")
        if self.auto:
            try:
                object.__setattr__(self, "auto", "+".join(parse_selectors(self.auto)))
            except KperfError as e:
                raise OptionError("auto", self.auto, str(e).split("\n")[0], fix=e.fix) from None

    @property
    def samples_ctas(self) -> bool:
        """Whether some CTAs are sampled out (``cta_stride`` or ``sms``)."""
        return self.cta_stride > 1 or bool(self.sms)

    def recording_warps(self, num_warps: int, role_starts: tuple[int, ...] = ()) -> tuple[int, ...]:
        """The warps that record (and own buffer slots), in order.  ``role_starts``: the first warp of
        each role of a warp-specialized kernel (``granularity="role"``; none: a single role)."""
        if self.granularity == "role":
            candidates = tuple(sorted(set(role_starts) | {0}))
        else:
            step = {"warp": 1, "warpgroup": 4, "cta": num_warps}[self.granularity]
            candidates = tuple(range(0, num_warps, step))
        warps = tuple(w for w in candidates
                      if w < num_warps and (not self.warp_mask or self.warp_mask >> w & 1))
        if not warps:
            raise KperfError(f"no warp records: granularity={self.granularity!r} and warp_mask="
                             f"0x{self.warp_mask:x} leave none of the kernel's {num_warps} warps",
                             fix="widen warp_mask or use granularity='warp'")
        return warps

    def to_mode(self) -> str:
        """``kperf:capacity=1024,clock=clock,...`` (fields in declaration order).

        The runtime appends ``,code=<hash of kperf's lowering sources>`` before it hands the string to
        Triton (``kperf.stages.instrumentation_mode``), so a changed kperf never reuses old binaries;
        ``from_mode`` skips that key.
        """
        items = [(f.name, _encode(getattr(self, f.name))) for f in dataclasses.fields(self)]
        return MODE_PREFIX + ":" + ",".join(f"{k}={v}" for k, v in items)

    @classmethod
    def from_mode(cls, mode: str) -> ProfileConfig:
        prefix, _, body = mode.partition(":")
        if prefix != MODE_PREFIX:
            raise KperfError(f"not a kperf instrumentation mode: {mode!r}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for item in filter(None, body.split(",")):
            key, _, value = item.partition("=")
            if key == "code":
                continue
            if key not in fields:
                raise KperfError(f"unknown kperf option {key!r} in mode {mode!r}",
                                 fix=f"known options: {', '.join(fields)}")
            kwargs[key] = _decode(fields[key].default, value)
        return cls(**kwargs)

    @staticmethod
    def is_kperf_mode(mode: str | None) -> bool:
        return bool(mode) and mode.split(":", 1)[0] == MODE_PREFIX


class OptionError(KperfError):
    """A refused ``ProfileConfig`` option: ``option`` names the field, ``reason`` says what is wrong.

    ``renamed`` gives the same error under another name for the option, e.g. the command line's
    ``--capacity``.
    """

    def __init__(self, option: str, value, reason: str, *, fix: str | None = None):
        self.option, self.value, self.reason = option, value, reason
        super().__init__(f"option {option}: {reason}", fix=fix)

    def renamed(self, name: str) -> KperfError:
        """This error with the option called ``name`` (a command-line flag, a keyword of another API)."""
        return KperfError(f"{name}: {self.reason}", fix=self.fix)


def _is_int(value) -> bool:
    """An int or a numpy integer, but not a bool (``True`` is an int in Python)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_int(name: str, value, lo: int, hi: int, what: str, fix: str | None = None) -> None:
    if not _is_int(value):
        raise OptionError(name, value, f"must be an int ({what}), got {type(value).__name__} {value!r}")
    if not lo <= int(value) <= hi:
        raise OptionError(name, value, f"must be in [{lo}, {hi}] ({what}), got {value!r}", fix=fix)


def _check_bool(name: str, value) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise OptionError(name, value, f"must be True or False, got {type(value).__name__} {value!r}")


def _check_sms(sms) -> tuple[int, ...]:
    """``sms`` as a sorted tuple of distinct SM ids; a string, a number or a bad id is refused."""
    if not isinstance(sms, (tuple, list, set, frozenset, range)):
        raise OptionError("sms", sms, f"must be a tuple of SM ids such as (0, 1), got {type(sms).__name__} "
                                      f"{sms!r}")
    bad = [s for s in sms if not _is_int(s) or not 0 <= int(s) <= MAX_SM_ID]
    if bad:
        raise OptionError("sms", sms, f"SM ids are ints in [0, {MAX_SM_ID}], got {bad[0]!r} in {sms!r}")
    return tuple(sorted({int(s) for s in sms}))


def _check_record_cost(cost) -> None:
    if not (_is_int(cost) or isinstance(cost, (float, np.floating))):
        raise OptionError("record_cost", cost, f"must be a number of cycles, got {type(cost).__name__} "
                                               f"{cost!r}")
    if not math.isfinite(cost) or cost < 0:
        raise OptionError("record_cost", cost, f"must be a finite number of cycles >= 0 (0: off), "
                                               f"got {cost!r}",
                          fix="measure it with bench/calibration.py (docs/accuracy.md)")


def _one_of(name: str, value, allowed) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise OptionError(name, value, f"unknown {name} {value!r}", fix=f"use one of {', '.join(allowed)}")


def _encode(value) -> str:
    if isinstance(value, tuple):
        return ".".join(str(v) for v in value)
    return str(value).replace(",", "+")  # "," separates options in the mode string


def _decode(default, text: str):
    """Parse one mode value by the type of the field's default."""
    if default is None and text in ("True", "False", "None"):  # an optional bool (fold)
        return None if text == "None" else text == "True"
    if isinstance(default, bool):
        if text not in ("True", "False"):
            raise KperfError(f"expected True or False in a kperf mode, got {text!r}")
        return text == "True"
    if isinstance(default, int):
        return int(text, 0)
    if isinstance(default, float):
        return float(text)
    if isinstance(default, tuple):
        return tuple(int(v) for v in text.split(".") if v)
    return text.replace("+", ",")
