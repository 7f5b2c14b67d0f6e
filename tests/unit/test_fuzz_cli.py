"""Fuzzing the command line: hostile argument lists for the commands that need no GPU and compile nothing.

Each case builds an argument list (:func:`_argv`) for ``report``, ``diff``, ``export``, ``plot``,
``opt`` or ``insert`` from a vocabulary of good and bad values: saved profiles that load, damaged,
empty or missing ones, folders and text files where a profile belongs; unknown tables, units, formats
and flags; negative or non-numeric counts; malformed ``--select`` / ``--ctas`` / ``--sms`` specs and
number lists; bad regular expressions, selectors and pass pipelines; output paths that cannot be
written (under a file, or into a folder given as a file); ``--debug`` and ``--help``.  ``plot`` gets
only lists that fail before drawing (drawing takes a second).  ``kperf.cli.main(argv)`` must then:

- return 0 (``ok``);
- or return 2 with a ``kperf: error: ...`` line on stderr and no ``internal error`` (``error`` /
  ``error+fix`` when a ``fix:`` line follows);
- or exit through argparse: ``SystemExit(2)`` with a usage message (``usage``), or ``SystemExit(0)``
  after ``--help`` (``help``).

An exception out of ``main``, an ``internal error`` (exit 1) or any other exit fails the case.
``run``, ``dump``, ``compile`` and ``view`` are left out: they run scripts, compile kernels or serve.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import tempfile

import known_profiles as kp
from fuzz_support import Outcomes, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from kperf.cli import main
from kperf.tracing.saved import save_profile

CASES = 700
_FILES: dict[str, str] = {}

TTGIR = """#loc3 = loc("/src/kern.py":12:8)
module attributes {"ttg.num-warps" = 4 : i32} {
  tt.func public @kern(%arg0: !tt.ptr<f32>) attributes {noinline = false} {
    kperf.record start "load" loc(#loc3)
    kperf.record end "load"
    tt.return
  }
}
"""
PTX = (".version 8.4\n.target sm_90a\n.address_size 64\n.visible .entry k(\n\t.param .u64 k_param_0\n)\n"
       "{\n\tret;\n}\n")


def _files() -> dict[str, str]:
    """The paths the argument lists name, made once in a temporary folder."""
    if _FILES:
        return _FILES
    root = tempfile.mkdtemp(prefix="kperf-fuzz-cli-")
    f = {k: os.path.join(root, v) for k, v in {
        "good": "good.kperf", "two": "two.kperf", "flows": "flows.kperf", "damaged": "damaged.kperf",
        "empty": "empty.kperf", "text": "notes.txt", "dir": "folder", "missing": "missing.kperf",
        "ttgir": "kern.ttgir", "ptx": "kern.ptx", "binary": "blob.bin", "ovr": "ovr",
        "ovr_empty": "ovr_empty",
        "out": "out", "under_file": "notes.txt/sub/out", "weird": "we ird\u00e9'\"$(x).kperf"}.items()}
    save_profile(f["good"], [kp.vanilla()])
    save_profile(f["two"], [kp.vanilla(launch=0), kp.improved(launch=1)])
    save_profile(f["flows"], [kp.with_flows()[0]])
    with open(f["good"], "rb") as src, open(f["damaged"], "wb") as dst:
        dst.write(src.read()[:-300])
    open(f["empty"], "wb").close()
    for key, data in (("text", b"not a profile\n"), ("ttgir", TTGIR.encode()), ("ptx", PTX.encode()),
                      ("binary", b"\xff\xfe\x00\x80" * 64)):
        with open(f[key], "wb") as out:
            out.write(data)
    for key in ("dir", "ovr_empty", "out"):
        os.makedirs(f[key])
    os.makedirs(os.path.join(f["ovr"], "abc123"))
    with open(os.path.join(f["ovr"], "abc123", "kern.ttgir"), "w") as out:
        out.write(TTGIR.replace("tt.return", "tt.return %undefined : i32"))  # MLIR refuses it
    _FILES.update(f)
    return _FILES


PROFILES = ["good", "good", "two", "flows", "damaged", "empty", "text", "dir", "missing", "weird", "binary"]
SELECTS = ["all", "first-wave", "first:2", "first:0", "first:-1", "first:x", "ctas:0-1,2", "ctas:",
           "ctas:a-b", "ctas:5-1", "ctas:99999999999999999999", "sms:0,1", "sms:-1", "every:2", "every:0",
           "every:-3", "sample:2", "sample:2:7", "sample:0", "sample:x:y", "bogus", "", ":", "ctas:0-1:2",
           "first:1e3"]
INT_LISTS = ["0", "0,1", "0-2", "2-0", "", ",", "a", "1-", "-1", "0-99999999", "1,,2", "x-y", "9" * 30]
UNITS = ["ns", "us", "ms", "s", "bogus", ""]
PIPELINES = ["kperf-materialize", "kperf-lower-ptx{num-warps=8}", "kperf-lower-ptx{num-warps=x}",
             "kperf-lower-ptx{clock=bogus}", "bogus", "", ",", "kperf-materialize,kperf-materialize",
             "kperf-lower-ptx{num-warps=8", "kperf-auto-insert", "kperf-lower-ptx{}",
             "kperf-materialize{x=1}"]
JUNK = ["--bogus", "-x", "--rows", "--", "extra", "--unit=", "--debug", "--help", "\x00"]


def _path(rng: random.Random, pool: list[str]) -> str:
    return _files()[rng.choice(pool)]


def _flag(rng: random.Random, flag: str, values: list[str]) -> list[str]:
    return [flag, rng.choice(values)] if rng.random() < 0.5 else []


def _out(rng: random.Random, name: str) -> str:
    f = _files()
    return rng.choice((os.path.join(f["out"], f"{name}{rng.randrange(5)}"), f["under_file"], f["text"],
                       f["dir"], os.path.join(f["out"], f"{name}.json"),
                       os.path.join(f["out"], f"{name}.pftrace")))


def _table_flags(rng: random.Random) -> list[str]:
    return (_flag(rng, "--unit", UNITS) + _flag(rng, "--rows", ["0", "5", "-1", "x", "10000000000"])
            + (["--csv", _out(rng, "csv")] if rng.random() < 0.2 else []))


def _argv(rng: random.Random) -> list[str]:
    cmd = rng.choice(("report", "report", "diff", "export", "export", "plot", "opt", "insert"))
    if cmd == "report":
        argv = ["report", _path(rng, PROFILES), *_table_flags(rng),
                *_flag(rng, "--tables", ["scopes", "scopes,roles", "ctas", "bogus", "", ",", "scopes,,gaps"])]
    elif cmd == "diff":
        argv = ["diff", _path(rng, PROFILES), _path(rng, PROFILES), *_table_flags(rng),
                *_flag(rng, "--label-a", ["A", "", "\x1b[31m"]),
                *(["--by-kernel"] if rng.random() < 0.3 else [])]
    elif cmd == "export":
        argv = ["export", _path(rng, PROFILES),
                *_flag(rng, "--format", ["chrome", "perfetto", "csv", "bogus"]), "--out", _out(rng, "trace"),
                *_flag(rng, "--select", SELECTS), *_flag(rng, "--ctas", INT_LISTS),
                *_flag(rng, "--sms", INT_LISTS), *(["--first-wave"] if rng.random() < 0.2 else [])]
        if rng.random() < 0.9 and "--format" not in argv:
            argv[2:2] = ["--format", rng.choice(("chrome", "perfetto", "csv"))]
    elif cmd == "plot":  # only argument lists that fail before drawing
        bad = rng.choice(("profile", "ctas", "warps", "sms", "flag"))
        profile = _path(rng, ["damaged", "empty", "text", "dir", "missing"]) if bad == "profile" \
            else _files()["good"]
        argv = ["plot", profile, "--out", _out(rng, "plots")]
        if bad in ("ctas", "warps", "sms"):
            argv += [f"--{bad}", rng.choice(["a", "1-", "x-y", "1,,b", "0-a"])]
        elif bad == "flag":
            argv += rng.choice([["--format", "gif"], ["--unit", "s"], ["--launch", "x"],
                                ["--max-lanes", "1.5"]])
    elif cmd == "opt":
        argv = ["opt", "-p", rng.choice(PIPELINES),
                _path(rng, ["ttgir", "ttgir", "ptx", "ptx", "binary", "missing", "dir", "empty"])]
    else:
        argv = ["insert", _path(rng, ["ovr", "ovr_empty", "missing", "text"]),
                "--auto", rng.choice(["mma,tma", "bogus", "", ",", "mma,,tma", "loops"]),
                *_flag(rng, "--kernels", ["kern", "(", "[a-", "*", "k.*", ""]),
                *(["--out", _out(rng, "ovr")] if rng.random() < 0.5 else [])]
    if rng.random() < 0.15:
        argv.insert(rng.randrange(1, len(argv) + 1), rng.choice(JUNK))
    if rng.random() < 0.1:
        argv.insert(0, "--debug")
    return argv


def outcome(argv: list[str]) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse: a usage error (2) or --help (0)
            assert e.code in (0, 2), f"SystemExit({e.code!r}) from {argv}"
            return "help" if e.code == 0 else "usage"
    text = err.getvalue()
    if rc == 0:
        return "ok"
    assert "internal error" not in text, f"{argv}: {text[-2000:]}"
    assert rc == 2 and "kperf: error: " in text, f"{argv}: exit {rc}: {text[-2000:]}"
    return "error+fix" if "\n  fix: " in text else "error"


def test_fuzz_cli_arguments_end_in_a_clear_error_or_success():
    tally = Outcomes()

    @fuzz_settings(CASES)
    @given(st.integers(0, 2**32 - 1))
    def case(seed):
        argv = _argv(random.Random(seed))
        tally.run(outcome, argv, describe=repr(argv))

    case()
    tally.check("cli", CASES * 9 // 10, must_see=("ok", "error+fix", "usage"))
