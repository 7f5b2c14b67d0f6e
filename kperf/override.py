"""TTGIR override folders: dump the final TTGIR of a script's kernels, insert records, run with them.

    with override.dumped(DIR) as written:            # kperf dump: every kernel compiled inside
        ...
    override.insert(DIR, "mma,tma")                  # kperf insert (kperf.override_insert)
    with override.applied(DIR, config) as config:    # kperf run --override: config.override = digest
        ...

The folder layout and the matching of a file to a compile are in ``kperf.override_folder``.  Files
may hold ``kperf.record start|end "name"`` lines, upstream Proton's ``proton.record`` lines (older
Proton forms too: ``kperf.dialect.record``) and carriers written by ``kperf insert``.  Triton applies
its own overrides *after* kperf's stage hook returns, so kperf does not use ``TRITON_KERNEL_OVERRIDE``:
its ttgir stage reads the matching file, materializes its records and compiles it.  The folder's
content digest goes into ``ProfileConfig.override`` and so into Triton's cache key: an edited file
recompiles, and a plain run never gets an overridden binary (nor the reverse).

Which folders the stage hook uses is an ``Overrides`` value held by the hook (``stages.HOOK``); the
context managers here swap one in and put the previous one back, so they nest and leave no state.

``applied`` also accounts for the folder's files: a compile that passes over a file of its kernel (other
hash folder, other configuration) warns as it happens, kernels Triton takes from its cache are checked
the same way (through Triton's compilation listener, chained), and on leaving, the files no kernel used
are named in a warning and kept in ``applied.unused``.
"""

from __future__ import annotations

import dataclasses
import os
import warnings

from kperf import stages, triton_compat
from kperf.override_folder import (
    ENV_DIR,
    OPTIONS_ATTR,
    SUFFIX,
    Overrides,
    candidates,
    digest,
    find,
    kernel_files,
    load,
    module_attrs,
    options_tag,
    read_ttgir,
    source_key,
    stamp_options,
    unused_files,
)
from kperf.override_insert import insert, textual_records
from kperf.tracing import atomic

__all__ = [
    "ENV_DIR", "OPTIONS_ATTR", "SUFFIX", "Overrides", "activate", "active_dir", "applied", "candidates",
    "deactivate", "digest", "dumped", "find", "insert", "kernel_files", "load", "module_attrs", "options_tag",
    "read_ttgir", "source_key", "stamp_options", "textual_records", "unused_files",
]


def activate(folder: str | os.PathLike) -> str:
    """Use ``folder`` for kperf compiles; returns its digest (put it in ``ProfileConfig(override=...)``)."""
    d = digest(folder)
    stages.HOOK.overrides = dataclasses.replace(stages.HOOK.overrides, folder=os.fspath(folder))
    return d


def deactivate() -> None:
    """Stop reading override files (``$KPERF_OVERRIDE_DIR`` still applies)."""
    stages.HOOK.overrides = dataclasses.replace(stages.HOOK.overrides, folder=None)


def active_dir(expected: str) -> str:
    """The override folder in use; its digest must still be ``expected`` (the cache key holds it)."""
    return stages.HOOK.overrides.active_dir(expected)


class dumped:
    """``with dumped(DIR) as written:`` dumps every kernel compiled inside (always compiling)."""

    def __init__(self, folder):
        self.folder = folder
        self.written: list[str] = []

    def __enter__(self) -> list[str]:
        self._saved_always = triton_compat.get_knob("compilation.always_compile")
        triton_compat.set_knob("compilation.always_compile", True)  # a cache hit would skip the stages
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as e:
            raise atomic.write_error(self.folder, e) from e
        stages.install()
        self._saved = stages.HOOK.overrides
        stages.HOOK.overrides = dataclasses.replace(self._saved, dump_dir=os.fspath(self.folder),
                                                    written=self.written)
        return self.written

    def __exit__(self, *exc):
        stages.HOOK.overrides = self._saved
        triton_compat.set_knob("compilation.always_compile", self._saved_always)
        return False


class applied:
    """``with applied(DIR, config, auto=...) as config:`` activates an override folder for kperf runs.

    Yields ``config`` with ``override`` (the folder digest) and ``auto`` set.  Triton's own
    ``TRITON_KERNEL_OVERRIDE`` is switched off inside: it would replace kperf's output with the raw file.
    On leaving (normally or by ``SystemExit``) ``unused`` lists the folder's files no kernel compiled
    inside used, and a warning names them.
    """

    def __init__(self, folder, config, auto=None):
        self.folder, self.config, self.auto = folder, config, auto
        self.used: set = set()
        self.unused: list = []

    def __enter__(self):
        self._saved_knob = triton_compat.get_knob("compilation.override")
        self._saved_listener = triton_compat.get_knob("compilation.listener")
        self._saved = stages.HOOK.overrides
        cfg = self.config
        if self.auto:
            cfg = dataclasses.replace(cfg, auto=self.auto)
        if self.folder is not None:
            triton_compat.set_knob("compilation.override", False)
            self._digest = digest(self.folder)
            cfg = dataclasses.replace(cfg, override=self._digest)
            self._overrides = dataclasses.replace(self._saved, folder=os.fspath(self.folder), used=self.used)
            stages.HOOK.overrides = self._overrides
            triton_compat.set_knob("compilation.listener", self._listen)
        return cfg

    def _listen(self, *, src, metadata, cache_hit, **rest):
        """Triton's compilation listener: a kernel from Triton's cache still counts (or warns)."""
        if self._saved_listener is not None:
            self._saved_listener(src=src, metadata=metadata, cache_hit=cache_hit, **rest)
        if cache_hit:  # a compiled kernel was accounted for by the stage hook
            self._overrides.note_cached(src, metadata, self._digest)

    def __exit__(self, exc_type, *exc):
        triton_compat.set_knob("compilation.override", self._saved_knob)
        triton_compat.set_knob("compilation.listener", self._saved_listener)
        stages.HOOK.overrides = self._saved
        if self.folder is not None and (exc_type is None or issubclass(exc_type, SystemExit)):
            self.unused = unused_files(self.folder, self.used)
            if self.unused:
                warnings.warn(
                    f"kperf: {len(self.unused)} override file{'s' if len(self.unused) > 1 else ''} under "
                    f"{os.fspath(self.folder)} {'were' if len(self.unused) > 1 else 'was'} not used by any "
                    f"kernel this run compiled: {', '.join(map(str, self.unused))}.  A file is used by a "
                    "profiled kernel of its name whose hash folder (DIR/<hash>/) and configuration match it; "
                    "the warnings above say why a kernel of that name passed a file over.  Fix: check the "
                    "names, or dump the kernels again with `kperf dump`", stacklevel=2)
        return False
