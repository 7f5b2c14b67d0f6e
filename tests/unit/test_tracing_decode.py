"""kperf.tracing.decode against the reference encoder."""

from __future__ import annotations

import struct
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_encoder import CtaSpec, SmClock, bulk_buffer, encode, expected_events, make_cta, raw_tag

from kperf.dialect.errors import KperfError
from kperf.dialect.layout import CLOCKS, MAGIC, Geometry
from kperf.tracing import CTA_DTYPE, EVENT_DTYPE, LOST_DTYPE, decode
from kperf.tracing.parallel import PARALLEL_MIN_EVENTS
from kperf.tracing.record_checks import (
    REJECT_INVALID_TAG,
    REJECT_OUT_OF_ORDER,
    REJECT_OUT_OF_SPAN,
    REJECT_PARTNER,
    REJECT_UNKNOWN_SCOPE,
    SPAN_SLACK,
    span_tolerance,
)

G0 = 1_700_000_000_000_000_000  # a realistic absolute globaltimer value, ns


def got(d):
    e = d.events
    return list(zip(e["cta"].tolist(), e["warp"].tolist(), e["seq"].tolist(), e["scope"].tolist(),
                    e["is_end"].tolist(), e["cycles"].tolist(), strict=True))


def simple_cta(warps, *, cs=10_000_000, span=1_000_000, sm=0, ctaid=(0, 0, 0), gs=G0, **kw):
    """A CTA running at 2 GHz: span cycles = span/2 ns."""
    return CtaSpec(warps=warps, sm=sm, ctaid=ctaid, gtime_start=gs, clock_start=cs,
                   gtime_end=gs + span // 2, clock_end=cs + span, **kw)


def loop_records(n, t0, scope=0, step=100):
    """n records alternating start/end of one scope, step cycles apart."""
    return [(scope, bool(i & 1), t0 + i * step) for i in range(n)]


# --------------------------------------------------------------------------- basics


def test_dtypes_and_round_trip_clock():
    g = Geometry(num_warps=2, capacity=8, clock="clock")
    cs = 123_456_789
    ctas = [simple_cta([loop_records(6, cs + 10), loop_records(4, cs + 5, scope=3)], cs=cs, sm=7)]
    d = decode(encode(g, "keep-first", ctas), g, strategy="keep-first", launch=3)
    assert d.events.dtype == EVENT_DTYPE and d.ctas.dtype == CTA_DTYPE and d.lost.dtype == LOST_DTYPE
    assert got(d) == expected_events(g, "keep-first", ctas)
    assert (d.events["launch"] == 3).all() and (d.events["sm"] == 7).all()
    assert d.problems == [] and d.lost_total == 0 and len(d.lost) == 0
    assert d.t0_ns == G0
    assert d.clock_ghz == pytest.approx(2.0)
    assert d.ctas["ok"].all() and d.ctas["n_events"].tolist() == [10]
    # time_ns: ns since t0 at 2 GHz
    np.testing.assert_allclose(d.events["time_ns"], (d.events["cycles"] - cs) / 2.0, atol=1e-6)


def test_empty_buffer():
    g = Geometry(4, 16)
    d = decode(b"", g, strategy="keep-first")
    assert len(d.events) == 0 and len(d.ctas) == 0 and d.problems == []


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "u8", "u4", "2d"])
def test_buffer_types(kind):
    g = Geometry(2, 4, "clock64")
    ctas = [simple_cta([loop_records(4, 10_000_100)]),
            simple_cta([loop_records(2, 10_000_200)], ctaid=(1, 0, 0))]
    raw = encode(g, "keep-first", ctas)
    buf = {
        "bytes": raw,
        "bytearray": bytearray(raw),
        "memoryview": memoryview(raw),
        "u8": np.frombuffer(raw, np.uint8),
        "u4": np.frombuffer(raw, np.uint32),
        "2d": np.frombuffer(raw, np.uint8).reshape(2, -1),
    }[kind]
    d = decode(buf, g, strategy="keep-first")
    assert got(d) == expected_events(g, "keep-first", ctas)


