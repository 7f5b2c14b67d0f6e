"""Profile a multi-GPU job: one kperf session per rank, its profile tagged, its clock exchanged.

    torch.distributed.init_process_group("nccl")          # under torchrun, as the job already does
    with kperf.distributed.session("out/") as s:           # on every rank
        train_step(...)
    # every rank wrote out/rank<r>.kperf; then, anywhere:  kperf merge out/ --out out/merged.json

A ``session`` here is ``kperf.session`` plus what a multi-GPU job needs:

- the rank, world size and backend come from ``torch.distributed`` (initialised by the job; none:
  rank 0 of 1), the host name and GPU from the process;
- at the start and at the end of the block every rank takes part in a clock exchange over the job's
  own process group, with the collective library the job uses (``barrier`` and
  ``all_gather_object``; no socket or file of kperf's own): first a probe of its GPU's globaltimer
  against its host clock (:mod:`kperf.gpu_clock`), then ``rounds`` barriers, each bracketed by host
  clock reads (``time.time_ns``, ``CLOCK_REALTIME``), then one gather of all those readings and of
  each rank's clock domain (host name and boot id: ranks of one machine read one clock, and need
  no barrier bound).  The exchange costs about a millisecond at each end of the block (plus, the
  first time, compiling the probe and whatever the first collective sets up), outside anything it
  profiles;
- on exit each rank saves ``out_dir/rank<r>.kperf``, an ordinary saved profile plus a rank record
  (:mod:`kperf.tracing.rank_file`) holding its readings and rank 0's, from which ``kperf merge``
  computes every rank's offset to rank 0 with an error bound (:mod:`kperf.tracing.clock_sync`).

Rank 0 prints where the files went and the exchange's worst error bound.  Every rank must enter and
leave the block (the exchange is collective, as every collective of the job is).
"""

from __future__ import annotations

import os
import pathlib
import socket
import sys
import time
from collections.abc import Callable

from kperf import api
from kperf.dialect.errors import KperfError

DEFAULT_ROUNDS = 16  # barrier rounds per exchange (the narrowest round bounds the offset)
GPU_ROUNDS = 8  # GPU probe rounds per exchange


def world(group=None) -> tuple[int, int, str | None]:
    """``(rank, world size, backend)`` from ``torch.distributed``; ``(0, 1, None)`` outside a job."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(group), dist.get_world_size(group), str(dist.get_backend(group))
    size = os.environ.get("WORLD_SIZE", "1")
    if size.isdigit() and int(size) > 1:
        raise KperfError(f"kperf.distributed.session: WORLD_SIZE is {size} but torch.distributed is not "
                         "initialised, so the ranks cannot exchange clocks",
                         fix="call torch.distributed.init_process_group(...) before entering the session")
    return 0, 1, None


def _device() -> tuple[str | None, int | None]:
    import torch
    try:
        if torch.cuda.is_available():
            i = torch.cuda.current_device()
            return torch.cuda.get_device_name(i), i
    except Exception:  # noqa: BLE001 - no usable driver: the name is optional
        pass
    return None, None


def clock_domain() -> str | None:
    """Which host clock this process reads: host name and kernel boot id (``None`` where Linux's
    boot id is not readable).  Processes of one domain read one ``CLOCK_REALTIME``: their offset is 0."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        return None
    return f"{socket.gethostname()}/{boot}" if boot else None


def exchange(phase: str, group=None, *, rounds: int = DEFAULT_ROUNDS, clock: Callable[[], int] = time.time_ns,
             gpu_probe: str | Callable = "auto", domain: str | None = None) -> tuple[dict, list[dict] | None]:
    """One clock exchange: ``(this rank's sync record, every rank's readings or None outside a job)``.

    ``gpu_probe``: a :func:`kperf.gpu_clock.probe` method name, or a callable returning
    ``(method, samples)`` (tests simulate GPUs with it).  ``domain``: this rank's clock domain
    (:func:`clock_domain`; ``None`` when ``clock`` is not the machine's own)."""
    import torch.distributed as dist
    if callable(gpu_probe):
        method, gpu = gpu_probe()
    else:
        from kperf.gpu_clock import probe
        method, gpu = probe(GPU_ROUNDS, gpu_probe, clock)
    joined = dist.is_available() and dist.is_initialized()
    kw = {}
    if joined and dist.get_backend(group) == "nccl":
        import torch
        kw["device_ids"] = [torch.cuda.current_device()]
    host = []
    for _ in range(rounds if joined else 1):
        entered = clock()
        if joined:
            dist.barrier(group=group, **kw)
        host.append([entered, clock()])
    mine = {"host": host, "gpu": gpu, "gpu_method": method, "domain": domain}
    everyone = None
    if joined:
        everyone = [None] * dist.get_world_size(group)
        dist.all_gather_object(everyone, mine, group=group)
    ref = everyone[0] if everyone else mine
    record = {"phase": phase, "host": host, "host_ref": ref["host"], "gpu_method": method, "gpu": gpu,
              "gpu_ref": ref["gpu"], "gpu_ref_method": ref["gpu_method"], "domain": domain,
              "domain_ref": ref["domain"]}
    return record, everyone


