"""The second pass (files) and the two-threshold tracker: weak detections mask, never start."""

from __future__ import annotations

import numpy as np
import pytest

from backend.detect.schedule import Region
from backend.mask import Masker
from backend.pipeline import FrameResult
from backend.track import SecondPass, Tracker
from backend.types import Detections, Frame, Track
from config.schema import MaskSettings, TrackerSettings

SOLID = MaskSettings(type="solid", shape="box", scale=1.0)


def _result(i: int, tracks=(), fail_closed=False) -> FrameResult:
    img = np.full((200, 400, 3), 128, np.uint8)
    return FrameResult(Frame(i, i / 30, img), list(tracks), fail_closed=fail_closed)


def _dets(*boxes, score=0.15) -> Detections:
    return Detections(np.array(boxes, np.float32), confidence=[score] * len(boxes))


def _track(box, tid=1) -> Track:
    return Track(tid, np.array(box, np.float32), np.zeros(4), 0.9)


def test_new_track_masks_the_weak_chain_before_it():
    lb = SecondPass(Masker(SOLID), depth=5)
    out = []
    # a face moving right 40 px a frame, only weakly detected at first
    for i in range(4):
        x = 20 + 40 * i
        out += lb.push(_result(i), _dets([x, 50, x + 40, 100]))
    born = _result(4, [_track([180, 50, 220, 100])])
    out += lb.push(born, _dets([180, 50, 220, 100], score=0.9))
    out += lb.flush()
    assert [r.frame.index for r, _ in out] == [0, 1, 2, 3, 4]
    for i, (res, added) in enumerate(out[:4]):
        x = 20 + 40 * i
        assert (res.frame.image[60:90, x + 5:x + 35] == 0).all(), f"frame {i} not masked"
        assert added, f"frame {i} got no box"
        # the box found, stretched over the 40 px the face moved in that frame (its smear)
        assert added[0].box[0] == pytest.approx(x - 20)
        assert added[0].box[2] == pytest.approx(x + 60)
    assert lb.backtracked == 4


def test_no_weak_detection_masks_the_grown_box():
    lb = SecondPass(Masker(SOLID), depth=3, growth_per_frame=0.1)
    lb.push(_result(0), None)
    lb.push(_result(1), _dets())
    out = lb.push(_result(2, [_track([100, 50, 150, 100])]), None) + lb.flush()
    first = out[0][0].frame.image
    assert (first[55:95, 100:150] == 0).all()
    assert out[0][1][0].box[2] - out[0][1][0].box[0] > 50  # grew while walking back


def test_a_gap_in_the_chain_is_masked_between_its_ends():
    # a face moving right 30 px a frame: weak detections in frames 0 and 2, none in 1;
    # frame 2's box, all that the walk back had before, misses most of frame 1's face
    lb = SecondPass(Masker(SOLID), depth=5, growth_per_frame=0.0)
    lb.push(_result(0), _dets([20, 50, 60, 100]))
    lb.push(_result(1), None)
    lb.push(_result(2), _dets([80, 50, 120, 100]))
    out = lb.push(_result(3, [_track([110, 50, 150, 100])]),
                  _dets([110, 50, 150, 100], score=0.9)) + lb.flush()
    gap_image, gap_added = out[1][0].frame.image, out[1][1]
    assert (gap_image[55:95, 52:88] == 0).all(), "the face between the two ends is exposed"
    assert gap_added[0].box[0] <= 50 and gap_added[0].box[2] >= 90
    assert not gap_added[0].found  # a prediction, not a detection
    for res, _ in out[:3:2]:  # the ends keep their own detections' boxes
        assert res.frame.image[75, 300].tolist() == [128, 128, 128]


@pytest.mark.parametrize("exempt", [True, False])
def test_exempt_or_fail_closed_frames_are_left_alone(exempt):
    lb = SecondPass(Masker(SOLID), depth=3)
    lb.push(_result(0, fail_closed=True), None)
    lb.push(_result(1), _dets([100, 50, 150, 100]))
    t = _track([100, 50, 150, 100])
    t.exempt = exempt
    out = lb.push(_result(2, [t]), None) + lb.flush()
    assert out[0][1] == []  # fail-closed frames already hide everything
    assert bool(out[1][1]) is (not exempt)


