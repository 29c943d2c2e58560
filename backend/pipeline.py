"""The frame path shared by ``process`` and the desktop app: detect -> track -> mask.

``Pipeline`` owns the stages for one stream and turns each ``Frame`` into a
``FrameResult``. Privacy rule: when detection for a frame is missing (the detector
raised, returned garbage, missed the live deadline or hung past the files' hang limit,
or is not loaded yet) the whole output frame is obscured and counted as fail-closed. It
is never passed raw.

Threads: ``DetectionRunner`` runs the detector on one worker thread so a stalled model
cannot stall the caller past its limit; the caller decides which frames to detect.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from backend.errors import STATS, Category, ErrorStats, Strategy, recoverable
from backend.memory import MemoryPool, PoolExhausted, Priority
from backend.metrics import Metrics, StageTimer
from backend.types import CameraMotion, Detections, Frame, Track
from config.schema import Settings, parse_size

if TYPE_CHECKING:
    from backend.detect.schedule import DetectionSchedule, Region, SchedulePlan

log = logging.getLogger("ptim.pipeline")

# 448 rather than 480: 17% fewer pixels (448x256 vs 480x288 for 16:9), ~15% faster files,
# and the same zero leaks on bench/privacy.py; "auto" is the schedule's coarse pass
QUALITY_LONG_SIDE = {"auto": 448, "fast": 320, "balanced": 448, "accurate": 640}


def detector_size(settings: Settings) -> tuple[tuple[int, int] | None, int]:
    """(explicit input size or None, long side used when auto) for these settings."""
    long_side = QUALITY_LONG_SIDE[settings.quality.model_quality]
    return parse_size(settings.detector.input_size), long_side


def schedule_for(settings: Settings) -> DetectionSchedule | None:
    """The detection schedule these settings ask for, or None for one whole-frame pass
    (``detector.input_size`` or ``quality.model_quality`` set explicitly)."""
    from backend.detect.schedule import DetectionSchedule

    if parse_size(settings.detector.input_size) is not None or \
            settings.quality.model_quality != "auto":
        return None
    return DetectionSchedule(settings.detector.min_face_px, QUALITY_LONG_SIDE["auto"],
                             settings.detector.fine_period)


def describe_detection(settings: Settings, width: int | None = None,
                       height: int | None = None, still: bool = False) -> str:
    """One line: which scale and schedule run, and why (for ``config show`` and logs)."""
    schedule = schedule_for(settings)
    if schedule is None:
        size, long_side = detector_size(settings)
        why = (f"detector.input_size {settings.detector.input_size}" if size else
               f"quality.model_quality {settings.quality.model_quality}")
        scale = f"{size[0]}x{size[1]}" if size else f"long side {long_side} px"
        return (f"one whole-frame pass at {scale} ({why}: an explicit override; "
                f"detector.min_face_px is not applied)")
    if width is None or height is None:
        return (f"schedule for faces from {settings.detector.min_face_px:g} px "
                f"(detector.min_face_px): coarse pass at {schedule.coarse_long_side} px long "
                f"side every frame, fine tiles over {schedule.period} frames, refinement "
                f"crops around every track")
    return schedule.plan(width, height, still).describe()


def detect_threshold(settings: Settings) -> float:
    """Score the detector reports down to: the lower of the start and continue thresholds."""
    return min(settings.detector.threshold, settings.tracker.continue_threshold)


def build_detector(settings: Settings, pool: MemoryPool | None = None):
    """Create the configured detector (loads the ONNX model: slow, call off the GUI thread)."""
    from backend.detect import CenterFaceDetector

    size, long_side = detector_size(settings)
    detector = CenterFaceDetector(
        model_path=settings.detector.model_path or None,
        threshold=detect_threshold(settings),
        input_size=size,
        long_side=long_side,
        provider=settings.detector.provider,
        threads=settings.performance.max_processing_workers,
        pool=pool,
        precision=settings.detector.precision,
    )
    log.info("detector: %s %s, input %s, %d call(s) at once", detector.provider,
             detector.precision, f"{size[0]}x{size[1]}" if size else f"long side {long_side} px",
             detector.lanes)
    from backend.faults import FaultyDetector, faults_from_env

    faults = faults_from_env()
    if faults is not None and faults.touches_detector:
        return FaultyDetector(detector, faults)
    return detector


def make_pool(capacity_mb: float) -> MemoryPool:
    """The frame-buffer pool (with injected allocation failures under PTIM_FAULTS)."""
    from backend.faults import failing_allocator, faults_from_env

    faults = faults_from_env()
    if faults is not None and faults.pool_fail:
        return MemoryPool(capacity_mb, allocator=failing_allocator(faults))
    return MemoryPool(capacity_mb)


@dataclass(slots=True)
class DetectionOutcome:
    """Detections for one frame, or None with the reason it is missing."""

    detections: Detections | None
    reason: str | None = None
    seconds: float = 0.0


class DetectionRunner:
    """Runs ``detector.detect`` on a dedicated thread with a per-call time limit.

    ``workers`` frames are detected at once (files: the frames in flight; each frame's
    regions are chosen when it is submitted, in order, so results never depend on timing).
    Live (``hang_limit_s`` None): a call slower than ``deadline_s`` counts as missing.
    Files (``hang_limit_s`` set): a slow call is waited for; only one with no answer after
    ``hang_limit_s`` counts as hung, so slowness alone never costs a frame. A call that
    raises, returns non-finite values, or runs past its limit yields
    ``DetectionOutcome(None, reason)``; the caller must then fail closed.
    """

    def __init__(
        self, detector, deadline_s: float, errors: ErrorStats | None = None,
        pool: MemoryPool | None = None, hang_limit_s: float | None = None,
        schedule: DetectionSchedule | None = None, workers: int = 1,
    ) -> None:
        self.detector = detector
        self.schedule = schedule
        self.deadline_s = deadline_s
        self.hang_limit_s = hang_limit_s
        self._errors = errors or STATS
        self._pool = pool
        self._schedule_lock = threading.Lock()  # the schedule's rotation is one sequence
        self._executor = ThreadPoolExecutor(max_workers=max(1, int(workers)),
                                            thread_name_prefix="ptim-detect")

    def submit(self, image: np.ndarray, tracks: list[Track] | None = None,
               lead: float = 1.0, still: bool = False,
               motion: CameraMotion | None = None,
               step: CameraMotion | None = None) -> Future:
        """Start detection of ``image`` (which must stay unchanged until the result is read).

        With a schedule, ``tracks`` (as they stand ``lead`` frames before this image) get
        refinement crops, carried along ``motion`` (how the picture moved since those
        tracks' frame, when known), and ``still`` examines every fine tile at once (an image
        file). ``step``: how the picture moved since the image submitted before (default
        ``motion``), for the fine pass's choice of tile. Calls start in the order
        submitted, up to ``workers`` at once.
        """
        regions = self._regions(image, tracks, lead, still, motion,
                                motion if step is None else step)
        return self._executor.submit(self._timed, image, regions, tracks, lead, still)

    def _regions(self, image: np.ndarray, tracks: list[Track] | None, lead: float,
                 still: bool, motion: CameraMotion | None = None,
                 step: CameraMotion | None = None) -> list[Region] | None:
        """The schedule's regions for the next frame (None without a schedule)."""
        if self.schedule is None:
            return None
        h, w = image.shape[:2]
        with self._schedule_lock:
            return self.schedule.regions(w, h, tracks, lead, still, motion, step)

    def plan(self, width: int, height: int) -> SchedulePlan | None:
        """The schedule's plan for frames of this size (None without a schedule)."""
        return None if self.schedule is None else self.schedule.plan(width, height)

    def _detect_once(self, image: np.ndarray, regions: list[Region] | None) -> Detections:
        if regions is None:
            return self.detector.detect(image)
        return self.detector.detect_regions(image, regions)

    def _timed(self, image: np.ndarray, regions: list[Region] | None,
               tracks: list[Track] | None = None, lead: float = 1.0,
               still: bool = False) -> tuple[Detections, float]:
        t = time.perf_counter()
        try:
            dets = self._detect_once(image, regions)
        except MemoryError as exc:
            dets = self._detect_after_memory_error(image, exc, regions, tracks, lead, still)
        return dets, time.perf_counter() - t

    def _detect_after_memory_error(self, image: np.ndarray, exc: MemoryError,
                                   regions: list[Region] | None,
                                   tracks: list[Track] | None = None, lead: float = 1.0,
                                   still: bool = False) -> Detections:
        """Free pool caches and retry; then shrink the detector input and retry again."""
        self._errors.record(Category.MEMORY, Strategy.RETRY, "detector", f"{exc}; caches freed")
        if self._pool is not None:
            self._pool.free_cache()
        try:
            return self._detect_once(image, regions)
        except MemoryError as exc2:
            if self.schedule is not None:
                # the fine pass goes slower first: its tiles shrink as the period grows
                with self._schedule_lock:
                    period = min(60, self.schedule.period * 2)
                    self.schedule.set_period(period)
                self._errors.record(Category.MEMORY, Strategy.DEGRADE, "detector",
                                    f"{exc2}; fine pass spread over {period} frames")
                # the same frame again: the picture has not moved since
                return self._detect_once(image, self._regions(
                    image, tracks, lead, still, step=CameraMotion.identity()))
            long_side = getattr(self.detector, "long_side", None)
            if not long_side or long_side <= 256:
                raise
            smaller = max(256, int(long_side * 0.75) // 32 * 32)
            self.detector.long_side = smaller
            self.detector.set_input_size(None)
            self._errors.record(Category.MEMORY, Strategy.DEGRADE, "detector",
                                f"{exc2}; detector input reduced to {smaller} px")
            return self.detector.detect(image)

    def result(self, fut: Future, width: int, height: int, started: float,
               check: Callable[[], None] | None = None) -> DetectionOutcome:
        """Wait for ``fut`` until ``started`` + the limit; validate what it returns.
        ``check`` runs every 0.1 s while waiting (it may raise to stop waiting)."""
        hang = self.hang_limit_s
        limit = self.deadline_s if hang is None else hang
        if check is not None:
            while not fut.done() and time.perf_counter() < started + limit:
                futures_wait([fut], timeout=min(0.1, max(0.0, started + limit
                                                         - time.perf_counter())))
                check()
        remaining = max(0.0, started + limit - time.perf_counter())
        try:
            dets, seconds = fut.result(timeout=remaining)
        except FutureTimeout:
            reason = (f"detector missed its {self.deadline_s * 1000:.0f} ms deadline"
                      if hang is None else
                      f"detector hung: no answer within {hang:g} s (detector.hang_limit_s)")
            self._errors.record(Category.PROCESSING, Strategy.DEGRADE, "detector", reason)
            return DetectionOutcome(None, reason, time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 - any detector failure fails the frame closed
            reason = f"detector failed: {type(exc).__name__}: {exc}"
            self._errors.record(Category.PROCESSING, Strategy.DEGRADE, "detector", reason)
            return DetectionOutcome(None, reason, time.perf_counter() - started)
        if not isinstance(dets, Detections) or not (
            np.isfinite(dets.xyxy).all() and np.isfinite(dets.confidence).all()
        ):
            reason = "detector returned non-finite or malformed output"
            self._errors.record(Category.PROCESSING, Strategy.DEGRADE, "detector", reason)
            return DetectionOutcome(None, reason, seconds)
        # boxes wholly outside the frame are not faces in it; keep the rest
        return DetectionOutcome(dets[dets.is_valid(width, height)], None, seconds)

    def detect(self, image: np.ndarray, tracks: list[Track] | None = None,
               lead: float = 1.0, still: bool = False,
               motion: CameraMotion | None = None) -> DetectionOutcome:
        """Detect synchronously within the limit (deadline, or hang limit when set)."""
        h, w = image.shape[:2]
        started = time.perf_counter()
        return self.result(self.submit(image, tracks, lead, still, motion), w, h, started)

    def close(self) -> None:
        """Stop the worker thread (does not wait for a stalled call)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass(slots=True)
class FrameResult:
    """A finished frame: masked pixels (a pooled buffer) plus what was done to it."""

    frame: Frame
    tracks: list[Track] = field(default_factory=list)
    fail_closed: bool = False
    reason: str | None = None
    detected: bool = False  # True when this frame had its own detection result
    captured_at: float | None = None  # perf_counter time the frame was captured
    original: np.ndarray | None = None  # unmasked input, kept only for the preview's check


class Pipeline:
    """Tracker + masker for one stream, fed by detection outcomes.

    ``settings`` is a frozen snapshot; ``apply_settings`` swaps it between frames.
    The masked image is written into a buffer from ``pool``; call ``release(result)``
    when the sinks are done with it.
    """

    def __init__(
        self,
        settings: Settings,
        pool: MemoryPool | None = None,
        metrics: Metrics | None = None,
        errors: ErrorStats | None = None,
    ) -> None:
        from backend.mask import Masker
        from backend.track import MotionEstimator, Tracker

        self.pool = pool or MemoryPool(settings.performance.gpu_memory_pool_size_mb)
        self.errors = errors or STATS
        self.metrics = metrics or Metrics(pool=self.pool, errors=self.errors)
        self.settings = settings
        self.tracker = Tracker(settings.tracker)
        self.tracker.new_track_threshold = settings.detector.threshold
        self.masker = Masker(settings.mask)
        self.camera = MotionEstimator()
        self._lock = threading.Lock()

    def measure_motion(self, image: np.ndarray,
                       faces: np.ndarray | None = None) -> CameraMotion | None:
        """How the picture moved from the image last measured to ``image`` (None when not
        known: the first frame, a cut, a frame of things moving on their own). ``faces``:
        where the faces were in the image measured before (default: the tracker's boxes),
        left out of the measure. Call once per frame that is processed, in order, before
        ``process``."""
        if faces is None:
            faces = np.array([t.box for t in self.tracker.tracks], np.float64).reshape(-1, 4)
        try:
            return self.camera.measure(image, faces)
        except Exception as exc:  # noqa: BLE001 - an unknown motion is the safe answer
            log.debug("camera motion not measured: %s", exc)
            return None

    def apply_settings(self, settings: Settings) -> None:
        """Use ``settings`` from the next frame on."""
        with self._lock:
            if settings.tracker != self.settings.tracker:
                self.tracker.apply_settings(settings.tracker)
            self.tracker.new_track_threshold = settings.detector.threshold
            if settings.mask != self.settings.mask:
                self.masker.apply_settings(settings.mask)
            self.settings = settings

    @recoverable(
        Category.MEMORY, Strategy.DEGRADE, retries=1, exceptions=(PoolExhausted,),
        stats=lambda self, *a, **k: self.errors,
        on_retry=lambda self, image, error: self.pool.free_cache(),
        # past the pool budget a plain array keeps the frame flowing (counted)
        fallback=lambda self, image, error: np.empty_like(image),
    )
    def acquire_like(self, image: np.ndarray) -> np.ndarray:
        """A pooled buffer shaped like ``image`` (retry after freeing caches once)."""
        return self.pool.acquire(image.shape, image.dtype, Priority.HIGH)

    @recoverable(
        Category.PROCESSING, Strategy.DEGRADE,
        stats=lambda self, *a, **k: self.errors,
        # a frame whose tracking or masking fails is obscured whole, never passed raw
        fallback=lambda self, out, outcome, size, motion=None, error=None: (
            [], f"frame failed: {type(error).__name__}: {error}"),
    )
    def _track_and_mask(
        self, out: np.ndarray, outcome: DetectionOutcome | None, size: tuple[int, int],
        motion: CameraMotion | None = None,
    ) -> tuple[list[Track], str | None]:
        """Advance the tracker and paint masks into ``out``; (tracks, fail reason or None)."""
        fail_reason: str | None = None
        with StageTimer(self.metrics, "track"):
            if outcome is None:
                tracks = self.tracker.predict(size, motion)
            elif outcome.detections is None:
                fail_reason = outcome.reason or "detection missing"
                tracks = self.tracker.predict(size, motion)
            else:
                tracks = self.tracker.update(outcome.detections, size, motion)
        if fail_reason is None:
            with StageTimer(self.metrics, "mask"):
                self.masker.apply(out, tracks)
        return tracks, fail_reason

    def process(
        self, frame: Frame, outcome: DetectionOutcome | None, captured_at: float | None = None,
        motion: CameraMotion | None = None,
    ) -> FrameResult:
        """Mask ``frame`` given its detection outcome (and ``motion``, the picture's since
        the frame processed before, from ``measure_motion``; None when not known).

        ``outcome`` None means this frame was not sent to the detector (live mode while
        the detector is busy): the tracker predicts, and only tracks that exist are masked.
        ``outcome.detections`` None means detection failed: the frame fails closed.
        The input ``frame.image`` is not modified.
        """
        image = frame.image
        out = self.acquire_like(image)
        np.copyto(out, image)
        h, w = image.shape[:2]
        with self._lock:
            tracks, fail_reason = self._track_and_mask(out, outcome, (w, h), motion)
            if fail_reason is not None:
                with StageTimer(self.metrics, "mask"):
                    self.masker.obscure_frame(out)
        result_frame = Frame(frame.index, frame.timestamp, out, frame.source_id)
        return FrameResult(
            frame=result_frame,
            tracks=tracks,
            fail_closed=fail_reason is not None,
            reason=fail_reason,
            detected=outcome is not None and outcome.detections is not None,
            captured_at=captured_at,
        )

    def obscured(self, frame: Frame, reason: str) -> FrameResult:
        """A fail-closed result without touching the tracker (e.g. model not loaded yet)."""
        out = self.acquire_like(frame.image)
        np.copyto(out, frame.image)
        self.masker.obscure_frame(out)
        return FrameResult(Frame(frame.index, frame.timestamp, out, frame.source_id),
                           fail_closed=True, reason=reason)

    def release(self, result: FrameResult) -> None:
        """Give the result's buffer back to the pool."""
        self.pool.release(result.frame.image)

    def reset(self) -> None:
        """Forget every track (a new stream, or a seek)."""
        with self._lock:
            self.tracker.reset()
            self.camera.reset()
