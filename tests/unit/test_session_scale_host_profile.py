"""bench/session_scale.py --host-profile without a GPU: per-launch own and cumulative host time by
function, the costliest first, so a GPU run says which part of a profiled launch sets its time."""

from __future__ import annotations

import time

from bench.session_scale import _host_profile


def _slow_part():
    time.sleep(0.002)


def _launch():
    _slow_part()
    sum(range(100))


def test_the_costliest_function_comes_first_with_its_time_per_launch():
    rows = _host_profile(_launch, 20, top=5, sync=lambda: None)
    assert len(rows) <= 5
    top = next(r for r in rows if "_slow_part" in r["function"] or "sleep" in r["function"])
    assert top is rows[0] and top["own_us_per_launch"] >= 1500 and top["calls_per_launch"] == 1
    launch = next(r for r in rows if "(_launch)" in r["function"])
    assert launch["cumulative_us_per_launch"] >= 1500
    own = [r["own_us_per_launch"] for r in rows]
    assert own == sorted(own, reverse=True)
