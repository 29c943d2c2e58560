"""Soak: the live pipeline for minutes, watching memory, threads, fds and raw frames.

Runs what the desktop app runs, without Qt: ``CaptureLoop`` on the looping demo source
(paced at its 30 fps) -> ``ProcessLoop`` with the real detector -> a consumer that takes
each result from the out slot and releases the one it showed before, as the preview does.
Every output frame is checked against the demo's ground truth (``frame_is_raw``). Once a
second it samples RSS, thread count, open fds and the memory pool.

Bars (exit 1 when one fails): RSS growth after warm-up (median of the last 10 samples
minus median of the first 10) below ``--rss-bar`` MB (5), no growth in threads or open
fds (same medians), no raw frame, frames flowing. The RSS curve is drawn to a PNG.

    python bench/soak.py [--minutes 10 | --seconds S] [--size WxH] [--warmup S] [--out PNG]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_PLOT = ROOT / "bench" / "out" / "soak_rss.png"
WINDOW = 10  # samples in each median of the growth figures


@dataclass(slots=True)
class Sample:
    """One reading, ``t`` seconds after the pipeline started."""

    t: float
    rss_mb: float
    threads: int
    fds: int
    pool_in_use_mb: float
    pool_cached_mb: float
    pool_allocations: int
    frames_out: int


@dataclass(slots=True)
class Consumer:
    """Takes results like the GUI's frame slot handler; checks each for raw faces."""

    pipeline: object
    slot: object
    truth: object  # index -> ground-truth boxes
    shown: int = 0
    raw: list[int] = field(default_factory=list)
    fail_closed: int = 0
    ready: threading.Event = field(default_factory=threading.Event)

    def run(self, stop: threading.Event) -> None:
        from backend.live import frame_is_raw

        current = None
        while not stop.is_set():
            if not self.ready.wait(0.05):
                continue
            self.ready.clear()
            res = self.slot.take()
            if res is None:
                continue
            if frame_is_raw(res.frame.image, res.original, list(self.truth(res.frame.index))):
                self.raw.append(res.frame.index)
            self.fail_closed += int(res.fail_closed)
            self.shown += 1
            if current is not None:  # the preview keeps the frame it paints until the next
                self.pipeline.release(current)
            current = res
        if current is not None:
            self.pipeline.release(current)


def growth(values: list[float]) -> float:
    """Median of the last WINDOW values minus the median of the first WINDOW."""
    if not values:
        return 0.0
    n = min(WINDOW, len(values))
    return statistics.median(values[-n:]) - statistics.median(values[:n])


