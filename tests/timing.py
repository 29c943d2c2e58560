"""Time limits for tests, chosen so that a busy machine makes a test slower, never red.

``WAIT_S`` / ``WAIT_MS``: how long a test waits for an event that must come. Waits end as
soon as the event comes, so this bound costs nothing when the code works; it only turns a
hang into a failure.

``budget(seconds)``: a latency a test asserts (a value measured on an idle machine plus
headroom), stretched by how many runnable tasks share each core right now, so a claim
like "stops within a second" means "within a second of CPU time it could get".
"""

from __future__ import annotations

import os

WAIT_S = 60.0
WAIT_MS = int(WAIT_S * 1000)


def slowdown() -> float:
    """How many times slower than idle this machine runs a thread now (1.0 when idle).

    The larger of the 1-minute load average and the tasks runnable this instant, per core:
    the average lags a load that just started, the instant count is noisy.
    """
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0]
    try:
        with open("/proc/loadavg", encoding="ascii") as fh:
            running = int(fh.read().split()[3].split("/")[0]) - 1  # minus this reader
    except (OSError, ValueError, IndexError):
        running = 0
    return max(1.0, load / cores, running / cores)


def budget(seconds: float) -> float:
    """``seconds`` (an idle-machine latency bound) scaled by ``slowdown()``."""
    return seconds * slowdown()


class Timed:
    """Times a block and samples ``slowdown()`` through it (every 20 ms), so a latency is
    judged by the load while it ran, not only by the calm after: ``with Timed() as t: ...``
    then ``assert t.seconds < t.budget(1.0)``."""

    def __init__(self) -> None:
        import threading

        self.seconds = 0.0
        self.peak = 1.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, slowdown())
            if self._stop.wait(0.02):
                return

    def __enter__(self) -> Timed:
        import time

        self.peak = slowdown()
        self._thread.start()
        self._t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        import time

        self.seconds = time.monotonic() - self._t0
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, slowdown())

    def budget(self, seconds: float) -> float:
        """``seconds`` scaled by the largest slowdown seen while the block ran."""
        return seconds * self.peak
