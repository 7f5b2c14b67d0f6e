"""Inductor's Triton kernels (``torch.compile``) under kperf, without edits.

Inductor compiles each kernel itself (``CachingAutotuner``: ``triton.compile`` per config, often in
worker processes) and launches it through its own launcher or a static CUDA launcher, never through
``JITFunction.run``; kernels compiled before a session would run plain inside it.  So while profiling is
on, kperf wraps ``CachingAutotuner.run``:

1. anything Inductor still has to decide (precompiling, autotuning, coordinate descent) runs first,
   plain and uncaptured, exactly as without kperf: the timing runs stay plain;
2. the winning config is compiled once more with kperf's ``instrumentation_mode`` (Inductor's own
   ``_precompile_config``, with the option added to its ``triton.compile`` call), which gives a launcher
   through Triton's (the static launcher refuses a kernel with a profile buffer);
3. this launch runs that launcher in place of the plain one; the plain one is put back after.

The instrumented build lives in Triton's cache under its own key (``instrumentation_mode`` is part of
it) and on the ``CachingAutotuner`` object only, so neither Triton's nor Inductor's caches ever hand it to
a plain run, nor a plain build to a profiled one.  Launches keep Inductor's kernel names; each carries
the graph ops the kernel fused (``inductor_ops``, ``source_nodes``), read from the comment Inductor
writes above the kernel in its output code.  Timing runs (``benchmark_run=True``) pass through.
"""

from __future__ import annotations

import gc
import importlib.abc
import re
import sys

from kperf import triton_compat
from kperf.coverage import NO_RECORDS, build_failure
from kperf.stages import failed_stage

MODULE = "torch._inductor.runtime.triton_heuristics"
_original_run = None
_dispatcher = None
_finder = None
_MISSING = object()
#: The comment Inductor writes above each kernel in its output code (``get_kernel_metadata``)
_ORIGIN = re.compile(r"#\s*(?:Topologically Sorted |Unsorted )?Source Nodes: \[(.*?)\], "
                     r"Original ATen: \[(.*?)\]")


def install(dispatcher) -> None:
    """Wrap ``CachingAutotuner.run`` now if Inductor's runtime is loaded, else as soon as it is."""
    global _dispatcher, _finder
    _dispatcher = dispatcher
    if MODULE in sys.modules:
        _wrap(sys.modules[MODULE])
    elif _finder is None:
        _finder = _WrapOnImport()
        sys.meta_path.insert(0, _finder)


def uninstall() -> None:
    global _dispatcher, _finder, _original_run
    if _finder is not None and _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    _finder = None
    if _original_run is not None and MODULE in sys.modules:
        sys.modules[MODULE].CachingAutotuner.run = _original_run
    _original_run = None
    _dispatcher = None


def _wrap(module) -> None:
    global _original_run
    cls = getattr(module, "CachingAutotuner", None)
    if cls is None or _original_run is not None:
        return
    _original_run = cls.run
    cls.run = _run


class _WrapOnImport(importlib.abc.MetaPathFinder):
    """Wraps ``CachingAutotuner.run`` right after Inductor's runtime module is first imported."""

    def find_spec(self, name, path, target=None):
        if name != MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                exec_module = spec.loader.exec_module

                def exec_and_wrap(module, _exec=exec_module):
                    _exec(module)
                    if _dispatcher is not None:
                        _wrap(module)
                spec.loader.exec_module = exec_and_wrap
                return spec
        return None


def _run(self, *args, **kwargs):
    d = _dispatcher
    if d is None or kwargs.get("benchmark_run") or getattr(d._tls, "benchmarking", False):
        return _original_run(self, *args, **kwargs)
    name = self.fn.__name__
    config = d.config_for(name)
    if config is None:
        return _original_run(self, *args, **kwargs)
    taken = d.take(name)
    if not taken:  # left out by sampling (counted there): plain, and not counted again at its exit
        with d.benchmarking():
            return _original_run(self, *args, **kwargs)
    twin = _instrumented_launcher(self, name, config, args, kwargs)
    if isinstance(twin, str):
        for t in taken:
            t.coverage.skipped(name, twin)
        with d.benchmarking():
            return _original_run(self, *args, **kwargs)
    saved, fast = self.launchers, getattr(self, "_cached_launcher", _MISSING)
    self.launchers = [twin]
    if fast is not _MISSING:
        self._cached_launcher = None  # Inductor's fast path would call the plain launcher
    d.launching(taken, origin(self))
    try:
        return _original_run(self, *args, **kwargs)
    finally:
        d.launching(None, None)
        self.launchers = saved
        if fast is not _MISSING:
            self._cached_launcher = fast


