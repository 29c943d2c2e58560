"""Widget tests (pytest-qt, offscreen): preview, control panel, dashboard, main window."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PyQt6.QtCore import QPoint, QPointF, Qt
from PyQt6.QtGui import QColor
from PyQt6.QtWidgets import QApplication, QDoubleSpinBox, QSpinBox

from backend.memory import PoolStats
from backend.metrics import STAGES, MetricsSnapshot, StageStats
from backend.types import Track
from config.schema import MaskSettings, Settings, TrackerSettings
from tests.timing import WAIT_MS, budget
from ui.controls import ControlPanel, field_bounds, section_field
from ui.main_window import MainWindow, ShortcutsDialog
from ui.preview import EXEMPT_LABEL, PreviewWidget, fit_rect

RED_BGR = (0, 0, 255)
BLUE_BGR = (255, 0, 0)


def _red_blue_frame(w: int = 200, h: int = 100) -> np.ndarray:
    """Red left half, blue right half (BGR)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = RED_BGR
    img[:, w // 2 :] = BLUE_BGR
    return img


def _rgb(color: QColor) -> tuple[int, int, int]:
    return color.red(), color.green(), color.blue()


def _close(c: tuple[int, int, int], expected: tuple[int, int, int], tol: int = 12) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(c, expected, strict=True))


def _track(tid: int, box: tuple[float, float, float, float], exempt: bool = False) -> Track:
    return Track(tid, np.array(box, np.float32), np.zeros(4, np.float32), 0.9, exempt=exempt)


def _snapshot(i: int, gpu: float | None = None, rss: float = 300.0) -> MetricsSnapshot:
    stages = {s: StageStats(s, 1.0 + k, 2.0 + k, 1.5, i) for k, s in enumerate(STAGES)}
    return MetricsSnapshot(
        time=1000.0 + i * 0.25, input_fps=30.0, output_fps=29.0, stages=stages,
        e2e_p50_ms=40.0, e2e_p95_ms=55.0, frames_in=i * 8, frames_out=i * 8,
        dropped_frames=i, fail_closed_frames=0, faces=i, faces_per_frame=1.0,
        cpu_percent=50.0, rss_mb=rss, pool=PoolStats(512, 40, 80, 10, 90, 0, 0),
        gpu_memory_mb=gpu, recoveries={"io.restart": 2}, recovery_total=2,
    )


# -- preview ------------------------------------------------------------------------------
@pytest.fixture
def preview(qtbot) -> PreviewWidget:
    widget = PreviewWidget()
    qtbot.addWidget(widget)
    widget.resize(400, 300)
    widget.show()
    qtbot.waitExposed(widget, timeout=WAIT_MS)
    return widget


def test_preview_paints_frame_letterboxed(preview: PreviewWidget) -> None:
    preview.show_frame(_red_blue_frame())  # 2:1 in 4:3 -> 400x200 image, bars of 50 px
    image = preview.grab().toImage()
    assert _close(_rgb(image.pixelColor(100, 150)), (255, 0, 0))
    assert _close(_rgb(image.pixelColor(300, 150)), (0, 0, 255))
    for y in (10, 40, 260, 290):  # top and bottom bars stay dark
        assert max(_rgb(image.pixelColor(200, y))) < 40


def test_preview_side_by_side_labels_and_original(preview: PreviewWidget) -> None:
    original = np.full((100, 200, 3), (0, 255, 0), np.uint8)  # green
    preview.set_show_original(True)
    preview.show_frame(_red_blue_frame(), original)
    image = preview.grab().toImage()
    orig_rect, orig_band, masked_rect, masked_band = preview._layout()
    assert orig_rect.right() < masked_rect.left()  # original on the left
    c = orig_rect.center()
    assert _close(_rgb(image.pixelColor(int(c.x()), int(c.y()))), (0, 255, 0))
    assert not orig_band.isEmpty() and not masked_band.isEmpty()
    # Turning it off drops the original: the masked frame fills the widget again.
    preview.set_show_original(False)
    assert preview._original is None
    image = preview.grab().toImage()
    assert _close(_rgb(image.pixelColor(100, 150)), (255, 0, 0))


