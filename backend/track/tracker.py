"""Face tracker: association, motion prediction, hold-over growth and lag-free smoothing.

The tracker turns per-frame ``Detections`` into ``Track``s with stable ids. Its one promise
is coverage: the box it returns for a detected face always contains that detection, and a
face that is not detected for a few frames keeps a box that moves along its velocity and
grows, so a missed detection or motion blur does not expose it.

Boxes are xyxy pixels of the frame, float32; they are never clipped to the frame (the
masker clips). The tracker is thread-safe: the compose thread calls ``update``/``predict``
while the UI thread may call ``set_exempt``/``track_at``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from backend.types import CameraMotion, Detections, Track
from config.schema import TrackerSettings

# A detection may continue a track when its centre lies within this many box sizes of
# the track's predicted centre: a face moving more than its width per frame keeps its id.
CENTER_GATE = 2.0
# The gate widens by this many box sizes per frame the track has gone unseen.
CENTER_GATE_PER_MISSED_FRAME = 0.5
# A track carried along the picture's measured motion since it was last seen is where its
# own motion puts it, to within a fraction of its size: its gate is this narrow (and widens
# this much a frame unseen), so a held face in a crowd never takes its neighbour's box.
CARRIED_GATE = 0.75
CARRIED_GATE_PER_MISSED_FRAME = 0.25
# Detections whose size (sqrt of area) differs from the track's by more than this factor
# only continue it through IoU, never through centre distance.
MAX_SIZE_RATIO = 2.0
# An exempt (shown) track continues only on a close match, so that when its face leaves,
# a bystander appearing nearby starts a new, masked track instead of inheriting the flag.
EXEMPT_CENTER_GATE = 0.5
EXEMPT_MIN_IOU = 0.3
# A weak detection (under the start threshold) that overlaps the track's predicted face by
# less than this does not move the track: it is masked together with the held-over box.
# One that does moves the track, and is still masked together with the held-over box.
# A face leaving the frame often scores weakly on a fragment elsewhere, which would
# otherwise drag the track, and its mask, off the face.
WEAK_MIN_IOU = 0.3
# A track carried along the picture's measured motion every frame since it was last
# detected is held this many times ``hold_frames``: its box stays on its face (a dimmed
# crowd's faces fade from the detector for longer than a blurred one's), and a face that
# did leave costs a mask where it was a little longer, never a leak.
CARRIED_HOLD = 3
# Velocity adapts at least this fast, so prediction follows a change of direction even
# when box smoothing is strong.
MAX_VELOCITY_SMOOTHING = 0.5
# A face cut by the frame's edge shows part of itself and scores lower for it (real sweeps:
# 0.18-0.21 where whole faces score 0.3-0.9), and the network's box for it reaches past the
# edge; such a box may start a track from this share of the start threshold. Only boxes past
# the edge: boxes merely near it (within 15% of their size) found 3 more faces in the real
# clips but started so many extra tracks that the run was 6% slower.
EDGE_START_SHARE = 0.6


@dataclass(slots=True)
class _State:
    """Internal state of one track (float64 boxes, xyxy)."""

    track_id: int
    raw: np.ndarray  # last detected box
    smooth: np.ndarray  # smoothed box at the last detection
    shown: np.ndarray  # box returned at the last detection: union of smooth and raw
    velocity: np.ndarray  # per-frame change of the box (4,)
    box: np.ndarray  # box for the current frame (detected, or predicted and grown)
    score: float
    age: int = 1
    frames_since_seen: int = 0
    hits: int = 1
    exempt: bool = False
    origin: int = 0
    landmarks: np.ndarray | None = None  # (5, 2) of the last detection, frame pixels
    # the frame's shared motion summed over the frames since the last detection (its own
    # velocity's where none was measured), and whether one was measured
    drift: np.ndarray = field(default_factory=lambda: np.zeros(2))
    drifted: bool = False
    # whether the picture's motion was measured for every frame since the last detection
    carried: bool = True

    def predicted_core(self) -> np.ndarray:
        """Where the face itself is expected now: the last detection, its centre moved
        along the velocity, its size kept (a face's size barely changes in a few frames;
        extrapolating a jittery box's corners can turn it inside out, and the track then
        takes a box far off its face)."""
        return moved_box(self.raw, self.own_drift())

    def own_drift(self) -> np.ndarray:
        """How far its own velocity moved its centre since the last detection (2,)."""
        return np.multiply(_centre_velocity(self.velocity), self.frames_since_seen)

    def snapshot(self) -> Track:
        return Track(
            track_id=self.track_id,
            box=self.box.astype(np.float32),
            velocity=self.velocity.astype(np.float32),
            score=self.score,
            age=self.age,
            frames_since_seen=self.frames_since_seen,
            hits=self.hits,
            exempt=self.exempt,
            origin=self.origin,
            landmarks=None if self.landmarks is None else self.landmarks.astype(np.float32),
        )


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (n, 4) with every box in ``b`` (m, 4) -> (n, m)."""
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


