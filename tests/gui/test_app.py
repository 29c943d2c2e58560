"""The desktop app end to end, offscreen: real detector, demo source, real widgets."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PyQt6.QtCore import QPoint, QRectF, Qt

from backend.live import frame_is_raw
from backend.sources import SCENES, ground_truth, render
from tests.timing import WAIT_MS, WAIT_S, budget

ROOT = Path(__file__).resolve().parents[2]
SPEC = SCENES["demo"]


@pytest.fixture
def make_app(tmp_path, monkeypatch):
    """Start a MaskerApp with its own userdata dir; every one is shut down at teardown.

    ``prepare(ctl)`` runs after construction and before ``start()`` (hooks, signals).
    """
    from apps.PlayaTewsIdentityMasker.app import MaskerApp

    monkeypatch.setenv("PTIM_USERDATA_DIR", str(tmp_path))
    started = []

    def make(source_spec: str = "demo", prepare=None):
        ctl = MaskerApp(tmp_path, source_spec=source_spec)
        ctl.window.quit_requested.disconnect()  # the test, not Qt, ends the app
        started.append(ctl)
        if prepare is not None:
            prepare(ctl)
        ctl.window.resize(1100, 700)
        ctl.window.show()
        ctl.start()
        return ctl

    yield make
    for ctl in started:
        ctl.shutdown()
        ctl.window.close()


@pytest.fixture
def app_ctl(qtbot, tmp_path, make_app):
    """A started MaskerApp on the demo source whose detector has loaded."""
    # a live deadline of seconds: a loaded machine must not fail frames these tests inspect
    (tmp_path / "config.yaml").write_text(f"ui:\n  record_dir: {tmp_path / 'rec'}\n"
                                          "detector:\n  deadline_ms: 30000\n")
    ctl = make_app()
    qtbot.waitUntil(lambda: ctl.detector is not None, timeout=WAIT_MS)
    return ctl


def _has_loopback_device() -> bool:
    names = [p.read_text() for p in Path("/sys/class/video4linux").glob("*/name")]
    return any("v4l2loopback" in n for n in names)


def _shown(ctl):
    res = ctl._shown
    assert res is not None
    return res


def _wait_frames(qtbot, ctl, n: int = 5) -> None:
    start = ctl.metrics.frames_out
    qtbot.waitUntil(lambda: ctl.metrics.frames_out >= start + n, timeout=WAIT_MS)


def _wait_settled(qtbot, ctl) -> None:
    """Wait until the frame the pipeline took last is the one shown (after a pause).

    A read in progress at the pause may still add one frame; each frame is processed with
    the tracker's current state, so what the caller checks next holds either way.
    """
    def settled() -> bool:
        last, shown = ctl.process_loop._last, ctl._shown
        return last is not None and shown is not None and shown.frame.index == last.frame.index

    qtbot.waitUntil(settled, timeout=WAIT_MS)


def _original(index: int) -> np.ndarray:
    return render(SPEC, index % SPEC.n_frames)[0]


def test_shows_masked_frames_of_the_demo(qtbot, app_ctl):
    _wait_frames(qtbot, app_ctl, 10)
    res = _shown(app_ctl)
    assert not res.fail_closed
    img = res.frame.image
    orig = _original(res.frame.index)
    boxes = list(ground_truth(SPEC, res.frame.index % SPEC.n_frames))
    assert boxes and not frame_is_raw(img, orig, boxes)
    # the painted preview holds exactly that masked array
    assert app_ctl.window.preview._masked is img
    grab = app_ctl.window.preview.grab().toImage()
    assert grab.width() > 100 and not grab.isNull()
    assert any(lab.text() == "Detector: CPU int8" for lab in _labels(app_ctl))


def test_fail_closed_until_detector_loads(qtbot, make_app):
    def never_load(ctl):
        ctl._load_detector = lambda settings: None  # the model never arrives

    ctl = make_app(prepare=never_load)
    _wait_frames(qtbot, ctl, 5)
    res = _shown(ctl)
    assert res.fail_closed
    boxes = list(ground_truth(SPEC, res.frame.index % SPEC.n_frames))
    assert not frame_is_raw(res.frame.image, _original(res.frame.index), boxes)
    assert ctl.metrics.fail_closed >= 5


def test_control_change_reaches_config_file_and_next_frame(qtbot, app_ctl):
    combo = app_ctl.window.controls.control("mask.type")
    combo.setCurrentText("solid")
    qtbot.waitUntil(lambda: app_ctl.pipeline.settings.mask.type == "solid", timeout=WAIT_MS)
    saved = yaml.safe_load((app_ctl.data_dir / "config.yaml").read_text())
    assert saved["mask"]["type"] == "solid"
    n = app_ctl.metrics.frames_out
    qtbot.waitUntil(lambda: app_ctl.metrics.frames_out > n + 3, timeout=WAIT_MS)
    res = _shown(app_ctl)
    track = next(t for t in res.tracks if not t.exempt)
    x0, y0, x1, y1 = (int(v) for v in track.box)
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    assert (res.frame.image[cy - 3:cy + 3, cx - 3:cx + 3] <= 2).all()


def test_yaml_edit_reaches_controls_within_a_second(qtbot, app_ctl):
    cfg = app_ctl.data_dir / "config.yaml"
    data = yaml.safe_load(cfg.read_text()) or {}
    data.setdefault("mask", {})["scale"] = 2.1
    tmp = cfg.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(data))
    t0 = time.monotonic()
    tmp.replace(cfg)  # editors save by rename
    spin = app_ctl.window.controls.control("mask.scale")
    qtbot.waitUntil(lambda: abs(spin.value() - 2.1) < 1e-6, timeout=WAIT_MS)
    assert time.monotonic() - t0 < budget(1.5)
    assert app_ctl.pipeline.settings.mask.scale == pytest.approx(2.1)
    cfg.write_text("mask:\n  scale: 99\n")  # invalid: keep the last good config, say why
    qtbot.waitUntil(lambda: "mask.scale" in app_ctl.window.status_message, timeout=WAIT_MS)
    assert app_ctl.pipeline.settings.mask.scale == pytest.approx(2.1)


def _labels(ctl):
    from PyQt6.QtWidgets import QLabel

    return ctl.window.statusBar().findChildren(QLabel)


def test_min_face_control_changes_the_running_schedule(qtbot, app_ctl):
    from backend.degrade import protection

    _wait_frames(qtbot, app_ctl, 3)
    w, h = app_ctl.process_loop.frame_size
    runner = app_ctl._runner
    # planned on a copy: the running schedule's plan cache is the detection thread's
    assert protection(runner.schedule, w, h).protected_px == pytest.approx(12)
    qtbot.waitUntil(lambda: app_ctl.window.protection_text.startswith("Faces from 12 px"),
                    timeout=WAIT_MS)
    assert "fine pass" in app_ctl.window.protection_text
    app_ctl.window.controls.control("detector.min_face_px").setValue(24)
    # swapped between frames, without a restart
    qtbot.waitUntil(lambda: runner.schedule is not None and runner.schedule.min_face_px == 24,
                    timeout=WAIT_MS)
    assert protection(runner.schedule, w, h).protected_px == pytest.approx(24)
    assert app_ctl.config.settings.detector.min_face_px == 24
    qtbot.waitUntil(lambda: app_ctl.window.protection_text.startswith("Faces from 24 px"),
                    timeout=WAIT_MS)
    n = app_ctl.metrics.frames_out
    qtbot.waitUntil(lambda: app_ctl.metrics.frames_out > n + 3, timeout=WAIT_MS)
    assert not _shown(app_ctl).fail_closed


def test_yaml_edit_of_the_schedule_applies_live(qtbot, app_ctl):
    _wait_frames(qtbot, app_ctl, 3)
    runner = app_ctl._runner
    cfg = app_ctl.data_dir / "config.yaml"
    tmp = cfg.with_suffix(".tmp")
    tmp.write_text(cfg.read_text() + "  fine_period: 3\n")  # under the detector: section
    tmp.replace(cfg)
    qtbot.waitUntil(lambda: app_ctl.governor.base == 3, timeout=WAIT_MS)
    assert app_ctl.window.controls.control("detector.fine_period").value() == 3
    assert runner.schedule is not None and runner.schedule.period >= 3
    # an explicit model quality is an override: one whole-frame pass, said in the status bar
    app_ctl.window.controls.control("quality.model_quality").setCurrentText("balanced")
    qtbot.waitUntil(lambda: runner.schedule is None, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: "no fine pass (override)" in app_ctl.window.protection_text,
                    timeout=WAIT_MS)
    # 16 px at the detector's input (RELIABLE_INPUT_PX) / (448/1280)
    assert app_ctl.window.protection_text.startswith("Faces from 46 px")


def test_ctrl_p_toggles_dashboard(qtbot, app_ctl):
    w = app_ctl.window
    assert not w.dashboard_visible()
    qtbot.keyClick(w, Qt.Key.Key_P, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(w.dashboard_visible, timeout=WAIT_MS)
    # the stats timer feeds it while it is shown
    qtbot.waitUntil(lambda: len(w.dashboard._buffer) >= 3, timeout=WAIT_MS)
    qtbot.keyClick(w, Qt.Key.Key_P, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not w.dashboard_visible(), timeout=WAIT_MS)


def test_click_on_a_face_exempts_it_and_click_again_masks_it(qtbot, app_ctl):
    from ui.preview import fit_rect

    _wait_frames(qtbot, app_ctl, 5)
    app_ctl.toggle_running()  # pause so the face stays where we click
    _wait_settled(qtbot, app_ctl)
    res = _shown(app_ctl)
    track = max(res.tracks, key=lambda t: (t.box[2] - t.box[0]))
    cx, cy = float(track.box[0] + track.box[2]) / 2, float(track.box[1] + track.box[3]) / 2
    preview = app_ctl.window.preview
    h, w = res.frame.image.shape[:2]
    rect = fit_rect(w, h, QRectF(preview.rect()))
    pos = QPoint(int(rect.x() + cx * rect.width() / w), int(rect.y() + cy * rect.height() / h))
    qtbot.mouseClick(preview, Qt.MouseButton.LeftButton, pos=pos)
    qtbot.waitUntil(lambda: any(t.exempt for t in app_ctl.pipeline.tracker.tracks),
                    timeout=WAIT_MS)
    # the re-processed paused frame shows that face unmasked, the other still masked
    qtbot.waitUntil(lambda: any(t.exempt for t in _shown(app_ctl).tracks), timeout=WAIT_MS)
    shown = _shown(app_ctl)
    orig = _original(shown.frame.index)
    ex = next(t for t in shown.tracks if t.exempt)
    assert frame_is_raw(shown.frame.image, orig, [ex.box])
    others = [t.box for t in shown.tracks if not t.exempt]
    assert others and not frame_is_raw(shown.frame.image, orig, others)
    assert "VISIBLE" in app_ctl.window.status_message
    qtbot.mouseClick(preview, Qt.MouseButton.LeftButton, pos=pos)
    qtbot.waitUntil(lambda: not any(t.exempt for t in app_ctl.pipeline.tracker.tracks),
                    timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not any(t.exempt for t in _shown(app_ctl).tracks),
                    timeout=WAIT_MS)


def test_source_failing_mid_stream_is_reported_and_recovered(qtbot, make_app, monkeypatch):
    from backend.errors import STATS

    monkeypatch.setenv("PTIM_FAULTS", "source.fail=20+4")
    STATS.reset()
    messages: list[str] = []
    ctl = make_app(prepare=lambda c: c.status_message.connect(
        lambda text, err: messages.append(text)))
    qtbot.waitUntil(lambda: any("reconnected" in m for m in messages), timeout=WAIT_MS)
    assert any("read failed" in m and "reconnecting" in m for m in messages)
    n = ctl.metrics.frames_out
    qtbot.waitUntil(lambda: ctl.metrics.frames_out > n + 10, timeout=WAIT_MS)
    assert STATS.counts().get("io.restart", 0) == 4


def test_recording_makes_a_playable_file(qtbot, app_ctl):
    import av

    app_ctl.toggle_record(True)
    rec = app_ctl._recorder
    qtbot.waitUntil(lambda: rec.recorder.frames_written >= 25, timeout=WAIT_MS)
    app_ctl.toggle_record(False)
    files = list((app_ctl.data_dir / "rec").glob("ptim_*.mp4"))
    assert len(files) == 1
    with av.open(str(files[0])) as c:
        frames = list(c.decode(video=0))
    assert len(frames) >= 20
    assert (frames[0].width, frames[0].height) == (1280, 720)
    assert not list((app_ctl.data_dir / "rec").glob("*ptim-tmp*"))


def test_run_without_display_exits_2_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["PTIM_USERDATA_DIR"] = str(tmp_path)
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "run", "PlayaTewsIdentityMasker"],
                       capture_output=True, text=True, env=env, timeout=WAIT_S)
    assert r.returncode == 2
    assert "no display" in r.stderr and "process" in r.stderr and "make demo" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_window_appears_fast(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PTIM_STARTUP_PROBE": "1",
           "PTIM_USERDATA_DIR": str(tmp_path)}
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "--source", "demo"],
                       capture_output=True, text=True, env=env, timeout=WAIT_S * 2)
    assert r.returncode == 0, r.stderr
    assert any(line.startswith("window-shown") for line in r.stdout.splitlines())


def test_install_shortcut_writes_a_launcher(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "install-shortcut",
                        "--dest", str(tmp_path)], capture_output=True, text=True,
                       timeout=WAIT_S)
    assert r.returncode == 0, r.stderr
    (entry,) = tmp_path.glob("*.desktop")
    text = entry.read_text()
    assert "[Desktop Entry]" in text and "Type=Application" in text
    exec_line = next(x for x in text.splitlines() if x.startswith("Exec="))
    assert "main.py" in exec_line and "run PlayaTewsIdentityMasker" in exec_line
    icon = next(x for x in text.splitlines() if x.startswith("Icon="))[5:]
    assert Path(icon).is_file()


def test_unavailable_camera_is_reported_and_demo_shown(qtbot, make_app):
    ctl = make_app("camera:7")
    assert "camera 7" in ctl.window.status_message
    assert "demo" in ctl.window.status_message
    assert ctl.source_spec == "demo"
    _wait_frames(qtbot, ctl, 3)


def test_virtual_camera_without_device_says_how_to_get_one(qtbot, app_ctl):
    if _has_loopback_device():
        pytest.skip("a v4l2loopback device exists here: the no-device message cannot show")
    box = app_ctl.window.controls.virtual_camera_check
    box.click()  # what a mouse click does: toggles and emits clicked
    qtbot.waitUntil(lambda: "v4l2loopback" in app_ctl.window.status_message,
                    timeout=WAIT_MS)
    assert app_ctl.process_loop.virtual_camera is None  # nothing is sent anywhere
    assert app_ctl.config.settings.ui.virtual_camera is False  # not retried at next launch
    _wait_frames(qtbot, app_ctl, 3)  # and the preview keeps running


def test_virtual_camera_saved_on_is_tried_at_launch(qtbot, tmp_path, make_app):
    if _has_loopback_device():
        pytest.skip("a v4l2loopback device exists here: the no-device message cannot show")
    (tmp_path / "config.yaml").write_text("ui:\n  virtual_camera: true\n")
    ctl = make_app()
    assert "v4l2loopback" in ctl.window.status_message
    assert ctl.config.settings.ui.virtual_camera is False
    assert "virtual_camera" not in (tmp_path / "config.yaml").read_text()
