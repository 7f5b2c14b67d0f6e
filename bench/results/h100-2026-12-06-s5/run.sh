#!/bin/bash
# The device run behind README.md, from the repository root, after:
#   pip install --target /tmp/site .whl/*.whl (orjson, tqdm, zstandard); pip install -e .
# Writes into $OUT: log.txt, rank0.kperf, merged.json.gz, merge_clocks.csv, merge_steps.csv, probes.json.
set -o pipefail
export PYTHONUNBUFFERED=1
log=$OUT/log.txt
{ nvidia-smi -L; python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)'; date -u; } 2>&1 | tee "$log"
# kperf merge is not wired into kperf/cli.py yet: wire it in this copy only (the two lines kperf/cli.py gets)
python3 - <<'PY'
import pathlib
p = pathlib.Path("kperf/cli.py")
s = p.read_text()
if "add_merge_commands" not in s:
    p.write_text(s.replace("    add_report_commands(sub)\n", "    add_report_commands(sub)\n"
                           "    from kperf.cli_merge import add_merge_commands\n    add_merge_commands(sub)\n", 1))
PY
echo "== torchrun, world size 1" | tee -a "$log"
timeout 60 torchrun --nproc_per_node 1 examples/distributed_matmul.py --out /tmp/dist --steps 4 2>&1 | tee -a "$log"
echo "== kperf merge" | tee -a "$log"
timeout 30 kperf merge /tmp/dist --out "$OUT/merged.json.gz" --csv /tmp/csv 2>&1 | tee -a "$log"
cp /tmp/dist/rank0.kperf /tmp/csv/merge_clocks.csv /tmp/csv/merge_steps.csv "$OUT/" 2>/dev/null
echo "== GPU tests" | tee -a "$log"
timeout 60 python3 -m pytest -q -s -m gpu tests/gpu/test_distributed_gpu.py 2>&1 | tee -a "$log"
echo "== probes: 10 exchanges of 8 rounds each, per method" | tee -a "$log"
timeout 30 python3 - 2>&1 <<'PY' | tee -a "$log"
import json, os, statistics, time
from kperf.gpu_clock import probe
from kperf.tracing.clock_sync import gpu_offset
out = {}
for method in ("pingpong", "bracket"):
    probe(8, method)  # compile and load first
    runs = []
    for _ in range(10):
        t = time.perf_counter()
        used, rows = probe(8, method)
        off = gpu_offset(rows)
        runs.append({"used": used, "est_ns": off.est, "err_ns": off.err, "consistent": off.consistent,
                     "ms": 1e3 * (time.perf_counter() - t)})
    errs = [r["err_ns"] for r in runs]
    ests = [r["est_ns"] for r in runs]
    out[method] = {"runs": runs, "median_err_ns": statistics.median(errs), "max_err_ns": max(errs),
                   "est_spread_ns": max(ests) - min(ests), "median_ms": statistics.median(r["ms"] for r in runs)}
    print(method, {k: v for k, v in out[method].items() if k != "runs"})
json.dump(out, open(os.path.join(os.environ["OUT"], "probes.json"), "w"), indent=1)
PY
ls -la "$OUT" | tee -a "$log"