def test_preview_original_not_kept_when_not_shown(preview: PreviewWidget) -> None:
    preview.show_frame(_red_blue_frame(), np.zeros((100, 200, 3), np.uint8))
    assert preview._original is None


@pytest.mark.parametrize(
    ("pos", "expected"),
    [((100, 150), (50.0, 50.0)), ((0, 50), (0.0, 0.0)), ((300, 200), (150.0, 75.0))],
)
def test_preview_click_maps_to_frame(qtbot, preview: PreviewWidget, pos, expected) -> None:
    preview.show_frame(_red_blue_frame())
    with qtbot.waitSignal(preview.frame_clicked, timeout=WAIT_MS) as blocker:
        qtbot.mouseClick(preview, Qt.MouseButton.LeftButton, pos=QPoint(*pos))
    assert blocker.args == pytest.approx(list(expected), abs=0.6)


def test_preview_click_in_letterbox_emits_nothing(qtbot, preview: PreviewWidget) -> None:
    preview.show_frame(_red_blue_frame())
    with qtbot.assertNotEmitted(preview.frame_clicked):
        qtbot.mouseClick(preview, Qt.MouseButton.LeftButton, pos=QPoint(200, 20))
        qtbot.mouseClick(preview, Qt.MouseButton.LeftButton, pos=QPoint(200, 280))


def test_preview_click_side_by_side_maps_masked_pane(qtbot, preview: PreviewWidget) -> None:
    preview.set_show_original(True)
    preview.show_frame(_red_blue_frame(), _red_blue_frame())
    masked = preview._layout()[2]
    centre = masked.center()
    with qtbot.waitSignal(preview.frame_clicked, timeout=WAIT_MS) as blocker:
        qtbot.mouseClick(preview, Qt.MouseButton.LeftButton,
                         pos=QPoint(round(centre.x()), round(centre.y())))
    assert blocker.args == pytest.approx([100.0, 50.0], abs=1.5)
    with qtbot.assertNotEmitted(preview.frame_clicked):  # the original is not clickable
        orig = preview._layout()[0].center()
        qtbot.mouseClick(preview, Qt.MouseButton.LeftButton,
                         pos=QPoint(round(orig.x()), round(orig.y())))


def test_preview_painted_signal_and_time(qtbot, preview: PreviewWidget) -> None:
    with qtbot.waitSignal(preview.painted, timeout=WAIT_MS) as blocker:
        preview.show_frame(_red_blue_frame(), tag=1234.5)
    assert blocker.args == [1234.5]
    assert preview.last_painted_frame_time is not None
    # A repaint of the same frame (resize) does not report it again.
    with qtbot.assertNotEmitted(preview.painted):
        preview.repaint()


def test_preview_placeholder(preview: PreviewWidget) -> None:
    preview.show_frame(_red_blue_frame())
    preview.set_placeholder("Loading face detector...")
    assert preview.placeholder == "Loading face detector..."
    image = preview.grab().toImage()
    assert not _close(_rgb(image.pixelColor(100, 150)), (255, 0, 0))  # frame is gone
    assert preview.map_to_frame(QPointF(100, 150)) is None
    preview.show_frame(_red_blue_frame())
    assert preview.placeholder is None


def test_preview_exempt_outline_and_boxes(preview: PreviewWidget) -> None:
    frame = np.full((100, 200, 3), 128, np.uint8)
    tracks = [_track(1, (20, 20, 80, 80), exempt=True), _track(2, (120, 20, 180, 80))]
    preview.show_frame(frame, tracks=tracks)
    image = preview.grab().toImage()
    # Exempt box edge (x = 20 frame px -> 40 widget px) is drawn in the exempt colour.
    edge = _rgb(image.pixelColor(40, 50 + 100))
    assert edge != (128, 128, 128)
    # Masked track: no outline unless boxes are on.
    assert _close(_rgb(image.pixelColor(240, 150)), (128, 128, 128), tol=2)
    preview.set_show_boxes(True)
    image = preview.grab().toImage()
    assert not _close(_rgb(image.pixelColor(240, 150)), (128, 128, 128), tol=2)
    assert EXEMPT_LABEL == "visible (click to mask)"


