"""Fuzzing override files: TTGIR text with valid and malformed record lines, through every text-level
entry point that needs no compile.

Each case builds a module (:func:`_module`) from a small TTGIR kernel with a loop and a ``noinline``
helper, inserting record lines drawn from a grammar of valid and malformed forms (:func:`_record_line`:
``kperf.record`` / ``proton.record`` / the older Proton forms, unknown kinds, unquoted, unterminated or
escaped names, NUL and newline escapes, trailing text, unbalanced records), then perhaps damages the
text (a line dropped, duplicated or cut, a brace or quote added, a NUL or a stray character).  It runs:

- ``ttgir_text.scan``, ``kernel_signatures``, ``locations_to_lines``, ``override_folder.module_attrs`` /
  ``stamp_options`` / ``check_signature`` (against the undamaged kernel), and the ``kperf-materialize``
  pass from the registry (``kperf.passes.get_pass``): each must succeed or raise a ``KperfError`` with a
  message; the pass's output must scan again to carriers only, one per record, every one numbered from
  the scope table;
- ``override_folder.read_ttgir`` on the text's bytes, or on hostile bytes (empty, blanks, non-UTF-8,
  a byte-order mark, NULs): the text itself or a ``KperfError`` naming the file.
"""

from __future__ import annotations

import os
import pathlib
import random
import tempfile

from fuzz_support import Outcomes, clear_error, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from kperf.dialect.errors import KperfError
from kperf.dialect.ttgir_text import kernel_signatures, locations_to_lines, scan
from kperf.override_folder import check_signature, module_attrs, read_ttgir, stamp_options
from kperf.passes import get_pass

CASES = 2400
READ_CASES = 300
CARRIER = ('%c{n} = tt.elementwise_inline_asm "// kperf.record {kind} \\22{name}\\22\\0A\\09mov.u32 $0, 0;" '
           '{{constraints = "=r", packed_element = 1 : i32, pure = false}} -> i32')
HEAD = ['#loc3 = loc("/src/kern.py":12:8)', '#loc4 = loc("/src/kern.py":14:2)',
        'module attributes {"ttg.num-warps" = 4 : i32} {']
HELPER = ["  tt.func private @helper(%x: i32) -> i32 attributes {noinline = true} {", "@HELPER",
          "    tt.return %x : i32", "  }"]
KERNEL = ["  tt.func public @kern(%arg0: !tt.ptr<f32>, %arg1: i32 loc(#loc4)) "
          "attributes {noinline = false} {",
          "@BODY", "    scf.for %i = %c0 to %c4 step %c1 : i32 {", "@LOOP", "    }", "@BODY",
          "    tt.return", "  }", "}"]
KINDS = ["start", "end", "start", "end", "begin", "START", "", "start end"]
NAMES = ['"load"', '"mma"', '"a loc(b)"', '"é ü"', '""', "load", '"unterminated', '"a\\22b"', '"nl\\0Ax"',
         '"nul\\00x"', '"tab\\09"', '"\\"', '"bad\\zz"', '"x" "y"', '"{"', '"}"', '"%0"']
TAILS = ["", "", "", " loc(#loc3)", " loc(#loc3", " loc(#nowhere)", " garbage", " // note", " {x = 1}",
         ' "second"', " loc(#loc3) extra", " loc()", ")"]
LEGACY = ["proton.record() {{isStart = {b}, regionId = {r} : i32}}", "proton.record() {{isStart = {b}}}",
          "proton.record() {{isStart = {b}, regionId = {r} : i32, metric = \"cycle\"}} loc(#loc3)",
          "proton.record() {{isStart = maybe, regionId = {r} : i32}}", "proton.record() {{region = {r}}}",
          'tt.proton_record <{r}, "{k}", "cycle", "warpgroup">', 'tt.proton_record <{r}, "{k}">',
          "tt.proton_record <x>", "tt.proton_record", 'tt.proton_record <{r}, "{k}", "cycle"',
          '"proton.record"() <{{isStart = true, name = "x"}}> : () -> ()', "proton.record start %0",
          "proton.record()", "proton.record(", "kperf.record", "kperf.record start"]


def _record_line(rng: random.Random, n: int) -> str:
    """One record line: mostly well-formed, often not."""
    r = rng.random()
    if r < 0.15:
        return rng.choice(LEGACY).format(b=rng.choice(("true", "false")), r=rng.choice((0, 1, 7, 99)),
                                         k=rng.choice(("start", "end", "begin")))
    if r < 0.25:
        return CARRIER.format(n=n, kind=rng.choice(KINDS), name=rng.choice(("load", "mma", "x\\5Cy", "")))
    op = rng.choice(("kperf.record", "kperf.record", "proton.record", "kperf.recordx"))
    return f"{op} {rng.choice(KINDS)} {rng.choice(NAMES)}{rng.choice(TAILS)}"


def _balanced_pair(rng: random.Random) -> list[str]:
    name = rng.choice(('"load"', '"mma"', '"a loc(b)"', '"é ü"'))
    op = rng.choice(("kperf.record", "proton.record"))
    return [f"{op} start {name}", f"{op} end {name}"]


