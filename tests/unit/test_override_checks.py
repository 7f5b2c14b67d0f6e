"""Override files are never passed over or cut short in silence (issue 18), on CPU (sm_90 target).

A file in another hash folder or for another configuration warns when a kernel of its name compiles, and
unused files are named when the run ends; a file for a renamed kernel or another argument list, text after
a record, an empty or non-UTF-8 file, and TTGIR that does not parse are errors naming file:line and the
fix; records in the syntax of older Proton releases are read.
"""

import pathlib
import warnings

import pytest
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from kperf import override, stages
from kperf.compile_api import default_attrs
from kperf.dialect.errors import KperfError
from kperf.dialect.options import ProfileConfig
from kperf.examples import matmul as mm

TARGET = GPUTarget("cuda", 90, 32)
O4 = {"num_warps": 4, "num_stages": 3}
O8 = {"num_warps": 8, "num_stages": 3}


@pytest.fixture(autouse=True)
def _fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(triton.knobs.cache, "dir", str(tmp_path / "cache"))


def _compile(options, mode=""):
    stages.install()
    sig = mm.SIGNATURE
    src = ASTSource(mm.matmul_kernel, sig, mm.CONSTEXPRS, default_attrs(sig, mm.matmul_kernel))
    return triton.compile(src, target=TARGET, options={**options, "instrumentation_mode": mode})


def _dump(tmp_path, *option_sets):
    folder = tmp_path / "dump"
    with override.dumped(folder) as written:
        for opts in option_sets or (mm.COMPILE_OPTIONS,):
            _compile(opts)
    return folder, [pathlib.Path(p) for p in written]


def _run(folder, options=mm.COMPILE_OPTIONS):
    """Compile the GEMM with ``folder``'s files: (kernel, the applied context, warning texts)."""
    ctx = override.applied(folder, ProfileConfig())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ctx as config:
            k = _compile(options, stages.instrumentation_mode(config))
    return k, ctx, [str(w.message) for w in caught]


def _edit(path: pathlib.Path, fn) -> None:
    lines = path.read_text().splitlines()
    fn(lines)
    path.write_text("\n".join(lines) + "\n")


def _in_loop(path: pathlib.Path, *new: str) -> int:
    """Insert ``new`` lines as the first lines of the K loop; the 1-based line number of the first."""
    lines = path.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if "scf.for" in line) + 1
    _edit(path, lambda ls: ls.__setitem__(slice(at, at), list(new)))
    return at + 1


# -- 1. files passed over: other hash folder, other configuration, never used ---------------------------

def test_file_in_another_hash_folder_warns_and_is_reported_unused(tmp_path):
    folder, [path] = _dump(tmp_path)
    moved = folder / "OTHERHASH" / path.name
    moved.parent.mkdir()
    path.rename(moved)
    k, ctx, said = _run(folder)
    assert "override_file" not in k.metadata.kperf  # compiled from source
    passed_over = [m for m in said if "another hash folder" in m]
    assert len(passed_over) == 1
    said_once = passed_over[0]
    assert str(moved) in said_once and str(path.parent) in said_once and "kperf dump" in said_once
    assert ctx.unused == [moved]
    assert any("not used by any kernel" in m and str(moved) in m for m in said)


def test_file_for_another_configuration_warns(tmp_path):
    folder, [p4] = _dump(tmp_path, O4)
    k, ctx, said = _run(folder, O8)
    assert k.metadata.num_warps == 8 and "override_file" not in k.metadata.kperf
    other = [m for m in said if "other configurations" in m]
    assert len(other) == 1
    assert str(p4) in other[0] and "num_warps=4" in other[0] and "num_warps=8" in other[0]
    assert "kperf.options" in other[0] and "kperf dump" in other[0]
    assert ctx.unused == [p4]


def test_used_files_are_not_reported_also_from_tritons_cache(tmp_path):
    folder, written = _dump(tmp_path, O4, O8)
    stray = folder / "matmul_kernel.ttgir"  # not in a DIR/<hash>/ folder: never read
    stray.write_text(written[0].read_text())
    for _ in range(2):  # the second compile is a cache hit: no stage runs, the listener accounts for it
        k, ctx, said = _run(folder, O4)
        assert k.metadata.kperf["override_file"] == str(written[0])
        assert ctx.unused == [written[1], stray]
        assert not [m for m in said if "other configurations" in m or "hash folder than" in m]
    assert triton.knobs.compilation.listener is None  # put back


def test_cache_hit_still_warns_about_a_passed_over_file(tmp_path):
    folder, [p4] = _dump(tmp_path, O4)
    for _ in range(2):
        _, ctx, said = _run(folder, O8)
        assert any("other configurations" in m and str(p4) in m for m in said)
        assert ctx.unused == [p4]


# -- 2. the file's kernel must be the kernel being compiled ---------------------------------------------

def _signature_error(tmp_path, old: str, new: str) -> tuple[str, pathlib.Path]:
    folder, [path] = _dump(tmp_path)
    _edit(path, lambda ls: [ls.__setitem__(i, ln.replace(old, new, 1))
                            for i, ln in enumerate(ls) if "tt.func public" in ln])
    with pytest.raises(KperfError) as e:
        _run(folder)
    return str(e.value), path


def test_renamed_kernel_is_refused(tmp_path):
    msg, path = _signature_error(tmp_path, "@matmul_kernel(", "@matmul_kernel_v2(")
    assert f"{path}:17:" in msg
    assert "expected @matmul_kernel (the kernel being compiled), found @matmul_kernel_v2" in msg
    assert "kperf dump" in msg