def test_preview_rejects_bad_arrays(preview: PreviewWidget) -> None:
    with pytest.raises(ValueError):
        preview.show_frame(np.zeros((10, 10, 3), np.float32))


def test_preview_non_contiguous_frame(preview: PreviewWidget) -> None:
    big = _red_blue_frame(400, 100)
    view = big[:, ::2]  # strided view: copied once, still painted correctly
    preview.show_frame(view)
    image = preview.grab().toImage()
    assert _close(_rgb(image.pixelColor(100, 150)), (255, 0, 0))


def test_fit_rect() -> None:
    from PyQt6.QtCore import QRectF

    r = fit_rect(200, 100, QRectF(0, 0, 400, 300))
    assert (r.x(), r.y(), r.width(), r.height()) == (0, 50, 400, 200)


# -- control panel ------------------------------------------------------------------------
@pytest.fixture
def panel(qtbot) -> ControlPanel:
    widget = ControlPanel()
    qtbot.addWidget(widget)
    widget.show()
    return widget


def test_panel_set_settings_does_not_emit(qtbot, panel: ControlPanel) -> None:
    settings = Settings(
        tracker=TrackerSettings(hold_frames=20, smoothing=0.3),
        mask=MaskSettings(type="blur", color=(10, 20, 30)),
    )
    with qtbot.assertNotEmitted(panel.settings_changed, wait=300):
        panel.set_settings(settings)
    assert panel.control("tracker.hold_frames").value() == 20
    assert panel.control("tracker.smoothing").value() == pytest.approx(0.3)
    assert panel.control("mask.type").currentText() == "blur"
    assert panel.control("mask.color").text() == "10, 20, 30"  # B, G, R
    assert "#1e140a" in panel.control("mask.color").styleSheet()  # swatch in RGB


def test_panel_spinbox_emits_debounced(qtbot, panel: ControlPanel) -> None:
    panel.set_settings(Settings())
    spin = panel.control("tracker.hold_frames")
    with qtbot.waitSignal(panel.settings_changed, timeout=WAIT_MS) as blocker:
        spin.setValue(12)
        spin.setValue(13)  # within the debounce window: one emission, last value
    assert blocker.args == [{"tracker.hold_frames": 13}]


def test_panel_double_spinbox_emits(qtbot, panel: ControlPanel) -> None:
    spin = panel.control("detector.threshold")
    with qtbot.waitSignal(panel.settings_changed, timeout=WAIT_MS) as blocker:
        spin.setValue(0.55)
    assert blocker.args[0] == {"detector.threshold": pytest.approx(0.55)}


def test_panel_combo_and_checkbox_emit_at_once(qtbot, panel: ControlPanel) -> None:
    combo = panel.control("mask.type")
    got: list[dict] = []
    panel.settings_changed.connect(got.append)
    combo.setCurrentIndex(combo.findData("solid"))
    assert got == [{"mask.type": "solid"}]  # at once: no event loop ran in between
    assert panel._bindings["mask.color"].row.isEnabled()
    assert not panel._bindings["mask.pixel_blocks"].row.isEnabled()
    panel.control("output.keep_audio").setChecked(True)
    assert got[1:] == [{"output.keep_audio": True}]


