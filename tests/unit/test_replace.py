"""Face replacement through ``Masker.apply``: real ONNX models built with ``onnx.helper``
that have the real formats' inputs and outputs, pixels asserted."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from backend.mask import Masker
from backend.replace import COUNTS, FaceReplacer, ReplaceError, disclosure, load_source
from backend.replace.align import template
from backend.replace.merge import shape_mask
from backend.types import Track
from config.schema import MaskSettings
from tests import replace_models as rm
from tests.unit.test_replace_align import face_points


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    good = rm.dfm(d / "invert.dfm", size=96)
    return {
        "dfm": good,
        "dfm_morph": rm.dfm(d / "morph.dfm", size=96, morph=True),
        "dfm_fixed": rm.dfm(d / "fixed.dfm", size=96, batch=1),
        "nan": rm.dfm(d / "nan.dfm", size=64, out_value="nan"),
        "constant": rm.dfm(d / "constant.dfm", size=64, out_value="constant"),
        "wrong": rm.wrong_signature(d / "wrong.dfm"),
        "truncated": rm.truncated(good, d / "truncated.dfm"),
        "swap": rm.inswapper(d / "inswapper_128.onnx"),
        "arc": rm.arcface(d / "w600k_r50.onnx"),
        "text": _write(d / "notes.txt", b"hello"),
        "dir": d,
    }


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(autouse=True)
def _label_on():
    disclosure.set_label(True)
    yield
    disclosure.set_label(True)
    disclosure.note_replacing(False)  # later tests' files must not carry the tag


def frame(seed: int = 0, size: tuple[int, int] = (480, 320)) -> np.ndarray:
    """A textured BGR frame (smooth, so bilinear resampling stays close to the original)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(30, 225, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
    return cv2.resize(small, size, interpolation=cv2.INTER_CUBIC)


def face_track(tid: int, cx: float, cy: float, eye: float, **kw) -> Track:
    lm = face_points(cx, cy, eye).astype(np.float32)
    half = eye * 1.2
    box = np.array([cx - half, cy - half * 1.25, cx + half, cy + half * 1.25], np.float32)
    return Track(track_id=tid, box=box, velocity=np.zeros(4, np.float32), score=0.9,
                 landmarks=lm, **kw)


def settings(face: str, **kw) -> MaskSettings:
    return MaskSettings(type="replace", replace_face=str(face), **kw)


def label_box(img: np.ndarray) -> tuple[int, int, int, int]:
    return disclosure.draw_label(img.copy())


def expected_dfm(original: np.ndarray, track: Track, st: MaskSettings, size: int):
    """The DFM invert model's face warped back, and the final mask in frame space."""
    from backend.replace.align import align
    from backend.replace.merge import crop

    al = align(track.landmarks, template("whole_face"), size)
    c = crop(original, al.matrix, size).astype(np.float32) / 255.0
    face = ((1.0 - c) * 255 + 0.5).clip(0, 255).astype(np.uint8)
    m = shape_mask(np.ones((size, size), np.float32), st.replace_erode, st.replace_blur)
    h, w = original.shape[:2]
    inv = al.inverse()
    face_f = cv2.warpAffine(face, inv, (w, h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    m_f = cv2.warpAffine(m, inv, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    return face_f, m_f


# ------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("key, words", [
    ("wrong", ["expected a DFM model", "found inputs images [1,3,64,64]"]),
    ("truncated", ["expected a DFM model", "onnxruntime cannot load", "truncated"]),
    ("nan", ["expected finite face", "found NaN"]),
    ("constant", ["expected a varying face", "found a constant image"]),
    ("text", ["expected a DFM model", "inswapper", "face photo", "found"]),
])
def test_bad_files_are_refused_with_one_line_naming_them(models, key, words):
    with pytest.raises(ReplaceError) as exc:
        load_source(str(models[key]))
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(str(models[key]))
    for w in words:
        assert w in msg
    assert exc.value.exit_code == 2


def test_missing_file_folder_and_empty_setting_are_refused(models):
    with pytest.raises(ReplaceError, match="not found"):
        load_source(str(models["dir"] / "absent.dfm"))
    with pytest.raises(ReplaceError, match="found a folder"):
        load_source(str(models["dir"]))
    with pytest.raises(ReplaceError, match="replace_face is empty"):
        load_source("  ")


def test_photo_without_a_face_is_refused(tmp_path):
    path = tmp_path / "wall.png"
    cv2.imwrite(str(path), np.full((200, 200, 3), 128, np.uint8))
    with pytest.raises(ReplaceError, match="expected a photo with a face, found none"):
        load_source(str(path))
    bad = _write(tmp_path / "broken.jpg", b"not a jpeg")
    with pytest.raises(ReplaceError, match="cannot be decoded as an image"):
        load_source(str(bad))


def test_inswapper_needs_its_photo_and_recognition_model(models, tmp_path):
    with pytest.raises(ReplaceError, match="needs --source-face PHOTO .* and --recognition-model"):
        load_source(str(models["swap"]))
    with pytest.raises(ReplaceError, match="expected an ArcFace recognition model"):
        load_source(str(models["swap"]), source_face="demo",
                    recognition_model=str(models["wrong"]))


def test_dfm_signature_resolution_morph_and_batch_are_read_from_the_model(models):
    src = load_source(str(models["dfm"]))
    assert (src.kind, src.size, src.batch, src.has_morph) == ("dfm", 96, 0, False)
    assert load_source(str(models["dfm_morph"]), morph=0.3).has_morph
    assert load_source(str(models["dfm_fixed"])).batch == 1


# ---------------------------------------------------------------------------- DFM pixels
@pytest.mark.parametrize("key", ["dfm", "dfm_morph", "dfm_fixed"])
def test_two_faces_are_replaced_by_the_models_output_and_nothing_else_changes(models, key):
    st = settings(models[key])
    masker = Masker(st)
    original = frame()
    tracks = [face_track(1, 140, 150, 40), face_track(2, 340, 140, 30)]
    out = masker.apply(original.copy(), tracks)
    touched = np.zeros(original.shape[:2], bool)
    for t in tracks:
        face_f, m_f = expected_dfm(original, t, st, 96)
        core = m_f > 0.98
        assert core.sum() > 1500
        diff = np.abs(out.astype(int) - face_f.astype(int))[core]
        assert np.percentile(diff, 99) <= 6  # the model's output, warped back
        assert np.abs(out.astype(int) - (255 - original.astype(int)))[core].mean() < 8
        touched |= m_f > 0
    x0, y0, x1, y1 = label_box(original)
    touched[y0:y1, x0:x1] = True
    assert np.array_equal(out[~touched], original[~touched])  # outside: unchanged
    # the label is drawn: a dark box with white text, bottom-left
    patch = out[y0:y1, x0:x1]
    assert (patch.max(axis=2) > 240).sum() > 30 and (patch.max(axis=2) < 40).sum() > 200
    assert x0 < 30 and y1 > original.shape[0] - 30
    assert masker.replace_counts == (2, 0)


def test_label_off_only_by_the_explicit_setting(models, caplog):
    st = settings(models["dfm"])
    original = frame()
    disclosure.set_label(False)
    out = Masker(st).apply(original.copy(), [face_track(1, 140, 150, 40)])
    x0, y0, x1, y1 = label_box(original)
    assert np.array_equal(out[y0:y1, x0:x1], original[y0:y1, x0:x1])
    assert "label is off" in caplog.text or disclosure._said_off


def test_exempt_faces_stay_visible(models):
    original = frame()
    t = face_track(1, 140, 150, 40, exempt=True)
    out = Masker(settings(models["dfm"])).apply(original.copy(), [t])
    assert np.array_equal(out, original)  # no face replaced: no label either


def test_faces_that_cannot_be_replaced_get_the_irreversible_mask(models):
    st = settings(models["dfm"])
    original = frame()
    held = face_track(1, 140, 150, 40, frames_since_seen=2)  # stale landmarks
    no_lm = face_track(2, 340, 140, 30)
    no_lm.landmarks = None
    cut = face_track(3, 240, 300, 40)  # mouth below the frame edge
    masker = Masker(st)
    before = COUNTS.snapshot()
    out = masker.apply(original.copy(), [held, no_lm, cut])
    ref = Masker(st.model_copy(update={"type": "pixelate"})).apply(
        original.copy(), [held, no_lm, cut])
    assert np.array_equal(out, ref)  # exactly the pixelate mask, no label
    after = COUNTS.snapshot()
    assert after[1] - before[1] == 1  # only the detected face counts as a failed replacement
    solid = Masker(st.model_copy(update={"fail_closed": "solid", "color": (0, 0, 255)}))
    out = solid.apply(original.copy(), [no_lm])
    x0, y0, x1, y1 = (int(v) for v in no_lm.box)
    assert (out[y0 + 5:y1 - 5, x0 + 10:x1 - 10] == (0, 0, 255)).all()


def test_a_model_failing_at_run_time_fails_closed_per_face(models, tmp_path):
    import onnx

    model = onnx.load(str(models["dfm"]))
    # a batch the graph declares as dynamic but computes as 1: two faces make it fail
    from onnx import helper, numpy_helper

    g = model.graph
    g.initializer.append(numpy_helper.from_array(np.array([1, 96, 96, 3], np.int64), "b1"))
    g.node.insert(0, helper.make_node("Reshape", ["in_face:0", "b1"], ["in_face_1"]))
    for node in g.node[1:]:
        node.input[:] = ["in_face_1" if i == "in_face:0" else i for i in node.input]
    path = tmp_path / "batch1.dfm"
    onnx.save(model, str(path))
    st = settings(path)
    original = frame()
    tracks = [face_track(1, 140, 150, 40), face_track(2, 340, 140, 30)]
    out = Masker(st).apply(original.copy(), tracks)
    ref = Masker(st.model_copy(update={"type": "pixelate"})).apply(original.copy(), tracks)
    assert np.array_equal(out, ref)


def test_a_nan_face_at_run_time_falls_back(models):
    src = load_source(str(models["dfm"]))
    rep = FaceReplacer(settings(models["dfm"]), source=src)
    rep._run = lambda crops: (np.full(crops.shape, np.nan, np.float32), None)
    img = frame()
    assert rep.replace(img, [face_track(1, 140, 150, 40)]) == [False]


def test_a_fragment_inside_a_replaced_face_is_covered_not_masked(models):
    st = settings(models["dfm"])
    original = frame()
    big = face_track(1, 200, 160, 50)
    inner = face_track(2, 200, 165, 10)  # a weak second detection inside the big face
    inner.landmarks = None
    masker = Masker(st)
    out = masker.apply(original.copy(), [inner, big])
    alone = Masker(st).apply(original.copy(), [big])
    assert np.array_equal(out, alone)


# ---------------------------------------------------------------------- inswapper, photo
def test_inswapper_output_depends_on_the_source_face(models, tmp_path, astronaut):
    photo, _ = astronaut
    ast = tmp_path / "astronaut.png"
    cv2.imwrite(str(ast), photo)
    original = frame()
    t = face_track(1, 200, 160, 40)
    outs = []
    for face in ("demo", str(ast)):
        st = settings(models["swap"], source_face=face, recognition_model=str(models["arc"]))
        outs.append(Masker(st).apply(original.copy(), [t]))
    x0, y0, x1, y1 = (int(v) for v in t.box)
    a, b = (o[y0:y1, x0:x1].astype(int) for o in outs)
    assert np.abs(a - b).mean() > 10  # two identities, two different faces
    assert np.abs(a - original[y0:y1, x0:x1]).mean() > 10
    src = load_source(str(models["swap"]), source_face="demo",
                      recognition_model=str(models["arc"]))
    assert src.kind == "inswapper" and src.size == 128 and src.batch == 1
    assert np.linalg.norm(src.latent) == pytest.approx(1.0, abs=1e-5)


def test_photo_mode_puts_the_photos_face_on_the_tracked_face():
    st = settings("demo")
    original = frame()
    t = face_track(1, 200, 160, 50)
    out = Masker(st).apply(original.copy(), [t])
    src = load_source("demo")
    assert src.kind == "photo"
    x0, y0, x1, y1 = (int(v) for v in t.box)
    assert np.abs(out[y0:y1, x0:x1].astype(int) - original[y0:y1, x0:x1]).mean() > 8
    # colour transfer (auto = rct for photos): the grey photo takes the frame's colours
    face = out[int(t.landmarks[0, 1]):int(t.landmarks[3, 1]),
               int(t.landmarks[0, 0]):int(t.landmarks[1, 0])].astype(float)
    assert np.abs(face[..., 0] - face[..., 2]).mean() > 3


def test_recorder_tags_files_while_replacing(tmp_path):
    import av

    from backend.sinks import VideoRecorder
    from backend.types import Frame

    for replacing, name in ((True, "tagged.mp4"), (False, "plain.mp4")):
        disclosure.note_replacing(replacing)
        rec = VideoRecorder(tmp_path / name, fps=10, size=(64, 48))
        rec.write(Frame(0, 0.0, np.zeros((48, 64, 3), np.uint8)))
        rec.close()
        with av.open(str(tmp_path / name)) as c:
            meta = dict(c.metadata)
        assert (meta.get("ptim_faces_replaced") == "true") is replacing
        assert ("synthetic" in meta.get("comment", "")) is replacing
    disclosure.note_replacing(False)
