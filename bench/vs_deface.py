"""PTIM vs deface 1.5.0 on the same clips: speed (whole-command wall clock) and leaks.

Run: ``python bench/vs_deface.py [--scenes demo,fast_motion] [--frames N] [--size WxH]
[--repeat N]``.

Configurations, each run as its own process on every clip:

* ``ptim``          ``main.py process CLIP -o OUT --quiet``            (PTIM defaults)
* ``ptim-solid``    ``main.py process CLIP -o OUT --quiet --mask solid``
* ``deface``        ``deface CLIP -o OUT``                             (deface defaults)
* ``deface-solid``  ``deface CLIP -o OUT --replacewith solid``
* ``passthrough``   ``bench/common.py passthrough CLIP OUT``: decode + encode, no detection,
  PTIM's reader thread + writer with its encoder settings (libx264 veryfast crf 23): the
  ceiling any masking tool on this machine can reach with this encoder.

Time = wall clock from process start to exit (interpreter start, imports and model load
included); fps = frames / time, summed over the clips. With ``--repeat N`` every
(configuration, clip) pair is run N times, round-robin so that load from other jobs hits
all configurations alike, and the median time is used. Solid-mask outputs of the last
round are scored for leaks with ``bench/common.py``'s criterion.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    DEFAULT_SIZE,
    OUT_DIR,
    SceneSpec,
    Score,
    decode_frames,
    deface_cmd,
    make_clip,
    parse_scenes,
    parse_size,
    passthrough_cmd,
    ptim_cmd,
    run_timed,
    score_outputs,
)

DEFAULT_SCENES = ("demo", "fast_motion")  # 300 + 120 frames

CmdFactory = Callable[[Path, Path], list[str]]

CONFIGS: dict[str, CmdFactory] = {
    "ptim": lambda c, o: ptim_cmd(c, o),
    "ptim-solid": lambda c, o: ptim_cmd(c, o, "--mask", "solid"),
    "deface": lambda c, o: deface_cmd(c, o),
    "deface-solid": lambda c, o: deface_cmd(c, o, "--replacewith", "solid"),
    "passthrough": passthrough_cmd,
}
SOLID = ("ptim-solid", "deface-solid")


@dataclass(slots=True)
class Timing:
    """Wall times of one configuration: clip name -> seconds of each repeat."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    failed: bool = False

    def median(self, clip: str) -> float:
        """Median wall time on one clip."""
        return statistics.median(self.seconds[clip])

    def fps(self, frames: dict[str, int]) -> float:
        """Frames of all clips / sum of the median wall times (0 if it failed)."""
        if self.failed or not self.seconds:
            return 0.0
        return sum(frames.values()) / sum(self.median(c) for c in frames)


def output_path(config: str, clip: Path) -> Path:
    """Where a configuration writes its output for a clip."""
    return OUT_DIR / "vs_deface" / f"{clip.stem}_{config}.mp4"


def warm_up(size: tuple[int, int]) -> None:
    """One untimed PTIM run on a short clip: the first run on a machine derives and caches
    the int8 detector (a few seconds, once), which no later run pays."""
    _, clip = make_clip("demo", size, 10)
    res = run_timed(ptim_cmd(clip, OUT_DIR / "vs_deface" / "warm_up.mp4"), echo=False)
    print(f"-- warm-up run {res.seconds:.1f} s (untimed; derives the int8 detector if needed)")


def run_all(clips: dict[str, tuple[SceneSpec, Path]], repeat: int) -> dict[str, Timing]:
    """Every configuration on every clip, ``repeat`` rounds, round-robin."""
    timings = {name: Timing() for name in CONFIGS}
    (OUT_DIR / "vs_deface").mkdir(parents=True, exist_ok=True)
    spec = next(iter(clips.values()))[0]
    warm_up((spec.width, spec.height))
    for r in range(repeat):
        print(f"-- round {r + 1}/{repeat} (load average {os.getloadavg()[0]:.2f})", flush=True)
        for clip_name, (_, clip) in clips.items():
            for config, factory in CONFIGS.items():
                res = run_timed(factory(clip, output_path(config, clip)), echo=(r == 0))
                timing = timings[config]
                timing.seconds.setdefault(clip_name, []).append(res.seconds)
                timing.failed |= res.returncode != 0
    return timings


