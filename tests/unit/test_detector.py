"""CenterFaceDetector on the real model and a real face photo (no mocks)."""

from __future__ import annotations

import dataclasses
import gc
import threading
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from backend.detect import CenterFaceDetector, create_session
from backend.detect.centerface import decode, nms
from backend.errors import STATS, UsageError
from backend.memory import MemoryPool
from backend.types import Detections

Box = tuple[float, float, float, float]


def iou(a: np.ndarray | Box, b: np.ndarray | Box) -> float:
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    return inter / ((ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter)


def best_iou(dets: Detections, box: Box) -> float:
    return max((iou(b, box) for b in dets.xyxy), default=0.0)


def assert_sane(dets: Detections, width: int, height: int) -> None:
    assert dets.xyxy.dtype == np.float32 and dets.landmarks.dtype == np.float32
    assert np.isfinite(dets.xyxy).all() and np.isfinite(dets.landmarks).all()
    assert np.isfinite(dets.confidence).all()
    assert dets.is_valid(width, height).all()
    assert (dets.xyxy[:, [0, 2]] <= width).all() and (dets.xyxy[:, [1, 3]] <= height).all()
    assert (dets.xyxy >= 0).all()
    assert (np.diff(dets.confidence) <= 0).all()  # highest first


@pytest.fixture(scope="module")
def detector() -> CenterFaceDetector:
    """A shared detector; tests that change its settings use their own."""
    return CenterFaceDetector(provider="cpu")


# -- finding the face --------------------------------------------------------------------


@pytest.mark.parametrize("input_size", [None, (320, 224), (640, 480)])
def test_finds_astronaut_face(astronaut, input_size) -> None:
    image, box = astronaut
    det = CenterFaceDetector(provider="cpu", input_size=input_size)
    faces = det.detect(image)
    assert_sane(faces, 512, 512)
    assert len(faces) == 1
    assert best_iou(faces, box) > 0.6
    assert faces.confidence[0] > 0.6


@pytest.mark.parametrize(
    "scale, offset, input_size",
    [
        (1.0, (600, 150), None),
        (1.25, (80, 50), None),
        (0.75, (880, 300), None),
        (1.0, (200, 100), (640, 480)),
        (1.25, (640, 60), (320, 224)),
    ],
)
def test_finds_face_pasted_into_a_larger_frame(astronaut, scale, offset, input_size) -> None:
    image, box = astronaut
    photo = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    canvas = np.random.default_rng(1).integers(90, 110, (720, 1280, 3), dtype=np.uint8)
    ox, oy = offset
    canvas[oy : oy + photo.shape[0], ox : ox + photo.shape[1]] = photo
    expected = (box[0] * scale + ox, box[1] * scale + oy, box[2] * scale + ox, box[3] * scale + oy)
    det = CenterFaceDetector(provider="cpu", input_size=input_size)
    faces = det.detect(canvas)
    assert_sane(faces, 1280, 720)
    assert best_iou(faces, expected) > 0.6


def test_landmarks_lie_in_the_box_eyes_above_mouth(detector, astronaut) -> None:
    image, _ = astronaut
    faces = detector.detect(image)
    (x1, y1, x2, y2), pts = faces.xyxy[0], faces.landmarks[0]
    assert ((pts[:, 0] > x1) & (pts[:, 0] < x2) & (pts[:, 1] > y1) & (pts[:, 1] < y2)).all()
    left_eye, right_eye, nose, mouth_left, mouth_right = pts
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((480, 640, 3), np.uint8),
        np.full((720, 1280, 3), 200, np.uint8),
        np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8),
        np.random.default_rng(2).integers(0, 256, (333, 517, 3), dtype=np.uint8),
    ],
    ids=["black", "grey", "noise-720p", "noise-odd-size"],
)
def test_no_faces_in_blank_or_noise(image) -> None:
    det = CenterFaceDetector(provider="cpu", threshold=0.5)
    faces = det.detect(image)
    assert len(faces) == 0
    assert faces.xyxy.shape == (0, 4) and faces.landmarks.shape == (0, 5, 2)


