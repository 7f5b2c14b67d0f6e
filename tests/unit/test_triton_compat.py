"""Every fact of ``kperf.triton_compat`` checked against the installed Triton (no GPU).

Each test checks one fact, for whichever supported release is installed: CI runs this file on 3.6 with
the full suite and on 3.7, 3.8 and 3.9 with the compile-side tests (``.ci/run``), so each fact is
checked on each release.  Where a fact can be observed (a compile, a parse, an option), the test
observes it; where only Triton's source says it (a launcher written in C, a branch taken on a GPU), the
test reads the installed source.
"""

from __future__ import annotations

import inspect
import os
import pathlib
import re
import subprocess
import sys
import tomllib

import pytest
import triton
import triton.language as tl

import kperf
from kperf import stages, triton_compat, ttgir_module
from kperf.dialect.errors import KperfError
from kperf.dialect.options import ProfileConfig
from kperf.passes import triton_ir

pytestmark = pytest.mark.compile_side
ROOT = pathlib.Path(__file__).resolve().parents[2]
TRITON = pathlib.Path(triton.__file__).parent
FACTS = triton_compat.FACTS


def _source(relative: str) -> str:
    return (TRITON / relative).read_text()


# -- the supported releases -------------------------------------------------------------------------------

def test_every_supported_release_has_a_row():
    assert sorted(triton_compat.BY_VERSION) == list(triton_compat.SUPPORTED) == sorted(triton_ir.BY_VERSION)
    assert triton_compat.VERSION == tuple(int(p) for p in triton.__version__.split(".")[:2])


@pytest.mark.parametrize("version", ["3.5.1", "3.10.0", "4.0", "nightly"])
def test_an_unsupported_release_is_refused_by_name(version):
    with pytest.raises(KperfError) as e:
        triton_compat.check_version(version)
    assert "3.6, 3.7, 3.8 and 3.9" in str(e.value) and version in str(e.value)
    assert triton_compat.PIP_RANGE in e.value.fix


def test_patch_and_local_versions_are_accepted():
    assert triton_compat.check_version("3.9.0+git1234") == (3, 9)
    assert triton_compat.check_version("3.7.1") == (3, 7)


def test_pyproject_allows_exactly_the_supported_range():
    """pip keeps whichever supported Triton is installed (PyTorch pins one) instead of replacing it."""
    from packaging.requirements import Requirement
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    triton_req = next(Requirement(d) for d in deps if Requirement(d).name == "triton")
    assert triton_req == Requirement(triton_compat.PIP_RANGE)
    for v in ("3.6.0", "3.7.1", "3.8.0", "3.9.0", "3.9.1"):
        assert triton_req.specifier.contains(v), v
    for v in ("3.5.1", "3.10.0", "4.0.0"):
        assert not triton_req.specifier.contains(v), v


REFUSE = """
import triton
triton.__version__ = "3.5.1"
import kperf
for name in ("profile", "compile", "scope"):
    try:
        getattr(kperf, name)
    except kperf.KperfError as e:
        print(name, str(e).splitlines()[0])
"""


def test_kperf_with_an_unsupported_triton_is_a_kperf_error():
    """kperf's names load lazily (the offline side needs no Triton); the first one that touches Triton
    loads ``triton_compat``, which refuses the release before any other internal is used."""
    run = subprocess.run([sys.executable, "-c", REFUSE], capture_output=True, text=True, cwd=ROOT)
    said = "kperf supports Triton 3.6, 3.7, 3.8 and 3.9; this Python has Triton 3.5.1"
    assert run.stdout.splitlines() == [f"{name} {said}" for name in ("profile", "compile", "scope")], \
        run.stdout + run.stderr[-2000:]


# -- the stage hook, the compile frame, the override key, profile scratch ---------------------------------

