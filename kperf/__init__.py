"""kperf: a compiler-integrated intra-kernel profiler for Triton GPU kernels.

In a kernel: ``with kperf.scope("name"):`` (or ``kperf.enter_scope`` / ``kperf.exit_scope``).
On the host: ``@kperf.profile`` on the kernel, ``kperf.results(kernel)`` / ``kperf.last()`` for the
profile, or ``with kperf.session("out/"):`` around any code.  Without a GPU: ``kperf.compile(...)``.

The names below load on first use, so ``import kperf.tracing`` (the offline decoder, statistics and
writers) runs without Triton or torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "CompileReport": "kperf.compile_api",
    "compile": "kperf.compile_api",
    "KperfError": "kperf.dialect.errors",
    "ProfileConfig": "kperf.dialect.options",
    "enter_scope": "kperf.language",
    "exit_scope": "kperf.language",
    "scope": "kperf.language",
    "ProfiledKernel": "kperf.api",
    "last": "kperf.api",
    "profile": "kperf.api",
    "results": "kperf.api",
    "session": "kperf.api",
    "Profile": "kperf.profile_data",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kperf' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