# Extra reach of a held-over box ahead of its face's motion, in per-frame motions per frame.
LEAD_REACH = 1.0
# A held-over box spans at most this many times its face's size (and its reach ahead half
# that more): unbounded, a jittery box's racing corners blacked out whole frames of a zoom.
# Tighter (3x) leaked faces lost in the last frames of real sweeps and dimmed clips.
HOLD_MAX_SCALE = 5.0
# The frame's shared motion (a camera pan or sweep) is measured when at least this many
# tracks seen in the previous frame are detected again and most of them moved alike ...
SHARED_MIN_TRACKS = 2
# ... to within this share of their face size (or SHARED_MIN_PX) of the median motion.
SHARED_SPREAD = 0.3
SHARED_MIN_PX = 4.0


def shared_motion(prev: np.ndarray, now: np.ndarray) -> np.ndarray | None:
    """The motion most faces share between two frames (median of the centres' moves), or
    None when fewer than ``SHARED_MIN_TRACKS`` faces agree on it (no camera motion to tell).

    ``prev``, ``now``: (n, 4) xyxy boxes of the same faces in the previous and this frame.
    """
    if len(prev) < SHARED_MIN_TRACKS:
        return None
    moves = (now[:, :2] + now[:, 2:]) / 2 - (prev[:, :2] + prev[:, 2:]) / 2
    med = np.median(moves, axis=0)
    size = np.sqrt(np.clip((now[:, 2] - now[:, 0]) * (now[:, 3] - now[:, 1]), 1.0, None))
    agree = np.hypot(*(moves - med).T) <= np.maximum(SHARED_SPREAD * size, SHARED_MIN_PX)
    if agree.sum() < SHARED_MIN_TRACKS or agree.sum() * 2 <= len(prev):
        return None
    return moves[agree].mean(axis=0)