@pytest.fixture(scope="module")
def hooked_compile(tmp_path_factory):
    """A vector-add compile with a recording stage hook installed and Triton's own IR dump on."""
    tmp = tmp_path_factory.mktemp("compat")
    calls, seen = [], {}

    def hook(*args):
        calls.append(len(args))
        if not args:
            return "", ""
        seen["source"] = triton_compat.compile_source()

    @triton.jit
    def add(x_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        tl.store(x_ptr + offs, tl.load(x_ptr + offs, mask=offs < n) + 1, mask=offs < n)

    src = triton_compat.source_class(add)(add, {"x_ptr": "*fp32", "n": "i32", "BLOCK": "constexpr"},
                                          {"BLOCK": 128}, {})
    knobs = {"runtime.add_stages_inspection_hook": hook, "cache.dir": str(tmp / "cache"),
             "compilation.always_compile": True}
    with triton_compat.knobs_set(knobs), _dumping(tmp / "dump"):
        kernel = triton.compile(src, target=triton_compat.gpu_target(), options={"num_warps": 4})
    return kernel, src, calls, seen, tmp / "dump"


class _dumping:
    """Triton's own IR dump (``TRITON_KERNEL_DUMP=1 TRITON_DUMP_DIR=...``) for a ``with`` block."""

    def __init__(self, folder):
        self.folder = folder

    def __enter__(self):
        self.saved = (triton.knobs.compilation.dump_ir, triton.knobs.cache.dump_dir)
        triton.knobs.compilation.dump_ir, triton.knobs.cache.dump_dir = True, str(self.folder)

    def __exit__(self, *exc):
        triton.knobs.compilation.dump_ir, triton.knobs.cache.dump_dir = self.saved


def test_stage_hook_is_asked_for_a_cache_key_from_37(hooked_compile):
    _, _, calls, _, _ = hooked_compile
    assert calls.count(5) == 1  # (backend, stages, options, language, capability), every release
    assert (0 in calls) == FACTS.stage_hook_keyed


def test_kperfs_cache_key_is_empty_and_keeps_a_chained_hooks_key():
    assert triton_compat.stage_hook_key(None) == ("", "")
    assert triton_compat.stage_hook_key(lambda *a: ("theirs", "h")) == ("theirs", "h")
    hook = stages.StageHook()
    assert hook() == ("", "")


def test_the_compile_frame_holds_the_source(hooked_compile):
    _, src, _, seen, _ = hooked_compile
    assert seen["source"] is src


def test_override_key_is_the_folder_tritons_dump_writes(hooked_compile):
    _, src, _, _, dump = hooked_compile
    folder, name = triton_compat.override_key(src)
    assert (dump / folder / f"{name}.ttgir").is_file(), sorted(p.name for p in dump.iterdir())


def test_profile_scratch_metadata_and_the_launchers_last_parameter(hooked_compile):
    kernel, _, _, _, _ = hooked_compile
    md = kernel.metadata._asdict()
    assert md[triton_compat.SCRATCH_SIZE] == 0 and md[triton_compat.SCRATCH_ALIGN] == 1
    params = re.findall(r"\.param \.\w+(?: \.ptr \.global \.align \d+)? (\w+)", kernel.asm["ptx"])
    assert len(params) == 2 + 2  # x_ptr, n, then the global and the profile scratch pointers
    if triton_compat.VERSION == (3, 6):  # the launcher is C generated in driver.py
        appended = re.findall(r'params\.append\("&(\w+)"\)', _source("backends/nvidia/driver.py"))
        assert appended[-2:] == ["global_scratch", "profile_scratch"]
    else:  # 3.7+: one launcher in driver.c
        extracted = re.findall(r"extractPointer\(params\[params_idx\+\+\], (\w+)\)",
                               _source("backends/nvidia/driver.c"))
        assert extracted[-2:] == ["global_scratch_obj", "profile_scratch_obj"]


def test_launch_hooks_get_the_function_and_the_stream(hooked_compile, monkeypatch):
    kernel, _, _, _, _ = hooked_compile
    monkeypatch.setattr(kernel, "_init_handles", lambda: None)
    monkeypatch.setattr(kernel, "function", 1234, raising=False)
    data = triton_compat.launch_data(kernel.launch_metadata((1, 1, 1), 77))
    assert {k: data[k] for k in triton_compat.LAUNCH_KEYS} == {"function": 1234, "stream": 77}
    init = inspect.getsource(type(kernel)._init_handles)
    assert ("kernel_load_end_hook(self.module, self.function, self.name, self.metadata_group, self.hash)"
            in init)


def test_knobs_kperf_uses_exist_and_are_put_back():
    for name in triton_compat.KNOBS:
        triton_compat.get_knob(name)
    before = triton_compat.get_knob("compilation.always_compile")
    with triton_compat.knobs_set({"compilation.always_compile": not before}):
        assert triton_compat.get_knob("compilation.always_compile") is (not before)
    assert triton_compat.get_knob("compilation.always_compile") is before
    with pytest.raises(KperfError, match="does not use Triton knob"):
        triton_compat.get_knob("compilation.nope")


def test_profile_allocator_is_set_and_put_back():
    saved = triton_compat.profile_allocator()

    def mine(size, align, stream):
        return None
    triton_compat.set_profile_allocator(mine)
    try:
        from triton.runtime import _allocation
        assert _allocation._profile_allocator.get() is mine
    finally:
        triton_compat.set_profile_allocator(saved)
    assert triton_compat.profile_allocator() is saved


def test_default_profile_scratch_from_38():
    launcher = _source("backends/nvidia/driver.py")
    assert ("allocate_default_profile_scratch" in launcher) == FACTS.default_profile_scratch


def test_modules_are_unloaded_when_kernels_are_freed_from_38():
    from triton.compiler.compiler import CompiledKernel
    freed = inspect.getsource(CompiledKernel.__del__) if "__del__" in vars(CompiledKernel) else ""
    assert ("unload_module" in freed) == FACTS.unloads_modules


# -- instrumentation_mode ---------------------------------------------------------------------------------

def _tools_in_source() -> set[str]:
    return set(re.findall(r"[\"'](\w+san)[\"']", _source("backends/nvidia/compiler.py")))


def test_the_tools_triton_reads_from_the_mode_and_how():
    assert set(FACTS.mode_tools) == _tools_in_source()
    src = _source("backends/nvidia/compiler.py")
    substring = re.search(r"[\"']\w+san[\"'] in (opt|options|self)\.instrumentation_mode", src)
    match = ("names" if "is_enabled" in src and "from triton._instrumentation import" in src
             else "substring" if substring else "equals")
    assert match == FACTS.mode_match


@pytest.mark.parametrize("mode", ["consan", "kperf:x,consan", "kperf:x,myconsan,y", "iisan", "fpsan,gsan"])
def test_mode_tools_reads_a_mode_as_triton_does(mode):
    found = triton_compat.mode_tools(mode)
    if FACTS.mode_match == "names":
        from triton._instrumentation import is_enabled
        assert found == {t for t in FACTS.mode_tools if is_enabled({"instrumentation_mode": mode}, t)}
    elif FACTS.mode_match == "substring":
        from triton.backends.nvidia.compiler import CUDAOptions
        assert ("iisan" in found) == CUDAOptions(instrumentation_mode=mode).enable_iisan
        assert found == {t for t in FACTS.mode_tools if t in mode}
    else:
        assert found == ({"consan"} if mode == "consan" else set())


@pytest.mark.parametrize("config", [ProfileConfig(), ProfileConfig(auto="mma,tma,waits,loops", fold=True),
                                    ProfileConfig(store="smem", sms=(0, 1), granularity="warpgroup")])
def test_kperfs_modes_switch_on_no_triton_tool(config):
    mode = stages.instrumentation_mode(config)
    assert triton_compat.mode_tools(mode) == set()
    with pytest.raises(KperfError, match="would read kperf's mode"):
        triton_compat.check_mode(mode + ",consan" if FACTS.mode_match != "equals" else "consan")


def test_an_instrumented_compile_keeps_maxnreg_until_39():
    mode = stages.instrumentation_mode(ProfileConfig())
    opts = triton_compat.cuda_backend().parse_options({"maxnreg": 128, "instrumentation_mode": mode})
    assert (opts.maxnreg is None) == FACTS.mode_drops_maxnreg
    assert triton_compat.cuda_backend().parse_options({"maxnreg": 128}).maxnreg == 128


# -- tools, Gluon, Proton, MLIR ---------------------------------------------------------------------------

def test_the_ptxas_that_assembles_sm90():
    assert triton_compat.ptxas_path(90) == triton_compat.get_knob(f"nvidia.{FACTS.sm90_ptxas}").path
    assert os.access(triton_compat.ptxas_path(90), os.X_OK)
    assert os.access(triton_compat.cuobjdump_path(), os.X_OK)


def test_gluon_sources_enter_at_their_stage():
    from triton.experimental import gluon

    @gluon.jit
    def nothing(x):
        pass
    cls = triton_compat.source_class(nothing)
    assert cls.__name__ == "GluonASTSource"
    assert cls(nothing, {"x": "i32"}, {}, {}).ext == FACTS.gluon_source_ext


def test_gluon_tma_names():
    from triton.experimental.gluon.language.nvidia.hopper import tma
    load, store = triton_compat.gluon_tma_load, triton_compat.gluon_tma_store
    assert (load, store) == tuple(getattr(tma, n) for n in FACTS.gluon_tma)
    for fn in (load, store):  # the working builtin, not a name kept only to say it was removed
        assert "has been removed" not in inspect.getsource(fn)


def test_how_proton_joins_the_nvidia_pipeline():
    from triton.backends.nvidia.compiler import CUDABackend
    registry = (TRITON / "_instrumentation.py").is_file()
    assert registry == (FACTS.proton_hooks == "registry")
    assert hasattr(CUDABackend, "instrumentation") == (FACTS.proton_hooks == "backend")
    hook = _source("profiler/hooks/instrumentation.py")
    assert ("add_allocate_proton_global_scratch_buffer" in hook) == FACTS.proton_global_scratch_pass


def test_mlir_bindings_kperf_calls_exist():
    from triton._C.libtriton import ir
    missing = [f"{cls}.{m}" for cls, methods in triton_compat.MLIR_BINDINGS.items()
               for m in methods if not hasattr(getattr(ir, cls), m)]
    assert not missing


WS_TTGIR = """\
module attributes {"ttg.num-ctas" = 1 : i32, "ttg.num-warps" = 4 : i32, ttg.target = "cuda:90", \
"ttg.threads-per-warp" = 32 : i32} {
  tt.func public @k(%arg0: i32) {
    ttg.warp_specialize(%arg0) attributes {requestedRegisters = array<i32: 24>}
    default {
      ttg.warp_yield
    }
    partition0(%arg1: i32) num_warps(4) {
      ttg.warp_return
    } : (i32) -> ()
    tt.return
  }
}
"""


def test_which_op_holds_a_partitions_captures():
    mod = ttgir_module.parse(WS_TTGIR, triton_compat.sm90_context())
    ops = []
    mod.walk(ops.append)
    operands = {op.get_name(): op.get_num_operands() for op in ops
                if op.get_name() in (triton_ir.WARP_SPECIALIZE, triton_ir.WS_PARTITIONS)}
    assert operands[triton_compat.IR.ws_captures] == 1
    assert sum(operands.values()) == 1


# -- compiling: the cache key with kperf's hook, the backend, types ---------------------------------------

@triton.jit
def _add(x_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    with kperf.scope("io"):
        tl.store(x_ptr + offs, tl.load(x_ptr + offs, mask=offs < n) + 1, mask=offs < n)


def test_cache_keys_plain_kernels_as_without_kperf_and_instrumented_apart(tmp_path):
    src = triton_compat.source_class(_add)(_add, {"x_ptr": "*fp32", "n": "i32", "BLOCK": "constexpr"},
                                           {"BLOCK": 128}, {})

    def build(mode=""):
        return triton.compile(src, target=triton_compat.gpu_target(), options={"instrumentation_mode": mode})
    with triton_compat.knobs_set({"cache.dir": str(tmp_path), "compilation.always_compile": False,
                                  "runtime.add_stages_inspection_hook": None}):
        without = build()
        hook = stages.StageHook()  # not stages.HOOK: other tests may have installed that one already
        hook.install()
        try:
            plain, inst = build(), build(stages.instrumentation_mode(ProfileConfig()))
        finally:
            hook.uninstall()
    assert plain.hash == without.hash  # kperf's hook adds nothing to a plain kernel's key
    assert inst.hash != plain.hash and inst.metadata.kperf["num_records"] == 2
    assert "// kperf record #" in inst.asm["ptx"] and "// kperf record #" not in plain.asm["ptx"]


def test_backend_helpers():
    backend = triton_compat.cuda_backend()
    opts = backend.parse_options({"num_warps": 4})
    assert triton_compat.cubin_arch(backend, opts) == 90
    names = set(triton_compat.cuda_option_names())
    assert {"num_warps", "num_stages", "maxnreg", "instrumentation_mode"} <= names
    assert isinstance(_add, triton_compat.jit_function_type()) and not _add.is_gluon()
    assert isinstance(triton_compat.gpu_target(), triton_compat.gpu_target_type())
    assert triton_compat.triton_type("*fp16") is not None
    with pytest.raises(KeyError):  # what compile_api turns into a KperfError naming the argument
        triton_compat.triton_type("i33")


def test_cache_manager_keeps_a_file(tmp_path):
    with triton_compat.knobs_set({"cache.dir": str(tmp_path)}):
        key = "ab" * 32  # a hex digest, as kperf.sass makes them
        triton_compat.cache_manager(key).put("text", "t.txt", binary=False)
        found = triton_compat.cache_manager(key).get_file("t.txt")
    assert found is not None and pathlib.Path(found).read_text() == "text"


# -- compile records (kperf.corpus) -----------------------------------------------------------------------

def test_the_compile_listener_sees_every_compile_and_its_ttir(tmp_path):
    """Triton calls ``knobs.compilation.listener`` with ``LISTENER_ARGS`` after every ``triton.compile``,
    a cache hit too, and keeps ``<name>.ttir`` in the kernel's cache folder; an IR-file compile is seen
    the same way (its name is ``@name``)."""
    calls = []

    def listener(**kwargs):
        calls.append((tuple(kwargs), kwargs["cache_hit"], triton_compat.compile_facts(
            kwargs["src"], kwargs["metadata"], kwargs["metadata_group"])))
    src = triton_compat.source_class(_add)(_add, {"x_ptr": "*fp32", "n": "i32", "BLOCK": "constexpr"},
                                           {"BLOCK": 128}, {(0,): [["tt.divisibility", 16]]})
    knobs = {"cache.dir": str(tmp_path), "compilation.always_compile": False,
             "compilation.listener": listener}
    with triton_compat.knobs_set(knobs):
        for _ in range(2):
            triton.compile(src, target=triton_compat.gpu_target(), options={"num_warps": 2})
        triton.compile(calls[0][2]["ttir"], target=triton_compat.gpu_target(), options={"num_warps": 2})
    assert [c[0] for c in calls] == [triton_compat.LISTENER_ARGS] * 3
    assert [c[1] for c in calls] == [False, True, False]
    first, hit, from_ir = (c[2] for c in calls)
    assert first["kind"] == "triton" and first["name"] == "_add" and first["function"] is _add.fn
    assert first["constants"] == {"BLOCK": 128} and first["attrs"] == {"x_ptr": [["tt.divisibility", 16]]}
    assert first["signature"]["x_ptr"] == "*fp32" and first["options"]["num_warps"] == 2
    assert first["target"] == ("cuda", 90, 32) and first["line"] == _add.starting_line_number
    assert "def _add(" in first["source"] and first["triton_version"] == triton.__version__
    assert first["ttir"] == hit["ttir"] and "tt.func public @_add" in pathlib.Path(first["ttir"]).read_text()
    assert from_ir["kind"] == "ir" and from_ir["name"] == "_add" and from_ir["function"] is None
    assert pathlib.Path(from_ir["ttir"]).is_file()
    protocol = inspect.signature(triton.knobs.CompilationListener.__call__).parameters
    assert tuple(protocol)[1:] == triton_compat.LISTENER_ARGS


def test_launch_path_internals_kperf_wraps():
    """``kperf.launch_paths`` wraps ``CompiledKernel.__getitem__`` (direct launches) and ``Autotuner._bench``
    (timing runs); the twin of a compiled kernel is rebuilt from ``src``, its metadata's options and target;
    ``compile_option`` reaches callers that compile for themselves through ``triton.compile``."""
    ck, at = triton_compat.compiled_kernel_type(), triton_compat.autotuner_type()
    assert callable(ck.__getitem__) and "grid" in inspect.signature(ck.__getitem__).parameters
    assert callable(at._bench)
    # JITFunction.run (kperf samples there): kernel[grid](...) reaches it through the class attribute, with
    # grid and warmup as keywords, and the kernel's name is the function's (what the exit hook sees)
    run = inspect.signature(triton_compat.jit_function_type().run).parameters
    assert {"grid", "warmup"} <= set(run) and _add.__name__ == "_add"
    assert "self.run(" in inspect.getsource(triton_compat.jit_function_type().__getitem__)
    src = triton_compat.source_class(_add)(_add, {"x_ptr": "*fp32", "n": "i32", "BLOCK": "constexpr"},
                                           {"BLOCK": 128})
    with triton_compat.compile_option("num_warps", 2) as built:
        plain = triton.compile(src, target=triton_compat.gpu_target(), options={"num_warps": 4})
    assert built == [plain] and plain.metadata.num_warps == 2  # the option given wins over the caller's
    assert isinstance(plain, ck) and plain.src is src
    md = triton_compat.kernel_metadata(plain)
    assert md["target"] == triton_compat.gpu_target() and md["instrumentation_mode"] == ""
    twin = triton_compat.recompile(plain, "")
    tmd = triton_compat.kernel_metadata(twin)
    same = ("num_warps", "num_stages", "name")
    assert [tmd[k] for k in same] == [md[k] for k in same]
    assert twin.hash == plain.hash  # same source, options and target: Triton's cache key is the same


def test_how_ttir_spells_descriptors_and_cache_policies():
    """``Facts.ttir_desc_wraps_tensor`` / ``ttir_cache_policy_attr`` as this Triton writes TTIR."""
    @triton.jit
    def spellings(x, y, d):
        v = tl.load(x + tl.arange(0, 128), cache_modifier=".cg")
        tl.store(y + tl.arange(0, 128), v, eviction_policy="evict_first")
        d.store([0, 0], d.load([0, 0]))
    sig = {"x": "*fp32", "y": "*fp32", "d": "tensordesc<fp16[64, 64]>"}
    src = triton_compat.source_class(spellings)(spellings, sig, {}, {})
    ttir = triton.compile(src, target=triton_compat.gpu_target(), options={"num_warps": 4}).asm["ttir"]
    wraps, attr = triton_compat.FACTS.ttir_desc_wraps_tensor, triton_compat.FACTS.ttir_cache_policy_attr
    assert ("!tt.tensordesc<tensor<64x64xf16>>" in ttir) == wraps
    assert ("!tt.tensordesc<64x64xf16>" in ttir) == (not wraps)
    assert ("cacheModifier = cg" in ttir, "#tt.cache_policy<cache_modifier = cg" in ttir) == (not attr, attr)


def test_ttir_written_by_36_is_read_here_once_respelled(tmp_path):
    """TTIR that Triton 3.6 wrote (a descriptor argument, a device-made descriptor, loads and a store with a
    cache modifier or an eviction policy: tests/data/ttir/spellings-3.6.ttir) compiles here after
    ``readable_ttir``, as the kernel corpus recorded with 3.6 needs on 3.8 and 3.9."""
    text = (pathlib.Path(__file__).parents[1] / "data" / "ttir" / "spellings-3.6.ttir").read_text()
    path = tmp_path / "spellings.ttir"
    path.write_text(triton_compat.readable_ttir(text, "3.6.0"))
    built = triton.compile(str(path), target=triton_compat.gpu_target(), options={"num_warps": 4})
    assert built.asm["cubin"] and "spellings" in built.asm["ptx"]
    assert triton_compat.readable_ttir(text, "3.10.0") == text  # a release kperf does not know: as it is
    if (3, 8) <= triton_compat.VERSION:
        assert triton_compat.readable_ttir(text, "3.6.0") != text
