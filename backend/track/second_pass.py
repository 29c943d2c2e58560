"""The second tracking pass for files: complete each track backward and across its gaps.

A file has a future, so a face need not be found the moment it appears. The forward pass
(detection schedule + ``Tracker``) finds a face late when it enters blurred by motion, from
the frame's edge, or small enough that only a fine tile that came round later sees it.
``SecondPass`` holds a bounded window of finished frames, each with its unmasked original,
before they are written. When a track is born it walks back through the window and, in each
earlier frame, looks for the face where its motion says it was: first among that frame's own
detections, then by re-detecting in a crop around the prediction (a detection at the crop's
scale, not just a grown box). Until a find backs a face's own motion, the picture's motion
(a pan or sweep: the faces tracked in both frames moved alike) predicts it: one hop to a
smeared detection is a poor guess of a fast face's speed. A box found for a moving face is
stretched along its motion (a frame's smear spans it; the detection boxes its middle). A
frame where neither finds it gets the prediction grown, up to
``miss_limit`` frames in a row (as hold-over does forward). When a track is found again after
frames of hold-over, the held frames also get the box interpolated between the two known
positions. A track never takes a box that another track holds in that frame. A track found
again off its hold-over's path may have taken a neighbour's box (blurred crowds in a sweep):
its hold-over box is masked in that frame too, and when the picture's motion says it jumped,
it is walked back as if born there. A walk back that finds a box off the motion's path (a
neighbour's smear, or the face itself moving on its own) masks and follows both (the
motion's path a few frames only). A face's own motion is followed past the frames a still
face would be only when a find backs it or the picture moves alike: one hop in a still
crowd is most often to a neighbour.

Each added box is a ``Track`` with negative id and ``state`` "backtracked", "interpolated" or
"held" for ``--boxes`` ("detected" for a face that ``finish`` finds in a file's last frame,
where no later frame can find it). Memory: at most ``depth`` frames (and never more than
``max_bytes`` of pixels, originals included): detections are kept, not frames; every frame
leaves once, in order.
"""

from __future__ import annotations

import copy
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from backend.detect.schedule import Region, quantized_scale
from backend.track.camera import chain
from backend.track.tracker import LEAD_REACH, moved_box, overlaps_frame, shared_motion
from backend.types import CameraMotion, Detections, Track

log = logging.getLogger("ptim.track")

# A candidate overlapping another track's box by this much belongs to that track.
CLAIMED_IOU = 0.3
# A box claims a face found inside it at a file's end only up to this many times its size.
CLAIM_SIZE_RATIO = 2.5
# A backward crop shows its predicted face at about this many input pixels: fewer than a
# forward refinement crop's, because the frames before a face was found are where it was
# smeared by motion, and a smear shrinks to a face-like blob at a small scale.
BACKTRACK_FACE_PX = 32.0
# A face moving this many of its sizes a frame (its motion trusted) is followed back until
# its predicted path leaves the frame, however long it went unfound (a still one: for
# hold_frames frames).
MOVING = 0.1
# A face moving this many of its sizes a frame on its own (a find backs it) may have been
# moving faster still in the frames before it was found (it slowed down to be found).
FAST = 0.2
# Share of a face's speed by which its predicted position may be off per frame unfound.
VELOCITY_DOUBT = 0.2
# Motion of an unknown face, in face sizes per frame, that the first backward search covers.
FIRST_SEARCH = 1.5
# A backward box found this many of its sizes from where the motion put the face may be a
# neighbour: the prediction is painted too.
DOUBT_SHIFT = 0.5
# ... this many where the picture's motion is measured (to within a pixel or two, so a face
# that did not move on its own is where the prediction says; a crowd's neighbour is half a
# face size away, and one hop there cost a face its mask in a dimmed street)
MEASURED_DOUBT_SHIFT = 0.25
# A track found again this many of its box's sizes from where its hold-over box would be
# now may have taken a neighbour's box: the hold-over box is masked in that frame too.
REFOUND_SHIFT = 0.5
# A fork (the motion's path past a doubtful find) is followed this many frames unfound at
# most, moving or not: in a still crowd doubtful finds are many, and forks walked on until
# their path left the frame (a third of a 90-frame dimmed street crowd black).
FORK_MISSES = 4
# A track detected this many of its sizes away from where the picture's motion (known in
# every frame since it was last detected) would have taken it may have taken another face:
# it is also walked back, as if born there.
JUMP = 0.5
# Where the picture's motion is measured (``CameraMotion``) it says where a face was, and
# re-detection crops of one held frame cost at most this share of the frame's own pixels:
# a crowd's hundreds of new faces walk back along the measured motion beyond it (the crops
# of a 700-face mosaic cost four times the frame before the budget).
CROP_BUDGET = 0.25
# An added box this much inside a box detected in its frame is that face, already masked.
WITHIN_FOUND = 0.9

