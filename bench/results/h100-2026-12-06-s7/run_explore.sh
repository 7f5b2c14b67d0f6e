#!/bin/bash
# Issue 19, exploratory device call: the lowering candidates on the Gluon TMA/wgmma GEMM and the
# warp-specialized attention (no Proton, 10 launches x 2 rounds), then the GPU tests of the new lowerings.
# From the repository root, after the install line of the README:  bash THIS_FILE OUT_DIR
OUT=${1:?usage: run_explore.sh OUT_DIR}
set -o pipefail
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw,power.limit,temperature.gpu \
    --format=csv; python3 -c "import torch, triton, sys; print(sys.version.split()[0], torch.__version__,
    triton.__version__)"; } > "$OUT/device.txt" 2>&1
timeout 200 python3 -m bench.overhead --only gluon --reps 10 --rounds 2 --no-proton \
  --variants premerge,uniform-pointer,default,early,instr-only,smem,warpgroup-smem,cta-stride-8,sms-1-in-8 \
  --out "$OUT/gluon" 2>&1 | tee "$OUT/gluon.log"
timeout 200 python3 -m bench.overhead --only attention --n-ctx 4096 --reps 10 --rounds 2 --no-proton \
  --variants premerge,default,early,instr-only,warpgroup,warpgroup-smem,cta-stride-8,sms-1-in-8 \
  --out "$OUT/attention" 2>&1 | tee "$OUT/attention.log"
timeout 150 python3 -m pytest -q -m gpu tests/gpu/test_async_lowering_gpu.py 2>&1 | tee "$OUT/gpu_tests.log" | tail -5
grep -h -A14 "^== " "$OUT/gluon.log" "$OUT/attention.log" | cut -c1-150
