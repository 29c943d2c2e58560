"""Pipeline: real detector + tracker + masker on the astronaut; fail-closed on every fault."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from backend.errors import ErrorStats
from backend.live import frame_is_raw
from backend.memory import MemoryPool
from backend.pipeline import DetectionRunner, Pipeline, build_detector
from backend.types import Detections, Frame
from config.schema import Settings

SOLID = Settings().model_copy(update={"mask": Settings().mask.model_copy(update={"type": "solid"})})


@pytest.fixture(scope="module")
def detector():
    return build_detector(Settings())


def _canvas(astronaut, dx=300, dy=100):
    img, (x0, y0, x1, y1) = astronaut
    canvas = np.full((720, 1280, 3), 90, np.uint8)
    canvas[dy:dy + 512, dx:dx + 512] = img
    return canvas, (x0 + dx, y0 + dy, x1 + dx, y1 + dy)


class Faulty:
    """Wraps the real detector; misbehaves on chosen calls (deterministic)."""

    def __init__(self, inner, mode: str, on: set[int]):
        self.inner, self.mode, self.on, self.calls = inner, mode, on, 0
        self.release = threading.Event()

    def detect(self, image):
        self.calls += 1
        if self.calls in self.on:
            if self.mode == "raise":
                raise RuntimeError("injected detector failure")
            if self.mode == "stall":
                self.release.wait()  # until the test lets it go: far past any deadline
            if self.mode == "nan":
                return Detections(np.full((1, 4), np.nan), np.zeros((1, 5, 2)), [0.9])
        return self.inner.detect(image)


def test_face_is_masked_and_input_untouched(astronaut, detector):
    canvas, box = _canvas(astronaut)
    before = canvas.copy()
    pool = MemoryPool(64)
    pipe = Pipeline(SOLID, pool=pool)
    runner = DetectionRunner(detector, 2.0)
    res = pipe.process(Frame(0, 0.0, canvas), runner.detect(canvas))
    runner.close()
    assert np.array_equal(canvas, before)
    assert not res.fail_closed and res.detected and len(res.tracks) == 1
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    assert (res.frame.image[cy - 20:cy + 20, cx - 20:cx + 20] == 0).all()
    assert np.array_equal(res.frame.image[:50, :50], canvas[:50, :50])
    assert not frame_is_raw(res.frame.image, canvas, [box])


@pytest.mark.parametrize("mode", ["raise", "stall", "nan"])
def test_faulty_detection_fails_closed_and_continues(astronaut, detector, mode):
    canvas, box = _canvas(astronaut)
    faulty = Faulty(detector, mode, on={2, 4})
    stats = ErrorStats()
    pipe = Pipeline(SOLID, pool=MemoryPool(64), errors=stats)
    # seconds, so a normal detection on a loaded machine is never late; each stall costs it
    runner = DetectionRunner(faulty, deadline_s=2.0, errors=stats)
    results = []
    try:
        for i in range(6):
            res = pipe.process(Frame(i, i / 30, canvas), runner.detect(canvas))
            results.append(res)
            if mode == "stall" and i in (1, 3):
                faulty.release.set()  # let the stalled call end after its deadline passed
                faulty.release = threading.Event()
    finally:
        faulty.release.set()
        runner.close()
    assert [r.fail_closed for r in results] == [False, True, False, True, False, False]
    for r in results:
        assert not frame_is_raw(r.frame.image, canvas, [box])
    for r in (results[1], results[3]):
        assert r.reason
        # fail-closed frames are obscured everywhere, not just on faces
        assert np.mean(np.abs(r.frame.image.astype(int) - canvas.astype(int))) > 5
    assert stats.total() == 2


class Slow:
    """Wraps the real detector; chosen calls first sleep ``delay`` s or block until released."""

    def __init__(self, inner, on: set[int], delay: float | None):
        self.inner, self.on, self.delay, self.calls = inner, on, delay, 0
        self.release = threading.Event()

    def detect(self, image):
        self.calls += 1
        if self.calls in self.on:
            if self.delay is None:
                self.release.wait()  # hung until the test's teardown
            else:
                time.sleep(self.delay)
        return self.inner.detect(image)


def test_files_wait_for_a_slow_detection_past_the_live_deadline(astronaut, detector):
    canvas, box = _canvas(astronaut)
    stats = ErrorStats()
    slow = Slow(detector, on={1, 3}, delay=0.3)  # 6x the deadline: always late live
    pipe = Pipeline(SOLID, pool=MemoryPool(64), errors=stats)
    runner = DetectionRunner(slow, deadline_s=0.05, errors=stats, hang_limit_s=60.0)
    results = [pipe.process(Frame(i, i / 30, canvas), runner.detect(canvas)) for i in range(4)]
    runner.close()
    assert [r.fail_closed for r in results] == [False] * 4
    assert all(r.detected and len(r.tracks) == 1 for r in results)
    assert stats.total() == 0
    for r in results:
        assert not frame_is_raw(r.frame.image, canvas, [box])


def test_files_fail_a_hung_detection_closed_at_the_hang_limit(astronaut, detector):
    canvas, box = _canvas(astronaut)
    stats = ErrorStats()
    hung = Slow(detector, on={2}, delay=None)
    pipe = Pipeline(SOLID, pool=MemoryPool(64), errors=stats)
    runner = DetectionRunner(hung, deadline_s=0.05, errors=stats, hang_limit_s=2.0)
    try:
        first = pipe.process(Frame(0, 0.0, canvas), runner.detect(canvas))
        stuck = pipe.process(Frame(1, 1 / 30, canvas), runner.detect(canvas))
    finally:
        hung.release.set()
        runner.close()
    assert not first.fail_closed and first.detected
    assert stuck.fail_closed and stuck.reason == (
        "detector hung: no answer within 2 s (detector.hang_limit_s)")
    assert not frame_is_raw(stuck.frame.image, canvas, [box])
    assert np.mean(np.abs(stuck.frame.image.astype(int) - canvas.astype(int))) > 5
    assert stats.counts() == {"processing.degrade": 1}


def test_predict_only_frames_keep_mask(astronaut, detector):
    canvas, box = _canvas(astronaut)
    pipe = Pipeline(SOLID, pool=MemoryPool(64))
    runner = DetectionRunner(detector, 2.0)
    pipe.process(Frame(0, 0.0, canvas), runner.detect(canvas))
    res = pipe.process(Frame(1, 1 / 30, canvas), None)  # detector busy: tracker predicts
    runner.close()
    assert not res.fail_closed and res.tracks and res.tracks[0].held_over
    assert not frame_is_raw(res.frame.image, canvas, [box])


def test_exempt_track_stays_visible(astronaut, detector):
    canvas, box = _canvas(astronaut)
    pipe = Pipeline(SOLID, pool=MemoryPool(64))
    runner = DetectionRunner(detector, 2.0)
    first = pipe.process(Frame(0, 0.0, canvas), runner.detect(canvas))
    x0, y0, x1, y1 = box
    track = pipe.tracker.track_at((x0 + x1) / 2, (y0 + y1) / 2)
    assert track is not None and pipe.tracker.set_exempt(track.track_id, True)
    second = pipe.process(Frame(1, 1 / 30, canvas), runner.detect(canvas))
    runner.close()
    assert frame_is_raw(second.frame.image, canvas, [box])
    assert not frame_is_raw(first.frame.image, canvas, [box])


def test_steady_state_reuses_frame_buffers(astronaut, detector):
    canvas, _ = _canvas(astronaut)
    pool = MemoryPool(128)
    from backend.pipeline import build_detector as bd

    det = bd(Settings(), pool)
    pipe = Pipeline(Settings(), pool=pool)
    runner = DetectionRunner(det, 2.0)
    for i in range(3):
        pipe.release(pipe.process(Frame(i, i / 30, canvas), runner.detect(canvas)))
    warm = pool.stats().allocations
    for i in range(3, 30):
        pipe.release(pipe.process(Frame(i, i / 30, canvas), runner.detect(canvas)))
    runner.close()
    st = pool.stats()
    assert st.allocations == warm
    assert st.reuses >= 27 * 3  # frame buffer + detector resize + tensor per frame


def test_obscured_before_detector_loads(astronaut):
    canvas, box = _canvas(astronaut)
    pipe = Pipeline(Settings(), pool=MemoryPool(64))
    res = pipe.obscured(Frame(0, 0.0, canvas), "detector not loaded yet")
    assert res.fail_closed
    assert not frame_is_raw(res.frame.image, canvas, [box])


def test_masking_failure_fails_the_frame_closed(astronaut, detector):
    canvas, box = _canvas(astronaut)
    stats = ErrorStats()
    pipe = Pipeline(SOLID, pool=MemoryPool(64), errors=stats)

    def broken(image, tracks):
        raise ValueError("injected masker failure")

    pipe.masker.apply = broken
    runner = DetectionRunner(detector, 2.0)
    res = pipe.process(Frame(0, 0.0, canvas), runner.detect(canvas))
    runner.close()
    assert res.fail_closed and "injected masker failure" in res.reason
    assert not frame_is_raw(res.frame.image, canvas, [box])
    assert stats.counts() == {"processing.degrade": 1}


def test_pool_failure_frees_cache_retries_then_degrades(astronaut):
    from backend.faults import Faults, failing_allocator

    canvas, _ = _canvas(astronaut)
    stats = ErrorStats()
    pool = MemoryPool(64, allocator=failing_allocator(Faults(pool_fail=2)))
    pipe = Pipeline(Settings(), pool=pool, errors=stats)
    buf = pipe.acquire_like(canvas)
    assert buf.shape == canvas.shape
    assert stats.counts() == {"memory.retry": 1, "memory.degrade": 1}
    buf2 = pipe.acquire_like(canvas)  # the allocator works again: pooled
    pipe.pool.release(buf2)
    assert pool.stats().allocations == 1


class _Overlap:
    """The real detector, with a gate: call 1 goes on only once call 2 has started, so a
    run that finishes proves two frames were detected at once."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls = 0
        self.second_started = threading.Event()
        self.overlapped = False
        self._lock = threading.Lock()

    def detect_regions(self, image, regions):
        with self._lock:
            self.calls += 1
            call = self.calls
        if call == 2:
            self.second_started.set()
        if call == 1:
            self.overlapped = self.second_started.wait(timeout=30)
        return self.inner.detect_regions(image, regions)