def test_lost_argument_is_refused_with_both_lists(tmp_path):
    msg, _ = _signature_error(tmp_path, ", %stride_cm: i32 {tt.divisibility = 16 : i32} "
                                        'loc("stride_cm"(#loc))', "")
    assert "takes 8 arguments" in msg and "being compiled 9" in msg
    assert "expected (!tt.ptr<f16>, !tt.ptr<f16>, !tt.ptr<f16>, i32, i32, i32, i32, i32, i32)" in msg
    assert "found (!tt.ptr<f16>, !tt.ptr<f16>, !tt.ptr<f16>, i32, i32, i32, i32, i32)" in msg


def test_changed_argument_type_is_refused(tmp_path):
    msg, _ = _signature_error(tmp_path, "%K: i32", "%K: i64")
    assert "argument 5: expected i32, found i64" in msg and "fix:" in msg


# -- 3. nothing after a record on its line but loc(...) ------------------------------------------------

def test_text_after_a_record_is_an_error(tmp_path):
    folder, [path] = _dump(tmp_path)
    line = _in_loop(path, '      kperf.record start "x" garbage', '      kperf.record end "x"')
    with pytest.raises(KperfError) as e:
        _run(folder)
    assert f"{path}:{line}" in str(e.value) and "'garbage'" in str(e.value) and "fix:" in str(e.value)


# -- 4. empty, blank and non-UTF-8 files -----------------------------------------------------------------

@pytest.mark.parametrize("content, said", [(b"", "is empty"), (b"  \n\t\n", "only whitespace"),
                                           (b"module {\xff}\n", "not UTF-8 text (byte 0xff at offset 8)")])
def test_unreadable_file_is_an_error_for_insert_and_load(tmp_path, content, said):
    folder, [path, other] = _dump(tmp_path, O4, O8)
    before = other.read_text()
    path.write_bytes(content)
    with pytest.raises(KperfError) as e:
        override.insert(folder, "mma")
    assert str(path) in str(e.value) and said in str(e.value) and "kperf dump" in str(e.value)
    assert path.read_bytes() == content and other.read_text() == before  # nothing rewritten
    from kperf.cli import main
    assert main(["insert", str(folder), "--auto", "mma"]) == 2
    assert path.read_bytes() == content and other.read_text() == before
    with pytest.raises(KperfError) as e:
        _run(folder, O4)
    assert str(path) in str(e.value) and said in str(e.value)


# -- 5. records in the syntax of older Proton releases ------------------------------------------------

def test_older_proton_records_are_read(tmp_path):
    folder, [path] = _dump(tmp_path)
    _in_loop(path, '      tt.proton_record <0, "start", "cycle", "warpgroup">',
             "      proton.record() {isStart = true, regionId = 1 : i32}",
             "      proton.record() {isStart = false, regionId = 1 : i32}",
             '      tt.proton_record <0, "end", "cycle", "warpgroup">')
    k, ctx, _ = _run(folder)
    info = k.metadata.kperf
    assert info["override_file"] == str(path) and ctx.unused == []
    scopes = {s["name"]: s for s in info["scopes"]}
    assert set(scopes) >= {"region 0", "region 1"} and info["num_records"] == 4 + 6  # + the source's scopes
    assert scopes["region 1"]["parent"] == scopes["region 0"]["id"]
    assert k.asm["ptx"].count("// kperf record #") == info["num_records"]


def test_insert_rewrites_older_proton_records_in_the_current_syntax(tmp_path):
    folder, [path] = _dump(tmp_path)
    _in_loop(path, "      proton.record() {isStart = true, regionId = 2 : i32}",
             "      proton.record() {isStart = false, regionId = 2 : i32}")
    override.insert(folder, "mma")
    text = path.read_text()
    assert 'kperf.record start "region 2"' in text and "isStart" not in text


# -- 6. TTGIR that does not parse: file:line, the line, the fix --------------------------------------

def test_syntax_error_names_the_files_line(tmp_path):
    folder, [path] = _dump(tmp_path)
    line = _in_loop(path, '      kperf.record start "x"', "      %bogus = arith.nosuchop : i32",
                    '      kperf.record end "x"') + 1
    with pytest.raises(KperfError) as e:
        _run(folder)
    msg = str(e.value)
    assert msg.startswith(f"{path}:{line}: does not parse as TTGIR") and "arith.nosuchop" in msg
    assert "kperf_" not in msg and "fix:" in msg  # no temporary file named
    with pytest.raises(KperfError) as e:
        override.insert(folder, "mma")
    assert str(e.value).startswith(f"{path}:{line}:")


def test_verifier_error_names_the_files_line(tmp_path):
    """A record after ``tt.return``: MLIR's verifier names the op's source loc, kperf the file's line."""
    folder, [path] = _dump(tmp_path)
    lines = path.read_text().splitlines()
    ret = next(i for i, ln in enumerate(lines) if "tt.return" in ln)
    _edit(path, lambda ls: ls.__setitem__(slice(ret + 1, ret + 1), ['    kperf.record start "late"',
                                                                    '    kperf.record end "late"']))
    with pytest.raises(KperfError) as e:
        _run(folder)
    msg = str(e.value)
    assert msg.startswith(f"{path}:{ret + 1}:") and "must be the last operation" in msg
    assert "the line: tt.return" in msg and "terminator" in msg