def test_panel_input_size_combo(qtbot, panel: ControlPanel) -> None:
    combo = panel.control("detector.input_size")
    assert [combo.itemText(i) for i in range(combo.count())] == [
        "auto", "320x192", "480x288", "640x384", "960x544"]
    assert combo.isEditable()
    with qtbot.waitSignal(panel.settings_changed, timeout=WAIT_MS) as blocker:
        combo.lineEdit().setText("800x448")
        combo.lineEdit().editingFinished.emit()
    assert blocker.args == [{"detector.input_size": "800x448"}]
    with qtbot.assertNotEmitted(panel.settings_changed, wait=300):
        combo.lineEdit().setText("big")
        combo.lineEdit().editingFinished.emit()
    assert "border" in combo.styleSheet()  # invalid input is marked, not sent


@pytest.mark.parametrize(
    "key",
    ["detector.min_face_px", "detector.fine_period", "detector.threshold",
     "tracker.hold_frames", "tracker.smoothing", "mask.scale",
     "mask.pixel_blocks", "mask.blur_strength", "mask.feather", "performance.memory_warning_mb",
     "performance.memory_critical_mb"],
)
def test_panel_ranges_match_schema(panel: ControlPanel, key: str) -> None:
    section, name = key.split(".")
    field = section_field(section, name)
    lo, hi = field_bounds(field)
    spin = panel.control(key)
    assert isinstance(spin, QSpinBox | QDoubleSpinBox)
    assert spin.minimum() == pytest.approx(lo)
    assert spin.maximum() == pytest.approx(hi)
    assert spin.toolTip() == field.description


def test_panel_covers_listed_keys(panel: ControlPanel) -> None:
    assert set(panel.keys()) == {
        "detector.min_face_px", "detector.fine_period", "quality.model_quality",
        "detector.threshold", "detector.input_size", "tracker.hold_frames",
        "tracker.smoothing", "mask.type", "mask.shape", "mask.scale", "mask.pixel_blocks",
        "mask.blur_strength", "mask.feather", "mask.image_path", "mask.color",
        "mask.replace_face", "mask.source_face", "mask.recognition_model", "mask.replace_morph",
        "mask.replace_color_transfer", "mask.replace_opacity",
        "output.keep_audio", "performance.memory_warning_mb", "performance.memory_critical_mb",
    }


def test_panel_schedule_controls(qtbot, panel: ControlPanel) -> None:
    face = panel.control("detector.min_face_px")
    assert isinstance(face, QDoubleSpinBox)
    assert face.value() == 12 and face.singleStep() == 1 and face.decimals() == 0
    period = panel.control("detector.fine_period")
    assert isinstance(period, QSpinBox) and period.value() == 16
    quality = panel.control("quality.model_quality")
    assert [quality.itemText(i) for i in range(quality.count())] == [
        "auto", "fast", "balanced", "accurate"]
    assert quality.currentText() == "auto"
    with qtbot.waitSignal(panel.settings_changed, timeout=WAIT_MS) as blocker:
        face.setValue(20)
    assert blocker.args == [{"detector.min_face_px": 20.0}]


def test_panel_schedule_rows_disabled_under_an_override(qtbot, panel: ControlPanel) -> None:
    face = panel.control("detector.min_face_px")
    assert face.isEnabled()
    with qtbot.waitSignal(panel.settings_changed, timeout=WAIT_MS):
        panel.control("quality.model_quality").setCurrentText("balanced")
    assert not face.isEnabled() and "Not applied" in face.toolTip()
    panel.set_settings(Settings())
    assert face.isEnabled()
    s = Settings()
    panel.set_settings(s.model_copy(update={"detector": s.detector.model_copy(
        update={"input_size": "640x384"})}))
    assert not panel.control("detector.fine_period").isEnabled()