def plot_rss(samples: list[Sample], warmup: float, path: Path, title: str) -> Path:
    """Draw RSS (MB) over time with OpenCV: axes, ticks, the warm-up line, the curve."""
    import cv2
    import numpy as np

    w, h = 960, 440
    left, right, top, bottom = 80, 30, 50, 60
    img = np.full((h, w, 3), 255, np.uint8)
    ts = [s.t for s in samples] or [0.0]
    rss = [s.rss_mb for s in samples] or [0.0]
    t_max = max(ts[-1], 1.0)
    lo, hi = min(rss), max(rss)
    pad = max((hi - lo) * 0.1, 1.0)
    lo, hi = lo - pad, hi + pad

    def xy(t: float, v: float) -> tuple[int, int]:
        x = left + (w - left - right) * t / t_max
        y = h - bottom - (h - top - bottom) * (v - lo) / (hi - lo)
        return round(x), round(y)

    grey, black, font = (200, 200, 200), (0, 0, 0), cv2.FONT_HERSHEY_SIMPLEX
    for k in range(6):  # horizontal grid and MB labels
        v = lo + (hi - lo) * k / 5
        _, y = xy(0, v)
        cv2.line(img, (left, y), (w - right, y), grey, 1)
        cv2.putText(img, f"{v:.0f}", (8, y + 5), font, 0.45, black, 1, cv2.LINE_AA)
    for k in range(7):  # vertical ticks and seconds
        t = t_max * k / 6
        x, _ = xy(t, lo)
        cv2.line(img, (x, h - bottom), (x, h - bottom + 6), black, 1)
        cv2.putText(img, f"{t:.0f}", (x - 12, h - bottom + 24), font, 0.45, black, 1,
                    cv2.LINE_AA)
    cv2.line(img, (left, top), (left, h - bottom), black, 1)
    cv2.line(img, (left, h - bottom), (w - right, h - bottom), black, 1)
    wx, _ = xy(min(warmup, t_max), lo)
    for y in range(top, h - bottom, 10):  # dashed: end of warm-up
        cv2.line(img, (wx, y), (wx, min(y + 5, h - bottom)), (0, 140, 255), 1)
    pts = np.array([xy(t, v) for t, v in zip(ts, rss, strict=True)], np.int32)
    if len(pts) > 1:
        cv2.polylines(img, [pts], False, (200, 80, 0), 2, cv2.LINE_AA)
    cv2.putText(img, title, (left, 30), font, 0.55, black, 1, cv2.LINE_AA)
    cv2.putText(img, "RSS (MB)", (8, top - 12), font, 0.45, black, 1, cv2.LINE_AA)
    cv2.putText(img, "time (s); dashed: end of warm-up", (w // 2 - 120, h - 12), font, 0.45,
                black, 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"{path}: cannot write the plot")
    return path


def soak(seconds: float, warmup: float, size: tuple[int, int] | None, plot: Path,
         rss_bar: float, quiet: bool = False) -> int:
    """Run the live pipeline for ``seconds``; print the figures; return the exit code."""
    import psutil

    from backend.live import CaptureLoop, LatestSlot, ProcessLoop
    from backend.metrics import Metrics
    from backend.pipeline import DetectionRunner, Pipeline, build_detector, make_pool
    from backend.sources import SCENES, DemoSource
    from config.schema import Settings

    settings = Settings()
    spec = SCENES["demo"] if size is None else SCENES["demo"].resized(*size)
    source = DemoSource(spec=spec, loop=True, realtime=True)
    pool = make_pool(settings.performance.gpu_memory_pool_size_mb)
    metrics = Metrics(pool=pool)
    pipe = Pipeline(settings, pool=pool, metrics=metrics)
    detector = build_detector(settings, pool)
    runner = DetectionRunner(detector, settings.detector.deadline_ms / 1000, pool=pool)
    cap_slot, out_slot = LatestSlot(), LatestSlot()
    consumer = Consumer(pipe, out_slot, source.ground_truth)
    capture = CaptureLoop(source, cap_slot, metrics)
    proc = ProcessLoop(pipe, cap_slot, out_slot, on_ready=consumer.ready.set)
    proc.keep_original = True  # the raw check compares with the captured frame
    proc.set_runner(runner)
    me = psutil.Process()
    stop = threading.Event()
    threads = [threading.Thread(target=capture.run, args=(stop,), name="soak-capture"),
               threading.Thread(target=proc.run, args=(stop,), name="soak-process"),
               threading.Thread(target=consumer.run, args=(stop,), name="soak-consumer")]
    source.open()
    t0 = time.monotonic()
    for t in threads:
        t.start()
    samples: list[Sample] = []
    try:
        k = 0
        while time.monotonic() - t0 < seconds:
            k += 1
            time.sleep(max(0.0, t0 + k - time.monotonic()))
            st = pool.stats()
            samples.append(Sample(time.monotonic() - t0, me.memory_info().rss / 2**20,
                                  me.num_threads(), me.num_fds(), st.in_use_mb, st.cached_mb,
                                  st.allocations, consumer.shown))
            if not quiet and k % 60 == 0:
                s = samples[-1]
                print(f"  {s.t:6.0f} s  rss {s.rss_mb:7.1f} MB  threads {s.threads}  "
                      f"fds {s.fds}  frames {s.frames_out}", flush=True)
    except KeyboardInterrupt:
        print("soak: interrupted; figures so far", flush=True)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        runner.close()
        source.close()
    snap = metrics.snapshot(with_process=False)
    after = [s for s in samples if s.t >= warmup] or samples
    rss_growth = growth([s.rss_mb for s in after])
    thread_delta = growth([s.threads for s in after])
    fd_delta = growth([s.fds for s in after])
    alloc_delta = after[-1].pool_allocations - after[0].pool_allocations if after else 0
    elapsed = samples[-1].t if samples else 0.0
    title = (f"PTIM soak: demo {spec.width}x{spec.height}, {elapsed:.0f} s, "
             f"RSS growth after warm-up {rss_growth:+.1f} MB")
    plot_rss(samples, warmup, plot, title)

    print(f"soak: {elapsed:.0f} s ({warmup:.0f} s warm-up, {len(after)} samples after), "
          f"demo {spec.width}x{spec.height} at {spec.fps:.0f} fps, detector "
          f"{detector.provider} {detector.long_side} px")
    print(f"frames: in {snap.frames_in}, out {snap.frames_out}, shown {consumer.shown}, "
          f"dropped {snap.dropped_frames}, fail-closed {consumer.fail_closed}")
    print(f"raw frames: {len(consumer.raw)}")
    if after:
        print(f"rss: {after[0].rss_mb:.1f} MB after warm-up, {after[-1].rss_mb:.1f} MB at end, "
              f"growth after warm-up {rss_growth:+.2f} MB (bar < {rss_bar:g} MB)")
        print(f"threads: {after[0].threads} -> {after[-1].threads} (delta {thread_delta:+g})")
        print(f"fds: {after[0].fds} -> {after[-1].fds} (delta {fd_delta:+g})")
        print(f"pool: in use {after[-1].pool_in_use_mb:.1f} MB, cached "
              f"{after[-1].pool_cached_mb:.1f} MB, new allocations after warm-up {alloc_delta}")
    print(f"plot: {plot}")
    failed = []
    if rss_growth >= rss_bar:
        failed.append(f"RSS grew {rss_growth:.2f} MB")
    if thread_delta > 0:
        failed.append(f"threads grew by {thread_delta:g}")
    if fd_delta > 0:
        failed.append(f"open fds grew by {fd_delta:g}")
    if consumer.raw:
        failed.append(f"{len(consumer.raw)} raw frames (first {consumer.raw[:5]})")
    if consumer.shown == 0:
        failed.append("no frame came out")
    print("result: " + ("PASS" if not failed else "FAIL: " + "; ".join(failed)))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Parse the options and run the soak."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="duration (default 10)")
    ap.add_argument("--seconds", type=float, help="duration in seconds (overrides --minutes)")
    ap.add_argument("--warmup", type=float, help="seconds left out of the growth figures "
                    "(default: 60, or a quarter of a run shorter than 4 minutes)")
    ap.add_argument("--size", help="demo frame size WxH (default: the demo's 1280x720)")
    ap.add_argument("--out", type=Path, default=DEFAULT_PLOT, help="PNG of RSS over time")
    ap.add_argument("--rss-bar", type=float, default=5.0, help="allowed RSS growth in MB")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    args = ap.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    warmup = args.warmup if args.warmup is not None else min(60.0, seconds / 4)
    size = None
    if args.size:
        from bench.common import parse_size

        size = parse_size(args.size)
    return soak(seconds, warmup, size, args.out, args.rss_bar, args.quiet)


if __name__ == "__main__":
    sys.exit(main())
