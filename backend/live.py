"""Live frame path: capture loop -> process loop -> latest-result slot, without Qt.

Each loop is a plain object with ``run(stop: threading.Event)``; the desktop app runs
them on QThreads, ``bench/live.py`` runs the very same loops. Hand-offs:

- capture -> process: a ``LatestSlot`` (overwrite the unread frame, count it as dropped)
  so the processor always works on the newest frame and latency cannot build up;
- process -> UI: another ``LatestSlot``; ``on_ready`` is called only when that slot was
  empty, so a lagging GUI never accumulates a queue of signals;
- process -> recorder: a bounded queue; when full the frame is dropped and counted, so a
  slow disk never stalls the preview.

Every frame is detected before it is shown (no prediction-only frames live): a frame
that cannot be detected in time is dropped or fails closed, never shown raw.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.degrade import FinePassGovernor, effective_cap
from backend.errors import STATS, Category, ErrorStats, Strategy
from backend.metrics import Metrics
from backend.pipeline import DetectionRunner, FrameResult, Pipeline
from backend.types import Frame

log = logging.getLogger("ptim.live")


class LatestSlot:
    """A one-item hand-off that keeps only the newest item."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._has = False
        self.overwritten = 0

    def put(self, item: Any) -> tuple[bool, Any]:
        """Store ``item``; returns (slot was empty, the displaced item or None)."""
        with self._cond:
            was_empty = not self._has
            old = None if was_empty else self._item
            if not was_empty:
                self.overwritten += 1
            self._item, self._has = item, True
            self._cond.notify()
            return was_empty, old

    def take(self) -> Any:
        """Remove and return the item, or None when empty."""
        with self._cond:
            if not self._has:
                return None
            item, self._item, self._has = self._item, None, False
            return item

    def wait_take(self, timeout: float) -> Any:
        """Like take, waiting up to ``timeout`` seconds for an item."""
        with self._cond:
            if not self._has:
                self._cond.wait(timeout)
            if not self._has:
                return None
            item, self._item, self._has = self._item, None, False
            return item


@dataclass(slots=True)
class Captured:
    """A frame plus the perf_counter time it left the source."""

    frame: Frame
    captured_at: float