def test_panel_sources_and_outputs(qtbot, panel: ControlPanel) -> None:
    panel.set_sources([("camera:0", "Camera 0 - Integrated (1280x720)"), ("demo", "Demo clip")])
    assert panel.source_combo.count() == 2
    with qtbot.waitSignal(panel.source_requested, timeout=WAIT_MS) as blocker:
        panel.source_combo.activated.emit(1)
    assert blocker.args == ["demo"]
    panel.set_current_source("/videos/clip.mp4")
    assert panel.current_source() == "/videos/clip.mp4"
    assert panel.source_combo.currentText() == "clip.mp4"

    with qtbot.waitSignal(panel.record_toggled, timeout=WAIT_MS) as blocker:
        qtbot.mouseClick(panel.record_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [True]
    panel.set_recording(True, 65.2)
    assert "01:05" in panel.record_button.text()
    with qtbot.assertNotEmitted(panel.record_toggled):
        panel.set_recording(False)
    assert panel.record_button.text() == "Record" and not panel.record_button.isChecked()

    with qtbot.waitSignal(panel.virtual_camera_toggled, timeout=WAIT_MS) as blocker:
        panel.virtual_camera_check.click()  # as a user click: emits clicked
    assert blocker.args == [True]
    with qtbot.assertNotEmitted(panel.virtual_camera_toggled):
        panel.set_virtual_camera_state(False, "No virtual camera device (install v4l2loopback)")
    assert not panel.virtual_camera_check.isChecked()
    assert panel._vcam_message.isVisibleTo(panel)


# -- dashboard ----------------------------------------------------------------------------
@pytest.fixture
def dashboard(qtbot):
    from ui.dashboard import DashboardWidget

    widget = DashboardWidget()
    qtbot.addWidget(widget)
    return widget


def test_dashboard_push_then_redraw(qtbot, dashboard) -> None:
    for i in range(20):
        dashboard.push(_snapshot(i))
    assert len(dashboard.curves["input_fps"].yData or []) == 0  # push does not draw
    dashboard.redraw()
    for key in ("input_fps", "output_fps", "detect_p95", "e2e_p50", "dropped", "cpu", "rss",
                "pool_in_use", "pool_reuse", "recoveries"):
        assert len(dashboard.curves[key].yData) == 20, key
    x = dashboard.curves["dropped"].xData
    assert x[-1] == 0 and x[0] == pytest.approx(-19 * 0.25)
    assert dashboard.curves["dropped"].yData[-1] == 19
    assert "29.0" in dashboard.header["fps"].text()
    assert not dashboard.gpu_plot_shown


def test_dashboard_ring_buffer_keeps_history_window(dashboard) -> None:
    for i in range(3000):  # 750 s at 4 Hz: only the last 120 s are drawn
        dashboard.push(_snapshot(i))
    dashboard.redraw()
    x = dashboard.curves["cpu"].xData
    assert x[0] >= -dashboard.history_s and len(x) == int(dashboard.history_s / 0.25) + 1


def test_dashboard_timer_only_while_visible(qtbot, dashboard) -> None:
    assert not dashboard.timer_active
    dashboard.show()
    qtbot.waitExposed(dashboard, timeout=WAIT_MS)
    assert dashboard.timer_active
    dashboard.hide()
    assert not dashboard.timer_active


def test_dashboard_memory_lines_and_colour(dashboard) -> None:
    assert dashboard.memory_limits == (400.0, 800.0)
    dashboard.set_memory_limits(500, 900)
    assert dashboard.memory_limits == (500.0, 900.0)
    dashboard.push(_snapshot(0, rss=600))
    dashboard.redraw()
    assert dashboard.rss_level == "warning"
    dashboard.push(_snapshot(1, rss=950))
    dashboard.redraw()
    assert dashboard.rss_level == "critical"


def test_dashboard_counts_faces_masked_instead_of_replaced(dashboard) -> None:
    from dataclasses import replace

    dashboard.push(_snapshot(0))
    dashboard.redraw()
    assert "replaced" not in dashboard.header["fail_closed"].text()  # no replacement running
    dashboard.push(replace(_snapshot(1), faces_replaced=40, replace_fallbacks=3))
    dashboard.redraw()
    text = dashboard.header["fail_closed"].text()
    assert "replaced 40" in text and "masked instead" in text and "3</b>" in text


def test_metrics_snapshot_reads_the_replacement_counts() -> None:
    from backend.metrics import Metrics
    from backend.replace import COUNTS

    before = COUNTS.snapshot()
    COUNTS.add(2, 1)
    snap = Metrics().snapshot()
    assert (snap.faces_replaced, snap.replace_fallbacks) == (before[0] + 2, before[1] + 1)


def test_dashboard_gpu_plot_and_buttons(qtbot, dashboard) -> None:
    dashboard.push(_snapshot(0, gpu=128.0))
    dashboard.redraw()
    assert dashboard.gpu_plot_shown
    with qtbot.waitSignal(dashboard.free_caches_requested, timeout=WAIT_MS):
        _button(dashboard, "Free caches").click()
    with qtbot.waitSignal(dashboard.reset_requested, timeout=WAIT_MS):
        _button(dashboard, "Reset stats").click()
    y = dashboard.curves["cpu"].yData
    assert y is None or len(y) == 0  # reset clears the history


def test_dashboard_shows_protection_and_degradation(dashboard) -> None:
    dashboard.set_protection(12.0, 6)
    assert "12 px" in dashboard.header["faces"].text()
    assert "<b>6</b> frames" in dashboard.header["faces"].text()
    assert dashboard.degrade_text == ""
    dashboard.set_protection(12.0, 9, note="fine pass slowed to 9 frames (machine busy)")
    assert dashboard.degrade_text == "fine pass slowed to 9 frames (machine busy)"
    dashboard.clear()  # reset stats keeps the schedule's state
    assert "12 px" in dashboard.header["faces"].text()
    dashboard.set_protection(34.3, 0, override="model quality balanced")
    assert "34 px" in dashboard.header["faces"].text()
    assert "balanced" in dashboard.header["faces"].text() and dashboard.degrade_text == ""


def _button(widget, text: str):
    from PyQt6.QtWidgets import QPushButton

    return next(b for b in widget.findChildren(QPushButton) if b.text() == text)


# -- main window --------------------------------------------------------------------------
@pytest.fixture
def window(qtbot) -> MainWindow:
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win, timeout=WAIT_MS)
    win.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=WAIT_MS)
    return win


