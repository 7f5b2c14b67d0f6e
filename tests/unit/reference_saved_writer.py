"""Reference writer of saved profiles: a ``.kperf`` file (format version 1) written from
``docs/saved-profile.md`` alone, never through ``kperf.tracing.saved``.

It writes what the document describes, the plain way: a zip archive (members stored) with
``manifest.json`` and, per launch, either ``launches/<i>/buffer.bin`` (``payload: "buffer"``, the raw
profile buffer) or the decoded tables as ``.npy`` files (``payload: "columns"``, written by
``numpy.save``).  Loading such a file with kperf checks the format document and the loader against
each other (as ``reference_encoder`` does for the buffer format); the analytics benchmark
(``bench/analytics_scale.py``) writes its 16.8M-event profile with it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile

import numpy as np

FORMAT = "kperf-profile"
VERSION = 1


@dataclasses.dataclass
class SavedLaunchSpec:
    """One launch as the manifest describes it, with its payload.

    ``buffer``: the raw profile buffer (``payload: "buffer"``), or ``columns``: ``{member stem: array}``
    (``seg_launch`` ... ``seg_n``, ``scope``, ``is_end``, ``cycles``, ``time_ns``, [``seq``], ``ctas``,
    ``lost``, ``sm_clocks``) for ``payload: "columns"``.
    """

    kernel: str
    n_ctas: int
    num_warps: int
    capacity: int
    clock: str = "clock"
    strategy: str = "keep-first"
    scopes: list[str] | None = None
    warp_roles: list[str] | None = None
    grid: tuple[int, ...] | None = None
    launch: int = 0
    n_events: int = 0
    clock_ghz: float | None = None
    t0_ns: int = 0
    buffer: bytes | None = None
    columns: dict[str, np.ndarray] | None = None


def _entry(i: int, s: SavedLaunchSpec) -> dict:
    """The manifest entry of launch ``i`` (the keys of docs/saved-profile.md's example)."""
    return {
        "index": i, "launch": s.launch, "kernel": s.kernel,
        "grid": list(s.grid) if s.grid else [s.n_ctas, 1, 1], "n_ctas": s.n_ctas,
        "geometry": {"num_warps": s.num_warps, "capacity": s.capacity, "clock": s.clock, "warps": None,
                     "sink": 0},
        "strategy": s.strategy,
        "scopes": None if s.scopes is None else [[k, name] for k, name in enumerate(s.scopes)],
        "warp_roles": s.warp_roles, "clock_ghz": s.clock_ghz, "sm_clocks_ghz": {},
        "t0_ns": s.t0_ns, "gtime_step_ns": 32, "n_events": s.n_events, "lost_total": 0, "problems": [],
        "payload": "buffer" if s.buffer is not None else "columns",
    }


def _npy_bytes(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    np.save(b, np.ascontiguousarray(a), allow_pickle=False)
    return b.getvalue()


def write_saved_profile(path: str | os.PathLike, launches: list[SavedLaunchSpec],
                        device: str | None = None) -> str:
    """Write ``launches`` as a ``.kperf`` file at ``path`` (members stored, not compressed)."""
    manifest = {"format": FORMAT, "version": VERSION, "kperf_version": "reference-writer",
                "created": "2026-12-06T00:00:00+00:00", "device": device,
                "launches": [_entry(i, s) for i, s in enumerate(launches)]}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        z.writestr("manifest.json", json.dumps(manifest))
        for i, s in enumerate(launches):
            if s.buffer is not None:
                with z.open(f"launches/{i}/buffer.bin", "w", force_zip64=True) as w:
                    w.write(memoryview(s.buffer).cast("B"))
                continue
            for stem, a in (s.columns or {}).items():
                z.writestr(f"launches/{i}/{stem}.npy", _npy_bytes(a))
    return os.fspath(path)
