"""Host-side decoding of kperf profile buffers.

Pipeline: :func:`decode` (buffer bytes -> :class:`DecodedLaunch` with an ``EVENT_DTYPE`` table),
:func:`pair` (events -> ``INTERVAL_DTYPE`` intervals + unmatched events), and
:func:`write_chrome_trace` (-> Chrome/Perfetto JSON).  The buffer format is :mod:`kperf.layout`.

Units throughout: ``cycles`` are SM clock cycles (clock64 domain; globaltimer ns for
``clock="globaltimer"``), ``*_ns`` are nanoseconds since the launch's first CTA entry (``t0_ns``),
``*_ghz`` are cycles per ns.
"""

from .chrome import write_chrome_trace
from .clocks import MIN_FIT_SPAN_NS, SM_CLOCK_DTYPE, ClockFit, fit_clocks
from .decode import CTA_DTYPE, EVENT_DTYPE, LOST_DTYPE, DecodedLaunch, decode
from .intervals import INTERVAL_DTYPE, describe_unmatched, pair

__all__ = [
    "CTA_DTYPE",
    "ClockFit",
    "DecodedLaunch",
    "EVENT_DTYPE",
    "INTERVAL_DTYPE",
    "LOST_DTYPE",
    "MIN_FIT_SPAN_NS",
    "SM_CLOCK_DTYPE",
    "decode",
    "describe_unmatched",
    "fit_clocks",
    "pair",
    "write_chrome_trace",
]
