"""`cra dashboard`: the report's views and what is running now, served on loopback from
raw.db read-only, updating in a real browser while another process writes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cra.cli import cli
from cra.dashboard.server import (
    Dashboard,
    DashboardServer,
    DashboardSource,
    is_loopback,
    open_server,
    run_server,
)
from cra.fixtures.logs import build_synthetic_log
from cra.workspace import Workspace
from tests.dashboard.helpers import (
    advance,
    data,
    dump_live_page,
    get,
    harness_run,
    poll_while,
    start_dashboard,
    start_loop,
    start_writer,
)
from tests.report.helpers import Drawn, chromium


@pytest.fixture
def filled(workspace: Workspace) -> Workspace:
    """A workspace with a small synthetic log (two tasks per repository)."""
    with closing(workspace.raw_db()) as conn:
        build_synthetic_log(conn, tasks_per_repo=2)
    return workspace


@pytest.fixture
def served(filled: Workspace) -> Iterator[DashboardServer]:
    """The dashboard of `filled`, served in this process on a free loopback port."""
    source = DashboardSource(filled.raw_db_path, filled.root, 5000)
    dashboard = Dashboard(source, refresh_s=0.2)
    server = open_server(dashboard, "127.0.0.1", 0, allow_remote=False)
    dashboard.start()
    until = threading.Event()
    thread = threading.Thread(target=run_server, args=(server, until))
    thread.start()
    yield server
    until.set()
    thread.join(timeout=30)


def test_only_its_own_paths_are_served(served: DashboardServer) -> None:
    """The page, its script, plotly.js and /api/data answer 200 with a strict CSP; any
    other path (traversal, listing, the database) is 404, other methods 405, and a Host
    header naming another site 421."""
    for path in ("/", "/dashboard.js", "/plotly.min.js", "/api/data"):
        status, headers, _body = get(served.url, path)
        assert status == 200, path
        assert headers["Content-Security-Policy"].startswith("default-src 'none';")
        assert "connect-src 'self'" in headers["Content-Security-Policy"]
    for path in (
        "/../cra.toml",
        "/%2e%2e/cra.toml",
        "/db/raw.db",
        "/db/",
        "/index.html",
        "//etc/passwd",
        "/api/",
        "/api/data/../../cra.toml",
    ):
        status, _headers, body = get(served.url, path)
        assert (status, body) == (404, b"not found\n"), path
    assert get(served.url, "/api/data", method="POST")[0] == 405
    assert get(served.url, "/", host="evil.example:80")[0] == 421
    assert get(served.url, "/api/data?wait=nan")[0] == 400


def test_the_page_makes_no_request_elsewhere(served: DashboardServer) -> None:
    """The page loads only its own two scripts and sets workspace text as text."""
    _status, _headers, page = get(served.url, "/")
    _status, _headers, script = get(served.url, "/dashboard.js")
    assert b'src="/plotly.min.js"' in page and b'src="/dashboard.js"' in page
    assert b"http" not in page.replace(b"http-equiv", b"")
    assert b"innerHTML" not in script and b"textContent" in script


def test_data_shows_the_running_cycle_and_step_in_one_snapshot(
    served: DashboardServer, filled: Workspace
) -> None:
    """After the loop moves on and a harness run is recorded, /api/data says so: the
    cycle, the running step, its position of eight, and the run's label."""
    with closing(filled.raw_db()) as conn:
        run = start_loop(conn)
        for done in range(10):
            cycle, step = advance(conn, run, done)
        label_id = harness_run(conn)
    loop = data(served.url)["live"]["loop"]
    assert (loop["run"], loop["cycle"], loop["step"]) == (run, cycle, step)
    assert (cycle, step, loop["step_position"], loop["steps_per_cycle"]) == (2, "plan", 3, 8)
    assert loop["max_cycles"] == 5 and loop["step_status"] == "running"
    assert [s["status"] for s in loop["steps"]] == ["done", "done", "running"]
    harness = data(served.url)["live"]["harness"]
    assert harness["label"].startswith("validate #") and label_id > 0


