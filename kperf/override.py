"""TTGIR override folders: dump the final TTGIR of a script's kernels, insert records, run with them.

Layout (Triton's ``TRITON_DUMP_DIR`` / ``TRITON_OVERRIDE_DIR`` layout)::

    DIR/<hash>/<kernel>.ttgir        # first configuration of the kernel seen
    DIR/<hash>/<kernel>.<k>.ttgir    # k = 1, 2, ...: further configurations

``<hash>`` is Triton's folder name for the kernel source (``_base32(src.hash())``): it covers the source,
the signature and constexprs, but not compile options, so two configurations of one kernel (say
``num_warps=4`` and ``8`` from an autotuner) share a folder.  kperf keeps them apart: every dumped
file carries a module attribute ``"kperf.options" = "num_warps=4,num_stages=2,num_ctas=1"`` and is
matched to the compile by it.  A file without that attribute (written by Triton's own dump or by
hand) is used when it is the only candidate and its ``ttg.num-warps`` matches.

Files may hold ``kperf.record start|end "name"`` lines, upstream Proton's ``proton.record`` lines and
carriers written by ``kperf insert``.  Triton applies its own overrides *after* kperf's stage hook
returns, so kperf does not use ``TRITON_KERNEL_OVERRIDE``: its ttgir stage reads the matching file,
materializes its records and compiles it.  The folder's content digest goes into
``ProfileConfig.override`` and so into Triton's cache key: an edited file recompiles, and a plain
run never gets an overridden binary (nor the reverse).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import sys

from kperf.dialect.errors import KperfError
from kperf.dialect.ttgir_text import encode_mlir_string, scan, tokenize_line

OPTIONS_ATTR = "kperf.options"
ENV_DIR = "KPERF_OVERRIDE_DIR"
SUFFIX = ".ttgir"

_dump_dir: str | None = None
_active_dir: str | None = None


# -- folder identity --------------------------------------------------------------------------------------

def digest(folder: str | os.PathLike) -> str:
    """A hash of every ``*.ttgir`` file under ``folder`` (paths and contents)."""
    root = pathlib.Path(folder)
    if not root.is_dir():
        raise KperfError(f"override folder {str(root)!r} does not exist",
                         fix="create it with `kperf dump script.py --out DIR`")
    h = hashlib.sha256()
    for f in sorted(root.glob(f"*/*{SUFFIX}")):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def activate(folder: str | os.PathLike) -> str:
    """Use ``folder`` for kperf compiles; returns its digest (put it in ``ProfileConfig(override=...)``)."""
    global _active_dir
    d = digest(folder)
    _active_dir = os.fspath(folder)
    return d


def active_dir(expected: str) -> str:
    """The override folder in use; its digest must still be ``expected`` (the cache key holds it)."""
    folder = _active_dir or os.environ.get(ENV_DIR)
    if not folder:
        raise KperfError("a kperf compile asks for TTGIR overrides but no override folder is active",
                         fix="use `kperf run --override DIR`, or call kperf.override.activate(DIR) and put "
                             "its digest in ProfileConfig(override=...)")
    if digest(folder) != expected:
        raise KperfError(f"the override files in {folder!r} changed after the run started",
                         fix="run again; every run hashes the folder anew")
    return folder


def deactivate() -> None:
    global _active_dir
    _active_dir = None


def options_tag(options) -> str:
    """The compile options that shape a kernel's TTGIR but not Triton's folder hash."""
    parts = [f"num_warps={options.num_warps}", f"num_stages={options.num_stages}",
             f"num_ctas={getattr(options, 'num_ctas', 1)}"]
    maxnreg = getattr(options, "maxnreg", None)
    if maxnreg:
        parts.append(f"maxnreg={maxnreg}")
    return ",".join(parts)


def source_key() -> tuple[str, str] | None:
    """``(folder, file name)`` Triton uses to dump/override the kernel being compiled; None outside a compile.

    Triton's stage hook is not given the source; ``triton.compiler.compile`` holds it in its frame
    (Triton 3.6): the folder is ``_base32(src.hash())`` and the file name ``src.name``, exactly as
    Triton's own dump and override managers use them.
    """
    from triton.runtime.cache import _base32
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "compile" and frame.f_globals.get("__name__") == "triton.compiler.compiler":
            src = frame.f_locals.get("src")
            if src is not None and hasattr(src, "hash"):
                return _base32(src.hash()), str(src.name)[:150]
        frame = frame.f_back
    return None


# -- reading and writing module attributes ----------------------------------------------------------------

def module_attrs(text: str) -> dict[str, str]:
    """String and integer attributes of the ``module attributes {...}`` line (tokenizer, not regexes)."""
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.lstrip().startswith("module"):
            continue
        toks = tokenize_line(line, lineno)
        out = {}
        for k in range(len(toks) - 2):
            if toks[k + 1].text == "=" and toks[k].kind in ("string", "word"):
                out[toks[k].text] = toks[k + 2].text
        return out
    return {}


def stamp_options(text: str, tag: str) -> str:
    """Add ``"kperf.options" = "<tag>"`` to the module's attributes."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("module"):
            continue
        toks = tokenize_line(line, i + 1)
        attr = f'"{OPTIONS_ATTR}" = {encode_mlir_string(tag)}'
        brace = next((t for t in toks if t.kind == "punct" and t.text == "{"), None)
        if len(toks) > 1 and toks[1].text == "attributes" and brace is not None:
            lines[i] = line[:brace.end] + attr + ", " + line[brace.end:]
        elif brace is not None:
            lines[i] = line[:brace.start] + "attributes {" + attr + "} " + line[brace.start:]
        return "\n".join(lines) + "\n"
    raise KperfError("no `module` line in the TTGIR")


