"""bench/soak.py for ~20 s: the live pipeline leaks no memory, threads or fds, no raw frame.

The full soak (10 minutes, 1280x720) is a benchmark, not a timed test; its figures are in
docs/reliability.md. This short run proves the script works and the bars hold in CI.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cv2

from tests.reliability.conftest import ROOT


def test_soak_20_seconds_passes_its_bars(tmp_path: Path) -> None:
    plot = tmp_path / "soak_rss.png"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--seconds", "20",
                        "--warmup", "6", "--size", "640x360", "--out", str(plot)],
                       capture_output=True, text=True, timeout=240)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert "result: PASS" in out
    assert re.search(r"^raw frames: 0$", out, re.M)
    growth = float(re.search(r"growth after warm-up ([+-][\d.]+) MB", out).group(1))
    assert growth < 5.0
    threads = re.search(r"^threads: (\d+) -> (\d+) \(delta ([+-]?[\d.]+)\)", out, re.M)
    fds = re.search(r"^fds: (\d+) -> (\d+) \(delta ([+-]?[\d.]+)\)", out, re.M)
    assert threads and float(threads.group(3)) <= 0
    assert fds and float(fds.group(3)) <= 0
    frames = re.search(r"^frames: in (\d+), out (\d+), shown (\d+)", out, re.M)
    # frames really flowed: 2 a second at least (30 offered; fewer on a loaded machine)
    assert frames and int(frames.group(3)) > 40
    img = cv2.imread(str(plot))
    assert img is not None and img.shape[0] > 100 and img.shape[1] > 100
