"""Golden PTX/SASS of every example kernel and lowering variant, captured before a refactor.

A refactor of the dialect, the passes or the stage hook must not change what a kernel compiles to:
``test_golden.py`` compiles each case below for sm_90 and compares the PTX (debug line info removed:
it names source lines, which move when code moves) and the SASS with the files under
``tests/data/golden/``.  Regenerate them only for a change that is meant to alter the lowering, and
say so in the commit: ``python3 tests/unit/golden_cases.py --write``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import pathlib
import re
import sys

GOLDEN = pathlib.Path(__file__).resolve().parents[1] / "data" / "golden"
_DEBUG_LINE = re.compile(r"^\s*(\.loc|\.file)\b.*$\n?", re.MULTILINE)
_DEBUG_SECTION = re.compile(r"^\s*\.section\s+\.debug_\w+\s*\{.*?^\s*\}\s*$\n?", re.MULTILINE | re.DOTALL)


def normalize_ptx(ptx: str) -> str:
    """The PTX without its debug line table (``.loc``/``.file`` and ``.debug_*`` sections)."""
    return _DEBUG_SECTION.sub("", _DEBUG_LINE.sub("", ptx))


def _cfg(**kw):
    from kperf.dialect.options import ProfileConfig
    return ProfileConfig(**kw)


def _matmul_cases() -> dict:
    from kperf.examples import matmul as mm
    variants = {
        "default": {}, "check": {"fold": False}, "smem": {"store": "smem", "capacity": 520},
        "smem-fold": {"store": "smem", "capacity": 520, "fold": True}, "clock64": {"clock": "clock64"},
        "globaltimer-fold": {"clock": "globaltimer", "fold": True},
        "warpgroup-fold": {"granularity": "warpgroup", "fold": True},
        "cta-fold": {"granularity": "cta", "fold": True}, "warp-mask": {"warp_mask": 0b10010001},
        "cta-stride-4": {"cta_stride": 4, "fold": True}, "sms": {"sms": (0, 1, 64, 131)},
        "cta-stride-noclone": {"cta_stride": 4, "clone": False},
        "wrap-smem": {"strategy": "wrap", "capacity": 512, "store": "smem"},
        "wrap": {"strategy": "wrap", "capacity": 1024},
        "auto-loops-mma-waits": {"auto": "loops,mma,waits"},
    }
    return {f"matmul/{name}": (mm.matmul_kernel, mm.SIGNATURE, mm.CONSTEXPRS, None, mm.COMPILE_OPTIONS, kw)
            for name, kw in variants.items()}


def _attention_cases() -> dict:
    from kperf.examples import attention as A
    out = {}
    for name, kw in {"auto-mma-tma": {"auto": "mma,tma"}, "auto-loops": {"auto": "loops"},
                     "auto-mma-tma-warpgroup": {"auto": "mma,tma", "granularity": "warpgroup"},
                     # the lowering before issue 19: a counter bump at every label, a warp-uniform pointer
                     "auto-mma-tma-premerge": {"auto": "mma,tma", "merge_blocks": False,
                                               "vector_pointer": False}}.items():
        out[f"attention/{name}"] = (A.attn_fwd_kernel, A.SIGNATURE, A.CONSTEXPRS, None, A.COMPILE_OPTIONS, kw)
    return out


def _vector_add_cases() -> dict:
    from kperf.examples import vector_add as va
    sig = {"x_ptr": "*fp32", "y_ptr": "*fp32", "out_ptr": "*fp32", "n": "i32", "BLOCK": "constexpr"}
    return {"vector_add/default": (va.add_kernel, sig, {"BLOCK": 1024}, None, {"num_warps": 4}, {})}


def _gluon_matmul_cases() -> dict:
    import torch
    from triton.runtime.jit import mangle_type

    from kperf.examples import gluon_matmul as gm
    a = torch.empty(8192, 8192, dtype=torch.float16)
    descs = gm.descriptors(a, a, a)
    sig = {"a_desc": mangle_type(descs[0]), "b_desc": mangle_type(descs[1]), "c_desc": mangle_type(descs[2]),
           "STAGES": "constexpr", "num_warps": "constexpr"}
    cx = {"STAGES": gm.STAGES, "num_warps": gm.NUM_WARPS}
    return {f"gluon_matmul/{name}": (gm.gluon_matmul_kernel, sig, cx, {}, {"num_warps": gm.NUM_WARPS}, kw)
            for name, kw in {"default": {}, "warpgroup": {"granularity": "warpgroup"},
                             "warpgroup-smem": {"granularity": "warpgroup", "store": "auto", "capacity": 520},
                             "premerge": {"merge_blocks": False, "vector_pointer": False}}.items()}


def _fa3_cases() -> dict:
    from kperf.examples import fa3_pipelines as fa3
    out = {}
    shapes = [(name, "fp16", 128, False) for name in fa3.PIPELINES]
    shapes += [("ws_pingpong", "fp16", 128, True), ("ws_overlap", "bf16", 64, False)]
    for name, dtype, d, causal in shapes:
        p = fa3.get_pipeline(name)
        key = f"fa3/{name}-{dtype}-d{d}" + ("-causal" if causal else "")
        out[key] = (fa3.fa3_fwd_kernel, fa3.signature(p, dtype=dtype, head_dim=d),
                    p.constexprs(head_dim=d, causal=causal), None, fa3.COMPILE_OPTIONS, {})
    return out


def cases() -> dict:
    return {**_vector_add_cases(), **_matmul_cases(), **_gluon_matmul_cases(), **_attention_cases(),
            **_fa3_cases()}


def build(case) -> tuple[str, str]:
    """(normalized PTX, SASS) of one case's instrumented kernel, compiled for sm_90 through kperf."""
    import triton

    from kperf import compile_api, stages
    from kperf.sass import disassemble
    fn, sig, cx, attrs, options, cfg_kw = case
    fn = compile_api.unwrap_jit(fn)
    attrs = compile_api.default_attrs(sig, fn) if attrs is None else attrs
    stages.install()
    src = compile_api._source_class(fn)(fn, sig, cx, attrs)
    mode = stages.instrumentation_mode(_cfg(**cfg_kw))
    k = triton.compile(src, target=compile_api.parse_target("cuda:90"),
                       options={**options, "instrumentation_mode": mode})
    return normalize_ptx(k.asm["ptx"]), disassemble(k.asm["cubin"])


def file_stem(name: str) -> str:
    return name.replace("/", "__")


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_all(names=None) -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    index_path = GOLDEN / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    for name, case in cases().items():
        if names and name not in names:
            continue
        ptx, sass = build(case)
        stem = file_stem(name)
        for suffix, text in ((".ptx.gz", ptx), (".sass.gz", sass)):
            with gzip.GzipFile(GOLDEN / (stem + suffix), "wb", mtime=0) as f:
                f.write(text.encode())
        index[name] = {"ptx_sha256": digest(ptx), "sass_sha256": digest(sass)}
        print(f"{name}: {len(ptx)} PTX chars, {sass.count(chr(10))} SASS lines", flush=True)
    index_path.write_text(json.dumps(dict(sorted(index.items())), indent=1) + "\n")


if __name__ == "__main__":
    if "--write" not in sys.argv[1:]:
        raise SystemExit("usage: python tests/unit/golden_cases.py --write [CASE ...]")
    write_all([a for a in sys.argv[1:] if a != "--write"])
