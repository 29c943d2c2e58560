"""``process`` on a local Ray cluster with 1 and 2 worker processes, and without Ray.

The same folder of clips goes through: plain ``process`` (no Ray); a local Ray head started
with ``--num-cpus 1`` (one worker process), then with ``--num-cpus 2`` (two), one task per
file; and the two-worker cluster again with the files cut into segments. Every run uses one
onnxruntime thread per worker process (``PTIM_MAX_WORKERS=1``), so the figures isolate the
number of workers. Printed: wall time and throughput of each, the speed-up of two workers
over one, Ray's start-up cost (head up, then the driver connected) and the overhead of a
unit (task round trip, model load in a fresh worker, part verification, join) and of a
segment (its lead-in and lead-out frames on top). The cluster is stopped at the end.

    python bench/cluster.py [--clips 4] [--frames 150] [--size 640x360] [--segment-seconds 2]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.sources import write_clip  # noqa: E402
from bench.common import OUT_DIR, ROOT, bench_env, parse_size, scene_spec  # noqa: E402

SCENES = ("demo", "fast_motion", "scaling", "dim", "partly_out", "two_faces_crossing")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_head(cpus: int, env: dict) -> tuple[subprocess.Popen, str, str, float]:
    """(process, address, temp dir, seconds until up) of a local head with ``cpus`` CPUs."""
    port, temp = _port(), tempfile.mkdtemp(prefix="ptim-ray-")
    log = Path(temp) / "head.log"
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("ray")), "start", "--head",
             "--node-ip-address=127.0.0.1", f"--port={port}", f"--num-cpus={cpus}",
             "--disable-usage-stats", "--include-dashboard=false", "--block",
             f"--temp-dir={temp}"], stdout=fh, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
    while "Ray runtime started" not in log.read_text():
        if proc.poll() is not None:
            raise SystemExit(f"ray start failed:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)
    return proc, f"127.0.0.1:{port}", temp, time.perf_counter() - t0


def stop_head(proc: subprocess.Popen, temp: str) -> None:
    """Stop the head's process group (SIGTERM, then SIGKILL)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=5)
            break
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue
    shutil.rmtree(temp, ignore_errors=True)


def run(folder: Path, out: Path, env: dict, *extra: str) -> tuple[float, str]:
    """(wall seconds, stderr) of ``process FOLDER -o OUT [extra]``."""
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "process", str(folder), "-o",
                        str(out), "--mask", "solid", *extra], env=env, capture_output=True,
                       text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"process failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return wall, r.stderr + r.stdout


def main() -> int:
    """Run the four configurations and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--segment-seconds", type=float, default=2.0)
    a = ap.parse_args()
    size = parse_size(a.size)
    folder = OUT_DIR / "cluster_in"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    frames = 0
    for i in range(a.clips):
        spec = scene_spec(SCENES[i % len(SCENES)], size, a.frames)
        # a keyframe each second, as cameras write: segments can be cut anywhere
        write_clip(spec, folder / f"{i:02d}_{SCENES[i % len(SCENES)]}.mp4",
                   keyint=round(spec.fps))
        frames += spec.n_frames
    env = {**bench_env(), "PTIM_MAX_WORKERS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    print(f"{a.clips} clips, {frames} frames at {size[0]}x{size[1]}; 1 onnxruntime thread "
          f"per worker; {os.cpu_count()} CPUs here")
    t_plain, _ = run(folder, OUT_DIR / "cluster_plain", env, "--quiet")
    rows = [("no Ray", t_plain, None)]
    ups = []
    for cpus in (1, 2):
        proc, addr, temp, up = start_head(cpus, env)
        try:
            t, err = run(folder, OUT_DIR / f"cluster_{cpus}", env, "--cluster", addr,
                         "--segment-seconds", "100000", "--verbose")
            m = re.search(r"connected to the Ray cluster .* in ([\d.]+) s", err)
            connect = float(m.group(1)) if m else float("nan")
            rows.append((f"Ray, {cpus} worker{'s' if cpus > 1 else ''}", t, connect))
            ups.append(up)
            if cpus == 2:
                t_seg, out = run(folder, OUT_DIR / "cluster_2seg", env, "--cluster", addr,
                                 "--segment-seconds", str(a.segment_seconds))
                segs = sum(int(x) for x in re.findall(r", (\d+) segments", out)) or a.clips
                rows.append((f"Ray, 2 workers, {a.segment_seconds:g} s segments "
                             f"({segs} units)", t_seg, None))
        finally:
            stop_head(proc, temp)
    print(f"{'run':<40} {'wall s':>8} {'fps':>7}")
    for name, t, _ in rows:
        print(f"{name:<40} {t:8.1f} {frames / t:7.1f}")
    t1, t2 = rows[1][1], rows[2][1]
    print(f"speed-up, 2 workers over 1: {t1 / t2:.2f}x")
    print(f"Ray start-up: head up {sum(ups) / len(ups):.1f} s, driver connected "
          f"{rows[1][2]:.1f} s")
    per_unit = (t1 - rows[1][2] - t_plain) / a.clips
    print(f"overhead per unit (1 worker, vs no Ray, start-up excluded): {per_unit:.2f} s")
    extra_units = segs - a.clips
    if extra_units > 0:
        print(f"overhead per extra segment (2 workers, lead-in/out included): "
              f"{(rows[3][1] - t2) / extra_units:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
