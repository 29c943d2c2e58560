"""Face replacement speed on CPU: milliseconds and faces per second, per face.

Run: ``python bench/replace_speed.py [--repeat 20] [--threads 2] [--faces 1 4]``.

Models are built here with ``onnx.helper`` (no download, random weights): a DFM-shaped
model at 224 px and an inswapper-shaped one at 128 px, each once with no network (the
cost of our alignment, crop, colour handling and paste-back alone) and once with a stack
of 3x3 convolutions of a stated size in multiply-adds (GMAC), a stand-in for a real
network. Real models differ in size: scale the model part by their GMAC. The frame is
1280x720; ``--faces`` faces are replaced per call (DFM: one batched model call).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    """Build the models, time ``FaceReplacer.replace`` per face, print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--faces", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()

    import numpy as np

    from backend.replace import FaceReplacer
    from backend.replace.formats import load_source
    from backend.types import Track
    from config.schema import MaskSettings
    from tests import replace_models as rm
    from tests.unit.test_replace_align import face_points

    work, depth = 256, 6
    tmp = Path(tempfile.mkdtemp(prefix="ptim-bench-"))
    arc = rm.arcface(tmp / "arc.onnx")
    cases = [
        ("DFM 224, no network", rm.dfm(tmp / "dfm0.dfm", size=224), 0.0),
        (f"DFM 224, {rm.conv_gflops(224, work, depth):.1f} GMAC",
         rm.dfm(tmp / "dfm1.dfm", size=224, work=work, depth=depth),
         rm.conv_gflops(224, work, depth)),
        ("inswapper 128, no network", rm.inswapper(tmp / "sw0.onnx"), 0.0),
        (f"inswapper 128, {rm.conv_gflops(128, work, depth, downs=2):.1f} GMAC",
         rm.inswapper(tmp / "sw1.onnx", work=work, depth=depth),
         rm.conv_gflops(128, work, depth, downs=2)),
        ("photo (no model)", "demo", 0.0),
    ]
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    print(f"CPU, {args.threads} onnxruntime threads, 1280x720 frame, median of {args.repeat}")
    for label, path, _ in cases:
        st = MaskSettings(type="replace", replace_face=str(path), source_face="demo",
                          recognition_model=str(arc))
        src = load_source(str(path), source_face="demo", recognition_model=str(arc),
                          threads=args.threads)
        for n in args.faces:
            rep = FaceReplacer(st, source=src)
            tracks = []
            for k in range(n):
                cx, cy = 200 + (k % 4) * 280, 200 + (k // 4) * 300
                lm = face_points(cx, cy, 60).astype(np.float32)
                box = np.array([cx - 80, cy - 100, cx + 80, cy + 100], np.float32)
                tracks.append(Track(k, box, np.zeros(4, np.float32), 0.9, landmarks=lm))
            times = []
            for i in range(args.warmup + args.repeat):
                img = frame.copy()
                t0 = time.perf_counter()
                ok = rep.replace(img, tracks)
                if i >= args.warmup:
                    times.append(time.perf_counter() - t0)
            assert all(ok), label
            ms = statistics.median(times) * 1000 / n
            print(f"{label:32s} {n} face(s)/frame: {ms:7.1f} ms per face = "
                  f"{1000 / ms:6.1f} faces/s")


if __name__ == "__main__":
    main()