def union_box(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest xyxy box that holds boxes ``a`` and ``b``."""
    return np.concatenate([np.minimum(a[:2], b[:2]), np.maximum(a[2:], b[2:])])


def moved_box(box: np.ndarray, step: np.ndarray) -> np.ndarray:
    """``box`` (4,) with its centre moved by ``step`` (2,), size kept."""
    return box + np.concatenate([step, step])


def overlaps_frame(box: np.ndarray, width: float, height: float) -> bool:
    """Whether xyxy ``box`` (4,) has any part inside a ``width`` x ``height`` frame."""
    return bool(box[2] > 0 and box[3] > 0 and box[0] < width and box[1] < height)


def _centre_velocity(v: np.ndarray) -> tuple[float, float]:
    """The per-frame motion of a box's centre, from the box's velocity (4,)."""
    return (v[0] + v[2]) / 2, (v[1] + v[3]) / 2


def _hold(state: _State, growth: float, shared: np.ndarray | None = None) -> np.ndarray:
    """Advance a track not detected this frame: add this frame's motion (``shared``, the
    picture's, else its own) to its drift; return its held-over box (also where the shared
    motion took it, once one was measured)."""
    state.drift = state.drift + (shared if shared is not None
                                 else _centre_velocity(state.velocity))
    state.drifted |= shared is not None
    box = _grown_box(state, growth)
    if state.drifted:  # the camera moved it, or it moved on its own: both
        box = union_box(box, _grown_box(state, growth, True))
    return box


# A held track that takes a detection more than this many face sizes from the face it
# predicted leaves a ghost: a copy held on where the face was (never mask less).
GHOST_JUMP = 1.0


def _jumped(state: _State, box: np.ndarray) -> bool:
    """Whether ``box`` lies more than ``GHOST_JUMP`` face sizes from the face ``state``
    predicts (its own motion and the picture's drift both considered)."""
    size = max(float(np.sqrt(max((box[2] - box[0]) * (box[3] - box[1]), 1.0))),
               float(np.sqrt(max((state.raw[2] - state.raw[0]) *
                                 (state.raw[3] - state.raw[1]), 1.0))))
    centre = (box[:2] + box[2:]) / 2
    return all(float(np.hypot(*(centre - (b[:2] + b[2:]) / 2))) > GHOST_JUMP * size
               for b in (state.predicted_core(), moved_box(state.raw, state.drift)))


def _gone(state: _State, width: float, height: float) -> bool:
    """Whether a held track's face has left the frame: its last shown box, moved by its own
    velocity and by the picture's motion (``drift``), lies wholly outside the frame both
    ways."""
    return not any(overlaps_frame(moved_box(state.shown, step), width, height)
                   for step in (state.own_drift(), state.drift))


def _grown_box(state: _State, growth: float, shared: bool = False) -> np.ndarray:
    """The held-over box: the last shown box moved along velocity (``shared``: by the
    frames' shared motion since, ``drift``, instead), then grown.

    The centre moves along the velocity; the size never shrinks. Per unseen frame each
    side moves out by ``growth / 2`` of the box size (so the size grows by ``growth``),
    plus any growth of the box itself, plus the largest per-frame speed on that axis, so
    a face that speeds up, stops or turns during the gap stays inside; the side it moves
    towards reaches out by ``LEAD_REACH`` times its motion more. The box spans at most
    ``HOLD_MAX_SCALE`` times the shown box, its reach ahead at most half that more.
    """
    k = state.frames_since_seen
    v = state.velocity
    w = state.shown[2] - state.shown[0]
    h = state.shown[3] - state.shown[1]
    mx, my = state.drift if shared else state.own_drift()
    cx = (state.shown[0] + state.shown[2]) / 2 + mx
    cy = (state.shown[1] + state.shown[3]) / 2 + my
    speed_x = max(abs(v[0]), abs(v[2]))
    speed_y = max(abs(v[1]), abs(v[3]))
    half_w = min(w / 2 + (0.5 * growth * w + max(v[2] - v[0], 0.0) / 2 + speed_x) * k,
                 HOLD_MAX_SCALE * w / 2)
    half_h = min(h / 2 + (0.5 * growth * h + max(v[3] - v[1], 0.0) / 2 + speed_y) * k,
                 HOLD_MAX_SCALE * h / 2)
    box = np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h])
    # a fast face is most often lost where it speeds up (a camera sweep): the side it moves
    # towards reaches out by its speed once more per frame, the trailing side does not
    vx = float(np.clip(mx * LEAD_REACH, -HOLD_MAX_SCALE * w / 2, HOLD_MAX_SCALE * w / 2))
    vy = float(np.clip(my * LEAD_REACH, -HOLD_MAX_SCALE * h / 2, HOLD_MAX_SCALE * h / 2))
    box[2 if vx > 0 else 0] += vx
    box[3 if vy > 0 else 1] += vy
    return box


