"""Which convolutions of CenterFace lose faces when quantized to int8 (how KEEP_FP32 was chosen).

Run: ``python bench/int8_sensitivity.py [--keep NAME,NAME] [--top 12]``.

The check images of ``backend.detect.quantize`` (LFW face mosaics, sharp and motion-blurred,
no astronaut) are scored with the fp32 model. Then the model is quantized with the recipe of
``backend.detect.quantize`` once with only ``--keep`` left fp32 (default: none), and once
more per remaining convolution with that one left fp32 as well. Loss = sum over faces of the
score fp32 gives minus what int8 gives (where positive); "lost" = faces fp32 finds (score
>= 0.25) and int8 does not. Prints every convolution's figures, then the ``--top`` best to
keep fp32. Takes about 4 minutes on 2 cores (60 quantizations).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run the scan, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", default="", help="conv output names already kept fp32")
    parser.add_argument("--top", type=int, default=12, help="how many best to list")
    args = parser.parse_args(argv)

    import numpy as np
    import onnx

    from backend.detect import CenterFaceDetector, default_model_path, prepare_model
    from backend.detect import quantize as q

    keep = {k for k in args.keep.split(",") if k}
    fp32 = prepare_model(None)
    model = onnx.load_from_string(fp32)
    convs = [n.output[0] for n in model.graph.node if n.op_type == "Conv"]
    checks = q.check_images()

    def scores(path: Path) -> np.ndarray:
        det = CenterFaceDetector(model_path=path, threshold=0.02, long_side=448,
                                 provider="cpu", precision="fp32")
        return np.array([s for image, boxes in checks
                         for s in q.face_scores(det, image, boxes)])

    ref = scores(default_model_path())
    original = dict(q.KEEP_FP32)

    def loss(kept: set[str], tmp: Path) -> tuple[float, int]:
        q.KEEP_FP32.clear()
        q.KEEP_FP32.update({k: () for k in kept})  # quantize() only reads the names
        out = tmp / "int8.onnx"
        q.quantize(fp32, out)
        s = scores(out)
        return float(np.clip(ref - s, 0, None).sum()), int(((ref >= 0.25) & (s < 0.25)).sum())

    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = loss(keep, Path(tmp))
            print(f"{len(ref)} check faces, fp32 finds {(ref >= 0.25).sum()}")
            print(f"kept fp32 {sorted(keep) or 'none'}: loss {base[0]:.2f}, lost {base[1]}")
            print(f"{'conv output':>12} {'loss':>7} {'lost':>5}")
            rows = []
            for name in convs:
                if name in keep:
                    continue
                row = loss(keep | {name}, Path(tmp))
                rows.append((row[0], row[1], name))
                print(f"{name:>12} {row[0]:>7.2f} {row[1]:>5}", flush=True)
    finally:
        q.KEEP_FP32.clear()
        q.KEEP_FP32.update(original)
    rows.sort()
    print("\nbest to keep fp32:", ", ".join(f"{n} ({lo:.2f}, {lost})"
                                          for lo, lost, n in rows[:args.top]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