def score_solid(clips: dict[str, tuple[SceneSpec, Path]],
                timings: dict[str, Timing]) -> dict[str, Score | None]:
    """Leaks of the solid-mask configurations, summed over clips (None if a run failed)."""
    totals: dict[str, Score | None] = {}
    for config in SOLID:
        totals[config] = None if timings[config].failed else Score(0)
    for spec, clip in clips.values():
        configs = [c for c in SOLID if totals[c] is not None]
        scores = score_outputs(spec, [decode_frames(output_path(c, clip)) for c in configs])
        for config, s in zip(configs, scores, strict=True):
            total = totals[config]
            total.frames_expected += s.frames_expected
            total.frames += s.frames
            total.face_frames += s.face_frames
            total.leaked += s.leaked
            total.frames_with_leak += s.frames_with_leak
            total.leaks.extend(s.leaks)
    return totals


def print_timing_table(timings: dict[str, Timing], frames: dict[str, int]) -> None:
    """config, per-clip median seconds, fps, ratio vs deface default, % of pass-through."""
    base = timings["deface"].fps(frames)
    ceiling = timings["passthrough"].fps(frames)
    clip_cols = "".join(f" {c + ' s':>16}" for c in frames)
    head = f"{'config':<14}{clip_cols} {'fps':>7} {'vs deface':>9} {'% of pass':>9}"
    print()
    print(head)
    print("-" * len(head))
    for config, t in timings.items():
        if t.failed:
            print(f"{config:<14} failed")
            continue
        cells = "".join(f" {t.median(c):>16.1f}" for c in frames)
        fps = t.fps(frames)
        ratio = f"{fps / base:.2f}x" if base else "-"
        share = f"{fps / ceiling:.0%}" if ceiling else "-"
        print(f"{config:<14}{cells} {fps:>7.1f} {ratio:>9} {share:>9}")
    print("-" * len(head))


def print_leak_table(leaks: dict[str, Score | None]) -> None:
    """Leaked face-frames of the two solid-mask configurations."""
    print()
    print(f"{'config':<14} {'frames':>6} {'face-frames':>11} {'leaked':>7} {'frames w/ leak':>14}")
    for config, s in leaks.items():
        if s is None:
            print(f"{config:<14} failed")
            continue
        print(f"{config:<14} {s.frames:>6} {s.face_frames:>11} {s.leaked:>7}"
              f" {s.frames_with_leak:>14}")


def summary(timings: dict[str, Timing], frames: dict[str, int],
            leaks: dict[str, Score | None]) -> str:
    """The key figures in three lines."""
    ptim, deface = timings["ptim"].fps(frames), timings["deface"].fps(frames)
    ceiling = timings["passthrough"].fps(frames)

    def n(s: Score | None) -> str:
        return "failed" if s is None else f"{s.leaked}/{s.face_frames}"

    ratio = ptim / deface if deface else float("nan")
    share = ptim / ceiling if ceiling else float("nan")
    return (
        f"PTIM default {ptim:.1f} fps, deface default {deface:.1f} fps, ratio {ratio:.2f}x\n"
        f"PTIM solid leaks {n(leaks['ptim-solid'])} vs deface solid leaks "
        f"{n(leaks['deface-solid'])} (leaked/face-frames)\n"
        f"pass-through {ceiling:.1f} fps, PTIM at {share:.0%} of it"
    )


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run every configuration, print the tables and the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes",
                        help=f"comma-separated presets (default {','.join(DEFAULT_SCENES)})")
    parser.add_argument("--frames", type=int, help="only the first N frames of each scene")
    parser.add_argument("--size", default="x".join(map(str, DEFAULT_SIZE)), help="WxH (1280x720)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement (median)")
    args = parser.parse_args(argv)
    try:
        scenes = parse_scenes(args.scenes, DEFAULT_SCENES)
        size = parse_size(args.size)
    except ValueError as exc:
        parser.error(str(exc))
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    clips = {name: make_clip(name, size, args.frames) for name in scenes}
    frames = {name: spec.n_frames for name, (spec, _) in clips.items()}
    desc = ", ".join(f"{n} {f}" for n, f in frames.items())
    print(f"clips at {size[0]}x{size[1]}: {desc} frames; {os.cpu_count()} CPUs; "
          f"repeat {args.repeat}")
    timings = run_all(clips, args.repeat)
    leaks = score_solid(clips, timings)
    print_timing_table(timings, frames)
    print_leak_table(leaks)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}\n")
    print(summary(timings, frames, leaks))
    return 1 if any(t.failed for t in timings.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
