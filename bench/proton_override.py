"""Upstream Proton on the warp-specialized attention kernel, at the record sites kperf uses.

Proton places records from source scopes, and Triton's warp specialization deletes scopes inside a
``warp_specialize`` loop, so Proton cannot be measured on ``examples/attention.py`` from the source.
Proton does accept TTGIR override files holding ``proton.record start|end "name"`` ops (Triton's own
``TRITON_KERNEL_OVERRIDE=1`` / ``TRITON_OVERRIDE_DIR`` under Proton's instrumentation backend), so:

1. ``dump``: the kernel's final TTGIR for the benchmarked shape and configuration (kperf's dump
   machinery, ``kperf.override.dumped``; the folder is Triton's ``_base32(src.hash())``, so Triton's
   override manager finds the file);
2. ``insert_records``: kperf's automatic insertion (``mma,tma``) into a copy of that folder, written as
   readable ``kperf.record`` lines;
3. ``to_proton``: the same lines, op keyword ``kperf.record`` -> ``proton.record`` (same positions, same
   names), in a third folder, rewritten token-exact with kperf's TTGIR tokenizer;
4. ``measure`` (GPU): plain vs Proton-with-override kernel times from the torch profiler (CUPTI), the
   same kernel-only method as bench.overhead (``bench.timing``); the Proton output must equal the
   plain output bit for bit, the compiled kernel must hold the override's records, and the events
   Proton kept and dropped are read from its per-CTA buffer headers.

``cpu_instrumentation`` registers Proton's real lowering passes with Triton's NVIDIA backend exactly as
``triton.profiler``'s ``InstrumentationHook.activate`` of the installed Triton does (through
``kperf.triton_compat``), minus the two device queries (maximum shared memory, backend), so the
proton-syntax folder can be compiled to a cubin on a machine without a GPU
(tests/unit/test_proton_override.py).

    python3 -m bench.proton_override --out /tmp/proton_attn            # GPU: folders + timing
    python3 -m bench.proton_override --out /tmp/proton_attn --cpu      # folders + sm_90 compile only
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import shutil
import statistics
import sys

import numpy as np

from bench.timing import against_plain, device_times_ms, iqr
from kperf import override
from kperf.dialect.errors import KperfError
from kperf.dialect.ttgir_text import scan, tokenize_line
from kperf.examples import attention as A

KERNEL = "attn_fwd_kernel"
SELECTORS = "mma,tma"
H100_MAX_SHARED = 232448  # bytes per block (sm_90 opt-in maximum), what the hook reads from the device
PROTON_PREAMBLE = 0xDEADBEEF  # first word of each CTA's Proton buffer (CircularLayoutParser's kPreamble)
PROTON_CTA_HEADER_WORDS = 4  # preamble, block id, SM id, buffer bytes; then one u32 count per warp


# -- 1. dump ------------------------------------------------------------------------------------------------

def attention_source(n_ctx: int = 8192, head_dim: int = 128):
    """The ``ASTSource`` of the benchmarked configuration, with the JIT's attributes for ``Z=4, H=16``.

    The JIT marks pointers and integers divisible by 16 as ``tt.divisibility = 16``; ``Z = 4`` is not, so
    it gets no attribute (the attributes enter Triton's folder hash, which must match the launch's).
    """
    from triton.compiler import ASTSource
    sig = A.signature("fp16")
    names = list(A.attn_fwd_kernel.arg_names)
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n, t in sig.items()
             if t.startswith("*") or n == "H"}
    return ASTSource(A.attn_fwd_kernel, sig, A.constexprs(n_ctx=n_ctx, head_dim=head_dim), attrs)


def jit_source(fn, instrumentation_mode: str = "", options: dict | None = None):
    """``(src, options)`` of a kernel the JIT has compiled (exact attributes, so exact folder hash).

    ``options`` are the launch's (default ``examples/attention.py``'s): the compiled kernel's
    ``metadata.num_warps`` counts the warp-specialized partitions' warps too (12, not the 4 asked
    for), and Triton refuses a num_warps that is not a power of two."""
    import torch
    caches = fn.device_caches[torch.cuda.current_device()][0]
    for k in caches.values():
        if getattr(k.metadata, "instrumentation_mode", "") == instrumentation_mode:
            return k.src, dict(options or A.COMPILE_OPTIONS)
    raise KperfError(f"the JIT has not compiled {fn.__name__} with instrumentation_mode="
                     f"{instrumentation_mode!r}", fix="launch the plain kernel once before dumping")


def dump(folder, src=None, options=None, target=None) -> pathlib.Path:
    """Write the final TTGIR of ``src`` (default: ``attention_source()``) into ``folder``; return the file."""
    import triton
    from triton.backends.compiler import GPUTarget

    from kperf import stages
    src = src if src is not None else attention_source()
    options = dict(options or A.COMPILE_OPTIONS)
    target = target or GPUTarget("cuda", 90, 32)
    stages.install()
    with override.dumped(folder) as written:
        triton.compile(src, target=target, options={**options, "instrumentation_mode": ""})
    files = sorted(set(written))
    if len(files) != 1:
        raise KperfError(f"expected one dumped TTGIR file, got {files}")
    return pathlib.Path(files[0])


# -- 2. insert ----------------------------------------------------------------------------------------------

def insert_records(dump_dir, out_dir, selectors: str = SELECTORS) -> int:
    """kperf's automatic insertion into a copy of ``dump_dir`` (``out_dir``); returns the record count."""
    shutil.rmtree(out_dir, ignore_errors=True)
    done = override.insert(dump_dir, selectors, kernels=KERNEL, out=out_dir)
    return sum(n for _, n in done)


