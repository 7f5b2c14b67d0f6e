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
export PYTHONPATH="$SRC/src:$SRC:${PYTHONPATH:-}"
start=$(date +%s)
timeout ${LIGER_TIMEOUT:-280} python3 -m pytest -q -p no:cacheprovider --junitxml="$OUT/plain.xml" "${TESTS[@]}" \
    > "$OUT/plain.log" 2>&1; echo "plain: exit $? in $(( $(date +%s) - start )) s" | tee "$OUT/times.txt"
start=$(date +%s)
timeout ${LIGER_TIMEOUT:-300} kperf run --auto kernel --max-launches 2 --out "$OUT/kperf" -m pytest -q -p no:cacheprovider \
    --junitxml="$OUT/kperf.xml" "${TESTS[@]}" > "$OUT/kperf.log" 2>&1
echo "kperf run: exit $? in $(( $(date +%s) - start )) s" | tee -a "$OUT/times.txt"
python3 - "$OUT" <<'PY'
import json, sys, xml.etree.ElementTree as ET
out = sys.argv[1]
def outcomes(path):
    res = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        key = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        res[key] = "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
    return res
plain, prof = outcomes(f"{out}/plain.xml"), outcomes(f"{out}/kperf.xml")
count = lambda r: {k: sum(1 for v in r.values() if v == k) for k in ("passed", "failed", "skipped")}
diff = sorted(k for k in plain.keys() | prof.keys() if plain.get(k) != prof.get(k))
summary = {"plain": count(plain), "kperf": count(prof), "differing_tests": diff}
json.dump(summary, open(f"{out}/liger_summary.json", "w"), indent=1)
print("plain", summary["plain"], "| kperf", summary["kperf"], "| differing", len(diff), diff[:10])
PY
