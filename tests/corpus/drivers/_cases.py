"""What the corpus drivers share: run named cases one by one, each failure reported and skipped.

A driver is recorded with ``kperf corpus record OUT -- driver.py``; a case that fails (an API a library
changed, a kernel Triton refuses) is printed and the driver goes on, so one bad case costs its own
kernels only.  ``CORPUS_SECONDS`` bounds a driver's time: cases not started by then are listed as such.
"""

from __future__ import annotations

import os
import time
import traceback

import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: a dry run (kernels compile, launch nothing)
_DEADLINE = time.monotonic() + float(os.environ.get("CORPUS_SECONDS", "1e9"))


class Cases:
    def __init__(self, name: str):
        self.name = name
        self.ok: list[str] = []
        self.failed: list[str] = []
        self.late: list[str] = []

    def run(self, name: str, fn) -> None:
        if time.monotonic() > _DEADLINE:
            self.late.append(name)
            return
        start = time.monotonic()
        try:
            fn()
            if DEVICE == "cuda":
                torch.cuda.synchronize()
        except Exception as e:  # a case that fails costs its own kernels only
            self.failed.append(name)
            print(f"case {name}: FAILED {type(e).__name__}: {str(e)[:300]}", flush=True)
            traceback.print_exc(limit=4)
            return
        self.ok.append(name)
        print(f"case {name}: ok in {time.monotonic() - start:.1f} s", flush=True)

    def summary(self) -> None:
        print(f"{self.name}: {len(self.ok)} cases ok, {len(self.failed)} failed "
              f"({', '.join(self.failed) or '-'}), {len(self.late)} not started by CORPUS_SECONDS "
              f"({', '.join(self.late) or '-'})", flush=True)


def backward(*outputs) -> None:
    """Backpropagate a random projection of every floating-point output that needs a gradient."""
    outs = [o for o in outputs if isinstance(o, torch.Tensor) and o.requires_grad]
    loss = sum((o.float() * torch.randn_like(o, dtype=torch.float32)).sum() for o in outs)
    loss.backward()


def randn(*shape, dtype=torch.float32, grad=False, scale=1.0):
    t = torch.randn(shape, device=DEVICE, dtype=torch.float32).mul_(scale).to(dtype)  # shape () too
    return t.requires_grad_(grad)
