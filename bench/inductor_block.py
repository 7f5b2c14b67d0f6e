"""torch.compile under a kperf session: a transformer block's forward and backward, every kernel profiled.

For each compile mode (default, ``max-autotune-no-cudagraphs``, ``reduce-overhead``) the block is
compiled and run once plain (compiling and tuning happen there, outside the session), then run under
``kperf.session(auto="kernel")``.  Written per mode: kernels launched vs profiled (the session's
coverage), whether outputs and gradients equal the plain run's bit for bit, launches that came through
Inductor with the graph ops they fused, CUDA graph replays captured, and the session's profile and
Perfetto trace.  The first Inductor output-code file seen is copied as test data for the CPU test of
``kperf.inductor``'s origin parsing.

    python3 -m bench.inductor_block --out bench/results/.../inductor
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil

from bench.timing import run_info

MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")


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
    torch._dynamo.reset()  # no compiled graph of an earlier mode (cached per code object) is reused
    torch.manual_seed(0)
    if mode.startswith("max-autotune"):  # tuning every GEMM of the block takes minutes: one Linear + GELU,
        lin = torch.nn.Linear(512, 2048).cuda()  # Triton templates only, so one of them wins

        def m(t):
            return torch.nn.functional.gelu(lin(t))
        import torch._inductor.config as cfg
        cfg.max_autotune_gemm_backends = "TRITON"
    else:
        m = block()
    backward = not mode.startswith("max-autotune")  # (its backward GEMMs would be tuned too)
    x = torch.randn(8, 256, 512, device="cuda", requires_grad=backward)
    f = torch.compile(m, mode=None if mode == "default" else mode)
    steps = 3 if mode == "reduce-overhead" else 1

    def step():
        if mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # a new step: earlier graph outputs may be reused
        x.grad = None
        y = f(x)
        if backward:
            y.sum().backward()
        return y.detach().clone(), (x.grad.clone() if backward else y.detach().clone())
    for _ in range(steps + 1):  # plain: compile, tune, record CUDA graphs
        ref_y, ref_g = step()
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--modes", default=",".join(MODES))
    args = p.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"run": run_info(argv), "modes": []}
    for mode in args.modes.split(","):
        try:
            res["modes"].append(run_mode(mode, out))
        except Exception as e:  # a mode that fails is a result, with its error
            import traceback
            res["modes"].append({"mode": mode, "error": f"{type(e).__name__}: {e}",
                                 "traceback": traceback.format_exc()})
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
