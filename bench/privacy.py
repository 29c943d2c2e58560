"""Privacy gate: count face-frames that PTIM's solid mask leaves visible, per scene.

Run: ``python bench/privacy.py [--scenes a,b] [--frames N] [--size WxH] [--with-deface]``.

For each synthetic scene preset the clip is generated (cached under ``bench/out``), masked
with ``main.py process CLIP -o OUT --mask solid --quiet`` (and, with ``--with-deface``,
``deface CLIP -o OUT --replacewith solid``), then every output frame is compared with the
unmasked rendering and the exact ground-truth boxes (see ``bench/common.py`` for the leak
criterion). Prints where PTIM leaked (frame ranges, box sizes), one row per scene, then a totals
line that ends with the gate verdict.

Exit status: 0 when PTIM leaks no face-frame; 1 when it leaks any, when its output lacks
frames, or when a PTIM run fails (so the script can gate a release).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    DEFAULT_SIZE,
    OUT_DIR,
    SCENES,
    Leak,
    Score,
    box_size,
    decode_frames,
    deface_cmd,
    describe_leaks,
    make_clip,
    parse_scenes,
    parse_size,
    ptim_cmd,
    run_timed,
    score_outputs,
)


@dataclass(slots=True)
class SceneResult:
    """Scores of one scene: PTIM always, deface when asked (None if not run or failed)."""

    name: str
    frames: int
    ptim: Score | None
    deface: Score | None


def runs(indices: list[int]) -> list[tuple[int, int]]:
    """Sorted frame indices as (first, last) runs of consecutive frames."""
    out: list[tuple[int, int]] = []
    for i in sorted(indices):
        if out and i == out[-1][1] + 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def frame_ranges(indices: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'."""
    return ", ".join(f"{a}-{b}" if b != a else f"{a}" for a, b in runs(indices))


def run_scene(name: str, size: tuple[int, int], frames: int | None,
              with_deface: bool, ptim_args: tuple[str, ...] = ()) -> SceneResult:
    """Generate the clip, run the tools on it and score their outputs in one pass."""
    spec, clip = make_clip(name, size, frames)
    work = OUT_DIR / "privacy"
    work.mkdir(parents=True, exist_ok=True)
    stem = clip.stem
    runs: list[tuple[str, Path]] = []
    ptim_out = work / f"{stem}_ptim_solid.mp4"
    res = run_timed(ptim_cmd(clip, ptim_out, "--mask", "solid", *ptim_args))
    if res.returncode == 0:
        runs.append(("ptim", ptim_out))
    if with_deface:
        deface_out = work / f"{stem}_deface_solid.mp4"
        res = run_timed(deface_cmd(clip, deface_out, "--replacewith", "solid"))
        if res.returncode == 0:
            runs.append(("deface", deface_out))
    scores = score_outputs(spec, [decode_frames(p) for _, p in runs])
    by_tool = {tool: s for (tool, _), s in zip(runs, scores, strict=True)}
    return SceneResult(name, spec.n_frames, by_tool.get("ptim"), by_tool.get("deface"))


def _cell(score: Score | None, what: str) -> str:
    if score is None:
        return "failed"
    return str(getattr(score, what))


def print_table(results: list[SceneResult], with_deface: bool) -> None:
    """One row per scene (the totals line is printed by ``main``, last)."""
    head = (f"{'scene':<20} {'frames':>6} {'face-frames':>11} {'PTIM leaked':>11}"
            f" {'(in frames)':>11}")
    if with_deface:
        head += f" {'deface leaked':>13} {'(in frames)':>11}"
    print()
    print(head)
    print("-" * len(head))
    for r in results:
        ref = r.ptim or r.deface
        face_frames = ref.face_frames if ref else 0
        frames = f"{r.ptim.frames}" if r.ptim else "-"
        if r.ptim and r.ptim.frames != r.frames:
            frames += f"/{r.frames}!"
        row = (f"{r.name:<20} {r.frames:>6} {face_frames:>11} {_cell(r.ptim, 'leaked'):>11}"
               f" {_cell(r.ptim, 'frames_with_leak'):>11}")
        if with_deface:
            row += (f" {_cell(r.deface, 'leaked'):>13}"
                    f" {_cell(r.deface, 'frames_with_leak'):>11}")
        if r.ptim and r.ptim.frames != r.frames:
            row += f"  (PTIM wrote {frames} frames)"
        print(row)
    print("-" * len(head))