def test_two_workers_detect_two_frames_at_once_with_the_regions_one_worker_gives():
    """Files: the two frames in flight are detected at once (``workers=2``); each gets the
    regions chosen when it was submitted, so every frame's detections equal a one-worker
    run's, refinement crops included."""
    from backend.pipeline import schedule_for
    from tests.faces import astronaut_face, background, paste

    frames = []
    for i in range(20):  # more than a fine period: every face is found, then refined
        img = background(1280, 720, seed=2)
        for k, px in enumerate((16, 22, 30, 70)):
            paste(img, astronaut_face(px), 100 + 250 * k + 9 * i, 200 + 60 * k - 5 * i)
        frames.append(img)
    det = build_detector(Settings())

    def run(workers: int, detector) -> list[np.ndarray]:
        pipe = Pipeline(SOLID)
        runner = DetectionRunner(detector, 2.0, hang_limit_s=120.0, workers=workers,
                                 schedule=schedule_for(Settings()))
        out, in_flight, submitted = [], [], 0
        while submitted < len(frames) or in_flight:
            while submitted < len(frames) and len(in_flight) < 2:
                img = frames[submitted]
                in_flight.append((submitted, img, runner.submit(
                    img, pipe.tracker.tracks, lead=len(in_flight) + 1)))
                submitted += 1
            i, img, fut = in_flight.pop(0)
            outcome = runner.result(fut, 1280, 720, time.perf_counter())
            assert outcome.detections is not None, outcome.reason
            out.append(outcome.detections.xyxy.copy())
            pipe.process(Frame(i, i / 30, img), outcome)
        runner.close()
        return out

    one = run(1, det)
    gated = _Overlap(det)
    two = run(2, gated)
    assert gated.overlapped
    counts = [len(b) for b in one]  # the small faces come and go with their crops
    assert sum(counts) >= 2.5 * len(frames) and max(counts) >= 4, counts
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
