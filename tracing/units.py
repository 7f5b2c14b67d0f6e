"""Time units of the printed tables, the plots and ``Profile.table``: one table of names and scales.

Every figure is kept in nanoseconds; a unit only scales what is shown.  The plots offer no seconds
(a kernel's timeline in seconds is all zeros), so callers can narrow the choice.
"""

from __future__ import annotations

from collections.abc import Iterable

from kperf.dialect.errors import KperfError

#: Nanoseconds per unit.
NS_PER_UNIT = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}

#: The units a time axis of a plot offers.
PLOT_UNITS = ("ns", "us", "ms")


def ns_per(time_unit: str, allowed: Iterable[str] = NS_PER_UNIT) -> float:
    """Nanoseconds in one ``time_unit``; a unit outside ``allowed`` raises a :class:`KperfError`."""
    allowed = list(allowed)
    if time_unit not in allowed:
        raise KperfError(f"unknown time unit {time_unit!r}", fix=f"use one of {', '.join(allowed)}")
    return NS_PER_UNIT[time_unit]
