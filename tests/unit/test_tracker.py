"""Tracker: ids, fast motion, hold-over growth, lag-free smoothing, prediction, exemption."""

from __future__ import annotations

import numpy as np
import pytest

from backend.track import Tracker
from backend.track.tracker import HOLD_MAX_SCALE, LEAD_REACH
from backend.types import Detections, Track
from config.schema import TrackerSettings

FRAME = (1280, 720)


def dets(*boxes: tuple[float, float, float, float]) -> Detections:
    """Detections with score 0.9 for each xyxy box (landmarks unused by the tracker)."""
    return Detections(
        xyxy=np.array(boxes, np.float32).reshape(-1, 4),
        landmarks=np.zeros((len(boxes), 5, 2), np.float32),
        confidence=np.full(len(boxes), 0.9, np.float32),
    )


def moved(box: tuple[float, ...], dx: float, dy: float) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    return (x1 + dx, y1 + dy, x2 + dx, y2 + dy)


def contains(outer: np.ndarray, inner: tuple[float, ...] | np.ndarray) -> bool:
    o = np.asarray(outer, np.float64)
    i = np.asarray(inner, np.float64)
    return bool(o[0] <= i[0] and o[1] <= i[1] and o[2] >= i[2] and o[3] >= i[3])


def only(tracks: list[Track]) -> Track:
    assert len(tracks) == 1, tracks
    return tracks[0]


START = (300.0, 200.0, 360.0, 280.0)  # 60 x 80 face


@pytest.mark.parametrize(
    "dx, dy, smoothing",
    [
        (0, 0, 0.5),
        (5, 0, 0.5),
        (0, -7, 0.5),
        (12, 9, 0.0),
        (-20, 15, 0.95),
    ],
)
def test_id_persists_and_box_contains_detection(dx: float, dy: float, smoothing: float) -> None:
    tr = Tracker(TrackerSettings(smoothing=smoothing))
    for i in range(12):
        box = moved(START, dx * i, dy * i)
        t = only(tr.update(dets(box), FRAME))
        assert t.track_id == 1
        assert t.frames_since_seen == 0 and not t.held_over
        assert contains(t.box, box)
        assert t.box.dtype == np.float32 and t.box.shape == (4,)


@pytest.mark.parametrize(
    "dx, dy",
    [
        (90, 0),  # 1.5 x the width per frame, to the right
        (-90, 0),
        (0, 90),  # 1.5 x the width down
        (0, -90),
    ],
)
def test_fast_jump_keeps_id(dx: float, dy: float) -> None:
    tr = Tracker()
    start = (100.0 if dx >= 0 else 1100.0, 100.0 if dy >= 0 else 600.0)
    start = (start[0], start[1], start[0] + 60.0, start[1] + 80.0)
    for i in range(6):
        box = moved(start, dx * i, dy * i)
        t = only(tr.update(dets(box), FRAME))
        assert t.track_id == 1, f"frame {i}: new id for a fast face"
        assert contains(t.box, box)


@pytest.mark.parametrize("dx, dy, missed", [(0, 0, 1), (10, 0, 1), (-15, 8, 2), (25, 25, 3)])
def test_missed_frames_hold_and_grow_over_the_face(
    dx: float, dy: float, missed: int
) -> None:
    tr = Tracker(TrackerSettings(hold_frames=8))
    for i in range(5):
        last = only(tr.update(dets(moved(START, dx * i, dy * i)), FRAME))
    for k in range(1, missed + 1):
        t = only(tr.update(Detections.empty(), FRAME))
        assert t.track_id == last.track_id
        assert t.held_over and t.frames_since_seen == k
        where_face_is = moved(START, dx * (4 + k), dy * (4 + k))
        assert contains(t.box, where_face_is)
        w_prev, w_now = last.box[2] - last.box[0], t.box[2] - t.box[0]
        assert w_now > w_prev, "held-over box must grow"
        last = t
    # found again: same id, detected again
    back = only(tr.update(dets(moved(START, dx * (5 + missed), dy * (5 + missed))), FRAME))
    assert back.track_id == 1 and not back.held_over