def test_tracks_born_together_never_take_one_box():
    # two faces found in frame 1; frame 0 holds only the left one's weak detection, which
    # lies within the wide first-step gate of both: the right track must not take it
    lb = SecondPass(Masker(SOLID), depth=3, growth_per_frame=0.0)
    lb.push(_result(0), _dets([20, 50, 60, 100]))
    born = _result(1, [_track([70, 50, 110, 100], tid=2), _track([24, 50, 64, 100], tid=1)])
    out = lb.push(born, _dets([24, 50, 64, 100], [70, 50, 110, 100], score=0.9)) + lb.flush()
    added = {-a.track_id: a for a in out[0][1]}
    # the left face's box, stretched by the 4 px it moved (its smear)
    assert added[1].found and added[1].box[[0, 2]] == pytest.approx([18, 62])
    assert not added[2].found and added[2].box[0] >= 65  # its own place, not the left face


def test_a_track_found_again_gets_its_gap_interpolated():
    lb = SecondPass(Masker(SOLID), depth=5, growth_per_frame=0.0)
    t = _track([20, 50, 60, 100])
    lb.push(_result(0, [t]), _dets([20, 50, 60, 100], score=0.9))
    for i in (1, 2):  # held over where it was: the face moved on unseen
        held = _track([20, 50, 60, 100])
        held.frames_since_seen = i
        lb.push(_result(i, [held]), None)
    out = lb.push(_result(3, [_track([110, 50, 150, 100])]), None) + lb.flush()
    for i, x in ((1, 50), (2, 80)):
        res, added = out[i]
        assert [a.state for a in added] == ["interpolated"]
        assert (res.frame.image[60:90, x + 5:x + 35] == 0).all(), f"frame {i} not masked"
    assert lb.interpolated == 2


def test_depth_zero_passes_frames_straight_through():
    lb = SecondPass(Masker(SOLID), depth=0)
    out = lb.push(_result(0, [_track([0, 0, 10, 10])]), None)
    assert len(out) == 1 and lb.flush() == []


def test_weak_detection_continues_a_track_but_never_starts_one():
    tr = Tracker(TrackerSettings())
    tr.new_track_threshold = 0.25
    assert tr.update(_dets([10, 10, 60, 60], score=0.15), (400, 200)) == []
    (t,) = tr.update(_dets([10, 10, 60, 60], score=0.9), (400, 200))
    (t2,) = tr.update(_dets([30, 10, 80, 60], score=0.12), (400, 200))
    assert t2.track_id == t.track_id and not t2.held_over


def test_a_new_face_is_walked_back_along_the_motion_the_picture_shares():
    """A pan at 30 px a frame: two faces tracked all along; a third, never detected before
    frame 4 (no weak chain either), is masked back where the pan says it was."""
    lb = SecondPass(Masker(SOLID), depth=5, growth_per_frame=0.0)
    out = []
    for i in range(5):
        x = 30 * i
        tracks = [_track([x, 10, x + 40, 60], 1), _track([x + 200, 10, x + 240, 60], 2)]
        if i == 4:
            tracks.append(_track([x + 100, 120, x + 140, 170], 3))
        out += lb.push(_result(i, tracks), None)
    out += lb.flush()
    for i, (res, added) in enumerate(out[:4]):
        x = 30 * i + 100  # where face 3 was: the pan moved it as it moved the others
        assert (res.frame.image[130:160, x + 5:x + 35] == 0).all(), (i, added)


def _panning(i: int, dx: float = -50.0) -> list[Track]:
    """Two faces that move with the picture (a pan of ``dx`` px a frame) in frame ``i``."""
    return [_track([300 + dx * i, 150, 340 + dx * i, 190], tid=5),
            _track([360 + dx * i, 150, 400 + dx * i, 190], tid=6)]


def _push_pan(lb: SecondPass, i: int, *extra) -> None:
    """Push frame ``i`` of the pan: its two faces tracked and weakly detected, and the
    ``extra`` boxes detected too."""
    faces = _panning(i)
    lb.push(_result(i, faces), _dets(*(t.box.tolist() for t in faces), *extra))


def _born_after_pan(lb: SecondPass, *extras) -> list:
    """Push one pan frame per item of ``extras`` (the extra boxes detected in it), then the
    frame where track 1 is born at [100, 100, 140, 150]; return every frame that leaves."""
    for i, extra in enumerate(extras):
        _push_pan(lb, i, *extra)
    n = len(extras)
    born = _result(n, [_track([100, 100, 140, 150], tid=1), *_panning(n)])
    return lb.push(born, _dets([100, 100, 140, 150], score=0.9)) + lb.flush()


