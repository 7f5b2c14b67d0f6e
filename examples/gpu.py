"""The GPU check every example runs before it touches CUDA: one clear message when there is no GPU.

Without a (suitable) GPU an example stops with ``SystemExit`` and says what works without one:
compiling its kernel (``kperf compile``, which reads the example's ``SIGNATURE``/``CONSTEXPRS``/
``COMPILE_OPTIONS``) and the saved H100 profiles in ``examples/profiles/`` (README, "No GPU? Try
this"), instead of torch's traceback about a missing driver.
"""

from __future__ import annotations

TRY_PROFILES = "kperf report examples/profiles/gemm1024.kperf (real H100 profiles; README: No GPU? Try this)"


def require_gpu(script: str, *, hopper: bool = False, compile_hint: str) -> None:
    """Return when a CUDA GPU (a Hopper one, sm_90, for ``hopper``) is present; otherwise stop the
    example with one message naming what it needs and what to try instead (``compile_hint``: how to
    compile its kernel without a GPU)."""
    import torch
    if torch.cuda.is_available():
        cap = torch.cuda.get_device_capability()
        if not hopper or cap[0] == 9:
            return
        found = f"found {torch.cuda.get_device_name()}, sm_{cap[0]}{cap[1]}"
    else:
        found = "none found"
    need = "a Hopper GPU (sm_90)" if hopper else "a CUDA GPU"
    raise SystemExit(f"{script} needs {need} ({found}). Without one:\n"
                     f"  compile its kernel: {compile_hint}\n"
                     f"  read a real profile: {TRY_PROFILES}")