@pytest.mark.parametrize("hold", [0, 1, 3, 8])
def test_dropped_after_hold_frames(hold: int) -> None:
    tr = Tracker(TrackerSettings(hold_frames=hold))
    tr.update(dets(START), FRAME)
    for k in range(hold):
        assert only(tr.update(Detections.empty(), FRAME)).frames_since_seen == k + 1
    assert tr.update(Detections.empty(), FRAME) == []
    assert tr.tracks == []


@pytest.mark.parametrize("smoothing", [0.0, 0.3, 0.5, 0.8, 0.95])
def test_smoothing_never_lags_behind_the_detection(smoothing: float) -> None:
    rng = np.random.default_rng(7)
    tr = Tracker(TrackerSettings(smoothing=smoothing))
    x, y, w, h, vx = 200.0, 300.0, 70.0, 90.0, 0.0
    for i in range(60):
        vx += 1.5 if i < 30 else -3.0  # accelerate, then reverse hard
        x += vx + rng.normal(0, 4)
        y += rng.normal(0, 4)
        w = max(20.0, w + rng.normal(0, 3))
        h = max(20.0, h + rng.normal(0, 3))
        box = (x, y, x + w, y + h)
        t = only(tr.update(dets(box), FRAME))
        assert t.track_id == 1
        assert contains(t.box, np.array(box, np.float32)), (i, t.box, box)


def test_smoothing_steadies_a_jittery_box() -> None:
    rng = np.random.default_rng(1)
    raw_widths, smooth_widths = [], []
    tr = Tracker(TrackerSettings(smoothing=0.8))
    for _ in range(40):
        j = rng.normal(0, 3, 4)
        box = tuple(np.array(START) + j)
        t = only(tr.update(dets(box), FRAME))
        raw_widths.append(box[2] - box[0])
        smooth_widths.append(float(t.box[2] - t.box[0]))
    # the union with the raw box keeps it at least as large, and it moves less than raw
    assert np.std(np.diff(smooth_widths)) < np.std(np.diff(raw_widths))


@pytest.mark.parametrize("dx, dy", [(0, 0), (8, 0), (-6, 4), (30, -12)])
def test_predict_moves_along_velocity_and_grows(dx: float, dy: float) -> None:
    tr = Tracker(TrackerSettings(hold_frames=2))
    for i in range(4):
        last = only(tr.update(dets(moved(START, dx * i, dy * i)), FRAME))
    c0 = (last.box[:2] + last.box[2:]) / 2
    np.testing.assert_allclose(last.velocity, [dx, dy, dx, dy], atol=1e-3)
    for k in range(1, 6):  # past hold_frames: predict never drops a track
        t = only(tr.predict(FRAME))
        assert t.frames_since_seen == k and t.held_over
        c = (t.box[:2] + t.box[2:]) / 2
        # the centre moves along the velocity, and the box reaches ahead of it (LEAD_REACH)
        ahead = 1 + LEAD_REACH / 2
        np.testing.assert_allclose(c - c0, [dx * k * ahead, dy * k * ahead], atol=1e-3)
        assert contains(t.box, moved(START, dx * (3 + k), dy * (3 + k)))
    # the detector catches up: the same face continues the same track
    t = only(tr.update(dets(moved(START, dx * 9, dy * 9)), FRAME))
    assert t.track_id == 1 and not t.held_over


@pytest.mark.parametrize(
    "bad",
    [
        (np.nan, 10, 50, 60),
        (10, 10, np.inf, 60),
        (-np.inf, 10, 50, 60),
        (50, 10, 40, 60),  # x2 < x1
        (10, 60, 50, 60),  # zero height
        (2000, 10, 2100, 60),  # wholly outside the frame
        (-300, -300, -200, -200),
    ],
)
def test_invalid_detections_are_ignored(bad: tuple[float, ...]) -> None:
    tr = Tracker()
    assert tr.update(dets(bad), FRAME) == []
    tracks = tr.update(dets(bad, START), FRAME)
    assert len(tracks) == 1 and contains(tracks[0].box, START)
    assert np.isfinite(tracks[0].box).all()