def test_threshold_changes_at_run_time(astronaut) -> None:
    image, box = astronaut
    det = CenterFaceDetector(provider="cpu")
    score = float(det.detect(image).confidence[0])
    det.threshold = min(0.99, score + 0.02)
    assert len(det.detect(image)) == 0
    det.threshold = 0.4
    assert best_iou(det.detect(image), box) > 0.6
    for bad in (0.0, 1.0, -0.1, float("nan")):
        with pytest.raises(ValueError):
            det.threshold = bad


def test_input_size_changes_at_run_time(astronaut) -> None:
    image, box = astronaut
    det = CenterFaceDetector(provider="cpu")
    assert det.input_shape_for(512, 512) == (480, 480)
    det.set_input_size((320, 224))
    assert det.input_shape_for(512, 512) == (224, 224)
    assert best_iou(det.detect(image), box) > 0.6
    det.set_input_size(None)
    det.long_side = 320
    assert det.input_shape_for(1280, 720) == (320, 192)
    assert best_iou(det.detect(image), box) > 0.6
    with pytest.raises(ValueError):
        det.set_input_size((16, 16))


@pytest.mark.parametrize("input_size", [None, (320, 224), (640, 480), (1000, 1000)])
@pytest.mark.parametrize("size", [(1280, 720), (720, 1280), (512, 512), (641, 359), (90, 50)])
def test_padded_size_is_multiple_of_32_and_keeps_aspect(input_size, size) -> None:
    det = CenterFaceDetector(provider="cpu", input_size=input_size)
    w, h = size
    pw, ph = det.input_shape_for(w, h)
    assert pw % 32 == 0 and ph % 32 == 0
    if input_size is None:
        scale = det.long_side / max(w, h)
        assert max(pw, ph) == det.long_side  # 480 is a multiple of 32
    else:
        scale = min(input_size[0] / w, input_size[1] / h)
        assert pw <= -(-input_size[0] // 32) * 32 and ph <= -(-input_size[1] // 32) * 32
    # the scaled frame fills the padded input up to less than one 32-pixel step
    assert -1 < pw - w * scale < 33 and -1 < ph - h * scale < 33


def test_pool_buffers_are_reused(astronaut) -> None:
    image, _ = astronaut
    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[100:612, 300:812] = image
    pool = MemoryPool(capacity_mb=64)
    det = CenterFaceDetector(provider="cpu", pool=pool)
    det.detect(frame)
    assert pool.stats().allocations == 2  # the resized image and the input tensor
    assert pool.stats().in_use_mb == 0
    det.detect(frame)  # from the second run at a size on, outputs are bound to pooled buffers
    first = pool.stats()
    assert first.allocations == 2 + 4  # and the four outputs
    pw, ph = det.input_shape_for(1280, 720)
    outputs_mb = (1 + 2 + 2 + 10) * (pw // 4) * (ph // 4) * 4 / 2**20
    for _ in range(9):
        assert len(det.detect(frame)) == 1
    after = pool.stats()
    assert after.allocations == first.allocations
    assert after.reuses == first.reuses + 9 * 6
    # image and tensor go back after each run; the outputs when the next run starts
    assert after.in_use_mb == pytest.approx(outputs_mb)


def test_bound_outputs_equal_a_plain_run(astronaut) -> None:
    image, _ = astronaut
    pool = MemoryPool(capacity_mb=64)
    for precision in ("fp32", "int8"):
        info = create_session(None, "cpu", precision=precision)
        tensors = []
        for w, h in ((512, 512), (320, 192)):
            resized = cv2.resize(image, (w, h))
            tensors.append(np.ascontiguousarray(
                resized[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32))
        for tensor in tensors * 3:  # sizes alternate, as tiles and crops do
            plain = info.session.run(None, {info.input_name: tensor})
            bound = info.run_bound(tensor, pool)
            assert [b.shape for b in bound] == [p.shape for p in plain]
            assert all(np.array_equal(b, p) for b, p in zip(bound, plain, strict=True))
            assert plain[0].max() > 0.5  # the astronaut's face lights the heatmap
    assert pool.stats().allocations == 2 * 4  # one set of outputs per size, then reused


def test_grey_and_bgra_inputs(detector, astronaut) -> None:
    image, box = astronaut
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    for img in (grey, grey[:, :, None], cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)):
        faces = detector.detect(img)
        assert best_iou(faces, box) > 0.6


def test_non_contiguous_view(detector, astronaut) -> None:
    image, box = astronaut
    big = np.zeros((512, 1024, 3), np.uint8)
    big[:, ::2] = image
    faces = detector.detect(big[:, ::2])
    assert best_iou(faces, box) > 0.6


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((64, 64, 3), np.float32),
        np.zeros((64, 64, 3), np.uint16),
        np.zeros((64, 64, 2), np.uint8),
        np.zeros((64,), np.uint8),
        np.zeros((0, 64, 3), np.uint8),
        [[0, 1], [2, 3]],
    ],
    ids=["float32", "uint16", "2-channel", "1-D", "empty", "list"],
)
def test_rejects_bad_images(detector, image) -> None:
    with pytest.raises(ValueError):
        detector.detect(image)


