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

Nothing in a folder is passed over in silence: a file must be non-empty UTF-8 text (``read_ttgir``) and
its kernel's name and argument types must be those of the kernel being compiled (``check_signature``);
a compile that finds no file although the folder holds files of its kernel name (in another hash folder,
or for other configurations) warns why (``why_unmatched``), and ``Overrides.used`` collects the files
that were used, so ``kperf.override.applied`` can name the ones no kernel used.

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
import types
import warnings

from kperf import triton_compat, ttgir_module
from kperf.dialect.errors import KperfError
from kperf.dialect.mlir_string import encode_mlir_string
from kperf.dialect.options import ProfileConfig
from kperf.dialect.ttgir_text import kernel_signatures, tokenize_line
from kperf.passes.materialize import MaterializePass
from kperf.tracing import atomic

OPTIONS_ATTR = "kperf.options"
ENV_DIR = "KPERF_OVERRIDE_DIR"
SUFFIX = ".ttgir"
REDUMP = "dump the kernel again with `kperf dump --out DIR script.py` (and redo the edits), or delete it"


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
    """The compile options that shape a kernel's TTGIR but not Triton's folder hash.

    ``maxnreg`` is left out where Triton drops it from every instrumented compile
    (``triton_compat.FACTS.mode_drops_maxnreg``): the plain compile that dumps a file has it, the kperf
    compile that reads the file back never does, and the two must find the same file.
    """
    parts = [f"num_warps={options.num_warps}", f"num_stages={options.num_stages}",
             f"num_ctas={getattr(options, 'num_ctas', 1)}"]
    maxnreg = getattr(options, "maxnreg", None)
    if maxnreg and not triton_compat.FACTS.mode_drops_maxnreg:
        parts.append(f"maxnreg={maxnreg}")
    return ",".join(parts)


def source_key() -> tuple[str, str] | None:
    """``(folder, file name)`` Triton uses to dump/override the kernel being compiled; None outside a compile.

    Triton's stage hook is not given the source; ``triton.compile`` holds it in its frame
    (``triton_compat.compile_source``): the folder is Triton's hash folder of the source and the file name
    its kernel name, exactly as Triton's own dump and override managers use them.
    """
    src = triton_compat.compile_source()
    return None if src is None else key_of(src)


def key_of(src) -> tuple[str, str]:
    """``(folder, file name)`` of a Triton compile source (``ASTSource``), as Triton's dump uses them."""
    return triton_compat.override_key(src)


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

def read_ttgir(path: str | os.PathLike) -> str:
    """The text of an override file; an empty, blank or non-UTF-8 file is an error naming it."""
    data = pathlib.Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise KperfError(f"override file is not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start})",
                         where=os.fspath(path), fix=REDUMP) from None
    if not text.strip():
        raise KperfError("override file is empty" if not text else "override file holds only whitespace",
                         where=os.fspath(path), fix=REDUMP)
    return text


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
        name = kernel_name(f)
        if pat is None or pat.search(name):
            out.append(f)
    return out


def kernel_name(path: pathlib.Path) -> str:
    """The kernel an override file is named for (``k.ttgir`` and ``k.1.ttgir`` are both kernel ``k``)."""
    return path.name[:-len(SUFFIX)].split(".")[0]


def find(folder: str | os.PathLike, source: tuple[str, str] | None, options) -> pathlib.Path | None:
    """The override file for this kernel and configuration, or None; ambiguity raises."""
    if source is None:
        return None
    key, name = source
    files = candidates(pathlib.Path(folder, key), name)
    if not files:
        return None
    tag = options_tag(options)
    tagged = {p: module_attrs(read_ttgir(p)).get(OPTIONS_ATTR) for p in files}
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
    warps = module_attrs(read_ttgir(path)).get("ttg.num-warps")
    if warps is not None and int(warps) != int(options.num_warps):
        raise KperfError(f"override file {path} is for num_warps={warps}, the kernel compiles "
                         f"with num_warps={options.num_warps}",
                         fix="dump this configuration with `kperf dump`, or add "
                             f'"{OPTIONS_ATTR}" = "{tag}" to the file\'s module attributes')


def why_unmatched(folder: str | os.PathLike, source: tuple[str, str] | None, options) -> str | None:
    """Why no file of ``folder`` is for this compile though the folder holds files of its kernel name.

    None when it holds none (the kernel is not overridden, as meant).  The text names the files, the
    hash folder or configuration this compile wanted, and the fix.
    """
    if source is None:
        return None
    key, name = source
    here = pathlib.Path(folder, key)
    tag = options_tag(options)
    files = candidates(here, name)
    if files:
        listed = ", ".join(f"{p} ({module_attrs(read_ttgir(p)).get(OPTIONS_ATTR) or 'untagged'})"
                           for p in files)
        return (f"no override file for kernel {name} with {tag}: {here} holds only files for other "
                f"configurations: {listed}.  Fix: dump this configuration with `kperf dump`, or set "
                f'"{OPTIONS_ATTR}" = "{tag}" in the module attributes of the file meant for it')
    others = [p for p in kernel_files(folder) if kernel_name(p) == name and p.parent.name != key]
    if not others:
        return None
    return (f"override file{'s' if len(others) > 1 else ''} for kernel {name} not used: "
            f"{', '.join(map(str, others[:4]))}{' ...' if len(others) > 4 else ''} "
            f"{'are' if len(others) > 1 else 'is'} in another hash folder than this compile's {here} "
            "(Triton's hash of the kernel's source, signature and constexprs: one of them differs from the "
            f"dumped kernel's).  Fix: dump the kernel again with `kperf dump --out {os.fspath(folder)}` and "
            "redo the edits in the new file")


