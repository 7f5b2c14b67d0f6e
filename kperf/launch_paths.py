"""Every way a Triton kernel gets launched, made to launch its instrumented build while profiling is on.

kperf instruments at compile time, so a launch is profiled only if it runs a kernel compiled in a kperf
mode.  Each launch path gets there differently:

- ``JITFunction.run`` (``kernel[grid](...)``, ``@triton.heuristics``): compiles for the current
  ``instrumentation_mode`` knob, which ``kperf.profile`` / ``kperf.session`` set.  Under sampling
  (``every=``, ``max_launches=``) a launch is sampled before it runs, and one left out runs the plain
  build (compiled once more, without the mode) rather than paying for records nobody keeps.  In a
  session, a kernel whose instrumented build fails (a ``KperfError``, or an error in any compile stage
  of that build: it never launched) runs plain from then on, counted with the reason; a
  ``kperf.profile`` kernel's build error is raised.
- ``@triton.autotune``: its timing runs (``Autotuner._bench``) run plain and are not captured (unless
  ``kperf.profile(profile_autotune=True)``); the launch with the chosen config goes through the JIT.
- a compiled kernel called directly (``triton.compile(...)[grid](*args)``, libraries that cache compiled
  kernels): ``CompiledKernel.__getitem__`` runs an instrumented twin, compiled once from the kernel's
  own source, target and options (``triton_compat.recompile``).
- Inductor (``torch.compile``): its kernels are compiled and launched by its own ``CachingAutotuner``
  (``kperf.inductor``).
- CUDA graphs: capture and replay (``kperf.cuda_graphs``).

Ahead-of-time compiled kernels (``triton.tools.compile``: C launchers) never reach Python and cannot be
seen.  A launch kperf sees but cannot profile is counted with its reason (``kperf.coverage``).
"""

from __future__ import annotations

import threading
import weakref

from kperf import cuda_graphs, inductor, triton_compat
from kperf.coverage import NO_RECORDS, build_failure
from kperf.stages import failed_stage

_originals: dict = {}
_dispatcher = None
#: CompiledKernel -> {"name", "instrumented", then per mode: its twin or the reason there is none}
_twins: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_twin_lock = threading.Lock()
#: JITFunction -> {instrumentation mode: why its instrumented build failed} (sessions only; then plain)
_failed_builds: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
COMPILED_KERNEL = {"launch_path": "compiled kernel"}


def install(dispatcher) -> None:
    """Wrap the launch paths (called by the dispatcher's first ``activate``)."""
    global _dispatcher
    _dispatcher = dispatcher
    ck, at = triton_compat.compiled_kernel_type(), triton_compat.autotuner_type()
    _originals["getitem"] = ck.__getitem__
    _originals["bench"] = at._bench
    _originals["jit_run"] = triton_compat.jit_function_type().run
    ck.__getitem__ = _getitem
    at._bench = _bench
    triton_compat.jit_function_type().run = _jit_run
    cuda_graphs.install(dispatcher)
    inductor.install(dispatcher)


def uninstall() -> None:
    """Put every wrapped path back (the dispatcher's last ``deactivate``)."""
    global _dispatcher
    if not _originals:
        return
    triton_compat.compiled_kernel_type().__getitem__ = _originals.pop("getitem")
    triton_compat.autotuner_type()._bench = _originals.pop("bench")
    triton_compat.jit_function_type().run = _originals.pop("jit_run")
    inductor.uninstall()  # the CUDA graph wrappers stay (kperf.cuda_graphs.install)
    _dispatcher = None


def _bench(self, *args, **kwargs):
    if _dispatcher is None or getattr(_dispatcher._tls, "profile_autotune", False):
        return _originals["bench"](self, *args, **kwargs)
    with _dispatcher.benchmarking():
        return _originals["bench"](self, *args, **kwargs)


def _sampled(d, name: str):
    """For a launch of ``name`` not yet sampled: None when no capture samples it (the launch-exit hook
    decides), else the captures that keep this launch (empty: run it plain, uncaptured)."""
    tls = d._tls
    if (not d.samples(name) or getattr(tls, "benchmarking", False) or getattr(tls, "taken", None) is not None
            or cuda_graphs.capturing()):
        return None  # a capture samples at each replay (kperf.cuda_graphs), not at capture
    return d.take(name)


