"""The dashboard's server: its page, its script, plotly.js and `/api/data`, nothing else.

Every request opens `raw.db` read-only for one read transaction and closes it, so a
writer at full speed is never blocked (WAL) and a snapshot never holds half a commit. The
report's sections cost seconds on a large workspace, so a refresher has a child process
read and render them (at most every `refresh_s`, or twice the last read's time; never in
this process, whose request threads would wait on it for the GIL) and requests hand out
the newest JSON; what is running now is read fresh on every request.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import multiprocessing
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, CancelledError, ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cra.dashboard.live import read_live
from cra.dashboard.page import CSP, PAGE, SCRIPT
from cra.dashboard.views import views_payload
from cra.db.connection import connect_readonly, read_transaction
from cra.errors import UsageError
from cra.workspace import Workspace

MAX_WAIT_S = 10.0


@dataclass(frozen=True)
class DashboardSource:
    """Where the dashboard reads from: the `raw.db` file, the workspace root, the timeout."""

    raw_db: Path
    root: Path
    busy_timeout_ms: int


class Dashboard:
    """The dashboard's state: the newest views read and a flag that ends every wait."""

    def __init__(self, source: DashboardSource, *, refresh_s: float = 2.0) -> None:
        if refresh_s <= 0:
            raise ValueError(f"refresh_s must be > 0, got {refresh_s!r}")
        self.source = source
        self.refresh_s = refresh_s
        self.stopping = threading.Event()
        self._changed = threading.Condition()
        self._views = b"[]"
        self._views_hash = ""
        self._version = 0
        self._views_read_at = ""
        self._error: str | None = None
        self._thread = threading.Thread(target=self._refresh_loop, name="views", daemon=True)
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))

    def start(self) -> None:
        """Read the views once, then keep them fresh in the background."""
        self.refresh()
        self._thread.start()

    def stop(self) -> None:
        """End the refresher and every request waiting for a change."""
        self.stopping.set()
        with self._changed:
            self._changed.notify_all()
        # A rebuild of the views can take seconds on a big raw.db: stopping does not wait
        # for it; its process is ended and the refresher sees the pool broken.
        workers = list((self._pool._processes or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            worker.terminate()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def refresh(self) -> float:
        """Read the views now; the seconds it took. A failed read keeps the last views."""
        started = time.perf_counter()
        src = self.source
        try:
            job = self._pool.submit(views_payload, src.raw_db, src.root, src.busy_timeout_ms)
            views, digest, error = job.result()
        except (CancelledError, BrokenExecutor, RuntimeError) as exc:  # stopping
            views, digest, error = b"", "", f"views not read: {exc}"
        if error is not None:
            self._error = error
        else:
            with self._changed:
                self._error = None
                self._views_read_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                if digest != self._views_hash:
                    self._views, self._views_hash = views, digest
                    self._version += 1
                    self._changed.notify_all()
        return time.perf_counter() - started

    def _refresh_loop(self) -> None:
        interval = self.refresh_s
        while not self.stopping.wait(interval):
            interval = max(self.refresh_s, 2 * self.refresh())

    def live(self) -> tuple[dict[str, Any], str]:
        """What is running now, read in one read transaction, and a token of its content."""
        with (
            closing(
                connect_readonly(self.source.raw_db, busy_timeout_ms=self.source.busy_timeout_ms)
            ) as conn,
            read_transaction(conn),
        ):
            status = read_live(conn).as_dict()
        content = {k: v for k, v in status.items() if k != "read_at"}
        token = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
        return status, token

    def data(self, since: int | None, token: str | None, wait: float) -> bytes:
        """The live status, and the views unless the caller has version `since`, as JSON;
        waits up to `wait` seconds for either to change from what the caller has."""
        deadline = time.monotonic() + wait
        while True:
            live, live_token = self.live()
            version = self._version
            left = deadline - time.monotonic()
            if live_token != token or version != since or left <= 0 or self.stopping.is_set():
                break
            with self._changed:
                self._changed.wait(min(0.25, left))
        out: dict[str, Any] = {
            "live": live,
            "live_token": live_token,
            "views_version": version,
            "views_read_at": self._views_read_at,
            "error": self._error,
        }
        body = json.dumps(out, separators=(",", ":")).encode()
        if since == version:
            return body
        return body[:-1] + b',"views":' + self._views + b"}"  # spliced: already JSON


def _number(query: dict[str, list[str]], name: str, kind: type[float] | type[int]) -> Any:
    values = query.get(name)
    if not values or values[0] == "":
        return None
    try:
        value = kind(values[0])
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"{name}={values[0]!r} is not a number")
    return value


class Handler(BaseHTTPRequestHandler):
    """GET and HEAD of the dashboard's four paths; 404 for any other, 405 for other methods."""

    server: DashboardServer
    server_version = "cra-dashboard"
    sys_version = ""

    def do_GET(self) -> None:
        """Serve one of the dashboard's own paths."""
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        """As GET, without the body."""
        self._answer(send_body=False)

    def _refuse(self) -> None:
        self._send(405, b"method not allowed\n", "text/plain; charset=utf-8", True)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    def _answer(self, send_body: bool) -> None:
        if not self.server.host_allowed(self.headers.get("Host", "")):
            self._send(421, b"unknown host\n", "text/plain; charset=utf-8", send_body)
            return
        parts = urlsplit(self.path)
        static = self.server.static.get(parts.path)
        if static is not None:
            self._send(200, static[0], static[1], send_body, cache=parts.path.endswith(".js"))
            return
        if parts.path != "/api/data":
            self._send(404, b"not found\n", "text/plain; charset=utf-8", send_body)
            return
        query = parse_qs(parts.query)
        try:
            since = _number(query, "since", int)
            wait = _number(query, "wait", float) or 0.0
        except ValueError as exc:
            self._send(400, f"{exc}\n".encode(), "text/plain; charset=utf-8", send_body)
            return
        token = query["live"][0] if query.get("live") else None
        body = self.server.dashboard.data(since, token, min(max(wait, 0.0), MAX_WAIT_S))
        self._send(200, body, "application/json", send_body)

    def _send(
        self, code: int, body: bytes, kind: str, send_body: bool, *, cache: bool = False
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged: the page asks every two seconds."""


class DashboardServer(ThreadingHTTPServer):
    """A threading HTTP server holding the dashboard and the bodies it serves."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], dashboard: Dashboard, *, remote: bool) -> None:
        self.dashboard = dashboard
        self.remote = remote
        self.static: dict[str, tuple[bytes, str]] = {}
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, Handler)

    def host_allowed(self, host: str) -> bool:
        """Whether a request's Host header names this server (a page elsewhere that
        points a name at 127.0.0.1 gets nothing); any host when serving remotely."""
        if self.remote:
            return True
        port = self.server_address[1]
        names = {"127.0.0.1", "localhost", "[::1]", str(self.server_address[0])}
        return host in names or host in {f"{n}:{port}" for n in names}

    @property
    def url(self) -> str:
        """The address to open in a browser."""
        host, port = str(self.server_address[0]), int(self.server_address[1])
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) means only this machine."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def open_server(
    dashboard: Dashboard, host: str, port: int, *, allow_remote: bool
) -> DashboardServer:
    """Bind the dashboard's server; a non-loopback `host` is refused unless `allow_remote`."""
    remote = not is_loopback(host)
    if remote and not allow_remote:
        raise UsageError(
            f"--host {host} is not a loopback address: the dashboard would be open to the network",
            hint="leave --host at 127.0.0.1, or pass --allow-remote to serve it anyway",
        )
    try:
        server = DashboardServer((host, port), dashboard, remote=remote)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    from plotly.offline import get_plotlyjs

    server.static = {
        "/": (PAGE.encode(), "text/html; charset=utf-8"),
        "/dashboard.js": (SCRIPT.encode(), "text/javascript; charset=utf-8"),
        "/plotly.min.js": (get_plotlyjs().encode(), "text/javascript; charset=utf-8"),
    }
    return server


def run_server(server: DashboardServer, until: threading.Event) -> None:
    """Serve until `until` is set, then stop: the refresher, every wait, the socket."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2})
    thread.start()
    try:
        while not until.wait(0.5):
            pass
    finally:
        server.dashboard.stop()
        server.shutdown()
        thread.join()
        server.server_close()


def serve(
    workspace: Workspace,
    *,
    host: str,
    port: int,
    allow_remote: bool,
    on_start: Callable[[DashboardServer], None],
) -> None:
    """Serve the workspace's dashboard until Ctrl-C or SIGTERM; `on_start` hears once
    the server listens. Call it from the main thread (it installs the signal handlers)."""
    source = DashboardSource(
        workspace.raw_db_path, workspace.root, workspace.config.settings.db.busy_timeout_ms
    )
    if not source.raw_db.is_file():
        raise UsageError(
            f"{source.raw_db} does not exist: this workspace has recorded nothing yet",
            hint="run any cra command that records work first, e.g. cra harness run",
        )
    dashboard = Dashboard(source)
    server = open_server(dashboard, host, port, allow_remote=allow_remote)
    until = threading.Event()
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda _sig, _frame: until.set())
    try:
        dashboard.start()
        on_start(server)
        run_server(server, until)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
