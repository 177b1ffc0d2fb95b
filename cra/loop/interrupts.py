"""Stopping a running loop within seconds, also in the middle of a step.

A :class:`Watch` thread polls, twice a second, the workspace's `STOP` file, the run's stop
request in raw.db and the cycle's deadline; SIGINT and SIGTERM are caught too. Whichever
comes first is recorded as the cause. While a step runs (the watch is *armed*) the cause
is delivered to the main thread as SIGINT, raising KeyboardInterrupt, which the harness and training
already handle cleanly (a Ctrl-C leaves nothing half-written); while the loop writes its
own bookkeeping (disarmed) the cause waits until the write is done, so the loop's tables
never see half a step.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

POLL_S = 0.5


class Watch:
    """The first cause to stop (or cut) the loop, and the machinery that delivers it."""

    def __init__(self, probe: Callable[[], str | None]) -> None:
        """`probe` returns a cause ('kill_switch', 'stop_requested', 'cycle_timeout') or
        None; it is polled from a thread, so it opens its own connections."""
        self._probe = probe
        self._lock = threading.Lock()
        self._armed = False
        self._delivered = False
        self.cause: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="cra-loop-watch", daemon=True)
        self._saved: dict[int, Any] = {}
        self._main = threading.main_thread().ident

    def _note(self, cause: str) -> bool:
        """Record `cause` (the first one wins); whether a step runs that it should stop."""
        with self._lock:
            if self.cause is None:
                self.cause = cause
            return self._armed and not self._delivered

    def _poll(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                cause = self._probe()
            except (sqlite3.Error, OSError):  # a busy database: look again next time
                continue
            if cause is not None and self._note(cause) and self._main is not None:
                # A real signal, so a blocking call of the step (a sleep, a wait on a
                # child) is woken too; _on_signal then raises in the main thread.
                signal.pthread_kill(self._main, signal.SIGINT)

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        """SIGINT/SIGTERM, or the poll's simulated SIGINT: stop the running step now."""
        with self._lock:
            if self.cause is None:
                self.cause = "interrupted"
            if not self._armed or self._delivered:
                return
            self._delivered = True
        raise KeyboardInterrupt

    @contextmanager
    def running(self) -> Iterator[Watch]:
        """Install the signal handlers and start polling for the block."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._saved[sig] = signal.signal(sig, self._on_signal)
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=2 * POLL_S)
            for signum, handler in self._saved.items():
                signal.signal(signum, handler)

    @contextmanager
    def armed(self) -> Iterator[None]:
        """The block (one step) may be interrupted; a cause already noted interrupts it
        at once. KeyboardInterrupt delivered after the block is absorbed."""
        with self._lock:
            self._armed = True
            self._delivered = False
            pending = self.cause is not None
        try:
            if pending:
                with self._lock:
                    self._delivered = True
                raise KeyboardInterrupt
            yield
        finally:
            with self._lock:
                self._armed = False
