"""How small a face CenterFace finds, in pixels at its own input (the schedule's basis).

Runs the detector (as ``process`` loads it: int8 on CPU unless ``--precision fp32``) on the
real photos of ``../shared/real-faces/`` at several scales and prints, by the face's height
at the network input, the share of true boxes found (a detection with IoU >= 0.3) at the
start threshold (0.25) and the continue threshold (0.1). ``backend/detect/schedule.py``'s
``RELIABLE_INPUT_PX`` is chosen from this table. The boxes were checked with CenterFace
itself among others, so the figures are an upper bound for faces of that size.

    python bench/face_scale.py [--faces DIR] [--precision auto|fp32|int8]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
THRESHOLDS = (0.1, 0.25)


def best_iou(box: list[float], dets: np.ndarray) -> float:
    """Highest IoU of ``box`` with any row of ``dets`` (n, 4)."""
    if not len(dets):
        return 0.0
    ix1 = np.maximum(box[0], dets[:, 0])
    iy1 = np.maximum(box[1], dets[:, 1])
    ix2 = np.minimum(box[2], dets[:, 2])
    iy2 = np.minimum(box[3], dets[:, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    union = ((box[2] - box[0]) * (box[3] - box[1])
             + (dets[:, 2] - dets[:, 0]) * (dets[:, 3] - dets[:, 1]) - inter)
    return float((inter / union).max())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=Path, default=ROOT.parent / "shared" / "real-faces")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "int8"])
    args = ap.parse_args(argv)
    files = sorted(args.faces.glob("*.json"))
    if not files:
        print(f"{args.faces}: no photos with boxes (*.json) found", file=sys.stderr)
        return 2
    import cv2

    from backend.detect import CenterFaceDetector

    det = CenterFaceDetector(threshold=min(THRESHOLDS), precision=args.precision)
    found: dict[tuple[float, int], list[int]] = {}
    for scale in SCALES:
        for f in files:
            meta = json.loads(f.read_text())
            img = cv2.imread(str(f.with_suffix(".jpg")))
            h, w = img.shape[:2]
            det.long_side = max(32, round(max(w, h) * scale))
            dets = det.detect(img)
            for box in meta["boxes"]:
                at_input = (box[3] - box[1]) * scale
                bucket = min(40, int(at_input // 4) * 4)
                for thr in THRESHOLDS:
                    hit = best_iou(box, dets.xyxy[dets.confidence >= thr]) >= 0.3
                    row = found.setdefault((thr, bucket), [0, 0])
                    row[0] += int(hit)
                    row[1] += 1
    print(f"CenterFace {det.precision} on {len(files)} photos, scales {SCALES}")
    print("face height at input    found at 0.25     found at 0.1")
    for bucket in sorted({b for _, b in found}):
        cells = []
        for thr in (0.25, 0.1):
            hit, total = found[(thr, bucket)]
            cells.append(f"{hit:4d}/{total:<4d} {hit / total:5.0%}")
        label = f"{bucket}-{bucket + 4} px" if bucket < 40 else "40+ px"
        print(f"{label:>20}    {cells[0]}    {cells[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
