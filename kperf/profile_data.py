"""``Profile``: the launches a kernel or session captured, decoded on demand.

``events()`` is the raw events table, ``intervals()`` the paired scopes, ``stats()`` per-scope
statistics, ``report()`` every statistics table (warp roles, idle gaps, overlap, imbalance: see
docs/statistics.md), ``table()`` a printable summary (also ``str(profile)``), ``to_chrome_trace()`` the trace.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from kperf.dialect.errors import KperfError

STATS_DTYPE = np.dtype([
    ("kernel", "U64"), ("scope", "U64"), ("count", "<i8"), ("total_ns", "<f8"), ("mean_ns", "<f8"),
    ("p50_ns", "<f8"), ("p95_ns", "<f8"), ("max_ns", "<f8"), ("mean_cycles", "<f8"),
    ("total_cycles", "<f8"), ("p50_cycles", "<f8"), ("p95_cycles", "<f8"), ("max_cycles", "<f8"),
    ("share", "<f8"),
])

# Profile.table(): the columns and their least widths (kernel and scope names are cut to 24 characters)
_TABLE_HEADS = ("kernel", "scope", "count", "total", "mean", "p50", "p95", "max", "cycles")
_TABLE_WIDTHS = (24, 24, 10, 12, 10, 10, 10, 10, 10)
_TABLE_RIGHT = (False, False) + (True,) * 7
_TABLE_TIMES = ("total_ns", "mean_ns", "p50_ns", "p95_ns", "max_ns")


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

    def named(self) -> list:
        """``decoded()`` with each launch's ``kernel`` name filled in from its kernel."""
        out = []
        for launch, dec in zip(self.launches, self.decoded(), strict=True):
            if not getattr(dec, "kernel", None):
                dec.kernel = launch.kernel.name
            out.append(dec)
        return out

    def stats(self) -> np.ndarray:
        """Per (kernel, scope) over all launches (``STATS_DTYPE``): count; total, mean, p50, p95, max in
        ns; the same in cycles; share of the kernel's scope time.  Scopes that never ran have count 0."""
        return self._stats(self.named())

    @staticmethod
    def _stats(launches) -> np.ndarray:
        """:meth:`stats` of decoded launches or their ``kperf.tracing.frame.Frame``."""
        from kperf.tracing.stats import scope_stats
        t = scope_stats(launches)
        out = np.zeros(len(t), STATS_DTYPE)
        for name in STATS_DTYPE.names:
            out[name] = t[name if name != "share" else "share_frac"]
        return out

    def report(self):
        """Every statistics table (``kperf.tracing.stats.Report``): scopes, warp roles, idle gaps,
        idle time, overlap between scopes, load imbalance, SMs, CTA spans."""
        from kperf.tracing.stats import report
        return report(self.named())

    def table(self, sort_by: str = "total_ns", row_limit: int | None = None, time_unit: str = "us") -> str:
        """A text table of ``stats()``, then (several launches) the per-kernel table, then per-launch lines
        (clock, lost events, problems): past 20 launches only those of the launches that lost or rejected
        records or have problems."""
        from kperf.tracing.frame import frame
        from kperf.tracing.tables import align_columns
        from kperf.tracing.units import ns_per
        u = ns_per(time_unit)
        f = frame(self.named())  # one frame for the scope and kernel tables
        st = self._stats(f)
        if sort_by not in STATS_DTYPE.names:
            raise KperfError(f"cannot sort by {sort_by!r}", fix=f"use one of {', '.join(STATS_DTYPE.names)}")
        st = st[np.argsort(-st[sort_by] if st.dtype[sort_by].kind in "fi" else st[sort_by], kind="stable")]
        if row_limit:
            st = st[:row_limit]
        cells = [[k[:24] for k in st["kernel"].tolist()], [s[:24] for s in st["scope"].tolist()],
                 [str(n) for n in st["count"].tolist()]]
        cells += [[f"{x / u:.3f}" for x in st[c].tolist()] for c in _TABLE_TIMES]
        cells.append([f"{x:.1f}" for x in st["mean_cycles"].tolist()])
        lines = [f"times in {time_unit}"] + align_columns(_TABLE_HEADS, cells, _TABLE_RIGHT, sep=" ",
                                                          min_widths=_TABLE_WIDTHS)
        lines.append("")
        return "\n".join(lines + self._launch_lines(time_unit, f))

    def _launch_lines(self, time_unit: str, f) -> list[str]:
        """The kernels table (several launches) and per-launch lines: past ``MANY_LAUNCHES`` launches only
        those that lost or rejected records or have problems (``kperf.tracing.kernel_tables``)."""
        from kperf.tracing.kernel_tables import kernel_stats, launch_lines
        named = f.launches
        names = {id(dec): launch.kernel.name for launch, dec in zip(self.launches, named, strict=True)}

        def lines_of(dec) -> list[str]:
            out = [f"[{names[id(dec)]}] " + dec.summary()]
            if dec.lost_total:
                need = int(dec.lost["count"].max())
                out.append(f"  -> raise capacity to {1 << (need - 1).bit_length()} "
                           f"(kperf.profile(capacity=...)) to keep every event")
            return out

        head = [kernel_stats(f).to_text(time_unit), ""] if len(named) > 1 else []
        return head + launch_lines(named, lines_of)

    def __str__(self) -> str:
        return self.table()

    def to_chrome_trace(self, path: str | os.PathLike, *, select=None, flows=None, **options) -> str:
        """Write a Chrome trace JSON (``.gz`` for gzip); open it in ui.perfetto.dev or chrome://tracing.

        ``select``: which CTAs the trace shows (``"all"``, ``"first-wave"``, ``"ctas:0-7"``, ...; default:
        all up to 1M events per launch, else the first wave); statistics always cover every event.
        ``flows``: ``kperf.tracing.FLOW_DTYPE`` arrays (one per launch, or ``{launch: array}``); default:
        the async issue -> completion arrows that automatic insertion paired, if any."""
        from kperf.tracing.chrome import write_chrome_trace
        path = pathlib.Path(path)  # written atomically, folders made (kperf.tracing.atomic)
        write_chrome_trace(path, self.named(), select=select, flows=self._flows(flows), **options)
        return str(path)

    def to_perfetto(self, path: str | os.PathLike, *, select=None, flows=None, **options) -> str:
        """Write a native Perfetto trace (protobuf; ``.gz`` for gzip) for ui.perfetto.dev / ``kperf view``.

        ``select`` and ``flows`` as for :meth:`to_chrome_trace`; see ``kperf.tracing.perfetto``."""
        from kperf.tracing.perfetto import write_perfetto_trace
        path = pathlib.Path(path)  # written atomically, folders made (kperf.tracing.atomic)
        write_perfetto_trace(path, self.named(), select=select, flows=self._flows(flows), **options)
        return str(path)

    def _flows(self, flows):
        """``flows`` as given, else the launches' own (live launches only: saved ones carry none)."""
        if flows is not None:
            return flows
        own = [launch.flows() if hasattr(launch, "flows") and getattr(launch.kernel, "flows", None) else None
               for launch in self.launches]
        return own if any(f is not None and len(f) for f in own) else None

    def save(self, dir_or_file: str | os.PathLike) -> dict[str, str]:
        """Save the profile.

        A path ending in ``.kperf`` gets the saved profile only (docs/saved-profile.md; reload it with
        :meth:`Profile.load`).  Any other path is a directory that gets ``profile.kperf``,
        ``chrome_trace.json`` and ``summary.txt``.  Returns the paths written.
        """
        from kperf.tracing.saved import SUFFIX, save_profile
        target = pathlib.Path(dir_or_file)
        if target.suffix == SUFFIX:
            return {"profile": save_profile(target, self.named(), device=_device_name())}
        from kperf.tracing.atomic import write_text  # every file atomically; folders made as needed
        profile = save_profile(target / f"profile{SUFFIX}", self.named(), device=_device_name())
        trace = self.to_chrome_trace(target / "chrome_trace.json")
        summary = write_text(target / "summary.txt", self.table() + "\n")
        return {"profile": profile, "trace": trace, "summary": summary}

    @classmethod
    def load(cls, path: str | os.PathLike) -> Profile:
        """A profile saved by :meth:`save` (a ``.kperf`` file, or a directory holding ``profile.kperf``)."""
        from kperf.tracing.saved import SUFFIX, SavedLaunch, load_profile
        p = pathlib.Path(path)
        if p.is_dir() and (p / f"profile{SUFFIX}").exists():
            p = p / f"profile{SUFFIX}"
        return cls([SavedLaunch(d) for d in load_profile(p)])


def _device_name() -> str | None:
    """The current CUDA device's name when torch is loaded and sees one (for the saved manifest)."""
    import sys
    torch = sys.modules.get("torch")
    try:
        return torch.cuda.get_device_name() if torch is not None and torch.cuda.is_available() else None
    except Exception:  # no usable driver: the name is optional
        return None
