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