def worst_bound(everyone: list[dict]) -> float:
    """The largest error bound (ns) of any rank's offset to rank 0 in one gathered exchange."""
    from kperf.tracing.clock_sync import sync_point
    ref = everyone[0]
    errs = [sync_point({"host": e["host"], "host_ref": ref["host"], "gpu": e["gpu"], "gpu_ref": ref["gpu"],
                        "domain": e["domain"], "domain_ref": ref["domain"]}, i == 0).delta.err
            for i, e in enumerate(everyone)]
    return max(errs)


class session(api.session):
    """``kperf.session`` for one rank of a multi-GPU job (module docstring).

    Args:
        out_dir: the folder every rank writes ``rank<r>.kperf`` into (shared or not: ``kperf merge``
            takes files from anywhere); a path ending in ``.kperf`` is this rank's file itself.
        group: the process group whose ranks are profiled (default: the whole job).
        rounds: barrier rounds per clock exchange.
        gpu_probe: ``"auto"`` (pingpong, else bracket), ``"pingpong"``, ``"bracket"``, ``"none"`` or a
            callable returning ``(method, samples)``.
        clock: the host clock, ns (default ``time.time_ns``, CLOCK_REALTIME).
        kernels, config, on_trace_ready, options: as for ``kperf.session``.
    """

    def __init__(self, out_dir=None, *, group=None, rounds: int = DEFAULT_ROUNDS, gpu_probe="auto",
                 clock: Callable[[], int] = time.time_ns, **kwargs):
        super().__init__(out_dir, **kwargs)
        if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
            raise KperfError(f"kperf.distributed.session: rounds must be a positive int, got {rounds!r}")
        if not callable(gpu_probe):
            from kperf.gpu_clock import METHODS
            if gpu_probe not in METHODS:
                raise KperfError(f"kperf.distributed.session: gpu_probe={gpu_probe!r} is not a probe",
                                 fix=f"use one of {', '.join(METHODS)}")
        self.group, self.rounds, self.gpu_probe, self.clock = group, rounds, gpu_probe, clock
        self.sync: list[dict] = []
        self.rank, self.world_size, self.backend = 0, 1, None
        self.files: dict[str, str] = {}

    def __enter__(self):
        self.rank, self.world_size, self.backend = world(self.group)
        self.sync = [self._exchange("start")[0]]
        return super().__enter__()

    def __exit__(self, exc_type, exc, tb):
        everyone = None
        if exc_type is None:
            import torch
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.synchronize()  # every profiled launch ran before the end's readings
            from kperf.runtime import mode_override
            with mode_override(""):  # the probe kernel compiles and runs plain, as at the start
                record, everyone = self._exchange("end")
            self.sync.append(record)
        result = super().__exit__(exc_type, exc, tb)
        if self.rank == 0 and everyone and self.files:
            print(f"kperf: rank 0 of {self.world_size} saved {self.files['profile']} (clock alignment error "
                  f"bound <= {worst_bound(everyone) / 1000:.1f} us); once every rank's file is there: "
                  f"kperf merge {self.out_dir}", file=sys.stderr)
        return result

    def _exchange(self, phase: str):
        domain = clock_domain() if self.clock is time.time_ns else None  # a clock of the caller's: its own
        return exchange(phase, self.group, rounds=self.rounds, clock=self.clock, gpu_probe=self.gpu_probe,
                        domain=domain)

    def tag(self) -> dict:
        """This rank's record (:mod:`kperf.tracing.rank_file`)."""
        from kperf.tracing.rank_file import TAG_FORMAT, TAG_VERSION
        name, index = _device()
        local = os.environ.get("LOCAL_RANK", "")
        return {"format": TAG_FORMAT, "version": TAG_VERSION, "rank": self.rank,
                "world_size": self.world_size,
                "local_rank": int(local) if local.isdigit() else None, "host": socket.gethostname(),
                "device": name, "device_index": index, "pid": os.getpid(), "backend": self.backend,
                "sync": self.sync}

    def save(self, dir_or_file) -> dict[str, str]:
        """Write this rank's tagged profile (``<dir>/rank<r>.kperf``, or the ``.kperf`` path given)."""
        from kperf.tracing.rank_file import rank_file_name, save_rank_profile
        from kperf.tracing.saved import SUFFIX
        target = pathlib.Path(dir_or_file)
        path = target if target.suffix == SUFFIX else target / rank_file_name(self.rank)
        tag = self.tag()
        self.files = {"profile": save_rank_profile(path, self.named(), tag, device=tag["device"])}
        return self.files
