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
    Score,
    box_size,
    decode_frames,
    deface_cmd,
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


def frame_ranges(indices: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'."""
    parts: list[str] = []
    start = prev = None
    for i in indices:
        if prev is not None and i == prev + 1:
            prev = i
            continue
        if start is not None:
            parts.append(f"{start}-{prev}" if prev != start else f"{start}")
        start = prev = i
    if start is not None:
        parts.append(f"{start}-{prev}" if prev != start else f"{start}")
    return ", ".join(parts)


def run_scene(name: str, size: tuple[int, int], frames: int | None,
              with_deface: bool) -> SceneResult:
    """Generate the clip, run the tools on it and score their outputs in one pass."""
    spec, clip = make_clip(name, size, frames)
    work = OUT_DIR / "privacy"
    work.mkdir(parents=True, exist_ok=True)
    stem = clip.stem
    runs: list[tuple[str, Path]] = []
    ptim_out = work / f"{stem}_ptim_solid.mp4"
    res = run_timed(ptim_cmd(clip, ptim_out, "--mask", "solid"))
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


def print_leaks(results: list[SceneResult]) -> None:
    """Where PTIM leaked: frame ranges and ground-truth box sizes, per scene and face."""
    for r in results:
        if not r.ptim or not r.ptim.leaks:
            continue
        print(f"\nPTIM leaks in {r.name}:")
        faces = sorted({lk.face for lk in r.ptim.leaks})
        for face in faces:
            leaks = [lk for lk in r.ptim.leaks if lk.face == face]
            sizes = sorted({box_size(lk.box) for lk in leaks})
            shown = ", ".join(sizes[:6]) + (" ..." if len(sizes) > 6 else "")
            print(f"  face {face}: {len(leaks)} frames: {frame_ranges([lk.frame for lk in leaks])}")
            print(f"    true box sizes (WxH px): {shown}")


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
    args = parser.parse_args(argv)
    try:
        scenes = parse_scenes(args.scenes, list(SCENES))
        size = parse_size(args.size)
    except ValueError as exc:
        parser.error(str(exc))
    results = [run_scene(n, size, args.frames, args.with_deface) for n in scenes]
    print_leaks(results)
    print_table(results, args.with_deface)
    failed = gate_failed(results)
    print(f"{totals_line(results, args.with_deface)}; gate: {'FAIL' if failed else 'pass'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