def test_two_faces_keep_their_own_ids() -> None:
    tr = Tracker()
    a, b = (100.0, 100.0, 160.0, 180.0), (700.0, 100.0, 760.0, 180.0)
    ids = None
    for i in range(10):
        tracks = tr.update(dets(moved(a, 10 * i, 0), moved(b, -10 * i, 0)), FRAME)
        got = {t.track_id: float(t.box[0]) for t in tracks}
        assert len(got) == 2
        if ids is None:
            ids = got
        assert set(got) == set(ids)
        assert got[1] < got[2]  # the left face stays track 1


def test_exempt_toggle_track_at_and_cleared_with_the_track() -> None:
    tr = Tracker(TrackerSettings(hold_frames=2))
    big = (100.0, 100.0, 400.0, 400.0)
    small = (200.0, 200.0, 260.0, 260.0)
    tr.update(dets(big, small), FRAME)
    hit = tr.track_at(230, 230)
    assert hit is not None and contains(hit.box, small)  # smallest box first
    assert tr.track_at(120, 120).track_id != hit.track_id
    assert tr.track_at(900, 600) is None
    assert tr.track_at(95, 95) is None
    assert tr.track_at(95, 95, scale=1.3) is not None  # a click on the scaled mask

    assert tr.set_exempt(hit.track_id, True) is True
    assert tr.set_exempt(999, True) is False
    tracks = tr.update(dets(big, moved(small, 2, 1)), FRAME)
    assert [t.exempt for t in tracks if t.track_id == hit.track_id] == [True]
    assert sum(t.exempt for t in tracks) == 1
    assert tr.set_exempt(hit.track_id, False) is True
    assert not any(t.exempt for t in tr.tracks)

    tr.set_exempt(hit.track_id, True)
    for _ in range(3):  # lost past hold_frames: dropped
        tr.update(dets(big), FRAME)
    assert all(t.track_id != hit.track_id for t in tr.tracks)
    tracks = tr.update(dets(big, small), FRAME)  # re-found: a new, masked track
    again = [t for t in tracks if contains(t.box, small) and t.box[2] - t.box[0] < 100]
    assert len(again) == 1
    assert again[0].track_id != hit.track_id and not again[0].exempt


def test_exempt_flag_does_not_jump_to_another_face() -> None:
    tr = Tracker()
    me = (300.0, 200.0, 360.0, 280.0)
    tid = only(tr.update(dets(me), FRAME)).track_id
    tr.set_exempt(tid, True)
    # I leave; a bystander appears one face width away in the next frame
    bystander = moved(me, 75, 0)
    tracks = tr.update(dets(bystander), FRAME)
    shown = [t for t in tracks if contains(t.box, bystander)]
    assert len(shown) == 1 and not shown[0].exempt
    # while an exempt face that really stays close keeps its flag
    tr2 = Tracker()
    tid2 = only(tr2.update(dets(me), FRAME)).track_id
    tr2.set_exempt(tid2, True)
    t = only(tr2.update(dets(moved(me, 8, 3)), FRAME))
    assert t.track_id == tid2 and t.exempt


def test_reset_empties_and_ids_keep_counting() -> None:
    tr = Tracker()
    tr.update(dets(START), FRAME)
    tr.reset()
    assert tr.tracks == [] and tr.predict(FRAME) == []
    assert only(tr.update(dets(START), FRAME)).track_id == 2


def test_apply_settings_at_run_time() -> None:
    tr = Tracker(TrackerSettings(hold_frames=10))
    tr.update(dets(START), FRAME)
    tr.update(Detections.empty(), FRAME)
    tr.apply_settings(TrackerSettings(hold_frames=1))
    assert tr.settings.hold_frames == 1
    assert tr.update(Detections.empty(), FRAME) == []


def test_returned_tracks_are_snapshots() -> None:
    tr = Tracker()
    t = only(tr.update(dets(START), FRAME))
    t.box[:] = 0
    t.exempt = True
    again = only(tr.tracks)
    assert contains(again.box, START) and not again.exempt


def _weak(box: tuple[float, ...], score: float = 0.15) -> Detections:
    d = dets(box)
    return Detections(d.xyxy, d.landmarks, np.full(1, score, np.float32))


