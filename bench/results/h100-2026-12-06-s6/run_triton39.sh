cat /root/tri/part.00 /root/tri/part.01 .tri_c/part.02 .tri_c/part.03 > /root/tri/t.tar.xz && mkdir -p /root/tri/site &&
tar xJf /root/tri/t.tar.xz -C /root/tri/site &&
sed -i '/amd/d' /root/tri/site/triton-*.dist-info/entry_points.txt &&
ln -sf /root/tri/site/triton/backends/nvidia/bin/ptxas /root/tri/site/triton/backends/nvidia/bin/ptxas-blackwell
cp -r .headsnap/tracing/. tracing/
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/root/tri/site:/tmp/site
python3 -m pip install -q --no-deps --no-build-isolation -e . > $OUT/install.log 2>&1
python3 -c "import triton, torch; print('triton', triton.__version__, 'torch', torch.__version__)" | tee $OUT/versions.txt
timeout 150 python3 -m pytest -q -m gpu -p no:cacheprovider tests/gpu/test_core_gpu.py tests/gpu/test_ws_gpu.py > $OUT/gpu_tests_triton39.log 2>&1
echo "gpu tests rc=$?"; tail -15 $OUT/gpu_tests_triton39.log | cut -c1-300
timeout 100 python3 -m bench.overhead --only gemm --variants default --reps 10 --rounds 2 --out $OUT/overhead39 > $OUT/overhead_triton39.log 2>&1
echo "overhead rc=$?"
grep -v "^Warning (cta" $OUT/overhead_triton39.log | tail -12 | cut -c1-300
grep -v "^Warning (cta" $OUT/overhead_triton39.log > $OUT/overhead_triton39.short.log
rm -f $OUT/overhead_triton39.log
