"""kperf's benchmarks: overhead against plain kernels and Proton, accuracy, host throughput, FA3 tuning.

Run each from the repository root as a module, e.g. ``python3 -m bench.overhead --quick --out /tmp/o``;
each module's docstring says what it measures and how.  ``bench.timing`` holds the timing methods they
share; results and their write-ups are under ``bench/results/``.
"""