def test_views_arrive_once_and_then_only_when_they_change(served: DashboardServer) -> None:
    """The first answer carries the report's sections; asking again with that version
    carries none; a wait returns once the live status differs from the caller's."""
    first = data(served.url)
    keys = [s["key"] for s in first["views"]]
    assert keys[:5] == ["harness", "planning", "training", "registry", "resources"]
    again = data(served.url, f"?since={first['views_version']}&live={first['live_token']}")
    assert "views" not in again
    started = time.monotonic()
    waited = data(
        served.url, f"?since={first['views_version']}&live={first['live_token']}&wait=0.6"
    )
    assert time.monotonic() - started >= 0.5 and waited["live_token"] == first["live_token"]


def test_non_loopback_host_is_refused_without_the_flag(filled: Workspace) -> None:
    """`--host 0.0.0.0` is refused, naming the flag that allows it; loopback names pass."""
    out = CliRunner().invoke(cli, ["dashboard", "--host", "0.0.0.0", "--port", "0"])
    assert out.exit_code != 0
    assert "not a loopback address" in out.stderr and "--allow-remote" in out.stderr
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.7")


def test_cli_prints_its_url_and_stops_cleanly_on_sigterm(filled: Workspace) -> None:
    """`cra dashboard --json` prints its URL, answers, and exits 0 on SIGTERM."""
    served = start_dashboard(filled.root)
    try:
        assert served.url.startswith("http://127.0.0.1:")
        assert data(served.url)["views"]
    finally:
        code, err = served.stop()
    assert code == 0, err
    assert "serving the dashboard at http://127.0.0.1:" in err and "dashboard stopped" in err


@pytest.mark.slow
def test_a_full_speed_writer_and_a_polling_client_never_see_a_lock(filled: Workspace) -> None:
    """For 20 s a writer process records loop steps and harness runs as fast as it can
    while a client asks /api/data as fast as it answers: no write and no read fails,
    and the cycle and step the client sees never go back."""
    with closing(filled.raw_db()) as conn:
        start_loop(conn)
    served = start_dashboard(filled.root)
    seen: list[dict[str, Any]] = []
    errors: list[str] = []
    stop = threading.Event()
    client = threading.Thread(target=poll_while, args=(served.url, stop, seen, errors))
    try:
        writer = start_writer(filled.root, 20.0)
        client.start()
        out, err = writer.communicate(timeout=120)
    finally:
        stop.set()
        client.join(timeout=60)
        code, dash_err = served.stop()
    result = json.loads(out)
    assert writer.returncode == 0, err
    assert result["locked"] == 0 and result["writes"] > 100
    assert errors == [] and len(seen) > 50
    assert all(s["error"] is None for s in seen)
    loops = [s["live"]["loop"] for s in seen]
    order = [(loop["cycle"], loop["step_position"] or 0) for loop in loops]  # 0: no step yet
    assert order == sorted(order)
    assert code == 0 and "locked" not in dash_err


@pytest.mark.slow
def test_chromium_shows_new_steps_without_a_reload(filled: Workspace, tmp_path: Path) -> None:
    """Headless chromium on the live page while another process moves the loop on:
    the page, never reloaded, shows several states and ends on the step the database
    holds, draws every chart's points, and reports no CSP violation."""
    binary = chromium()
    if binary is None:
        pytest.skip("chromium is not installed (make test installs it with apt-get as root)")
    with closing(filled.raw_db()) as conn:
        start_loop(conn)
    served = start_dashboard(filled.root)
    try:
        # About 14 writes in 14 s, so a page that chromium is slow to start under load still
        # sees several; each answers one of the page's polls at once. The 20 polls of 40 s
        # of virtual time outlast the writer: idle polls wait 2 s each.
        writer = start_writer(filled.root, 14.0, 1.0)
        dom = dump_live_page(binary, served.url, tmp_path, 40000)
        writer.communicate(timeout=60)
        final = data(served.url)
    finally:
        served.stop()
    drawn = Drawn()
    drawn.feed(dom.stdout)
    changes = int(dom.stdout.split('data-changes="', 1)[1].split('"', 1)[0])
    assert changes >= 3, dom.stderr[-2000:]
    loop = final["live"]["loop"]
    assert f'data-cycle="{loop["cycle"]}"' in dom.stdout
    assert f'data-step="{loop["step"]}"' in dom.stdout
    assert drawn.charts == drawn.expected and drawn.charts
    assert "Content Security Policy" not in dom.stderr, dom.stderr[-2000:]