# -- 3. kperf.record -> proton.record -----------------------------------------------------------------------

def proton_text(text: str, path: str = "<ttgir>") -> tuple[str, int]:
    """``text`` with each ``kperf.record`` line's op keyword replaced by ``proton.record``; (text, count).

    Only the keyword token changes (column-exact from the tokenizer): the kind, the name string and
    the trailing ``loc(...)`` stay as they were.  Carriers (records already lowered to inline asm) have
    no Proton equivalent and are refused.
    """
    mod = scan(text, path)
    lines = list(mod.lines)
    n = 0
    for site in mod.sites:
        if not site.textual:
            raise KperfError(f"a kperf carrier (inline asm) at line {site.lineno} has no Proton equivalent",
                             where=f"{path}:{site.lineno}",
                             fix="write records as `kperf.record` lines (kperf insert does)")
        line = lines[site.lineno - 1]
        tok = tokenize_line(line, site.lineno, path)[0]
        if tok.text == "proton.record":
            n += 1
            continue
        lines[site.lineno - 1] = line[:tok.start] + "proton.record" + line[tok.end:]
        n += 1
    return "\n".join(lines) + "\n", n


def to_proton(src_dir, out_dir) -> int:
    """Copy ``src_dir`` to ``out_dir`` with every record line in Proton's syntax; returns the count."""
    shutil.rmtree(out_dir, ignore_errors=True)
    total = 0
    for f in override.kernel_files(src_dir):
        dest = pathlib.Path(out_dir, f.parent.name, f.name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        text, n = proton_text(f.read_text(), str(f))
        dest.write_text(text)
        total += n
    return total


def build_folders(out, src=None, options=None, selectors: str = SELECTORS) -> dict:
    """Steps 1-3 under ``out``: ``dump/``, ``kperf/`` and ``proton/``; returns what was written."""
    out = pathlib.Path(out)
    ttgir = dump(out / "dump", src, options)
    n_kperf = insert_records(out / "dump", out / "kperf", selectors)
    n_proton = to_proton(out / "kperf", out / "proton")
    if n_proton != n_kperf:
        raise KperfError(f"{n_kperf} kperf records but {n_proton} proton records were written")
    return {"dump": str(ttgir), "kperf_dir": str(out / "kperf"), "proton_dir": str(out / "proton"),
            "hash_folder": ttgir.parent.name, "records": n_kperf, "selectors": selectors}


# -- Triton's override + Proton's lowering ------------------------------------------------------------------

@contextlib.contextmanager
def triton_override(folder):
    """Triton's own override (``TRITON_KERNEL_OVERRIDE=1 TRITON_OVERRIDE_DIR=folder``), compiling afresh."""
    import triton
    c = triton.knobs.compilation
    saved = (c.override, triton.knobs.cache.override_dir, c.always_compile)
    c.override, triton.knobs.cache.override_dir, c.always_compile = True, os.fspath(folder), True
    try:
        yield
    finally:
        c.override, triton.knobs.cache.override_dir, c.always_compile = saved


def cpu_instrumentation(mode_spec: str = "default", max_shared_mem: int = H100_MAX_SHARED):
    """Proton's instrumentation passes registered with the NVIDIA backend, without a device.

    Mirrors ``InstrumentationHook.activate`` of the installed Triton (how Proton joins the pipeline
    changed between releases: ``kperf.triton_compat.proton_instrumentation``); the device's maximum
    shared memory is given instead of queried.  A context manager yielding the mode string to put in the
    compile options' ``instrumentation_mode``.
    """
    from kperf import triton_compat
    return triton_compat.proton_instrumentation(mode_spec, max_shared_mem)


def compile_with_proton(proton_dir, src=None, options=None, target=None, mode_spec: str = "default"):
    """Compile through Triton's override of ``proton_dir`` with Proton's lowering, no GPU needed."""
    import triton
    from triton.backends.compiler import GPUTarget
    src = src if src is not None else attention_source()
    options = dict(options or A.COMPILE_OPTIONS)
    with cpu_instrumentation(mode_spec) as mode, triton_override(proton_dir):
        return triton.compile(src, target=target or GPUTarget("cuda", 90, 32),
                              options={**options, "instrumentation_mode": mode})


# -- Proton's buffer: events kept and dropped -------------------------------------------------------------

def proton_event_counts(buffer: np.ndarray, scratch_bytes: int, n_ctas: int, n_warps: int) -> dict:
    """Events each warp recorded vs what Proton's circular per-CTA buffer kept (vectorised).

    Per CTA (``scratch_bytes`` apart): ``0xdeadbeef``, block id, SM id, buffer bytes, then one u32 event
    count per warp, then the buffer split evenly between warps, 8 bytes an event; a warp that
    recorded more than its share keeps the last ones (Proton's parser warns "first N events are
    dropped").
    """
    cta_words = scratch_bytes // 4
    words = np.frombuffer(buffer, dtype=np.uint32)[:n_ctas * cta_words].reshape(n_ctas, cta_words)
    ok = words[:, 0] == PROTON_PREAMBLE
    counts = words[:, PROTON_CTA_HEADER_WORDS:PROTON_CTA_HEADER_WORDS + n_warps].astype(np.int64)
    cap = (words[:, 3].astype(np.int64) // n_warps // 8)[:, None]
    kept = np.minimum(counts, cap)
    if ok.any() and int(counts[ok].max()) > 1 << 24:  # not a count: the header is laid out otherwise
        return {"ctas": int(n_ctas), "ctas_with_header": int(ok.sum()), "warps_per_cta": int(n_warps),
                "events_per_warp_capacity": int(cap[ok].min()), "events_recorded": None,
                "events_kept": None, "events_dropped": None, "events_recorded_per_warp_max": None,
                "problem": "Proton's per-warp counts are not where this reader expects them (implausible "
                           f"values up to {int(counts[ok].max())}); see Proton's own 'events are dropped' "
                           "warnings in the log"}
    return {"ctas": int(n_ctas), "ctas_with_header": int(ok.sum()), "warps_per_cta": int(n_warps),
            "events_per_warp_capacity": int(cap[ok].min()) if ok.any() else None,
            "events_recorded": int(counts[ok].sum()), "events_kept": int(kept[ok].sum()),
            "events_dropped": int((counts - kept)[ok].sum()),
            "events_recorded_per_warp_max": int(counts[ok].max()) if ok.any() else None,
            "problem": None if ok.all() else f"{int((~ok).sum())} of {n_ctas} CTAs lack Proton's "
                                              f"0x{PROTON_PREAMBLE:x} header (layout changed?)"}


# -- 4. measuring on a GPU ----------------------------------------------------------------------------------

def measure(run, kernel, ref, n: int, kernel_name: str, proton_dir, plain_ms: float, *, n_ctas: int,
            expected_records: int, mode_spec: str = "default") -> dict:
    """Proton (instrumentation backend, ``mode_spec``) with Triton's override of ``proton_dir``.

    ``run(kernel)`` launches and returns the output; ``ref`` is the plain output.  Returns times,
    overhead vs ``plain_ms``, output identity, the records found in the compiled kernel and the
    events Proton kept/dropped in the first launch.
    """
    import tempfile

    import torch
    import triton.profiler as proton
    from triton.profiler.hooks.hook import HookManager
    from triton.profiler.hooks.instrumentation import InstrumentationHook

    from kperf.passes.warp_roles import warp_roles

    tmp = tempfile.mkdtemp(prefix="kperf_proton_ovr_")
    proton.start(os.path.join(tmp, "proton_attention"), backend="instrumentation", mode=mode_spec)
    try:
        hook = next(h for h in HookManager.active_hooks if isinstance(h, InstrumentationHook))
        with triton_override(proton_dir):
            out = run(kernel)
            torch.cuda.synchronize()
        identical = bool(torch.equal(out, ref))
        compiled = jit_kernel(kernel, str(hook.mode))
        ttgir = compiled.asm["ttgir"]
        records = ttgir.count("proton.record")
        if records != expected_records:
            raise KperfError(f"the Proton-compiled kernel holds {records} proton.record ops, the override "
                             f"folder {expected_records}: Triton did not apply the override",
                             where=os.fspath(proton_dir),
                             fix="dump from the JIT's own source (jit_source) so the folder hash matches")
        scratch = int(compiled.metadata.profile_scratch_size)
        buf = hook.buffer.cpu().numpy()
        events = proton_event_counts(buf, scratch, n_ctas, len(warp_roles(ttgir)))
        times = device_times_ms(lambda: run(kernel), n, kernel_name)
    finally:
        proton.finalize()
    return {**against_plain(times, plain_ms, "proton_"), "proton_output_identical": identical,
            "proton_ms_all": times, "proton_mode": mode_spec,
            "proton_records": records, "proton_profile_scratch_bytes": scratch,
            "proton_shared_bytes": int(compiled.metadata.shared), "proton_events": events,
            "proton_method": "TTGIR override (Triton TRITON_KERNEL_OVERRIDE) with kperf auto-inserted "
                             f"{SELECTORS} sites rewritten as proton.record"}


def jit_kernel(fn, instrumentation_mode: str):
    import torch
    caches = fn.device_caches[torch.cuda.current_device()][0]
    found = [k for k in caches.values()
             if getattr(k.metadata, "instrumentation_mode", "") == instrumentation_mode]
    if not found:
        raise KperfError(f"no {fn.__name__} compiled with Proton's mode {instrumentation_mode!r}")
    return found[-1]


def prepare_for_case(out, kernel, options: dict | None = None) -> dict:
    """Folders for a kernel the JIT already compiled plain (exact source hash); see ``build_folders``.

    ``options``: the launch's compile options (default ``examples/attention.py``'s)."""
    import triton
    src, options = jit_source(kernel, options=options)
    target = triton.runtime.driver.active.get_current_target()
    out = pathlib.Path(out)
    ttgir = dump(out / "dump", src, options, target)
    shutil.rmtree(out / "kperf", ignore_errors=True)
    done = override.insert(out / "dump", SELECTORS, kernels=kernel.__name__, out=out / "kperf")
    n = sum(c for _, c in done)
    if to_proton(out / "kperf", out / "proton") != n:
        raise KperfError("kperf and proton record counts differ")
    return {"dump": str(ttgir), "proton_dir": str(out / "proton"), "records": n}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--n-ctx", type=int, default=8192)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--mode", default="default", help="Proton instrumentation mode spec (default: default)")
    p.add_argument("--cpu", action="store_true", help="build the folders and compile for sm_90 only")
    args = p.parse_args(argv)
    out = pathlib.Path(args.out)
    if args.cpu:
        info = build_folders(out, attention_source(args.n_ctx))
        k = compile_with_proton(info["proton_dir"], attention_source(args.n_ctx), mode_spec=args.mode)
        info.update(compiled_records=k.asm["ttgir"].count("proton.record"),
                    profile_scratch_bytes=int(k.metadata.profile_scratch_size),
                    shared_bytes=int(k.metadata.shared),
                    cubin_bytes=len(k.asm["cubin"]))
        print(json.dumps(info, indent=1))
        (out / "proton_override.json").write_text(json.dumps(info, indent=1) + "\n")
        return 0
    import torch
    if not torch.cuda.is_available():
        raise SystemExit("timing needs a CUDA GPU; use --cpu to build and compile only")
    torch.manual_seed(0)
    q, k, v = (torch.randn(4, 16, args.n_ctx, 128, device="cuda", dtype=torch.float16) for _ in range(3))

    def run(kern):
        return A.attention(q, k, v, kernel=kern)

    ref = run(A.attn_fwd_kernel).clone()
    info = prepare_for_case(out, A.attn_fwd_kernel)
    plain = device_times_ms(lambda: run(A.attn_fwd_kernel), args.reps, KERNEL)
    pm = statistics.median(plain)
    res = measure(run, A.attn_fwd_kernel, ref, args.reps, KERNEL, info["proton_dir"], pm,
                  n_ctas=(args.n_ctx // 128) * 64, expected_records=info["records"], mode_spec=args.mode)
    res.update(info, plain_ms_median=pm, plain_ms_iqr=iqr(plain), device=torch.cuda.get_device_name())
    (out / "proton_override.json").write_text(json.dumps(res, indent=1, default=float) + "\n")
    ev = res["proton_events"]
    print(f"plain {pm:.4f} ms, proton {res['proton_ms_median']:.4f} ms ({res['proton_overhead']:+.2%}), "
          f"output identical: {res['proton_output_identical']}, records {res['proton_records']}, events "
          f"recorded {ev['events_recorded']} kept {ev['events_kept']} dropped {ev['events_dropped']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
