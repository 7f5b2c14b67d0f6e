"""What each lowering variant costs in SASS on the TMA/wgmma and warp-specialized kernels, without a GPU.

For each case of ``bench.overhead`` (the Gluon GEMM, examples/attention.py, the held-out attention of
bench/heldout_attention.py; the last two with ``auto="mma,tma"``) and each variant, ``kperf.compile``
for sm_90 gives the SASS instructions per record site and the fixed cost (preamble and finalize); the
loops of the instrumented SASS are matched with the plain kernel's (the loop holding ``HGMMA`` is the
main / consumer loop, the one issuing ``UTMALDG`` without ``HGMMA`` the producer's) and the instructions
each variant adds to one iteration are counted: that is what a record costs where it matters.

    python3 -m bench.sass_cost --out bench/results/DIR/sass_cost.json    # prints a markdown table
"""

from __future__ import annotations

import argparse
import difflib
import json
import pathlib
import re
import sys

import kperf
from bench.overhead import VARIANTS
from kperf.dialect.options import ProfileConfig

DEFAULT_VARIANTS = ("premerge", "uniform-pointer", "default", "warpgroup", "smem", "warpgroup-smem")
_INSTR = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+([^;]*);", re.MULTILINE)


def loops(sass: str) -> list[dict]:
    """Each backward branch's loop: instruction count, whether it holds HGMMA / UTMALDG (innermost first)."""
    ins = [(int(a, 16), t.strip()) for a, t in _INSTR.findall(sass)]
    out = []
    for addr, text in ins:
        m = re.search(r"\bBRA\s+0x([0-9a-f]+)", text)
        if not m or int(m.group(1), 16) >= addr:
            continue
        body = [t for a, t in ins if int(m.group(1), 16) <= a <= addr and not t.startswith("NOP")]
        if len(body) < 16 or sum("SYNCS.PHASECHK" in t for t in body) == len(body) - 2:
            continue  # a barrier's retry loop
        out.append({"n": len(body), "mma": any("HGMMA" in t for t in body),
                    "tma": any("UTMALDG" in t for t in body), "span": (int(m.group(1), 16), addr)})
    return sorted(out, key=lambda lp: lp["n"])


def _main_loops(sass: str) -> dict:
    """The innermost loop with HGMMA (main / consumer), the innermost TMA-issuing one without (producer),
    and the size of every innermost HGMMA loop (a WS kernel has one per consumer warpgroup), smallest
    first."""
    found = loops(sass)
    mma = next((lp["n"] for lp in found if lp["mma"]), None)
    producer = next((lp["n"] for lp in found if lp["tma"] and not lp["mma"]), None)
    mma_spans = [lp["span"] for lp in found if lp["mma"]]
    innermost = [lp["n"] for lp in found if lp["mma"] and not any(
        s != lp["span"] and lp["span"][0] <= s[0] and s[1] <= lp["span"][1] for s in mma_spans)]
    return {"mma_loop": mma, "producer_loop": producer, "mma_loops": sorted(innermost)}


def _added(plain: dict, inst: dict) -> dict:
    """Instructions a variant adds to one iteration of the producer's loop and of the main / consumer
    loop: of the plain kernel's smallest HGMMA loops (one per consumer warpgroup, alike within 2% when
    plain), the one that grew most (``granularity="role"`` leaves a consumer warpgroup's loop without
    records); sizes sorted both sides, so the k-th smallest plain loop is matched with the k-th smallest
    instrumented one."""
    out = {k: (inst[k] - plain[k]) if inst[k] and plain[k] else None for k in ("mma_loop", "producer_loop")}
    p, i = plain["mma_loops"], inst["mma_loops"]
    if p and len(p) == len(i):
        twins = sum(1 for n in p if n <= 1.02 * p[0])
        out["mma_loop"] = max(b - a for a, b in zip(p[:twins], i[:twins], strict=True))
    return out


def _opcodes(sass: str, span: tuple[int, int]) -> list[str]:
    """A loop's opcodes in issue order, predicates' register names dropped (``@!P3 BRA`` -> ``@! BRA``)."""
    out = []
    for a, t in _INSTR.findall(sass):
        if span[0] <= int(a, 16) <= span[1] and not t.strip().startswith("NOP"):
            words = t.split()
            out.append(re.sub(r"P\d", "", words[0]) + (" " + words[1] if words[0].startswith("@") else ""))
    return out


def _innermost(sass: str) -> list[tuple[int, int]]:
    """The spans of the HGMMA loops that hold no other HGMMA loop."""
    found = [lp for lp in loops(sass) if lp["mma"]]
    return [lp["span"] for lp in found if not any(
        o["span"] != lp["span"] and lp["span"][0] <= o["span"][0] and o["span"][1] <= lp["span"][1]
        for o in found)]


def wait_to_mma(sass: str) -> list[int]:
    """In the smallest innermost HGMMA loop with clock reads (the recorded consumer's; the plain kernel's
    smallest), the instructions issued between each barrier wait (``SYNCS.PHASECHK`` and its retry branch)
    and the next ``WARPGROUP.ARRIVE``: what runs once a tile has landed before the wgmma that reads it."""
    found = sorted((_opcodes(sass, sp) for sp in _innermost(sass)), key=len)
    if not found:
        return []
    ops = next((o for o in found if any("CS2R" in x for x in o)), found[0])
    out, start = [], None
    for k, o in enumerate(ops):
        if o.startswith("SYNCS.PHASECHK"):
            start = k + 2 if k + 1 < len(ops) and "BRA" in ops[k + 1] else k + 1
        elif o.startswith("WARPGROUP.ARRIVE") and start is not None:
            out.append(k - start)
            start = None
    return out


