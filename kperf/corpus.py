"""Kernel corpora: every Triton kernel a program compiles, kept as test data and compiled again through kperf.

Recording (``kperf corpus record OUT -- script.py``, or ``with kperf.corpus.record(OUT):``) chains a
listener onto Triton's ``knobs.compilation.listener``, which Triton calls at the end of every
``triton.compile``: JIT launches, direct calls with an ``ASTSource`` (Inductor, libraries with their own
kernel caches), each autotuner config, and cache hits, which still go through ``triton.compile``.  For each
compile it keeps the kernel's name, its module's source text, signature, constexprs, attributes, compile
options, target and the TTIR Triton wrote into its cache folder (``triton_compat.compile_facts``), once
per distinct TTIR.  What the listener cannot see it says: a Gluon kernel (it enters at TTGIR, no TTIR),
a compile whose TTIR Triton did not keep (``TRITON_STORE_BINARY_ONLY``), and compiles in other
processes.  Inductor compiles in subprocess workers by default and serves kernels from its own caches
without compiling them again, so recording sets ``TORCHINDUCTOR_COMPILE_THREADS=1`` and turns its FX-graph
and autograd caches off for the recorded program (where the environment does not say otherwise;
:func:`recording_environment`): every kernel then goes through ``triton.compile`` in the recorded process.

A corpus is a folder or one ``.tar.xz`` file (what ``tests/corpus/`` keeps) holding ``corpus.json`` (the
kernels' records), ``ttir/<id>.ttir`` and ``sources/<sha>.py`` (each module's text once).  Recording
into an existing corpus adds the kernels it lacks.

Replaying (:func:`compile_kernel`, :func:`check`, ``kperf corpus check``) compiles a kernel from its
recorded TTIR, not from Python: the source's imports (Inductor's runtime, a library) need not be
installed, and the kernel is the one Triton built then (spelled as this Triton reads TTIR:
``triton_compat.readable_ttir``).  The compile is kperf's: the stage hook with
``ProfileConfig(auto=...)`` inserts records into the final TTGIR and lowers them into the PTX, which
Triton's cubin stage assembles with ptxas.  A kernel either compiles (with records wherever the selectors
found ops) or fails with kperf's "cannot place a record around <op>" error; anything else is a bug.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import sys
import tarfile
import tempfile
import threading

from kperf.dialect.errors import KperfError

FORMAT = "kperf-corpus"
VERSION = 1
MANIFEST = "corpus.json"
ARCHIVE_SUFFIX = ".tar.xz"
#: What recording sets for the recorded program when the environment does not (see the module docstring).
RECORDING_ENV = {"TORCHINDUCTOR_COMPILE_THREADS": "1", "TORCHINDUCTOR_FX_GRAPH_CACHE": "0",
                 "TORCHINDUCTOR_AUTOGRAD_CACHE": "0"}
#: Compile options a replay does not take from the record: the target decides them, or kperf does.
_NOT_REPLAYED = {"arch", "backend_name", "instrumentation_mode", "ir_override", "extern_libs"}


@dataclasses.dataclass
class Kernel:
    """One recorded kernel: what Triton compiled, and its TTIR."""

    id: str  # <name>-<first 12 hex digits of the TTIR's sha256>
    name: str
    label: str  # where it comes from (the recorded script's name, or --label)
    ttir: str = dataclasses.field(repr=False)
    file: str | None = None  # the kernel's module, relative to its sys.path entry where it has one
    source: str | None = None  # sha256 of that module's text (``Corpus.sources``)
    line: int | None = None  # the kernel's first line in it
    signature: dict = dataclasses.field(default_factory=dict, repr=False)
    constexprs: dict = dataclasses.field(default_factory=dict, repr=False)
    attrs: dict = dataclasses.field(default_factory=dict, repr=False)
    options: dict = dataclasses.field(default_factory=dict, repr=False)
    target: dict = dataclasses.field(default_factory=dict, repr=False)
    triton: str = ""
    cache_hit: bool = False

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["ttir"] = f"ttir/{self.id}.ttir"
        d["ttir_sha256"] = _sha(self.ttir)
        return d


@dataclasses.dataclass
class Corpus:
    kernels: list[Kernel] = dataclasses.field(default_factory=list)
    sources: dict[str, str] = dataclasses.field(default_factory=dict)  # sha256 -> module text

    def add(self, kernels: list[Kernel], sources: dict[str, str]) -> list[Kernel]:
        """Add the kernels whose TTIR this corpus lacks (and their sources); returns those added."""
        have = {_sha(k.ttir) for k in self.kernels}
        added = []
        for k in kernels:
            if _sha(k.ttir) not in have:
                have.add(_sha(k.ttir))
                self.kernels.append(k)
                added.append(k)
                if k.source and k.source in sources:
                    self.sources[k.source] = sources[k.source]
        return added

    def labels(self) -> collections.Counter:
        return collections.Counter(k.label for k in self.kernels)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- recording


def _jsonable(value):
    """A constexpr or option value as JSON: numbers, strings, lists; anything else as ``{"repr": ...}``."""
    from kperf import triton_compat
    value = triton_compat.constexpr_value(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return {"repr": repr(value)[:500]}


def display_path(path: str) -> str:
    """``path`` relative to the longest ``sys.path`` entry holding it (``liger_kernel/ops/rms_norm.py``),
    else to the working folder, else as it is."""
    path = os.path.abspath(path)
    bases = sorted({os.path.abspath(p or os.curdir) for p in sys.path}, key=len, reverse=True)
    for base in [*bases, os.getcwd()]:
        if path.startswith(base.rstrip(os.sep) + os.sep):
            return os.path.relpath(path, base)
    return path


class Recorder:
    """Records every kernel Triton compiles while installed (a compile listener chained with any other).

    ``kernels`` (by TTIR sha256, first compile wins), ``sources`` (module texts by sha256), ``compiles``
    (every listener call), ``skipped`` (reason -> count: compiles with nothing to record) and ``errors``
    (a record that failed; the compile itself is never disturbed).
    """

    def __init__(self, label: str = "recorded"):
        self.label = label
        self.kernels: dict[str, Kernel] = {}
        self.sources: dict[str, str] = {}
        self.compiles = 0
        self.skipped: collections.Counter = collections.Counter()
        self.errors: list[str] = []
        self._lock = threading.Lock()  # Inductor's autotuning compiles in threads
        self._previous = None
        self._installed = False

    def __call__(self, **kwargs) -> None:
        try:
            with self._lock:
                self.compiles += 1
                self._record(kwargs["src"], kwargs["metadata"], kwargs["metadata_group"],
                             bool(kwargs.get("cache_hit")))
        except Exception as e:  # recording must never break the program's compile
            self.errors.append(f"{type(e).__name__}: {e}")
        if self._previous is not None:
            self._previous(**kwargs)

    def _record(self, src, metadata: dict, group: dict, cache_hit: bool) -> None:
        from kperf import triton_compat
        facts = triton_compat.compile_facts(src, metadata, group)
        if facts["kind"] == "gluon":
            self.skipped["Gluon kernel (it enters at TTGIR: no TTIR)"] += 1
            return
        if not facts["ttir"] or not os.path.isfile(facts["ttir"]):
            self.skipped["Triton kept no TTIR (TRITON_STORE_BINARY_ONLY?)"] += 1
            return
        with open(facts["ttir"], encoding="utf-8") as f:
            ttir = f.read()
        digest = _sha(ttir)
        if digest in self.kernels:
            return
        file = source = None
        fn = facts["function"]
        path = getattr(getattr(fn, "__code__", None), "co_filename", None)
        if path and os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
            file, source = display_path(path), _sha(text)
            self.sources.setdefault(source, text)
        elif facts["source"]:
            source = _sha(facts["source"])
            self.sources.setdefault(source, facts["source"])
        name = facts["name"]
        backend, arch, warp = facts["target"] or ("", 0, 0)
        options = {k: _jsonable(v) for k, v in sorted(facts["options"].items()) if k != "extern_libs"}
        self.kernels[digest] = Kernel(
            id=f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)[:100]}-{digest[:12]}", name=name, label=self.label,
            ttir=ttir, file=file, source=source, line=facts["line"],
            signature={k: _jsonable(v) for k, v in facts["signature"].items()},
            constexprs={k: _jsonable(v) for k, v in facts["constants"].items()},
            attrs={k: _jsonable(v) for k, v in facts["attrs"].items()}, options=options,
            target={"backend": backend, "arch": arch, "warp_size": warp},
            triton=str(facts["triton_version"]), cache_hit=cache_hit)

    def install(self) -> None:
        from kperf import triton_compat
        if self._installed:
            return
        self._previous = triton_compat.get_knob("compilation.listener")
        triton_compat.set_knob("compilation.listener", self)
        self._installed = True

    def uninstall(self) -> None:
        from kperf import triton_compat
        if not self._installed:
            return
        if triton_compat.get_knob("compilation.listener") is self:
            triton_compat.set_knob("compilation.listener", self._previous)
        self._previous, self._installed = None, False

    def __enter__(self) -> Recorder:
        self.install()
        return self

    def __exit__(self, *exc) -> None:
        self.uninstall()

    def files(self) -> collections.Counter:
        """How many kernels were recorded from each module."""
        return collections.Counter(k.file or "<no file>" for k in self.kernels.values())


@contextlib.contextmanager
def recording_environment():
    """``RECORDING_ENV`` set where unset for a ``with`` block (and Inductor's config, when already
    imported, told to compile in this process), so Inductor's kernels reach this process's listener."""
    saved = {k: os.environ.get(k) for k in RECORDING_ENV}
    for key, value in RECORDING_ENV.items():
        os.environ.setdefault(key, value)
    inductor = sys.modules.get("torch._inductor.config")
    threads = getattr(inductor, "compile_threads", None)
    if inductor is not None and threads != 1:
        inductor.compile_threads = 1
    try:
        yield
    finally:
        if inductor is not None and threads != 1:
            inductor.compile_threads = threads
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def record(out: str, label: str = "recorded"):
    """Record every kernel Triton compiles in the ``with`` block into the corpus ``out`` (a folder or a
    ``.tar.xz`` file; kernels it has already are kept once).  Yields the :class:`Recorder`; the corpus is
    written when the block ends, also when it raises (what was compiled until then)."""
    check_out(out)
    recorder = Recorder(label)
    with recording_environment(), recorder:
        try:
            yield recorder
        finally:
            save_recorded(out, recorder)


def save_recorded(out: str, recorder: Recorder) -> list[Kernel]:
    """Add what ``recorder`` holds to the corpus at ``out``; returns the kernels that were new there."""
    corpus = load(out) if os.path.exists(out) else Corpus()
    added = corpus.add(list(recorder.kernels.values()), recorder.sources)
    if recorder.kernels or not os.path.exists(out):
        save(corpus, out)
    return added


# --------------------------------------------------------------------------- storage


def check_out(out: str) -> None:
    """``out`` can take a corpus: a folder (new, or holding one) or a ``.tar.xz`` file."""
    if out.endswith(ARCHIVE_SUFFIX):
        if os.path.isdir(out):
            raise KperfError(f"{out} is a folder, but its name asks for a {ARCHIVE_SUFFIX} archive",
                             fix=f"give another name, or drop the {ARCHIVE_SUFFIX} suffix to write a folder")
        return
    if os.path.exists(out) and not os.path.isdir(out):
        raise KperfError(f"{out} exists and is a file, not a corpus folder",
                         fix=f"give a new folder, a corpus folder, or a file name ending in {ARCHIVE_SUFFIX}")
    if os.path.isdir(out) and os.listdir(out) and not os.path.isfile(os.path.join(out, MANIFEST)):
        raise KperfError(f"{out} is a folder with files but no {MANIFEST}: not a kperf corpus",
                         fix="give a new or empty folder (or an existing corpus to add to)")


def _members(corpus: Corpus) -> dict[str, bytes]:
    kernels = sorted(corpus.kernels, key=lambda k: (k.label, k.id))
    manifest = {"format": FORMAT, "version": VERSION, "kernels": [k.to_json() for k in kernels],
                "sources": {sha: f"sources/{sha[:16]}.py" for sha in sorted(corpus.sources)}}
    members = {MANIFEST: json.dumps(manifest, indent=1, sort_keys=True).encode()}
    for k in kernels:
        members[f"ttir/{k.id}.ttir"] = k.ttir.encode()
    for sha, text in corpus.sources.items():
        members[f"sources/{sha[:16]}.py"] = text.encode()
    return members


def save(corpus: Corpus, out: str) -> str:
    """Write ``corpus`` to the folder ``out``, or to one ``.tar.xz`` file (reproducible bytes)."""
    from kperf.tracing.atomic import atomic_file
    members = _members(corpus)
    if out.endswith(ARCHIVE_SUFFIX):
        with atomic_file(out, "wb") as f, tarfile.open(fileobj=f, mode="w:xz",
                                                       format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(members):
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(members[name]), 0o644
                tar.addfile(info, io.BytesIO(members[name]))
        return out
    for name, data in members.items():  # the manifest last: a folder with one is complete
        if name != MANIFEST:
            with atomic_file(os.path.join(out, name), "wb") as f:
                f.write(data)
    with atomic_file(os.path.join(out, MANIFEST), "wb") as f:
        f.write(members[MANIFEST])
    return out


def _read_members(path: str) -> dict[str, bytes]:
    if os.path.isdir(path):
        out = {}
        for root, _, files in os.walk(path):
            for name in files:
                full = os.path.join(root, name)
                with open(full, "rb") as f:
                    out[os.path.relpath(full, path).replace(os.sep, "/")] = f.read()
        return out
    try:
        with tarfile.open(path, mode="r:*") as tar:
            return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    except (tarfile.TarError, EOFError, OSError) as e:
        raise KperfError(f"{path} is not a kperf corpus archive ({type(e).__name__}: {e})",
                         fix=f"give a corpus folder or a {ARCHIVE_SUFFIX} file kperf corpus record wrote") \
            from None


def load(path: str) -> Corpus:
    """The corpus in the folder or ``.tar.xz`` file ``path``."""
    if not os.path.exists(path):
        raise KperfError(f"no corpus at {path}",
                         fix="give a folder or .tar.xz file written by kperf corpus record")
    members = _read_members(path)
    try:
        manifest = json.loads(members[MANIFEST])
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise ValueError(f"format {manifest.get('format')!r} version {manifest.get('version')!r}")
        sources = {sha: members[name].decode() for sha, name in manifest["sources"].items()}
        fields = {f.name for f in dataclasses.fields(Kernel)}
        kernels = []
        for entry in manifest["kernels"]:
            values = {k: v for k, v in entry.items() if k in fields}
            values["ttir"] = members[entry["ttir"]].decode()
            kernels.append(Kernel(**values))
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as e:
        raise KperfError(f"{path} is not a kperf corpus of format {VERSION} ({type(e).__name__}: {e})",
                         fix="record it again with kperf corpus record") from None
    return Corpus(kernels, sources)


# --------------------------------------------------------------------------- replay


@dataclasses.dataclass(frozen=True)
class Compiled:
    """A corpus kernel compiled through kperf: its records and what Triton built."""

    kernel: str
    auto: str
    records: int  # record sites in the PTX
    ttgir: str = dataclasses.field(repr=False)
    ptx: str = dataclasses.field(repr=False)
    cubin: bytes = dataclasses.field(repr=False)


def replay_options(kernel: Kernel) -> dict:
    """The recorded compile options a replay passes to Triton (the target's and kperf's own left out)."""
    from kperf import triton_compat
    known = set(triton_compat.cuda_option_names())
    return {k: v for k, v in kernel.options.items() if k in known and k not in _NOT_REPLAYED
            and (v is None or isinstance(v, bool | int | float | str))}


def compile_kernel(kernel: Kernel, auto: str, target="cuda:90") -> Compiled:
    """Compile ``kernel`` from its TTIR through kperf with automatic insertion ``auto`` (``"loops"``,
    ``"mma,tma"``, ...) for ``target``; Triton's cubin stage assembles the PTX with ptxas."""
    import triton

    from kperf import stages, triton_compat
    from kperf.compile_api import kperf_cause, parse_target
    from kperf.dialect.options import ProfileConfig
    gpu = parse_target(target)
    mode = stages.instrumentation_mode(ProfileConfig(auto=auto))
    options = {**replay_options(kernel), "instrumentation_mode": mode}
    stages.install()
    with tempfile.TemporaryDirectory(prefix="kperf_corpus_") as tmp:
        path = os.path.join(tmp, f"{kernel.id}.ttir")
        with open(path, "w", encoding="utf-8") as f:  # in this Triton's spelling (3.8+ renamed some)
            f.write(triton_compat.readable_ttir(kernel.ttir, kernel.triton))
        try:
            built = triton.compile(path, target=gpu, options=options)
        except KperfError:
            raise
        except Exception as e:
            inner = kperf_cause(e)
            if inner is not None:
                raise inner from e
            first = (str(e).strip().splitlines() or [""])[0][:400]
            raise KperfError(f"Triton {triton.__version__} could not compile corpus kernel {kernel.id} "
                             f"({kernel.label}, Triton {kernel.triton}) from its TTIR: {type(e).__name__}: "
                             f"{first} (Triton's own diagnostics, if any, are above on stderr)",
                             fix="compile its TTIR without kperf to see whether Triton or kperf fails; a "
                                 "TTIR recorded with another Triton release may not parse") from e
    info = built.metadata._asdict().get(stages.METADATA_KEY) or {}
    records = int(info.get("ptx_records", info.get("num_records", 0)) or 0)
    return Compiled(kernel.id, auto, records, built.asm["ttgir"], built.asm["ptx"], built.asm["cubin"])