# -- dump -------------------------------------------------------------------------------------------------

def start_dump(folder: str | os.PathLike) -> None:
    """Write the final TTGIR of every kernel compiled from now on into ``folder`` (see module doc)."""
    global _dump_dir
    os.makedirs(folder, exist_ok=True)
    _dump_dir = os.fspath(folder)


def stop_dump() -> None:
    global _dump_dir
    _dump_dir = None


def dumping() -> bool:
    return _dump_dir is not None


def dump_module(text: str, options, source: tuple[str, str] | None) -> str | None:
    """Write one kernel's final TTGIR into the dump folder; returns the path (None when not dumping)."""
    if _dump_dir is None or source is None:
        return None
    key, name = source
    folder = pathlib.Path(_dump_dir, key)
    folder.mkdir(parents=True, exist_ok=True)
    tag = options_tag(options)
    stamped = stamp_options(text, tag)
    for path in candidates(folder, name):
        if module_attrs(path.read_text()).get(OPTIONS_ATTR) == tag:
            path.write_text(stamped)
            if _written is not None:
                _written.append(str(path))
            return str(path)
    k = len(candidates(folder, name))
    path = folder / (f"{name}{SUFFIX}" if k == 0 else f"{name}.{k}{SUFFIX}")
    path.write_text(stamped)
    if _written is not None:
        _written.append(str(path))
    return str(path)


# -- apply ------------------------------------------------------------------------------------------------

def candidates(folder: pathlib.Path, name: str) -> list[pathlib.Path]:
    pat = re.compile(re.escape(name) + r"(\.\d+)?" + re.escape(SUFFIX))
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if pat.fullmatch(p.name)), key=lambda p: (len(p.name), p.name))


def find(folder: str | os.PathLike, source: tuple[str, str] | None, options) -> pathlib.Path | None:
    """The override file for this kernel and configuration, or None; ambiguity raises."""
    if source is None:
        return None
    key, name = source
    files = candidates(pathlib.Path(folder, key), name)
    if not files:
        return None
    tag = options_tag(options)
    tagged = {p: module_attrs(p.read_text()).get(OPTIONS_ATTR) for p in files}
    exact = [p for p, t in tagged.items() if t == tag]
    if len(exact) == 1:
        return exact[0]
    if len(exact) > 1:
        raise KperfError(f"{len(exact)} override files for kernel {name} carry {OPTIONS_ATTR} = {tag!r}: "
                         f"{', '.join(map(str, exact))}", fix="keep one of them")
    untagged = [p for p, t in tagged.items() if t is None]
    if len(untagged) == 1 and len(files) == 1:
        warps = module_attrs(untagged[0].read_text()).get("ttg.num-warps")
        if warps is not None and int(warps) != int(options.num_warps):
            raise KperfError(f"override file {untagged[0]} is for num_warps={warps}, the kernel compiles "
                             f"with num_warps={options.num_warps}",
                             fix="dump this configuration with `kperf dump`, or add "
                                 f'"{OPTIONS_ATTR}" = "{tag}" to the file\'s module attributes')
        return untagged[0]
    if untagged:
        raise KperfError(f"cannot tell which of {', '.join(map(str, untagged))} is kernel {name} with "
                         f"{tag}", fix=f'add "{OPTIONS_ATTR}" = "{tag}" to the right file\'s module '
                                       "attributes (kperf dump writes it)")
    return None  # only files for other configurations: this one compiles as the kernel source says


def load(folder, source, options, like):
    """The overriding module (records materialized to carriers), or None when no file matches."""
    from kperf.passes.materialize import MaterializePass
    from kperf.stages import _reparse
    path = find(folder, source, options)
    if path is None:
        return None, None
    text = path.read_text()
    result = MaterializePass().apply_text(text, path=str(path))
    try:
        return _reparse(result.text, like), path
    except RuntimeError as e:
        raise KperfError(f"override file does not parse as TTGIR ({e}); MLIR's diagnostic above names the "
                         "line (line numbers are those of the file)", where=str(path),
                         fix="fix the line, or dump the kernel again with `kperf dump`") from None


# -- kperf insert -----------------------------------------------------------------------------------------

