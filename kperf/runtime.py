"""Runtime: Triton hooks, the profile allocator, and asynchronous capture of profile buffers.

One ``Dispatcher`` owns everything kperf changes in Triton and PyTorch while profiling is on (the stage
hook, the profile allocator, the kernel-load and launch-exit hooks; the launch paths of
``kperf.launch_paths``: CUDA graph capture and replay, Inductor's kernels, compiled kernels called
directly); the first ``activate()`` installs, the last ``deactivate()`` restores what was there.

Per launch of an instrumented kernel, with no device synchronisation:

1. Triton's launcher asks the profile allocator for ``grid * cta_bytes`` bytes: kperf hands out a
   zeroed device buffer (an async memset on the launch stream);
2. the kernel writes its records;
3. the launch-exit hook (which runs once the launch is queued) decides which captures take the launch
   (name filters, sampling) and keeps its buffer on the device (``kperf.copy_out``: buffers go to the
   host together when results are asked for or when the bytes held pass the memory budget).

During a CUDA graph capture step 3 keeps the buffer with the graph instead and every replay copies it
(``kperf.cuda_graphs``).  A buffer is decoded when results are asked for (``LaunchRecord.decoded``).
Launches a capture does not profile are counted with their reason (``kperf.coverage``).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import warnings
from collections.abc import Callable

from kperf import copy_out, cuda_graphs, device_buffers, stages, triton_compat
from kperf.coverage import NO_RECORDS, PLAIN, Coverage, Sampling
from kperf.dialect.errors import KperfError
from kperf.dialect.layout import Geometry
from kperf.dialect.scope_table import ScopeTable


@dataclasses.dataclass
class KernelInfo:
    """What kperf knows of one compiled, instrumented kernel (from its Triton metadata)."""

    name: str
    hash: str
    scopes: ScopeTable
    geometry: Geometry
    strategy: str
    num_records: int
    warp_roles: list[str] | None = None  # one role per warp (warp-specialized kernels), from the TTGIR
    flows: list[dict] | None = None  # async issue/completion pairs (kperf.tracing.flows)
    record_cost: float = 0.0  # cycles subtracted per record (ProfileConfig.record_cost, kperf.accuracy)

    @classmethod
    def from_metadata(cls, name: str, hash: str, md: dict) -> KernelInfo | None:
        info = md.get(stages.METADATA_KEY) or {}
        scratch = md.get(triton_compat.SCRATCH_SIZE)
        if not info.get("num_records") or not scratch:
            return None
        geometry = Geometry.from_json(info.get("geometry") or info)
        if geometry.cta_bytes != int(scratch):
            raise KperfError(f"kernel {name}: profile buffer size {scratch} in its "
                             f"metadata does not match kperf's layout ({geometry.cta_bytes})",
                             fix="clear Triton's cache (~/.triton/cache) and recompile")
        from kperf.dialect.options import ProfileConfig
        record_cost = ProfileConfig.from_mode(info["config"]).record_cost if info.get("config") else 0.0
        return cls(name, hash, ScopeTable.from_json(info["scopes"]), geometry, info["strategy"],
                   int(info["num_records"]), info.get("warp_roles") or None, info.get("flows") or None,
                   record_cost)


@dataclasses.dataclass
class LaunchRecord:
    """One profiled launch: its kernel, its buffer (on the device until spilled), and (lazily) its decode."""

    index: int  # launch number within this process
    kernel: KernelInfo
    n_ctas: int
    host_time: float  # time.time() at launch
    _device: object = None  # the device buffer until it is spilled to the host (kperf.copy_out.HELD)
    _decoded: object = None
    info: dict | None = None  # facts about the launch as a whole (launch path, graph replay, Inductor ops)
    _host: object = None  # the raw buffer (numpy uint8) once on the host
    _error: Exception | None = None  # the CUDA error met before the buffer got out (a fault)

    @property
    def nbytes(self) -> int:
        return self.n_ctas * self.kernel.geometry.cta_bytes

    def device_buffer(self):
        return self._device

    def landed(self, host) -> None:
        """The spill put this launch's buffer on the host."""
        self._host, self._device = host, None

    def lost(self, error: Exception) -> None:
        """The GPU faulted before this launch's buffer got out."""
        self._error, self._device = error, None

    def host_bytes(self):
        """The raw buffer as a numpy uint8 array (spills what the device holds, once, if needed)."""
        if self._device is not None:
            copy_out.HELD.spill()
        if self._error is not None:
            raise lost_to_a_fault(self.index, self.kernel.name, self._error) from self._error
        if self._host is None:
            raise KperfError(f"launch {self.index} of {self.kernel.name}: its raw buffer was released after "
                             "decoding", fix="use decoded()")
        return self._host

    def flows(self):
        """``FLOW_DTYPE`` arrows from async issue to completion (empty unless auto-insertion paired some)."""
        from kperf.tracing.flows import compute_flows
        return compute_flows(self.decoded(), self.kernel.flows, self.kernel.warp_roles)

    def decoded(self):
        if self._decoded is None:
            from kperf.tracing.decode import decode
            self._decoded = decode(self.host_bytes(), self.kernel.geometry, strategy=self.kernel.strategy,
                                   n_ctas=self.n_ctas, launch=self.index, scopes=self.kernel.scopes.to_json(),
                                   warp_roles=self.kernel.warp_roles, kernel=self.kernel.name,
                                   info=self.info)
            if self.kernel.record_cost:
                from kperf.accuracy import subtract_record_cost
                subtract_record_cost(self._decoded, self.kernel.record_cost)
            self._host = None
        return self._decoded


