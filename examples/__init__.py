"""Example kernels profiled with kperf, installed as ``kperf.examples``.

Each module runs as a script (``python3 examples/matmul.py --out out/matmul``) and imports as a module
(``from kperf.examples import matmul``): tests, benchmarks and ``kperf.tritonbench_ext`` use the kernels
and their compile-only descriptions (``SIGNATURE``, ``CONSTEXPRS``, ``COMPILE_OPTIONS``, which
``kperf compile FILE.py:KERNEL`` reads).  Without a GPU each script stops with the same message
(:mod:`kperf.examples.gpu`); ``examples/profiles/`` holds real H100 profiles to read instead.
"""
