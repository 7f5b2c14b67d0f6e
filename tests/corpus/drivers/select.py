"""Choose the kernels ``tests/corpus/`` keeps from a recording, so that the corpus check stays fast.

    python3 tests/corpus/drivers/select.py RECORDED_DIR tests/corpus [--max-seconds 2]

``RECORDED_DIR`` holds what ``record_gpu.sh`` wrote (``inductor.tar.xz``, ``liger.tar.xz``,
``torch.tar.xz``).  Liger-Kernel's and PyTorch's kernels are kept whole.  Inductor's are many (under
``max-autotune`` every matmul template config is a kernel of its own), so they are taken family by
family (the kernel's name without Inductor's counter, and its first pointer type): one of each family in
turn, in TTIR-hash order, until a kind's quota is met.  A kernel that Triton alone (no kperf) takes more
than ``--max-seconds`` to compile from its TTIR on this machine is passed over and named: some
persistent TMA matmul configs in fp32 become 900 KB of PTX and a minute of ptxas, which would be most
of the check's time and test nothing the others do not.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import tempfile
import time

import triton

from kperf import corpus, triton_compat

QUOTAS = {"inductor": {"triton_mm_persistent_tma": 12, "triton_mm": 12, "triton_tem": 12, "other": 100}}


def _kind(name: str, quotas: dict) -> str:
    return next((k for k in quotas if k != "other" and name.startswith(k)), "other")


def _family(k: corpus.Kernel) -> tuple[str, str]:
    pointer = next((t for t in k.signature.values() if isinstance(t, str) and t.startswith("*")), "")
    return re.sub(r"_\d+$", "", k.name), pointer


def plain_seconds(k: corpus.Kernel) -> float:
    """How long Triton takes to compile ``k`` from its TTIR without kperf, in a cache of its own."""
    with tempfile.TemporaryDirectory() as tmp, triton_compat.knobs_set({"cache.dir": tmp}):
        path = os.path.join(tmp, f"{k.id}.ttir")
        with open(path, "w") as f:
            f.write(k.ttir)
        start = time.perf_counter()
        triton.compile(path, target=triton_compat.gpu_target(), options=corpus.replay_options(k))
        return time.perf_counter() - start


def select(kernels: list[corpus.Kernel], quotas: dict, max_seconds: float) -> list[corpus.Kernel]:
    """Up to each kind's quota, one kernel of each family in turn (TTIR-hash order within a family)."""
    chosen = []
    for kind, quota in quotas.items():
        families = collections.defaultdict(list)
        for k in sorted(kernels, key=lambda k: k.to_json()["ttir_sha256"]):
            if _kind(k.name, quotas) == kind:
                families[_family(k)].append(k)
        queues = [families[f] for f in sorted(families)]
        taken = []
        while len(taken) < quota and any(queues):
            for q in queues:
                while q and len(taken) < quota:
                    k = q.pop(0)
                    seconds = plain_seconds(k)
                    if seconds <= max_seconds:
                        taken.append(k)
                        break
                    print(f"  passed over {k.id}: Triton takes {seconds:.1f} s to compile it")
        chosen += taken
    return chosen


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recorded")
    p.add_argument("out")
    p.add_argument("--max-seconds", type=float, default=2.0)
    args = p.parse_args()
    for label in ("inductor", "liger", "torch"):
        recorded = corpus.load(os.path.join(args.recorded, f"{label}.tar.xz"))
        kept = select(recorded.kernels, QUOTAS[label], args.max_seconds) if label in QUOTAS \
            else recorded.kernels
        out = corpus.Corpus()
        out.add(kept, recorded.sources)
        corpus.save(out, os.path.join(args.out, f"{label}.tar.xz"))
        print(f"{label}: kept {len(out.kernels)} of {len(recorded.kernels)} kernels "
              f"({len(out.sources)} source files)", flush=True)


if __name__ == "__main__":
    main()