# --------------------------------------------------------------------------- sizes


def test_truncated_buffer_raises():
    g = Geometry(4, 32)
    ctas = [simple_cta([]) for _ in range(3)]
    raw = encode(g, "keep-first", ctas)
    m = g.cta_bytes
    with pytest.raises(KperfError, match=rf"expected {3 * m} bytes \(3 CTAs x {m} bytes\), got {3 * m - 5}"):
        decode(encode(g, "keep-first", ctas, truncate_to=3 * m - 5), g, strategy="keep-first")
    with pytest.raises(KperfError, match=rf"expected {4 * m} bytes \(4 CTAs x {m} bytes\), got {3 * m}"):
        decode(raw, g, strategy="keep-first", n_ctas=4)
    # a whole-region longer buffer is fine: only n_ctas regions are read
    assert len(decode(raw, g, strategy="keep-first", n_ctas=2).ctas) == 2


def test_bad_arguments_raise():
    g = Geometry(1, 6)
    with pytest.raises(KperfError, match="power-of-two"):
        decode(b"", g, strategy="wrap")
    with pytest.raises(KperfError, match="unknown strategy"):
        decode(b"", g, strategy="ring")


def test_every_misuse_is_a_kperf_error_with_a_fix():
    """A wrong size, CTA count, capacity or strategy is a KperfError naming where and the fix (never a
    bare ValueError)."""
    g = Geometry(1, 4)
    raw = encode(g, "keep-first", [simple_cta([]) for _ in range(3)])
    m = g.cta_bytes
    for call in (lambda: decode(raw[:-1], g, strategy="keep-first", n_ctas=3),
                 lambda: decode(raw, g, strategy="keep-first", n_ctas=4),
                 lambda: decode(raw + bytes(m // 2), g, strategy="keep-first", n_ctas=3),
                 lambda: decode(raw[:-1], g, strategy="keep-first"),
                 lambda: decode(raw, g, strategy="keep-first", n_ctas=-1),
                 lambda: decode(raw, Geometry(1, 6), strategy="wrap"),
                 lambda: decode(raw, g, strategy="ring")):
        with pytest.raises(KperfError) as info:
            call()
        assert not isinstance(info.value, ValueError)
        assert info.value.where and info.value.fix and "fix:" in str(info.value)


# --------------------------------------------------------------------------- strategies


def test_keep_first_overflow_exact_lost():
    g = Geometry(num_warps=3, capacity=4, clock="clock")
    cs = 50_000
    ctas = [simple_cta([loop_records(10, cs + 1), loop_records(3, cs + 2), loop_records(4, cs + 3)], cs=cs),
            simple_cta([[], loop_records(5, cs + 7)], cs=cs, ctaid=(1, 0, 0))]
    d = decode(encode(g, "keep-first", ctas), g, strategy="keep-first")
    assert got(d) == expected_events(g, "keep-first", ctas)
    assert d.lost.tolist() == [(0, 0, 10, 4, 6), (1, 1, 5, 4, 1)]
    assert d.lost_total == 7
    assert d.ctas["n_lost"].tolist() == [6, 1]
    assert d.events["seq"][d.events["warp"] == 0].max() == 3
    # warp 1's three records end on a start that nothing lost explains: reported, where it is
    [p] = d.problems
    assert "1 scope record without a partner" in p and "CTA 0 warp 1 seq 2 (start of 'scope 0')" in p


def test_wrap_ring_reorder():
    g = Geometry(num_warps=4, capacity=4, clock="clock")
    cs = 7_000
    # 11 records: slots hold seq 8, 9, 10, 7 -> the oldest (7) at slot 11 % 4 = 3
    ctas = [simple_cta([loop_records(11, cs + 1), loop_records(4, cs + 2), loop_records(8, cs + 3),
                        loop_records(2, cs + 4)], cs=cs)]
    d = decode(encode(g, "wrap", ctas), g, strategy="wrap")
    assert got(d) == expected_events(g, "wrap", ctas)
    w0 = d.events[d.events["warp"] == 0]
    assert w0["seq"].tolist() == [7, 8, 9, 10]
    assert np.all(np.diff(w0["cycles"]) == 100)
    assert d.lost.tolist() == [(0, 0, 11, 4, 7), (0, 2, 8, 4, 4)]
    # the leading end (seq 7) lost its start to the wrap; the trailing start (seq 10) has no excuse
    [p] = d.problems
    assert "1 scope record without a partner" in p and "CTA 0 warp 0 seq 10 (start of 'scope 0')" in p


def test_wrong_strategy_is_noticed():
    """A wrapped buffer decoded as keep-first: the ring order shows up as a backward clock step."""
    g = Geometry(1, 4, "clock64")
    ctas = [simple_cta([loop_records(6, 10_000_100)])]
    d = decode(encode(g, "wrap", ctas), g, strategy="keep-first")
    assert any("non-monotonic" in p for p in d.problems)


# --------------------------------------------------------------------------- 32-bit clock


def test_clock32_wraps_in_the_middle_of_a_warp():
    g = Geometry(2, 16, "clock")
    cs = 5 * (1 << 32) - 1_000  # the low 32 bits wrap 1000 cycles after entry
    ctas = [simple_cta([loop_records(12, cs + 100, step=150), loop_records(8, cs + 990, step=3)], cs=cs)]
    for strategy in ("keep-first", "wrap"):
        d = decode(encode(g, strategy, ctas), g, strategy=strategy)
        assert got(d) == expected_events(g, strategy, ctas)
        assert d.problems == []


def test_records_before_the_header_clock():
    """Warps other than 0 may record before warp 0 reads clock_start, even across a 32-bit wrap."""
    g = Geometry(2, 8, "clock")
    cs = 3 * (1 << 32) + 200  # low 32 bits of clock_start: 200
    ctas = [simple_cta([loop_records(4, cs + 10), loop_records(4, cs - 700)], cs=cs)]
    d = decode(encode(g, "keep-first", ctas), g, strategy="keep-first")
    assert got(d) == expected_events(g, "keep-first", ctas)
    w1 = d.events[d.events["warp"] == 1]
    assert w1["cycles"][0] == cs - 700 and w1["time_ns"][0] < 0


def test_long_cta_unsigned_steps_and_end_anchor():
    """A CTA longer than 2**32 cycles: steps over 2**31 are wraps; a wrapped warp anchors on clock_end."""
    g = Geometry(2, 4, "clock")
    cs = 1 << 40
    big = 3 * (1 << 30)  # > 2**31: read as a forward step because the CTA is long
    w0 = [(0, bool(i & 1), cs + 10 + i * big) for i in range(4)]  # spans 9 * 2**30 cycles
    w1 = [(1, bool(i & 1), cs + 20 + i * big) for i in range(10)]  # wrap keeps the last 4, > 2**32 from entry
    span = 9 * big + 1000  # the last record of warp 1 lies just before clock_end
    ctas = [simple_cta([w0, w1], cs=cs, span=span)]
    for strategy in ("keep-first", "wrap"):
        d = decode(encode(g, strategy, ctas), g, strategy=strategy)
        assert got(d) == expected_events(g, strategy, ctas), strategy
        assert d.problems == []


def test_backward_step_in_short_cta_is_reported_not_unwrapped():
    """A backward step is reported, never unwrapped, and its records are left out: here either seq 1 or
    seq 2 may be the corrupt one, so both go, with their partners (no interval from seq 0 to seq 3)."""
    g = Geometry(1, 8, "clock")
    cs = 1 << 33
    recs = [(0, False, cs + 100), (0, True, cs + 500), (0, False, cs + 400), (0, True, cs + 900)]
    d = decode(encode(g, "keep-first", [simple_cta([recs], cs=cs)]), g, strategy="keep-first")
    assert len(d.events) == 0 and len(d.intervals()[0]) == 0
    assert d.rejected[["seq", "reason"]].tolist() == [(0, REJECT_PARTNER), (1, REJECT_OUT_OF_ORDER),
                                                      (2, REJECT_OUT_OF_ORDER), (3, REJECT_PARTNER)]
    order, partner = d.problems
    assert "non-monotonic" in order and "CTA 0 warp 0 seq 2 (-100 cycles)" in order
    assert "2 records out of order left out of the events: CTA 0 warp 0 seq 1, CTA 0 warp 0 seq 2" in order
    assert "2 records whose scope partner" in partner and "CTA 0 warp 0 seq 0, CTA 0 warp 0 seq 3" in partner
    assert "4 records rejected (2 out of order, 2 partner rejected)" in d.summary()


@pytest.mark.parametrize("clock", ["clock64", "globaltimer"])
def test_backward_step_64bit_reported(clock):
    g = Geometry(1, 8, clock)
    recs = [(0, False, G0 + 100), (0, True, G0 + 50)]
    d = decode(encode(g, "keep-first", [simple_cta([recs], cs=G0, gs=G0)]), g, strategy="keep-first")
    assert len(d.events) == 0 and d.rejected["reason"].tolist() == [REJECT_OUT_OF_ORDER] * 2
    assert any("non-monotonic" in p and "-50" in p for p in d.problems)


@pytest.mark.parametrize("clock", ["clock", "clock64"])
def test_one_outlier_is_rejected_with_its_partner_only(clock):
    """A record too late for its neighbours (but inside the CTA) goes with its start; the rest stays."""
    g = Geometry(1, 8, clock)
    cs = 10_000_000
    recs = loop_records(6, cs + 100)  # S E S E S E, 100 cycles apart
    recs[3] = (0, True, cs + 5_000)  # seq 3 is later than seq 4
    d = decode(encode(g, "keep-first", [simple_cta([recs], cs=cs)]), g, strategy="keep-first")
    assert d.events["seq"].tolist() == [0, 1, 4, 5]
    assert d.rejected[["seq", "reason"]].tolist() == [(2, REJECT_PARTNER), (3, REJECT_OUT_OF_ORDER)]
    iv, un = d.intervals()
    assert len(iv) == 2 and len(un) == 0 and (iv["end_cycles"] - iv["start_cycles"] == 100).all()


@pytest.mark.parametrize("clock", ["clock", "clock64", "globaltimer"])
def test_flipped_clock_bit_outside_the_cta_span_is_rejected(clock):
    """The hostile tester's case: one flipped bit in one record's clock made a scope longer than its
    CTA.  The record lies outside the header span: rejected with its partner, the CTA's other scopes kept."""
    g = Geometry(2, 8, clock)
    t0 = G0 if clock == "globaltimer" else 10_000_000
    recs = loop_records(6, t0 + 100)
    bit = 24 if clock != "clock" else 30  # 16.7 M (1 G) units away, the CTA spans 1 M cycles
    recs[5] = (0, True, recs[5][2] ^ (1 << bit))
    ctas = [simple_cta([recs, loop_records(2, t0 + 50)], cs=t0, gs=G0)]
    d = decode(encode(g, "keep-first", ctas), g, strategy="keep-first")
    assert d.rejected[["warp", "seq", "reason"]].tolist() == [(0, 4, REJECT_PARTNER),
                                                              (0, 5, REJECT_OUT_OF_SPAN)]
    iv, un = d.intervals()
    assert len(iv) == 3 and len(un) == 0
    assert (iv["end_ns"] - iv["start_ns"]).max() < d.duration_ns
    assert any("outside their CTA's header span" in p and "CTA 0 warp 0 seq 5" in p for p in d.problems)


def test_records_just_outside_the_span_are_tolerated():
    """Other warps may record a little before warp 0 reads the entry clock or after it reads the exit
    clock; within the tolerance (kperf.tracing.record_checks.span_bounds) nothing is rejected."""
    g = Geometry(2, 8, "clock64")
    cs, span = 10_000_000, 1_000_000
    slack = span_tolerance(span)
    ctas = [simple_cta([loop_records(2, cs - slack), loop_records(2, cs + span + slack - 100, step=100)],
                       cs=cs, span=span)]
    d = decode(encode(g, "keep-first", ctas), g, strategy="keep-first")
    assert d.problems == [] and len(d.events) == 4
    ctas = [simple_cta([loop_records(2, cs - slack - 1), [(0, False, cs), (0, True, cs + span + slack + 1)]],
                       cs=cs, span=span)]
    d = decode(encode(g, "keep-first", ctas), g, strategy="keep-first")
    assert d.rejected[["warp", "seq", "reason"]].tolist() == [
        (0, 0, REJECT_OUT_OF_SPAN), (0, 1, REJECT_PARTNER),
        (1, 0, REJECT_PARTNER), (1, 1, REJECT_OUT_OF_SPAN)]


# --------------------------------------------------------------------------- clocks


def test_globaltimer_mode_needs_no_conversion():
    g = Geometry(2, 8, "globaltimer")
    ctas = [simple_cta([loop_records(4, G0 + 64)], gs=G0, cs=1 << 35),
            simple_cta([loop_records(4, G0 + 1000), loop_records(2, G0 + 2000)], gs=G0 + 960, cs=7 << 35,
                       sm=3, ctaid=(1, 0, 0))]
    d = decode(encode(g, "keep-first", ctas), g, strategy="keep-first")
    assert got(d) == expected_events(g, "keep-first", ctas)
    assert d.t0_ns == G0
    np.testing.assert_array_equal(d.events["time_ns"], (d.events["cycles"] - G0).astype(float))
    assert (d.ctas["ns_per_cycle"] == 1.0).all()
    assert d.ctas["offset_ns"].tolist() == [0.0, 960.0]


def _multi_sm_launch(clock, rates, *, per_sm=6, cta_ns=20_000.0, seed=0, gtime_step=32):
    """CTAs spread over SMs with their own clock rates and offsets; returns (ctas, truth ns per event)."""
    rng = np.random.default_rng(seed)
    sm_clocks = [SmClock(ghz, int(rng.integers(1 << 32, 1 << 44))) for ghz in rates]
    ctas, truth = [], []
    for k in range(per_sm):
        for sm, sc in enumerate(sm_clocks):
            t0 = k * (cta_ns + 3_000) + float(rng.uniform(0, 2_000))
            warps = []
            for w in range(2):
                ts = np.sort(rng.uniform(t0 - 50, t0 + cta_ns, 6))
                warps.append([(w, bool(i & 1), float(t)) for i, t in enumerate(ts)])
                truth += [float(t) for t in ts]
            ctas.append(make_cta(clock, sc, sm, t0, t0 + cta_ns, warps, gtime_base=G0,
                                 ctaid=(len(ctas), 0, 0), gtime_step=gtime_step))
    return ctas, np.array(truth)


@pytest.mark.parametrize("clock", ["clock", "clock64"])
def test_sm_clock_rates_and_offsets_recovered(clock):
    rates = [1.2, 1.5, 1.755, 1.98]
    ctas, truth = _multi_sm_launch(clock, rates)
    g = Geometry(2, 8, clock)
    d = decode(encode(g, "keep-first", ctas), g, strategy="keep-first")
    assert d.problems == []
    assert d.sm_clocks["sm"].tolist() == [0, 1, 2, 3]
    assert d.sm_clocks["own_rate"].all()
    np.testing.assert_allclose(d.sm_clocks["ghz"], rates, rtol=1e-4)
    # truth is ns since gtime_base; the decoder's axis starts at the first (quantised) CTA entry
    t_truth = truth - (d.t0_ns - G0)
    err = np.abs(d.events["time_ns"] - t_truth)
    assert err.max() < 40.0  # globaltimer steps are 32 ns
    # monotonic in every warp
    e = d.events
    same = (e["cta"][1:] == e["cta"][:-1]) & (e["warp"][1:] == e["warp"][:-1])
    assert (np.diff(e["time_ns"])[same] >= 0).all()


def test_short_sm_gets_launch_rate_with_own_offset():
    rates = [1.6, 1.6, 1.6]
    ctas, truth = _multi_sm_launch("clock64", rates, per_sm=4)
    # one extra CTA alone on SM 9, 1 us long: too short to measure its rate
    sc = SmClock(1.6, 987_654_321_000)
    warps = [[(0, False, 5_000.0), (0, True, 5_600.0)]]
    ctas.append(make_cta("clock64", sc, 9, 4_900.0, 5_900.0, warps, gtime_base=G0, ctaid=(len(ctas), 0, 0)))
    truth = np.r_[truth, 5_000.0, 5_600.0]
    g = Geometry(2, 8, "clock64")
    d = decode(encode(g, "keep-first", ctas), g, strategy="keep-first")
    row = d.sm_clocks[d.sm_clocks["sm"] == 9][0]
    assert not row["own_rate"] and row["ghz"] == pytest.approx(1.6, rel=1e-3)
    assert not d.ctas["own_rate"][-1] and d.ctas["own_rate"][:-1].all()
    assert d.clock_ghz == pytest.approx(1.6, rel=1e-3)
    err = np.abs(d.events["time_ns"] - (truth - (d.t0_ns - G0)))
    assert err.max() < 40.0


def test_coarse_globaltimer_needs_a_longer_span():
    """With a 1 us globaltimer (older GPUs) 45 us per SM is too short for a per-SM rate: pooled fit."""
    rates = [1.4, 1.4, 1.4, 1.4]
    ctas, truth = _multi_sm_launch("clock64", rates, per_sm=2, gtime_step=1000)
    g = Geometry(2, 8, "clock64")
    d = decode(encode(g, "keep-first", ctas), g, strategy="keep-first")
    assert d.gtime_step_ns == 1000
    assert not d.sm_clocks["own_rate"].any()
    assert d.clock_ghz == pytest.approx(1.4, rel=0.02)
    err = np.abs(d.events["time_ns"] - (truth - (d.t0_ns - G0)))
    assert err.max() < 1_500.0


def test_no_measurable_rate_gives_nan_times_and_a_problem():
    g = Geometry(1, 4, "clock64")
    ctas = [simple_cta([loop_records(2, 10_000_100)], no_end=True)]
    d = decode(encode(g, "keep-first", ctas), g, strategy="keep-first")
    assert got(d) == expected_events(g, "keep-first", ctas)  # cycles stay exact
    assert np.isnan(d.events["time_ns"]).all() and np.isnan(d.clock_ghz)
    assert any("cannot measure the SM clock rate" in p for p in d.problems)
    assert any("never wrote exit timestamps" in p for p in d.problems)


# --------------------------------------------------------------------------- corruption


def test_zeroed_cta_reported_and_excluded():
    g = Geometry(2, 4)
    ctas = [simple_cta([loop_records(2, 10_000_100)], ctaid=(i, 0, 0)) for i in range(4)]
    ctas[1].zeroed = True
    ctas[3].zeroed = True
    d = decode(encode(g, "keep-first", ctas), g, strategy="keep-first")
    assert sorted(set(d.events["cta"].tolist())) == [0, 2]
    assert d.ctas["ok"].tolist() == [True, False, True, False]
    [p] = d.problems
    assert "2 CTAs never wrote their header" in p and "CTA 1, 3" in p


def test_bad_magic_version_num_warps():
    g = Geometry(2, 4)
    ctas = [simple_cta([loop_records(2, 10_000_100)], ctaid=(i, 0, 0)) for i in range(4)]
    ctas[1].magic = 0xDEADBEEF
    ctas[2].version = 7
    ctas[3].num_warps = 8
    d = decode(encode(g, "keep-first", ctas), g, strategy="keep-first")
    assert d.events["cta"].tolist() == [0, 0]
    text = "\n".join(d.problems)
    assert "bad magic" in text and "CTA 1 (0xDEADBEEF)" in text and f"0x{MAGIC:08X}" in text
    assert "version 7" in text and "CTA 2" in text
    assert "num_warps 8" in text and "CTA 3" in text


def test_invalid_tags_dropped_and_reported():
    g = Geometry(2, 8, "clock")
    cs = 10_000_000
    ctas = [simple_cta([loop_records(6, cs + 10), loop_records(4, cs + 20)], cs=cs,
                       raw_tags={(0, 2): 0, (1, 1): raw_tag(1, True) | (1 << 27)})]
    d = decode(encode(g, "keep-first", ctas), g, strategy="keep-first")
    exp = [e for e in expected_events(g, "keep-first", ctas) if (e[1], e[2]) not in ((0, 2), (1, 1))]
    assert got(d) == exp
    p, loose = d.problems
    assert "2 records with an invalid tag" in p
    assert "CTA 0 warp 0 seq 2 (tag 0x00000000)" in p and "CTA 0 warp 1 seq 1 (tag 0x88000003)" in p
    assert d.rejected[["warp", "seq", "reason", "tag"]].tolist() == [
        (0, 2, REJECT_INVALID_TAG, 0), (1, 1, REJECT_INVALID_TAG, 0x88000003)]
    # the halves they leave behind are reported too
    assert "2 scope records without a partner (1 starts without end, 1 ends without start)" in loose
    assert "CTA 0 warp 0 seq 3 (end of 'scope 0')" in loose and "CTA 0 warp 1 seq 0 (start" in loose


def test_scope_not_in_table_reported_and_left_out():
    """A record whose scope id the table does not have cannot be named or trusted (a corrupt tag or the
    wrong table): like every rejected record it is left out of the events, counted and reported."""
    g = Geometry(1, 8)
    cs = 10_000_000
    recs = [(0, False, cs + 1), (5, False, cs + 2), (5, True, cs + 3), (0, True, cs + 4)]
    raw = encode(g, "keep-first", [simple_cta([recs], cs=cs)])
    d = decode(raw, g, strategy="keep-first", scopes=["outer", "inner"])
    assert d.events["seq"].tolist() == [0, 3] and len(d.intervals()[0]) == 1
    assert d.rejected[["seq", "reason"]].tolist() == [(1, REJECT_UNKNOWN_SCOPE), (2, REJECT_UNKNOWN_SCOPE)]
    [p] = d.problems
    assert "2 records with scope ids not in the scope table (2 scopes): id 5" in p
    assert "left out of the events: CTA 0 warp 0 seq 1, CTA 0 warp 0 seq 2" in p
    assert "2 records rejected (2 scope not in table)" in d.summary()
    assert decode(raw, g, strategy="keep-first", scopes={0: "a", 5: "b"}).problems == []
    table = SimpleNamespace(scopes=[SimpleNamespace(id=0, name="a"), SimpleNamespace(id=5, name="b")])
    assert decode(raw, g, strategy="keep-first", scopes=table).problems == []  # a ScopeTable, duck-typed
    table_json = [{"id": 0, "name": "a", "parent": -1}, {"id": 5, "name": "b", "parent": 0}]
    assert decode(raw, g, strategy="keep-first", scopes=table_json).problems == []


def test_stale_slots_past_count_reported():
    g = Geometry(1, 8, "clock64")
    raw = bytearray(encode(g, "keep-first", [simple_cta([loop_records(6, 10_000_100)])]))
    struct.pack_into("<I", raw, g.counts_offset, 3)  # the count says 3, six slots hold data
    d = decode(bytes(raw), g, strategy="keep-first")
    assert len(d.events) == 3
    assert any("3 slots past their warp's count hold data" in p for p in d.problems)


def test_cta_that_migrated_sm_is_reported():
    g = Geometry(1, 4, "clock64")
    d = decode(encode(g, "keep-first", [simple_cta([loop_records(2, 10_000_100)], sm=2, sm_end=5)]), g,
               strategy="keep-first")
    assert any("ended on another SM" in p for p in d.problems)
    assert d.events["sm"].tolist() == [2, 2]


def test_misplaced_cta_region_is_reported():
    g = Geometry(1, 4)
    ctas = [simple_cta([], ctaid=(1, 0, 0)), simple_cta([], ctaid=(0, 0, 0))]
    d = decode(encode(g, "keep-first", ctas), g, strategy="keep-first")
    assert any("another CTA's ctaid" in p for p in d.problems)


# --------------------------------------------------------------------------- property test


@st.composite
def launches(draw):
    clock = draw(st.sampled_from(CLOCKS))
    strategy = draw(st.sampled_from(["keep-first", "wrap"]))
    num_warps = draw(st.integers(1, 3))
    capacity = draw(st.sampled_from([1, 2, 4, 8])) if strategy == "wrap" else draw(st.integers(1, 7))
    g = Geometry(num_warps, capacity, clock)
    ctas = []
    for i in range(draw(st.integers(0, 3))):
        if clock == "globaltimer":
            cs, limit = G0 + draw(st.integers(0, 10**9)), 1 << 32
        else:
            cs = draw(st.integers(1 << 20, 1 << 50))
            # a CTA shorter than 2**31 cycles (spans on both sides of 2**30 exercise both step readings)
            limit = draw(st.sampled_from([1 << 12, 1 << 29, (1 << 31) - (1 << 20)]))
        warps = []
        for _ in range(draw(st.integers(0, num_warps))):
            n = draw(st.integers(0, 12))
            t = cs + draw(st.integers(-SPAN_SLACK, 5_000))  # other warps may record before warp 0 reads cs
            recs = []
            for _ in range(n):
                t += draw(st.integers(0, limit // 16))
                recs.append((draw(st.integers(0, (1 << 23) - 1)), draw(st.booleans()), t))
            warps.append(recs)
        last = max([r[-1][2] for r in warps if r] + [cs])
        # the header's span holds the records (a globaltimer launch reads them from the globaltimer)
        gs = cs if clock == "globaltimer" else G0 + i
        ctas.append(CtaSpec(warps=warps, sm=draw(st.integers(0, 131)), ctaid=(i, 0, 0), gtime_start=gs,
                            clock_start=cs, gtime_end=max(gs + 10**6, last + 5_000), clock_end=last + 5_000))
    return g, strategy, ctas


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(launches())
def test_property_encode_decode_round_trip(case):
    g, strategy, ctas = case
    d = decode(encode(g, strategy, ctas), g, strategy=strategy)
    assert got(d) == expected_events(g, strategy, ctas)
    assert not any("non-monotonic" in p or "invalid tag" in p or "past their" in p or "header span" in p
                   for p in d.problems)
    assert len(d.rejected) == 0
    cap = g.capacity
    exp_lost = sorted((i, w, len(r), cap, len(r) - cap)
                      for i, c in enumerate(ctas) for w, r in enumerate(c.warps) if len(r) > cap)
    assert sorted(d.lost.tolist()) == exp_lost
    assert d.lost_total == sum(x[4] for x in exp_lost)


# --------------------------------------------------------------------------- the thread pool


@pytest.mark.parametrize("clock", ["clock", "globaltimer"])
def test_threads_change_nothing(clock):
    """A launch large enough for the thread pool (kperf.tracing.parallel) decodes and pairs exactly as on
    one thread, dropped records included (their gaps are closed across blocks)."""
    g, buf = bulk_buffer(1100, 4, 128, clock=clock)  # 563,200 events: over PARALLEL_MIN_EVENTS
    a = np.frombuffer(buf, g.cta_dtype()).copy()
    a["records"]["tag"][[3, 500, 1099], [0, 2, 3], [5, 0, 127]] = 0  # unwritten slots in three blocks
    one, many = (decode(a, g, strategy="keep-first", threads=t) for t in (1, 4))
    assert len(one.events) == 1100 * 4 * 128 - 3 >= PARALLEL_MIN_EVENTS
    for f in EVENT_DTYPE.names:
        np.testing.assert_array_equal(one.events[f], many.events[f])
    assert one.problems == many.problems and "3 records with an invalid tag" in one.problems[0]
    for x, y in zip(one.intervals(), many.intervals(), strict=True):
        for f in x.dtype.names:
            np.testing.assert_array_equal(x[f], y[f])