_OP = re.compile(r"^\s*(?:%[^=]*=\s*)?\"?([a-z_]+\.[a-z_]+)\b", re.MULTILINE)


def preset_ops(auto: str) -> set[str]:
    """The TTGIR op names the selectors ``auto`` may put records around (``tma-waits``: barrier waits)."""
    from kperf.dialect.selectors import TMA_WAITS, expand, parse_selectors
    ops = expand(parse_selectors(auto))
    return (ops - {TMA_WAITS}) | ({"ttng.wait_barrier"} if TMA_WAITS in ops else set())


def selected_ops(ttgir: str, auto: str) -> dict[str, int]:
    """How many ops of ``ttgir`` (by name) the selectors ``auto`` ask records around (a barrier wait
    counts for ``tma`` only when it waits for a TMA copy, which text alone does not tell: left out)."""
    from kperf.dialect.selectors import expand, parse_selectors
    wanted = {op for op in expand(parse_selectors(auto)) if "." in op}
    found = collections.Counter(m.group(1) for m in _OP.finditer(ttgir))
    return {op: found[op] for op in sorted(wanted) if found[op]}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What :func:`check` found: ``status`` "records", "nothing selected" or "cannot place"."""

    kernel: str
    label: str
    auto: str
    status: str
    records: int = 0
    selected: dict = dataclasses.field(default_factory=dict)
    message: str = ""


def check(kernel: Kernel, auto: str, target="cuda:90") -> Outcome:
    """Compile ``kernel`` through kperf (``compile_kernel``) and hold it to the corpus contract: it
    compiles and assembles, with records wherever ``auto`` selected ops, or kperf says it "cannot place"
    a record around an op it names.  Anything else raises a ``KperfError``."""
    try:
        built = compile_kernel(kernel, auto, target)
    except KperfError as e:
        if "cannot place a record around " in str(e):
            return Outcome(kernel.id, kernel.label, auto, "cannot place", message=str(e).splitlines()[0])
        raise
    selected = selected_ops(built.ttgir, auto)
    if not built.cubin:
        raise KperfError(f"corpus kernel {kernel.id}: Triton returned no cubin",
                         fix="report it as a kperf bug")
    if selected and not built.records:
        raise KperfError(f"corpus kernel {kernel.id}: auto={auto} selects "
                         f"{', '.join(f'{n} {op}' for op, n in selected.items())} in its final TTGIR, "
                         "but kperf placed no record", fix="a kperf bug: report it with the kernel's TTIR")
    return Outcome(kernel.id, kernel.label, auto, "records" if built.records else "nothing selected",
                   built.records, selected)