def test_bad_settings_rejected() -> None:
    for kwargs in ({"threshold": 0.0}, {"long_side": 16}, {"nms_iou": 0.0}, {"input_size": (8, 8)}):
        with pytest.raises(ValueError):
            CenterFaceDetector(provider="cpu", **kwargs)


# -- decoding maths on synthetic outputs ------------------------------------------------


def _outputs(h: int = 8, w: int = 8) -> tuple[np.ndarray, ...]:
    return (
        np.zeros((1, 1, h, w), np.float32),
        np.zeros((1, 2, h, w), np.float32),
        np.zeros((1, 2, h, w), np.float32),
        np.zeros((1, 10, h, w), np.float32),
    )


def test_decode_places_box_and_landmarks() -> None:
    heat, scale, offset, lms = _outputs()
    heat[0, 0, 2, 5] = 0.9
    scale[0, :, 2, 5] = np.log([16 / 4, 8 / 4])  # height 16, width 8
    offset[0, :, 2, 5] = [0.25, -0.5]  # dy, dx in cells
    lms[0, 0::2, 2, 5] = 0.5  # every landmark's dy: half the height
    lms[0, 1::2, 2, 5] = 0.25  # every landmark's dx: a quarter of the width
    boxes, pts, scores = decode(heat, scale, offset, lms, threshold=0.5)
    cx, cy = (5 - 0.5 + 0.5) * 4, (2 + 0.25 + 0.5) * 4
    np.testing.assert_allclose(boxes[0], [cx - 4, cy - 8, cx + 4, cy + 8], rtol=1e-6)
    np.testing.assert_allclose(pts[0], [[cx - 4 + 2, cy - 8 + 8]] * 5, rtol=1e-6)
    np.testing.assert_allclose(scores, [0.9])


def test_decode_never_returns_nan() -> None:
    heat, scale, offset, lms = _outputs()
    heat[0, 0, 1, 1] = heat[0, 0, 4, 4] = heat[0, 0, 6, 6] = 0.9
    heat[0, 0, 7, 7] = np.nan  # never above the threshold
    scale[0, 0, 1, 1] = 1e6  # exp overflows: the box is dropped
    offset[0, 1, 4, 4] = np.nan  # NaN centre: the box is dropped
    lms[0, 3, 6, 6] = np.inf  # a bad landmark: the box stays, the point moves to its centre
    boxes, pts, scores = decode(heat, scale, offset, lms, threshold=0.5)
    assert len(boxes) == 1 and np.isfinite(boxes).all() and np.isfinite(pts).all()
    centre = [(boxes[0, 0] + boxes[0, 2]) / 2, (boxes[0, 1] + boxes[0, 3]) / 2]
    np.testing.assert_allclose(pts[0, 1], centre)


