"""The user API: ``@kperf.profile``, ``kperf.session``, ``kperf.results`` and ``kperf.last``.

Examples:
    >>> @kperf.profile                     # or kperf.profile(capacity=4096, clock="clock64")
    ... @triton.jit
    ... def kernel(...):
    ...     with kperf.scope("load"):
    ...         ...
    >>> kernel[grid](...)                   # launch unchanged, results unchanged
    >>> prof = kperf.results(kernel)
    >>> print(prof.table())
    >>> prof.to_chrome_trace("out/chrome_trace.json")

    >>> with kperf.session("out/", kernels="matmul") as s:   # every instrumented launch inside
    ...     model(x)
    >>> print(s.table())
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
import weakref
from collections.abc import Callable

from kperf import triton_compat  # noqa: F401  (first: a Triton kperf was not checked with is refused)
from kperf.compile_api import compile_failure, kperf_cause, unwrap_jit
from kperf.copy_out import DEFAULT_BUDGET, parse_bytes
from kperf.coverage import Sampling
from kperf.dialect.errors import KperfError
from kperf.dialect.options import OptionError, ProfileConfig
from kperf.profile_data import Profile
from kperf.runtime import DISPATCHER, Capture, mode_override
from kperf.stages import instrumentation_mode


def _make_config(config: ProfileConfig | None, options: dict, api: str) -> ProfileConfig:
    """The ``ProfileConfig`` of ``kperf.profile`` / ``kperf.session``: ``config`` or the option keywords."""
    if config is not None and options:
        raise KperfError(f"{api}: pass either config= or individual options, not both",
                         fix=f"put {', '.join(options)} into the ProfileConfig")
    if config is not None:
        if not isinstance(config, ProfileConfig):
            raise KperfError(f"{api}: config must be a ProfileConfig, got {type(config).__name__}",
                             fix="pass config=kperf.ProfileConfig(...) or the options as keywords")
        return config
    known = [f.name for f in dataclasses.fields(ProfileConfig)]
    unknown = [k for k in options if k not in known]
    if unknown:
        raise KperfError(f"{api}: unknown option {', '.join(map(repr, unknown))}",
                         fix=f"options: {', '.join(known)}")
    try:
        return ProfileConfig(**options)
    except OptionError as e:
        raise e.renamed(f"{api}({e.option}=...)") from None


def _watch_cuda_graphs() -> None:
    """Wrap CUDA graph capture/replay now: a profiled kernel may be captured outside any kperf call."""
    import sys
    if "torch" in sys.modules:
        from kperf import cuda_graphs
        cuda_graphs.install(DISPATCHER)


def _reraise_kperf(exc: BaseException, fn) -> None:
    """Raise the KperfError that a Triton compilation error wraps (a bad scope name), at its source line."""
    if not isinstance(exc, KperfError) and kperf_cause(exc) is not None:
        raise compile_failure(unwrap_jit(fn), exc) from exc


class ProfiledKernel(Capture):
    """A Triton kernel (``@triton.jit``, autotuned or with heuristics) whose launches kperf profiles.

    ``kernel[grid](...)`` and ``kernel.run(...)`` behave as before; each launch compiles (once) the
    instrumented variant, which Triton caches apart from the plain one.  The autotuner's timing runs
    use the plain kernel unless ``profile_autotune=True``.
    """

    def __init__(self, fn, config: ProfileConfig, profile_autotune: bool = False,
                 sampling: Sampling | None = None, memory_budget: int | None = DEFAULT_BUDGET):
        super().__init__(sampling=sampling, memory_budget=memory_budget)
        _watch_cuda_graphs()
        self.fn = fn
        self.config = config
        self.profile_autotune = profile_autotune
        self._warned_empty = False
        self._activation = None  # a weakref.finalize that deactivates the dispatcher (from the first run)
        self._mode = (None, "")  # (config, its instrumentation_mode string)
        self.__name__ = getattr(fn, "__name__", type(fn).__name__)
        self.__doc__ = getattr(fn, "__doc__", None)

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.run(*args, grid=grid, warmup=False, **kwargs)

    def run(self, *args, **kwargs):
        if self._activation is None:  # kperf's hooks stay from the first launch until this object goes:
            DISPATCHER.activate()  # installing them around each launch cost 44 us, twice a small kernel
            self._activation = weakref.finalize(self, DISPATCHER.deactivate)
        DISPATCHER.push_kernel_capture(self)
        tls = DISPATCHER._tls  # the autotuner's timing runs are plain unless profile_autotune (launch_paths)
        saved, tls.profile_autotune = getattr(tls, "profile_autotune", False), self.profile_autotune
        if self._mode[0] is not self.config:  # the mode string, built once per config (hashing one costs)
            self._mode = (self.config, instrumentation_mode(self.config))
        try:
            with mode_override(self._mode[1]):
                kernel = self.fn.run(*args, **kwargs)
        except Exception as e:
            _reraise_kperf(e, self.fn)
            raise
        finally:
            tls.profile_autotune = saved
            DISPATCHER.pop_kernel_capture()
        self._check_instrumented(kernel)
        return kernel

    def warmup(self, *args, **kwargs):
        with mode_override(instrumentation_mode(self.config)):
            DISPATCHER.activate()
            try:
                return self.fn.warmup(*args, **kwargs)
            except Exception as e:
                _reraise_kperf(e, self.fn)
                raise
            finally:
                DISPATCHER.deactivate()

    def _check_instrumented(self, kernel) -> None:
        md = getattr(kernel, "metadata", None)
        info = getattr(md, "kperf", None) if md is not None else None
        if info is not None and not dict(info).get("num_records") and not self._warned_empty:
            self._warned_empty = True
            warnings.warn(f"kperf: kernel {self.__name__} has no kperf scopes; nothing is recorded. "
                          'Add `with kperf.scope("name"):` around the code to time.', stacklevel=3)

    @property
    def profile(self) -> Profile:
        return Profile(list(self.launches))

    def reset(self) -> None:
        self.launches.clear()

    def __getattr__(self, name):
        return getattr(self.fn, name)

    def __repr__(self) -> str:
        return f"kperf.profile({self.fn!r}, {self.config})"


def profile(fn=None, *, config: ProfileConfig | None = None, profile_autotune: bool = False, every: int = 1,
            max_launches: int | None = None, memory_budget=DEFAULT_BUDGET, **options):
    """Profile every launch of a Triton kernel; use bare (``@kperf.profile``) or with options.

    Args:
        config: a ``ProfileConfig``; or give its fields as keywords (``capacity``, ``strategy``, ``clock``).
        profile_autotune: also instrument the autotuner's timing runs (off: they run plain).
        every, max_launches: profile one launch in ``every`` (the others run the plain build), at most
            ``max_launches`` of them.
        memory_budget: device bytes (int, or e.g. ``"512MiB"``) its launches' profile buffers may hold
            before they are spilled to host memory together (``kperf.copy_out``).  None: no limit.
    """
    cfg = _make_config(config, options, "kperf.profile")
    sampling = Sampling(every, max_launches, "kperf.profile")
    budget = None if memory_budget is None else parse_bytes(memory_budget, "kperf.profile(memory_budget=...)")
    if not isinstance(profile_autotune, bool):
        raise KperfError(f"kperf.profile: profile_autotune must be True or False, got {profile_autotune!r}")

    def wrap(f):
        if isinstance(f, ProfiledKernel):
            raise KperfError(f"{f.__name__} is already wrapped by kperf.profile")
        if not hasattr(f, "run"):
            raise KperfError(f"kperf.profile expects a Triton kernel, got {f!r}",
                             fix="put @kperf.profile above @triton.jit (or above @triton.autotune)")
        return ProfiledKernel(f, cfg, profile_autotune, sampling, budget)

    return wrap(fn) if fn is not None else wrap


def results(kernel: ProfiledKernel) -> Profile:
    """All launches of a ``@kperf.profile`` kernel so far, as one ``Profile``."""
    if not isinstance(kernel, ProfiledKernel):
        raise KperfError(f"{kernel!r} is not profiled", fix="decorate it with @kperf.profile")
    if not kernel.launches:
        raise KperfError(f"kernel {kernel.__name__} has no profiled launches yet",
                         fix="launch it (kernel[grid](...)) before asking for results")
    return kernel.profile


def last() -> Profile:
    """The most recent profiled launch in this process."""
    if DISPATCHER.last_launch is None:
        raise KperfError("no profiled launch yet", fix="launch a @kperf.profile kernel or use kperf.session")
    return Profile([DISPATCHER.last_launch])


def name_filter(kernels, option: str = "kernels") -> Callable[[str], bool] | None:
    """A kernel-name predicate from a regex, a list of them or a predicate; a bad regex names ``option``."""
    if kernels is None:
        return None
    if callable(kernels):
        return kernels
    if isinstance(kernels, str):
        kernels = [kernels]
    if not isinstance(kernels, (list, tuple)) or not all(isinstance(k, str) for k in kernels):
        raise KperfError(f"{option}: expected a kernel-name regex, a list of them or a predicate, got "
                         f"{kernels!r}")
    patterns = []
    for k in kernels:
        try:
            patterns.append(re.compile(k))
        except re.error as e:
            raise KperfError(f"{option}: {k!r} is not a regular expression ({e})",
                             fix="escape the special characters, e.g. with re.escape(name)") from None
    return lambda name: any(p.search(name) for p in patterns)


def _world_size() -> int:
    """``WORLD_SIZE`` as torchrun and other launchers set it (1 when unset or not a number)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


