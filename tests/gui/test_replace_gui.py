"""The app with the replace mask, offscreen: choose a model, see replaced faces in the
preview with the label, exempt a face by clicking it, refuse a bad model."""

from __future__ import annotations

import numpy as np
from PyQt6.QtCore import QPoint, QRectF, Qt

from backend.live import frame_is_raw
from backend.replace import disclosure
from tests import replace_models as rm
from tests.gui import test_app as _app
from tests.gui.test_app import _original, _shown, _wait_frames, _wait_settled
from tests.timing import WAIT_MS

# the app fixtures of test_app, shared (pytest finds fixtures by module attribute)
make_app = _app.make_app
app_ctl = _app.app_ctl


def _inverted(img: np.ndarray, orig: np.ndarray, box) -> float:
    x0, y0, x1, y1 = (float(v) for v in box)
    mx, my = (x1 - x0) * 0.35, (y1 - y0) * 0.35
    rows, cols = slice(int(y0 + my), int(y1 - my)), slice(int(x0 + mx), int(x1 - mx))
    return float(np.abs((255 - orig[rows, cols].astype(int)) - img[rows, cols]).mean())


def _choose(ctl, qtbot, path: str) -> None:
    ctl.window.controls.pick_replace_file("mask.replace_face", path)
    combo = ctl.window.controls.control("mask.type")
    combo.setCurrentIndex(combo.findData("replace"))


def test_choosing_a_model_replaces_faces_in_the_preview_and_exempt_still_works(
        qtbot, app_ctl, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    path = rm.dfm(models / "celeb.dfm", size=96)
    _wait_frames(qtbot, app_ctl, 3)
    app_ctl.toggle_running()  # paused: the last frame is re-processed on each change
    _wait_settled(qtbot, app_ctl)
    _choose(app_ctl, qtbot, str(path))
    qtbot.waitUntil(lambda: app_ctl.pipeline.settings.mask.type == "replace", timeout=WAIT_MS)
    box = app_ctl._reminder  # the one-line reminder, before the first use
    assert "agreed" in box.text()
    box.done(0)
    assert (tmp_path / "replace_reminder_dismissed").exists()
    assert app_ctl.config.settings.mask.replace_models_dir == str(models)  # remembered

    def replaced() -> bool:
        res = _shown(app_ctl)
        orig = _original(res.frame.index)
        faces = [t for t in res.tracks if not t.held_over and t.landmarks is not None]
        return bool(faces) and all(_inverted(res.frame.image, orig, t.box) < 25 for t in faces)

    qtbot.waitUntil(replaced, timeout=WAIT_MS)
    res = _shown(app_ctl)
    x0, y0, x1, y1 = disclosure.draw_label(res.frame.image.copy())
    patch = res.frame.image[y0:y1, x0:x1].max(axis=2)
    assert (patch > 240).sum() > 30  # the label, in the preview

    # click-to-exempt: that face is shown as it is, the others stay replaced
    from ui.preview import fit_rect

    track = max(res.tracks, key=lambda t: (t.box[2] - t.box[0]))
    cx, cy = float(track.box[0] + track.box[2]) / 2, float(track.box[1] + track.box[3]) / 2
    preview = app_ctl.window.preview
    h, w = res.frame.image.shape[:2]
    rect = fit_rect(w, h, QRectF(preview.rect()))
    pos = QPoint(int(rect.x() + cx * rect.width() / w), int(rect.y() + cy * rect.height() / h))
    qtbot.mouseClick(preview, Qt.MouseButton.LeftButton, pos=pos)
    qtbot.waitUntil(lambda: any(t.exempt for t in _shown(app_ctl).tracks), timeout=WAIT_MS)
    shown = _shown(app_ctl)
    orig = _original(shown.frame.index)
    ex = next(t for t in shown.tracks if t.exempt)
    assert frame_is_raw(shown.frame.image, orig, [ex.box])
    others = [t.box for t in shown.tracks if not t.exempt]
    assert others and not frame_is_raw(shown.frame.image, orig, others)


def test_a_bad_model_is_refused_in_the_status_bar(qtbot, app_ctl, tmp_path):
    bad = rm.wrong_signature(tmp_path / "wrong.dfm")
    _choose(app_ctl, qtbot, str(bad))
    qtbot.waitUntil(lambda: "expected a DFM model" in app_ctl.window.status_message,
                    timeout=WAIT_MS)
    assert app_ctl.pipeline.settings.mask.type != "replace"
    assert app_ctl.config.settings.mask.type != "replace"
