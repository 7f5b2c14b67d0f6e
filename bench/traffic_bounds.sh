#!/usr/bin/env bash
# Measured DRAM/L2 traffic of the examples' GEMM (8192^3 fp16) and attention forward (non-causal and causal)
# under Nsight Compute, next to their attainable data-movement bounds (kperf ncu; docs/bounds.md).
# usage (repo root, on the GPU machine): bash bench/traffic_bounds.sh OUTDIR [CASE...]
#   cases: gemm8192 gemm4096 attention attention_causal (default: all)
# Writes OUTDIR/{device.txt,ncu_check.txt,<case>.log,<case>.traffic.json}; the profiles stay in /tmp.
set -uo pipefail
OUT=${1:?usage: bench/traffic_bounds.sh OUTDIR [CASE...]}
shift
CASES=${*:-gemm8192 gemm4096 attention attention_causal}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; which ncu;
  ls /usr/local/cuda*/bin/ncu; ncu --version; } >"$OUT/device.txt" 2>&1
ncu --query-metrics 2>&1 | grep -E '^(dram__bytes_(read|write)|lts__t_bytes|lts__t_sector_hit_rate|lts__t_sectors_srcunit_tex|l1tex__t_sector_hit_rate|l1tex__m_xbar2l1tex_read_bytes|l1tex__m_l1tex2xbar_write_bytes|l1tex__data_pipe_lsu_wavefronts_mem_shared|smsp__sass_inst_executed_op_shared_ld|gpu__time_duration) ' >"$OUT/ncu_check.txt"
run() {  # name, then kperf ncu arguments
  local name=$1; shift
  [[ " $CASES " == *" $name "* ]] || return 0
  timeout 200 python3 -m kperf.cli_bounds ncu "/tmp/kt_$name" "$@" >"$OUT/$name.log" 2>&1
  echo "rc=$?" >>"$OUT/$name.log"
  python3 -c "import sys; from kperf.tracing import traffic; traffic.save(sys.argv[2], traffic.load(sys.argv[1]))" \
      "/tmp/kt_$name/profile.kperf" "$OUT/$name.traffic.json" 2>>"$OUT/$name.log"
  grep -vE '^\s*(scope|load|mma|epilogue)' "$OUT/$name.log" | tail -22
}
run gemm8192 --kernels matmul_kernel --gemm 8192,8192,8192 --dtype fp16 -- \
    examples/matmul.py --size 8192 --out /tmp/kt_gemm_example
run gemm4096 --kernels matmul_kernel --gemm 4096,4096,4096 --dtype fp16 -- \
    examples/matmul.py --size 4096 --out /tmp/kt_gemm4096_example
run attention --kernels attn_fwd --attention 4,16,4096,128 --dtype fp16 -- \
    examples/attention.py --out /tmp/kt_attn_example
run attention_causal --kernels attn_fwd --attention 4,16,4096,128 --causal --dtype fp16 -- \
    examples/attention.py --causal --out /tmp/kt_attnc_example