def test_a_face_moving_with_the_picture_is_not_taken_for_a_neighbours_smear():
    # the picture pans left 50 px a frame; a face found in frame 2 was 50 px to the right in
    # frame 1, where the only detection is a smear 2.6 face sizes off that path (within the
    # wide gate of a face whose motion is not known)
    lb = SecondPass(Masker(SOLID), depth=4, growth_per_frame=0.0)
    out = _born_after_pan(lb, [], [[250, 20, 290, 70]])
    res, added = out[1]
    mine = [a for a in added if -a.track_id == 1]
    assert mine and all(a.box[0] < 200 for a in mine), "took the smear for the face"
    assert (res.frame.image[105:145, 155:185] == 0).all(), "frame 1's face is exposed"


def test_a_track_found_again_off_its_hold_over_keeps_that_masked_too():
    # the track's face went unseen for a frame; the detection it takes next lies far from
    # its hold-over box, which may still hold its own face: that frame masks both
    lb = SecondPass(Masker(SOLID), depth=4, growth_per_frame=0.0)
    lb.push(_result(0, [_track([100, 50, 140, 100])]), _dets([100, 50, 140, 100], score=0.9))
    held = _track([95, 45, 145, 105])
    held.frames_since_seen = 1
    lb.push(_result(1, [held]), None)
    out = lb.push(_result(2, [_track([250, 50, 290, 100])]), _dets([250, 50, 290, 100],
                  score=0.9)) + lb.flush()
    res, added = out[2]
    assert [a.state for a in added] == ["held"]
    assert (res.frame.image[55:95, 105:135] == 0).all(), "the hold-over's face is exposed"
    # found again where its hold-over said: nothing more
    lb = SecondPass(Masker(SOLID), depth=4, growth_per_frame=0.0)
    lb.push(_result(0, [_track([100, 50, 140, 100])]), _dets([100, 50, 140, 100], score=0.9))
    lb.push(_result(1, [held]), None)
    out = lb.push(_result(2, [_track([104, 50, 144, 100])]), None) + lb.flush()
    assert out[2][1] == []


def test_a_track_that_jumped_against_the_pictures_motion_is_walked_back():
    # the picture is still (two faces agree), a track's face went unseen for two frames and
    # the track then took a face 150 px away: that face's earlier frames are masked too
    lb = SecondPass(Masker(SOLID), depth=5, growth_per_frame=0.0)
    lb.push(_result(0, [_track([100, 50, 140, 100]), *_panning(0, 0.0)]), None)
    for i in (1, 2):
        held = _track([100, 50, 140, 100])
        held.frames_since_seen = i
        lb.push(_result(i, [held, *_panning(i, 0.0)]), None)
    out = lb.push(_result(3, [_track([250, 50, 290, 100]), *_panning(3, 0.0)]), None) \
        + lb.flush()
    for i in (1, 2):
        res, added = out[i]
        assert "backtracked" in [a.state for a in added]
        assert (res.frame.image[55:95, 255:285] == 0).all(), f"frame {i}: the face is exposed"


def test_a_box_found_off_the_pictures_motion_is_masked_with_the_prediction():
    # frame 1's only candidate lies 0.7 face sizes off where the pan put the face: it is
    # taken (within the gate), and the predicted place is masked as well
    lb = SecondPass(Masker(SOLID), depth=4, growth_per_frame=0.0)
    out = _born_after_pan(lb, [], [[150, 65, 190, 115]])
    res, added = out[1]
    mine = [a for a in added if -a.track_id == 1]
    assert [a.found for a in mine] == [True, False]
    assert (res.frame.image[105:145, 155:185] == 0).all(), "the predicted place is exposed"


def test_a_track_detected_off_the_pictures_motion_from_one_frame_to_the_next_is_walked_back():
    # the picture is still; a track seen in frames 0-1 at one place takes a face 30 px (0.6
    # face sizes) away in frame 2: that face, not found before, is masked in frame 1 too
    lb = SecondPass(Masker(SOLID), depth=5, growth_per_frame=0.0)
    for i in (0, 1):
        lb.push(_result(i, [_track([100, 50, 150, 100]), *_panning(i, 0.0)]), None)
    out = lb.push(_result(2, [_track([130, 50, 180, 100]), *_panning(2, 0.0)]), None) \
        + lb.flush()
    res, added = out[1]
    assert [a.state for a in added] == ["backtracked"] and not added[0].found
    assert (res.frame.image[55:95, 155:175] == 0).all(), "the face taken in frame 2 is exposed"


def test_the_walk_back_also_follows_the_motions_path_past_a_doubtful_find():
    # the picture pans left 50 px a frame. One frame before the face's birth the only
    # candidate is a neighbour 0.7 face sizes above its path (taken, doubtfully); one frame
    # further back the face is found by nothing: the path the motion gives is masked there
    lb = SecondPass(Masker(SOLID), depth=5, growth_per_frame=0.0)
    out = _born_after_pan(lb, [], [], [[150, 65, 190, 115]])
    res = out[1][0]
    assert (res.frame.image[105:145, 205:235] == 0).all(), "frame 1's face is exposed"


