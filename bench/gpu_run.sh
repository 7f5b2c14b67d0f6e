#!/usr/bin/env bash
# All GPU evidence, in parts that each fit one ~10-minute device call.
# usage (repo root, on the GPU machine): bash bench/gpu_run.sh OUTDIR PART [PART ...]
#   tests     install; every test marked gpu except FA3 (or the files in GPU_TESTS); raw profiles for CPU tests
#   overhead  kernel-time overhead: plain vs kperf variants vs Proton; calibration (accuracy)
#   fa3       FA3 pipelines: a smoke run per variant (hangs left out), correctness, sweeps, traces
#   fa3tests  the FA3 GPU tests
#   fa3traces kperf traces, summaries and diffs of vanilla vs improved FA3 pipelines (traces.tgz)
#   async     issue 19's final run: Gluon TMA/wgmma GEMM, WS attention and the held-out WS build, plain vs the
#             chosen lowerings vs sampling vs Proton, 20 interleaved cycles x 3 rounds; the async-lowering GPU tests
#   verify    what s12 built after its GPU calls, in one call (about 9 minutes): sessions at scale (spills on
#             the launching thread, at the budget); async overhead, launches interleaved with the plain
#             kernel's (the Gluon GEMM runs into the H100's power cap), role granularity and sampling, on
#             the Gluon GEMM, the WS attention and the held-out WS build, Proton on the same sites; the
#             launch-path and async-lowering GPU tests (the held-out WS build's included); verify-timing and
#             verify-checks are its two halves (the second runs Liger's four short files beside the tests)
#   heldout   which builds of the held-out WS attention finish (bench/heldout_smoke.py; all at once, 60 s limit)
#   tests39   with a newer Triton first on PYTHONPATH (../shared/triton-on-gpu.md): every GPU test but those of
#             torch.compile (torch 2.11 expects its own Triton 3.6), FA3's last
#   reach     1000 launches of a small kernel (session scale); a transformer block under torch.compile
#   liger     Liger-Kernel's tests plain and under `kperf run`, one pytest per file and way, all at once
#             (needs .liger carried: wheels + liger-src.tar.gz); swiglu's file took over 380 s on an H100
# Each part writes logs and JSON under OUTDIR/<part>/ and ends with a short table.
set -uo pipefail
OUT=${1:?usage: bench/gpu_run.sh OUTDIR PART...}
shift
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1 || { cat "$OUT/install.log"; exit 1; }
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv; date -u; } >"$OUT/device.txt"

