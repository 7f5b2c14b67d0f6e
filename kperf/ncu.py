"""Run a script's kernels under Nsight Compute (``ncu``) while kperf profiles them, and store ncu's memory
numbers in the saved profile (``OUT/profile.kperf``'s ``traffic.json`` member, :mod:`kperf.tracing.traffic`).

One run does both: ``ncu ... python -m kperf.cli run --out OUT script.py``.  ncu replays each kernel
to read its counters and restores the memory the kernel wrote, so the kperf records and the script's
results are as without ncu; the kperf records add a few stores per scope to the measured bytes.
``--clock-control none`` leaves the GPU's clocks alone (byte counts do not depend on them); ncu's
default cache control flushes the caches before each measured launch, so DRAM bytes are those of a
cold L2, the case the compulsory traffic describes.

Metric names differ between ncu versions and chips: the available ones are asked of ncu first
(``--query-metrics``) and any that this ncu lacks is left out with a note rather than failing the run.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys

from kperf.dialect.errors import KperfError
from kperf.tracing import traffic

_PERM = "ERR_NVGPUCTRPERM"


def find_ncu(explicit: str | None = None) -> str:
    """The ncu executable: ``explicit``, ``$KPERF_NCU``, ``ncu`` on the PATH, or CUDA's and Nsight's
    folders."""
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        raise KperfError(f"--ncu: no executable at {explicit}", fix="give the path of Nsight Compute's ncu")
    for cand in (os.environ.get("KPERF_NCU"), shutil.which("ncu"),
                 *sorted(glob.glob("/usr/local/cuda*/bin/ncu"), reverse=True),
                 *sorted(glob.glob("/opt/nvidia/nsight-compute/*/ncu"), reverse=True)):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise KperfError("Nsight Compute (ncu) was not found (PATH, /usr/local/cuda*/bin, "
                     "/opt/nvidia/nsight-compute)",
                     fix="install Nsight Compute, or pass --ncu PATH or set KPERF_NCU")


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, text=True, **kw)
    except OSError as e:
        raise KperfError(f"cannot run {cmd[0]}: {e.strerror or e}",
                         fix="check the ncu path (--ncu)") from None


def ncu_version(ncu: str) -> str:
    r = _run([ncu, "--version"], capture_output=True, timeout=60)
    return (r.stdout.strip().splitlines() or ["unknown"])[-1]


def available_metrics(ncu: str) -> set[str] | None:
    """Base names of the metrics this ncu offers on this GPU; None when ncu cannot say."""
    r = _run([ncu, "--query-metrics"], capture_output=True, timeout=300)
    names = set(re.findall(r"^\s*([a-z0-9]+__[a-z0-9_]+)\b", r.stdout, flags=re.M))
    return names or None


def choose_metrics(wanted: list[str], offered: set[str] | None) -> tuple[list[str], list[str]]:
    """(the metrics to ask for, those this ncu lacks); ``launch__`` and ``device__`` ones are always there."""
    if offered is None:
        return list(wanted), []
    keep = [m for m in wanted if m.split(".")[0] in offered or m.startswith(("launch__", "device__"))]
    return keep, [m for m in wanted if m not in keep]


def _check(r: subprocess.CompletedProcess, what: str) -> None:
    text = (r.stdout or "") + (r.stderr or "")
    if _PERM in text:
        raise KperfError(f"{what}: ncu may not read the GPU's performance counters ({_PERM})",
                         fix="run as root, or let users profile: the NVIDIA driver option "
                             "NVreg_RestrictProfilingToAdminUsers=0 (see ERR_NVGPUCTRPERM in NVIDIA's docs)")


def measure(out: str, script: str, args: list[str], *, ncu: str | None = None, kernels: str | None = None,
            auto: str | None = None, metrics: list[str] | None = None, run_flags: list[str] | None = None,
            problems: list[dict] | None = None) -> dict:
    """Profile ``script`` with kperf under ncu; store the measured traffic in ``OUT/profile.kperf`` and return
    it (:func:`kperf.tracing.traffic.build`)."""
    from kperf.tracing.saved import read_manifest
    exe = find_ncu(ncu)
    keep, lacking = choose_metrics(list(metrics or traffic.METRICS), available_metrics(exe))
    os.makedirs(out, exist_ok=True)
    report = os.path.join(out, "ncu_report")
    cmd = [exe, "--metrics", ",".join(keep), "--clock-control", "none", "--target-processes", "all",
           "--export", report, "--force-overwrite"]
    if kernels:
        cmd += ["--kernel-name", f"regex:{kernels}"]
    cmd += [sys.executable, "-m", "kperf.cli", "run", "--out", out]
    cmd += ["--kernels", kernels] if kernels else []
    cmd += (["--auto", auto] if auto else []) + list(run_flags or [])
    cmd += [script, *args]
    r = _run(cmd, capture_output=True)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    _check(r, "kperf ncu")
    if r.returncode != 0:
        raise KperfError(f"the script under ncu exited with status {r.returncode}",
                         fix="see its output above; run it with kperf run first")
    raw = _run([exe, "--import", report + ".ncu-rep", "--csv", "--page", "raw", "--print-units", "base"],
               capture_output=True, timeout=600)
    _check(raw, "ncu --import")
    rows, units = traffic.parse_raw_csv(raw.stdout)
    profile = os.path.join(out, "profile.kperf")
    manifest = read_manifest(profile)
    info = {"path": exe, "version": ncu_version(exe), "command": cmd, "metrics": keep, "lacking": lacking}
    data = traffic.build(manifest, rows, units, ncu=info, device=device_info(manifest.get("device")),
                         problems=problems)
    if lacking:
        data["notes"].append(f"this ncu lacks {', '.join(lacking)}; left out")
    traffic.save(profile, data)  # the traffic.json member; the launches' members are copied as they are
    stale = traffic.sidecar_path(profile)  # an earlier kperf ncu's numbers, of the profile just replaced
    if os.path.isfile(stale):
        os.remove(stale)
    return data


def device_info(name: str | None) -> dict:
    """The GPU's name, L2 bytes, shared memory per SM and SM count, from torch when it sees the GPU."""
    info: dict = {"name": name}
    try:
        import torch
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            info.update(name=p.name, l2_bytes=getattr(p, "L2_cache_size", None), sms=p.multi_processor_count,
                        smem_per_sm_bytes=getattr(p, "shared_memory_per_multiprocessor", None))
    except Exception:  # noqa: BLE001 - the names and sizes are a convenience; bounds fall back to known GPUs
        pass
    return {k: v for k, v in info.items() if v is not None}