def check_signature(path: pathlib.Path, text: str, like_text: str) -> None:
    """The file's kernel must have the compiled kernel's name and argument types (count and each type)."""
    expected = kernel_signatures(like_text)
    found = kernel_signatures(text, str(path))
    if [s[:2] for s in found] == [s[:2] for s in expected]:
        return
    fix = "dump the kernel again with `kperf dump` and redo the edits (the kernel changed since the dump)"
    if not found:
        raise KperfError("override file holds no kernel (`tt.func public @name(...)`)", where=str(path),
                         fix=fix)
    (f_name, f_types, line), (e_name, e_types) = found[0], (expected[0][:2] if expected else ("?", []))
    where = f"{path}:{line}"
    if f_name != e_name:
        raise KperfError(f"override file is for another kernel: expected @{e_name} (the kernel being "
                         f"compiled), found @{f_name}", where=where, fix=fix)
    if len(f_types) != len(e_types):
        raise KperfError(f"kernel @{f_name} in the override file takes {len(f_types)} arguments, the kernel "
                         f"being compiled {len(e_types)}: expected ({', '.join(e_types)}), found "
                         f"({', '.join(f_types)})", where=where, fix=fix)
    diff = [f"argument {k}: expected {e}, found {f}"
            for k, (e, f) in enumerate(zip(e_types, f_types, strict=True)) if e != f]
    raise KperfError(f"kernel @{f_name} in the override file has other argument types than the kernel being "
                     f"compiled: {'; '.join(diff) or 'another kernel list'}", where=where, fix=fix)


def load(folder, source, options, like):
    """The overriding module (records materialized to carriers) and its file, or (None, None)."""
    path = find(folder, source, options)
    if path is None:
        return None, None
    text = read_ttgir(path)
    check_signature(path, text, like.str())
    result = MaterializePass().apply(text, path=str(path))
    module = ttgir_module.parse(result.text, like.context, path=str(path),
                                fix="fix the line (a record line becomes an op where it stands: inside a "
                                    "function's body, before its block's terminator), or dump the kernel "
                                    "again with `kperf dump`")
    return module, path


def write_dump(folder: str | os.PathLike, text: str, options, source: tuple[str, str]) -> str:
    """Write one kernel's final TTGIR into ``folder`` (replacing the file of the same configuration)."""
    key, name = source
    hash_folder = pathlib.Path(folder, key)
    try:
        hash_folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise atomic.write_error(hash_folder, e) from e
    tag = options_tag(options)
    files = candidates(hash_folder, name)
    path = next((p for p in files if module_attrs(read_ttgir(p)).get(OPTIONS_ATTR) == tag), None)
    if path is None:
        path = hash_folder / (f"{name}{SUFFIX}" if not files else f"{name}.{len(files)}{SUFFIX}")
    return atomic.write_text(path, stamp_options(text, tag))


# -- what the stage hook knows of override folders --------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Overrides:
    """The override folders of the compiles to come (the stage hook holds one; see the module doc).

    Attributes:
        dump_dir: write each kernel's final TTGIR here (``kperf dump``); None: no dump.
        written: the list the dumped paths are appended to (the caller's, for reporting them).
        folder: read override files from here (``kperf run --override``); None: ``$KPERF_OVERRIDE_DIR``.
        used: the set the resolved paths of the files compiles used are added to (None: not collected).
    """

    dump_dir: str | None = None
    written: list[str] | None = None
    folder: str | None = None
    used: set[pathlib.Path] | None = None

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
        """``load`` from the active folder, whose digest must be ``expected``; notes the file used."""
        folder = self.active_dir(expected)
        module, path = load(folder, source, options, like)
        self.note(folder, source, options, path)
        return module, path

    def note(self, folder, source, options, path: pathlib.Path | None) -> None:
        """Note the file a compile used; when it used none, warn if a file of its kernel was passed over."""
        if path is not None:
            if self.used is not None:
                self.used.add(path.resolve())
            return
        reason = why_unmatched(folder, source, options)
        if reason:
            warnings.warn(f"kperf: {reason}", stacklevel=2)

    def note_cached(self, src, metadata: dict, expected: str) -> None:
        """A kernel Triton took from its cache (no stage ran): ``note`` the file its compile would use.

        Only a kperf compile that read this folder, whose digest is ``expected``, counts.
        """
        mode = metadata.get("instrumentation_mode") or ""
        if not ProfileConfig.is_kperf_mode(mode) or ProfileConfig.from_mode(mode).override != expected:
            return
        folder = self.folder or os.environ.get(ENV_DIR)
        options = types.SimpleNamespace(**{k: metadata.get(k) for k in ("num_warps", "num_stages", "num_ctas",
                                                                        "maxnreg")})
        source = key_of(src)
        self.note(folder, source, options, find(folder, source, options))


def unused_files(folder: str | os.PathLike, used: set[pathlib.Path]) -> list[pathlib.Path]:
    """The ``*.ttgir`` files under ``folder`` (at any depth) that are not in ``used``."""
    return [p for p in sorted(pathlib.Path(folder).rglob(f"*{SUFFIX}")) if p.resolve() not in used]
