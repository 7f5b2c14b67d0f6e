#!/usr/bin/env bash
# Liger-Kernel's own tests, plain and under `kperf run --auto kernel`: pass/fail counts must be equal and
# every Triton kernel the tests launch gets a trace (at most 2 launches profiled per kernel).
# usage: bench/liger_suite.sh OUT LIGER_CHECKOUT [test names...]   (test names: rms_norm layer_norm ...)
set -uo pipefail
OUT=$(realpath -m "${1:?output folder}"); SRC=$(realpath "${2:?Liger-Kernel checkout (src/ and test/)}"); shift 2
NAMES=("$@")
[ ${#NAMES[@]} -gt 0 ] || NAMES=(rms_norm layer_norm swiglu geglu rope jsd dyt softmax group_norm sparsemax
                               embedding poly_norm relu_squared fused_add_rms_norm)
mkdir -p "$OUT"
cd "$SRC"
TESTS=(); for n in "${NAMES[@]}"; do TESTS+=("test/transformers/test_$n.py"); done
REPO=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$SRC/src:$SRC:$REPO:${PYTHONPATH:-}"  # $REPO: bench.pytest_failures_now, each failure as it happens
# both runs at once: the tests' time is mostly Triton compiling on the CPU (16 cores on the GPU machine);
# pass/fail should not depend on the GPU being shared, except where an autotuned kernel's numerics depend
# on the config its timing runs pick (Liger's fused MoE autotunes and accumulates with atomics)
start=$(date +%s)
(KPERF_FAILURES_TO="$OUT/plain_failures.txt" timeout ${LIGER_TIMEOUT:-280} python3 -m pytest -q -p no:cacheprovider \
    -p bench.pytest_failures_now --junitxml="$OUT/plain.xml" "${TESTS[@]}" \
    > "$OUT/plain.log" 2>&1; echo "plain: exit $? in $(( $(date +%s) - start )) s" > "$OUT/plain.time") &
(KPERF_FAILURES_TO="$OUT/kperf_failures.txt" timeout ${LIGER_TIMEOUT:-300} kperf run --auto kernel \
    --max-launches 2 --out "$OUT/kperf" -m pytest -q -p no:cacheprovider -p bench.pytest_failures_now \
    --junitxml="$OUT/kperf.xml" "${TESTS[@]}" > "$OUT/kperf.log" 2>&1
 echo "kperf run: exit $? in $(( $(date +%s) - start )) s" > "$OUT/kperf.time") &
wait
cat "$OUT/plain.time" "$OUT/kperf.time" | tee "$OUT/times.txt"; rm -f "$OUT/plain.time" "$OUT/kperf.time"
python3 - "$OUT" <<'PY'
import json, os, re, sys, xml.etree.ElementTree as ET
out = sys.argv[1]
def outcomes(run):
    """Per test: passed/failed/skipped, from the JUnit XML, or from the log's verbose lines when the time
    limit killed pytest before it wrote the XML (then the tests it never finished are missing)."""
    res = {}
    if os.path.exists(f"{out}/{run}.xml"):
        for case in ET.parse(f"{out}/{run}.xml").getroot().iter("testcase"):
            key = f"{case.get('classname')}::{case.get('name')}"
            kinds = {child.tag for child in case}
            res[key] = "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
        return res, True
    for line in open(f"{out}/{run}.log", errors="replace"):
        m = re.match(r"(test/\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED)", line)
        if m:
            res[m.group(1)] = {"ERROR": "failed"}.get(m.group(2), m.group(2).lower())
    return res, False
(plain, plain_whole), (prof, prof_whole) = outcomes("plain"), outcomes("kperf")
count = lambda r: {k: sum(1 for v in r.values() if v == k) for k in ("passed", "failed", "skipped")}
both = plain.keys() & prof.keys()  # a run cut off by the time limit: compare what both finished
diff = sorted(k for k in both if plain[k] != prof[k])
summary = {"plain": count(plain), "kperf": count(prof), "complete": {"plain": plain_whole, "kperf": prof_whole},
           "compared": len(both), "differing_tests": diff,
           "only_one_finished": sorted((plain.keys() | prof.keys()) - both)}
json.dump(summary, open(f"{out}/liger_summary.json", "w"), indent=1)
print("plain", summary["plain"], "| kperf", summary["kperf"], "| complete", summary["complete"],
      "| compared", len(both), "| differing", len(diff), diff[:10])
PY