def test_a_weak_fragment_far_from_the_face_does_not_drag_the_track() -> None:
    # a face moving down 15 px a frame; as it leaves, a weak detection turns up 60 px left
    t = Tracker(TrackerSettings(smoothing=0.0, hold_frames=8))
    t.new_track_threshold = 0.25
    for k in range(4):
        only(t.update(dets(moved(START, 0, 15 * k)), FRAME))
    fragment = moved(START, -60, 15 * 4 - 40)  # overlaps the predicted face by IoU < 0.3
    tr = only(t.update(_weak(fragment), FRAME))
    face_now = moved(START, 0, 60)
    assert tr.held_over  # the track was held, not moved onto the fragment
    assert contains(tr.box, face_now) and contains(tr.box, fragment)
    tr = only(t.update(Detections.empty(), FRAME))
    assert contains(tr.box, moved(START, 0, 75))  # still following the face's own motion


def test_a_weak_detection_near_the_face_moves_it_but_never_masks_less_than_hold_over() -> None:
    t = Tracker(TrackerSettings(smoothing=0.0, hold_frames=8))
    t.new_track_threshold = 0.25
    for k in range(4):
        only(t.update(dets(moved(START, 20 * k, 0)), FRAME))
    shrunk = (382.0, 205.0, 432.0, 270.0)  # a weak, smaller box on most of the face
    tr = only(t.update(_weak(shrunk), FRAME))
    assert not tr.held_over
    assert contains(tr.box, shrunk) and contains(tr.box, moved(START, 80, 0))


@pytest.mark.parametrize(("dx", "dy"), [(12.0, 0.0), (-12.0, 0.0), (0.0, 9.0), (8.0, -8.0)])
def test_held_box_reaches_ahead_of_a_face_that_speeds_up(dx: float, dy: float) -> None:
    """A face lost while its motion doubles (a camera sweep speeding up) stays inside the
    held-over box, which reaches further ahead of the motion than behind it."""
    tr = Tracker(TrackerSettings(hold_frames=8, growth_per_frame=0.0))
    for i in range(5):
        last = only(tr.update(dets(moved(START, dx * i, dy * i)), FRAME))
    for k in range(1, 4):
        t = only(tr.update(Detections.empty(), FRAME))
        assert contains(t.box, moved(START, dx * (4 + 2 * k), dy * (4 + 2 * k)))
    lead = [t.box[2] - last.box[2] if dx > 0 else last.box[0] - t.box[0],
            t.box[3] - last.box[3] if dy > 0 else last.box[1] - t.box[1]]
    trail = [last.box[0] - t.box[0] if dx > 0 else t.box[2] - last.box[2],
             last.box[1] - t.box[1] if dy > 0 else t.box[3] - last.box[3]]
    for axis, v in enumerate((dx, dy)):
        if v:
            assert lead[axis] > trail[axis]


def test_a_held_face_follows_the_motion_the_other_faces_share() -> None:
    """A camera sweep that turns: three faces move right, then all move left; the one no
    longer detected is held where the picture moved it, not along its own old velocity."""
    from backend.track.tracker import shared_motion

    t = Tracker(TrackerSettings(smoothing=0.0, hold_frames=8))
    faces = [(100.0, 300.0, 140.0, 350.0), (400.0, 300.0, 440.0, 350.0),
             (700.0, 300.0, 740.0, 350.0)]
    for i in range(4):  # rightwards at 30 px a frame
        t.update(dets(*(moved(f, 30 * i, 0) for f in faces)), FRAME)
    at = [moved(f, 90, 0) for f in faces]
    for _ in range(3):  # the sweep turns: leftwards at 40 px a frame; face 0 is lost
        at = [moved(f, -40, 0) for f in at]
        tracks = t.update(dets(*at[1:]), FRAME)
        held = [x for x in tracks if x.held_over]
        assert len(held) == 1 and contains(held[0].box, at[0]), (held, at[0])
    # its own velocity alone (still rightwards) would have lost it
    assert at[0][0] < faces[0][0] + 90 - 100

    # two faces that disagree tell no shared motion; agreeing ones do
    prev = np.array([faces[0], faces[1]])
    assert shared_motion(prev, np.array([moved(faces[0], 50, 0), moved(faces[1], -50, 0)])) \
        is None
    got = shared_motion(prev, np.array([moved(faces[0], 12, -3), moved(faces[1], 12, -3)]))
    assert got is not None and np.allclose(got, (12, -3))
    assert shared_motion(prev[:1], np.array([moved(faces[0], 12, 0)])) is None


