"""kperf: a compiler-integrated intra-kernel profiler for Triton GPU kernels.

In a kernel: ``with kperf.scope("name"):`` (or ``kperf.enter_scope`` / ``kperf.exit_scope``).
On the host: ``@kperf.profile`` on the kernel, ``kperf.results(kernel)`` / ``kperf.last()`` for the
profile, or ``with kperf.session("out/"):`` around any code.  Without a GPU: ``kperf.compile(...)``.
"""

from kperf.config import ProfileConfig
from kperf.dialect.errors import KperfError
from kperf.language import enter_scope, exit_scope, scope
from kperf.compile_api import CompileReport, compile
from kperf.profile import ProfiledKernel, last, profile, results, session
from kperf.results import Profile

__version__ = "0.1.0"

__all__ = [
    "CompileReport",
    "KperfError",
    "Profile",
    "ProfileConfig",
    "ProfiledKernel",
    "compile",
    "enter_scope",
    "exit_scope",
    "last",
    "profile",
    "results",
    "scope",
    "session",
]
