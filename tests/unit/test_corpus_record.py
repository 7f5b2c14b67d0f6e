"""``kperf corpus record`` and ``kperf corpus check`` on CPU: what a recording keeps, and bad input.

The recorded script compiles three kernels with ``triton.compile`` for ``GPUTarget("cuda", 90, 32)``
(as Inductor and libraries with their own kernel caches do; the JIT goes through the same call), one of
them twice: a cache hit, recorded once.  ``row_sum_helper``'s loop sits in a ``noinline`` function, where
kperf cannot place records: the corpus check reports it as such, by op.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import tarfile
import textwrap

import pytest
import triton
import triton.language as tl

from kperf import corpus, triton_compat
from kperf.cli import main
from kperf.dialect.errors import KperfError

pytestmark = pytest.mark.compile_side

SCRIPT = textwrap.dedent('''
    import sys
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource


    @triton.jit
    def add_one(x_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        tl.store(x_ptr + offs, tl.load(x_ptr + offs, mask=offs < n) + 1, mask=offs < n)


    @triton.jit
    def row_sum(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
        acc = tl.zeros((BLOCK,), tl.float32)
        for i in range(0, n, BLOCK):
            acc += tl.load(x_ptr + i + tl.arange(0, BLOCK))
        tl.store(out_ptr + tl.arange(0, BLOCK), acc)


    @triton.jit(noinline=True)
    def _sum_into(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
        acc = tl.zeros((BLOCK,), tl.float32)
        for i in range(0, n, BLOCK):
            acc += tl.load(x_ptr + i + tl.arange(0, BLOCK))
        tl.store(out_ptr + tl.arange(0, BLOCK), acc)


    @triton.jit
    def row_sum_helper(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
        _sum_into(x_ptr, out_ptr, n, BLOCK)


    TARGET = GPUTarget("cuda", 90, 32)
    ALIGNED = {(0,): [["tt.divisibility", 16]]}
    SIG = {"x_ptr": "*fp32", "out_ptr": "*fp32", "n": "i32", "BLOCK": "constexpr"}
    ONE = {"x_ptr": "*fp32", "n": "i32", "BLOCK": "constexpr"}
    triton.compile(ASTSource(add_one, ONE, {"BLOCK": 128}, ALIGNED), target=TARGET, options={"num_warps": 4})
    if sys.argv[1:] == ["--fail"]:
        raise RuntimeError("the script failed after compiling")
    for fn in (row_sum, row_sum_helper):
        triton.compile(ASTSource(fn, SIG, {"BLOCK": 128}, ALIGNED), target=TARGET, options={"num_warps": 8})
    triton.compile(ASTSource(add_one, ONE, {"BLOCK": 128}, ALIGNED), target=TARGET, options={"num_warps": 4})
''')


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("corpus_script") / "three_kernels.py"
    path.write_text(SCRIPT)
    return path


@pytest.fixture(scope="module")
def recorded(script, tmp_path_factory):
    """The corpus ``kperf corpus record OUT.tar.xz -- three_kernels.py`` wrote, and what the command said."""
    out = tmp_path_factory.mktemp("recorded") / "three.tar.xz"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["corpus", "record", str(out), "--label", "mine", "--", str(script)]) == 0
    return out, printed.getvalue()


def test_every_kernel_is_recorded_once_with_its_compile(recorded, script):
    out, said = recorded
    c = corpus.load(str(out))
    by_name = {k.name: k for k in c.kernels}
    assert sorted(by_name) == ["add_one", "row_sum", "row_sum_helper"]  # add_one's cache hit: once
    k = by_name["row_sum"]
    decorator = SCRIPT.splitlines().index("def row_sum(x_ptr, out_ptr, n, BLOCK: tl.constexpr):")  # 1-based
    assert k.label == "mine" and k.file == "three_kernels.py" and k.line == decorator
    assert k.signature == {"x_ptr": "*fp32", "out_ptr": "*fp32", "n": "i32", "BLOCK": "constexpr"}
    assert k.constexprs == {"BLOCK": 128} and k.attrs == {"x_ptr": [["tt.divisibility", 16]]}
    assert k.options["num_warps"] == 8 and k.target == {"backend": "cuda", "arch": 90, "warp_size": 32}
    assert k.triton == triton.__version__ and "extern_libs" not in k.options  # no path of this machine
    assert k.ttir.startswith("#loc") or k.ttir.startswith("module")
    assert "tt.func public @row_sum" in k.ttir and "scf.for" in k.ttir
    assert c.sources[k.source] == script.read_text()  # the module's text, once for the three kernels
    assert len(c.sources) == 1 and k.id == f"row_sum-{k.to_json()['ttir_sha256'][:12]}"
    assert "kperf: recorded 3 kernels (3 new in" in said and "4 compiles seen" in said
    assert "     3  three_kernels.py" in said


def test_an_archive_is_reproducible_and_a_folder_holds_the_same(recorded, tmp_path):
    out, _ = recorded
    c = corpus.load(str(out))
    again, folder = tmp_path / "again.tar.xz", tmp_path / "folder"
    corpus.save(c, str(again))
    corpus.save(c, str(folder))
    assert again.read_bytes() == out.read_bytes()
    with tarfile.open(out) as tar:
        names = sorted(tar.getnames())
    assert names[0] == corpus.MANIFEST and sum(n.startswith("ttir/") for n in names) == 3
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == names
    assert [k.to_json() for k in corpus.load(str(folder)).kernels] == [k.to_json() for k in c.kernels]


def test_recording_again_adds_only_new_kernels(recorded, script, tmp_path, capsys):
    out, _ = recorded
    copy = tmp_path / "c.tar.xz"
    copy.write_bytes(out.read_bytes())
    assert main(["corpus", "record", str(copy), "--", str(script)]) == 0
    assert "(0 new in" in capsys.readouterr().out
    assert len(corpus.load(str(copy)).kernels) == 3


def test_check_compiles_through_kperf_or_names_the_op_it_cannot_place(recorded):
    out, _ = recorded
    kernels = {k.name: k for k in corpus.load(str(out)).kernels}
    loops = {name: corpus.check(k, "loops") for name, k in kernels.items()}
    assert loops["row_sum"].status == "records" and loops["row_sum"].records == 2
    assert loops["row_sum"].selected == {"scf.for": 1}
    assert loops["add_one"].status == "nothing selected" and loops["add_one"].records == 0
    assert loops["row_sum_helper"].status == "cannot place"
    assert "cannot place a record around scf.for in function @" in loops["row_sum_helper"].message
    assert "_sum_into" in loops["row_sum_helper"].message
    assert {corpus.check(k, "mma,tma").status for k in kernels.values()} == {"nothing selected"}
    built = corpus.compile_kernel(kernels["row_sum"], "loops")
    assert built.cubin and "// kperf record #" in built.ptx and ".target sm_90" in built.ptx


def test_the_check_command(recorded, capsys):
    out, _ = recorded
    assert main(["corpus", "check", str(out), "--auto", "loops"]) == 0
    text = capsys.readouterr().out
    assert "3 of 3 kernels compiled with --auto loops (1 cannot place, 1 nothing selected, 1 records)" in text
    assert main(["corpus", "check", str(out), "--kernels", "nothing-matches"]) == 2
    assert "no kernel of" in capsys.readouterr().err
    assert main(["corpus", "check", str(out), "--auto", "mmaa"]) == 2
    assert "unknown auto-insertion selector 'mmaa'" in capsys.readouterr().err


def test_a_failing_script_keeps_what_it_compiled(script, tmp_path, capsys):
    out = tmp_path / "partial"
    assert main(["corpus", "record", str(out), "--", str(script), "--fail"]) == 1
    captured = capsys.readouterr()
    assert "raised RuntimeError: the script failed after compiling" in captured.err
    assert "recorded 1 kernels" in captured.out and (out / corpus.MANIFEST).is_file()
    assert [k.name for k in corpus.load(str(out)).kernels] == ["add_one"]


def test_a_broken_ttir_is_named(recorded):
    out, _ = recorded
    k = corpus.load(str(out)).kernels[0]
    k.ttir = k.ttir.replace("tt.func public", "tt.fnuc public", 1)
    with pytest.raises(KperfError) as e:
        corpus.check(k, "loops")
    assert f"could not compile corpus kernel {k.id} (mine, Triton {triton.__version__}) from its TTIR" \
        in str(e.value) and e.value.fix


@pytest.mark.parametrize("argv, said", [
    (["corpus", "record", "{file}", "--", "{script}"], "exists and is a file, not a corpus folder"),
    (["corpus", "record", "{folder}", "--", "{script}"], "is a folder with files but no corpus.json"),
    (["corpus", "record", "{tmp}/x.tar.xz"], "no program to record"),
    (["corpus", "record", "{tmp}/x", "--", "{tmp}/no_such.py"], "no script at"),
    (["corpus", "record", "{tmp}/x", "-m", "no_such_module_here"], "no module named 'no_such_module_here'"),
    (["corpus", "record", "{tmp}/x", "--label"], "--label needs a value"),
    (["corpus", "check", "{tmp}/missing.tar.xz"], "no corpus at"),
    (["corpus", "check", "{file}"], "is not a kperf corpus archive"),
])
def test_bad_input_names_the_cause_and_the_fix(argv, said, script, tmp_path, capsys):
    (tmp_path / "a_file").write_text("not a corpus")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("mine")
    values = {"file": tmp_path / "a_file", "folder": tmp_path / "folder", "script": script, "tmp": tmp_path}
    assert main([a.format(**values) for a in argv]) == 2
    err = capsys.readouterr().err
    assert said in err and "fix: " in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.tar.xz").exists()


def test_a_program_that_compiles_nothing(tmp_path, capsys):
    quiet = tmp_path / "quiet.py"
    quiet.write_text("print('no kernels here')\n")
    assert main(["corpus", "record", str(tmp_path / "out"), "--", str(quiet)]) == 1
    assert "no Triton kernel with a TTIR was compiled" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_damaged_manifest_is_named(recorded, tmp_path):
    out, _ = recorded
    folder = tmp_path / "c"
    corpus.save(corpus.load(str(out)), str(folder))
    manifest = json.loads((folder / corpus.MANIFEST).read_text())
    manifest["version"] = 99
    (folder / corpus.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(KperfError, match="is not a kperf corpus of format 1"):
        corpus.load(str(folder))


def test_the_recorder_chains_a_listener_and_puts_it_back():
    calls = []

    def theirs(**kwargs):
        calls.append(sorted(kwargs))

    with triton_compat.knobs_set({"compilation.listener": theirs}):
        with corpus.Recorder("x") as rec:
            assert triton_compat.get_knob("compilation.listener") is rec
            rec(src=None, metadata={}, metadata_group={}, times=None, cache_hit=False)
        assert triton_compat.get_knob("compilation.listener") is theirs
    assert calls == [sorted(triton_compat.LISTENER_ARGS)] and len(rec.errors) == 1  # never breaks a compile


def test_recording_makes_inductor_compile_in_this_process(monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_COMPILE_THREADS", raising=False)
    monkeypatch.setenv("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")  # the user's choice is kept
    with corpus.recording_environment():
        assert os.environ["TORCHINDUCTOR_COMPILE_THREADS"] == "1"
        assert os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] == "1"
        assert os.environ["TORCHINDUCTOR_AUTOGRAD_CACHE"] == "0"
    assert "TORCHINDUCTOR_COMPILE_THREADS" not in os.environ


@triton.jit
def _scale(x_ptr, n, FACTOR: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(x_ptr + offs, tl.load(x_ptr + offs, mask=offs < n) * FACTOR, mask=offs < n)


def test_the_python_api_records_a_block(tmp_path):
    out = tmp_path / "api"
    src = triton_compat.source_class(_scale)(_scale, {"x_ptr": "*fp16", "n": "i32", "FACTOR": "constexpr",
                                                      "BLOCK": "constexpr"}, {"FACTOR": 2.5, "BLOCK": 64}, {})
    with corpus.record(str(out), label="api") as rec:
        triton.compile(src, target=triton_compat.gpu_target(), options={"num_warps": 1})
    assert list(rec.files().values()) == [1] and list(rec.files())[0].endswith("test_corpus_record.py")
    (k,) = corpus.load(str(out)).kernels
    assert (k.name, k.label, k.options["num_warps"]) == ("_scale", "api", 1)
    assert k.constexprs == {"FACTOR": 2.5, "BLOCK": 64} and k.signature["x_ptr"] == "*fp16"
    assert corpus.check(k, "loops").status == "nothing selected"
