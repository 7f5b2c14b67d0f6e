"""``Profile``: the launches a kernel or session captured, decoded on demand.

``events()`` is the raw events table, ``intervals()`` the paired scopes, ``stats()`` per-scope
statistics, ``table()`` a printable summary (also ``str(profile)``), ``to_chrome_trace()`` the trace.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from kperf.dialect.errors import KperfError

STATS_DTYPE = np.dtype([
    ("kernel", "U64"), ("scope", "U64"), ("count", "<i8"), ("total_ns", "<f8"), ("mean_ns", "<f8"),
    ("p50_ns", "<f8"), ("p95_ns", "<f8"), ("max_ns", "<f8"), ("mean_cycles", "<f8"),
])

_UNITS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


class Profile:
    """A list of profiled launches (``LaunchRecord``), decoded lazily and once."""

    def __init__(self, launches: list | None = None):
        self.launches = launches if launches is not None else []

    def __len__(self) -> int:
        return len(self.launches)

    def decoded(self) -> list:
        """One ``kperf.tracing.DecodedLaunch`` per launch (waits for the buffers' copies)."""
        if not self.launches:
            raise KperfError("this profile holds no launches",
                             fix="launch a kernel that has kperf scopes while profiling is on")
        return [launch.decoded() for launch in self.launches]

    def events(self) -> np.ndarray:
        """All events of all launches (``kperf.tracing.EVENT_DTYPE``)."""
        return np.concatenate([d.events for d in self.decoded()])

    def intervals(self) -> np.ndarray:
        """All paired scopes of all launches (``kperf.tracing.INTERVAL_DTYPE``)."""
        return np.concatenate([d.intervals()[0] for d in self.decoded()])

    @property
    def lost_total(self) -> int:
        return sum(int(d.lost_total) for d in self.decoded())

    @property
    def problems(self) -> list[str]:
        return [f"launch {d.launch}: {p}" for d in self.decoded() for p in d.problems]

    def stats(self) -> np.ndarray:
        """Per (kernel, scope) over all launches: count, total, mean, p50, p95, max in ns, mean cycles."""
        groups: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]] = {}
        for launch, dec in zip(self.launches, self.decoded()):
            iv, _ = dec.intervals()
            dur = iv["end_ns"] - iv["start_ns"]
            cyc = (iv["end_cycles"] - iv["start_cycles"]).astype(np.float64)
            for scope in launch.kernel.scopes.scopes:  # a loop over scopes, not events
                sel = iv["scope"] == scope.id
                groups.setdefault((launch.kernel.name, scope.name), []).append((dur[sel], cyc[sel]))
        rows = []
        for (kernel, scope), parts in groups.items():
            d = np.concatenate([p[0] for p in parts])
            c = np.concatenate([p[1] for p in parts])
            if len(d) == 0:
                rows.append((kernel, scope, 0, 0.0, np.nan, np.nan, np.nan, np.nan, np.nan))
                continue
            p50, p95 = np.percentile(d, [50, 95])
            rows.append((kernel, scope, len(d), d.sum(), d.mean(), p50, p95, d.max(), c.mean()))
        return np.array(rows, dtype=STATS_DTYPE)

    def table(self, sort_by: str = "total_ns", row_limit: int | None = None, time_unit: str = "us") -> str:
        """A text table of ``stats()`` plus per-launch lines (clock, lost events, problems)."""
        if time_unit not in _UNITS:
            raise KperfError(f"unknown time unit {time_unit!r}", fix=f"use one of {', '.join(_UNITS)}")
        st = self.stats()
        if sort_by not in STATS_DTYPE.names:
            raise KperfError(f"cannot sort by {sort_by!r}", fix=f"use one of {', '.join(STATS_DTYPE.names)}")
        st = st[np.argsort(-st[sort_by] if st.dtype[sort_by].kind in "fi" else st[sort_by], kind="stable")]
        if row_limit:
            st = st[:row_limit]
        u = _UNITS[time_unit]
        head = (f"{'kernel':<24} {'scope':<24} {'count':>10} {'total':>12} {'mean':>10} {'p50':>10} "
                f"{'p95':>10} {'max':>10} {'cycles':>10}")
        lines = [f"times in {time_unit}", head, "-" * len(head)]
        for r in st:
            lines.append(f"{r['kernel'][:24]:<24} {r['scope'][:24]:<24} {r['count']:>10} "
                         f"{r['total_ns'] / u:>12.3f} {r['mean_ns'] / u:>10.3f} {r['p50_ns'] / u:>10.3f} "
                         f"{r['p95_ns'] / u:>10.3f} {r['max_ns'] / u:>10.3f} {r['mean_cycles']:>10.1f}")
        lines.append("")
        for launch, dec in zip(self.launches, self.decoded()):
            lines.append(f"[{launch.kernel.name}] " + dec.summary())
            if dec.lost_total:
                need = int(dec.lost["count"].max())
                lines.append(f"  -> raise capacity to {1 << (need - 1).bit_length()} "
                             f"(kperf.profile(capacity=...)) to keep every event")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_chrome_trace(self, path: str | os.PathLike, **options) -> str:
        """Write a Chrome trace JSON (``.gz`` for gzip); open it in ui.perfetto.dev or chrome://tracing."""
        from kperf.tracing.chrome import write_chrome_trace
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        decoded = self.decoded()
        write_chrome_trace(path, decoded, **options)
        return str(path)

    def save(self, out_dir: str | os.PathLike) -> dict[str, str]:
        """Write ``chrome_trace.json`` and ``summary.txt`` into ``out_dir``."""
        out = pathlib.Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        trace = self.to_chrome_trace(out / "chrome_trace.json")
        summary = out / "summary.txt"
        summary.write_text(self.table() + "\n")
        return {"trace": trace, "summary": str(summary)}
