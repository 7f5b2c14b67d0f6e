#!/usr/bin/env bash
# The core issue's GPU evidence in one go: install, GPU tests, main example, GEMM overhead vs Proton.
# usage (on the GPU machine): bash bench/gpu_core.sh OUTDIR
set -uo pipefail
OUT=${1:-bench/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1 || { cat "$OUT/install.log"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/device.txt"
python3 -m pytest -q -m gpu tests/gpu -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.log"
python3 examples/matmul.py --size 4096 --out "$OUT/matmul" 2>&1 | tee "$OUT/matmul_example.log"
python3 -m bench.gemm_overhead --reps 15 --rounds 3 --out "$OUT/gemm_overhead.json" 2>&1 | tee "$OUT/gemm_overhead.log"
