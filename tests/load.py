"""Run a command while every CPU core is kept busy: ``python tests/load.py CMD ARGS...``.

One pure-Python busy loop per core (a separate process each, at normal priority) runs for
as long as the command does. The loops are killed when the command ends, fails or is
interrupted, and die with this process if it is killed (PR_SET_PDEATHSIG). Exit status:
the command's. Used by ``make test-loaded`` to prove the suite holds on a busy machine.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

_SPIN = "while True:\n    pass\n"


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the load runner dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def start_load(cores: int | None = None) -> list[subprocess.Popen]:
    """Start one busy loop per core (``os.cpu_count()`` when not given)."""
    n = cores or os.cpu_count() or 1
    return [subprocess.Popen([sys.executable, "-c", _SPIN], preexec_fn=_die_with_parent)
            for _ in range(n)]


def stop_load(procs: list[subprocess.Popen]) -> None:
    """Kill the busy loops and reap them."""
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def main(argv: list[str]) -> int:
    """Run ``argv`` under load; print how long it took; return its exit status."""
    if not argv:
        print("usage: python tests/load.py CMD [ARGS...]", file=sys.stderr)
        return 2
    # SIGTERM (e.g. from make or CI) must still reach the finally below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    procs = start_load()
    t0 = time.monotonic()
    rc = 1
    try:
        print(f"load: {len(procs)} busy loops (one per core) running", flush=True)
        rc = subprocess.call(argv)
    except KeyboardInterrupt:
        rc = 130
    finally:
        stop_load(procs)
        print(f"load: stopped; {' '.join(argv)} took {time.monotonic() - t0:.0f} s, "
              f"exit {rc}", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