def _scored(box: tuple[float, float, float, float], score: float) -> Detections:
    d = dets(box)
    d.confidence[:] = score
    return d


@pytest.mark.parametrize("box, cut", [
    ((600.0, -20.0, 650.0, 40.0), True),     # past the top edge: half a face entering
    ((1235.0, 300.0, 1283.0, 355.0), True),  # past the right edge
    ((-5.0, 690.0, 50.0, 725.0), True),      # past the bottom-left corner
    ((1235.0, 300.0, 1278.0, 355.0), False),  # short of the right edge: inside
    ((600.0, 300.0, 650.0, 360.0), False),   # inside the picture
    ((600.0, 20.0, 650.0, 80.0), False),     # 20 px from the top: not cut
])
def test_a_face_cut_by_the_edge_starts_a_track_at_a_lower_score(box, cut) -> None:
    """A half-visible face scores lower for being half out of the picture: a box that
    reaches past the frame's edge starts a track from EDGE_START_SHARE of the start
    threshold; inside the picture the threshold is unchanged; a still image keeps it
    everywhere."""
    from backend.track.tracker import EDGE_START_SHARE

    below = 0.25 * (EDGE_START_SHARE + 1) / 2  # between the edge threshold and the plain one
    t = Tracker()
    t.new_track_threshold = 0.25
    assert len(t.update(_scored(box, below), FRAME)) == (1 if cut else 0)
    t = Tracker()
    t.new_track_threshold = 0.25
    assert t.update(_scored(box, 0.25 * EDGE_START_SHARE * 0.9), FRAME) == []  # still noise
    still = Tracker()
    still.new_track_threshold = 0.25
    still.edge_start_share = 1.0
    assert still.update(_scored(box, below), FRAME) == []


def test_a_held_box_grows_to_a_bounded_multiple_of_its_face() -> None:
    """A box whose detections jitter (its corners seem to race apart) is held over, but
    its hold-over box never spans more than HOLD_MAX_SCALE face sizes (plus half that
    ahead of the motion): in a zoom over a crowd unbounded growth blacked whole frames."""
    tr = Tracker(TrackerSettings(hold_frames=8, smoothing=0.0))
    tr.update(dets((400.0, 300.0, 460.0, 380.0)), FRAME)
    tr.update(dets((370.0, 270.0, 490.0, 410.0)), FRAME)  # a jittery second box
    last = tr.tracks[0].box
    w, h = last[2] - last[0], last[3] - last[1]
    for _ in range(8):
        t = only(tr.update(Detections.empty(), FRAME))
        bw, bh = t.box[2] - t.box[0], t.box[3] - t.box[1]
        assert bw <= 1.5 * HOLD_MAX_SCALE * w + 1e-3 and bh <= 1.5 * HOLD_MAX_SCALE * h + 1e-3
    # the bound binds: unbounded, this box would have grown past it
    assert t.frames_since_seen == 8 and bw > 2 * w


@pytest.mark.parametrize(("dx", "dy"), [(40.0, 0.0), (-40.0, 0.0), (0.0, 30.0), (0.0, -30.0)])
def test_a_held_face_that_left_the_frame_is_dropped(dx: float, dy: float) -> None:
    """A face lost as it moves out of the picture is held until its box, moved on by its
    motion, lies wholly outside the frame; then it is gone, before hold_frames."""
    w, h = FRAME
    x = {40.0: w - 100.0, -40.0: 40.0}.get(dx, 600.0)
    y = {30.0: h - 110.0, -30.0: 30.0}.get(dy, 320.0)
    start = (x, y, x + 60.0, y + 80.0)
    tr = Tracker(TrackerSettings(hold_frames=30))
    for i in range(4):
        tr.update(dets(moved(start, dx * (i - 3), dy * (i - 3))), FRAME)
    held = 0
    while tr.update(Detections.empty(), FRAME):
        held += 1
        assert held < 30, "never dropped"
    # kept while any part of it may be inside: the box needs 2-5 frames to clear the edge
    assert 1 <= held <= 6, held


