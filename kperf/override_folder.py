"""One TTGIR override folder: its layout, its identity, the file for a compile, and the hook's state.

Layout (Triton's ``TRITON_DUMP_DIR`` / ``TRITON_OVERRIDE_DIR`` layout)::

    DIR/<hash>/<kernel>.ttgir        # first configuration of the kernel seen
    DIR/<hash>/<kernel>.<k>.ttgir    # k = 1, 2, ...: further configurations

``<hash>`` is Triton's folder name for the kernel source (``_base32(src.hash())``): it covers the source,
the signature and constexprs, but not compile options, so two configurations of one kernel (say
``num_warps=4`` and ``8`` from an autotuner) share a folder.  kperf keeps them apart: every dumped
file carries a module attribute ``"kperf.options" = "num_warps=4,num_stages=2,num_ctas=1"`` and is
matched to the compile by it.  A file without that attribute (written by Triton's own dump or by
hand) is used when it is the only candidate and its ``ttg.num-warps`` matches.

``Overrides`` is what the stage hook (``kperf.stages``) knows of override folders during a compile:
the folder to dump into and the one to read from.  It is a value the hook holds, swapped in and back
by ``kperf.override``'s context managers, so nothing here keeps state of its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import re
import sys

from kperf import ttgir_module
from kperf.dialect.errors import KperfError
from kperf.dialect.mlir_string import encode_mlir_string
from kperf.dialect.ttgir_text import tokenize_line
from kperf.passes.materialize import MaterializePass

OPTIONS_ATTR = "kperf.options"
ENV_DIR = "KPERF_OVERRIDE_DIR"
SUFFIX = ".ttgir"


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
        code, module = frame.f_code.co_name, frame.f_globals.get("__name__")
        if code == "compile" and module == "triton.compiler.compiler":
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


# -- the files of a folder --------------------------------------------------------------------------------

def candidates(folder: pathlib.Path, name: str) -> list[pathlib.Path]:
    """The files of kernel ``name`` in one hash folder: ``name.ttgir``, then ``name.1.ttgir``, ..."""
    pat = re.compile(re.escape(name) + r"(\.\d+)?" + re.escape(SUFFIX))
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if pat.fullmatch(p.name)), key=lambda p: (len(p.name), p.name))


def kernel_files(folder: str | os.PathLike, kernels: str | None = None) -> list[pathlib.Path]:
    """Every TTGIR file under ``folder``, or those of kernels whose name matches the regex ``kernels``."""
    root = pathlib.Path(folder)
    pat = re.compile(kernels) if kernels else None
    out = []
    for f in sorted(root.glob(f"*/*{SUFFIX}")):
        name = f.name[:-len(SUFFIX)].split(".")[0]
        if pat is None or pat.search(name):
            out.append(f)
    return out


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
        _check_warps(untagged[0], options, tag)
        return untagged[0]
    if untagged:
        raise KperfError(f"cannot tell which of {', '.join(map(str, untagged))} is kernel {name} with "
                         f"{tag}", fix=f'add "{OPTIONS_ATTR}" = "{tag}" to the right file\'s module '
                                       "attributes (kperf dump writes it)")
    return None  # only files for other configurations: this one compiles as the kernel source says


def _check_warps(path: pathlib.Path, options, tag: str) -> None:
    """An untagged file is for this compile only if its ``ttg.num-warps`` agrees."""
    warps = module_attrs(path.read_text()).get("ttg.num-warps")
    if warps is not None and int(warps) != int(options.num_warps):
        raise KperfError(f"override file {path} is for num_warps={warps}, the kernel compiles "
                         f"with num_warps={options.num_warps}",
                         fix="dump this configuration with `kperf dump`, or add "
                             f'"{OPTIONS_ATTR}" = "{tag}" to the file\'s module attributes')


def load(folder, source, options, like):
    """The overriding module (records materialized to carriers) and its file, or (None, None)."""
    path = find(folder, source, options)
    if path is None:
        return None, None
    result = MaterializePass().apply(path.read_text(), path=str(path))
    try:
        return ttgir_module.parse(result.text, like.context), path
    except RuntimeError as e:
        raise KperfError(f"override file does not parse as TTGIR ({e}); MLIR's diagnostic above names the "
                         "line (line numbers are those of the file)", where=str(path),
                         fix="fix the line, or dump the kernel again with `kperf dump`") from None


def write_dump(folder: str | os.PathLike, text: str, options, source: tuple[str, str]) -> str:
    """Write one kernel's final TTGIR into ``folder`` (replacing the file of the same configuration)."""
    key, name = source
    hash_folder = pathlib.Path(folder, key)
    hash_folder.mkdir(parents=True, exist_ok=True)
    tag = options_tag(options)
    files = candidates(hash_folder, name)
    path = next((p for p in files if module_attrs(p.read_text()).get(OPTIONS_ATTR) == tag), None)
    if path is None:
        path = hash_folder / (f"{name}{SUFFIX}" if not files else f"{name}.{len(files)}{SUFFIX}")
    path.write_text(stamp_options(text, tag))
    return str(path)


# -- what the stage hook knows of override folders --------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Overrides:
    """The override folders of the compiles to come (the stage hook holds one; see the module doc).

    Attributes:
        dump_dir: write each kernel's final TTGIR here (``kperf dump``); None: no dump.
        written: the list the dumped paths are appended to (the caller's, for reporting them).
        folder: read override files from here (``kperf run --override``); None: ``$KPERF_OVERRIDE_DIR``.
    """

    dump_dir: str | None = None
    written: list[str] | None = None
    folder: str | None = None

    def dump(self, text: str, options, source: tuple[str, str] | None) -> str | None:
        """Write one kernel's final TTGIR into the dump folder; returns the path (None when not dumping)."""
        if self.dump_dir is None or source is None:
            return None
        path = write_dump(self.dump_dir, text, options, source)
        if self.written is not None:
            self.written.append(path)
        return path

    def active_dir(self, expected: str) -> str:
        """The override folder in use; its digest must still be ``expected`` (the cache key holds it)."""
        folder = self.folder or os.environ.get(ENV_DIR)
        if not folder:
            raise KperfError("a kperf compile asks for TTGIR overrides but no override folder is active",
                             fix="use `kperf run --override DIR`, or call kperf.override.activate(DIR) and "
                                 "put its digest in ProfileConfig(override=...)")
        if digest(folder) != expected:
            raise KperfError(f"the override files in {folder!r} changed after the run started",
                             fix="run again; every run hashes the folder anew")
        return folder

    def load(self, expected: str, source, options, like):
        """``load`` from the active folder, whose digest must be ``expected``."""
        return load(self.active_dir(expected), source, options, like)
