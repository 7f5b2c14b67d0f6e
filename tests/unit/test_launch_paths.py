"""CPU checks of the launch paths, sampling, coverage, the memory budget's parsing and capacity fitting."""

from __future__ import annotations

import sys
import textwrap

import pytest

import kperf
from kperf import coverage, launch_paths, triton_compat
from kperf.copy_out import parse_bytes
from kperf.dialect.errors import KperfError
from kperf.dialect.options import ProfileConfig
from kperf.dialect.ttgir_text import scan, scanned_record_bound
from kperf.runtime import Capture, Dispatcher, KernelInfo
from kperf.stages import fitted_config

pytestmark = pytest.mark.compile_side


def _carrier(kind: str, name: str) -> str:
    return f'%r = tt.elementwise_inline_asm "// kperf.record {kind} \\22{name}\\22" {{pure = false}} -> i32'


def _module(body: str, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        module {{
          tt.func public @k(%a: i32) {{
        {textwrap.indent(body, "    ")}
            tt.return
          }}
        {extra}
        }}
        """)


def record_bound(text: str) -> int | None:
    return scanned_record_bound(scan(text))


def test_record_bound_counts_sites_only_when_no_loop_holds_one():
    straight = _module(f"{_carrier('start', 'x')}\n{_carrier('end', 'x')}")
    assert record_bound(straight) == 2
    in_for = _module(f"scf.for %i = %c0 to %c4 step %c1 {{\n  {_carrier('start', 'x')}\n}}\n"
                     f"{_carrier('end', 'x')}")
    assert record_bound(in_for) is None
    in_while_body = _module(f"scf.while (%x = %a) : (i32) -> i32 {{\n  scf.condition(%t) %x : i32\n}} do {{\n"
                            f"  {_carrier('start', 'x')}\n  scf.yield %x : i32\n}}\n{_carrier('end', 'x')}")
    assert record_bound(in_while_body) is None
    after_loop = _module(f"scf.for %i = %c0 to %c4 step %c1 {{\n}}\n{_carrier('start', 'x')}\n"
                         f"{_carrier('end', 'x')}")
    assert record_bound(after_loop) == 2
    callee = "  tt.func private @f(%b: i32) {\n    " + _carrier("start", "y") + "\n    tt.return\n  }"
    assert record_bound(_module(_carrier("end", "y"), callee)) is None


def test_fitted_config_shrinks_only_to_a_proven_bound():
    cfg = ProfileConfig()
    assert fitted_config(cfg, 4, 4).capacity == 4
    assert fitted_config(cfg, 4, 6).capacity == 6  # the PTX holds more copies: the larger count
    assert fitted_config(cfg, None, 4) is cfg
    assert fitted_config(ProfileConfig(capacity=2), 4, 4).capacity == 2
    assert fitted_config(ProfileConfig(strategy="wrap", capacity=1024), 5, 5).capacity == 8


def test_kernel_preset_profiles_a_kernel_without_loops_in_a_fitted_buffer():
    import triton
    import triton.language as tl

    @triton.jit
    def double(x, y, n, B: tl.constexpr):
        i = tl.program_id(0) * B + tl.arange(0, B)
        tl.store(y + i, tl.load(x + i, mask=i < n) * 2, mask=i < n)
    r = kperf.compile(double, signature={"x": "*fp32", "y": "*fp32", "n": "i32", "B": "constexpr"},
                      constexprs={"B": 1024}, num_warps=4, auto="kernel")
    info = r.metadata["kperf"]
    assert [s["name"] for s in info["scopes"]] == ["kernel"]
    assert info["record_bound"] == 2 and info["capacity"] == 2
    assert r.metadata["profile_scratch_size"] < 1024  # vs 33 KB per CTA at the default capacity


def test_sampling_every_and_max_launches():
    s = coverage.Sampling(every=3, max_launches=2)
    got = [s.take("k") for _ in range(10)]
    assert [i for i, r in enumerate(got) if r is None] == [0, 3]
    assert got[1] == coverage.SAMPLED and got[6] == coverage.LIMIT
    assert coverage.Sampling(every=2).take("other") is None  # counted per kernel
    for bad in (0, -1, 1.5, True):
        with pytest.raises(KperfError, match="every"):
            coverage.Sampling(every=bad)
    with pytest.raises(KperfError, match="max_launches"):
        kperf.session(max_launches=0)


def test_coverage_table_and_unseen_leave_out_sampling():
    c = coverage.Coverage()
    c.profiled("a")
    c.skipped("a", coverage.SAMPLED)
    c.skipped("b", coverage.PLAIN)
    c.skipped("b", coverage.PLAIN)
    assert [r[:3] for r in c.rows()] == [("a", 2, 1), ("b", 2, 0)]
    assert c.unseen() == [("b", 2, coverage.PLAIN)]
    table = c.table()
    assert "launches" in table and "profiled" in table and "compiled plain" in table


def test_memory_budget_parsing():
    assert parse_bytes("512MiB") == 512 << 20 and parse_bytes("2 GB") == 2 * 10**9
    assert parse_bytes(4096) == 4096
    for bad in ("lots", -5, 0, "3 parsecs", True):
        with pytest.raises(KperfError, match="memory_budget") as e:
            parse_bytes(bad)
        assert "2GiB" in e.value.fix
    with pytest.raises(KperfError, match=r"kperf.session\(memory_budget"):
        kperf.session(memory_budget="much")


def test_launch_exit_counts_plain_and_recordless_kernels_with_their_reasons():
    d = Dispatcher()
    cap = Capture()
    d.add_session(cap)
    d._kernels[11] = coverage.NO_RECORDS
    d._on_launch_exit({"function": 11, "name": "no_scopes", "stream": 0})
    d._on_launch_exit({"function": 12, "name": "loaded_before", "stream": 0})
    d._on_launch_exit(None)  # Triton passes no metadata without an enter hook: ignored
    assert dict((k, why) for k, _, why in cap.coverage.unseen()) == {"no_scopes": coverage.NO_RECORDS,
                                                                     "loaded_before": coverage.PLAIN}
    with d.benchmarking():
        d._on_launch_exit({"function": 12, "name": "loaded_before", "stream": 0})  # a tuner's timing run
    assert {k: n for k, n, _ in cap.coverage.unseen()} == {"no_scopes": 1, "loaded_before": 1}


def test_activation_wraps_every_launch_path_and_restores_it():
    import torch

    from kperf import cuda_graphs
    ck, at = triton_compat.compiled_kernel_type(), triton_compat.autotuner_type()
    before = (ck.__getitem__, at._bench)
    d = Dispatcher()
    d.activate()
    try:
        assert ck.__getitem__ is launch_paths._getitem and at._bench is launch_paths._bench
        # CUDA graph capture and replay are watched from then on (a profiled kernel is captured and
        # replayed outside any kperf call)
        assert torch.cuda.CUDAGraph.replay is cuda_graphs._replay
        import torch._inductor.runtime.triton_heuristics as th  # imported while active: wrapped on import
        assert th.CachingAutotuner.run.__module__ == "kperf.inductor"
    finally:
        d.deactivate()
    assert (ck.__getitem__, at._bench) == before
    assert torch.cuda.CUDAGraph.replay is cuda_graphs._replay
    assert th.CachingAutotuner.run.__module__ != "kperf.inductor"
    assert not any(type(f).__module__ == "kperf.inductor" for f in sys.meta_path)


def test_recompile_builds_an_instrumented_twin_of_a_plain_compiled_kernel():
    import triton
    import triton.language as tl

    from kperf import stages

    @triton.jit
    def scale(x, y, n, B: tl.constexpr):
        i = tl.program_id(0) * B + tl.arange(0, B)
        for _ in range(2):
            tl.store(y + i, tl.load(x + i, mask=i < n) * 3, mask=i < n)
    src = triton.compiler.ASTSource(scale, {"x": "*fp32", "y": "*fp32", "n": "i32", "B": "constexpr"},
                                    {"B": 256})
    options = {"num_warps": 2, "num_stages": 2}
    plain = triton.compile(src, target=triton_compat.gpu_target(), options=options)
    stages.install()
    try:
        twin = triton_compat.recompile(plain, stages.instrumentation_mode(ProfileConfig(auto="loops")))
    finally:
        stages.uninstall()
    md, tmd = triton_compat.kernel_metadata(plain), triton_compat.kernel_metadata(twin)
    same = ("num_warps", "num_stages", "name", "target")
    assert [tmd[k] for k in same] == [md[k] for k in same]
    assert tmd["kperf"]["num_records"] == 2 and tmd["profile_scratch_size"] > 0
    assert not md.get("profile_scratch_size")
    info = KernelInfo.from_metadata(tmd["name"], tmd["hash"], tmd)
    assert info is not None and info.num_records == 2 and info.name == "scale"


def test_inductor_origin_is_read_from_the_comment_above_the_kernel(tmp_path):
    from kperf import inductor
    code = tmp_path / "output_code.py"
    # the layout of Inductor's output code (torch._inductor.codegen.wrapper: define_kernel writes the
    # metadata comment of torch._inductor.utils.get_kernel_metadata, then the kernel's definition)
    code.write_text(textwrap.dedent("""\
        # kernel path: /tmp/torchinductor_root/ab/cabc.py
        # Topologically Sorted Source Nodes: [layer_norm, gelu], Original ATen: [aten.layer_norm, aten.gelu]
        # Source node to ATen node mapping:
        #   gelu => add_1, erf
        #   layer_norm => add, mul
        # Graph fragment:
        #   %add : Tensor "f32[4, 128]" = call_function[target=torch.ops.aten.add.Tensor](args = (%a, 1))
        triton_per_fused_gelu_0 = async_compile.triton('triton_per_fused_gelu_0', '''
        import triton
        ''', device_str='cuda')

        # kernel path: /tmp/torchinductor_root/cd/ccd.py
        # Unsorted Source Nodes: [relu], Original ATen: [aten.relu]
        triton_poi_fused_relu_1 = async_compile.triton('triton_poi_fused_relu_1', '''
        ''', device_str='cuda')
        """))
    got = inductor._origin_in(str(code), "triton_per_fused_gelu_0")
    assert got == {"source_nodes": "layer_norm, gelu", "inductor_ops": "aten.layer_norm, aten.gelu"}
    assert inductor._origin_in(str(code), "triton_poi_fused_relu_1")["inductor_ops"] == "aten.relu"
    assert inductor._origin_in(str(code), "no_such_kernel") == {}
    assert inductor._origin_in(str(tmp_path / "missing.py"), "k") == {}


def test_inductor_origin_comes_from_the_output_code_when_the_kernel_module_also_names_it(tmp_path):
    """A kernel compiled apart (a worker, Inductor's cache) is also bound in its own module, whose file has
    no origin comment; the output code's is the one to read, whichever module the GC lists first."""
    import types

    from kperf import inductor
    kernel_file = tmp_path / "ckernel.py"
    kernel_file.write_text("import triton\n@triton.jit\ndef triton_poi_fused_relu_0(x):\n    pass\n")
    wrapper = tmp_path / "coutput.py"
    wrapper.write_text("# Topologically Sorted Source Nodes: [relu], Original ATen: [aten.relu]\n"
                       "triton_poi_fused_relu_0 = async_compile.triton('triton_poi_fused_relu_0', \"\"\"\n"
                       "\"\"\", device_str='cuda')\n")

    class Autotuner:  # Inductor's CachingAutotuner: the kernel's function is .fn
        fn = types.SimpleNamespace(__name__="triton_poi_fused_relu_0")
    tuner = Autotuner()
    modules = [types.ModuleType(f"m{i}") for i in range(2)]
    for mod, path in zip(modules, (kernel_file, wrapper), strict=True):
        mod.__file__, mod.triton_poi_fused_relu_0 = str(path), tuner
    assert inductor.origin(tuner) == {"launch_path": "inductor", "inductor_module": str(wrapper),
                                      "source_nodes": "relu", "inductor_ops": "aten.relu"}
    assert inductor._module_paths(tuner)[0] in (str(kernel_file), str(wrapper))


def test_a_capture_is_not_sampled_each_replay_is():
    """A launch captured into a CUDA graph runs at every replay, so sampling (every=) must not drop it at
    capture time: the capture is remembered for the graph whatever the sampling says."""
    import torch

    from kperf import cuda_graphs
    from kperf.dialect.layout import Geometry
    from kperf.dialect.scope_table import ScopeTable

    class Graph:  # what the capture wrapper remembers launches under (a torch.cuda.CUDAGraph on a GPU)
        pass
    d = Dispatcher()
    cap = Capture(sampling=coverage.Sampling(every=10))
    d.add_session(cap)
    g = Geometry(4, 2)
    d._kernels[7] = KernelInfo("k", "h", ScopeTable.from_json([]), g, "keep-first", 2)
    graph, saved = Graph(), cuda_graphs._dispatcher
    cuda_graphs._dispatcher, cuda_graphs._state.graph = d, graph
    try:
        for _ in range(2):  # the 2nd capture launch would be sampled out if sampling applied here
            d._tls.pending = torch.zeros(3 * g.cta_bytes, dtype=torch.uint8)
            d._on_launch_exit({"function": 7, "name": "k", "stream": 0})
    finally:
        cuda_graphs._state.graph, cuda_graphs._dispatcher = None, saved
    assert [cl.n_ctas for cl in cuda_graphs._launches[graph]] == [3, 3]
    assert cap.launches == [] and cap.coverage.rows() == []  # nothing ran, nothing counted yet


def test_a_jit_launch_left_out_by_sampling_runs_the_plain_build_uncaptured(monkeypatch):
    """Under every=3 a JIT launch is sampled before it runs: a kept one carries its captures to the
    launch-exit hook, a left-out one runs with the mode knob cleared (the plain build) and is not captured."""
    d = Dispatcher()
    cap = Capture(sampling=coverage.Sampling(every=3))
    d.add_session(cap)
    seen = []

    def run(self, *args, **kwargs):  # stands for JITFunction.run: what the launch would see
        seen.append((getattr(d._tls, "taken", None), getattr(d._tls, "benchmarking", False),
                     triton_compat.get_knob("compilation.instrumentation_mode")))
        return "kernel"

    class Fn:
        __name__ = "k"
    monkeypatch.setattr(launch_paths, "_dispatcher", d)
    monkeypatch.setitem(launch_paths._originals, "jit_run", run)
    with kperf.runtime.mode_override("kperf:test"):
        for _ in range(6):
            assert launch_paths._jit_run(Fn(), grid=(1,), warmup=False) == "kernel"
        launch_paths._jit_run(Fn(), grid=(1,), warmup=True)  # a warmup launches nothing: not sampled
    kept, left = seen[0], seen[1]
    assert kept == ([cap], False, "kperf:test") and left == (None, True, "")
    assert [s[1] for s in seen] == [False, True, True, False, True, True, False]
    assert dict(cap.coverage._skipped["k"]) == {coverage.SAMPLED: 4}
    assert getattr(d._tls, "taken", None) is None and not getattr(d._tls, "benchmarking", False)
    other = Capture()  # a capture that samples nothing: the launch-exit hook decides, as before
    d2 = Dispatcher()
    d2.add_session(other)
    monkeypatch.setattr(launch_paths, "_dispatcher", d2)
    seen.clear()
    launch_paths._jit_run(Fn(), grid=(1,), warmup=False)
    assert seen[0][:2] == (None, False)


def test_inductor_tuning_before_the_instrumented_build_gets_the_arguments_inductor_gives_it(monkeypatch):
    """CachingAutotuner.run takes ``stream`` apart and tunes with the other arguments (its timing runs pass
    the stream themselves): passing it on failed on the H100 with 'got multiple values for keyword argument
    stream' for a kernel with several configs under reduce-overhead."""
    from kperf import inductor

    class Config:
        found_by_coordesc = False

    class Launcher:
        config = Config()

    class Autotuner:  # the parts of Inductor's CachingAutotuner that _settle drives
        inductor_meta = {"coordinate_descent_tuning": True}

        def __init__(self):
            self.launchers, self.calls = [Launcher(), Launcher()], []

        def autotune_to_one_config(self, *args, **kwargs):
            self.calls.append(("autotune", args, kwargs, inductor._dispatcher._tls.benchmarking))
            self.launchers = self.launchers[:1]

        def coordinate_descent_tuning(self, launcher, *args, **kwargs):
            self.calls.append(("coordesc", args, kwargs, inductor._dispatcher._tls.benchmarking))
            launcher.config.found_by_coordesc = True
            return launcher
    monkeypatch.setattr(inductor, "_dispatcher", Dispatcher())
    tuner = Autotuner()
    assert inductor._settle(tuner, (1, 2), {"stream": 7, "benchmark_run": False, "extra": 3})
    assert tuner.calls == [("autotune", (1, 2), {"extra": 3}, True), ("coordesc", (1, 2), {"extra": 3}, True)]
    assert not inductor._dispatcher._tls.benchmarking


def test_every_stage_of_an_instrumented_build_tags_its_errors():
    from kperf.stages import failed_stage, instrument_stages

    def boom(src, metadata):
        raise RuntimeError("ptxas: out of registers")
    stages = {"ttir": lambda s, m: s, "ttgir": lambda s, m: s, "llir": lambda s, m: s,
              "ptx": lambda s, m: s, "cubin": boom}
    instrument_stages(stages, ProfileConfig())
    with pytest.raises(RuntimeError) as err:
        stages["cubin"]("ptx", {})
    assert failed_stage(err.value) == "cubin"
    try:  # a wrapped error still names the stage
        try:
            stages["cubin"]("ptx", {})
        except RuntimeError as inner:
            raise ValueError("wrapped") from inner
    except ValueError as outer:
        assert failed_stage(outer) == "cubin"
    assert failed_stage(RuntimeError("the program's own")) is None


def test_a_session_launch_whose_instrumented_build_fails_runs_plain_once_counted(monkeypatch):
    """In a session over someone's program, a kernel kperf cannot build never breaks the program: the
    launch (which never ran) runs the plain build, and so do the kernel's later launches, each counted
    with the reason; a kperf.profile kernel's own build error is raised."""
    from kperf.stages import FAILED_STAGE
    d = Dispatcher()
    cap = Capture()
    d.add_session(cap)
    calls = []

    def run(self, *args, **kwargs):
        mode = triton_compat.get_knob("compilation.instrumentation_mode")
        calls.append(mode)
        if mode:
            err = RuntimeError("ptxas: too many resources requested for launch")
            setattr(err, FAILED_STAGE, "cubin")
            raise err
        return "plain kernel"

    class Fn:
        __name__ = "k"
    fn = Fn()
    monkeypatch.setattr(launch_paths, "_dispatcher", d)
    monkeypatch.setitem(launch_paths._originals, "jit_run", run)
    with kperf.runtime.mode_override("kperf:test"):
        with pytest.warns(UserWarning, match="k runs uninstrumented: its cubin stage failed"):
            assert launch_paths._jit_run(fn, grid=(1,), warmup=False) == "plain kernel"
        assert launch_paths._jit_run(fn, grid=(1,), warmup=False) == "plain kernel"
        assert calls == ["kperf:test", "", ""]  # the failing build is not tried again
        [(name, launched, profiled, why)] = cap.coverage.rows()
        assert (name, launched, profiled) == ("k", 2, 0) and "its cubin stage failed" in why
        d.push_kernel_capture(Capture())  # a kperf.profile kernel: its error is the answer
        other = Fn()
        with pytest.raises(RuntimeError, match="too many resources"):
            launch_paths._jit_run(other, grid=(1,), warmup=False)
        d.pop_kernel_capture()
        plain = RuntimeError("the program's own error")
        monkeypatch.setitem(launch_paths._originals, "jit_run", lambda *a, **k: (_ for _ in ()).throw(plain))
        with pytest.raises(RuntimeError, match="program's own"):
            launch_paths._jit_run(Fn(), grid=(1,), warmup=False)


def test_the_host_cost_benchmark_times_both_parts_and_leaves_the_process_as_it_was(capsys):
    from bench import launch_host_cost
    from kperf import copy_out, launch_paths
    held, run = copy_out.HELD, launch_paths._originals.get("jit_run")
    assert launch_host_cost.main(["--calls", "300"]) == 0
    assert "us of kperf's Python per profiled launch" in capsys.readouterr().out
    assert copy_out.HELD is held and launch_paths._originals.get("jit_run") is run


def test_inductor_launches_kperf_runs_plain_are_counted_once(monkeypatch):
    """A launch left out by sampling, or whose instrumented build failed, runs Inductor's plain launcher:
    counted where kperf decided, not a second time (as "compiled plain") by the launch-exit hook."""
    import types

    from kperf import inductor
    d = Dispatcher()
    cap = Capture(sampling=coverage.Sampling(every=2))
    cap.config = ProfileConfig(auto="kernel")
    d.add_session(cap)
    d._kernels[5] = coverage.PLAIN  # what the hook knows of Inductor's plain build

    def plain_run(self, *args, **kwargs):  # Inductor's CachingAutotuner.run: the plain kernel launches
        d._on_launch_exit({"function": 5, "name": "triton_poi_k"})
        return "ran"
    monkeypatch.setattr(inductor, "_dispatcher", d)
    monkeypatch.setattr(inductor, "_original_run", plain_run)
    monkeypatch.setattr(inductor, "_instrumented_launcher", lambda *a: "could not be instrumented (test)")
    tuner = types.SimpleNamespace(fn=types.SimpleNamespace(__name__="triton_poi_k"))
    assert [inductor._run(tuner, 1, stream=0) for _ in range(2)] == ["ran", "ran"]
    [(name, launched, profiled, why)] = cap.coverage.rows()
    assert (name, launched, profiled) == ("triton_poi_k", 2, 0)
    assert "could not be instrumented (test)" in why and "compiled plain" not in why


def test_replays_of_a_graph_captured_while_kperf_was_not_profiling_are_counted_with_why(monkeypatch):
    """A graph captured before the session holds plain kernels: its replays inside the session cannot be
    profiled, and the session says so (coverage row, and decoded()'s error) instead of an empty profile."""
    from kperf import cuda_graphs
    from kperf.dialect.errors import KperfError

    class Graph:
        pass
    replayed = []
    monkeypatch.setitem(cuda_graphs._originals, "capture_begin", lambda self, *a, **k: None)
    monkeypatch.setitem(cuda_graphs._originals, "replay", lambda self, *a, **k: replayed.append(self))
    d = Dispatcher()
    monkeypatch.setattr(cuda_graphs, "_dispatcher", d)
    before, during = Graph(), Graph()
    cuda_graphs._capture_begin(before)  # no session yet: kperf is not profiling
    cuda_graphs._state.graph = None
    s = kperf.session()
    monkeypatch.setattr(d, "_active", 1)
    d.add_session(s)
    cuda_graphs._capture_begin(during)  # captured while profiling, with nothing of kperf's in it
    cuda_graphs._state.graph = None
    for g in (before, before, during, Graph()):  # the last: captured before import kperf
        cuda_graphs._replay(g)
    assert len(replayed) == 4
    rows = s.coverage.rows()
    assert rows == [(cuda_graphs.UNWATCHED_GRAPH, 3, 0, f"3 {cuda_graphs.UNWATCHED_REASON}")]
    with pytest.raises(KperfError, match="profiled no launch(.|\n)*captured while kperf was not profiling"):
        s.decoded()
