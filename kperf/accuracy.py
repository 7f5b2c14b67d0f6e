"""Subtracting the cost of the records themselves from measured times (``ProfileConfig.record_cost``).

Each record adds a few cycles between the clock reads around it (the tag move and store after its
own clock read, the bound check before the next).  With a per-record cost ``c`` (cycles, measured
per GPU and lowering variant by ``bench/calibration.py``), event ``seq`` of a warp is moved back by
``c * seq``: an interval from record ``s`` to record ``e`` shrinks by ``c * (e - s)``, i.e. by the
cost of every record it contains.  docs/accuracy.md has the measured values and what they fix.
"""

from __future__ import annotations

import numpy as np


def subtract_record_cost(decoded, cycles_per_record: float) -> None:
    """Move every event of ``decoded`` (a fresh ``DecodedLaunch``) back by ``cycles_per_record * seq``.

    Changes ``cycles`` (rounded to whole cycles) and ``time_ns`` (through each CTA's measured
    ns/cycle) in place; call it before reading events or intervals.  globaltimer events (ns) are
    moved by ``cycles_per_record`` ns per record.
    """
    if not cycles_per_record or not decoded.n_events:
        return
    cols = decoded.columns
    shift = cycles_per_record * cols["seq"].astype(np.float64)
    cols.cols["cycles"] -= np.rint(shift).astype(np.int64)
    ns_per_cycle = decoded.ctas["ns_per_cycle"][cols["cta"]]
    cols.cols["time_ns"] -= shift * ns_per_cycle
