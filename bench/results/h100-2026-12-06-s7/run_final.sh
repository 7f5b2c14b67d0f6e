#!/bin/bash
# Issue 19, final device call (NOT RUN in this session: the device budget was spent by run_explore.sh):
# the Gluon TMA/wgmma GEMM, the warp-specialized attention of examples/ and the held-out one of bench/,
# plain vs the chosen lowerings vs sampling vs upstream Proton on the same sites, 20 launches x 3 rounds,
# then the GPU tests of the new lowerings.  About 6 minutes of command time on an H100 (the exploratory
# call took 120 s for two cases, 8-9 variants each, no Proton) plus the machine's start.
# From the repository root, after the install line of the README:  bash THIS_FILE OUT_DIR
OUT=${1:?usage: run_final.sh OUT_DIR}
set -o pipefail
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw,power.limit,temperature.gpu \
    --format=csv; python3 -c "import torch, triton, sys; print(sys.version.split()[0], torch.__version__,
    triton.__version__)"; } > "$OUT/device.txt" 2>&1
timeout 400 python3 -m bench.overhead --only gluon,attention,heldout --n-ctx 4096 --reps 20 --rounds 3 \
  --variants premerge,default,warpgroup-smem,cta-stride-8,warpgroup-smem-cta-stride-8,warpgroup-smem-sms-1-in-8 \
  --out "$OUT/final" 2>&1 | tee "$OUT/final.log"
timeout 170 python3 -m pytest -q -m gpu tests/gpu/test_async_lowering_gpu.py 2>&1 | tee "$OUT/gpu_tests.log" | tail -5
grep -h -A16 "^== " "$OUT/final.log" | cut -c1-150
