"""Where `process` spends its CPU: thread CPU time by part, over the clips given.

Runs ``main.py process`` in this interpreter on the given videos (default: the 1280x720
clips that ``bench/real_world.py`` cached) with counters wrapped around the detector,
the encoder, the decoder, the tracker and the second pass, and prints each part's CPU
seconds and share of the process's CPU; detector work is split by region kind (coarse,
fine, refine, second pass) with its input pixels a frame. Figures only, not a test: the
wrapped calls run unchanged, so the output files are the ones a plain run writes.

    python bench/cpu_share.py [VIDEO ...] [--process-args "--mask solid"]
"""

from __future__ import annotations

import argparse
import collections
import shlex
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_lock = threading.Lock()
_cpu: collections.Counter = collections.Counter()
_pixels: collections.Counter = collections.Counter()
_local = threading.local()
_kinds: dict[tuple[int, int, int, int], str] = {}  # a crop's clipped corners -> its kind


def _timed(cls: type, name: str, key: str) -> None:
    """Count the thread CPU time of every call of ``cls.name`` under ``key``."""
    inner = getattr(cls, name)

    def wrapper(*args, **kwargs):
        t = time.thread_time()
        try:
            return inner(*args, **kwargs)
        finally:
            with _lock:
                _cpu[key] += time.thread_time() - t

    setattr(cls, name, wrapper)


def _instrument() -> None:
    import backend.detect.centerface as cf
    import backend.pipeline as pl
    import backend.sinks.recorder as rec
    import backend.sources.video_file as vf
    import backend.track.second_pass as sp

    detect_regions = cf.CenterFaceDetector.detect_regions
    detect_batch = cf.CenterFaceDetector._detect_batch

    def regions_wrapper(self, image, regions):
        # a crop's kind by its clipped corners (what _detect_batch sees); the second pass
        # asks for crops of kind "refine" too, so its calls are told apart by their caller
        h, w = image.shape[:2]
        # (shared by all threads: the batches run on the detector's helper lanes too)
        second = getattr(_local, "second", False)
        with _lock:
            if len(_kinds) > 100_000:
                _kinds.clear()
            for r in regions:
                _kinds[(max(0, int(r.x0)), max(0, int(r.y0)), min(w, int(r.x1)),
                        min(h, int(r.y1)))] = "second pass" if second else r.kind
        return detect_regions(self, image, regions)

    def batch_wrapper(self, img, crops, pw, ph, clip=True):
        t = time.thread_time()
        try:
            return detect_batch(self, img, crops, pw, ph, clip)
        finally:
            spent = time.thread_time() - t
            with _lock:
                for c in crops:
                    kind = _kinds.get((c.x0, c.y0, c.x1, c.y1), "other")
                    _cpu["detect: " + kind] += spent / len(crops)
                    _pixels[kind] += pw * ph

    def redetect_wrapper(self, original, crops):
        _local.second = True
        try:
            return redetect(self, original, crops)
        finally:
            _local.second = False

    redetect = sp.SecondPass._redetect
    cf.CenterFaceDetector.detect_regions = regions_wrapper
    cf.CenterFaceDetector._detect_batch = batch_wrapper
    sp.SecondPass._redetect = redetect_wrapper
    _timed(rec.VideoRecorder, "write", "encode (write)")
    _timed(rec.VideoRecorder, "close", "encode (close: the last frames)")
    _timed(vf.VideoFileSource, "read", "decode")
    _timed(pl.Pipeline, "process", "track + mask")
    _timed(sp.SecondPass, "push", "second pass (all, its crops included)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", type=Path)
    parser.add_argument("--process-args", default="--mask solid",
                        help='extra process args (default "--mask solid")')
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "cpu_share")
    args = parser.parse_args()
    videos = args.videos or sorted((ROOT / "bench" / "out" / "real_world" / "clips")
                                   .glob("*_1280x720_*.mp4"))
    if not videos:
        parser.error("no videos given and none cached (run bench/real_world.py first)")
    from bench.common import count_frames

    frames = sum(count_frames(v) for v in videos)
    _instrument()
    import main as ptim_main

    sys.argv = ["main.py", "process", *map(str, videos), "-o", str(args.out), "--quiet",
                *shlex.split(args.process_args)]
    wall0, cpu0 = time.perf_counter(), time.process_time()
    try:
        rc = ptim_main.main()
    except SystemExit as exc:
        rc = exc.code
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print(f"{len(videos)} videos, {frames} frames; exit {rc}; wall {wall:.1f} s, "
          f"CPU {cpu:.1f} s ({cpu / max(wall, 1e-9):.2f} cores busy)")
    print(f"{'part':42s} {'CPU s':>7s} {'share':>6s} {'ms/frame':>8s} {'kpx/frame':>9s}")
    for key, sec in sorted(_cpu.items(), key=lambda kv: -kv[1]):
        kind = key.removeprefix("detect: ")
        px = f"{_pixels[kind] / max(frames, 1) / 1000:9.0f}" if key.startswith("detect") else ""
        print(f"{key:42s} {sec:7.2f} {100 * sec / cpu:5.1f}% "
              f"{1000 * sec / max(frames, 1):8.2f} {px}")
    # the second pass's total holds its crops' detector time, already counted apart
    rest = cpu - sum(_cpu.values()) + _cpu["detect: second pass"]
    print(f"{'rest (start-up, queues, other threads)':42s} {rest:7.2f} {100 * rest / cpu:5.1f}%")
    return 0 if rc in (0, None) else 1


if __name__ == "__main__":
    raise SystemExit(main())