def test_one_hop_in_a_still_picture_is_not_followed_across_the_frame():
    # the picture is still (two faces agree). One frame before a face's birth the only
    # candidate is a neighbour 0.6 face sizes to its right (taken, doubtfully); nothing is
    # found further back. That hop is no motion to follow until its path leaves the frame:
    # the walk ends after miss_limit frames, as for a still face
    lb = SecondPass(Masker(SOLID), depth=12, growth_per_frame=0.0, miss_limit=3)
    frames = [[] for _ in range(11)] + [[[130, 100, 170, 150]]]
    for i, extra in enumerate(frames):
        lb.push(_result(i, _panning(i, 0.0)), _dets(*extra) if extra else None)
    n = len(frames)
    born = _result(n, [_track([100, 100, 140, 150], tid=1), *_panning(n, 0.0)])
    out = lb.push(born, _dets([100, 100, 140, 150], score=0.9)) + lb.flush()
    assert (out[n - 1][0].frame.image[105:145, 135:165] == 0).all(), "the find is exposed"
    for k in range(6, 10):  # k frames before the birth, where the hop's path would be
        x = 130 + 30 * (k - 1) + 20
        assert out[n - k][0].frame.image[125, x].tolist() == [128, 128, 128], k


def test_a_fork_is_followed_a_few_frames_only():
    # the picture pans left 10 px a frame. Walking back, the face is found on the pan's path
    # twice, then the only candidate lies 0.7 face sizes below it (taken, doubtfully): the
    # path is forked and masked a few frames further back (FORK_MISSES), not until it
    # leaves the frame
    from backend.track.second_pass import FORK_MISSES

    lb = SecondPass(Masker(SOLID), depth=14, growth_per_frame=0.0, miss_limit=8)
    extras = [[] for _ in range(11)] + [[[130, 135, 170, 185]], [[120, 100, 160, 150]],
                                        [[110, 100, 150, 150]]]
    for i, extra in enumerate(extras):
        faces = _panning(i, -10.0)
        lb.push(_result(i, faces), _dets(*(t.box.tolist() for t in faces), *extra))
    n = len(extras)
    born = _result(n, [_track([100, 100, 140, 150], tid=1), *_panning(n, -10.0)])
    out = lb.push(born, _dets([100, 100, 140, 150], score=0.9)) + lb.flush()
    for k in range(4, 14):  # k frames before the birth: the fork's path
        x = 100 + 10 * k + 20
        masked = out[n - k][0].frame.image[125, x].tolist() == [0, 0, 0]
        assert masked == (k < 3 + FORK_MISSES), k


# -- the picture's measured motion -------------------------------------------------------------


def _face_at(x: float) -> list[float]:
    return [x, 50.0, x + 40.0, 100.0]


def _walk(camera, face_x, born: int, frames: int = 8, velocity=None):
    """Push ``frames`` frames whose picture moved by ``camera`` each (None: not known), a
    face at ``face_x(i)`` found first in frame ``born`` (and in the frames after, moving
    with ``velocity`` there), never detected before; return each frame's added boxes."""
    lb = SecondPass(Masker(SOLID), depth=10, growth_per_frame=0.0)
    out = []
    for i in range(frames):
        tracks = []
        if i >= born:
            v = np.zeros(4) if velocity is None or i == born else np.array(velocity, float)
            tracks = [Track(1, np.array(_face_at(face_x(i)), np.float32), v, 0.9,
                            hits=i - born + 1)]
        out += lb.push(_result(i, tracks), _dets(_face_at(face_x(i)), score=0.9)
                       if i >= born else None, None, None if i == 0 else camera)
    out += lb.flush()
    return {r.frame.index: added for r, added in out}


def _covers(added, box) -> bool:
    return any(a.box[0] <= box[0] + 4 and a.box[2] >= box[2] - 4 and a.box[1] <= box[1] + 4
               and a.box[3] >= box[3] - 4 for a in added)


def test_a_face_found_late_in_a_pan_is_walked_back_along_the_measured_motion():
    """The picture pans 30 px a frame; a face first found in frame 5 was 30 px further
    right in each frame before (it moved with the picture), where no detection shows it."""
    from backend.types import CameraMotion

    pan = CameraMotion.shift(-30, 0)
    added = _walk(pan, lambda i: 330 - 30 * i, born=5)
    for i in range(5):
        assert _covers(added[i], _face_at(330 - 30 * i)), (i, [a.box for a in added[i]])


