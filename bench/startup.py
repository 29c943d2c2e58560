"""Time from ``python main.py`` to the main window being shown, median over N runs.

Each run is a fresh process on the offscreen Qt platform with ``PTIM_STARTUP_PROBE=1``:
the app prints ``window-shown`` as soon as the window is shown and events are processed,
then exits. The figure is wall-clock from spawning the process to that line (interpreter
start and imports included), so it is what a user waits for after the click.

    python bench/startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(userdata: str) -> float:
    """Seconds from spawn to the window-shown line."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PTIM_STARTUP_PROBE": "1",
           "PTIM_USERDATA_DIR": userdata}
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--source", "demo"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert p.stdout is not None
    for line in p.stdout:
        if line.startswith("window-shown"):
            elapsed = time.perf_counter() - t0
            p.wait(timeout=30)
            return elapsed
    p.wait(timeout=30)
    raise RuntimeError(f"the app exited ({p.returncode}) without showing its window")


def help_run() -> float:
    """Seconds for ``python main.py --help`` (the CLI must not load heavy libraries)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "main.py"), "--help"], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ptim-startup-") as ud:
        one_run(ud)  # warm the OS file cache, as a second launch would be
        times = [one_run(ud) for _ in range(args.runs)]
    print(f"window shown after: median {statistics.median(times) * 1000:.0f} ms, "
          f"min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms over {args.runs} runs")
    print("target: median under 1000 ms on 2 CPU cores")
    helps = [help_run() for _ in range(args.runs)]
    print(f"main.py --help answered after: median {statistics.median(helps) * 1000:.0f} ms "
          f"over {args.runs} runs (target under 250 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
