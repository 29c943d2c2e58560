"""Stage timings, frame rates, counters and process snapshots for the dashboard and summary.

The pipeline threads write into a ``Metrics`` (cheap: a lock and a deque append); the UI
reads ``snapshot()`` on a timer a few times a second, never per frame.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from backend.errors import STATS, ErrorStats
from backend.memory import MemoryPool, PoolStats

STAGES: tuple[str, ...] = ("capture", "detect", "track", "mask", "output")


@dataclass(frozen=True, slots=True)
class StageStats:
    """Latency of one stage over the recent window, in milliseconds."""

    name: str
    p50_ms: float
    p95_ms: float
    last_ms: float
    count: int


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """Everything the dashboard plots, at one instant."""

    time: float
    input_fps: float
    output_fps: float
    stages: dict[str, StageStats]
    e2e_p50_ms: float
    e2e_p95_ms: float
    frames_in: int
    frames_out: int
    dropped_frames: int
    fail_closed_frames: int
    faces: int
    faces_per_frame: float
    cpu_percent: float
    rss_mb: float
    pool: PoolStats | None
    gpu_memory_mb: float | None
    recoveries: dict[str, int] = field(default_factory=dict)
    recovery_total: int = 0
    faces_replaced: int = 0  # face replacement: faces replaced so far
    replace_fallbacks: int = 0  # and faces masked instead because replacing them failed


def _percentile(values: deque[float], q: float) -> float:
    return float(np.percentile(np.fromiter(values, float), q)) if values else 0.0


class _Rate:
    """Events per second over a sliding window of timestamps."""

    def __init__(self, window_s: float = 2.0) -> None:
        self._window = window_s
        self._times: deque[float] = deque(maxlen=4096)

    def tick(self, now: float) -> None:
        self._times.append(now)

    def rate(self, now: float) -> float:
        while self._times and now - self._times[0] > self._window:
            self._times.popleft()
        n = len(self._times)
        if n < 2:
            return 0.0
        span = max(now - self._times[0], 1e-6)
        return (n - 1) / span


class Metrics:
    """Thread-safe collector. Times are in seconds from ``time.perf_counter``."""

    def __init__(
        self, window: int = 300, pool: MemoryPool | None = None, errors: ErrorStats | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._window = window
        self.pool = pool
        self.errors = errors or STATS
        self._gpu_memory_mb: float | None = None
        self._proc = None
        self.reset()

    def reset(self) -> None:
        """Zero every counter and window (the pool and error stats are reset by their owners)."""
        with self._lock:
            self._stages: dict[str, deque[float]] = {s: deque(maxlen=self._window) for s in STAGES}
            self._stage_counts: dict[str, int] = dict.fromkeys(STAGES, 0)
            self._e2e: deque[float] = deque(maxlen=self._window)
            self._in_rate = _Rate()
            self._out_rate = _Rate()
            self.frames_in = 0
            self.frames_out = 0
            self.dropped = 0
            self.fail_closed = 0
            self.faces = 0
            self._t0 = time.perf_counter()

    # -- writers (pipeline threads) ----------------------------------------------------
    def add_stage(self, stage: str, seconds: float) -> None:
        """Record one stage duration."""
        with self._lock:
            if stage not in self._stages:
                self._stages[stage] = deque(maxlen=self._window)
                self._stage_counts[stage] = 0
            self._stages[stage].append(seconds * 1000.0)
            self._stage_counts[stage] += 1

    def frame_in(self, now: float | None = None) -> None:
        """A frame was captured."""
        with self._lock:
            self.frames_in += 1
            self._in_rate.tick(time.perf_counter() if now is None else now)

    def frame_out(
        self, captured_at: float | None, faces: int, fail_closed: bool, now: float | None = None
    ) -> None:
        """A finished frame left the pipeline; ``captured_at`` gives end-to-end latency."""
        t = time.perf_counter() if now is None else now
        with self._lock:
            self.frames_out += 1
            self.faces += faces
            self.fail_closed += int(fail_closed)
            self._out_rate.tick(t)
            if captured_at is not None:
                self._e2e.append((t - captured_at) * 1000.0)

    def add_e2e(self, seconds: float) -> None:
        """Record an end-to-end latency measured elsewhere (e.g. at paint time)."""
        with self._lock:
            self._e2e.append(seconds * 1000.0)

    def drop(self, n: int = 1) -> None:
        """Frames dropped (live sources keep only the newest)."""
        with self._lock:
            self.dropped += n

    def set_gpu_memory(self, mb: float | None) -> None:
        """GPU memory in use when CUDA is used, else None."""
        self._gpu_memory_mb = mb

    # -- readers -------------------------------------------------------------------------
    def elapsed(self) -> float:
        """Seconds since the last reset."""
        return time.perf_counter() - self._t0

    def average_fps(self) -> float:
        """Frames out per second since the last reset."""
        return self.frames_out / max(self.elapsed(), 1e-9)

    def snapshot(self, with_process: bool = True) -> MetricsSnapshot:
        """A consistent copy of every figure (psutil readings when ``with_process``)."""
        now = time.perf_counter()
        with self._lock:
            stages = {
                name: StageStats(
                    name,
                    _percentile(vals, 50),
                    _percentile(vals, 95),
                    vals[-1] if vals else 0.0,
                    self._stage_counts[name],
                )
                for name, vals in self._stages.items()
            }
            snap_e2e = (_percentile(self._e2e, 50), _percentile(self._e2e, 95))
            in_fps, out_fps = self._in_rate.rate(now), self._out_rate.rate(now)
            counters = (self.frames_in, self.frames_out, self.dropped, self.fail_closed, self.faces)
        cpu, rss = (0.0, 0.0)
        if with_process:
            cpu, rss = self._process_usage()
        fin, fout, dropped, failc, faces = counters
        # read only when face replacement was ever loaded: no import for the common case
        engine = sys.modules.get("backend.replace.engine")
        replaced, fell_back = engine.COUNTS.snapshot() if engine is not None else (0, 0)
        return MetricsSnapshot(
            time=time.time(),
            input_fps=in_fps,
            output_fps=out_fps,
            stages=stages,
            e2e_p50_ms=snap_e2e[0],
            e2e_p95_ms=snap_e2e[1],
            frames_in=fin,
            frames_out=fout,
            dropped_frames=dropped,
            fail_closed_frames=failc,
            faces=faces,
            faces_per_frame=faces / fout if fout else 0.0,
            cpu_percent=cpu,
            rss_mb=rss,
            pool=self.pool.stats() if self.pool is not None else None,
            gpu_memory_mb=self._gpu_memory_mb,
            recoveries=self.errors.counts(),
            recovery_total=self.errors.total(),
            faces_replaced=replaced,
            replace_fallbacks=fell_back,
        )

    def _process_usage(self) -> tuple[float, float]:
        import psutil

        if self._proc is None:
            self._proc = psutil.Process()
            self._proc.cpu_percent(None)  # first call primes the counter
        return self._proc.cpu_percent(None), self._proc.memory_info().rss / 2**20


class StageTimer:
    """``with timer("detect"):`` records the block's duration into metrics."""

    __slots__ = ("_metrics", "_stage", "_t")

    def __init__(self, metrics: Metrics, stage: str) -> None:
        self._metrics = metrics
        self._stage = stage
        self._t = 0.0

    def __enter__(self) -> StageTimer:
        self._t = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._metrics.add_stage(self._stage, time.perf_counter() - self._t)
