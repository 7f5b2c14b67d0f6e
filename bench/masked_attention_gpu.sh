#!/usr/bin/env bash
# The GPU evidence of docs/masked-attention.md in one device call: the GPU tests, then the benchmark's
# phases, each part under its own timeout so one slow part cannot eat the call.
# usage (repo root, on the GPU machine, after pip install -e .): bash bench/masked_attention_gpu.sh DIR TARBALL
# Everything lands in DIR; TARBALL (a .tgz of DIR) is rewritten after every part, so a call cut short
# still brings back what finished.  Timeouts (s): TEST_S, BENCH_S, FLEX_S; PHASES: the bench's phases.
set -uo pipefail
R=${1:?usage: bench/masked_attention_gpu.sh DIR TARBALL}
T=${2:?usage: bench/masked_attention_gpu.sh DIR TARBALL}
mkdir -p "$R"
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv; date -u; } >"$R/device.txt" 2>&1
pack() { tar czf "$T" -C "$(dirname "$R")" "$(basename "$R")"; }
if [ "${TEST_S:-100}" != 0 ]; then
  timeout "${TEST_S:-100}" python3 -m pytest -q -m gpu tests/gpu/test_masked_attention_gpu.py -p no:cacheprovider \
      -rfEs >"$R/gpu_tests.log" 2>&1
  echo "gpu tests rc $?"; tail -4 "$R/gpu_tests.log"; pack
fi
timeout "${BENCH_S:-130}" python3 -m bench.masked_attention --out "$R" --phases "${PHASES:-correct,time,traces}" \
    >"$R/bench.log" 2>&1
echo "bench rc $?"; grep -E "INCORRECT|Error|error" "$R/bench.log" | head -5; pack
if [ "${FLEX_S:-100}" != 0 ]; then
  timeout "${FLEX_S:-100}" python3 -m bench.masked_attention --out "$R" --phases flex >"$R/flex.log" 2>&1
  echo "flex rc $?"; tail -3 "$R/flex.log"
fi
python3 -m bench.masked_attention --out "$R" --summarize >"$R/summary.log" 2>&1; tail -45 "$R/summary.log"; pack