def test_window_builds_fast_without_pyqtgraph(qtbot) -> None:
    import time

    start = time.perf_counter()
    win = MainWindow()
    elapsed = time.perf_counter() - start
    qtbot.addWidget(win)
    assert elapsed < budget(0.3)
    assert win.windowTitle() == "PlayaTews Identity Masker"
    assert win.dashboard is None and win.dashboard_dock.isHidden()


def test_ui_imports_no_pyqtgraph_cv2_or_onnxruntime() -> None:
    import subprocess

    code = (
        "import sys, ui; from ui import MainWindow; print('pyqtgraph' in sys.modules); "
        "from ui.dashboard import DashboardWidget; "
        "print(any(m in sys.modules for m in ('cv2', 'onnxruntime', 'backend.pipeline')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False"]


def test_window_ctrl_p_toggles_dashboard(qtbot, window: MainWindow) -> None:
    assert window.dashboard_dock.isHidden() and not window.dashboard_visible()
    qtbot.keyClick(window, Qt.Key.Key_P, Qt.KeyboardModifier.ControlModifier)
    assert window.dashboard is not None and not window.dashboard_dock.isHidden()
    assert window.dashboard_visible()
    assert window.dashboard.timer_active
    assert window.menu_actions["dashboard"].isChecked()
    qtbot.keyClick(window, Qt.Key.Key_P, Qt.KeyboardModifier.ControlModifier)
    assert window.dashboard_dock.isHidden() and not window.dashboard_visible()
    assert not window.dashboard.timer_active  # hidden dashboard costs nothing
    assert not window.menu_actions["dashboard"].isChecked()


def test_window_replays_metrics_into_new_dashboard(window: MainWindow) -> None:
    for i in range(5):
        window.push_metrics(_snapshot(i))
    window.set_dashboard_visible(True)
    window.dashboard.redraw()
    assert len(window.dashboard.curves["cpu"].yData) == 5


