"""In-kernel API: ``with kperf.scope("name"):`` and ``kperf.enter_scope`` / ``kperf.exit_scope``.

Works in ``@triton.jit`` and Gluon (``@gluon.jit``) kernels.  Each call puts one record carrier into
the kernel (see ``kperf.dialect.record``).  A kernel compiled without profiling keeps the carriers
as PTX comments, so its SASS is the same as without them: scopes cost nothing when kperf is off.
"""

from __future__ import annotations

from kperf import triton_compat
from kperf.dialect.errors import KperfError
from kperf.dialect.record import RecordOp


def _emit(kind: str, name, _semantic) -> None:
    if _semantic is None:
        raise KperfError("kperf scopes can only be used inside a @triton.jit or Gluon kernel",
                         fix="call kperf.scope / enter_scope / exit_scope in kernel code")
    name = triton_compat.constexpr_value(name)
    if not isinstance(name, str):
        raise KperfError(f"kperf scope names must be compile-time strings, got {type(name).__name__}",
                         fix='pass a string literal: kperf.scope("load")')
    op = RecordOp(kind, name)
    builder = _semantic.builder
    builder.create_inline_asm(*op.carrier_builder_args(builder.get_int32_ty()))


@triton_compat.builtin
def enter_scope(name, _semantic=None):
    """Record the start of scope ``name`` in this warp's stream."""
    _emit("start", name, _semantic)


@triton_compat.builtin
def exit_scope(name, _semantic=None):
    """Record the end of scope ``name``; must follow its ``enter_scope`` in the same block."""
    _emit("end", name, _semantic)


class scope:
    """``with kperf.scope("name"):`` inside a kernel brackets the body with a start and an end record.

    Examples:
        >>> @triton.jit
        ... def kernel(...):
        ...     for k in range(0, K, BK):
        ...         with kperf.scope("load"):
        ...             a = tl.load(a_ptrs)
    """

    def __init__(self, name, _semantic=None):
        self.name = name
        self._semantic = _semantic

    def __enter__(self):
        if self._semantic is None:
            _emit("start", self.name, None)  # raises: not inside a kernel
        enter_scope(self.name, _semantic=self._semantic)
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        exit_scope(self.name, _semantic=self._semantic)
        return False