def _jit_run(self, *args, **kwargs):
    d = _dispatcher
    if d is None or kwargs.get("warmup") or getattr(d._tls, "benchmarking", False):
        return _originals["jit_run"](self, *args, **kwargs)
    if _failed_builds and self in _failed_builds:  # (hashing a JITFunction and reading the knob cost us)
        failed = _failed_builds[self].get(triton_compat.get_knob("compilation.instrumentation_mode"))
        if failed is not None:  # its instrumented build failed before: plain, counted with the reason
            return _run_plain(d, self, failed, args, kwargs)
    try:
        return _jit_launch(d, self, args, kwargs)
    except Exception as e:
        stage = failed_stage(e)
        if stage is None or getattr(d._tls, "stack", None):  # the program's error, or a kperf.profile
            raise  # kernel's own build (asked for by name: its error is the answer)
        reason = build_failure(self.__name__, e, stage)
        mode = triton_compat.get_knob("compilation.instrumentation_mode")
        _failed_builds.setdefault(self, {})[mode] = reason
        return _run_plain(d, self, reason, args, kwargs)


def _jit_launch(d, fn, args, kwargs):
    taken = _sampled(d, fn.__name__)
    if taken is None:
        return _originals["jit_run"](fn, *args, **kwargs)
    if not taken:
        with d.benchmarking():  # left out by sampling: the plain build, not captured
            return _originals["jit_run"](fn, *args, **kwargs)
    d.launching(taken, None)
    try:
        return _originals["jit_run"](fn, *args, **kwargs)
    finally:
        d.launching(None, None)


def _run_plain(d, fn, reason: str, args, kwargs):
    """A session's launch whose instrumented build failed (it never ran): the plain build, counted."""
    d.skipped(fn.__name__, reason)
    with d.benchmarking():
        return _originals["jit_run"](fn, *args, **kwargs)


def _getitem(self, grid):
    d = _dispatcher
    if d is None or getattr(d._tls, "benchmarking", False):
        return _originals["getitem"](self, grid)
    twin = _twin_for(self, d)
    if twin is None:
        return _originals["getitem"](self, grid)
    runner = _originals["getitem"](twin, grid)

    def launch(*args, **kwargs):
        taken = _sampled(d, _twins[self]["name"])
        if taken is not None and not taken:  # left out by sampling: the kernel as it is, not counted again
            with d.benchmarking():  # by the launch-exit hook (sampling counted it)
                return _originals["getitem"](self, grid)(*args, **kwargs)
        d.launching(taken, COMPILED_KERNEL)
        try:
            return runner(*args, **kwargs)
        finally:
            d.launching(None, None)
    return launch


def _twin_for(kernel, d):
    """The instrumented build of a compiled kernel for the captures that want it, or None."""
    known = _twins.get(kernel)
    if known is None:  # read the kernel's metadata once, not on every launch
        md = triton_compat.kernel_metadata(kernel)
        from kperf.dialect.options import ProfileConfig
        mode = md.get("instrumentation_mode") or ""
        known = _twins[kernel] = {"name": getattr(kernel, "name", None) or md.get("name", "?"),
                                  "instrumented": ProfileConfig.is_kperf_mode(mode)}
    if known["instrumented"]:
        return None  # built in a kperf mode already: the launch hooks see it as it is
    name = known["name"]
    config = d.config_for(name)
    if config is None:
        return None
    from kperf.stages import instrumentation_mode
    mode = instrumentation_mode(config)
    twin = known.get(mode)
    if twin is None:
        with _twin_lock:
            twin = known[mode] = known.get(mode) or _build_twin(kernel, name, mode)
    if isinstance(twin, str):
        d.skipped(name, twin)
        return None
    return twin


def _build_twin(kernel, name: str, mode: str):
    """Compile the twin; a kernel kperf cannot build instrumented runs plain, with the reason kept."""
    try:
        twin = triton_compat.recompile(kernel, mode)
    except Exception as e:
        return build_failure(name, e, failed_stage(e))
    info = (triton_compat.kernel_metadata(twin).get("kperf") or {})
    return twin if info.get("num_records") else NO_RECORDS