def _module(rng: random.Random) -> str:
    """The kernel with record lines at its marks, maybe damaged (module docstring)."""
    lines = list(HEAD)
    n = 0
    for line in HELPER + KERNEL:
        if not line.startswith("@"):
            lines.append(line)
            continue
        indent = "      " if line == "@LOOP" else "    "
        if line == "@HELPER" and rng.random() > 0.1:
            continue
        records: list[str] = []
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            if rng.random() < 0.5:
                records += _balanced_pair(rng)
            else:
                records.append(_record_line(rng, n))
            n += 1
        lines += [indent + r for r in records]
    if rng.random() < 0.4:
        _damage(rng, lines)
    return "\n".join(lines) + rng.choice(("\n", "", "\n\n", "\r\n"))


def _damage(rng: random.Random, lines: list[str]) -> None:
    i = rng.randrange(len(lines))
    kind = rng.choice(("drop", "dup", "cut", "brace", "close", "quote", "nul", "char", "crlf", "empty"))
    if kind == "drop":
        del lines[i]
    elif kind == "dup":
        lines.insert(i, lines[i])
    elif kind == "cut":
        lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
    elif kind == "brace":
        lines.insert(i, "    {")
    elif kind == "close":
        lines.insert(i, "  }")
    elif kind == "quote":
        lines[i] += ' "'
    elif kind == "nul":
        lines[i] += "\x00"
    elif kind == "char":
        j = rng.randrange(len(lines[i]) + 1)
        stray = rng.choice(("\\", "#", "^bb1:", "%", "\u2028", "\x0b", "\x1c"))
        lines[i] = lines[i][:j] + stray + lines[i][j:]
    elif kind == "crlf":
        lines[i] += "\r"
    else:
        lines[:] = [""] if rng.random() < 0.5 else ["   "]


# --------------------------------------------------------------------------- outcomes

_CLEAN = "\n".join(HEAD + [x for x in HELPER + KERNEL if not x.startswith("@")]) + "\n"


def _error(fn, *args) -> str | None:
    """Run ``fn``; None when it succeeds, else the outcome name of its KperfError (others raise)."""
    try:
        fn(*args)
    except KperfError as err:
        return clear_error(err)
    return None


def _materialize_outcome(text: str) -> str:
    try:
        result = get_pass("kperf-materialize").apply(text, "kern.ttgir")
    except KperfError as err:
        return clear_error(err)
    again = scan(result.text, "out.ttgir")
    assert len(again.sites) == result.num_records, "the pass's output holds another number of records"
    names = set(result.table.names())
    for site in again.sites:
        assert not site.textual and site.op.scope_id is not None, f"line {site.lineno} not materialized"
        assert site.op.name in names and result.table.id_of(site.op.name) == site.op.scope_id
    return f"materialized {min(result.num_records, 4)}{'+' if result.num_records > 4 else ''} records"


def outcome(text: str) -> str:
    """The materialize pass's outcome; the other entry points must succeed or raise a KperfError too."""
    for fn, args in ((scan, (text, "kern.ttgir")), (kernel_signatures, (text, "kern.ttgir")),
                     (locations_to_lines, (text, "kern.py")), (module_attrs, (text,)),
                     (stamp_options, (text, "num_warps=4,num_stages=3,num_ctas=1")),
                     (check_signature, (pathlib.Path("kern.ttgir"), text, _CLEAN))):
        _error(fn, *args)
    return _materialize_outcome(text)


def test_fuzz_override_text_is_an_error_or_a_valid_module():
    tally = Outcomes()
    assert _materialize_outcome(_CLEAN) == "materialized 0 records"

    @fuzz_settings(CASES // 3)
    @given(st.integers(0, 2**32 - 1))
    def case(seed):
        rng = random.Random(seed)
        for _ in range(3):
            text = _module(rng)
            tally.run(outcome, text, describe=repr(text))

    case()
    tally.check("override text", CASES * 9 // 10,
                must_see=("error+fix", "materialized 2 records", "materialized 4+ records"))


HOSTILE_BYTES = [b"", b" ", b"\n\n\t ", b"\xff\xfe", b"\xef\xbb\xbf", b"\x00" * 4, b"\xc3\x28",
                 b"\xed\xa0\x80", b"\x80", "é".encode("latin-1"), b"\r\n"]


def _read_outcome(data: bytes, path: str) -> str:
    with open(path, "wb") as f:
        f.write(data)
    try:
        text = read_ttgir(path)
    except KperfError as err:
        return clear_error(err, names=path)
    assert text == data.decode("utf-8") and text.strip()
    return "read"


def test_fuzz_override_file_bytes_read_or_refused():
    tally = Outcomes()
    path = os.path.join(tempfile.mkdtemp(prefix="kperf-fuzz-ovr-"), "kern.ttgir")

    @fuzz_settings(READ_CASES)
    @given(st.integers(0, 2**32 - 1))
    def case(seed):
        rng = random.Random(seed)
        data = _module(rng).encode("utf-8", "surrogatepass")
        if rng.random() < 0.5:
            at = rng.randrange(len(data) + 1)
            data = data[:at] + rng.choice(HOSTILE_BYTES) + data[at:]
        if rng.random() < 0.1:
            data = rng.choice(HOSTILE_BYTES)
        tally.run(_read_outcome, data, path, describe=repr(data[:200]))

    case()
    tally.check("override file bytes", READ_CASES * 9 // 10, must_see=("read", "error+fix"))
