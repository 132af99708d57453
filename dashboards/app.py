"""The app factory and the server: ``create_app(logdir)`` and ``serve(logdir, ...)``.

Why a factory: nothing is read or created at import time; each app owns its catalog of runs
and its cache, so tests and the CLI can start several on different logdirs. ``serve`` binds
127.0.0.1 with debug off unless told otherwise (the dashboard shows local files: exposing it is
the user's explicit choice). ``background=True`` runs it on a daemon thread and returns once
the server answers, so a training script can watch itself. Requests are not logged (an open tab
polls every 2 s) unless ``verbose=True``; a busy port is a ``PortInUseError`` before anything is
served, not Werkzeug's message and exit.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import dash
from werkzeug.serving import WSGIRequestHandler, make_server

from entropymon.errors import InputError
from entropymon.log.shutdown import keep_signals_on_the_main_thread
from entropymon_dashboard.callbacks import register_callbacks
from entropymon_dashboard.catalog import RunCatalog
from entropymon_dashboard.page import app_layout
from entropymon_dashboard.store import RunStore

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_POLL_S = 2.0
START_TIMEOUT_S = 20.0


def create_app(logdir, *, poll_interval_s: float = DEFAULT_POLL_S) -> dash.Dash:
    """A Dash app showing the runs under ``logdir`` (nested folders included).

    ``poll_interval_s``: how often an open page asks whether runs changed. The app's run store
    is ``app.run_store`` (its callbacks' data source).
    """
    if not isinstance(poll_interval_s, (int, float)) or isinstance(poll_interval_s, bool) or poll_interval_s <= 0:
        raise InputError(f"poll_interval_s: expected a number of seconds > 0, got {poll_interval_s!r}")
    store = RunStore(RunCatalog(logdir))
    app = dash.Dash(__name__, title="entropymon", assets_folder=str(ASSETS), update_title=None,
                    serve_locally=True)
    label = str(Path(logdir))
    poll_ms = int(poll_interval_s * 1000)
    app.layout = lambda: app_layout(label, poll_ms)
    register_callbacks(app, store)
    app.run_store = store
    return app


class PortInUseError(InputError):
    """The dashboard's port is taken by another program."""


def check_port_free(host: str, port: int) -> None:
    """Bind ``host:port`` once, as the server will, so a busy port is a clear error up front."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Werkzeug's server does
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortInUseError(
                    f"port: expected a free port, {host}:{port} is in use by another program") from None
            raise InputError(f"host: could not serve on {host}:{port} ({error.strerror or error})") from None


class _QuietHandler(WSGIRequestHandler):
    """Request handler that does not log every poll (errors are still logged)."""

    def log_request(self, code="-", size="-"):
        pass


@dataclass
class DashboardServer:
    """A dashboard running on a background thread. ``url`` answers until ``shutdown()``."""

    app: dash.Dash
    host: str
    port: int
    _server: object
    _thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def shutdown(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)


def _wait_until_answering(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def serve(logdir, host: str = "127.0.0.1", port: int = 8050, background: bool = False, debug: bool = False,
          *, poll_interval_s: float = DEFAULT_POLL_S, verbose: bool = False):
    """Start the dashboard on ``host:port``.

    Blocks until interrupted, or with ``background=True`` returns a ``DashboardServer`` (its
    ``url``, ``shutdown()``) once the page answers. ``port=0`` picks a free port. ``verbose``:
    log every request (Werkzeug's access log). Raises ``PortInUseError`` when the port is taken.
    """
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise InputError(f"port: expected an int in [0, 65535], got {port!r}")
    app = create_app(logdir, poll_interval_s=poll_interval_s)
    check_port_free(host, port)
    handler = WSGIRequestHandler if verbose else _QuietHandler
    if not background and debug:
        app.run(host=host, port=port, debug=True)
        return None
    server = make_server(host, port, app.server, threaded=True, request_handler=handler)
    if not background:
        try:
            server.serve_forever()
        finally:
            server.server_close()
        return None
    def serve_in_background() -> None:
        keep_signals_on_the_main_thread()  # Ctrl+C and SIGTERM stay the trainer's (the demo serves while training)
        server.serve_forever()

    thread = threading.Thread(target=serve_in_background, name="entropymon-dashboard", daemon=True)
    thread.start()
    handle = DashboardServer(app, host, server.server_port, server, thread)
    _wait_until_answering(handle.url, START_TIMEOUT_S)
    return handle