def lost_to_a_fault(index: int, kernel: str, error: Exception) -> KperfError:
    """The error for a launch whose profile buffer the GPU's fault made unreadable."""
    cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return KperfError(
        f"launch {index} of {kernel}: its profile buffer cannot be read because the GPU "
        f"reported an error before the copy finished ({cause}); this launch's records are lost",
        fix="the kernel, or one launched before it on this device, faulted: CUDA errors such as an illegal "
            "address are sticky, so this process can no longer use the GPU; find the fault with "
            "compute-sanitizer or CUDA_LAUNCH_BLOCKING=1 and run again")


class Capture:
    """Something that collects launches: a ``ProfiledKernel`` or a session.

    ``name_filter`` picks kernels by name, ``sampling`` launches of each kernel; ``memory_budget``
    bounds the device bytes its launches' buffers hold before a spill; ``config`` is the
    ``ProfileConfig`` kernels compiled for it get (set by the subclass).
    """

    config = None

    def __init__(self, name_filter: Callable[[str], bool] | None = None, sampling: Sampling | None = None,
                 memory_budget: int | None = copy_out.DEFAULT_BUDGET):
        self.launches: list[LaunchRecord] = []
        self._filter = name_filter
        self.sampling = sampling or Sampling()
        self.coverage = Coverage()
        self.memory_budget = memory_budget

    def wants(self, kernel_name: str) -> bool:
        return self._filter is None or self._filter(kernel_name)

    def take(self, kernel_name: str) -> bool:
        """Whether this launch of ``kernel_name`` is profiled (sampling); a launch left out is counted."""
        reason = self.sampling.take(kernel_name)
        if reason is not None:
            self.coverage.skipped(kernel_name, reason)
        return reason is None

    def add(self, record: LaunchRecord) -> None:
        self.launches.append(record)
        self.coverage.profiled(record.kernel.name)


