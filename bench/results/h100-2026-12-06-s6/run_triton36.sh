set -x
cp -r .headsnap/tracing/. tracing/
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-deps --no-build-isolation -e . > $OUT/install.log 2>&1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $OUT/device.txt
python3 -c "import triton, torch; print(triton.__version__, torch.__version__)" >> $OUT/device.txt
timeout 260 python3 -m pytest -q -m gpu -p no:cacheprovider tests/gpu/test_core_gpu.py tests/gpu/test_ws_gpu.py tests/gpu/test_faults_gpu.py tests/gpu/test_reports_gpu.py tests/gpu/test_accuracy_gpu.py tests/gpu/test_distributed_gpu.py > $OUT/gpu_tests_triton36.log 2>&1
echo "gpu tests rc=$?"
tail -3 $OUT/gpu_tests_triton36.log
timeout 150 python3 -m bench.overhead --only gemm --variants default --reps 10 --rounds 3 --out $OUT/overhead36 > $OUT/overhead_triton36.log 2>&1
echo "overhead rc=$?"
tail -25 $OUT/overhead_triton36.log