EXPECTED_SHORTCUTS = {
    "open_file": "Ctrl+O",
    "open_folder": "Ctrl+Shift+O",
    "quit": "Ctrl+Q",
    "start_stop": "Space",
    "record": "R",
    "cycle_mask": "M",
    "fullscreen": "F11",
    "dashboard": "Ctrl+P",
    "shortcuts": "F1",
}


def test_window_menu_shortcuts(window: MainWindow) -> None:
    in_menus = {}
    for top in window.menuBar().actions():
        for action in top.menu().actions():
            in_menus[action.text()] = action
    for name, keys in EXPECTED_SHORTCUTS.items():
        action = window.menu_actions[name]
        assert action.shortcut().toString() == keys, name
        assert action.text() in in_menus, name  # reachable (and displayed) in a menu
    assert window.menu_actions["show_original"].text() in in_menus
    assert window.menu_actions["demo"].text() in in_menus


def test_window_f1_lists_every_shortcut(qtbot, window: MainWindow) -> None:
    qtbot.keyClick(window, Qt.Key.Key_F1)
    dialog = window.findChild(ShortcutsDialog)
    assert dialog is not None and dialog.isVisible()
    shown = {keys for _name, keys in dialog.rows()}
    for name, action in window.menu_actions.items():
        if not action.shortcut().isEmpty() and name != "leave_fullscreen":
            assert action.shortcut().toString() in shown, name
    assert "Esc" in shown
    dialog.close()


def test_window_space_with_spinbox_focus(qtbot, window: MainWindow) -> None:
    spin = window.controls.control("tracker.hold_frames")
    spin.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is spin, timeout=WAIT_MS)
    before = spin.value()
    with qtbot.waitSignal(window.start_stop_requested, timeout=WAIT_MS):
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Space)
    assert spin.value() == before
    with qtbot.waitSignal(window.record_requested, timeout=WAIT_MS):  # letters pass too
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_R)
    with qtbot.assertNotEmitted(window.start_stop_requested):  # digits still type
        qtbot.keyClicks(QApplication.focusWidget(), "5")


@pytest.mark.parametrize("key", ["mask.type", "output.keep_audio", "detector.input_size"])
def test_window_space_with_other_controls_focused(qtbot, window: MainWindow, key: str) -> None:
    control = window.controls.control(key)
    control.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is not None, timeout=WAIT_MS)
    checked = getattr(control, "isChecked", lambda: None)()
    with qtbot.waitSignal(window.start_stop_requested, timeout=WAIT_MS):
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Space)
    assert getattr(control, "isChecked", lambda: None)() == checked


def test_window_space_types_in_free_text(qtbot, window: MainWindow) -> None:
    window.controls.set_settings(Settings(mask=MaskSettings(type="image")))
    edit = window.controls.control("mask.image_path")
    edit.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is edit, timeout=WAIT_MS)
    with qtbot.assertNotEmitted(window.start_stop_requested):
        qtbot.keyClicks(edit, "a b")
    assert edit.text() == "a b"


def test_window_single_key_actions(qtbot, window: MainWindow) -> None:
    window.preview.setFocus()
    with qtbot.waitSignal(window.record_requested, timeout=WAIT_MS):
        qtbot.keyClick(window, Qt.Key.Key_R)
    with qtbot.waitSignal(window.mask_cycle_requested, timeout=WAIT_MS):
        qtbot.keyClick(window, Qt.Key.Key_M)
    with qtbot.waitSignal(window.settings_changed, timeout=WAIT_MS) as blocker:
        qtbot.keyClick(window, Qt.Key.Key_O)
    assert blocker.args == [{"ui.show_original": True}]
    assert window.preview.show_original


