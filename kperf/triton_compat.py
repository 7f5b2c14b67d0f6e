"""Every Triton internal kperf relies on, for each supported Triton release (3.6, 3.7, 3.8 and 3.9).

kperf lives inside Triton's compiler and launcher, so it touches things Triton does not promise to keep:
the stage-inspection hook, knobs, the ``instrumentation_mode`` option, the profile-scratch metadata and
allocator, launch hooks, the override folder's key, the MLIR bindings, Gluon's source class and Proton's
pass registration.  They all go through this module and nowhere else, so a new Triton release is one
review of this file (and ``tests/unit/test_triton_compat.py``, which checks every fact against the
installed Triton), not a hunt through the code for ``if version`` branches.

Where the releases differ the difference is a field of ``Facts`` (one row per minor release, read from
each release's wheel); the code that needs it asks ``FACTS``.  Where they agree the accessor below is the
one spelling of the internal.  Importing this module with an unsupported Triton raises a ``KperfError``
naming the supported releases: every module of kperf that touches Triton imports it, so no kperf
compile or launch runs on a Triton whose internals were not checked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import sys

import triton

from kperf.dialect.errors import KperfError
from kperf.passes import triton_ir

SUPPORTED = ((3, 6), (3, 7), (3, 8), (3, 9))
SUPPORTED_TEXT = "3.6, 3.7, 3.8 and 3.9"
PIP_RANGE = "triton>=3.6,<3.10"


def check_version(version: str) -> tuple[int, int]:
    """``(major, minor)`` of a Triton version string; a release kperf was not checked with raises."""
    parts = str(version).split("+")[0].split(".")
    try:
        found = (int(parts[0]), int(parts[1]))
    except (ValueError, IndexError):
        found = None
    if found not in SUPPORTED:
        raise KperfError(f"kperf supports Triton {SUPPORTED_TEXT}; this Python has Triton {version}",
                         fix=f"install a supported Triton (pip install '{PIP_RANGE}', or the PyTorch release "
                             "that pins one), or use a kperf release made for this Triton")
    return found


VERSION = check_version(triton.__version__)


@dataclasses.dataclass(frozen=True)
class Facts:
    """What differs between Triton minor releases, as far as kperf is concerned (see ``BY_VERSION``)."""

    #: Triton calls the stage hook with no arguments for a cache-key contribution ``(key, hash)`` (3.7+).
    stage_hook_keyed: bool
    #: How Triton reads its own tools out of ``instrumentation_mode``: "equals" (the whole string is the
    #: tool's name, 3.6), "substring" (the name occurs anywhere, 3.7-3.8), "names" (comma-separated
    #: names, ``triton._instrumentation.is_enabled``, 3.9).
    mode_match: str
    #: The tools Triton switches on from ``instrumentation_mode`` (kperf's mode must enable none).
    mode_tools: tuple[str, ...]
    #: A non-empty ``instrumentation_mode`` drops the ``maxnreg`` option (3.9's ``parse_options``).
    mode_drops_maxnreg: bool
    #: Without a profile allocator the launcher allocates profile scratch itself (3.8+); before, the
    #: launch fails in ``NullAllocator``.
    default_profile_scratch: bool
    #: The stage a Gluon kernel's source enters at ("ttgir" up to 3.8; 3.9 adds an identity "glir" stage).
    gluon_source_ext: str
    #: The knob of the ptxas that assembles sm_90 (3.9 uses the CUDA 13 one, ``ptxas-blackwell``).
    sm90_ptxas: str
    #: How Proton's lowering joins the NVIDIA pipeline: "backend" (``CUDABackend.instrumentation``,
    #: 3.6-3.8) or "registry" (``triton._instrumentation.register_instrumentation``, 3.9).
    proton_hooks: str
    #: Proton's to-LLVM step runs its own global-scratch pass (3.6-3.7; Triton's pipeline does it in 3.8+).
    proton_global_scratch_pass: bool
    #: ``CompiledKernel`` unloads its CUDA module when freed (3.8+), so a CUfunction handle can be reused.
    unloads_modules: bool
    #: Gluon's Hopper TMA copies (``...nvidia.hopper.tma``): global-to-shared and shared-to-global.  3.8
    #: renamed them ``async_load``/``async_store`` (the old names kept as aliases); 3.9 made the old raise.
    gluon_tma: tuple[str, str]
    #: TTIR spells a tensor descriptor's type ``!tt.tensordesc<tensor<64x64xf16>>`` (3.6-3.7), not
    #: ``!tt.tensordesc<64x64xf16>`` (3.8+, which refuses the old spelling).
    ttir_desc_wraps_tensor: bool
    #: TTIR writes a load's or store's cache modifier and eviction policy as one ``{cachePolicy =
    #: #tt.cache_policy<...>}`` attribute (3.9), not as ``cacheModifier = cg evictionPolicy = evict_last``.
    ttir_cache_policy_attr: bool


_TMA_OLD = ("async_copy_global_to_shared", "async_copy_shared_to_global")
_TMA_NEW = ("async_load", "async_store")
_TOOLS_37 = ("consan", "iisan")
_TOOLS_38 = ("consan", "iisan", "fpsan", "gsan")

BY_VERSION = {
    (3, 6): Facts(stage_hook_keyed=False, mode_match="equals", mode_tools=("consan",),
                  mode_drops_maxnreg=False, default_profile_scratch=False, gluon_source_ext="ttgir",
                  sm90_ptxas="ptxas", proton_hooks="backend", proton_global_scratch_pass=True,
                  unloads_modules=False, gluon_tma=_TMA_OLD,
                  ttir_desc_wraps_tensor=True, ttir_cache_policy_attr=False),
    (3, 7): Facts(stage_hook_keyed=True, mode_match="substring", mode_tools=_TOOLS_37,
                  mode_drops_maxnreg=False, default_profile_scratch=False, gluon_source_ext="ttgir",
                  sm90_ptxas="ptxas", proton_hooks="backend", proton_global_scratch_pass=True,
                  unloads_modules=False, gluon_tma=_TMA_OLD,
                  ttir_desc_wraps_tensor=True, ttir_cache_policy_attr=False),
    (3, 8): Facts(stage_hook_keyed=True, mode_match="substring", mode_tools=_TOOLS_38,
                  mode_drops_maxnreg=False, default_profile_scratch=True, gluon_source_ext="ttgir",
                  sm90_ptxas="ptxas", proton_hooks="backend", proton_global_scratch_pass=False,
                  unloads_modules=True, gluon_tma=_TMA_NEW,
                  ttir_desc_wraps_tensor=False, ttir_cache_policy_attr=False),
    (3, 9): Facts(stage_hook_keyed=True, mode_match="names", mode_tools=_TOOLS_38,
                  mode_drops_maxnreg=True, default_profile_scratch=True, gluon_source_ext="glir",
                  sm90_ptxas="ptxas_blackwell", proton_hooks="registry", proton_global_scratch_pass=False,
                  unloads_modules=True, gluon_tma=_TMA_NEW,
                  ttir_desc_wraps_tensor=False, ttir_cache_policy_attr=True),
}
FACTS = BY_VERSION[VERSION]

_DESC_TYPE = re.compile(r"!tt\.tensordesc<tensor<([^<>]*)>>")
_DESC_RESULT = re.compile(r"(tt\.make_tensor_descriptor [^\n]*: <[^<>]*>, )<tensor<([^<>]*)>>")
_CACHE_ATTRS = re.compile(r"^(\s*(?:%\S+ = )?tt\.(?:load|store) [^:{\n]*?)"
                          r"((?: (?:cacheModifier|evictionPolicy) = \w+)+)( :)", re.MULTILINE)


def readable_ttir(text: str, written_by: str) -> str:
    """TTIR that Triton ``written_by`` (a version string) wrote, in the spelling this Triton parses: the
    spellings that changed since (``Facts.ttir_*``) rewritten.  TTIR of an unknown or newer release comes
    back as it is (its parse error then says what does not read)."""
    try:
        was = BY_VERSION[tuple(int(x) for x in written_by.split(".")[:2])]
    except (KeyError, ValueError):
        return text
    if was.ttir_desc_wraps_tensor and not FACTS.ttir_desc_wraps_tensor:
        text = _DESC_RESULT.sub(r"\1<\2>", _DESC_TYPE.sub(r"!tt.tensordesc<\1>", text))
    if FACTS.ttir_cache_policy_attr and not was.ttir_cache_policy_attr:
        text = _CACHE_ATTRS.sub(_cache_policy, text)
    return text


def _cache_policy(m: re.Match) -> str:
    given = dict(re.findall(r"(cacheModifier|evictionPolicy) = (\w+)", m.group(2)))
    policy = (f"cache_modifier = {given.get('cacheModifier', 'none')}, "
              f"eviction_policy = {given.get('evictionPolicy', 'evict_normal')}")
    return f"{m.group(1)} {{cachePolicy = #tt.cache_policy<{policy}>}}{m.group(3)}"

#: The IR facts kperf's passes need (``kperf.passes.triton_ir``: pure data, that layer reads no version).
IR = triton_ir.BY_VERSION[VERSION]


# -- knobs ------------------------------------------------------------------------------------------------

#: The knobs kperf reads or sets, as ``group.name`` of ``triton.knobs`` (the same in every release).
KNOBS = ("compilation.instrumentation_mode", "compilation.always_compile", "compilation.override",
         "compilation.listener", "cache.dir", "cache.override_dir", "runtime.add_stages_inspection_hook",
         "runtime.kernel_load_end_hook", "runtime.launch_exit_hook", "nvidia.cuobjdump", "nvidia.ptxas",
         "nvidia.ptxas_blackwell")


#: ``group.name`` -> (group, name): the instrumentation-mode knob is read and set around every profiled launch
_KNOB_PARTS = {name: tuple(name.split(".")) for name in KNOBS}


def _knob_group(name: str):
    parts = _KNOB_PARTS.get(name)
    if parts is None:
        raise KperfError(f"kperf does not use Triton knob {name!r}", fix=f"use one of {', '.join(KNOBS)}")
    return getattr(triton.knobs, parts[0]), parts[1]


def get_knob(name: str):
    """The value of ``triton.knobs.<name>`` (``name`` is one of ``KNOBS``)."""
    group, attr = _knob_group(name)
    return getattr(group, attr)


def set_knob(name: str, value) -> None:
    """Set ``triton.knobs.<name>``."""
    group, attr = _knob_group(name)
    setattr(group, attr, value)


@contextlib.contextmanager
def knobs_set(values: dict):
    """Set the knobs ``values`` names for the duration of a ``with`` block; put the old values back."""
    saved = {name: get_knob(name) for name in values}
    try:
        for name, value in values.items():
            set_knob(name, value)
        yield
    finally:
        for name, value in saved.items():
            set_knob(name, value)


# -- the stage hook and the cache key ---------------------------------------------------------------------

def stage_hook_key(previous) -> tuple[str, str]:
    """The cache-key contribution of kperf's stage hook (Triton 3.7+ asks for one before each compile).

    kperf's hook adds nothing of its own: what it does to a compile is decided by the compile's
    ``instrumentation_mode`` (kperf's options, its code hash and the override folder's digest), which is
    in Triton's key already, and in any other mode it changes nothing.  So a plain kernel keeps the key
    it has without kperf, and a hook kperf chains keeps its contribution.
    """
    return ("", "") if previous is None else previous()


def mode_tools(mode: str) -> set[str]:
    """The Triton tools (sanitizers) this Triton switches on for an ``instrumentation_mode`` string."""
    if FACTS.mode_match == "equals":
        return {t for t in FACTS.mode_tools if mode == t}
    if FACTS.mode_match == "substring":
        return {t for t in FACTS.mode_tools if t in mode}
    names = {n.strip() for n in mode.split(",")}
    return {t for t in FACTS.mode_tools if t in names}


def check_mode(mode: str) -> str:
    """``mode`` (a kperf ``instrumentation_mode``), checked not to switch on a Triton tool as well."""
    tools = mode_tools(mode)
    if tools:
        raise KperfError(f"Triton {triton.__version__} would read kperf's mode {mode!r} as asking for "
                         f"{', '.join(sorted(tools))} too",
                         fix="rename the scope, selector or option value that spells that word")
    return mode


# -- launch: profile scratch, the allocator, hooks --------------------------------------------------------

#: The metadata Triton's launcher sizes the profile buffer from (bytes per CTA, alignment).
SCRATCH_SIZE, SCRATCH_ALIGN = "profile_scratch_size", "profile_scratch_align"
#: The keys of the launch metadata the launch hooks get that kperf reads.
LAUNCH_KEYS = ("function", "stream")


def profile_allocator():
    """The profile allocator in use (Triton's ``NullAllocator`` when none was set)."""
    from triton.runtime import _allocation
    return _allocation._profile_allocator.get()


def set_profile_allocator(allocator) -> None:
    """Install ``allocator`` (or put back one ``profile_allocator()`` returned) as the profile allocator."""
    from triton.runtime import _allocation
    _allocation._profile_allocator.set(allocator)


def launch_data(metadata) -> dict:
    """The dict behind a launch hook's argument (a ``LazyDict`` in every supported release)."""
    return metadata.data if hasattr(metadata, "data") else metadata


def add_launch_hooks(on_load, on_launch_exit) -> None:
    """Chain ``on_load(module, function, name, metadata_group, hash)`` and ``on_launch_exit(metadata)``."""
    get_knob("runtime.kernel_load_end_hook").add(on_load)
    get_knob("runtime.launch_exit_hook").add(on_launch_exit)


def remove_launch_hooks(on_load, on_launch_exit) -> None:
    get_knob("runtime.kernel_load_end_hook").remove(on_load)
    get_knob("runtime.launch_exit_hook").remove(on_launch_exit)


# -- launch paths kperf wraps (kperf.launch_paths) ------------------------------------------------------

def compiled_kernel_type() -> type:
    """Triton's ``CompiledKernel`` (what ``triton.compile`` returns; ``kernel[grid](*args)`` launches it)."""
    from triton.compiler.compiler import CompiledKernel
    return CompiledKernel


def autotuner_type() -> type:
    """Triton's ``Autotuner`` (``@triton.autotune``); its ``_bench`` runs one config's timing launches."""
    from triton.runtime.autotuner import Autotuner
    return Autotuner


def _hashable(value):
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


def kernel_metadata(kernel) -> dict:
    """A compiled kernel's metadata as a dict (a namedtuple in every supported release)."""
    md = kernel.metadata
    return md._asdict() if hasattr(md, "_asdict") else dict(md)


def recompile(kernel, instrumentation_mode: str):
    """``kernel`` (a ``CompiledKernel``) compiled again from its source, target and options, with
    ``instrumentation_mode`` in place of its own (lists read back from the metadata JSON become tuples)."""
    md = kernel_metadata(kernel)
    names = set(cuda_option_names())
    options = {k: _hashable(v) for k, v in md.items() if k in names}
    options["instrumentation_mode"] = instrumentation_mode
    return triton.compile(kernel.src, target=md["target"], options=options)


@contextlib.contextmanager
def compile_option(name: str, value):
    """Every ``triton.compile(...)`` call inside the block gets ``options[name] = value`` (how kperf asks
    for an instrumented build through a caller that compiles for itself, such as Inductor); yields the
    list of the kernels those calls return."""
    original, built = triton.compile, []

    def compile_with(*args, **kwargs):
        kwargs["options"] = {**(kwargs.get("options") or {}), name: value}
        built.append(original(*args, **kwargs))
        return built[-1]
    triton.compile = compile_with
    try:
        yield built
    finally:
        triton.compile = original


# -- the override folder's key ----------------------------------------------------------------------------

#: Where ``triton.compile`` runs (the stage hook is not given the source; this frame holds it as ``src``).
COMPILE_FRAME = ("triton.compiler.compiler", "compile")


def compile_source():
    """The source (``ASTSource``) of the ``triton.compile`` call this code runs inside; None outside one."""
    frame = sys._getframe(1)
    while frame is not None:
        if (frame.f_globals.get("__name__"), frame.f_code.co_name) == COMPILE_FRAME:
            src = frame.f_locals.get("src")
            if src is not None and hasattr(src, "hash"):
                return src
        frame = frame.f_back
    return None


def override_key(src) -> tuple[str, str]:
    """``(folder, file name)`` Triton's dump and override managers use for a compile source."""
    from triton.runtime.cache import _base32
    return _base32(src.hash()), str(src.name)[:150]


# -- compiling: sources, the NVIDIA backend, its tools ----------------------------------------------------

def gpu_target(arch: int = 90):
    """``GPUTarget("cuda", arch, 32)``."""
    return gpu_target_type()("cuda", arch, 32)


def gpu_target_type() -> type:
    """Triton's ``GPUTarget`` class (``backend``, ``arch``, ``warp_size``)."""
    from triton.backends.compiler import GPUTarget
    return GPUTarget


def jit_function_type() -> type:
    """Triton's ``JITFunction``: what ``@triton.jit`` and ``@gluon.jit`` make (``is_gluon()`` tells which)."""
    from triton.runtime.jit import JITFunction
    return JITFunction


def triton_type(name: str):
    """The Triton type a signature string names (``"*fp16"``, ``"i32"``); raises for an unknown one."""
    import triton.language as tl
    return tl.str_to_ty(name, None)


def source_class(fn):
    """The compile-source class of a ``JITFunction``: ``ASTSource``, or Gluon's for ``@gluon.jit`` kernels."""
    if fn.is_gluon():
        from triton.experimental.gluon._runtime import GluonASTSource
        return GluonASTSource
    from triton.compiler import ASTSource
    return ASTSource


def cuda_backend(target=None):
    """Triton's NVIDIA backend for ``target`` (sm_90 by default)."""
    from triton.backends.nvidia.compiler import CUDABackend
    return CUDABackend(target or gpu_target())


def cuda_option_names() -> list[str]:
    """The compile options the NVIDIA backend knows (``CUDAOptions``' fields)."""
    from triton.backends.nvidia.compiler import CUDAOptions
    return [f.name for f in dataclasses.fields(CUDAOptions)]


def cubin_arch(backend, opts) -> int:
    """The sm number Triton's cubin stage assembles for (``opts.arch`` overrides the target's)."""
    return backend._parse_arch(opts.arch) if opts.arch else int(backend.target.arch)


def assemble(backend, ptx: str, options: dict) -> bytes:
    """A cubin of ``ptx`` built the way Triton's cubin stage builds it (its ptxas and flags)."""
    opts = backend.parse_options(dict(options))
    return backend.make_cubin(ptx, {}, opts, cubin_arch(backend, opts))


def ptxas_path(arch: int = 90) -> str:
    """The ptxas Triton assembles ``sm_<arch>`` with (``FACTS.sm90_ptxas`` for Hopper)."""
    from triton.backends.nvidia.compiler import get_ptxas
    return get_ptxas(arch).path


def cuobjdump_path() -> str:
    return get_knob("nvidia.cuobjdump").path


def cache_manager(key: str):
    """Triton's cache folder for ``key`` (``get_file(name)``, ``put(data, name, binary=...)``)."""
    from triton.runtime.cache import get_cache_manager
    return get_cache_manager(key)


# -- the kernel language ---------------------------------------------------------------------------------

def builtin(fn):
    """Triton's ``@builtin``: ``fn`` runs at compile time inside kernels, given ``_semantic``."""
    from triton.language import core
    return core.builtin(fn)


def constexpr_value(value):
    """The Python value of a ``tl.constexpr`` (``value`` itself when it is not one)."""
    from triton.language import core
    return core._unwrap_if_constexpr(value)


#: Gluon builtins under one name for every release: ``from kperf.triton_compat import gluon_tma_load``
#: in a ``@gluon.jit`` kernel's module (loaded on first use: Gluon is not imported with kperf).
_GLUON_NAMES = {"gluon_tma_load": 0, "gluon_tma_store": 1}


def __getattr__(name: str):
    if name in _GLUON_NAMES:
        from triton.experimental.gluon.language.nvidia.hopper import tma
        return getattr(tma, FACTS.gluon_tma[_GLUON_NAMES[name]])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- MLIR bindings ----------------------------------------------------------------------------------------

#: The methods of Triton's MLIR bindings kperf calls (``triton._C.libtriton.ir``), by class.
MLIR_BINDINGS = {
    "builder": ("set_insertion_point_after", "set_insertion_point_to_start", "set_loc", "get_loc",
                "get_int32_ty", "create_inline_asm"),
    "module": ("walk", "str"),
    "operation": ("get_name", "get_block", "get_num_results", "get_result", "get_num_regions", "get_region",
                  "get_num_operands", "get_operand", "get_bool_attr", "get_str_attr"),
    "block": ("id", "get_parent", "get_num_arguments", "arg"),
    "region": ("id",),
    "value": ("id", "get_type"),
}


def mlir_builder(context):
    """An MLIR op builder of ``context`` (what automatic insertion builds its carriers with)."""
    from triton._C.libtriton import ir
    return ir.builder(context)


def parse_mlir_file(path: str, context):
    """The module in the file ``path``, parsed in ``context``; MLIR's ``RuntimeError`` when it fails."""
    from triton._C.libtriton import ir
    mod = ir.parse_mlir_module(path, context)
    mod.context = context  # as Triton does for the modules it hands its stages
    return mod


def sm90_context():
    """A context with Triton's and the NVIDIA backend's dialects loaded (TTGIR read outside a compile)."""
    from triton._C.libtriton import ir
    ctx = ir.context()
    ir.load_dialects(ctx)
    cuda_backend().load_dialects(ctx)
    return ctx


# -- Proton (the ``proton.record`` lowering), for compiling Proton's syntax without a GPU --------------------

@contextlib.contextmanager
def proton_instrumentation(mode_spec: str = "default", max_shared_mem: int = 232448,
                           buffer_size: int | None = None, buffer_align: int | None = None):
    """Proton's instrumentation passes in the NVIDIA pipeline, registered without a device; yields the mode.

    The same passes with the same arguments as ``triton.profiler``'s ``InstrumentationHook.activate`` of
    this release, with the device's maximum shared memory given instead of queried.
    """
    from triton._C.libtriton import passes as triton_passes
    from triton._C.libtriton import proton as triton_proton
    from triton.profiler import mode as pmode
    from triton.profiler.hooks.instrumentation import InstrumentationHook, _interpret_mode
    m = _interpret_mode(mode_spec)
    size = InstrumentationHook.profile_buffer_size if buffer_size is None else buffer_size
    align = InstrumentationHook.profile_buffer_alignment if buffer_align is None else buffer_align

    def to_llvmir(pm):
        triton_proton.add_convert_proton_to_protongpu(
            pm, m.metric_type, m.sampling_strategy, m.sampling_options, m.granularity, m.buffer_strategy,
            m.buffer_type, m.buffer_size, max_shared_mem, size, align,
            pmode.Optimize.CLOCK32 not in m.optimizations)
        triton_passes.common.add_cse(pm)
        if pmode.Optimize.SCHED_STORES in m.optimizations:
            triton_proton.add_schedule_buffer_store(pm)
        triton_proton.add_allocate_proton_shared_memory(pm)

    def to_llvm(pm):
        if FACTS.proton_global_scratch_pass:
            triton_proton.add_allocate_proton_global_scratch_buffer(pm)
        triton_proton.add_convert_proton_nvidia_gpu_to_llvm(pm)

    with _proton_passes(triton_proton.load_dialects, to_llvmir, to_llvm):
        yield str(m)


@contextlib.contextmanager
def _proton_passes(load_dialects, to_llvmir, to_llvm):
    """Register Proton's dialects and passes with the NVIDIA backend for a ``with`` block."""
    if FACTS.proton_hooks == "registry":
        from triton._instrumentation import register_instrumentation, unregister_instrumentation
        points = {"load-dialects": load_dialects, "ttgpuir-to-llvmir": to_llvmir, "llvmir-to-llvm": to_llvm}
        for point, callback in points.items():
            register_instrumentation(point=point, backend="nvidia", callback=callback)
        try:
            yield
        finally:
            for point in points:
                unregister_instrumentation(point=point, backend="nvidia")
        return
    from triton.backends.nvidia.compiler import CUDABackend
    from triton.profiler.hooks.instrumentation import Instrumentation
    saved = CUDABackend.instrumentation
    CUDABackend.instrumentation = Instrumentation({"ttgpuir_to_llvmir": to_llvmir, "llvmir_to_llvm": to_llvm})
    try:
        yield
    finally:
        CUDABackend.instrumentation = saved


# -- compile records (kperf.corpus) -----------------------------------------------------------------------

#: The keywords Triton calls ``knobs.compilation.listener`` with at the end of every ``triton.compile``,
#: a cache hit too (``CompilationListener``; the same in every supported release).
LISTENER_ARGS = ("src", "metadata", "metadata_group", "times", "cache_hit")


def compile_facts(src, metadata: dict, metadata_group: dict) -> dict:
    """What one ``triton.compile`` was, from its listener call (``kperf.corpus`` records it).

    ``kind``: "triton" (an ``ASTSource`` of a ``@triton.jit`` function), "gluon" (``@gluon.jit``: it enters
    at TTGIR, so no TTIR is kept) or "ir" (compiled from an IR file).  ``function`` is the Python
    function (None for IR files); ``constants`` and ``attrs`` are keyed by argument name (``x`` or
    ``x[1]`` inside a tuple argument); ``ttir`` is the path of the TTIR Triton wrote into its cache
    folder for this kernel (None when it kept none: a Gluon kernel, or ``TRITON_STORE_BINARY_ONLY``).
    """
    jit = getattr(src, "fn", None)
    names = list(getattr(jit, "arg_names", None) or [])

    def by_name(path) -> str:
        path = path if isinstance(path, tuple) else (path,)
        head = names[path[0]] if isinstance(path[0], int) and path[0] < len(names) else str(path[0])
        return head + "".join(f"[{i}]" for i in path[1:])

    kind = "ir" if jit is None else ("gluon" if jit.is_gluon() else "triton")
    target = metadata.get("target")
    options = set(cuda_option_names())
    return {
        "kind": kind, "name": str(metadata.get("name") or src.name).lstrip("@"),
        "function": getattr(jit, "fn", None), "source": getattr(jit, "src", None),
        "line": getattr(jit, "starting_line_number", None),
        "signature": {str(k): v for k, v in dict(getattr(src, "signature", {}) or {}).items()},
        "constants": {by_name(k): v for k, v in dict(getattr(src, "constants", {}) or {}).items()},
        "attrs": {by_name(k): v for k, v in dict(getattr(src, "attrs", {}) or {}).items()},
        "options": {k: v for k, v in metadata.items() if k in options},
        "target": None if target is None else (target.backend, target.arch, target.warp_size),
        "triton_version": metadata.get("triton_version", triton.__version__),
        "ttir": metadata_group.get(f"{str(src.name)[:150]}.ttir"),
    }
