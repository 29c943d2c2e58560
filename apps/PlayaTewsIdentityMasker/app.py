"""The desktop app's controller: wires the backend's live loops to the Qt widgets.

Threads: capture and processing run as QThreads (``LoopThread``); the detector loads on
its own QThread; the config watcher calls back on watchdog's thread. Everything that
touches a widget happens on the GUI thread through queued signals.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

from PyQt6.QtCore import QObject, Qt, QTimer, pyqtSignal

from apps.PlayaTewsIdentityMasker.workers import DetectorLoader, LoopThread
from backend.degrade import FinePassGovernor, Protection, protection
from backend.errors import STATS, PtimError
from backend.live import CaptureLoop, LatestSlot, ProcessLoop, RecorderWorker
from backend.metrics import Metrics
from backend.pipeline import (
    DetectionRunner,
    FrameResult,
    Pipeline,
    detect_threshold,
    detector_size,
    make_pool,
    schedule_for,
)
from config.manager import ConfigManager
from config.schema import Settings

log = logging.getLogger("ptim.app")

# Settings that change which regions the detector sees: a new schedule between frames.
SCHEDULE_KEYS = (("detector", "min_face_px"), ("detector", "fine_period"),
                 ("detector", "input_size"), ("quality", "model_quality"))

VIRTUAL_CAMERA_HELP = (
    "No virtual camera device found (Linux: install v4l2loopback and run "
    "'sudo modprobe v4l2loopback'; Windows/macOS: install OBS Studio's virtual camera)"
)


def default_source() -> tuple[str, str]:
    """(spec, why) for the first working camera, else the demo clip."""
    from backend.sources import list_cameras

    cams = list_cameras()
    if cams:
        return f"camera:{cams[0].index}", f"Using camera {cams[0].index}"
    return "demo", "No camera found: showing the demo clip"


class MaskerApp(QObject):
    """Owns config, pipeline, workers and the main window for one app session."""

    frame_ready = pyqtSignal()
    status_message = pyqtSignal(str, bool)
    source_ended = pyqtSignal()
    config_changed = pyqtSignal(object, object)  # Settings, error line or None

    def __init__(self, data_dir: Path, source_spec: str | None = None, window=None) -> None:
        super().__init__()
        from ui import MainWindow

        self.data_dir = data_dir
        # a broken user YAML must not stop the app: defaults run and the status bar says why
        self.config = ConfigManager(data_dir, tolerate_bad_file=True, stats=STATS)
        settings = self._usable_replace(self.config.settings)
        self.pool = make_pool(settings.performance.gpu_memory_pool_size_mb)
        self.metrics = Metrics(pool=self.pool, errors=STATS)
        self.pipeline = Pipeline(settings, pool=self.pool, metrics=self.metrics, errors=STATS)
        self.capture_slot = LatestSlot()
        self.out_slot = LatestSlot()
        self.process_loop = ProcessLoop(self.pipeline, self.capture_slot, self.out_slot,
                                        on_ready=self.frame_ready.emit)
        self.process_loop.e2e_at_publish = False  # measured at paint time instead
        self.governor = FinePassGovernor(settings.detector.fine_period,
                                         1 / settings.performance.target_fps)
        self.process_loop.governor = self.governor
        self.window = window or MainWindow()
        self.source = None
        self.source_spec = source_spec
        self.capture_loop: CaptureLoop | None = None
        self._capture_thread: LoopThread | None = None
        self._process_thread = LoopThread(self.process_loop, "ptim-process", self)
        self._loader: DetectorLoader | None = None
        self.detector = None
        self._runner: DetectionRunner | None = None
        self._shown: FrameResult | None = None
        self._recorder: RecorderWorker | None = None
        self._record_path: Path | None = None
        self._running = False
        self._closing = False

        self.frame_ready.connect(self._on_pipeline_frame_ready, Qt.ConnectionType.QueuedConnection)
        self.status_message.connect(self._on_status, Qt.ConnectionType.QueuedConnection)
        self.source_ended.connect(self._on_source_ended, Qt.ConnectionType.QueuedConnection)
        self.config_changed.connect(self._on_config_changed, Qt.ConnectionType.QueuedConnection)
        self._wire_window()
        self._stats_timer = QTimer(self)
        self._stats_timer.setInterval(250)
        self._stats_timer.timeout.connect(self._on_stats_timer)
        self._record_timer = QTimer(self)
        self._record_timer.setInterval(500)
        self._record_timer.timeout.connect(self._on_record_timer)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Load the detector in the background, open the source, start the workers."""
        s = self.config.settings
        self.window.controls.set_settings(s)
        perf = s.performance
        self.window.set_memory_limits(perf.memory_warning_mb, perf.memory_critical_mb)
        self.window.set_detector_state("Loading face detector... (output obscured until ready)")
        self._process_thread.start()
        self._load_detector(s)
        self._populate_sources()
        spec = self.source_spec or s.ui.source or None
        if spec is None:
            spec, why = default_source()
            self.window.show_status(why)
        if not self.set_source(spec) and spec != "demo":
            # a busy or missing camera must not leave an empty window: show the demo
            failed = self.window.status_message
            self.set_source("demo")
            self.window.show_status(f"{failed} - showing the demo clip instead", error=True)
        self.config.subscribe(lambda st, err: self.config_changed.emit(st, err))
        self.config.start_watching()
        self._stats_timer.start()
        if self.config.last_error:
            self.window.show_status(f"Config not applied: {self.config.last_error}", error=True)
        if getattr(self, "_startup_note", None):
            self.window.show_status(self._startup_note, error=True)

    def shutdown(self) -> None:
        """Stop recording, workers and the watcher; idempotent."""
        if self._closing:
            return
        self._closing = True
        self._stats_timer.stop()
        self._record_timer.stop()
        if self._recorder is not None:
            self._stop_recording()
        self._stop_capture()
        self._process_thread.stop()
        if self._loader is not None:
            self._loader.wait(5000)
        if self._runner is not None:
            self._runner.close()
        self.config.stop_watching()
        cam = self.process_loop.virtual_camera
        if cam is not None:
            cam.close()
        if STATS.total():
            with contextlib.suppress(OSError):  # a report must never block quitting
                STATS.write_report(self.data_dir)

    # -- detector -------------------------------------------------------------------------
    def _load_detector(self, settings: Settings) -> None:
        self._loader = DetectorLoader(settings, self.pool, self)
        self._loader.loaded.connect(self._on_detector_loaded)
        self._loader.failed.connect(self._on_detector_failed)
        self._loader.start()

    def _on_detector_loaded(self, detector) -> None:
        self.detector = detector
        settings = self.config.settings
        self._runner = DetectionRunner(detector, settings.detector.deadline_ms / 1000,
                                       pool=self.pool, schedule=schedule_for(settings))
        self.governor.reset(settings.detector.fine_period)
        self.process_loop.set_runner(self._runner)
        provider = getattr(detector, "provider", "cpu").upper()
        precision = getattr(detector, "precision", "fp32")
        self.window.set_detector_state(f"Detector: {provider} {precision}")
        note = getattr(detector, "provider_note", "")
        if note:
            self.window.show_status(note)

    def window_detector_text(self) -> str:
        """Provider and input size of the loaded detector, for reports."""
        det = self.detector
        if det is None:
            return "not loaded"
        return (f"{det.provider} {getattr(det, 'precision', 'fp32')} long side {det.long_side}"
                f" size {det.input_size or 'auto'}")

    def _on_detector_failed(self, message: str) -> None:
        self.window.set_detector_state("Detector failed: output stays obscured")
        self.window.show_status(message, error=True)

    # -- sources --------------------------------------------------------------------------
    def _populate_sources(self) -> None:
        from backend.sources import list_cameras

        items = [(f"camera:{c.index}", f"Camera {c.index} - {c.name} ({c.width}x{c.height})")
                 for c in list_cameras()]
        items.append(("demo", "Demo clip (generated)"))
        self.window.controls.set_sources(items)

    def set_source(self, spec: str) -> bool:
        """Switch to ``spec``; on failure the old source keeps running and the error is shown."""
        from backend.live import Paced
        from backend.sources import open_source

        try:
            src = open_source(spec)  # demo scenes loop; Paced below sets their speed
            src.open()
        except PtimError as exc:
            self.window.show_status(str(exc), error=True)
            return False
        from backend.faults import FaultySource, faults_from_env

        faults = faults_from_env()
        if faults is not None and faults.source_fail:
            src = FaultySource(src, faults)
        if not src.is_live or spec.startswith("demo"):
            src = Paced(src)
        self._stop_capture()
        self.pipeline.reset()
        self.source, self.source_spec = src, spec
        self.capture_loop = CaptureLoop(src, self.capture_slot, self.metrics,
                                        on_status=self.status_message.emit,
                                        on_end=self.source_ended.emit)
        self._capture_thread = LoopThread(self.capture_loop, "ptim-capture", self)
        self._capture_thread.start()
        if self.config.settings.ui.virtual_camera:
            self._set_virtual_camera(False)  # reopened at the new source's size
            self._set_virtual_camera(True)
        self._running = True
        self.window.set_running(True)
        self._update_frame_interval()
        w, h = src.size
        self.window.set_source_label(f"{src.name} {w}x{h}")
        return True

    def _stop_capture(self) -> None:
        if self._capture_thread is not None:
            self._capture_thread.stop()
            self._capture_thread = None
        if self.source is not None:
            try:
                self.source.close()
            except Exception:  # noqa: BLE001 - closing a broken device must not block switching
                log.debug("source close failed", exc_info=True)
            self.source = None
        self._running = False

    def _on_source_ended(self) -> None:
        self._running = False
        self.window.set_running(False)
        self.window.show_status("End of the source (Space restarts it)")

    # -- frames ---------------------------------------------------------------------------
    def _on_pipeline_frame_ready(self) -> None:
        res = self.out_slot.take()
        if res is None:
            return
        s = self.pipeline.settings
        original = res.original if s.ui.show_original else None
        self.window.preview.show_frame(res.frame.image, original, res.tracks, tag=res.captured_at)
        if self._shown is not None:
            self.pipeline.release(self._shown)
        self._shown = res

    def _on_preview_painted(self, tag) -> None:
        if tag is not None:
            self.metrics.add_e2e(time.perf_counter() - float(tag))

    def _on_frame_clicked(self, x: float, y: float) -> None:
        with self.pipeline._lock:
            track = self.pipeline.tracker.track_at(x, y)
            if track is None:
                self.window.show_status(
                    "No face there: click inside a masked face to keep it visible")
                return
            exempt = not track.exempt
            self.pipeline.tracker.set_exempt(track.track_id, exempt)
        if exempt:
            self.window.show_status(f"Face #{track.track_id} is VISIBLE (not masked): click it "
                                    "again "
                                    "to mask it; it is masked again when it leaves the picture")
        else:
            self.window.show_status(f"Face #{track.track_id} is masked again")
        if not self._running:
            self.process_loop.reprocess_last()

    # -- config ---------------------------------------------------------------------------
    def _usable_replace(self, settings: Settings) -> Settings:
        """``settings``, or with the default mask when its replacement source is refused
        (a model moved away since last time must not stop the app; the status says why)."""
        from backend.replace import ReplaceError, disclosure, validate

        disclosure.set_label(settings.output.disclosure_label,
                             say=settings.mask.type == "replace")
        if settings.mask.type != "replace":
            return settings
        try:
            validate(settings.mask)
        except ReplaceError as exc:
            self._startup_note = f"Face replacement off: {exc}"
            return self.config.update({"mask.type": "pixelate"})
        return settings

    def _replace_refused(self, changes: dict) -> bool:
        """Check a replacement source before it is used; True (status shown) when refused."""
        from backend.replace import ReplaceError, validate

        mask = self.config.settings.mask
        update = {k.split(".", 1)[1]: v for k, v in changes.items() if k.startswith("mask.")}
        cand = mask.model_copy(update=update)
        watched = ("type", "replace_face", "source_face", "recognition_model", "replace_morph")
        if cand.type != "replace" or not any(k in update for k in watched):
            return False
        try:
            validate(cand)  # loads once per file (cached for the pipeline)
        except ReplaceError as exc:
            self.window.show_status(str(exc), error=True)
            self.window.controls.set_settings(self.config.settings)
            return True
        self._remind_consent()
        return False

    def _remind_consent(self) -> None:
        """Before the first use of a replacement: the one-line reminder, dismissed once."""
        from PyQt6.QtWidgets import QMessageBox

        from backend.replace import disclosure

        marker = self.data_dir / "replace_reminder_dismissed"
        if marker.exists() or getattr(self, "_reminder", None) is not None:
            return
        box = QMessageBox(QMessageBox.Icon.Information, "Face replacement",
                          disclosure.CONSENT_REMINDER, QMessageBox.StandardButton.Ok,
                          self.window)
        box.setModal(False)  # never blocks the preview

        def dismissed(_result: int) -> None:
            with contextlib.suppress(OSError):
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text("dismissed\n", encoding="utf-8")

        box.finished.connect(dismissed)
        self._reminder = box
        box.open()

    def _on_controls_changed(self, changes: dict) -> None:
        if self._replace_refused(changes):
            return
        try:
            new = self.config.update(changes)
        except PtimError as exc:
            self.window.show_status(str(exc), error=True)
            self.window.controls.set_settings(self.config.settings)
            return
        self._apply(new)

    def _on_config_changed(self, settings: Settings, error: str | None) -> None:
        if error:
            self.window.show_status(f"Config not applied, keeping the last good one: {error}",
                                    error=True)
            return
        self.window.controls.set_settings(settings)
        self._apply(settings)
        self.window.show_status("Config reloaded")

    def _apply(self, new: Settings) -> None:
        from backend.replace import ReplaceError, disclosure

        old = self.pipeline.settings
        if new == old:
            return
        disclosure.set_label(new.output.disclosure_label, say=new.mask.type == "replace")
        try:
            self.pipeline.apply_settings(new)
        except ReplaceError as exc:  # e.g. a hot-reloaded YAML naming a bad model
            self.window.show_status(f"Mask not changed: {exc}", error=True)
            return
        if self.detector is not None:
            self.detector.threshold = detect_threshold(new)
            size, long_side = detector_size(new)
            self.detector.long_side = long_side
            self.detector.set_input_size(size)
        if self._runner is not None:
            self._runner.deadline_s = new.detector.deadline_ms / 1000
            if any(getattr(getattr(new, sec), key) != getattr(getattr(old, sec), key)
                   for sec, key in SCHEDULE_KEYS):
                self.process_loop.set_schedule(schedule_for(new))
        if new.performance.target_fps != old.performance.target_fps:
            self._update_frame_interval(new)
        self.window.set_memory_limits(new.performance.memory_warning_mb,
                                      new.performance.memory_critical_mb)
        self.pool.resize(new.performance.gpu_memory_pool_size_mb)
        restart = self.config.needs_restart(old, new)
        if restart:
            self.window.show_status("Takes effect after a restart: " + ", ".join(restart))
        self.process_loop.keep_original = new.ui.show_original
        if new.ui.virtual_camera != old.ui.virtual_camera:
            self._set_virtual_camera(new.ui.virtual_camera)
        if not self._running:
            self.process_loop.reprocess_last()

    def cycle_mask(self) -> None:
        """Next mask type (image only when an image is set)."""
        from backend.mask import MASK_TYPES

        s = self.config.settings
        types = [t for t in MASK_TYPES if t != "image" or s.mask.image_path]
        pos = types.index(s.mask.type) + 1 if s.mask.type in types else 0
        nxt = types[pos % len(types)]
        self._on_controls_changed({"mask.type": nxt})
        self.window.controls.set_settings(self.config.settings)
        self.window.show_status(f"Mask: {nxt}")

    # -- start / stop, record, virtual camera ---------------------------------------------
    def toggle_running(self) -> None:
        """Space: pause or resume the source."""
        if self.capture_loop is None or self.source is None:
            if self.source_spec:
                self.set_source(self.source_spec)
            return
        if self._running:
            self.capture_loop.paused.set()
            self._running = False
        else:
            self.capture_loop.paused.clear()
            self._running = True
            if self._capture_thread is not None and not self._capture_thread.isRunning():
                self.set_source(self.source_spec)
        self.window.set_running(self._running)

    def toggle_record(self, on: bool | None = None) -> None:
        """R: start or stop recording the masked output."""
        on = (self._recorder is None) if on is None else on
        if on and self._recorder is None:
            self._start_recording()
        elif not on and self._recorder is not None:
            self._stop_recording()

    def _record_dir(self) -> Path:
        d = self.config.settings.ui.record_dir
        if d:
            return Path(d).expanduser()
        videos = Path.home() / "Videos"
        return videos if videos.is_dir() else self.data_dir / "recordings"

    def _start_recording(self) -> None:
        from backend.sinks import VideoRecorder

        if self.source is None:
            self.window.show_status("Nothing to record: no source", error=True)
            return
        folder = self._record_dir()
        path = folder / time.strftime("ptim_%Y%m%d_%H%M%S.mp4")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fps = self.source.fps or self.config.settings.performance.target_fps
            rec = VideoRecorder(path, fps=fps, size=self.source.size,
                                crf=self.config.settings.output.crf,
                                preset=self.config.settings.output.preset)
        except (PtimError, OSError) as exc:
            self.window.show_status(f"Cannot record: {exc}", error=True)
            self.window.controls.set_recording(False, 0.0)
            return
        self._recorder = RecorderWorker(rec, self.metrics)
        self._record_path = path
        self.process_loop.recorder = self._recorder
        self._record_timer.start()
        self.window.controls.set_recording(True, 0.0)
        self.window.show_status(f"Recording to {path}")

    def _stop_recording(self) -> None:
        rec, self._recorder = self._recorder, None
        self.process_loop.recorder = None
        self._record_timer.stop()
        self.window.controls.set_recording(False, 0.0)
        if rec is None:
            return
        try:
            rec.stop(finalize=True)
            self.window.show_status(f"Saved {self._record_path} ({rec.recorder.frames_written} "
                                    f"frames, {rec.dropped} dropped)")
        except Exception as exc:  # noqa: BLE001 - the partial file was removed by abort
            self.window.show_status(f"Recording failed, nothing saved: {exc}", error=True)

    def _on_record_timer(self) -> None:
        if self._recorder is not None:
            self.window.controls.set_recording(True, time.monotonic() - self._recorder.started_at)
            if self._recorder.error is not None:
                self._stop_recording()

    def _set_virtual_camera(self, on: bool) -> None:
        cam = self.process_loop.virtual_camera
        if not on:
            self.process_loop.virtual_camera = None
            if cam is not None:
                cam.close()
            self.window.controls.set_virtual_camera_state(False, "Virtual camera off")
            return
        if cam is not None or self.source is None:
            return
        try:
            from backend.sinks import VirtualCamera

            w, h = self.source.size
            fps = self.source.fps or self.config.settings.performance.target_fps
            self.process_loop.virtual_camera = VirtualCamera(w, h, fps)
            self.window.controls.set_virtual_camera_state(
                True, f"Virtual camera: {self.process_loop.virtual_camera.device}")
        except Exception as exc:  # noqa: BLE001 - any backend failure means "no device"
            log.info("virtual camera unavailable: %s", exc)
            # untick it in the saved config too, so the next launch does not fail again
            with contextlib.suppress(PtimError):
                self.pipeline.apply_settings(self.config.update({"ui.virtual_camera": False}))
            self.window.controls.set_virtual_camera_state(False, VIRTUAL_CAMERA_HELP)
            self.window.show_status(VIRTUAL_CAMERA_HELP, error=True)

    def _on_virtual_camera_toggled(self, on: bool) -> None:
        self._on_controls_changed({"ui.virtual_camera": bool(on)})

    def _update_frame_interval(self, settings: Settings | None = None) -> None:
        """The frame interval the governor holds detection to: the target fps, or the
        source's own rate when it is slower (a 15 fps camera leaves 66 ms a frame)."""
        fps = (settings or self.config.settings).performance.target_fps
        src_fps = (getattr(self.source, "fps", 0) or 0) if self.source is not None else 0
        if 0 < src_fps < fps:
            fps = src_fps
        self.governor.frame_interval_s = 1 / fps

    def current_protection(self) -> Protection | None:
        """What the schedule running now protects (None until a frame size is known)."""
        size = self.process_loop.frame_size or (self.source.size if self.source else None)
        if not size:
            return None
        s = self.pipeline.settings
        runner = self._runner
        schedule = runner.schedule if runner is not None else schedule_for(s)
        size_override, long_side = detector_size(s)
        why = (f"detector.input_size {s.detector.input_size}" if size_override else
               f"model quality {s.quality.model_quality}")
        return protection(schedule, size[0], size[1], input_size=size_override,
                          long_side=long_side, override=why,
                          governor=self.governor if runner is not None else None)

    # -- dashboard ------------------------------------------------------------------------
    def _on_stats_timer(self) -> None:
        dash_visible = self.window.dashboard_visible()
        snap = self.metrics.snapshot(with_process=dash_visible)
        self.window.set_fps(snap.output_fps)
        self.window.set_fail_closed(snap.fail_closed_frames)
        prot = self.current_protection()
        if prot is not None:
            self.window.set_protection(prot.protected_px, prot.fine_period, prot.override,
                                       prot.note)
        if dash_visible:
            self.window.dashboard.push(snap)

    def _on_reset_stats(self) -> None:
        self.metrics.reset()
        self.pool.reset_stats()
        STATS.reset()

    def _on_free_caches(self) -> None:
        freed = self.pool.free_cache()
        self.window.show_status(f"Freed {freed / 2**20:.1f} MB of cached buffers")

    def _on_status(self, text: str, error: bool) -> None:
        self.window.show_status(text, error=error)

    def _on_quit(self) -> None:
        self.shutdown()
        from PyQt6.QtWidgets import QApplication

        QApplication.quit()

    def _wire_window(self) -> None:
        w = self.window
        w.start_stop_requested.connect(self.toggle_running)
        w.record_requested.connect(lambda: self.toggle_record(None))
        w.mask_cycle_requested.connect(self.cycle_mask)
        w.quit_requested.connect(self._on_quit)
        w.settings_changed.connect(self._on_controls_changed)
        w.source_requested.connect(self.set_source)
        w.record_toggled.connect(self.toggle_record)
        w.virtual_camera_toggled.connect(self._on_virtual_camera_toggled)
        w.frame_clicked.connect(self._on_frame_clicked)
        w.reset_stats_requested.connect(self._on_reset_stats)
        w.free_caches_requested.connect(self._on_free_caches)
        w.preview.painted.connect(self._on_preview_painted)
