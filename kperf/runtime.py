"""Runtime: Triton hooks, the profile allocator, and asynchronous capture of profile buffers.

One ``Dispatcher`` owns everything kperf changes in Triton (the stage hook, the profile allocator,
the kernel-load and launch-exit hooks); the first ``activate()`` installs, the last ``deactivate()``
restores what was there.

Per launch of an instrumented kernel, with no device synchronisation:

1. Triton's launcher asks the profile allocator for ``grid * cta_bytes`` bytes: kperf hands out a
   zeroed device buffer (an async memset on the launch stream);
2. the kernel writes its records;
3. the launch-exit hook (which runs once the launch is queued) queues a copy of the buffer into
   pinned host memory on the same stream and records a CUDA event.

The buffer is decoded only when results are asked for (``LaunchRecord.decoded``), after waiting for
its event.  Device buffers are dropped as soon as their copies are done.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import warnings
from collections.abc import Callable

from kperf import stages, triton_compat
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
    """One profiled launch: its kernel, its buffer on the way to the host, and (lazily) its decode."""

    index: int  # launch number within this process
    kernel: KernelInfo
    n_ctas: int
    host_time: float  # time.time() at launch
    _device: object = None  # torch tensor until the copy is done
    _host: object = None  # pinned torch tensor
    _event: object = None
    _decoded: object = None

    def host_bytes(self):
        """The raw buffer as a numpy uint8 array (waits for the copy)."""
        if self._event is not None:
            try:
                self._event.synchronize()
            except RuntimeError as e:  # torch's CUDA errors: the launch (or one before it) faulted
                raise lost_to_a_fault(self.index, self.kernel.name, e) from e
            self._event = None
            self._device = None
        return self._host.numpy()

    def flows(self):
        """``FLOW_DTYPE`` arrows from async issue to completion (empty unless auto-insertion paired some)."""
        from kperf.tracing.flows import compute_flows
        return compute_flows(self.decoded(), self.kernel.flows, self.kernel.warp_roles)

    def decoded(self):
        if self._decoded is None:
            from kperf.tracing.decode import decode
            self._decoded = decode(self.host_bytes(), self.kernel.geometry, strategy=self.kernel.strategy,
                                   n_ctas=self.n_ctas, launch=self.index, scopes=self.kernel.scopes.to_json(),
                                   warp_roles=self.kernel.warp_roles, kernel=self.kernel.name)
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
    """Something that collects launches: a ``ProfiledKernel`` or a session."""

    def __init__(self, name_filter: Callable[[str], bool] | None = None):
        self.launches: list[LaunchRecord] = []
        self._filter = name_filter

    def wants(self, kernel_name: str) -> bool:
        return self._filter is None or self._filter(kernel_name)

    def add(self, record: LaunchRecord) -> None:
        self.launches.append(record)


class Dispatcher:
    """Installs and removes kperf's Triton hooks; routes each instrumented launch to its captures."""

    def __init__(self):
        self._active = 0
        self._lock = threading.Lock()
        self._tls = threading.local()
        self._kernels: dict[int, KernelInfo | None] = {}  # CUfunction -> info (None: not instrumented)
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

    def deactivate(self) -> None:
        with self._lock:
            if self._active == 0:
                return
            self._active -= 1
            if self._active:
                return
            triton_compat.remove_launch_hooks(self._on_load, self._on_launch_exit)
            triton_compat.set_profile_allocator(self._saved_allocator)
            stages.uninstall()

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

    # -- Triton hooks ---------------------------------------------------------------------------------
    def _on_load(self, module, function, name, metadata_group, hash) -> None:
        # every load overwrites its handle's entry: Triton 3.8+ unloads a freed kernel's module
        # (triton_compat.FACTS.unloads_modules), so a handle may come back for another kernel
        path = next((p for k, p in metadata_group.items() if k.endswith(".json")), None)
        info = None
        if path is not None:
            with open(path) as f:
                md = json.load(f)
            info = KernelInfo.from_metadata(name, hash, md)
        self._kernels[function] = info

    def _allocate(self, size: int, alignment: int, stream):
        import torch
        with torch.cuda.stream(_as_torch_stream(stream)):  # the memset runs before the kernel, in order
            buf = torch.zeros(size, dtype=torch.uint8, device="cuda")
        self._tls.pending = buf
        return buf

    def _on_launch_exit(self, md) -> None:
        buf = getattr(self._tls, "pending", None)
        self._tls.pending = None
        data = triton_compat.launch_data(md)
        func = data.get("function")
        info = self._kernels.get(func)
        if info is None:
            return
        if buf is None:
            warnings.warn(f"kperf: launch of {info.name} got no profile buffer (another profile allocator "
                          f"is installed?); its records are lost", stacklevel=2)
            return
        targets = [c for c in self._targets() if c.wants(info.name)]
        if not targets:
            return
        import torch
        size = buf.numel()
        if size % info.geometry.cta_bytes:
            raise KperfError(f"profile buffer of {size} bytes is not a whole number of "
                             f"{info.geometry.cta_bytes}-byte CTA regions")
        stream = data.get("stream")
        host = torch.empty(size, dtype=torch.uint8, pin_memory=True)
        torch_stream = _as_torch_stream(stream)
        try:
            with torch.cuda.stream(torch_stream):
                host.copy_(buf, non_blocking=True)
                event = torch.cuda.Event()
                event.record(torch_stream)
        except RuntimeError as e:  # the kernel faulted fast enough for the copy's enqueue to see it
            raise lost_to_a_fault(self._launch_count + 1, info.name, e) from e
        self._launch_count += 1
        record = LaunchRecord(self._launch_count, info, size // info.geometry.cta_bytes, time.time(),
                              _device=buf, _host=host, _event=event)
        for t in targets:
            t.add(record)
        self.last_launch = record

    def _targets(self) -> list[Capture]:
        stack = getattr(self._tls, "stack", None) or []
        return ([stack[-1]] if stack else []) + list(self._sessions)


def _as_torch_stream(handle):
    import torch
    current = torch.cuda.current_stream()
    if handle is None or handle == current.cuda_stream:
        return current
    return torch.cuda.ExternalStream(handle)


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

