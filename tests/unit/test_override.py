"""TTGIR override workflow on CPU: dump -> insert -> compile with kperf's lowering (sm_90 target)."""

import pathlib

import pytest
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from kperf import override, stages
from kperf.compile_api import default_attrs
from kperf.dialect.errors import KperfError
from kperf.dialect.options import ProfileConfig
from kperf.examples import attention as A
from kperf.examples import matmul as mm

TARGET = GPUTarget("cuda", 90, 32)


@pytest.fixture(autouse=True)
def _fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(triton.knobs.cache, "dir", str(tmp_path / "cache"))


def _compile(fn, sig, consts, options, mode=""):
    stages.install()
    return triton.compile(ASTSource(fn, sig, consts, default_attrs(sig, fn)), target=TARGET,
                          options={**options, "instrumentation_mode": mode})


def _dump(tmp_path, fn, sig, consts, *option_sets):
    out = tmp_path / "dump"
    with override.dumped(out) as written:
        for opts in option_sets:
            _compile(fn, sig, consts, opts)
    return out, written


def _run(folder, fn, sig, consts, options, **cfg):
    with override.applied(folder, ProfileConfig(**cfg)) as config:
        return _compile(fn, sig, consts, options, stages.instrumentation_mode(config)), config


@pytest.mark.parametrize("example", [pytest.param("gemm", marks=pytest.mark.compile_side), "attention"])
def test_round_trip_dump_insert_compile(tmp_path, example):
    fn, sig, consts, opts, sel = {
        "gemm": (mm.matmul_kernel, mm.SIGNATURE, mm.CONSTEXPRS, mm.COMPILE_OPTIONS, "mma,loops"),
        "attention": (A.attn_fwd_kernel, A.SIGNATURE, A.CONSTEXPRS, A.COMPILE_OPTIONS, "mma,tma"),
    }[example]
    folder, written = _dump(tmp_path, fn, sig, consts, opts)
    assert len(written) == 1
    path = pathlib.Path(written[0])
    assert path.name == f"{fn.__name__}.ttgir" and path.parent.parent == folder
    assert override.module_attrs(path.read_text())[override.OPTIONS_ATTR].startswith(
        f"num_warps={opts['num_warps']},num_stages={opts['num_stages']}")
    done = override.insert(folder, sel, kernels=fn.__name__)
    assert done and done[0][1] > 0
    text = path.read_text()
    assert 'kperf.record start "' in text  # readable record lines, not carriers
    k, config = _run(folder, fn, sig, consts, opts)
    info = k.metadata.kperf
    assert info["num_records"] == done[0][1] + (6 if example == "gemm" else 0)  # gemm also has source scopes
    assert info["override_file"] == str(path)
    assert "kp_base" in k.asm["ptx"] and k.metadata.profile_scratch_size > 0
    if example == "attention":
        assert len(info["warp_roles"]) == 12
        assert any(n.startswith("tma.wait") for n in (s["name"] for s in info["scopes"]))


@pytest.mark.compile_side
def test_proton_syntax_file_compiles(tmp_path):
    folder, written = _dump(tmp_path, mm.matmul_kernel, mm.SIGNATURE, mm.CONSTEXPRS, mm.COMPILE_OPTIONS)
    path = pathlib.Path(written[0])
    lines = path.read_text().splitlines()
    # a file written for Proton: records around the tt.return's predecessor ... and around the loop's dot
    dot = next(i for i, line in enumerate(lines) if "ttng.warp_group_dot " in line)
    indent = lines[dot][:len(lines[dot]) - len(lines[dot].lstrip())]
    lines[dot:dot + 1] = [f'{indent}proton.record start "dot"', lines[dot],
                          f'{indent}proton.record end "dot"']
    path.write_text("\n".join(lines) + "\n")
    k, _ = _run(folder, mm.matmul_kernel, mm.SIGNATURE, mm.CONSTEXPRS, mm.COMPILE_OPTIONS)
    names = [s["name"] for s in k.metadata.kperf["scopes"]]
    assert "dot" in names
    assert k.asm["ptx"].count("// kperf record #") == k.metadata.kperf["num_records"]


def _override_error(tmp_path, line: str):
    """Dump the GEMM's TTGIR, insert ``line`` as the first line of its K loop, compile with the override:
    the KperfError raised, the override file and the 0-based index of the inserted line."""
    folder, written = _dump(tmp_path, mm.matmul_kernel, mm.SIGNATURE, mm.CONSTEXPRS, mm.COMPILE_OPTIONS)
    path = pathlib.Path(written[0])
    lines = path.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if "scf.for" in line) + 1
    lines.insert(at, line)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(KperfError) as e:
        _run(folder, mm.matmul_kernel, mm.SIGNATURE, mm.CONSTEXPRS, mm.COMPILE_OPTIONS)
    return e.value, path, at