def test_window_fullscreen_and_escape(qtbot, window: MainWindow) -> None:
    qtbot.keyClick(window, Qt.Key.Key_F11)
    assert window.is_preview_fullscreen
    assert window.menuBar().isHidden() and window.controls_dock.isHidden()
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert not window.is_preview_fullscreen
    assert not window.menuBar().isHidden() and not window.controls_dock.isHidden()


def test_window_state_setters(qtbot, window: MainWindow) -> None:
    window.set_running(True)
    assert window.menu_actions["start_stop"].text().replace("&", "") == "Stop"
    window.set_running(False)
    assert window.menu_actions["start_stop"].text().replace("&", "") == "Start"
    window.set_detector_state("Detector: CUDA")
    assert window._detector_label.text() == "Detector: CUDA"
    window.set_source_label("Camera 0")
    window.set_fps(29.97)
    assert window._fps_label.text() == "30.0 fps"
    window.show_status("Camera lost", error=True)
    assert window.status_message == "Camera lost"
    assert "d02020" in window._message_label.styleSheet()
    window.set_sources([("camera:0", "Camera 0"), ("camera:1", "Camera 1"), ("demo", "Demo")])
    assert [a.text() for a in window.camera_menu.actions()] == ["Camera 0", "Camera 1"]
    with qtbot.waitSignal(window.source_requested, timeout=WAIT_MS) as blocker:
        window.camera_menu.actions()[1].trigger()
    assert blocker.args == ["camera:1"]
    with qtbot.waitSignal(window.source_requested, timeout=WAIT_MS) as blocker:
        window.menu_actions["demo"].trigger()
    assert blocker.args == ["demo"]


def test_window_reexposes_child_signals(qtbot, window: MainWindow) -> None:
    window.preview.show_frame(_red_blue_frame())
    with qtbot.waitSignal(window.frame_clicked, timeout=WAIT_MS):
        qtbot.mouseClick(window.preview, Qt.MouseButton.LeftButton,
                         pos=window.preview.rect().center())
    with qtbot.waitSignal(window.settings_changed, timeout=WAIT_MS):
        window.controls.control("mask.shape").setCurrentIndex(1)
    window.set_dashboard_visible(True)
    with qtbot.waitSignal(window.free_caches_requested, timeout=WAIT_MS):
        _button(window.dashboard, "Free caches").click()


def test_window_close_emits_quit_and_can_be_cancelled(qtbot, window: MainWindow) -> None:
    window.quit_requested.connect(window.cancel_close)
    with qtbot.waitSignal(window.quit_requested, timeout=WAIT_MS):
        window.close()
    assert window.isVisible()
    window.quit_requested.disconnect(window.cancel_close)
    with qtbot.waitSignal(window.quit_requested, timeout=WAIT_MS):
        qtbot.keyClick(window, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    assert not window.isVisible()


def test_window_status_bar_shows_protection(qtbot, window: MainWindow) -> None:
    window.set_protection(12.0, 6)
    assert window.protection_text == "Faces from 12 px \u00b7 fine pass 6 frames"
    window.set_protection(12.0, 9, note="fine pass slowed to 9 frames (machine busy)")
    assert window.protection_text.endswith("fine pass 9 frames (busy)")
    window.set_dashboard_visible(True)  # built later: gets the state it missed
    assert window.dashboard.degrade_text.startswith("fine pass slowed to 9")
    window.set_protection(34.3, 0, override="model quality balanced")
    assert window.protection_text == "Faces from 34 px \u00b7 no fine pass (override)"
    assert window.dashboard.degrade_text == ""


def test_window_set_settings_updates_view(qtbot, window: MainWindow) -> None:
    s = Settings.model_validate({"ui": {"show_original": True},
                                 "performance": {"memory_warning_mb": 300,
                                                 "memory_critical_mb": 600}})
    with qtbot.assertNotEmitted(window.settings_changed, wait=300):
        window.set_settings(s)
    assert window.preview.show_original
    assert window.menu_actions["show_original"].isChecked()
    window.set_dashboard_visible(True)
    assert window.dashboard.memory_limits == (300.0, 600.0)