def test_a_face_running_across_a_still_picture_is_walked_back_with_its_first_motion():
    """The picture stands still (measured); a face running 25 px a frame to the right is
    found in frame 5 and again in frame 6: the walk back from frame 5 follows the motion
    frame 6 showed, into frames where no detection shows it."""
    from backend.types import CameraMotion

    still = CameraMotion.identity()
    added = _walk(still, lambda i: 50 + 25 * i, born=5, velocity=[25, 0, 25, 0])
    for i in range(5):
        assert _covers(added[i], _face_at(50 + 25 * i)), (i, [a.box for a in added[i]])


def test_a_face_found_at_a_file_s_end_inside_a_far_larger_box_is_walked_back():
    """In the last frame a crowd's hold-over box, grown to five faces' size, happens to
    cover a small face that no track holds: the face found there by the file's end regions
    is a new track all the same, walked back into the frames before, where that box was
    elsewhere (a box far larger than a face claims it in that frame only)."""
    from backend.detect import CenterFaceDetector
    from backend.pipeline import detect_threshold
    from config.schema import Settings
    from tests.faces import astronaut_face, background, leaks, paste

    detector = CenterFaceDetector(provider="cpu", threshold=detect_threshold(Settings()))
    face = astronaut_face(24)
    originals, boxes = [], []
    for i in range(6):  # the face moves 12 px a frame over a still picture
        image = background(320, 240, seed=3)
        boxes.append(paste(image, face, 60 + 12 * i, 100))
        originals.append(image)
    none = Detections(np.zeros((0, 4), np.float32), confidence=[])
    lb = SecondPass(Masker(SOLID), depth=8, detect_crops=detector.detect_regions)
    out = []
    for i in range(5):  # no region of these frames examined the face
        out += lb.push(FrameResult(Frame(i, i / 30, originals[i].copy()), []), none,
                       originals[i])
    x0, y0, x1, y1 = boxes[5]
    crowd = _track([x0 - 50, y0 - 50, x1 + 50, y1 + 50], tid=7)  # held elsewhere before
    last = Masker(SOLID).apply(originals[5].copy(), [crowd])  # as the frame went out
    out += lb.push(FrameResult(Frame(5, 5 / 30, last), [crowd]), none, originals[5])
    born = lb.finish([Region(0, 0, 320, 240, 4 / 3, "fine")], lambda box, w, h: 0.2)
    out += lb.flush()
    assert born == 1
    assert [r.frame.index for r, _ in out] == list(range(6))
    for i, (res, _) in enumerate(out):
        assert not leaks(res.frame.image, originals[i], boxes[i]), f"frame {i} leaks"


def test_a_face_walking_back_is_sought_close_before_a_far_detection_is_taken():
    """A face found in the newest frame, its motion unknown: in the frame before, the
    forward pass found only another, larger face three face sizes away (within the wide
    gate of a face that may have run). The walk back seeks the face in a close crop
    first and masks it there, not at the other face."""
    from backend.detect import CenterFaceDetector
    from backend.pipeline import detect_threshold
    from config.schema import Settings
    from tests.faces import astronaut_face, background, leaks, lfw_face, paste

    detector = CenterFaceDetector(provider="cpu", threshold=detect_threshold(Settings()))
    small, large = astronaut_face(20), lfw_face(3, 36)
    originals, faces = [], []
    for _ in range(3):  # a still picture: both faces stay where they are
        image = background(320, 240, seed=5)
        faces.append(paste(image, small, 120, 120))
        paste(image, large, 170, 50)
        originals.append(image)
    found_large = detector.detect_regions(originals[1], [Region(140, 20, 240, 120, 1.0,
                                                                "refine")])
    assert len(found_large) == 1  # the other face, in the frame's own detections
    none = Detections(np.zeros((0, 4), np.float32), confidence=[])
    lb = SecondPass(Masker(SOLID), depth=8, detect_crops=detector.detect_regions)
    out = lb.push(FrameResult(Frame(0, 0.0, originals[0].copy()), []), none, originals[0])
    out += lb.push(FrameResult(Frame(1, 1 / 30, originals[1].copy()), []), found_large,
                   originals[1])
    track = _track(faces[2], tid=4)
    newest = Masker(SOLID).apply(originals[2].copy(), [track])
    out += lb.push(FrameResult(Frame(2, 2 / 30, newest), [track]), _dets(faces[2], score=0.9),
                   originals[2])
    out += lb.flush()
    assert [r.frame.index for r, _ in out] == [0, 1, 2]
    for i, (res, _) in enumerate(out):
        assert not leaks(res.frame.image, originals[i], faces[i]), f"frame {i} leaks"
