"""Profiling options: one frozen dataclass, round-tripped through Triton's ``instrumentation_mode``.

Triton puts ``knobs.compilation.instrumentation_mode`` into the compile options and so into the cache
key; kperf sets it to ``ProfileConfig.to_mode()`` while compiling a profiled kernel, which keeps
instrumented and plain binaries apart in Triton's cache and tells kperf's stage hook what to build.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import pathlib

from kperf.dialect.errors import KperfError
from kperf.layout import CLOCKS, STRATEGIES

MODE_PREFIX = "kperf"


@functools.lru_cache(maxsize=None)
def code_hash() -> str:
    """A hash of the kperf sources that shape a compiled kernel, so Triton's cache sees kperf changes."""
    import kperf.dialect
    import kperf.passes
    h = hashlib.sha256()
    for pkg in (kperf.dialect, kperf.passes):
        root = pathlib.Path(pkg.__file__).parent
        for f in sorted(root.glob("*.py")):
            h.update(f.read_bytes())
    for name in ("layout.py", "stages.py", "config.py"):
        h.update((pathlib.Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class ProfileConfig:
    """How records are lowered and stored.

    Args:
        capacity: record slots per warp (8 bytes each with ``clock="clock"``, 16 otherwise). A warp
            that records more than this loses the excess (``keep-first``) or its oldest records
            (``wrap``); either way the count is exact and reported.  1024 holds a 128-iteration
            K loop with 4 records per iteration and an outer scope with room to spare.
        strategy: ``"keep-first"`` (keep the first ``capacity`` records) or ``"wrap"`` (ring buffer:
            keep the latest; ``capacity`` must then be a power of two).
        clock: ``"clock"`` (32-bit SM cycles, unwrapped on the host; cheapest), ``"clock64"``
            (64-bit SM cycles) or ``"globaltimer"`` (ns, but only 32 ns to 1 us resolution).
    """

    capacity: int = 1024
    strategy: str = "keep-first"
    clock: str = "clock"

    def __post_init__(self) -> None:
        if not isinstance(self.capacity, int) or self.capacity <= 0:
            raise KperfError(f"capacity must be a positive int (records per warp), got {self.capacity!r}")
        if self.strategy not in STRATEGIES:
            raise KperfError(f"unknown strategy {self.strategy!r}", fix=f"use one of {', '.join(STRATEGIES)}")
        if self.clock not in CLOCKS:
            raise KperfError(f"unknown clock {self.clock!r}", fix=f"use one of {', '.join(CLOCKS)}")
        if self.strategy == "wrap" and self.capacity & (self.capacity - 1):
            raise KperfError(f"strategy='wrap' needs a power-of-two capacity, got {self.capacity}",
                             fix=f"use capacity={1 << self.capacity.bit_length()}")

    def to_mode(self) -> str:
        """``kperf:capacity=1024,clock=clock,strategy=keep-first,code=<hash>`` (fields sorted).

        ``code`` is a hash of kperf's lowering sources: a changed kperf never reuses old binaries.
        """
        items = sorted(dataclasses.asdict(self).items())
        return MODE_PREFIX + ":" + ",".join(f"{k}={v}" for k, v in items) + f",code={code_hash()}"

    @classmethod
    def from_mode(cls, mode: str) -> "ProfileConfig":
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
            kwargs[key] = int(value) if fields[key].type in (int, "int") else value
        return cls(**kwargs)

    @staticmethod
    def is_kperf_mode(mode: str | None) -> bool:
        return bool(mode) and mode.split(":", 1)[0] == MODE_PREFIX