DetectCrops = Callable[[np.ndarray, Sequence[Region]], Detections]


@dataclass(slots=True)
class Added:
    """A box painted into a held frame by the second pass."""

    track_id: int
    box: np.ndarray
    state: str  # "backtracked", "interpolated", "held", or "detected" (at a file's end)
    found: bool  # True when a detection backs it, False for a prediction


@dataclass(slots=True)
class _Held:
    result: object  # backend.pipeline.FrameResult (masked image in result.frame.image)
    detections: Detections | None
    original: np.ndarray | None
    added: list[Added] = field(default_factory=list)
    # how the picture moved from the frame before to this one (the faces detected in both
    # moved alike: a pan or sweep), None when that is not known
    motion: np.ndarray | None = None
    # the same measured from the pixels (shift, zoom and roll), None when not known
    camera: CameraMotion | None = None
    crop_pixels: int = 0  # detector input spent on re-detection crops in this frame


def _size(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], box[3] - box[1], 1.0))


def _centre(box: np.ndarray) -> np.ndarray:
    """Centre (..., 2) of xyxy boxes (..., 4)."""
    b = np.asarray(box, np.float64)
    return (b[..., :2] + b[..., 2:]) / 2


def _grow(box: np.ndarray, frac: float) -> np.ndarray:
    w, h = box[2] - box[0], box[3] - box[1]
    return np.array([box[0] - w * frac / 2, box[1] - h * frac / 2,
                     box[2] + w * frac / 2, box[3] + h * frac / 2], np.float64)


def _smeared(box: np.ndarray, step: np.ndarray | None) -> np.ndarray:
    """``box`` stretched along a frame's motion ``step`` (half of it each way): a face moving
    that fast is smeared over the whole motion, and a detection boxes its middle only."""
    if step is None:
        return box
    half = np.abs(np.asarray(step, np.float64)) / 2
    return np.concatenate([box[:2] - half, box[2:] + half])


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every row of ``a`` (n, 4) with every row of ``b`` (m, 4)."""
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _inside(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Share of ``box`` (4,) that lies inside each row of ``others`` (m, 4)."""
    w = np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])
    h = np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])
    area = max(float((box[2] - box[0]) * (box[3] - box[1])), 1e-9)
    return np.clip(w, 0, None) * np.clip(h, 0, None) / area


def _sizes(a: np.ndarray) -> np.ndarray:
    return np.maximum(np.maximum(a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]), 1.0)


def _norm_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Centre distance of every row of ``a`` to every row of ``b``, in the larger box size."""
    ca = (a[:, :2] + a[:, 2:]) / 2
    cb = (b[:, :2] + b[:, 2:]) / 2
    d = np.linalg.norm(ca[:, None, :] - cb[None, :, :], axis=2)
    return d / np.maximum(_sizes(a)[:, None], _sizes(b)[None, :])


def _eligible(preds: np.ndarray, gates: np.ndarray, cands: np.ndarray,
              claimed: np.ndarray) -> np.ndarray:
    """(chains, candidates) mask: near enough, of a similar size, and held by no other track
    in that frame."""
    if not len(cands) or not len(preds):
        return np.zeros((len(preds), len(cands)), bool)
    ratio = _sizes(cands)[None, :] / _sizes(preds)[:, None]
    free = np.ones(len(cands), bool) if not len(claimed) else \
        _iou_matrix(cands, claimed).max(axis=1) < CLAIMED_IOU
    return (ratio > 0.5) & (ratio < 2.0) & (_norm_dist(preds, cands) < gates[:, None]) \
        & free[None, :]


def _carry(chains: list[_Chain], motion: CameraMotion) -> list[np.ndarray]:
    """Move the chains' boxes along the picture's ``motion`` (into the frame the walk
    enters): a chain's own motion is then what is left of its face's. Returns how far
    each one's box centre was carried."""
    boxes = np.array([(c.box, c.anchor, c.base, c.box if c.path is None else c.path)
                      for c in chains], np.float64)
    moved = motion.boxes(boxes)
    zoom = motion.scale
    for c, (box, anchor, base, path) in zip(chains, moved, strict=True):
        c.box, c.anchor, c.base = box, anchor, base
        if c.path is not None:
            c.path = path
        if c.step is not None:
            c.step = c.step * zoom
    return list(_centre(moved[:, 0]) - _centre(boxes[:, 0]))