class CaptureLoop:
    """Reads a source into ``slot``; restarts the source with backoff when reads fail.

    ``on_status(text, error)`` reports outages and recoveries (any thread).
    """

    def __init__(
        self,
        source,
        slot: LatestSlot,
        metrics: Metrics,
        on_status: Callable[[str, bool], None] | None = None,
        on_end: Callable[[], None] | None = None,
        errors: ErrorStats | None = None,
        backoff: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0),
    ) -> None:
        self.source = source
        self.slot = slot
        self.metrics = metrics
        self.on_status = on_status or (lambda text, error: None)
        self.on_end = on_end or (lambda: None)
        self.errors = errors or STATS
        self.backoff = backoff
        self.restarts = 0
        self.paused = threading.Event()

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set or the source ends."""
        from backend.sources import SourceReadError

        failures = 0
        while not stop.is_set():
            if self.paused.is_set():
                stop.wait(0.02)
                continue
            t = time.perf_counter()
            try:
                frame = self.source.read()
            except (SourceReadError, OSError) as exc:
                failures += 1
                delay = self.backoff[min(failures - 1, len(self.backoff) - 1)]
                reason = f"{getattr(self.source, 'name', 'source')}: read failed ({exc})"
                self.errors.record(Category.IO, Strategy.RESTART, "capture", reason)
                self.on_status(f"{reason}; reconnecting in {delay:.2f} s", True)
                if stop.wait(delay):
                    return
                try:
                    reopen = getattr(self.source, "reopen", None)
                    if reopen is not None:
                        reopen()
                    else:
                        self.source.close()
                        self.source.open()
                    self.restarts += 1
                    self.on_status(f"{getattr(self.source, 'name', 'source')}: reconnected", False)
                except Exception as exc2:  # noqa: BLE001 - keep retrying with backoff
                    log.debug("reopen failed: %s", exc2)
                continue
            if frame is None:
                self.on_end()
                return
            failures = 0
            now = time.perf_counter()
            self.metrics.add_stage("capture", now - t - getattr(self.source, "last_wait", 0.0))
            self.metrics.frame_in(now)
            _, dropped = self.slot.put(Captured(frame, now))
            if dropped is not None:
                self.metrics.drop()


class Paced:
    """Plays a file-like source at its own frame rate (timestamps), for live viewing.

    ``realtime`` pacing belongs to the caller, not the source: ``process`` reads files as
    fast as it can, the app shows them at their speed.
    """

    def __init__(self, source, still_seconds: float = 1.0) -> None:
        self._src = source
        self._t0: float | None = None
        self._first_ts = 0.0
        self._still = still_seconds  # images (no fps) are shown this long each
        self.last_wait = 0.0  # seconds the last read slept for pacing (not capture cost)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._src, name)

    @property
    def is_live(self) -> bool:
        """Paced sources behave like live ones."""
        return True

    def read(self) -> Frame | None:
        """The next frame, no earlier than its timestamp says."""
        frame = self._src.read()
        if frame is None:
            return None
        now = time.perf_counter()
        if self._t0 is None:
            self._t0, self._first_ts = now, frame.timestamp
        fps = getattr(self._src, "fps", 0) or 0
        due = (self._t0 + frame.timestamp - self._first_ts) if fps > 0 else \
            (self._t0 + frame.index * self._still)
        self.last_wait = max(0.0, due - now)
        if due > now:
            time.sleep(due - now)
        return frame

    def close(self) -> None:
        """Close the wrapped source."""
        self._t0 = None
        self._src.close()

    def open(self) -> None:
        """Open the wrapped source."""
        self._t0 = None
        self._src.open()


class RecorderWorker:
    """Writes copies of finished frames on its own thread through a bounded queue."""

    def __init__(self, recorder, metrics: Metrics, maxsize: int = 16) -> None:
        self.recorder = recorder
        self.metrics = metrics
        self.queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self.dropped = 0
        self.error: BaseException | None = None
        self.started_at = time.monotonic()
        self._ts0: float | None = None
        self._thread = threading.Thread(target=self._run, name="ptim-record", daemon=True)
        self._thread.start()

    def offer(self, frame: Frame) -> bool:
        """Queue a copy of ``frame``; False (dropped, counted) when the queue is full."""
        if self.error is not None:
            return False
        if self._ts0 is None:
            self._ts0 = frame.timestamp  # recordings start at 0 s
        try:
            self.queue.put_nowait(
                Frame(frame.index, frame.timestamp - self._ts0, frame.image.copy()))
            return True
        except queue.Full:
            self.dropped += 1
            self.metrics.drop()
            return False

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is not None:
                continue
            try:
                self.recorder.write(item)
            except BaseException as exc:  # noqa: BLE001 - reported by stop()
                self.error = exc

    def stop(self, finalize: bool = True) -> None:
        """Drain, then close (rename into place) or abort the recording."""
        self.queue.put(None)
        self._thread.join()
        if finalize and self.error is None:
            self.recorder.close()
        else:
            self.recorder.abort()
        if self.error is not None:
            raise self.error


class ProcessLoop:
    """Takes the newest captured frame, detects, tracks, masks, and publishes the result.

    Until ``set_runner`` provides a detector, every frame is fully obscured.
    With a ``governor``, each frame's detect time and the capture drops before it decide the
    schedule's fine-pass period (it slows when the machine cannot keep up, see
    ``backend.degrade``); ``set_schedule`` swaps the schedule between frames.
    ``on_ready()`` is called (from this thread) when ``out_slot`` goes from empty to full.
    ``release(result)`` must be called by the consumer for each result it takes.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        in_slot: LatestSlot,
        out_slot: LatestSlot,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.in_slot = in_slot
        self.out_slot = out_slot
        self.on_ready = on_ready or (lambda: None)
        self.runner: DetectionRunner | None = None
        self.recorder: RecorderWorker | None = None
        self.virtual_camera = None  # an object with send(bgr image)
        self._last: Captured | None = None
        self.keep_original = False
        self.e2e_at_publish = True  # the app measures at paint time instead
        self.governor: FinePassGovernor | None = None
        self.frame_size: tuple[int, int] | None = None  # (w, h) of the last frame processed
        self._pending_schedule: list = []  # [schedule or None] while a swap waits
        self._drops_seen = 0
        self._governed: tuple[int, tuple[int, int]] | None = None  # (id(schedule), size)

    def set_schedule(self, schedule) -> None:
        """Use ``schedule`` (None: one whole-frame pass) from the next frame on; the
        governor starts over at its period."""
        self._pending_schedule = [schedule]

    def set_runner(self, runner: DetectionRunner | None) -> None:
        """Use this detection runner from the next frame on (None: fail closed)."""
        self.runner = runner

    def reprocess_last(self) -> None:
        """Queue the last frame again (a setting changed while paused)."""
        last = self._last
        if last is not None:
            self.in_slot.put(Captured(last.frame, time.perf_counter()))

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set."""
        while not stop.is_set():
            cap = self.in_slot.wait_take(0.05)
            if cap is None:
                continue
            self._last = cap
            result = self.process_one(cap)
            self.publish(result)

    def process_one(self, cap: Captured) -> FrameResult:
        """Detect (with deadline), track and mask one captured frame."""
        metrics = self.pipeline.metrics
        runner = self.runner
        if runner is None:
            result = self.pipeline.obscured(cap.frame, "detector not loaded yet")
        else:
            h, w = cap.frame.image.shape[:2]
            self.frame_size = (w, h)
            self._swap_schedule(runner)
            # refinement crops around the faces tracked up to the previous frame processed,
            # carried along the picture's motion since (frames dropped between included)
            motion = self.pipeline.measure_motion(cap.frame.image)
            t = time.perf_counter()
            outcome = runner.detect(cap.frame.image, self.pipeline.tracker.tracks,
                                    motion=motion)
            seconds = time.perf_counter() - t
            metrics.add_stage("detect", seconds)
            self._govern(runner, seconds, (w, h))
            result = self.pipeline.process(cap.frame, outcome, cap.captured_at, motion)
        result.captured_at = cap.captured_at
        if self.keep_original:
            result.original = cap.frame.image
        return result

    def _swap_schedule(self, runner: DetectionRunner) -> None:
        pending, self._pending_schedule = self._pending_schedule, []
        if pending:
            runner.schedule = pending[0]
            self._governed = None
            if self.governor is not None and pending[0] is not None:
                self.governor.reset(pending[0].period)

    def _govern(self, runner: DetectionRunner, detect_s: float, size: tuple[int, int]) -> None:
        """Feed the governor; apply its period to the schedule when it changes."""
        gov, schedule = self.governor, runner.schedule
        if gov is None or schedule is None:
            return
        if self._governed is None or self._governed != (id(schedule), size):
            # past this period the plan adds no smaller tiles: slowing further saves nothing
            gov.set_cap(effective_cap(schedule, *size, gov.limit))
            self._governed = (id(schedule), size)
        drops = self.in_slot.overwritten
        before = gov.period
        period = gov.observe(detect_s, drops - self._drops_seen)
        self._drops_seen = drops
        if period != before:
            schedule.set_period(period)
            log.info("fine pass period %d -> %d frames (detect p95 %.1f ms, frame %.1f ms)",
                     before, period, gov.last_p95_s * 1000, gov.frame_interval_s * 1000)

    def publish(self, result: FrameResult) -> None:
        """Send ``result`` to the outputs and the UI slot."""
        metrics = self.pipeline.metrics
        t = time.perf_counter()
        rec = self.recorder
        if rec is not None:
            rec.offer(result.frame)
        cam = self.virtual_camera
        if cam is not None:
            try:
                cam.send(result.frame.image)
            except Exception as exc:  # noqa: BLE001 - a broken virtual camera is switched off
                self.pipeline.errors.record(Category.IO, Strategy.DEGRADE, "virtual camera",
                                            str(exc))
                self.virtual_camera = None
        metrics.add_stage("output", time.perf_counter() - t)
        faces = sum(1 for tr in result.tracks if not tr.held_over)
        metrics.frame_out(result.captured_at if self.e2e_at_publish else None, faces,
                          result.fail_closed)
        was_empty, old = self.out_slot.put(result)
        if old is not None:
            metrics.drop()
            self.pipeline.release(old)
        if was_empty:
            self.on_ready()


def frame_is_raw(out: np.ndarray, original: np.ndarray, boxes: list, margin: float = 0.6) -> bool:
    """True when the central ``margin`` of any box is unchanged from ``original`` (a leak)."""
    h, w = out.shape[:2]
    for b in boxes:
        x0, y0, x1, y1 = (float(v) for v in b)
        cx, cy, bw, bh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * margin, (y1 - y0) * margin
        xa, ya = max(0, int(cx - bw / 2)), max(0, int(cy - bh / 2))
        xb, yb = min(w, int(cx + bw / 2)), min(h, int(cy + bh / 2))
        if xb - xa < 2 or yb - ya < 2:
            continue
        a = out[ya:yb, xa:xb].astype(np.int16)
        o = original[ya:yb, xa:xb].astype(np.int16)
        if np.mean(np.abs(a - o).max(axis=2) <= 2) > 0.5:
            return True
    return False
