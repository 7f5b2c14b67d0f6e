"""Host-side decoding of kperf profile buffers.

Pipeline: :func:`decode` (buffer bytes -> :class:`DecodedLaunch`: events as columns, ``events`` as an
``EVENT_DTYPE`` table), :func:`pair` / ``DecodedLaunch.pairs()`` (matched scopes), then
:func:`write_perfetto_trace` (native Perfetto protobuf) or :func:`write_chrome_trace` (Chrome JSON),
each of a chosen subset of CTAs for large launches (:mod:`.select`), and :func:`save_profile` /
:func:`load_profile` (``.kperf`` files).  The buffer format is :mod:`kperf.dialect.layout`.

Analysis of decoded launches: :mod:`.stats` (every statistics table, :func:`~.stats.report`),
:mod:`.diff` (two profiles compared) and :mod:`.plots` (timelines, histograms; matplotlib optional).

Units throughout: ``cycles`` are SM clock cycles (clock64 domain; globaltimer ns for
``clock="globaltimer"``), ``*_ns`` are nanoseconds since the launch's first CTA entry (``t0_ns``),
``*_ghz`` are cycles per ns.
"""

from .chrome import write_chrome_trace
from .clocks import MIN_FIT_SPAN_NS, SM_CLOCK_DTYPE, ClockFit, fit_clocks
from .columns import EventColumns
from .decode import CTA_DTYPE, EVENT_DTYPE, LOST_DTYPE, REJECTED_DTYPE, DecodedLaunch, decode
from .flows import FLOW_DTYPE
from .intervals import INTERVAL_DTYPE, Pairs, describe_unmatched, pair, pair_columns
from .perfetto import write_perfetto_trace
from .saved import load_profile, save_profile
from .select import DEFAULT_MAX_EVENTS, Selection, parse_selection, subset

__all__ = [
    "CTA_DTYPE",
    "DEFAULT_MAX_EVENTS",
    "EventColumns",
    "FLOW_DTYPE",
    "Pairs",
    "Selection",
    "load_profile",
    "pair_columns",
    "parse_selection",
    "save_profile",
    "subset",
    "write_perfetto_trace",
    "ClockFit",
    "DecodedLaunch",
    "EVENT_DTYPE",
    "INTERVAL_DTYPE",
    "LOST_DTYPE",
    "REJECTED_DTYPE",
    "MIN_FIT_SPAN_NS",
    "SM_CLOCK_DTYPE",
    "decode",
    "describe_unmatched",
    "fit_clocks",
    "pair",
    "write_chrome_trace",
]
