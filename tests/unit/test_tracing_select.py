"""kperf.tracing.select: selection specs, the CTAs they pick, and the trace subset."""

from __future__ import annotations

import numpy as np
import pytest
from reference_encoder import bulk_buffer

from kperf.dialect.errors import KperfError
from kperf.tracing import decode, parse_selection, subset, write_chrome_trace
from kperf.tracing.select import Selection, cta_mask, first_wave, ranges


@pytest.fixture(scope="module")
def big():
    g, raw = bulk_buffer(n_ctas=300, num_warps=2, capacity=8, n_sms=100)  # waves of 100 CTAs, 50 us apart
    return decode(raw, g, strategy="keep-first")


@pytest.mark.parametrize("spec, want", [
    ("all", Selection("all")), ("first-wave", Selection("first-wave")),
    ("first:5", Selection("first", n=5)), ("ctas:0-3,9", Selection("ctas", ids=(0, 1, 2, 3, 9))),
    ("sms:4,2", Selection("sms", ids=(2, 4))), ("every:10", Selection("every", n=10)),
    ("sample:7", Selection("sample", n=7)), ("sample:7:3", Selection("sample", n=7, seed=3)),
    (" First-Wave ", Selection("first-wave")),
])
def test_parse(spec, want):
    assert parse_selection(spec) == want
    assert parse_selection(str(want)) == want  # round trip


@pytest.mark.parametrize("spec, words", [
    ("wave", "unknown trace selection"), ("first", "needs an argument"), ("first:x", "positive count"),
    ("first:0", "positive count"), ("ctas:3-1", "as an id or a range"), ("all:3", "takes no argument"),
    ("every:2:2", "positive count"), ("first:99999999999999999999", "positive count below 4294967296"),
    ("sample:2:-1", "a seed in [0, "), ("sms:999999999999999999999999999999", "sms:9"),
    ("sms:999999999999999999999999999999", "ids lie in [0, 4294967296)"),
    ("ctas:4294967296", "out of range"), ("ctas:0-99999999", "more than 1,048,576 ids"),
])
def test_parse_errors(spec, words):
    with pytest.raises(KperfError) as e:
        parse_selection(spec)
    assert words in str(e.value) and e.value.fix


def test_parse_none():
    assert parse_selection(None) is None


def test_masks(big):
    pick = lambda s: np.flatnonzero(cta_mask(big, parse_selection(s))).tolist()  # noqa: E731
    assert pick("first-wave") == list(range(100))
    assert pick("first:5") == [0, 1, 2, 3, 4]
    assert pick("ctas:7,299,400") == [7, 299]
    assert pick("sms:3") == [3, 103, 203]
    assert pick("every:100") == [0, 100, 200]
    a, b = pick("sample:10:1"), pick("sample:10:1")
    assert a == b and len(a) == 10 and pick("sample:10:2") != a
    assert len(pick("all")) == 300


def test_first_wave_with_several_ctas_per_sm():
    ctas = np.zeros(5, [("ok", "?"), ("end_ok", "?"), ("sm", "<u4"), ("gtime_start", "<u8"),
                        ("gtime_end", "<u8")])
    ctas["ok"] = ctas["end_ok"] = True
    ctas["sm"] = [0, 0, 0, 1, 1]
    ctas["gtime_start"] = [0, 10, 100, 0, 5]
    ctas["gtime_end"] = [90, 95, 200, 50, 60]
    ctas["end_ok"][4] = False
    assert first_wave(ctas).tolist() == [True, True, False, True, True]


def test_ranges():
    assert ranges(np.array([3, 10, 10]), np.array([5, 10, 12])).tolist() == [3, 4, 10, 11]
    assert ranges(np.zeros(0), np.zeros(0)).tolist() == []


def test_subset_indices(big, capsys):
    p = big.pairs()
    sub = subset(big, "ctas:1,5")
    assert sub.n_events == 2 * 2 * 8 and sub.n_intervals == 2 * 2 * 4
    cta = big.columns["cta"]
    assert set(cta[p.start[sub.intervals]].tolist()) == {1, 5}
    assert sub.n_events_total == big.n_events and not sub.whole
    assert capsys.readouterr().err == ""  # only an automatic choice is announced
    whole = subset(big, None)  # small launch: all of it
    assert whole.whole and whole.intervals is None and whole.selection.kind == "all"


def test_default_first_wave_is_announced(big, capsys):
    sub = subset(big, None, max_events=100)
    assert sub.automatic and sub.selection.kind == "first-wave" and int(sub.ctas.sum()) == 100
    err = capsys.readouterr().err
    assert "first wave" in err and "select='all'" in err
    assert f"{big.n_events - sub.n_events:,} left out" in err


def test_chrome_trace_holds_the_subset(big, tmp_path):
    import json
    write_chrome_trace(tmp_path / "t.json", big, select="sms:3")
    tr = json.loads((tmp_path / "t.json").read_text())
    xs = [e for e in tr["traceEvents"] if e["ph"] == "X"]
    assert {e["args"]["cta"] for e in xs} == {3, 103, 203} and len(xs) == 3 * 2 * 4
    info = tr["otherData"]["kperf"]["launches"][0]
    assert info["subset"]["selection"] == "sms:3" and info["subset"]["events_total"] == big.n_events