def _within(crops: list[Region], pixels: float) -> list[Region]:
    """The first ``crops`` whose input pixels add up to at most ``pixels``."""
    out: list[Region] = []
    spent = 0
    for c in crops:
        if spent + c.input_pixels > pixels:
            break
        out.append(c)
        spent += c.input_pixels
    return out


class _Chain:
    """One new track walking back: where its face was, and how it moved."""

    def __init__(self, track: Track, seek: bool = True,
                 step: np.ndarray | None = None) -> None:
        self.track_id = track.track_id
        self.base = np.asarray(track.box, np.float64)
        self.box = self.base.copy()
        # centre's motion per frame going back, once known (``step``: known from the frame
        # after its birth, where it was found again)
        self.step: np.ndarray | None = None if step is None else np.asarray(step, np.float64)
        self.anchor = self.base.copy()  # the last box a detection backs, and its frame
        self.anchor_k = 0
        self.misses = 0
        self.done = False
        self.seek = seek  # whether to re-detect in crops (else: frames' own detections only)
        # its birth box carried along the picture's measured motion only (None once a
        # frame's motion is not known): where a face that did not move on its own was
        self.path: np.ndarray | None = self.base.copy()
        self.forked = False
        # a find where its own motion put the face backs that motion
        self.confirmed = self.step is not None
        # a find off the path its motion predicted: its own motion says where it went since
        self.doubted = False

    def knows_motion(self, shared: np.ndarray | None) -> bool:
        """Whether its own motion or the picture's (``shared``) says where it was."""
        return self.step is not None or shared is not None

    def gate(self, gate: float, shared: np.ndarray | None) -> float:
        """How far, in box sizes, from its prediction the face may be found: wider while
        neither its own motion nor the picture's (``shared``) is known. With the picture's,
        the wide search only finds the smear of a neighbour (real sweeps), at a cost."""
        return gate if self.knows_motion(shared) else gate * FIRST_SEARCH

    def predict(self, shared: np.ndarray | None = None) -> np.ndarray:
        """The box one frame further back: moved by the centre's motion (``shared``, the
        picture's, until a find backed its own), size kept (a face's size barely changes in
        a frame; extrapolating it can turn a box inside out)."""
        # one hop says less than the whole picture's motion (a sweep or pan) does: its own
        # motion leads only once a find where it put the face has backed it, or once it
        # was found off the picture's path (it moves on its own, or took a neighbour)
        own = self.step is not None and (self.confirmed or self.doubted)
        step = self.step if own or shared is None else shared
        if step is None:
            return self.box.copy()
        return moved_box(self.box, step)

    def fork(self, k: int, box: np.ndarray, step: np.ndarray | None) -> _Chain:
        """A chain that goes on from ``box``, where the motion (``step``) put the face in
        the ``k``-th frame back, on the frames' own detections and predictions only."""
        other = copy.copy(self)
        other.box, other.anchor, other.anchor_k = box.copy(), box.copy(), k
        other.step = None if step is None else step.copy()
        other.misses, other.done, other.seek, other.forked = 1, False, False, True
        return other

    def found(self, k: int, box: np.ndarray) -> None:
        delta = (_centre(box) - _centre(self.anchor)) / max(k - self.anchor_k, 1)
        self.step = delta if self.step is None else 0.5 * self.step + 0.5 * delta
        self.box, self.anchor, self.anchor_k, self.misses = box, box, k, 0

    def trusted(self, shared: np.ndarray | None) -> bool:
        """Whether its own motion is known well enough to follow it past ``miss_limit``: a
        find further back, where that motion put the face, backed it, or it agrees (to
        within ``DOUBT_SHIFT`` face sizes) with the picture's motion (``shared``). One hop
        to a detection says little: in a still crowd it is most often a neighbour's."""
        if self.step is None:
            return False
        if self.confirmed:
            return True
        return shared is not None and \
            float(np.hypot(*(self.step - shared))) <= DOUBT_SHIFT * _size(self.anchor)

    def missed(self, pred: np.ndarray, growth: float, max_growth: float,
               miss_limit: int, frame_size: tuple[int, int],
               shared: np.ndarray | None = None,
               carried: np.ndarray | None = None) -> np.ndarray | None:
        """The grown prediction to paint, or None once the walk ends: after ``miss_limit``
        misses for a face that was still inside the frame (``FORK_MISSES`` for a fork), or
        once the prediction has left the frame for a face that was moving (its motion
        ``trusted`` against the picture's, ``shared``, or carried by the measured motion of
        the picture, ``carried``: it came from somewhere, smeared too much to be found) or
        cut by the frame's edge (too little of it to be found)."""
        self.misses += 1
        if self.forked and self.misses > FORK_MISSES:
            self.done = True
            return None
        own = self.step if self.trusted(shared) else None
        if carried is not None:  # the picture's measured motion moves it, with its own
            own = carried if own is None else own + carried
        moving = own is not None and float(np.hypot(*own)) >= MOVING * _size(self.anchor)
        w, h = frame_size
        outside = not overlaps_frame(pred, w, h)
        # a face cut by the frame's edge is hard to find: it may be there all along
        at_edge = pred[0] < 0 or pred[1] < 0 or pred[2] > w or pred[3] > h
        if outside or (not moving and not at_edge and self.misses > miss_limit):
            self.done = True
            return None
        self.box = pred
        return self.unfound(pred, growth, max_growth, carried)

    def unfound(self, pred: np.ndarray, growth: float, max_growth: float,
                carried: np.ndarray | None = None) -> np.ndarray:
        """Where the face may be when it is not (or not surely) found at ``pred`` after
        ``misses`` frames unfound: ``pred`` grown with the misses and its motion's doubt,
        to at most ``max_growth`` times its size at birth."""
        misses = max(1, self.misses)
        frac = growth * 2 * misses
        if self.step is not None:  # the motion is known to within about a fifth
            frac += 2 * VELOCITY_DOUBT * float(np.hypot(*self.step)) * misses / _size(pred)
        cap = max_growth * _size(self.base) / _size(pred) - 1
        grown = _grow(pred, max(0.0, min(frac, cap)))
        fast = self.step is not None and \
            float(np.hypot(*self.step)) >= FAST * _size(self.anchor)
        # a still picture (measured) leaves a face's motion its own, found off path or not
        still = carried is not None and float(np.hypot(*carried)) < MOVING * _size(self.anchor)
        if fast and (self.confirmed or (self.doubted and still)):
            # walking back, a face that slowed down to be found was faster before: the side
            # its own fast motion leads to reaches out by that motion once more per frame
            # unfound (the forward hold's LEAD_REACH), within the growth cap; and it is
            # smeared over its motion, as a find is
            grown = _smeared(grown, self.step)
            reach = np.clip(self.step * misses * LEAD_REACH,
                            -max_growth * _size(self.base), max_growth * _size(self.base))
            grown[2 if reach[0] > 0 else 0] += reach[0]
            grown[3 if reach[1] > 0 else 1] += reach[1]
        return grown


