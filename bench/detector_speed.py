"""Median milliseconds per ``CenterFaceDetector.detect()`` on a 1280x720 frame, fp32 vs int8.

Run: ``python bench/detector_speed.py [--threads 2] [--provider auto] [--repeat 30]``.
The frame is the astronaut photo pasted on a grey 1280x720 canvas, so every run also
decodes one real face. Prints one line per long side (320, 448, 640) and precision, the
two precisions timed alternately so that load from other jobs hits both alike, and the
int8/fp32 time ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    """Parse flags, time detect() at each long side, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--provider", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    import numpy as np

    from backend.detect import CenterFaceDetector
    from backend.memory import MemoryPool
    from backend.sources.face_photo import astronaut

    photo, _ = astronaut()
    frame = np.full((720, 1280, 3), 127, np.uint8)
    frame[100 : 100 + photo.shape[0], 400 : 400 + photo.shape[1]] = photo

    dets = {p: CenterFaceDetector(provider=args.provider, threads=args.threads,
                                  pool=MemoryPool(), precision=p) for p in ("fp32", "int8")}
    for p, det in dets.items():
        note = f" ({det.provider_note})" if det.provider_note else ""
        print(f"{p}: provider {det.provider}, runs {det.precision}{note}")
    print(f"{'long side':>9}  {'input WxH':>9}  {'precision':>9}  {'median ms':>9}  {'p90 ms':>7}"
          f"  faces")
    for long_side in (320, 448, 640):
        times: dict[str, list[float]] = {p: [] for p in dets}
        faces = {}
        for det in dets.values():
            det.long_side = long_side
            for _ in range(args.warmup):
                det.detect(frame)
        for _ in range(args.repeat):
            for p, det in dets.items():
                t0 = time.perf_counter()
                faces[p] = det.detect(frame)
                times[p].append((time.perf_counter() - t0) * 1000)
        w, h = dets["fp32"].input_shape_for(1280, 720)
        for p in dets:
            p90 = statistics.quantiles(times[p], n=10)[-1]
            print(f"{long_side:>9}  {f'{w}x{h}':>9}  {p:>9}  {statistics.median(times[p]):>9.1f}"
                  f"  {p90:>7.1f}  {len(faces[p])}")
        ratio = statistics.median(times["int8"]) / statistics.median(times["fp32"])
        print(f"{'':>9}  {'':>9}  {'int8/fp32':>9}  {ratio:>9.2f}")


if __name__ == "__main__":
    main()