class Dispatcher:
    """Installs and removes kperf's hooks; routes each instrumented launch to its captures."""

    def __init__(self):
        self._active = 0
        self._lock = threading.Lock()
        self._tls = threading.local()
        # CUfunction -> KernelInfo, or the reason the kernel is not instrumented (a str)
        self._kernels: dict[int, KernelInfo | str] = {}
        self._sessions: list[Capture] = []
        self._saved_allocator = None
        self._launch_count = 0
        self.last_launch: LaunchRecord | None = None

    # -- activation ---------------------------------------------------------------------------------
    def activate(self) -> None:
        with self._lock:
            self._active += 1
            if self._active > 1:
                return
            stages.install()
            triton_compat.add_launch_hooks(self._on_load, self._on_launch_exit)
            self._saved_allocator = triton_compat.profile_allocator()
            triton_compat.set_profile_allocator(self._allocate)
            from kperf import launch_paths
            launch_paths.install(self)

    def deactivate(self) -> None:
        with self._lock:
            if self._active == 0:
                return
            self._active -= 1
            if self._active:
                return
            from kperf import launch_paths
            launch_paths.uninstall()
            triton_compat.remove_launch_hooks(self._on_load, self._on_launch_exit)
            triton_compat.set_profile_allocator(self._saved_allocator)
            stages.uninstall()
            device_buffers.SLABS.release()  # the last partly used slabs go with their buffers

    @property
    def active(self) -> bool:
        return self._active > 0

    # -- capture targets ------------------------------------------------------------------------------
    def push_kernel_capture(self, cap: Capture) -> None:
        stack = getattr(self._tls, "stack", None)
        if stack is None:
            stack = self._tls.stack = []
        stack.append(cap)

    def pop_kernel_capture(self) -> None:
        self._tls.stack.pop()

    def add_session(self, cap: Capture) -> None:
        self._sessions.append(cap)

    def remove_session(self, cap: Capture) -> None:
        self._sessions.remove(cap)

    def sessions(self) -> list[Capture]:
        return list(self._sessions)

    def targets(self) -> list[Capture]:
        """The captures a launch on this thread goes to: the ``kperf.profile`` kernel, then sessions."""
        stack = getattr(self._tls, "stack", None) or []
        return ([stack[-1]] if stack else []) + list(self._sessions)

    def config_for(self, kernel_name: str):
        """The ``ProfileConfig`` to build ``kernel_name`` with for the captures that want it (or None)."""
        for t in reversed(self.targets()):
            if t.config is not None and t.wants(kernel_name):
                return t.config
        return None

    def take(self, kernel_name: str) -> list[Capture]:
        """The captures that profile this launch of ``kernel_name`` (filters and sampling applied)."""
        return [t for t in self.targets() if t.wants(kernel_name) and t.take(kernel_name)]

    def skipped(self, kernel_name: str, reason: str) -> None:
        """Count a launch of ``kernel_name`` kperf does not profile, with why, in each capture wanting it."""
        for t in self.targets():
            if t.wants(kernel_name):
                t.coverage.skipped(kernel_name, reason)

    def samples(self, kernel_name: str) -> bool:
        """Whether a capture that wants ``kernel_name`` may leave launches of it out (``every=``,
        ``max_launches=``): then a launch path samples before launching, and runs a left-out launch plain."""
        stack = getattr(self._tls, "stack", None)  # targets() without building its list: asked every launch
        if stack and stack[-1].sampling.active and stack[-1].wants(kernel_name):
            return True
        return any(s.sampling.active and s.wants(kernel_name) for s in self._sessions)

    def benchmarking(self):
        """A ``with`` block of a tuner's timing runs: compiled and run plain, never captured."""
        return _Benchmarking(self._tls)

    def launching(self, taken: list[Capture], info: dict | None) -> None:
        """Tell the launch-exit hook that a launch path already chose this launch's captures."""
        self._tls.taken, self._tls.info = taken, info

    # -- Triton hooks ---------------------------------------------------------------------------------
    def _on_load(self, module, function, name, metadata_group, hash) -> None:
        # every load overwrites its handle's entry: Triton 3.8+ unloads a freed kernel's module
        # (triton_compat.FACTS.unloads_modules), so a handle may come back for another kernel
        path = next((p for k, p in metadata_group.items() if k.endswith(".json")), None)
        info = PLAIN
        if path is not None:
            with open(path) as f:
                md = json.load(f)
            info = KernelInfo.from_metadata(name, hash, md) or (NO_RECORDS if stages.METADATA_KEY in md
                                                                 else PLAIN)
        self._kernels[function] = info

    def _allocate(self, size: int, alignment: int, stream):
        mode = cuda_graphs.capture_mode()
        unseen = mode is None and cuda_graphs.capturing_unseen()  # asked once; the exit hook reads it too
        buf = device_buffers.zeroed_buffer(size, stream, capture_mode=mode, unseen_capture=unseen,
                                           alignment=alignment)
        self._tls.pending, self._tls.unseen_capture = buf, unseen
        return buf

    def _on_launch_exit(self, md) -> None:
        tls = self._tls
        buf, taken, extra, unseen = (getattr(tls, "pending", None), getattr(tls, "taken", None),
                                     getattr(tls, "info", None), getattr(tls, "unseen_capture", False))
        tls.pending = tls.taken = tls.info = None
        tls.unseen_capture = False
        if md is None or getattr(tls, "benchmarking", False):  # a tuner's timing run: never captured
            return
        data = triton_compat.launch_data(md)
        info = self._kernels.get(data.get("function"), PLAIN)
        if not isinstance(info, KernelInfo):
            self.skipped(data.get("name") or "?", info)
            return
        capturing = cuda_graphs.capturing()
        if taken is not None:
            targets = taken
        elif capturing:  # a capture runs nothing: sampling decides at each replay (kperf.cuda_graphs)
            targets = [t for t in self.targets() if t.wants(info.name)]
        else:
            targets = self.take(info.name)
        if not targets:
            return
        if buf is None:
            warnings.warn(f"kperf: launch of {info.name} got no profile buffer (another profile allocator "
                          f"is installed?); its records are lost", stacklevel=2)
            return
        size = buf.numel()
        if size % info.geometry.cta_bytes:
            raise KperfError(f"profile buffer of {size} bytes is not a whole number of "
                             f"{info.geometry.cta_bytes}-byte CTA regions")
        if capturing:
            cuda_graphs.captured(info, buf, size // info.geometry.cta_bytes, targets, extra)
            return
        if unseen:  # the stream captures a graph kperf did not see begin (asked at this launch's allocation)
            warnings.warn(f"kperf: a launch of {info.name} was captured into a CUDA graph whose capture "
                          "began before kperf was watching (it wraps torch.cuda.CUDAGraph at kperf.profile / "
                          "kperf.session); its replays are not profiled", stacklevel=2)
            return
        self.record(info, buf, size // info.geometry.cta_bytes, data.get("stream"), targets, extra)

    def record(self, info: KernelInfo, buf, n_ctas: int, stream, targets: list[Capture],
               extra: dict | None = None) -> LaunchRecord:
        """Hand a launch of ``info`` (its device buffer ``buf``) to ``targets``; the buffer stays on the
        device until results are asked for or the bytes held pass the budget (``kperf.copy_out``)."""
        self._launch_count += 1
        record = LaunchRecord(self._launch_count, info, n_ctas, time.time(), _device=buf, info=extra)
        for t in targets:
            t.add(record)
        self.last_launch = record
        budgets = [t.memory_budget for t in targets if t.memory_budget is not None]
        copy_out.HELD.add(record, min(budgets) if budgets else None)
        return record


class _Benchmarking:
    def __init__(self, tls):
        self._tls = tls

    def __enter__(self):
        self._saved = getattr(self._tls, "benchmarking", False)
        self._tls.benchmarking = True
        self._mode = mode_override("")
        self._mode.__enter__()

    def __exit__(self, *exc):
        self._mode.__exit__()
        self._tls.benchmarking = self._saved
        return False


DISPATCHER = Dispatcher()


class mode_override:
    """Set Triton's ``instrumentation_mode`` knob for the duration of a ``with`` block."""

    def __init__(self, mode: str):
        self.mode = mode

    def __enter__(self):
        self.saved = triton_compat.get_knob("compilation.instrumentation_mode")
        triton_compat.set_knob("compilation.instrumentation_mode", self.mode)

    def __exit__(self, *exc):
        triton_compat.set_knob("compilation.instrumentation_mode", self.saved)
        return False