def test_malformed_line_names_file_and_line(tmp_path):
    err, path, at = _override_error(tmp_path, '      kperf.record begin "x"')
    msg = str(err)
    assert f"{path}:{at + 1}" in msg and "'begin'" in msg and "fix:" in msg


def test_unbalanced_records_name_the_open_scope(tmp_path):
    err, _, _ = _override_error(tmp_path, '      kperf.record start "orphan"')
    assert '"orphan"' in str(err) and "never closed" in str(err)


def test_two_configs_of_one_kernel_share_a_folder(tmp_path):
    o4 = {"num_warps": 4, "num_stages": 3}
    o8 = {"num_warps": 8, "num_stages": 3}
    folder, written = _dump(tmp_path, mm.matmul_kernel, mm.SIGNATURE, mm.CONSTEXPRS, o4, o8)
    paths = sorted(set(map(pathlib.Path, written)))
    assert len(paths) == 2 and paths[0].parent == paths[1].parent  # one hash folder
    assert {p.name for p in paths} == {"matmul_kernel.ttgir", "matmul_kernel.1.ttgir"}
    # records in the num_warps=8 file only: the 4-warp compile keeps the source scopes, the 8-warp one adds
    p8 = next(p for p in paths if "num_warps=8" in p.read_text().splitlines()[
        next(i for i, line in enumerate(p.read_text().splitlines()) if line.startswith("module"))])
    override.insert(folder, "mma", kernels="matmul")  # both files
    k4, _ = _run(folder, mm.matmul_kernel, mm.SIGNATURE, mm.CONSTEXPRS, o4)
    k8, _ = _run(folder, mm.matmul_kernel, mm.SIGNATURE, mm.CONSTEXPRS, o8)
    assert k4.metadata.kperf["override_file"] != k8.metadata.kperf["override_file"]
    assert k8.metadata.kperf["override_file"] == str(p8)
    assert k4.metadata.num_warps == 4 and k8.metadata.num_warps == 8


def test_insert_errors(tmp_path):
    folder, _ = _dump(tmp_path, mm.matmul_kernel, mm.SIGNATURE, mm.CONSTEXPRS, mm.COMPILE_OPTIONS)
    with pytest.raises(KperfError) as e:
        override.insert(folder, "mma,bogus")
    assert "bogus" in str(e.value) and "ttng.wait_barrier" in str(e.value)
    with pytest.raises(KperfError) as e:
        override.insert(folder, "mma", kernels="no_such_kernel")
    assert "kperf dump" in str(e.value)


def test_cli_insert_writes_a_new_folder(tmp_path):
    from kperf.cli import main
    folder, written = _dump(tmp_path, mm.matmul_kernel, mm.SIGNATURE, mm.CONSTEXPRS, mm.COMPILE_OPTIONS)
    before = pathlib.Path(written[0]).read_text()
    out = tmp_path / "inserted"
    assert main(["insert", str(folder), "--auto", "tma,mma", "--out", str(out)]) == 0
    assert pathlib.Path(written[0]).read_text() == before
    new = list(out.glob("*/matmul_kernel.ttgir"))
    assert len(new) == 1 and "kperf.record start" in new[0].read_text()
    assert main(["insert", str(folder), "--auto", "wgmma"]) == 2  # unknown selector: error, exit code 2


def test_override_state_is_the_hooks_and_is_put_back(tmp_path):
    """The folders in use live in the stage hook's ``Overrides``; every context manager restores it."""
    before = stages.HOOK.overrides
    folder = tmp_path / "ovr"
    with override.dumped(folder) as written:
        assert stages.HOOK.overrides.dump_dir == str(folder) and stages.HOOK.overrides.written is written
        with override.applied(folder, ProfileConfig()) as cfg:
            assert stages.HOOK.overrides.folder == str(folder)
            assert stages.HOOK.overrides.dump_dir == str(folder)  # nested: both apply
            assert cfg.override == override.digest(folder)
            assert override.active_dir(cfg.override) == str(folder)
        assert stages.HOOK.overrides.folder is None
    assert stages.HOOK.overrides == before
    digest = override.activate(folder)
    try:
        assert override.active_dir(digest) == str(folder)
    finally:
        override.deactivate()
    assert stages.HOOK.overrides == before