class Tracker:
    """Follows faces across frames and says where to mask in each one.

    Call ``update`` for a frame that has a detection result and ``predict`` for a frame
    that has none yet (the detector runs slower than the frames). Both return the tracks
    to mask in that frame, sorted by id, as fresh ``Track`` objects (the caller may keep
    them). Held-over and predicted tracks have ``frames_since_seen > 0``.
    """

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self._settings = settings or TrackerSettings()
        self._lock = threading.Lock()
        self._states: list[_State] = []
        self._next_id = 1
        self._new_track_threshold = 0.0
        # a stream's cut faces are entering or leaving: no other frame may show them whole.
        # A still image sets 1.0: on the real photos the rule found no face more (boxes
        # near the edge, an earlier variant, also masked 0.16% -> 0.71% of the picture)
        self.edge_start_share = EDGE_START_SHARE

    # -- settings and state -----------------------------------------------------------
    @property
    def settings(self) -> TrackerSettings:
        """The settings in use."""
        return self._settings

    def apply_settings(self, settings: TrackerSettings) -> None:
        """Use new settings from the next frame on; tracks and ids are kept."""
        with self._lock:
            self._settings = settings

    def reset(self) -> None:
        """Forget every track (a new stream or a seek). Ids keep counting up."""
        with self._lock:
            self._states.clear()

    @property
    def tracks(self) -> list[Track]:
        """The current tracks, sorted by id (snapshots)."""
        with self._lock:
            return [s.snapshot() for s in self._states]

    def set_exempt(self, track_id: int, exempt: bool) -> bool:
        """Show (exempt=True) or mask again one track; False when no such track exists.

        The flag lives as long as the track: once it is dropped, a face found again starts
        a new track, which is never exempt. An exempt track continues only on a close
        match, so a different face appearing nearby never inherits the flag.
        """
        with self._lock:
            for s in self._states:
                if s.track_id == track_id:
                    s.exempt = bool(exempt)
                    return True
        return False

    def track_at(self, x: float, y: float, scale: float = 1.0) -> Track | None:
        """Return the track whose current box (scaled by ``scale`` about its centre) holds (x, y).

        When several do, the smallest box wins (a face in front of a larger one). Pass the
        mask scale so a click anywhere on a visible mask finds its track.
        """
        best: tuple[float, _State] | None = None
        with self._lock:
            for s in self._states:
                cx, cy = (s.box[0] + s.box[2]) / 2, (s.box[1] + s.box[3]) / 2
                hw, hh = (s.box[2] - s.box[0]) * scale / 2, (s.box[3] - s.box[1]) * scale / 2
                if abs(x - cx) <= hw and abs(y - cy) <= hh:
                    area = 4 * hw * hh
                    if best is None or area < best[0]:
                        best = (area, s)
            return best[1].snapshot() if best else None

    @property
    def new_track_threshold(self) -> float:
        """Minimum score for an unmatched detection to start a track (matched ones need none)."""
        return self._new_track_threshold

    @new_track_threshold.setter
    def new_track_threshold(self, value: float) -> None:
        self._new_track_threshold = float(value)

    # -- per frame ----------------------------------------------------------------------
    def predict(self, frame_size: tuple[int, int],
                motion: CameraMotion | None = None) -> list[Track]:
        """Advance every track one frame without a detection result.

        Boxes are carried along the picture's ``motion`` since the last frame (when
        measured), move along their velocity and grow as during hold-over;
        ``frames_since_seen`` increments. No track is dropped here: a missing result is not
        evidence that a face left. ``frame_size`` is (width, height); boxes are not clipped
        to it.
        """
        del frame_size  # boxes are not clipped; the argument mirrors update()
        with self._lock:
            growth = self._settings.growth_per_frame
            self._carry(motion)
            for s in self._states:
                s.age += 1
                s.frames_since_seen += 1
                s.box = _hold(s, growth)
            return [s.snapshot() for s in self._states]

    def update(self, dets: Detections, frame_size: tuple[int, int],
               motion: CameraMotion | None = None) -> list[Track]:
        """Advance every track one frame with this frame's detections.

        ``dets`` are xyxy boxes in pixels of a frame of ``frame_size`` (width, height).
        ``motion``: how the picture moved since the last frame (``MotionEstimator``), or
        None when not known. Every track is first carried along it, so its velocity is its
        face's own motion in the picture and a pan or zoom costs it nothing.
        Rows with NaN/inf or degenerate boxes, or boxes wholly outside the frame, are
        ignored. Matched tracks take the detection (the returned box always contains it),
        except a weak one (under ``new_track_threshold``) far from the predicted face, which
        is masked together with the held-over box without moving the track;
        unmatched detections start new tracks; unmatched tracks are held over (moved and
        grown, to at most ``HOLD_MAX_SCALE`` face sizes) and dropped once unseen for more
        than ``hold_frames`` frames, or once moved wholly out of the frame.
        """
        width, height = frame_size
        dets = dets[dets.is_valid(int(width), int(height))]
        boxes = dets.xyxy.astype(np.float64)
        with self._lock:
            st = self._settings
            self._carry(motion)
            for s in self._states:
                s.age += 1
                s.frames_since_seen += 1
            pairs, iou = self._associate(boxes)
            # faces seen last frame and confidently now: how the picture moved
            moved = [(ti, di) for ti, di in pairs if self._states[ti].frames_since_seen == 1
                     and dets.confidence[di] >= self.new_track_threshold]
            shared = shared_motion(
                np.array([self._states[ti].raw for ti, _ in moved]).reshape(-1, 4),
                boxes[[di for _, di in moved]].reshape(-1, 4))
            matched_dets = set()
            weak: dict[int, np.ndarray] = {}  # track -> weak box that may not move it
            ghosts: list[_State] = []
            for ti, di in pairs:
                s, score = self._states[ti], float(dets.confidence[di])
                matched_dets.add(di)
                if score < self.new_track_threshold and iou[ti, di] < WEAK_MIN_IOU:
                    weak[ti] = boxes[di]
                    continue
                if s.frames_since_seen > 1 and _jumped(s, boxes[di]):
                    # a held track found far from where it was held may have taken another
                    # face (or a blurred face's stray): its hold goes on where it was
                    ghosts.append(self._ghost(s))
                held = _grown_box(s, st.growth_per_frame) if score < self.new_track_threshold \
                    else None
                self._absorb(s, boxes[di], score, int(dets.origin[di]), dets.landmarks[di])
                if held is not None:  # a weak detection may be a fragment: never mask less
                    s.box = union_box(s.box, held)  # than hold-over would (shown stays as is)
            matched_tracks = {ti for ti, _ in pairs} - set(weak)
            kept: list[_State] = []
            for ti, s in enumerate(self._states):
                if ti not in matched_tracks:
                    if s.frames_since_seen > st.hold_frames * (CARRIED_HOLD if s.carried
                                                                else 1):
                        continue
                    s.box = _hold(s, st.growth_per_frame, shared)
                    if _gone(s, width, height):
                        continue  # it left the picture: nothing of it is there to mask
                    if ti in weak:
                        s.box = union_box(s.box, weak[ti])
                kept.append(s)
            for g in ghosts:
                g.box = _hold(g, st.growth_per_frame, shared)
                kept.append(g)
            for di in range(len(boxes)):
                # weak detections may only continue a track (a blurred face keeps its
                # mask); starting one takes a confident detection, so noise stays unmasked
                if di not in matched_dets and \
                        dets.confidence[di] >= self.start_threshold(boxes[di], width, height):
                    kept.append(self._new_state(boxes[di], float(dets.confidence[di]),
                                                int(dets.origin[di]), dets.landmarks[di]))
            kept.sort(key=lambda s: s.track_id)
            self._states = kept
            return [s.snapshot() for s in self._states]

    # -- internals ----------------------------------------------------------------------
    def _carry(self, motion: CameraMotion | None) -> None:
        """Move every track's boxes (and landmarks) along the picture's ``motion``; its
        velocity is scaled by the zoom (it is the face's own motion in the picture)."""
        if motion is None or not self._states:
            for s in self._states:
                s.carried = False
            return
        zoom = motion.scale
        moved = motion.boxes(np.array([(s.raw, s.smooth, s.shown, s.box)
                                       for s in self._states], np.float64))
        for s, (raw, smooth, shown, box) in zip(self._states, moved, strict=True):
            s.raw, s.smooth, s.shown, s.box = raw, smooth, shown, box
            s.velocity = s.velocity * zoom
            s.drift = s.drift * zoom
            if s.landmarks is not None:
                s.landmarks = motion.points(s.landmarks)

    def start_threshold(self, box: np.ndarray, width: int, height: int) -> float:
        """Score a detection needs to start a track: ``new_track_threshold``, less for a
        box that reaches past the frame's edge (``edge_start_share`` of it)."""
        if box[0] < 0 or box[1] < 0 or box[2] > width or box[3] > height:
            return self.edge_start_share * self.new_track_threshold
        return self.new_track_threshold

    def _ghost(self, s: _State) -> _State:
        """A copy of held track ``s`` under a new id, held on as ``s`` would have been
        (never exempt, without landmarks: the face it holds may be another one)."""
        g = _State(track_id=self._next_id, raw=s.raw.copy(), smooth=s.smooth.copy(),
                   shown=s.shown.copy(), velocity=s.velocity.copy(), box=s.box.copy(),
                   score=s.score, age=s.age, frames_since_seen=s.frames_since_seen,
                   hits=s.hits, origin=s.origin, drift=s.drift.copy(), drifted=s.drifted,
                   carried=s.carried)
        self._next_id += 1
        return g

    def _new_state(self, box: np.ndarray, score: float, origin: int = 0,
                   landmarks: np.ndarray | None = None) -> _State:
        state = _State(
            track_id=self._next_id,
            raw=box.copy(),
            smooth=box.copy(),
            shown=box.copy(),
            velocity=np.zeros(4),
            box=box.copy(),
            score=score,
            origin=origin,
            landmarks=None if landmarks is None else np.array(landmarks, np.float64),
        )
        self._next_id += 1
        return state

    def _associate(self, boxes: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray]:
        """Greedy matching of tracks to detections on IoU plus centre distance.

        Returns the (track, detection) pairs and the IoU of every predicted face with
        every detection, (tracks, detections).
        """
        if not self._states or not len(boxes):
            return [], np.zeros((len(self._states), len(boxes)))
        core = np.array([s.predicted_core() for s in self._states])
        missed = np.array([s.frames_since_seen for s in self._states], dtype=np.float64)
        iou = _iou_matrix(core, boxes)
        tc = (core[:, :2] + core[:, 2:]) / 2
        dc = (boxes[:, :2] + boxes[:, 2:]) / 2
        dist = np.linalg.norm(tc[:, None, :] - dc[None, :, :], axis=2)
        t_wh = core[:, 2:] - core[:, :2]
        d_wh = boxes[:, 2:] - boxes[:, :2]
        scale = np.maximum(t_wh.max(axis=1)[:, None], d_wh.max(axis=1)[None, :])
        norm_dist = dist / np.maximum(scale, 1e-6)
        t_size = np.sqrt(np.clip(t_wh.prod(axis=1), 1e-12, None))
        d_size = np.sqrt(np.clip(d_wh.prod(axis=1), 1e-12, None))
        ratio = np.maximum(t_size[:, None] / d_size[None, :], d_size[None, :] / t_size[:, None])
        exempt = np.array([s.exempt for s in self._states])[:, None]
        carried = np.array([s.carried for s in self._states])[:, None]
        gate = np.where(carried,
                        CARRIED_GATE + CARRIED_GATE_PER_MISSED_FRAME * (missed[:, None] - 1),
                        CENTER_GATE + CENTER_GATE_PER_MISSED_FRAME * (missed[:, None] - 1))
        gate = np.where(exempt, EXEMPT_CENTER_GATE, gate)
        thr = self._settings.iou_threshold
        min_iou = np.where(exempt, max(thr, EXEMPT_MIN_IOU), thr)
        ok = ((iou > 0) & (iou >= min_iou)) | ((norm_dist <= gate) & (ratio <= MAX_SIZE_RATIO))
        cost = (1.0 - iou) + norm_dist
        ti, di = np.nonzero(ok)
        order = np.argsort(cost[ti, di], kind="stable")
        used_t: set[int] = set()
        used_d: set[int] = set()
        pairs: list[tuple[int, int]] = []
        for k in order:
            t, d = int(ti[k]), int(di[k])
            if t in used_t or d in used_d:
                continue
            used_t.add(t)
            used_d.add(d)
            pairs.append((t, d))
        return pairs, iou

    def _absorb(self, s: _State, box: np.ndarray, score: float, origin: int = 0,
                landmarks: np.ndarray | None = None) -> None:
        """Update a matched track with its detection ``box`` (found by pass ``origin``)."""
        a = self._settings.smoothing
        k = s.frames_since_seen  # frames since the previous detection, >= 1
        delta = (box - s.raw) / k
        if s.hits == 1:
            s.velocity = delta  # no history yet: take the observed motion as is
        else:
            av = min(a, MAX_VELOCITY_SMOOTHING)
            s.velocity = av * s.velocity + (1.0 - av) * delta
        prior = s.smooth + s.velocity * k  # predicted smoothed box, so smoothing adds no lag
        s.smooth = a * prior + (1.0 - a) * box
        # never lag: the returned box always contains the raw detection
        s.shown = np.concatenate(
            [np.minimum(s.smooth[:2], box[:2]), np.maximum(s.smooth[2:], box[2:])]
        )
        s.raw = box.copy()
        s.box = s.shown.copy()
        s.score = score
        s.origin = origin
        s.landmarks = None if landmarks is None else np.array(landmarks, np.float64)
        s.hits += 1
        s.frames_since_seen = 0
        s.drift = np.zeros(2)
        s.drifted = False
        s.carried = True