def loop_order(plain: str, inst: str) -> dict:
    """How alike ptxas ordered the unrecorded innermost HGMMA loops of ``inst`` (a consumer warpgroup left
    plain by ``granularity="role"``, the uninstrumented copy of a cloned kernel) and the plain kernel's:
    the best ``difflib`` ratio of opcode sequences (1.0: same order) for each loop without clock reads
    within 2% of a plain loop's length, and, as the yardstick, the ratio between the plain kernel's own
    consumer loops (one per warpgroup, from the same source; None when the kernel has no such twins)."""
    ref = [_opcodes(plain, sp) for sp in _innermost(plain)]
    same = [ops for ops in (_opcodes(inst, sp) for sp in _innermost(inst))
            if not any("CS2R" in o for o in ops)
            and any(abs(len(ops) - len(r)) <= 0.02 * len(r) for r in ref)]
    ratio = lambda a, b: round(difflib.SequenceMatcher(None, a, b, autojunk=False).ratio(), 3)  # noqa: E731
    twins = sorted(ref, key=len)[:2]  # one loop per consumer warpgroup: alike within 2% in length
    alike = len(twins) == 2 and len(twins[1]) <= 1.02 * len(twins[0])
    return {"plain_twins": ratio(*twins) if alike else None,
            "unrecorded_loops": [max(ratio(r, ops) for r in ref) for ops in same]}


def cases() -> dict:
    from bench import heldout_attention as H
    from kperf.examples import attention as A
    from kperf.examples import gluon_matmul as gm

    def gluon(cfg):
        return gm.compile_report(config=ProfileConfig(**{"capacity": 520, **cfg}))

    def auto(kernel, signature, constexprs, options):
        return lambda cfg: kperf.compile(kernel, signature=signature, constexprs=constexprs,
                                         config=ProfileConfig(auto="mma,tma", **cfg), **options)

    # the held-out WS build that runs on Hopper with Triton 3.6 (H.WS_BUILD, bench.overhead's heldout-ws):
    # descriptors made on the device from the tensors' pointers
    ws = H.WS_BUILD
    ws_signature = {**H.SIGNATURE, **{d: "*fp16" for d in ("desc_q", "desc_k", "desc_v")}}
    ws_constexprs = {**H.CONSTEXPRS, "BLOCK_N": ws["block_n"]}
    return {"gluon": gluon,
            "attention": auto(A.attn_fwd_kernel, A.SIGNATURE, A.CONSTEXPRS, A.COMPILE_OPTIONS),
            "heldout": auto(H.heldout_attn_kernel, H.SIGNATURE, H.CONSTEXPRS, H.COMPILE_OPTIONS),
            "heldout-ws": auto(H.heldout_attn_kernel, ws_signature, ws_constexprs,
                               {**H.COMPILE_OPTIONS, "num_stages": ws["num_stages"]})}


def measure(case: str, variants) -> dict:
    build = cases()[case]
    out = {}
    for name in variants:
        r = build(VARIANTS[name])
        plain, inst = _main_loops(r.sass_plain), _main_loops(r.sass)
        out[name] = {"records": r.num_records, "per_record": round(r.sass_per_record, 2),
                     "fixed": r.sass_fixed_cost, "spills": r.local_memory_ops,
                     "plain_loops": plain, "loops": inst,
                     "added": _added(plain, inst), "loop_order": loop_order(r.sass_plain, r.sass),
                     "wait_to_mma": {"plain": wait_to_mma(r.sass_plain), "kperf": wait_to_mma(r.sass)},
                     "profile_bytes_per_cta": r.geometry.cta_bytes, "store": r.metadata["kperf"]["store"]}
    return out


def table(res: dict) -> str:
    rows = ["| case | variant | SASS / record | fixed | + main/consumer loop | + producer loop | bytes/CTA "
            "| innermost HGMMA loops, plain -> kperf | wait -> wgmma, plain -> kperf |",
            "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for case, variants in res.items():
        for name, e in variants.items():
            plain, added = e["plain_loops"], e["added"]
            mma, prod = (f"+{added[k]} (of {plain[k]})" if added[k] is not None else "-"
                         for k in ("mma_loop", "producer_loop"))
            loops_ = f"{_sizes(plain['mma_loops'])} -> {_sizes(e['loops']['mma_loops'])}"
            store = " (smem)" if e["store"] == "smem" else ""
            gaps = f"{_sizes(e['wait_to_mma']['plain'])} -> {_sizes(e['wait_to_mma']['kperf'])}"
            rows.append(f"| {case} | {name}{store} | {e['per_record']} | {e['fixed']} | {mma} | {prod} | "
                        f"{e['profile_bytes_per_cta']} | {loops_} | {gaps} |")
    return "\n".join(rows)


def _sizes(ns: list[int]) -> str:
    return ", ".join(str(n) for n in ns) or "-"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="gluon,attention,heldout")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    p.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = p.parse_args(argv)
    res = {c: measure(c, args.variants.split(",")) for c in args.cases.split(",")}
    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