class session(Capture, Profile):
    """Profile every launch of an instrumented Triton kernel inside a ``with`` block.

    Kernels with ``kperf.scope`` in their source are compiled instrumented while the session is
    active (kernels without scopes run as before).

    Args:
        out_dir: if given, ``chrome_trace.json`` and ``summary.txt`` are written there on exit.
        kernels: a kernel-name regex, a list of them, or a predicate; default: every kernel.
        config: a ``ProfileConfig``, or its fields as keywords.
        on_trace_ready: called with the session on exit (after the files are written).
        every, max_launches: per kernel, profile one launch in ``every``, at most ``max_launches``.
        memory_budget: device bytes (int, or e.g. ``"512MiB"``) profile buffers may hold before they are
            spilled to host memory together (``kperf.copy_out``).  None: no limit.

    Launch paths: ``kernel[grid]``, autotuners and heuristics, compiled kernels called directly,
    ``torch.compile``'s Inductor kernels and CUDA graph replays (``kperf.launch_paths``).
    ``coverage.table()`` lists every kernel launched inside, its launches profiled, and why any were not.
    """

    def __init__(self, out_dir: str | os.PathLike | None = None, *, kernels=None,
                 config: ProfileConfig | None = None, on_trace_ready: Callable | None = None, every: int = 1,
                 max_launches: int | None = None, memory_budget=DEFAULT_BUDGET, **options):
        budget = None if memory_budget is None else parse_bytes(memory_budget,
                                                                "kperf.session(memory_budget=...)")
        Capture.__init__(self, name_filter(kernels, "kperf.session(kernels=...)"),
                         Sampling(every, max_launches, "kperf.session"), budget)
        self.config = _make_config(config, options, "kperf.session")
        if on_trace_ready is not None and not callable(on_trace_ready):
            raise KperfError(f"kperf.session: on_trace_ready must be callable, got {on_trace_ready!r}")
        if out_dir is not None and not isinstance(out_dir, (str, os.PathLike)):
            raise KperfError(f"kperf.session: out_dir must be a folder path, got {out_dir!r}")
        self.out_dir = out_dir
        self.on_trace_ready = on_trace_ready
        self._mode = None

    # Profile reads self.launches; Capture fills it
    def __enter__(self):
        if type(self) is session and self.out_dir is not None and _world_size() > 1:
            warnings.warn(f"kperf.session in a job of {_world_size()} processes: every rank writes "
                          f"{self.out_dir}/profile.kperf over the others'; use kperf.distributed.session "
                          "(one profile per rank, clocks aligned, kperf merge): docs/multi-gpu.md",
                          stacklevel=2)
        DISPATCHER.activate()  # watches CUDA graphs from then on (kperf.launch_paths.install)
        DISPATCHER.add_session(self)
        self._mode = mode_override(instrumentation_mode(self.config))
        self._mode.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        self._mode.__exit__()
        DISPATCHER.remove_session(self)
        DISPATCHER.deactivate()
        unseen = self.coverage.unseen()
        if unseen:
            some = ", ".join(f"{k} ({n}: {why})" for k, n, why in unseen[:3])
            warnings.warn(f"kperf.session: {sum(n for _, n, _ in unseen)} launches of {len(unseen)} kernels "
                          f"were not profiled: {some}{' ...' if len(unseen) > 3 else ''}; "
                          "session.coverage.table() lists them all", stacklevel=2)
        if exc_type is None:
            if self.out_dir is not None and self.launches:
                self.save(self.out_dir)
            if self.on_trace_ready is not None:
                self.on_trace_ready(self)
        return False

    def decoded(self) -> list:
        if not self.launches and self.coverage.unseen():  # nothing profiled, and the session knows why
            raise KperfError("this session profiled no launch; what it saw but could not profile:\n"
                             + self.coverage.table(), fix="see each row's reason above")
        return Profile.decoded(self)

    def table(self, *args, **kwargs) -> str:
        """``Profile.table()`` and, below it, every kernel launched in the session (``coverage``)."""
        text = Profile.table(self, *args, **kwargs) if self.launches else "no profiled launch"
        cov = self.coverage.table()
        return f"{text}\n\nkernels launched in the session\n{cov}" if cov else text
