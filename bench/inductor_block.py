"""torch.compile under a kperf session: a transformer block's forward and backward, every kernel profiled.

For each compile mode (default, ``max-autotune-no-cudagraphs``, ``reduce-overhead`` forward and backward,
and its forward alone under ``torch.no_grad()``: ``reduce-overhead-inference``), in a process of its own
(CUDA graph trees and Dynamo keep state across compiles), the block is compiled and run plain (compiling
and tuning happen there, outside the session), then run under ``kperf.session(auto="kernel")``; the
reduce-overhead modes compile again and record their CUDA graphs inside the session (graphs recorded
before it hold plain kernels, whose replays a session can only count). Written per mode: kernels launched
vs profiled (the session's coverage), whether outputs and gradients equal the plain run's bit for bit,
launches that came through Inductor with the graph ops they fused, CUDA graph replays captured, and the
session's profile and Perfetto trace. The first Inductor output-code file seen is copied as test data for
the CPU test of ``kperf.inductor``'s origin parsing.

    python3 -m bench.inductor_block --out bench/results/.../inductor
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil

from bench.timing import run_info

MODES = ("default", "reduce-overhead", "reduce-overhead-inference", "max-autotune-no-cudagraphs")


def block(dim: int = 512, heads: int = 8):
    """Pre-norm attention (written out: deterministic kernels) + GELU MLP."""
    import torch

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.n1, self.n2 = torch.nn.LayerNorm(dim), torch.nn.LayerNorm(dim)
            self.qkv, self.proj = torch.nn.Linear(dim, 3 * dim), torch.nn.Linear(dim, dim)
            self.up, self.down = torch.nn.Linear(dim, 4 * dim), torch.nn.Linear(4 * dim, dim)

        def forward(self, x):
            b, t, d = x.shape
            q, k, v = self.qkv(self.n1(x)).view(b, t, 3, heads, d // heads).transpose(1, 3).unbind(2)
            s = (q @ k.transpose(-1, -2)) * (d // heads) ** -0.5
            s = s.masked_fill(torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
            x = x + self.proj((torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(b, t, d))
            return x + self.down(torch.nn.functional.gelu(self.up(self.n2(x))))
    return Block().cuda()


def run_mode(mode: str, out: pathlib.Path) -> dict:
    import torch

    import kperf
    torch.manual_seed(0)
    if mode.startswith("max-autotune"):  # tuning every GEMM of the block takes minutes: one Linear + GELU,
        lin = module = torch.nn.Linear(512, 2048).cuda()  # Triton templates only, so one of them wins

        def m(t):
            return torch.nn.functional.gelu(lin(t))
        import torch._inductor.config as cfg
        cfg.max_autotune_gemm_backends = "TRITON"
    else:
        m = module = block()
    # (max-autotune's backward GEMMs would be tuned too)
    backward = not mode.startswith("max-autotune") and not mode.endswith("-inference")
    x = torch.randn(8, 256, 512, device="cuda", requires_grad=backward)
    graphs = mode.startswith("reduce-overhead")

    def compiled():
        return torch.compile(m, mode="reduce-overhead" if graphs else None if mode == "default" else mode)
    f = compiled()
    steps = 3 if graphs else 1
    m_params = list(module.parameters())

    def step():
        if graphs and not backward:  # inference: a new step, earlier graph outputs may be reused; a
            torch.compiler.cudagraph_mark_step_begin()  # training step's backward ends it by itself
        x.grad = None
        for prm in m_params:  # as a training step's zero_grad: a gradient accumulated into from the last
            prm.grad = None  # step would be read after CUDA graph trees reused its memory for this one
        with torch.set_grad_enabled(backward):
            y = f(x)
        y_out = y.detach().clone()  # before anything else runs: graph outputs are overwritten by the next
        if backward:
            y.sum().backward()
        return y_out, (x.grad.clone() if backward else y_out)
    try:
        for _ in range(steps + 1):  # plain: compile, tune, record CUDA graphs
            ref_y, ref_g = step()
    except Exception as e:  # before any kperf session: the mode's own failure, said as such
        raise RuntimeError(f"the plain steps failed before the session: {type(e).__name__}: {e}") from e
    if graphs:  # the graphs recorded above hold plain kernels (a session cannot profile their replays):
        torch._dynamo.reset()  # compile again, and warm up and record the graphs inside the session
        f = compiled()
        steps += 1
    with kperf.session(auto="kernel") as s:
        for _ in range(steps):
            y, g = step()
    torch.cuda.synchronize()
    decs = s.decoded()
    inductor = [d for d in decs if (d.info or {}).get("launch_path") == "inductor"]
    replays = [d for d in decs if "replay" in (d.info or {})]
    rows = s.coverage.rows()
    folder = out / mode
    folder.mkdir(parents=True, exist_ok=True)
    s.save(folder / "profile.kperf")  # the profile only: the traces are made from it (kperf view/export)
    (folder / "summary.txt").write_text(s.table() + "\n")
    module = next((d.info.get("inductor_module") for d in inductor if d.info.get("inductor_module")), None)
    if module and not (out / "inductor_output_code.py").exists():
        shutil.copy(module, out / "inductor_output_code.py")
    return {"mode": mode, "steps": steps, "kernels": len(rows),
            "launches": sum(n for _, n, _, _ in rows), "profiled": sum(p for _, _, p, _ in rows),
            "not_profiled": [r for r in rows if r[1] != r[2]],
            "outputs_identical": bool(torch.equal(y, ref_y)), "grads_identical": bool(torch.equal(g, ref_g)),
            "max_abs_diff": float((y - ref_y).abs().max()), "inductor_launches": len(inductor),
            "with_inductor_ops": sum(1 for d in inductor if d.info.get("inductor_ops")),
            "graph_replay_launches": len(replays), "events": sum(d.n_events for d in decs),
            "lost": sum(int(d.lost_total) for d in decs), "problems": sum(len(d.problems) for d in decs),
            "example_ops": next((d.info["inductor_ops"] for d in inductor if d.info.get("inductor_ops")), "")}


def _run_in_child(mode: str, out: pathlib.Path, timeout: float) -> dict:
    """One mode in a process of its own; its result, or the error and the tail of what it printed."""
    import subprocess
    import sys
    result = out / mode / "result.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bench.inductor_block", "--out", str(out), "--modes", mode, "--child"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        tail = (p.stdout + p.stderr)[-3000:]
    except subprocess.TimeoutExpired as e:
        return {"mode": mode, "error": f"no result within {timeout:.0f} s",
                "traceback": str(e.stdout or "")[-3000:]}
    if result.exists():
        return json.loads(result.read_text())
    return {"mode": mode, "error": f"the mode's process exited {p.returncode} without a result",
            "traceback": tail}


def _one_mode(mode: str, out: pathlib.Path) -> dict:
    try:
        return run_mode(mode, out)
    except Exception as e:  # a mode that fails is a result, with its error
        import traceback
        return {"mode": mode, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--timeout", type=float, default=240.0, help="seconds per mode")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.child:  # one mode, here; the parent reads its result
        r = _one_mode(args.modes, out)
        (out / args.modes).mkdir(parents=True, exist_ok=True)
        (out / args.modes / "result.json").write_text(json.dumps(r, indent=1))
        return 0
    modes = [_run_in_child(m, out, args.timeout) for m in args.modes.split(",")]
    res = {"run": run_info(argv), "modes": modes}
    (out / "inductor_block.json").write_text(json.dumps(res, indent=1))
    print(f"{'mode':<28} {'kernels':>7} {'launches':>8} {'profiled':>8} {'replays':>7} {'identical':>9} lost")
    for r in res["modes"]:
        if "error" in r:
            print(f"{r['mode']:<28} ERROR {r['error'][:200]}")
            continue
        print(f"{r['mode']:<28} {r['kernels']:>7} {r['launches']:>8} {r['profiled']:>8} "
              f"{r['graph_replay_launches']:>7} {str(r['outputs_identical'] and r['grads_identical']):>9} "
              f"{r['lost']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
