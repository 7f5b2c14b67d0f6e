#!/usr/bin/env bash
# Liger-Kernel's own tests, plain and under `kperf run --auto kernel`: pass/fail counts must be equal and
# every Triton kernel the tests launch gets a trace (at most 2 launches profiled per kernel).
# usage: bench/liger_suite.sh OUT LIGER_CHECKOUT [test names...]   (test names: rms_norm layer_norm ...)
set -uo pipefail
OUT=$(realpath -m "${1:?output folder}"); SRC=$(realpath "${2:?Liger-Kernel checkout (src/ and test/)}"); shift 2
NAMES=("$@")
[ ${#NAMES[@]} -gt 0 ] || NAMES=(rms_norm layer_norm swiglu geglu rope jsd dyt softmax group_norm sparsemax
                               embedding poly_norm relu_squared fused_add_rms_norm)
REPO=$(cd "$(dirname "$0")/.." && pwd)  # before the cd below: $0 may be relative
mkdir -p "$OUT"
cd "$SRC"
export PYTHONPATH="$SRC/src:$SRC:$REPO:${PYTHONPATH:-}"  # $REPO: bench.pytest_failures_now, each failure as it happens
# every run at once: the tests' time is mostly Triton compiling on the CPU (16 cores on the GPU machine);
# pass/fail should not depend on the GPU being shared, except where an autotuned kernel's numerics depend
# on the config its timing runs pick (Liger's fused MoE autotunes and accumulates with atomics)
start=$(date +%s)
# the time limit interrupts (SIGINT) rather than kills: pytest then stops at the running test and still
# writes its JUnit XML and failures, and `kperf run` still saves the profile of what ran.  One pytest per
# test file and way, all at once, each with the limit: a slow file (swiglu's MoE tests) cuts off only itself
for n in "${NAMES[@]}"; do
  t="test/transformers/test_$n.py"
  (KPERF_FAILURES_TO="$OUT/plain_${n}_failures.txt" timeout -s INT -k 30 ${LIGER_TIMEOUT:-280} python3 -m pytest -q \
      -p no:cacheprovider -p bench.pytest_failures_now --junitxml="$OUT/plain_$n.xml" "$t" \
      > "$OUT/plain_$n.log" 2>&1; echo "plain $n: exit $? in $(( $(date +%s) - start )) s" > "$OUT/plain_$n.time") &
  (KPERF_FAILURES_TO="$OUT/kperf_${n}_failures.txt" timeout -s INT -k 30 ${LIGER_TIMEOUT:-300} kperf run --auto kernel \
      --max-launches 2 --out "$OUT/kperf/$n" -m pytest -q -p no:cacheprovider -p bench.pytest_failures_now \
      --junitxml="$OUT/kperf_$n.xml" "$t" > "$OUT/kperf_$n.log" 2>&1
   echo "kperf run $n: exit $? in $(( $(date +%s) - start )) s" > "$OUT/kperf_$n.time") &
done
wait
cat "$OUT"/*.time | tee "$OUT/times.txt"; rm -f "$OUT"/*.time
python3 -m bench.liger_compare "$OUT" --rerun ${LIGER_RERUNS:-2}