@pytest.mark.parametrize(
    "boxes, scores, iou_limit, kept",
    [
        ([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], [0.9, 0.8, 0.7], 0.3, [0, 2]),
        ([[0, 0, 10, 10], [1, 1, 11, 11]], [0.5, 0.8], 0.3, [1]),
        ([[0, 0, 10, 10], [1, 1, 11, 11]], [0.9, 0.8], 0.9, [0, 1]),
        ([[0, 0, 10, 10], [0, 0, 0, 0]], [0.9, 0.8], 0.3, [0, 1]),
        (np.zeros((0, 4)), [], 0.3, []),
    ],
)
def test_nms(boxes, scores, iou_limit, kept) -> None:
    out = nms(np.asarray(boxes, np.float32), np.asarray(scores, np.float32), iou_limit)
    assert out.tolist() == kept


# -- CUDA failing in the middle of a run -------------------------------------------------


def _failing_model(path: Path) -> Path:
    """A detector-shaped graph that fails inside run(): Reshape to an impossible shape."""
    x = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, "H", "W"])
    outs = [
        helper.make_tensor_value_info(f"o{i}", TensorProto.FLOAT, ["N", c, "h", "w"])
        for i, c in enumerate((1, 2, 2, 10))
    ]
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [1, 1, 7, 11])
    nodes = [helper.make_node("Reshape", ["input.1", "shape"], ["r"])]
    nodes += [helper.make_node("Identity", ["r"], [f"o{i}"]) for i in range(4)]
    graph = helper.make_graph(nodes, "fails_at_run", [x], outs, [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_cuda_failure_mid_run_falls_back_to_cpu(
    tmp_path: Path, astronaut, capfd: pytest.CaptureFixture[str]
) -> None:
    image, box = astronaut
    det = CenterFaceDetector(provider="cpu")
    failing = create_session(_failing_model(tmp_path / "fails.onnx"), "cpu")
    # seam: pretend the session in use is a CUDA one whose run() fails with a real ORT error
    det._info = dataclasses.replace(failing, provider="cuda")
    before = STATS.counts().get("gpu.fallback", 0)
    faces = det.detect(image)
    assert best_iou(faces, box) > 0.6
    assert det.provider == "cpu"
    assert det.provider_note.startswith("CUDA failed during inference")
    assert "\n" not in det.provider_note
    assert STATS.counts().get("gpu.fallback", 0) == before + 1
    assert best_iou(det.detect(image), box) > 0.6  # and stays on CPU
    assert STATS.counts().get("gpu.fallback", 0) == before + 1
    err = capfd.readouterr().err
    assert "onnxruntime" not in err and "\x1b[" not in err


def test_cpu_failure_mid_run_is_raised(tmp_path: Path, astronaut) -> None:
    image, _ = astronaut
    pool = MemoryPool()
    det = CenterFaceDetector(provider="cpu", pool=pool)
    det._info = create_session(_failing_model(tmp_path / "fails.onnx"), "cpu")
    with pytest.raises(Exception, match="Reshape"):
        det.detect(image)
    assert det.provider == "cpu"
    assert pool.stats().in_use_mb == 0  # buffers handed back even on failure


# -- crops in batches ------------------------------------------------------------------------


def test_batch_groups_cover_every_crop_once_within_shape_and_memory() -> None:
    from backend.detect.centerface import _BATCH_PIXELS, _Crop, batch_groups

    rng = np.random.default_rng(3)
    crops = [_Crop(0, 0, 10, 10, int(w), int(h))
             for w, h in rng.integers(20, 400, (60, 2))] + [_Crop(0, 0, 9, 9, 1024, 1024)] * 3
    groups = batch_groups(crops, max_batch=32, slack=1.5)
    seen = [id(c) for _, g in groups for c in g]
    assert sorted(seen) == sorted(id(c) for c in crops)
    for (pw, ph), group in groups:
        assert pw % 32 == 0 and ph % 32 == 0 and 1 <= len(group) <= 32
        assert len(group) == 1 or len(group) * pw * ph <= _BATCH_PIXELS
        for c in group:
            own = -(-c.sw // 32) * 32 * (-(-c.sh // 32) * 32)
            assert c.sw <= pw and c.sh <= ph and pw * ph <= 1.5 * own
    assert len(batch_groups(crops[:5], max_batch=1)) == 5  # a fixed batch of one


def test_batch_groups_pad_a_crop_only_when_that_saves_more_than_it_costs() -> None:
    """A call costs its pixels: the whole-frame pass is not padded up to a fine tile's
    shape (23k padded pixels for one call saved), small crops still share a call."""
    from backend.detect.centerface import _Crop, batch_groups

    coarse, tile = _Crop(0, 0, 1280, 720, 448, 252), _Crop(0, 0, 360, 216, 480, 288)
    groups = batch_groups([coarse, tile])
    assert sorted(shape for shape, _ in groups) == [(448, 256), (480, 288)]
    small = [_Crop(0, 0, 30, 30, 60, 60), _Crop(0, 0, 30, 30, 60, 60),
             _Crop(0, 0, 30, 50, 60, 90)]
    groups = batch_groups(small)
    assert [(shape, len(g)) for shape, g in groups] == [((64, 96), 3)]
    # more of them would add more padding than a call costs: they keep their own call
    groups = batch_groups(small[:2] * 3 + small[2:])
    assert sorted((shape, len(g)) for shape, g in groups) == [((64, 64), 6), ((64, 96), 1)]


def test_regions_in_one_batch_find_what_they_find_one_by_one(astronaut, monkeypatch) -> None:
    """Crops of a crowd run as one batch give the same boxes as one call per crop."""
    import backend.detect.centerface as cf
    from backend.detect.schedule import Region
    from tests.faces import astronaut_face, background, paste

    frame = background(1280, 720, seed=5)
    regions, faces = [], []
    for k in range(12):
        x, y = 60 + 100 * k, 150 + 40 * (k % 5)
        face = paste(frame, astronaut_face(20 + 3 * k), x, y)
        faces.append(face)
        regions.append(Region(int(x - 30), int(y - 30), int(x + 60 + 3 * k),
                              int(y + 60 + 3 * k), 2.0 if k % 2 else 1.41, "refine"))
    det = CenterFaceDetector(provider="cpu", threshold=0.3)
    batched = det.detect_regions(frame, regions)
    monkeypatch.setattr(cf, "_MAX_BATCH", 1)
    single = det.detect_regions(frame, regions)
    assert len(batched) == len(single) >= 10
    np.testing.assert_allclose(np.sort(batched.xyxy, axis=0), np.sort(single.xyxy, axis=0),
                               atol=1e-3)
    assert (batched.origin == single.origin).all()
    assert sum(best_iou(batched, f) > 0.4 for f in faces) >= 10


# -- lanes: several network calls at once ----------------------------------------------------


def _crowd(seed: int) -> tuple[np.ndarray, list]:
    """A 1280x720 frame with eight small astronaut faces and the regions a schedule would
    give it: a coarse pass, a fine tile and refinement crops (several batch shapes)."""
    from backend.detect.schedule import Region
    from tests.faces import astronaut_face, background, paste

    rng = np.random.default_rng(seed)
    frame = background(1280, 720, seed=seed)
    regions = [Region(0, 0, 1280, 720, 0.35, "coarse"), Region(0, 0, 360, 288, 1.33, "fine")]
    for _ in range(8):
        x, y = int(rng.integers(40, 1200)), int(rng.integers(40, 640))
        px = int(rng.integers(14, 40))
        paste(frame, astronaut_face(px), x, y)
        regions.append(Region(max(0, x - px), max(0, y - px), x + 2 * px, y + 2 * px,
                              48 / px, "refine"))
    return frame, regions


@pytest.mark.parametrize("pooled", [False, True])
def test_lanes_give_every_caller_what_one_call_at_a_time_gives(pooled: bool) -> None:
    """threads=2: a frame's regions run on two lanes and two callers run at once, each
    thread with its own buffers and bound outputs; every result equals the one-at-a-time
    detector's, and no pooled buffer is left taken by a finished call."""
    frames = [_crowd(seed) for seed in range(6)]
    one = CenterFaceDetector(provider="cpu", threads=1, threshold=0.3)
    expected = [one.detect_regions(f, r) for f, r in frames]
    assert sum(len(d) for d in expected) >= 20
    pool = MemoryPool() if pooled else None
    det = CenterFaceDetector(provider="cpu", threads=2, threshold=0.3, pool=pool)
    assert det.lanes == 2 and one.lanes == 1
    got: dict[tuple[int, int], Detections] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def caller(k: int) -> None:
        try:
            start.wait(timeout=60)
            for rep in range(3):
                for i in range(k, len(frames), 2):
                    got[(i, rep)] = det.detect_regions(*frames[i])
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and len(got) == 3 * len(frames)
    for (i, _), dets in got.items():
        np.testing.assert_allclose(dets.xyxy, expected[i].xyxy, atol=1e-4)
        np.testing.assert_allclose(dets.confidence, expected[i].confidence, atol=1e-5)
        assert (dets.origin == expected[i].origin).all()
    alone = det.detect_regions(*frames[0])  # one caller: its largest batch runs on a lane
    np.testing.assert_allclose(alone.xyxy, expected[0].xyxy, atol=1e-4)
    assert det._helpers is not None
    det.close()
    if pool is not None:  # every thread's outputs go back to the pool with the detector
        del det
        gc.collect()
        assert pool.stats().in_use_mb == 0


def test_lanes_count_follows_threads() -> None:
    assert CenterFaceDetector(provider="cpu", threads=0).lanes == 1
    assert CenterFaceDetector(provider="cpu", threads=3).lanes == 3
    with pytest.raises(UsageError, match="threads"):
        CenterFaceDetector(provider="cpu", threads=-1)


def test_a_face_cut_by_a_crops_edge_is_grown_to_a_face_beyond_it() -> None:
    """A tile's edge inside the frame cuts a face: the network boxes the part inside, the
    box is grown beyond that edge to a face's proportions; an edge on the frame's own border
    cuts nothing more there is to mask, and a box clear of the edges is kept as it is."""
    from backend.detect.centerface import FACE_ASPECT, uncut

    crop = (100, 200, 500, 400)
    boxes = np.array([
        [300, 200, 320, 210],  # its chin: cut by the crop's top
        [100, 300, 105, 325],  # a sliver: cut by the crop's left side
        [300, 300, 320, 325],  # whole, inside
    ], np.float32)
    out = uncut(boxes, crop, (1280, 720))
    assert out[0][3] == 210 and out[0][1] == pytest.approx(210 - 20 * FACE_ASPECT)
    assert out[1][2] == 105 and out[1][0] == pytest.approx(105 - 25 / FACE_ASPECT)
    assert (out[2] == boxes[2]).all()
    # the same crop on the frame's top-left corner: nothing beyond those edges
    at_corner = uncut(boxes - [100, 200, 100, 200], (0, 0, 400, 200), (1280, 720))
    assert (at_corner == boxes - [100, 200, 100, 200]).all()