@pytest.mark.parametrize("gap", [0, 1, 2])
def test_a_jittery_box_keeps_its_id(gap: int) -> None:
    """A face whose second box is much smaller than its first (real zoom: 271x461, then
    176x272) keeps its id when seen again after ``gap`` missed frames: its expected place
    keeps the box's size; extrapolated corners turned it inside out, a second track was
    started on the same face and the first one's hold-over swelled over the frame."""
    tr = Tracker(TrackerSettings(hold_frames=8))
    tr.update(dets((55.0, -97.0, 326.0, 364.0)), FRAME)
    tr.update(dets((158.0, 7.0, 334.0, 279.0)), FRAME)
    for _ in range(gap):
        tr.update(Detections.empty(), FRAME)
    t = only(tr.update(dets((178.0, 18.0, 358.0, 290.0)), FRAME))
    assert t.track_id == 1 and not t.held_over


# -- the picture's own motion -------------------------------------------------------------------


SMALL = (600.0, 300.0, 620.0, 324.0)  # a 20 x 24 face of a crowd


def test_a_held_face_is_carried_along_the_picture_s_motion_and_found_again() -> None:
    """A pan of 70 px a frame (three face widths): the held box follows the picture, the
    face found again 280 px on is the same track; told nothing of the motion, the tracker
    takes it for a new face and holds the old box where the face no longer is."""
    from backend.types import CameraMotion

    pan = CameraMotion.shift(70, 0)
    t = Tracker()
    t.new_track_threshold = 0.25
    first = only(t.update(dets(SMALL), FRAME)).track_id
    for k in range(1, 4):
        held = only(t.update(dets(), FRAME, pan))
        assert held.held_over and contains(held.box, moved(SMALL, 70 * k, 0)), held.box
    again = only(t.update(dets(moved(SMALL, 280, 0)), FRAME, pan))
    assert again.track_id == first and not again.held_over
    blind = Tracker()
    blind.new_track_threshold = 0.25
    blind.update(dets(SMALL), FRAME)
    for _ in range(3):
        blind.update(dets(), FRAME)
    tracks = blind.update(dets(moved(SMALL, 280, 0)), FRAME)
    assert {tr.track_id for tr in tracks} == {1, 2}


def test_a_face_carried_by_the_measured_motion_is_held_longer() -> None:
    from backend.track.tracker import CARRIED_HOLD
    from backend.types import CameraMotion

    settings = TrackerSettings(hold_frames=4)
    for motion, kept in ((CameraMotion.shift(5, 0), 4 * CARRIED_HOLD), (None, 4)):
        t = Tracker(settings)
        t.new_track_threshold = 0.25
        t.update(dets(SMALL), FRAME)
        lasted = 0
        while t.update(dets(), FRAME, motion):
            lasted += 1
        assert lasted == kept, (motion, lasted)


def test_a_held_track_that_takes_a_far_box_leaves_a_ghost_where_it_was() -> None:
    """Held for two frames, a track takes a box two face sizes off (a neighbour, or a
    blurred face's stray): its hold goes on where the face was, as a ghost track."""
    t = Tracker()
    t.new_track_threshold = 0.25
    t.update(dets(START), FRAME)
    t.update(dets(), FRAME)
    t.update(dets(), FRAME)
    far = moved(START, 130, 0)
    tracks = t.update(dets(far), FRAME)
    assert len(tracks) == 2
    found = next(tr for tr in tracks if not tr.held_over)
    ghost = next(tr for tr in tracks if tr.held_over)
    assert found.track_id == 1 and contains(found.box, far)
    assert ghost.track_id != 1 and contains(ghost.box, START)
    # a box found near its face moves a held track without a ghost
    t2 = Tracker()
    t2.new_track_threshold = 0.25
    t2.update(dets(START), FRAME)
    t2.update(dets(), FRAME)
    t2.update(dets(), FRAME)
    assert len(t2.update(dets(moved(START, 20, 0)), FRAME)) == 1