def totals_line(results: list[SceneResult], with_deface: bool) -> str:
    """'total: N frames, F face-frames, PTIM leaked L (in K frames)[, deface leaked D]'."""
    frames = sum(r.frames for r in results)
    face_frames = sum((r.ptim or r.deface).face_frames for r in results if r.ptim or r.deface)
    leaked = sum(r.ptim.leaked for r in results if r.ptim)
    leak_frames = sum(r.ptim.frames_with_leak for r in results if r.ptim)
    line = (f"total: {len(results)} scenes, {frames} frames, {face_frames} face-frames, "
            f"PTIM leaked {leaked} face-frames ({leaked / max(face_frames, 1):.1%}) "
            f"in {leak_frames} frames")
    if with_deface:
        d = sum(r.deface.leaked for r in results if r.deface)
        line += f"; deface leaked {d} face-frames ({d / max(face_frames, 1):.1%})"
    return line


def _run_line(leaks: list[Leak]) -> str:
    """One run of consecutive leaked frames of one face: where it was and how exposed."""
    a, b = leaks[0], leaks[-1]
    span = f"{a.frame}-{b.frame}" if b.frame != a.frame else f"{a.frame}"
    exposed = [lk.exposed for lk in leaks]
    visible = [lk.visible for lk in leaks]
    box = ", ".join(f"{v:.0f}" for v in a.box)
    return (f"    frames {span:<9} true box at {a.frame}: ({box}) {box_size(a.box)}, "
            f"{_span(visible)} in frame, core exposed {_span(exposed)}")


def _span(values: list[float]) -> str:
    """'40%' or '20%-35%' (min-max)."""
    lo, hi = f"{min(values):.0%}", f"{max(values):.0%}"
    return lo if lo == hi else f"{lo}-{hi}"


def print_leaks(results: list[SceneResult], details: bool = False) -> None:
    """Where PTIM leaked, per scene and face: runs of frames, true boxes, exposure."""
    for r in results:
        if not r.ptim or not r.ptim.leaks:
            continue
        print(f"\nPTIM leaks in {r.name}:")
        for face in sorted({lk.face for lk in r.ptim.leaks}):
            leaks = [lk for lk in r.ptim.leaks if lk.face == face]
            by_frame = {lk.frame: lk for lk in leaks}
            print(f"  face {face}: {len(leaks)} frames: {frame_ranges(list(by_frame))}")
            for a, b in runs(list(by_frame)):
                print(_run_line([by_frame[i] for i in range(a, b + 1)]))
        if details:
            print(describe_leaks(r.ptim, limit=10**6))


def gate_failed(results: list[SceneResult]) -> bool:
    """True when PTIM failed, wrote too few frames, or leaked any face-frame."""
    return any(r.ptim is None or r.ptim.leaked or r.ptim.frames != r.frames for r in results)


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run every scene, print the table; the exit code is the gate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes",
                        help=f"comma-separated presets (default all: {', '.join(SCENES)})")
    parser.add_argument("--frames", type=int, help="only the first N frames of each scene")
    parser.add_argument("--size", default="x".join(map(str, DEFAULT_SIZE)), help="WxH (1280x720)")
    parser.add_argument("--with-deface", action="store_true",
                        help="also run deface --replacewith solid and score it")
    parser.add_argument("--details", action="store_true",
                        help="list every leaked face-frame with its box")
    parser.add_argument("--ptim-arg", action="append", default=[], metavar="ARG",
                        help="extra argument for `process` (repeat), "
                        "e.g. --ptim-arg=--threshold=0.3")
    args = parser.parse_args(argv)
    try:
        scenes = parse_scenes(args.scenes, list(SCENES))
        size = parse_size(args.size)
    except ValueError as exc:
        parser.error(str(exc))
    results = [run_scene(n, size, args.frames, args.with_deface, tuple(args.ptim_arg))
               for n in scenes]
    print_leaks(results, args.details)
    print_table(results, args.with_deface)
    failed = gate_failed(results)
    print(f"{totals_line(results, args.with_deface)}; gate: {'FAIL' if failed else 'pass'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
