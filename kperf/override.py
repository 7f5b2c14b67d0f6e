"""TTGIR override folders: dump the final TTGIR of a script's kernels, insert records, run with them.

    with override.dumped(DIR) as written:            # kperf dump: every kernel compiled inside
        ...
    override.insert(DIR, "mma,tma")                  # kperf insert (kperf.override_insert)
    with override.applied(DIR, config) as config:    # kperf run --override: config.override = digest
        ...

The folder layout and the matching of a file to a compile are in ``kperf.override_folder``.  Files
may hold ``kperf.record start|end "name"`` lines, upstream Proton's ``proton.record`` lines and
carriers written by ``kperf insert``.  Triton applies its own overrides *after* kperf's stage hook
returns, so kperf does not use ``TRITON_KERNEL_OVERRIDE``: its ttgir stage reads the matching file,
materializes its records and compiles it.  The folder's content digest goes into
``ProfileConfig.override`` and so into Triton's cache key: an edited file recompiles, and a plain
run never gets an overridden binary (nor the reverse).

Which folders the stage hook uses is an ``Overrides`` value held by the hook (``stages.HOOK``); the
context managers here swap one in and put the previous one back, so they nest and leave no state.
"""

from __future__ import annotations

import dataclasses
import os

from kperf import stages
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
    source_key,
    stamp_options,
)
from kperf.override_insert import insert, textual_records

__all__ = [
    "ENV_DIR", "OPTIONS_ATTR", "SUFFIX", "Overrides", "activate", "active_dir", "applied", "candidates",
    "deactivate", "digest", "dumped", "find", "insert", "kernel_files", "load", "module_attrs", "options_tag",
    "source_key", "stamp_options", "textual_records",
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
        import triton
        self._saved_always = triton.knobs.compilation.always_compile
        triton.knobs.compilation.always_compile = True  # a cache hit would skip the stages
        os.makedirs(self.folder, exist_ok=True)
        stages.install()
        self._saved = stages.HOOK.overrides
        stages.HOOK.overrides = dataclasses.replace(self._saved, dump_dir=os.fspath(self.folder),
                                                    written=self.written)
        return self.written

    def __exit__(self, *exc):
        import triton
        stages.HOOK.overrides = self._saved
        triton.knobs.compilation.always_compile = self._saved_always
        return False


class applied:
    """``with applied(DIR, config, auto=...) as config:`` activates an override folder for kperf runs.

    Yields ``config`` with ``override`` (the folder digest) and ``auto`` set.  Triton's own
    ``TRITON_KERNEL_OVERRIDE`` is switched off inside: it would replace kperf's output with the raw file.
    """

    def __init__(self, folder, config, auto=None):
        self.folder, self.config, self.auto = folder, config, auto

    def __enter__(self):
        import triton
        self._saved_knob = triton.knobs.compilation.override
        self._saved = stages.HOOK.overrides
        cfg = self.config
        if self.auto:
            cfg = dataclasses.replace(cfg, auto=self.auto)
        if self.folder is not None:
            triton.knobs.compilation.override = False
            cfg = dataclasses.replace(cfg, override=digest(self.folder))
            stages.HOOK.overrides = dataclasses.replace(self._saved, folder=os.fspath(self.folder))
        return cfg

    def __exit__(self, *exc):
        import triton
        triton.knobs.compilation.override = self._saved_knob
        stages.HOOK.overrides = self._saved
        return False
