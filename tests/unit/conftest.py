"""The ``compile_side`` marker: the tests CI runs on every supported Triton release besides 3.6.

The full suite runs on Triton 3.6; on 3.7, 3.8 and 3.9 CI runs ``pytest -m compile_side tests/unit``
(``.ci/run``): the facts of ``kperf.triton_compat`` (tests/unit/test_triton_compat.py) and one test of
each thing kperf does inside Triton's compiler: compile for sm_90 with records in TTGIR, PTX and SASS
(ptxas), SASS per record, automatic insertion into warp-specialized partitions, override files in
kperf's and Proton's syntax, Gluon kernels, and golden cases (compiled; compared on 3.6 only).  The
subset shares compiles through Triton's cache, so a run per release stays well under a minute.
"""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "compile_side: compiles through Triton; CI runs these on every supported Triton release")