for part in "$@"; do
  d="$OUT/$part"; mkdir -p "$d"
  case "$part" in
    tests)
      # GPU_TESTS narrows the run to some files (a short device budget); the default is every file but FA3's
      KPERF_OUT="$d/ws_trace" timeout 330 python3 -m pytest -v -m gpu ${GPU_TESTS:-tests/gpu} -p no:cacheprovider \
          --ignore=tests/gpu/test_fa3_gpu.py -rfEs -o faulthandler_timeout=120 >"$d/gpu_tests.log" 2>&1
      timeout 120 python3 -m bench.capture_real_profiles --out "$d/real" >"$d/capture.log" 2>&1
      (cd "$d" && tar czf real.tgz real && rm -rf real)
      tail -25 "$d/gpu_tests.log"; cat "$d/capture.log" ;;
    tests39)
      python3 -c "import triton, torch; print('triton', triton.__version__, 'torch', torch.__version__)" >"$d/versions.txt"
      timeout 300 python3 -m pytest -v -m gpu tests/gpu -p no:cacheprovider --ignore=tests/gpu/test_fa3_gpu.py \
          -k "not torch_compile and not max_autotune and not reduce_overhead" -rfEs -o faulthandler_timeout=120 \
          >"$d/gpu_tests.log" 2>&1
      timeout 200 python3 -m pytest -v -m gpu tests/gpu/test_fa3_gpu.py -p no:cacheprovider -rfEs \
          -o faulthandler_timeout=120 >"$d/fa3_tests.log" 2>&1
      cat "$d/versions.txt"; tail -15 "$d/gpu_tests.log"; tail -6 "$d/fa3_tests.log" ;;
    overhead)
      timeout 380 python3 -m bench.overhead --quick --out "$d" >"$d/overhead.log" 2>&1
      timeout 150 python3 -m bench.calibration --out "$d/calibration" >"$d/calibration.log" 2>&1
      tail -30 "$d/overhead.log"; tail -15 "$d/calibration.log" ;;
    fa3)
      ok=()  # a variant that hangs or is wrong on a small shape stays out of the sweep
      vars=(kperf_vanilla kperf_ws kperf_ws_overlap kperf_ws_overlap_v3 kperf_ws_pingpong
            kperf_ws_overlap_persistent kperf_ws_pingpong_persistent)
      for v in "${vars[@]}"; do  # in parallel: the compiles dominate, and a hang costs only its own process
        (timeout 150 python3 -m bench.fa3_smoke "$v" >"$d/smoke_$v.log" 2>&1; echo $? >"$d/smoke_$v.rc") &
      done
      wait
      for v in "${vars[@]}"; do
        cat "$d/smoke_$v.log" >>"$d/smoke.log"; rc=$(cat "$d/smoke_$v.rc"); rm -f "$d/smoke_$v.log" "$d/smoke_$v.rc"
        if [ "$rc" = 0 ]; then ok+=("$v"); else echo "$v: failed or hung (rc $rc)" | tee -a "$d/smoke.log"; fi
      done
      vs=$(IFS=,; echo "${ok[*]}"),sdpa_flash,sdpa_cudnn
      timeout 450 python3 -m bench.fa3_sweep --out "$d" --variants "$vs" >"$d/run.log" 2>&1
      [ -d "$d/traces" ] && (cd "$d" && tar czf traces.tgz traces && rm -rf traces)  # too deep to come back as files
      cat "$d/smoke.log"; tail -40 "$d/run.log" ;;
    fa3tests)
      timeout 300 python3 -m pytest -q -m gpu tests/gpu/test_fa3_gpu.py -p no:cacheprovider -rfEs >"$d/gpu_tests.log" 2>&1
      tail -30 "$d/gpu_tests.log" ;;
    fa3traces)
      timeout 200 python3 -m bench.fa3_sweep --out "$d" --traces-only \
          --variants kperf_vanilla,kperf_ws,kperf_ws_overlap,kperf_ws_pingpong_persistent >"$d/run.log" 2>&1
      (cd "$d" && tar czf traces.tgz traces && rm -rf traces)
      tail -5 "$d/run.log" ;;
    async)
      timeout 420 python3 -m bench.overhead --only gluon,attention,heldout-ws --n-ctx 4096 --reps 20 --rounds 3 \
          --interleave --variants default,role-smem,role-smem-cta-stride-8,role-smem-sms-1-in-8 \
          --out "$d" >"$d/overhead.log" 2>&1
      timeout 150 python3 -m pytest -v -m gpu tests/gpu/test_async_lowering_gpu.py -p no:cacheprovider \
          -o faulthandler_timeout=100 >"$d/gpu_tests.log" 2>&1
      grep -h -A16 "^== " "$d/overhead.log" | cut -c1-150; tail -3 "$d/gpu_tests.log" ;;
    verify|verify-timing|verify-checks)
      # verify = verify-timing (session scale, interleaved async overhead; nothing else on the GPU) then
      # verify-checks (the GPU tests, beside Liger's four short test files when .liger is carried)
      if [ "$part" != verify-checks ]; then
        timeout 60 python3 -m bench.session_scale --out "$d/session_scale.json" >"$d/session_scale.log" 2>&1
        timeout 300 python3 -m bench.overhead --only gluon,attention,heldout-ws --n-ctx 4096 --reps 20 --rounds 3 \
            --interleave --variants role-smem,role-smem-defer,role-smem-arith-defer,role-smem-instr-only,role-smem-sms-1-in-8,role-smem-arith-defer-sms-1-in-8 --proton-launches 5 \
            --out "$d/overhead" 2>&1 | grep -v "^Warning (cta" >"$d/overhead.log"
        tail -5 "$d/session_scale.log"
        grep -h -A16 "^== " "$d/overhead.log" | grep -v "Proton next" | cut -c1-150
      fi
      if [ "$part" != verify-timing ]; then
        if [ "$part" = verify-checks ] && [ -d .liger ]; then
          python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/liger_site .liger/*.whl
          mkdir -p /tmp/liger && tar xzf .liger/liger-src.tar.gz -C /tmp/liger
          PYTHONPATH=/tmp/liger_site:${PYTHONPATH:-} LIGER_TIMEOUT=300 \
              bash bench/liger_suite.sh "$d/liger" /tmp/liger rms_norm layer_norm geglu dyt >"$d/liger.log" 2>&1 &
        fi
        timeout 180 python3 -m pytest -v -m gpu tests/gpu/test_launch_paths_gpu.py tests/gpu/test_async_lowering_gpu.py \
            -p no:cacheprovider -rfEs -o faulthandler_timeout=160 >"$d/gpu_tests.log" 2>&1
        wait
        [ -d "$d/liger/kperf" ] && (cd "$d/liger" && tar czf kperf.tgz kperf && rm -rf kperf)
        tail -4 "$d/gpu_tests.log"; [ -f "$d/liger.log" ] && tail -30 "$d/liger.log"
      fi ;;
    heldout)
      timeout 100 python3 -m bench.heldout_smoke --out "$d/heldout_smoke.json" --timeout 60 >"$d/heldout_smoke.log" 2>&1
      cat "$d/heldout_smoke.log" ;;
    reach)
      timeout 150 python3 -m bench.session_scale --host-profile --out "$d/session_scale.json" >"$d/session_scale.log" 2>&1
      timeout 400 python3 -m bench.inductor_block --out "$d/inductor" >"$d/inductor_block.log" 2>&1
      tail -12 "$d/session_scale.log"; tail -20 "$d/inductor_block.log" ;;
    liger)
      python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/liger_site .liger/*.whl
      mkdir -p /tmp/liger && tar xzf .liger/liger-src.tar.gz -C /tmp/liger
      PYTHONPATH=/tmp/liger_site:${PYTHONPATH:-} LIGER_TIMEOUT=${LIGER_TIMEOUT:-380} \
          bash bench/liger_suite.sh "$d" /tmp/liger ${LIGER_TESTS:-rms_norm layer_norm geglu swiglu dyt}
      ls "$d/kperf" | head; tail -n 2 "$d"/kperf_*.log; head -c 3000 "$d"/*_failures.txt 2>/dev/null
      [ -d "$d/kperf" ] && (cd "$d" && tar czf kperf.tgz kperf && rm -rf kperf) ;;
    *) echo "unknown part $part"; exit 2 ;;
  esac
done