class SecondPass:
    """Delays finished frames by up to ``depth`` and completes tracks into them.

    ``masker`` paints masks in place (``Masker.apply``); ``detect_crops(image, regions)``
    re-detects in crops of an original (None: only the frames' own detections are used).
    ``push`` returns the frames that leave the window, oldest first, each with the boxes
    added to it; ``flush`` returns the rest at the end of the stream.
    """

    def __init__(self, masker, depth: int, detect_crops: DetectCrops | None = None,
                 growth_per_frame: float = 0.06, miss_limit: int = 8, gate: float = 2.0,
                 max_bytes: int = 512 * 2**20, max_growth: float = 3.0) -> None:
        self.masker = masker
        self.depth = max(0, int(depth))
        self.detect_crops = detect_crops
        self.growth = growth_per_frame
        self.miss_limit = max(0, int(miss_limit))
        self.gate = gate  # centre distance, in box sizes, for a frame's own detection
        self.max_bytes = max_bytes
        self.max_growth = max_growth  # a predicted box grows to at most this many times
        self._held: deque[_Held] = deque()
        self._seen: set[int] = set()
        # tracks born in the newest held frame: walked back from there once the next frame
        # says how they moved (a face running across a still picture is found moving)
        self._born: list[Track] = []
        self._window: int | None = None
        self.backtracked = 0  # boxes painted into earlier frames
        self.interpolated = 0
        self.redetected = 0  # of the backtracked boxes, found by re-detection in a crop

    @property
    def window(self) -> int:
        """Frames actually held: ``depth``, or fewer when frames are large."""
        return self.depth if self._window is None else self._window

    def push(self, result, detections: Detections | None,
             original: np.ndarray | None = None,
             camera: CameraMotion | None = None) -> list[tuple[object, list[Added]]]:
        """Add the newest finished frame (and its unmasked ``original``, and ``camera``, how
        the picture moved from the frame pushed before, when measured); return the frames
        that leave the window."""
        if self._window is None:
            per_frame = 2 * result.frame.image.nbytes
            self._window = max(0, min(self.depth, self.max_bytes // max(per_frame, 1)))
            if self._window < self.depth:
                log.info("second pass: %d frames held (of %d asked) to stay within %d MB",
                         self._window, self.depth, self.max_bytes // 2**20)
        motion = self._motion(result)
        strays: list[Added] = []
        self._walk_born(result)
        if not result.fail_closed:
            jumps: list[Track] = []
            for track in result.tracks:
                if track.exempt or track.held_over:
                    continue
                if track.track_id not in self._seen:
                    self._seen.add(track.track_id)
                    self._born.append(track)
                else:
                    jumped, stray = self._seen_again(track, motion, camera)
                    if jumped:
                        jumps.append(track)  # it may have taken another face: walk back
                    if stray is not None:
                        strays.append(stray)
            if jumps:
                self._backtrack([], motion, jumps, camera)
        self._held.append(_Held(result, detections, original, motion=motion, camera=camera))
        for added in strays:  # where the face it was following should be now
            self._paint(self._held[-1], added)
        out = []
        while len(self._held) > self.window:
            out.append(self._leave())
        return out

    def _walk_born(self, later=None) -> None:
        """Walk back the tracks born in the newest held frame, from the frame before it;
        ``later`` (the result of the frame after their birth, when there is one) gives each
        one found again there its first motion, and the walk starts with it."""
        born, self._born = self._born, []
        if not born or not self._held:
            return
        now = {} if later is None or later.fail_closed else \
            {t.track_id: t for t in later.tracks if not t.held_over}
        steps: list[np.ndarray | None] = []
        for t in born:
            again = now.get(t.track_id)
            # the tracker's velocity after one more find is that find's move (the face's
            # own, where the picture's motion carried the track)
            v = None if again is None else np.asarray(again.velocity, np.float64)
            steps.append(None if v is None else -np.array([(v[0] + v[2]) / 2,
                                                           (v[1] + v[3]) / 2]))
        self._backtrack(born, skip=1, steps=steps)

    def _motion(self, result) -> np.ndarray | None:
        """The shared motion from the newest held frame to ``result``'s."""
        if not self._held or result.fail_closed or self._held[-1].result.fail_closed:
            return None
        before = {t.track_id: t.box for t in self._held[-1].result.tracks if not t.held_over}
        pairs = [(before[t.track_id], t.box) for t in result.tracks
                 if not t.held_over and t.track_id in before]
        if not pairs:
            return None
        prev, now = (np.asarray(x, np.float64).reshape(-1, 4) for x in zip(*pairs, strict=True))
        return shared_motion(prev, now)

    def finish(self, regions: Sequence[Region],
               start_threshold: Callable[[np.ndarray, int, int], float]) -> int:
        """At a file's end: seek faces in ``regions`` of the last frame and walk back each
        one that no track holds there, as a track born in that frame. Returns how many.

        The last frames have no later one in which a face entering them (from the frame's
        edge, in a pan) is found by its fine tile and walked back from; the first frame's
        edges are seen at the cover scale for the same reason. A found box needs
        ``start_threshold(box, width, height)`` (the tracker's rule for starting a track).
        """
        self._walk_born()
        if not regions or self.detect_crops is None or not self._held:
            return 0
        last = self._held[-1]
        if last.original is None or last.result.fail_closed:
            return 0
        try:
            dets = self.detect_crops(last.original, regions)
        except Exception as exc:  # noqa: BLE001 - the frame was detected as usual already
            log.debug("second pass: end-of-file detection failed: %s", exc)
            return 0
        h, w = last.original.shape[:2]
        boxes = dets.xyxy.astype(np.float64).reshape(-1, 4)
        # boxes that tracks and painted boxes hold there, and the faces found so far
        taken = [np.asarray(t.box, np.float64) for t in last.result.tracks]
        taken += [a.box for a in last.added]
        ids = [abs(int(t.track_id)) for fr in self._held for t in fr.result.tracks]
        next_id = max([*ids, *self._seen, 0]) + 1
        births: list[Track] = []
        for i in np.argsort(-dets.confidence, kind="stable"):
            box, score = boxes[i], float(dets.confidence[i])
            if not np.isfinite(box).all() or score < start_threshold(box, w, h):
                continue
            held = np.asarray(taken, np.float64).reshape(-1, 4)
            # a face a track (or a box painted there) already covers; a box far larger
            # than it (a hold-over grown over a crowd) covers it in this frame only
            near = _sizes(held) <= CLAIM_SIZE_RATIO * _sizes(box[None])[0]
            if len(held) and (_iou_matrix(box[None], held).max() >= CLAIMED_IOU
                              or (_inside(box, held) * near).max() >= 0.5):
                continue
            track = Track(track_id=next_id, box=box.astype(np.float32),
                          velocity=np.zeros(4, np.float32), score=score)
            next_id += 1
            births.append(track)
            taken.append(box)
        if not births:
            return 0
        for t in births:
            self._paint(last, Added(-t.track_id, np.asarray(t.box, np.float64), "detected",
                                    True))
        self._backtrack(births, skip=1)  # from the frame before, as for a birth there
        log.debug("second pass: %d face(s) found at the file's end, walked back", len(births))
        return len(births)

    def flush(self) -> list[tuple[object, list[Added]]]:
        """Every frame still held, oldest first."""
        self._walk_born()
        out = []
        while self._held:
            out.append(self._leave())
        return out

    def _leave(self) -> tuple[object, list[Added]]:
        """The oldest held frame, its added boxes painted (all at once: a crowd's walks
        add hundreds a frame)."""
        h = self._held.popleft()
        h.original = None
        # a box that lies within a face detected in that frame adds nothing to its mask (and
        # would turn a replaced face into the fail-closed mosaic)
        found = np.array([t.box for t in h.result.tracks if not t.held_over],
                         np.float64).reshape(-1, 4)
        paint = [a for a in h.added
                 if not len(found) or _inside(a.box, found).max() < WITHIN_FOUND]
        if paint:
            self.masker.apply(h.result.frame.image, [
                Track(track_id=a.track_id, box=a.box.astype(np.float32),
                      velocity=np.zeros(4, np.float32), score=0.0,
                      frames_since_seen=0 if a.found else 1) for a in paint])
        return h.result, h.added

    # -- backward ------------------------------------------------------------------------
    def _backtrack(self, births: list[Track], motion: np.ndarray | None = None,
                   jumps: Sequence[Track] = (), camera: CameraMotion | None = None,
                   skip: int = 0, steps: Sequence[np.ndarray | None] | None = None) -> None:
        """Walk back through the window with every track born in the newest frame at once,
        so that tracks born together share out the earlier detections, never one box twice.
        Tracks that ``jumps`` names walk back too, on the frames' own detections and their
        predictions only: their face was most often in view, and re-detecting in crops
        around each of them cost 4% more detector input on the real clips for no face
        more. ``camera``: the picture's measured motion into the newest frame. ``skip``: the
        births are in the ``skip``-th newest held frame (the walk starts before it);
        ``steps``: each birth's own motion per frame going back, where known."""
        steps = [None] * len(births) if steps is None else steps
        chains = [_Chain(t, step=st) for t, st in zip(births, steps, strict=True)]
        chains += [_Chain(t, seek=False) for t in jumps]
        newer = motion  # the picture's motion into the frame the walk comes from
        newer_cam = camera
        for k, held in enumerate(reversed(self._held), start=1):
            if k <= skip:  # the births' own frame and the frames after it
                newer, newer_cam = held.motion, held.camera
                continue
            k -= skip
            live = [c for c in chains if not c.done]
            if not live:
                break
            shared, newer = newer, held.motion
            cam, newer_cam = newer_cam, held.camera
            carried: list[np.ndarray | None] = [None] * len(live)
            if cam is not None:
                # measured: every face is carried back along it, and what is left of its
                # motion is its own (none for a face in a pan: the picture moved, not it)
                carried = _carry(live, cam.inverse())
                back = np.zeros(2)
            else:
                # a face whose own motion is not known yet moved as the picture did, if known
                back = None if shared is None else -shared
                for c in live:
                    c.path = None
            if held.result.fail_closed:
                continue  # already obscured whole
            preds = [c.predict(back) for c in live]
            # measured, the picture's motion still leaves a face's own unknown until a find
            # backs it: a face that runs across a still picture is searched for wide
            gates = [c.gate(self.gate, None if cam is not None and c.step is None else back)
                     for c in live]
            found = self._find_all(live, held, preds, gates, budget=cam is not None)
            for c, pred, box, moved in zip(live, preds, found, carried, strict=True):
                if box is not None:
                    step = c.step
                    shift = DOUBT_SHIFT if cam is None else MEASURED_DOUBT_SHIFT
                    off = bool(_norm_dist(pred[None], box[None])[0, 0] > shift)
                    doubtful = off and c.knows_motion(back)
                    # where it may be if this find is not it: as if unfound once more
                    c.misses += 1
                    unsure = c.unfound(pred, self.growth, self.max_growth, moved)
                    c.found(k, box)
                    c.confirmed = step is not None and not off
                    c.doubted = c.doubted or doubtful
                    self._paint(held, Added(-c.track_id, _smeared(box, c.step),
                                            "backtracked", True))
                    self.backtracked += 1
                    self._keep_path(held, c, box)
                    if doubtful:
                        # found off the motion's path: perhaps a neighbour. Cover both, and
                        # follow both further back (a fork seeks no crops of its own)
                        self._paint(held, Added(-c.track_id, unsure, "backtracked", False))
                        if c.seek:
                            chains.append(c.fork(k, pred, step))
                    continue
                grown = c.missed(pred, self.growth, self.max_growth, self.miss_limit,
                                 held.result.frame.size, back, moved)
                if grown is not None:
                    self._keep_path(held, c, grown)
                    self._paint(held, Added(-c.track_id, grown, "backtracked", False))
                    self.backtracked += 1

    def _keep_path(self, held: _Held, chain: _Chain, box: np.ndarray) -> None:
        """Where the picture's measured motion alone puts the chain's face is masked too
        when ``box`` (what the chain paints there) is off it: finds a little off each
        frame, or a hop to a neighbour, add up to another face."""
        path = chain.path
        if path is not None and not chain.forked and \
                float(_norm_dist(path[None], box[None])[0, 0]) > MEASURED_DOUBT_SHIFT:
            self._paint(held, Added(-chain.track_id, _grow(path, self.growth * 2),
                                    "backtracked", False))

    def _find_all(self, chains: list[_Chain], held: _Held, preds: list[np.ndarray],
                  gate_list: list[float], budget: bool = False) -> list[np.ndarray | None]:
        """Each chain's face in a held frame: that frame's own detection or one re-detected
        in a crop around its prediction. A box another track holds there is never taken,
        and chains claim candidates nearest first. ``budget``: the predictions follow the
        picture's measured motion, and crops cost at most ``CROP_BUDGET`` of the frame's
        pixels (the chains first in order get them; the rest keep their prediction)."""
        claimed = [np.asarray(t.box, np.float64) for t in held.result.tracks
                   if not t.held_over]
        claimed += [a.box for a in held.added if a.found]
        claimed_arr = np.asarray(claimed, np.float64).reshape(-1, 4)
        own = held.detections.xyxy.astype(np.float64) if held.detections is not None \
            and len(held.detections) else np.zeros((0, 4))
        pred_arr = np.asarray(preds, np.float64).reshape(-1, 4)
        gates = np.asarray(gate_list, np.float64)
        cands = own
        ok = _eligible(pred_arr, gates, cands, claimed_arr)
        n_own = len(own)
        if self.detect_crops is not None and held.original is not None:
            # a close crop first, for every chain: most faces moved little; only a face of
            # unknown motion not found there, one frame before its birth, gets the wide
            # (costly) search: a face missed there too was not there to be found
            # a chain with a candidate only beyond the close gate (in a crowd, most often
            # another face) is sought close first too
            close = _eligible(pred_arr, np.minimum(gates, self.gate), cands, claimed_arr)
            for wide in (False, True):
                lacking = ~(ok if wide else close).any(axis=1)
                needy = [i for i in np.nonzero(lacking)[0] if chains[i].seek and (
                         not wide or (gates[i] > self.gate and chains[i].misses == 0))]
                sought = [(i, c) for i, c in ((i, self._crop(held.original.shape, preds[i],
                                                             wide)) for i in needy)
                          if c is not None]
                crops = [c for _, c in sought]
                if budget:
                    h, w = held.original.shape[:2]
                    crops = _within(crops, CROP_BUDGET * w * h - held.crop_pixels)
                    # a chain the budget left without its crop keeps the close gate: the
                    # wide one is for a face searched for around it, and without that
                    # search it takes the nearest of a crowd's other faces
                    for i, _ in sought[len(crops):]:
                        gates[i] = min(gates[i], self.gate)
                    if len(crops) < len(sought):
                        ok = _eligible(pred_arr, gates, cands, claimed_arr)
                held.crop_pixels += sum(c.input_pixels for c in crops)
                extra = self._redetect(held.original, crops)
                if len(extra):
                    cands = np.concatenate([cands, extra])
                    ok = _eligible(pred_arr, gates, cands, claimed_arr)
        out: list[np.ndarray | None] = [None] * len(chains)
        if not ok.any():
            return out
        dist = _norm_dist(pred_arr, cands)
        same = _iou_matrix(cands, cands) >= CLAIMED_IOU
        ci, di = np.nonzero(ok)
        taken = np.zeros(len(cands), bool)
        # nearest pairs first, so two chains never collapse onto one face; forks (paths a
        # doubtful find left) last, so they never take a candidate from a chain
        forked = np.array([c.forked for c in chains])
        for k in np.lexsort((dist[ci, di], forked[ci])):
            c, d = int(ci[k]), int(di[k])
            if out[c] is not None or (same[d] & taken).any():
                continue
            out[c] = cands[d].copy()
            taken[d] = True
            if d >= n_own:
                self.redetected += 1
        return out

    def _crop(self, shape: tuple[int, ...], pred: np.ndarray, wide: bool) -> Region | None:
        """The crop of a frame of ``shape`` in which to seek a face predicted at ``pred``
        (None when too little of it is inside the frame)."""
        size = _size(pred)
        h, w = shape[:2]
        half = size * (1.25 + (self.gate * FIRST_SEARCH if wide else 0.25))
        cx, cy = _centre(pred)
        x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
        x1, y1 = min(w, int(np.ceil(cx + half))), min(h, int(np.ceil(cy + half)))
        if x1 - x0 < 4 or y1 - y0 < 4:
            return None
        scale = quantized_scale(BACKTRACK_FACE_PX / size)
        return Region(x0, y0, x1, y1, scale, "refine")

    def _redetect(self, original: np.ndarray, crops: list[Region]) -> np.ndarray:
        """Boxes found in ``crops`` of ``original``, in one detector call (none on failure)."""
        if not crops:
            return np.zeros((0, 4))
        try:
            dets = self.detect_crops(original, crops)
        except Exception as exc:  # noqa: BLE001 - a failed crop falls back to the grown box
            log.debug("second pass: crop detection failed: %s", exc)
            return np.zeros((0, 4))
        return dets.xyxy.astype(np.float64)

    # -- gaps ----------------------------------------------------------------------------
    def _seen_again(self, track: Track, motion: np.ndarray | None = None,
                    camera: CameraMotion | None = None) -> tuple[bool, Added | None]:
        """``track`` is detected again: interpolate its box into the frames it was held.

        Returns whether it was found far from where the picture's motion (``motion``: into
        the newest frame) would have taken it since it was last detected, held or not (then
        it is walked back as if born), and its hold-over carried into the newest frame when
        the box found there is off it (the box may be a neighbour's: the newest frame masks
        both).
        """
        gap: list[tuple[_Held, Track]] = []
        earlier = None
        # the picture's motion since it was last seen, None where a frame's is not known
        moved = None if motion is None else np.asarray(motion, np.float64)
        cams = [camera]  # the measured motions since, newest first
        for held in reversed(self._held):
            t = next((x for x in held.result.tracks if x.track_id == track.track_id), None)
            if t is None:
                return False, None  # the track is younger than the window
            if not t.held_over:
                earlier = np.asarray(t.box, np.float64)
                break
            gap.append((held, t))
            moved = None if moved is None or held.motion is None else moved + held.motion
            cams.append(held.camera)
        if earlier is None:
            return False, None
        later = np.asarray(track.box, np.float64)
        jumped = False
        since = chain(cams[::-1])
        if since is not None or moved is not None:
            expected = since.boxes(earlier) if since is not None else moved_box(earlier, moved)
            jumped = bool(_norm_dist(expected[None], later[None])[0, 0] > JUMP)
        if not gap:
            return jumped, None
        last = np.asarray(gap[0][1].box, np.float64)  # its hold-over box one frame before
        if camera is not None:
            hold = camera.boxes(last)
        else:
            step = motion if motion is not None else \
                _centre(np.asarray(track.velocity, np.float64))
            hold = moved_box(last, step)
        stray = None
        if np.hypot(*(_centre(hold) - _centre(later))) / _size(later) > REFOUND_SHIFT:
            stray = Added(-track.track_id, hold, "held", False)
        n = len(gap)
        for k, (held, _) in enumerate(gap, start=1):  # k frames before ``later``
            t = k / (n + 1)
            box = later + (earlier - later) * t
            box = _grow(box, 0.12 * min(k, n + 1 - k))
            self._paint(held, Added(-track.track_id, box, "interpolated", False))
            self.interpolated += 1
        return jumped, stray

    def _paint(self, held: _Held, added: Added) -> None:
        """Mask ``added`` in ``held``'s frame (painted when the frame leaves)."""
        held.added.append(added)
