"""kperf.tracing.plots: files are written, and what is drawn matches the profile."""

from __future__ import annotations

import known_profiles as kp
import numpy as np
import pytest

from kperf.dialect.errors import KperfError

pytest.importorskip("matplotlib", reason="plots need matplotlib: pip install 'kperf[plot]'")
from kperf.tracing import plots  # noqa: E402


def png_size(path) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def bars(artists) -> list[tuple[float, float]]:
    """(x, width) of every bar in broken_barh collections."""
    out = []
    for col in artists:
        for path in col.get_paths():
            v = path.vertices
            out.append((float(v[:, 0].min()), float(v[:, 0].max() - v[:, 0].min())))
    return out


def test_timeline_all_lanes(tmp_path):
    r = plots.timeline(kp.vanilla(), tmp_path / "t.png", time_unit="ns")
    assert png_size(r.path) == r.size_px
    w, h = r.size_px
    assert w == 1400 and h >= 250
    assert r.lanes == [(0, c, w_) for c in range(3) for w_ in range(2)]
    assert r.n_bars == 21  # 7 intervals per CTA
    drawn = bars(r.artists)
    assert len(drawn) == 21
    assert r.scopes == ["load", "mma", "store", "wait"]
    widths = sorted(round(x[1]) for x in drawn)
    assert widths == sorted([1000] * 9 + [2000] * 6 + [500] * 3 + [100] * 3)
    # CTA 1 entered at 500 ns: its first load starts at 600 ns
    assert min(x for x, _ in drawn) == pytest.approx(100)
    labels = {c.get_label() for c in r.artists if not c.get_label().startswith("_")}
    assert labels == {"load", "mma", "store", "wait"}  # one legend entry per scope


def test_timeline_selection_and_limits(tmp_path):
    r = plots.timeline(kp.vanilla(), tmp_path / "sel.png", ctas=[1], warps=[1], time_unit="us")
    assert r.lanes == [(0, 1, 1)] and r.n_bars == 4  # 2 mma, store, wait
    xs = sorted(x for x, _ in bars(r.artists))
    np.testing.assert_allclose(xs, [1.7, 3.8, 5.9, 6.0], atol=1e-9)  # us, CTA 1 entered at 0.5 us
    r = plots.timeline(kp.vanilla(), tmp_path / "few.svg", max_lanes=2)
    assert len(r.lanes) == 2 and r.notes and "left out" in r.notes[0]
    assert (tmp_path / "few.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(KperfError, match="nothing to draw"):
        plots.timeline(kp.vanilla(), tmp_path / "none.png", ctas=[99])
    with pytest.raises(KperfError, match="launch 3"):
        plots.timeline(kp.vanilla(), tmp_path / "none.png", launch=3)


def test_histograms(tmp_path):
    r = plots.histograms([kp.vanilla(), kp.improved(0.5)], tmp_path / "h" / "hist.png", bins=20)
    assert png_size(r.path) == r.size_px
    assert r.scopes == ["load", "mma", "store", "wait", "softmax"]
    assert len(r.artists) == 5
    counts = [sum(p.get_height() for p in bc.patches) for bc in r.artists]
    assert counts == [18, 12, 6, 3, 3]  # intervals per scope over both launches
    assert r.n_bars == 2 + 1 + 1 + 1 + 1  # load has two distinct durations (1000 and 500 ns)
    r = plots.histograms(kp.vanilla(), tmp_path / "one.png", scopes=["wait"])
    assert r.scopes == ["wait"] and len(r.artists) == 1
    with pytest.raises(KperfError, match="no intervals of scope 'nope'"):
        plots.histograms(kp.vanilla(), tmp_path / "x.png", scopes=["nope"])


def test_missing_matplotlib_says_how_to_install(monkeypatch):
    import builtins
    real = builtins.__import__

    def no_mpl(name, *a, **k):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    with pytest.raises(KperfError, match=r"pip install 'kperf\[plot\]'"):
        plots._pyplot()