def _coordesc_pending(self) -> bool:
    return bool(self.inductor_meta.get("coordinate_descent_tuning")) and \
        not getattr(self.launchers[0].config, "found_by_coordesc", False)


def _settle(self, args, kwargs) -> bool:
    """Let Inductor finish choosing this kernel's config (plain timing runs); False if it cannot yet."""
    if len(self.launchers) != 1 or _coordesc_pending(self):  # else settled already: nothing to run
        # as CachingAutotuner.run calls them: its tuning runs pass the stream themselves
        tune_kwargs = {k: v for k, v in kwargs.items() if k not in ("stream", "benchmark_run")}
        with _dispatcher.benchmarking():
            if not self.launchers:
                self.precompile()
            if len(self.launchers) > 1:
                self.autotune_to_one_config(*args, **tune_kwargs)
            if _coordesc_pending(self):
                self.launchers = [self.coordinate_descent_tuning(self.launchers[0], *args, **tune_kwargs)]
    combo = self.inductor_meta.get("combo_tuning_groups") and \
        not getattr(self.launchers[0].config, "found_by_combo_autotune", False)
    return len(self.launchers) == 1 and not combo


def _instrumented_launcher(self, name: str, config, args, kwargs):
    """The instrumented launcher for this kernel's chosen config, or the reason there is none (a str)."""
    if not _settle(self, args, kwargs):
        return "Inductor was still tuning it (combo tuning): that launch ran plain"
    from kperf.stages import instrumentation_mode
    mode = instrumentation_mode(config)
    plain = self.launchers[0]
    twins = self.__dict__.setdefault("_kperf_twins", {})
    key = (mode, id(plain))
    if key not in twins:
        twins[key] = (plain, _build(self, name, plain.config, mode))  # plain kept: its id stays unique
    return twins[key][1]


def _build(self, name: str, cfg, mode: str):
    if getattr(self.fn, "fn", None) is None:  # compiled in a worker: Inductor dropped the source (pickling)
        reload = getattr(self, "_reload_kernel", None)
        if not callable(reload):
            return "could not be instrumented (Inductor kept neither its source nor a way to reload it)"
        self.fn = reload().fn  # what Inductor itself does before compiling in the parent
    try:
        with triton_compat.compile_option("instrumentation_mode", mode) as built:
            result = self._precompile_config(cfg)
    except Exception as e:
        return build_failure(f"Inductor kernel {name}", e, failed_stage(e))
    info = triton_compat.kernel_metadata(built[-1]).get("kperf") if built else None
    if not info or not info.get("num_records"):
        return NO_RECORDS
    launcher = result.make_launcher()
    launcher.store_cubin = False  # never hand the instrumented cubin to Inductor's AOT/cpp-wrapper paths
    return launcher


def origin(autotuner) -> dict:
    """What Inductor says the kernel fused: ``{"launch_path": "inductor", "inductor_ops": "aten.mm, ...",
    "source_nodes": "...", "inductor_module": path}`` (the ops only when the output code has them)."""
    cached = autotuner.__dict__.get("_kperf_origin")
    if cached is not None:
        return cached
    out = {"launch_path": "inductor"}
    paths = _module_paths(autotuner)
    for path in paths:  # the graph's output code names the ops; the kernel's own module does not
        found = _origin_in(path, autotuner.fn.__name__)
        if found:
            out.update(inductor_module=path, **found)
            break
    else:
        if paths:
            out["inductor_module"] = paths[0]
    autotuner.__dict__["_kperf_origin"] = out
    return out


def _module_paths(autotuner) -> list[str]:
    """The files of the modules whose globals name this kernel: the graph's output code, and the
    kernel's own module when Inductor compiled it apart (in a worker, or from its cache)."""
    return [ref["__file__"] for ref in gc.get_referrers(autotuner)
            if isinstance(ref, dict) and isinstance(ref.get("__file__"), str)
            and any(v is autotuner for v in ref.values())]


def _origin_in(path: str, kernel: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    head = f"{kernel} = async_compile.triton("
    at = next((i for i, line in enumerate(lines) if line.startswith(head)), None)
    if at is None:
        return {}
    i = at - 1
    while i >= 0 and lines[i].startswith("#"):
        m = _ORIGIN.search(lines[i])
        if m:
            return {"source_nodes": m.group(1), "inductor_ops": m.group(2)}
        i -= 1
    return {}
