#!/usr/bin/env bash
# Record tests/corpus/*.tar.xz on a machine with a CUDA GPU (Inductor writes Triton only for GPUs).
#   tests/corpus/drivers/record_gpu.sh OUTDIR [SECONDS]
# Every driver runs at once, each in its own process recorded into OUTDIR/parts/NAME.tar.xz (its log in
# OUTDIR/logs/NAME.log); a driver starts no case after SECONDS and is interrupted 60 s later (the
# recorder keeps what was compiled by then).  The parts are then merged by label into
# OUTDIR/{inductor,liger,torch}.tar.xz, one entry per distinct TTIR.
set -uo pipefail
out=${1:?usage: record_gpu.sh OUTDIR [SECONDS]}
secs=${2:-90}
here=$(dirname "$0")
mkdir -p "$out/parts" "$out/logs"

record() {
    local name=$1 label=$2
    shift 2
    CORPUS_SECONDS=$secs timeout -s INT -k 20 $((secs + 60)) \
        python3 -m kperf.cli corpus record "$out/parts/$name.tar.xz" --label "$label" -- "$@" \
        >"$out/logs/$name.log" 2>&1
    echo "$name: exit $?; $(grep -E '^(inductor|liger|torch): ' "$out/logs/$name.log" | tail -1);" \
         "$(grep '^kperf: recorded' "$out/logs/$name.log")"
}

record liger liger "$here/liger_ops.py" &
record torch torch "$here/torch_kernels.py" &
record ind-fp32 inductor "$here/inductor_blocks.py" --dtype fp32 --workloads gpt2,llama,loss,reductions &
record ind-bf16 inductor "$here/inductor_blocks.py" --dtype bf16 --workloads gpt2,llama,loss,reductions &
record ind-misc inductor "$here/inductor_blocks.py" --dtype fp32,bf16 --workloads flex,adamw,moe &
record ind-ma-bf16 inductor "$here/inductor_blocks.py" --dtype bf16 --mode max-autotune --workloads mlp,llama &
record ind-ma-fp32 inductor "$here/inductor_blocks.py" --dtype fp32 --mode max-autotune --workloads mlp,gpt2 &
wait

python3 - "$out" <<'PY'
import collections, glob, os, sys
from kperf import corpus
out = sys.argv[1]
merged = collections.defaultdict(corpus.Corpus)
for part in sorted(glob.glob(os.path.join(out, "parts", "*.tar.xz"))):
    c = corpus.load(part)
    for label, kernels in collections.Counter(k.label for k in c.kernels).items():
        merged[label].add([k for k in c.kernels if k.label == label], c.sources)
for label, c in sorted(merged.items()):
    corpus.save(c, os.path.join(out, f"{label}.tar.xz"))
    print(f"{label}: {len(c.kernels)} kernels, {len(c.sources)} source files, "
          f"{os.path.getsize(os.path.join(out, label + '.tar.xz'))} bytes")
PY
