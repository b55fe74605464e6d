"""Stop requests: SIGTERM (preemption) and Ctrl-C (SIGINT) are noted, not obeyed at once.

The loop looks at `requested` between steps, saves a checkpoint and stops (every process of a multi-host run
at the same step, see loop.py). A second Ctrl-C stops at once (KeyboardInterrupt), for a user who does not
want to wait for the save.
"""
from __future__ import annotations

import signal
import threading


class StopRequests:
    """Context manager that installs the handlers (main thread only) and restores the old ones on exit."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None
        self._old: dict = {}

    @property
    def requested(self) -> bool:
        return self.received is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt("second Ctrl-C: stopped without saving")
        if self.received is None:
            self.received = signum

    def __exit__(self, *exc):
        for s, handler in self._old.items():
            signal.signal(s, handler)
        self._old = {}
