"""Look-back masking for files: a face found now is also masked in the frames before.

A detector often confirms a face a few frames late: it enters blurred by motion, or
from the frame's edge, and scores under the start threshold until it is clear. Live
video cannot wait, but a file can: ``LookBack`` holds the last ``depth`` finished frames
before they are written. When a track is born, it walks back through the held frames
and masks, in each, the weak detection that continues the new track backwards (the same
centre gate the tracker uses), or, when there is none, the new box grown as in hold-over.
A frame without one between two that have one also gets the box interpolated between
them: a face moving fast is where neither neighbour's box would cover it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from backend.track.tracker import union_box
from backend.types import Detections, Track


@dataclass(slots=True)
class _Held:
    result: object  # backend.pipeline.FrameResult
    detections: Detections | None
    added: list[Track] = field(default_factory=list)


def _centre_size(box: np.ndarray) -> tuple[float, float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, max(box[2] - box[0], box[3] - box[1])


def _between(later: np.ndarray, earlier: np.ndarray, k: int, gap: int) -> np.ndarray:
    """The box ``k`` frames before ``later`` in a gap of ``gap`` frames that ends at
    ``earlier``: linear between the two, grown by the distance to the nearer end."""
    t = k / (gap + 1)
    box = later + (earlier - later) * t
    return _grow(box, 0.12 * min(k, gap + 1 - k))


def _grow(box: np.ndarray, frac: float) -> np.ndarray:
    w, h = box[2] - box[0], box[3] - box[1]
    return np.array([box[0] - w * frac / 2, box[1] - h * frac / 2,
                     box[2] + w * frac / 2, box[3] + h * frac / 2], np.float32)


class LookBack:
    """Delays finished frames by ``depth`` and masks new tracks into the held ones.

    ``masker`` paints masks in place (``Masker.apply``). ``push`` returns the frames that
    leave the buffer, oldest first, each with the extra tracks painted into it; ``flush``
    returns the rest at the end of the stream.
    """

    def __init__(self, masker, depth: int, growth_per_frame: float = 0.06,
                 gate: float = 2.0) -> None:
        self.masker = masker
        self.depth = max(0, int(depth))
        self.growth = growth_per_frame
        self.gate = gate  # centre distance, in box sizes, to continue a chain
        self._held: deque[_Held] = deque()
        self._seen: set[int] = set()
        self.backfilled = 0  # masks painted into earlier frames

    def push(self, result, detections: Detections | None) -> list[tuple[object, list[Track]]]:
        """Add the newest finished frame; return those that leave the buffer."""
        if not result.fail_closed:
            for track in result.tracks:
                if track.track_id not in self._seen and not track.held_over:
                    self._seen.add(track.track_id)
                    if not track.exempt:
                        self._mask_backwards(track)
        self._held.append(_Held(result, detections))
        out = []
        while len(self._held) > self.depth:
            h = self._held.popleft()
            out.append((h.result, h.added))
        return out

    def flush(self) -> list[tuple[object, list[Track]]]:
        """Every frame still held, oldest first."""
        out = [(h.result, h.added) for h in self._held]
        self._held.clear()
        return out

    def _mask_backwards(self, track: Track) -> None:
        box = np.asarray(track.box, np.float32)
        misses = 0
        # walk back: each held frame gets the detection that continues the chain, or None
        steps: list[tuple[_Held, np.ndarray | None, np.ndarray]] = []
        for held in reversed(self._held):
            if held.result.fail_closed:
                continue  # already obscured whole
            found = self._continue(box, held.detections)
            if found is not None:
                box, misses = found, 0
            else:
                misses += 1
                box = _grow(box, self.growth * 2)  # unknown motion: grow faster than hold-over
            steps.append((held, found, box.copy()))
        later = np.asarray(track.box, np.float32)  # the chain's anchor after the current gap
        last_found = -1  # step index of ``later`` (-1: the new track itself)
        for k, (held, found, grown) in enumerate(steps):
            if found is not None:
                later, paint, last_found, misses = found, found, k, 0
            else:
                misses = k - last_found
                nxt = next((j for j in range(k + 1, len(steps)) if steps[j][1] is not None),
                           None)
                paint = grown if nxt is None else union_box(
                    grown, _between(later, steps[nxt][1], misses, nxt - last_found - 1))
            extra = Track(track_id=-track.track_id, box=paint.copy(), velocity=np.zeros(4),
                          score=0.0, frames_since_seen=misses)
            self.masker.apply(held.result.frame.image, [extra])
            held.added.append(extra)
            self.backfilled += 1

    def _continue(self, box: np.ndarray, dets: Detections | None) -> np.ndarray | None:
        if dets is None or not len(dets):
            return None
        cx, cy, size = _centre_size(box)
        best, best_d = None, self.gate
        for b in dets.xyxy:
            bx, by, bs = _centre_size(b)
            d = np.hypot(bx - cx, by - cy) / max(size, bs, 1.0)
            if d < best_d and 0.5 < bs / max(size, 1.0) < 2.0:
                best, best_d = b, d
        return None if best is None else np.asarray(best, np.float32)