def kernel_files(folder: str | os.PathLike, kernels: str | None = None) -> list[pathlib.Path]:
    root = pathlib.Path(folder)
    pat = re.compile(kernels) if kernels else None
    out = []
    for f in sorted(root.glob(f"*/*{SUFFIX}")):
        name = f.name[:-len(SUFFIX)].split(".")[0]
        if pat is None or pat.search(name):
            out.append(f)
    return out


def _context():
    from triton._C.libtriton import ir
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.compiler import CUDABackend
    ctx = ir.context()
    ir.load_dialects(ctx)
    CUDABackend(GPUTarget("cuda", 90, 32)).load_dialects(ctx)
    return ctx


def insert(folder: str | os.PathLike, selectors: str, *, kernels: str | None = None,
           out: str | os.PathLike | None = None) -> list[tuple[pathlib.Path, int]]:
    """Insert records around the ops ``selectors`` pick in every matching file of ``folder``.

    Writes in place, or into ``out`` (same layout).  Inserted records are written as readable
    ``kperf.record start|end "name"`` lines.  Returns ``(file, records inserted)`` pairs.
    """
    from kperf.dialect.selectors import parse_selectors
    from kperf.passes.auto_insert import AutoInsertPass
    from kperf.passes.materialize import MaterializePass
    tokens = parse_selectors(selectors)
    if not tokens:
        raise KperfError("no selectors given", fix="pass --auto mma,tma (or op names)")
    files = kernel_files(folder, kernels)
    if not files:
        raise KperfError(f"no TTGIR files{' for kernels matching ' + repr(kernels) if kernels else ''} "
                         f"under {os.fspath(folder)!r}", fix="dump them first: kperf dump script.py --out DIR")
    done = []
    for f in files:
        text = MaterializePass().apply_text(f.read_text(), path=str(f)).text  # records already there: carriers
        ctx = _context()
        try:
            mod = _parse_text(text, ctx)
        except RuntimeError as e:
            raise KperfError(f"does not parse as TTGIR ({e})", where=str(f),
                             fix="fix the line MLIR's diagnostic names, or dump the kernel again") from None
        result = AutoInsertPass(tokens).apply(mod, ctx, path=f.name)
        new = textual_records(mod.str(), str(f))
        dest = f if out is None else pathlib.Path(out, f.parent.name, f.name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(new)
        done.append((dest, result.num_records))
    return done


def _parse_text(text: str, ctx):
    import tempfile
    from triton._C.libtriton import ir
    fd, path = tempfile.mkstemp(suffix=SUFFIX, prefix="kperf_insert_")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        mod = ir.parse_mlir_module(path, ctx)
        mod.context = ctx
        return mod
    finally:
        os.unlink(path)


def textual_records(text: str, path: str = "<ttgir>") -> str:
    """Rewrite carriers into readable ``kperf.record`` lines (what ``kperf.passes.materialize`` reads)."""
    mod = scan(text, path)
    lines = list(mod.lines)
    for site in mod.sites:
        if site.textual:
            continue
        line = lines[site.lineno - 1]
        indent = line[:len(line) - len(line.lstrip())]
        loc_at = line.rfind(" loc(")
        loc = line[loc_at:] if loc_at >= 0 else ""
        lines[site.lineno - 1] = f"{indent}{site.op.print()}{loc}"
    return "\n".join(lines) + "\n"


# -- context managers for the CLI and tests ------------------------------------------------------------------

class dumped:
    """``with dumped(DIR) as written:`` dumps every kernel compiled inside (always compiling)."""

    def __init__(self, folder):
        self.folder = folder
        self.written: list[str] = []

    def __enter__(self) -> list[str]:
        import triton
        from kperf import stages
        self._saved = triton.knobs.compilation.always_compile
        triton.knobs.compilation.always_compile = True  # a cache hit would skip the stages
        stages.install()
        start_dump(self.folder)
        global _written
        _written = self.written
        return self.written

    def __exit__(self, *exc):
        import triton
        global _written
        stop_dump()
        _written = None
        triton.knobs.compilation.always_compile = self._saved
        return False


_written: list[str] | None = None


class applied:
    """``with applied(DIR, config, auto=...) as config:`` activates an override folder for kperf runs.

    Yields ``config`` with ``override`` (the folder digest) and ``auto`` set.  Triton's own
    ``TRITON_KERNEL_OVERRIDE`` is switched off inside: it would replace kperf's output with the raw file.
    """

    def __init__(self, folder, config, auto=None):
        self.folder, self.config, self.auto = folder, config, auto

    def __enter__(self):
        import dataclasses
        import triton
        self._saved = triton.knobs.compilation.override
        cfg = self.config
        if self.auto:
            cfg = dataclasses.replace(cfg, auto=self.auto)
        if self.folder is not None:
            triton.knobs.compilation.override = False
            cfg = dataclasses.replace(cfg, override=activate(self.folder))
        return cfg

    def __exit__(self, *exc):
        import triton
        triton.knobs.compilation.override = self._saved
        if self.folder is not None:
            deactivate()
        return False
