"""Helpers for the report tests: hostile data through the stores, a headless chromium,
and reading what it drew."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import zlib
from contextlib import closing
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from cra.adapters.registry import Registration, add_event, register, store_eval
from cra.db import loop as loop_store
from cra.db import transaction
from cra.db.commits import MinedCommit, upsert_commits
from cra.db.repos import repo_id, repo_names
from cra.db.train_steps import TrainStep, record_step, set_run_version
from cra.fixtures.logs import build_synthetic_log
from cra.workspace import Workspace

HOSTILE = '</script><img src="http://evil.invalid/x.png" onerror="alert(1)"><a href="https://evil.invalid">x</a>'


def chromium() -> str | None:
    """The chromium binary, or None where it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def fill_workspace(workspace: Workspace, base: Path) -> None:
    """A small flow's records: synthetic logs, a hostile drop reason, two training runs'
    steps and two registered versions of `scope` (on the model at `base`), one rejected for
    a hostile reason."""
    with closing(workspace.raw_db()) as conn:
        build_synthetic_log(conn, tasks_per_repo=4)
        first = repo_id(conn, repo_names(conn)[0])
        if first is None:
            raise RuntimeError("the synthetic log wrote no repository")
        upsert_commits(conn, [_dropped(first)])
        for version, steps in ((1, 12), (2, 7)):
            for step in range(1, steps + 1):
                row = TrainStep(f"scope-run{version}", "scope", "sft", step, loss=2.0 / step)
                record_step(conn, row, "2026-01-01T00:00:00+00:00")
            with transaction(conn):
                set_run_version(conn, f"scope-run{version}", version)
    for number in (1, 2):
        staged = workspace.root / f"staged-{number}"
        staged.mkdir()
        (staged / "adapter_config.json").write_text('{"r": 4}')
        (staged / "adapter_model.safetensors").write_bytes(bytes([number]) * 64)
        reg = Registration("scope", staged, base, None, "sft", train_metrics={"seconds": 1.5})
        register(workspace, reg)
    with closing(workspace.raw_db()) as conn, transaction(conn):
        add_event(conn, "scope", 1, "promoted", reason="better alignment")
        add_event(conn, "scope", 2, "rejected", reason=HOSTILE)


LOOP_STEPS = ("ingest", "train", "evaluate", "promote")
LOOP_CYCLES = 3


def record_loop(workspace: Workspace) -> int:
    """A finished three-cycle loop run through the loop store, after `fill_workspace`:
    scope@v1 and @v2 are the first two cycles' candidates (evaluated), the third trains
    nothing; a hostile repository name. The run's id."""
    for version, accuracy in ((1, 0.6), (2, 0.7)):
        store_eval(workspace, "scope", version, "holdout-1", {"metrics": {"accuracy": accuracy}})
    with closing(workspace.raw_db()) as conn:
        run = loop_store.start_run(conn, {"targets": ["scope.accuracy>=0.8"], "max_cycles": 3})
        for cycle in range(1, LOOP_CYCLES + 1):
            candidates = [f"scope@v{cycle}"] if cycle < LOOP_CYCLES else []
            loop_store.start_cycle(conn, run, cycle, HOSTILE)
            for position, step in enumerate(LOOP_STEPS):
                loop_store.start_step(conn, run, cycle, position, step)
                outputs = {"candidates": ",".join(candidates)} if step == "train" else {}
                loop_store.end_step(
                    conn,
                    run,
                    cycle,
                    position,
                    status="done",
                    reason=None,
                    counts={},
                    outputs=outputs,
                )
            loop_store.update_cycle(conn, run, cycle, runtime_s=1.5 * cycle, tokens=100 * cycle)
            summary = {"repo": HOSTILE, "candidates": candidates, "promoted": []}
            loop_store.end_cycle(conn, run, cycle, status="done", promoted=0, summary=summary)
        loop_store.end_run(conn, run, reason="max_cycles", exit_code=0, runtime_s=4.5)
    return run


def _dropped(repo: int) -> MinedCommit:
    return MinedCommit(
        repo_id=repo,
        sha="f" * 40,
        parent_sha=None,
        authored_at="2023-05-01T00:00:00+00:00",
        authored_ts=1682899200,
        author="mallory",
        subject=HOSTILE,
        task_text=HOSTILE,
        message_score=0.0,
        files_source="[]",
        files_tests="[]",
        files_other="[]",
        lines_added=0,
        lines_deleted=0,
        verdict="dropped",
        stage="message",
        reason=HOSTILE,
        conventional_type=None,
        mined_at="2023-05-01T00:00:00+00:00",
    )


VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)


@dataclass
class Drawn(HTMLParser):
    """Per chart div (by id): the points drawn in each plotly trace group, in order."""

    charts: dict[str, list[int]] = field(default_factory=dict)
    expected: dict[str, list[int]] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)
    rendered: str | None = None
    _stack: list[tuple[str, str | None, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        for key in ("src", "href"):
            if a.get(key):
                self.links.append(str(a[key]))
        if tag == "body":
            self.rendered = a.get("data-rendered")
        chart = next((c for _t, c, _ in reversed(self._stack) if c), None)
        if tag == "div" and "chart" in classes and a.get("id"):
            chart = str(a["id"])
            self.charts[chart] = []
            self.expected[chart] = json.loads(a.get("data-points") or "[]")
        if chart is not None and tag == "g" and "trace" in classes:
            self.charts[chart].append(0)
        if chart is not None and "point" in classes and self.charts[chart]:
            self.charts[chart][-1] += 1
        if tag not in VOID:
            self._stack.append((tag, chart, True))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID and self._stack:
            self._stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if any(t == tag for t, _c, _ in self._stack):
            while self._stack and self._stack.pop()[0] != tag:
                pass


def run_chromium(
    binary: str, page: Path, tmp: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """Headless chromium on `page` with networking off where `unshare -n` works, HOME and
    its profile in `tmp`; stderr carries the console log."""
    argv = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={tmp / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=30000",
        *args,
        page.as_uri(),
    ]
    if (
        shutil.which("unshare")
        and subprocess.run(["unshare", "-n", "true"], check=False).returncode == 0
    ):
        argv = ["unshare", "-n", *argv]
    env = {**os.environ, "HOME": str(tmp), "XDG_CONFIG_HOME": str(tmp / "config")}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=180, check=False)


def png_variance(path: Path) -> float:
    """The variance of a PNG's pixel bytes (0 for a blank image), decoded with zlib."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG")
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    chunks, pos = b"", 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        if data[pos + 4 : pos + 8] == b"IDAT":
            chunks += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(chunks)
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    bpp, stride = channels * depth // 8, width * channels * depth // 8
    rows, prev = [], bytearray(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 255
        rows.append(bytes(line))
        prev = line
    pixels = b"".join(rows)
    mean = sum(pixels) / len(pixels)
    return sum((b - mean) ** 2 for b in pixels[:: max(1, len(pixels) // 200_000)]) / len(
        pixels[:: max(1, len(pixels) // 200_000)]
    )
