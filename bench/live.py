"""Live path figures: the desktop app's own workers on the demo source, headless.

Runs ``MaskerApp`` (the same capture/process QThreads and preview widget as the app)
on the offscreen Qt platform with the demo source (1280x720, 30 fps in, paced in real
time) and prints output FPS, capture-to-painted latency p50/p95, dropped and fail-closed
frames, and the detection schedule (smallest protected face, fine-pass period, and whether
it slowed because the machine could not keep up). Warm-up (model load, first frames) is
excluded.

    python bench/live.py [--seconds 20] [--warmup 4] [--dashboard] [--fixed-period]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="measured time")
    ap.add_argument("--warmup", type=float, default=4.0, help="seconds ignored at the start")
    ap.add_argument("--dashboard", action="store_true", help="measure with Ctrl+P open")
    ap.add_argument("--fixed-period", action="store_true",
                    help="keep the fine pass at its setting (no slowing when busy)")
    args = ap.parse_args()

    import numpy as np
    from PyQt6.QtCore import QTimer
    from PyQt6.QtWidgets import QApplication

    from apps.PlayaTewsIdentityMasker.app import MaskerApp

    app = QApplication([])
    data_dir = Path(tempfile.mkdtemp(prefix="ptim-live-"))
    ctl = MaskerApp(data_dir, source_spec="demo")
    if args.fixed_period:
        ctl.process_loop.governor = None
    periods: list[int] = []
    ctl.window.resize(1280, 800)
    ctl.window.show()
    lat: list[float] = []
    painted_at: list[float] = []
    state = {"measuring": False, "base": None}

    def on_painted(tag) -> None:
        if state["measuring"] and tag is not None:
            now = time.perf_counter()
            lat.append((now - float(tag)) * 1000)
            painted_at.append(now)
            sched = ctl._runner.schedule if ctl._runner is not None else None
            if sched is not None:
                periods.append(sched.period)

    ctl.window.preview.painted.connect(on_painted)

    def begin() -> None:
        snap = ctl.metrics.snapshot()  # also primes psutil's CPU counter
        state["base"] = snap
        state["measuring"] = True
        state["t0"] = time.perf_counter()

    def finish() -> None:
        state["measuring"] = False
        elapsed = time.perf_counter() - state["t0"]
        base, snap = state["base"], ctl.metrics.snapshot()
        frames_in = snap.frames_in - base.frames_in
        frames_out = snap.frames_out - base.frames_out
        a = np.array(lat) if lat else np.zeros(1)
        print(f"source: demo 1280x720 at 30 fps, detector {ctl.window_detector_text()}")
        print(f"measured {elapsed:.1f} s after {args.warmup:.0f} s warm-up"
              f"{' with the dashboard open' if args.dashboard else ''}")
        print(f"input fps      {frames_in / elapsed:6.1f}")
        print(f"processed fps  {frames_out / elapsed:6.1f}")
        print(f"painted fps    {len(lat) / elapsed:6.1f}")
        p50, p95 = np.percentile(a, 50), np.percentile(a, 95)
        print(f"e2e latency    p50 {p50:5.1f} ms   p95 {p95:5.1f} ms"
              f"   (capture to painted, {len(lat)} frames)")
        print(f"dropped        {snap.dropped_frames - base.dropped_frames} "
              f"(oldest frames, never shown)")
        print(f"fail-closed    {snap.fail_closed_frames - base.fail_closed_frames}")
        for name, st in snap.stages.items():
            print(f"stage {name:8s} p50 {st.p50_ms:5.1f} ms  p95 {st.p95_ms:5.1f} ms")
        print(f"cpu {snap.cpu_percent:.0f}%  rss {snap.rss_mb:.0f} MB  load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        prot = ctl.current_protection()
        if prot is not None:
            fine = (f"fine pass every {prot.fine_period} frames (setting "
                    f"{ctl.config.settings.detector.fine_period})" if prot.fine_period else
                    f"no fine pass ({prot.override or 'not needed'})")
            spread = (f", requested period {min(periods)}-{max(periods)} while measured"
                      if periods else "")
            print(f"schedule       smallest protected face {prot.protected_px:.0f} px, {fine}"
                  f"{spread}{'; ' + prot.note if prot.note else ''}")
        ctl.shutdown()
        app.quit()

    QTimer.singleShot(0, ctl.start)
    if args.dashboard:
        QTimer.singleShot(500, ctl.window.toggle_dashboard)
    QTimer.singleShot(int(args.warmup * 1000), begin)
    QTimer.singleShot(int((args.warmup + args.seconds) * 1000), finish)
    app.exec()
    return 0


if __name__ == "__main__":
    sys.exit(main())
