"""Shared helpers for the privacy and deface benchmarks: clips, decoding, leak scoring.

Clips are synthetic scenes (``backend.sources.synthetic.SCENES``) written with
``write_clip`` and cached under ``bench/out/clips`` (git-ignored), keyed by preset name,
frame size and frame count. Because every frame is a pure function of (spec, index), the
scorer can compare an output video frame by frame with the unmasked rendering and the
exact ground-truth face boxes.

Leak criterion (solid masks)
----------------------------
For each frame and each ground-truth box, the face *core* is the central 60% of the box
(both sides), clipped to the frame; a core with less than 4x4 visible pixels is skipped.
A core pixel is *exposed* when the output pixel is within ``tol`` (default 24 levels, on
every BGR channel) of the unmasked rendering ``render(spec, i)[0]`` AND the output pixel
is not near-black (max channel > ``black``, default 20). A face-frame LEAKS when more than
``min_frac`` (default 5%) of its core pixels are exposed. Why this works:

* A solid black mask decodes to ~0-2 levels after H.264, so masked pixels are never
  exposed, whatever the original was (the near-black test settles it, not the diff).
* An unmasked face survives two H.264 generations (crf 18 clip, crf 23 output) close to
  the original: per core, the median error is 5-6 levels and the 99th percentile 12-21
  (4:2:0 chroma at the face edges); ``tol`` 24 leaves room for edges, motion
  blur and colour-space rounding, so a pass-through scores every face-frame as leaked.
* The ``dim`` scene (brightness 0.35, noise) still has 95% of its core pixels above ~48
  levels, so the near-black test removes only a few percent of a dim face; the
  difference test alone (not a brightness test) would be fooled by nothing here.
* Comparing to the original, rather than testing "is it black", makes the criterion
  independent of the mask colour as long as it differs from the face (set
  ``mask.color`` to black, the default, for the near-black shortcut to apply).
* 5% tolerates codec ringing at the mask's edge crossing the core corner and isolated
  coincidences; a mask that is off by more than a sliver of the core counts as a leak.

This criterion is meant for solid masks. A pixelate or blur mask keeps a face's mean
colour, so many pixels of a smooth face land within ``tol`` of the original and would be
reported as leaks: score those outputs with other measures.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend.sources.synthetic import SCENES, SceneSpec, ground_truth, render, write_clip  # noqa: E402

OUT_DIR = ROOT / "bench" / "out"
CLIP_DIR = OUT_DIR / "clips"
DEFAULT_SIZE = (1280, 720)

CORE_FRAC = 0.6  # central part of each ground-truth box that must be covered
MIN_CORE_SIDE = 4  # pixels; smaller visible cores are not scored
TOL = 24  # levels per channel: "same as the original" after H.264
BLACK = 20  # max channel at or below this = near-black (a solid mask)
MIN_EXPOSED_FRAC = 0.05  # share of exposed core pixels that makes a leak


# -- clips ----------------------------------------------------------------------------
def parse_size(text: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720); ValueError otherwise."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size {text!r} is not WIDTHxHEIGHT") from None
    if w < 16 or h < 16:
        raise ValueError(f"size {text!r} is too small (16x16 at least)")
    return w, h


def parse_scenes(text: str | None, default: Sequence[str]) -> list[str]:
    """Comma-separated preset names (or 'all'); ValueError for unknown names."""
    if not text:
        return list(default)
    if text == "all":
        return list(SCENES)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENES]
    if unknown:
        raise ValueError(f"unknown scene(s) {', '.join(unknown)}; choose from {', '.join(SCENES)}")
    return names


def scene_spec(
    name: str, size: tuple[int, int] = DEFAULT_SIZE, frames: int | None = None
) -> SceneSpec:
    """The preset ``name`` at ``size``, truncated to its first ``frames`` frames."""
    spec = SCENES[name].resized(*size)
    if frames is not None and 0 < frames < spec.n_frames:
        spec = replace(spec, n_frames=frames)
    return spec


def clip_path(name: str, spec: SceneSpec) -> Path:
    """Cache path of a clip: ``bench/out/clips/<name>_<W>x<H>_<N>f.mp4``."""
    return CLIP_DIR / f"{name}_{spec.width}x{spec.height}_{spec.n_frames}f.mp4"


def make_clip(
    name: str, size: tuple[int, int] = DEFAULT_SIZE, frames: int | None = None
) -> tuple[SceneSpec, Path]:
    """(spec, path) of the preset's clip, written once and reused from the cache."""
    spec = scene_spec(name, size, frames)
    path = clip_path(name, spec)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        write_clip(spec, tmp)
        os.replace(tmp, path)
    return spec, path


# -- decoding -------------------------------------------------------------------------
def decode_frames(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    """Every frame of the first video stream as BGR uint8 (colour tags honoured)."""
    import av

    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for vf in container.decode(stream):
            yield vf.to_ndarray(format="bgr24")


def count_frames(path: str | os.PathLike[str]) -> int:
    """Number of decodable video frames (decodes the whole file)."""
    return sum(1 for _ in decode_frames(path))


# -- scoring --------------------------------------------------------------------------
@dataclass(slots=True)
class Leak:
    """One leaked face-frame.

    ``face`` indexes ``spec.faces``; ``box`` is the unclipped ground truth; ``exposed`` the
    share of core pixels left visible; ``visible`` the share of the box inside the frame.
    """

    frame: int
    face: int
    box: tuple[float, float, float, float]
    exposed: float
    visible: float


@dataclass(slots=True)
class Score:
    """Leak counts of one output video against its scene."""

    frames_expected: int
    frames: int = 0  # decoded and compared
    face_frames: int = 0  # (frame, face) pairs with a scorable core
    leaked: int = 0  # face-frames whose core is exposed
    frames_with_leak: int = 0
    resized: int = 0  # output frames of another size, scaled to the scene's to compare
    leaks: list[Leak] = field(default_factory=list)

    @property
    def leak_frame_indices(self) -> list[int]:
        """Sorted frame indices with at least one leak."""
        return sorted({lk.frame for lk in self.leaks})


def core_rect(
    box: Sequence[float], width: int, height: int, frac: float = CORE_FRAC
) -> tuple[int, int, int, int] | None:
    """Integer (x0, y0, x1, y1) of the box's central ``frac``, clipped; None if < 4x4."""
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hw, hh = (x1 - x0) * frac / 2, (y1 - y0) * frac / 2
    xa, ya = max(0, round(cx - hw)), max(0, round(cy - hh))
    xb, yb = min(width, round(cx + hw)), min(height, round(cy + hh))
    if xb - xa < MIN_CORE_SIDE or yb - ya < MIN_CORE_SIDE:
        return None
    return xa, ya, xb, yb


def exposed_fraction(
    out: np.ndarray, orig: np.ndarray, rect: tuple[int, int, int, int],
    tol: int = TOL, black: int = BLACK,
) -> float:
    """Share of the rect's pixels that are close to ``orig`` and not near-black in ``out``."""
    xa, ya, xb, yb = rect
    o = out[ya:yb, xa:xb]
    r = orig[ya:yb, xa:xb]
    close = np.abs(o.astype(np.int16) - r.astype(np.int16)).max(axis=2) <= tol
    lit = o.max(axis=2) > black
    return float(np.mean(close & lit))


def face_boxes(spec: SceneSpec, index: int) -> list[tuple[int, np.ndarray]]:
    """(index in ``spec.faces``, ground-truth box) of every face in frame ``index``."""
    found = []
    for k, face in enumerate(spec.faces):
        boxes = ground_truth(replace(spec, faces=(face,)), index)
        if len(boxes):
            found.append((k, boxes[0]))
    return found


def visible_share(box: Sequence[float], width: int, height: int) -> float:
    """Share of the box's area inside the frame."""
    x0, y0, x1, y1 = (float(v) for v in box)
    area = max(x1 - x0, 1e-9) * max(y1 - y0, 1e-9)
    vw = max(0.0, min(x1, width) - max(x0, 0.0))
    vh = max(0.0, min(y1, height) - max(y0, 0.0))
    return vw * vh / area


def score_frame(
    out: np.ndarray, orig: np.ndarray, boxes: Sequence[tuple[int, np.ndarray]], index: int,
    score: Score, min_frac: float = MIN_EXPOSED_FRAC,
) -> None:
    """Add one frame's face-frames and leaks to ``score``.

    An output frame of another size (deface's writer rounds sides up to multiples of 16)
    is scaled to the scene's size first and counted in ``score.resized``.
    """
    h, w = orig.shape[:2]
    if out.shape != orig.shape:
        import cv2

        out = cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA)
        score.resized += 1
    leaked_here = False
    for face, box in boxes:
        rect = core_rect(box, w, h)
        if rect is None:
            continue
        score.face_frames += 1
        frac = exposed_fraction(out, orig, rect)
        if frac > min_frac:
            score.leaked += 1
            leaked_here = True
            score.leaks.append(Leak(index, face, tuple(round(float(v), 1) for v in box), frac,
                                    visible_share(box, w, h)))
    score.frames += 1
    score.frames_with_leak += int(leaked_here)


def score_outputs(
    spec: SceneSpec, outputs: Sequence[Iterable[np.ndarray]]
) -> list[Score]:
    """Score several outputs of one scene in one pass (each original rendered once).

    An output with fewer frames than the scene is scored on the frames it has
    (``frames`` < ``frames_expected`` shows it); extra frames are ignored.
    """
    scores = [Score(spec.n_frames) for _ in outputs]
    iters: list[Iterator[np.ndarray] | None] = [iter(o) for o in outputs]
    try:
        for i in range(spec.n_frames):
            if all(it is None for it in iters):
                break
            orig, _ = render(spec, i)
            boxes = face_boxes(spec, i)
            for k, it in enumerate(iters):
                if it is None:
                    continue
                out = next(it, None)
                if out is None:
                    iters[k] = None
                    continue
                score_frame(out, orig, boxes, i, scores[k])
    finally:
        for it in iters:  # close generators (and their files) early
            if it is not None and hasattr(it, "close"):
                it.close()
    return scores


def score_video(spec: SceneSpec, path: str | os.PathLike[str]) -> Score:
    """Score one output video file against its scene."""
    return score_outputs(spec, [decode_frames(path)])[0]


def box_size(box: Sequence[float]) -> str:
    """'WxH' of a box, rounded."""
    return f"{box[2] - box[0]:.0f}x{box[3] - box[1]:.0f}"


def describe_leaks(score: Score, limit: int = 40) -> str:
    """Leaked face-frames as 'frame N face F box (x0,y0,x1,y1) WxH ...' lines."""
    lines = [
        f"    frame {lk.frame:4d} face {lk.face} box {lk.box} {box_size(lk.box)} "
        f"exposed {lk.exposed:.0%} in frame {lk.visible:.0%}"
        for lk in score.leaks[:limit]
    ]
    if len(score.leaks) > limit:
        lines.append(f"    ... and {len(score.leaks) - limit} more")
    return "\n".join(lines)


# -- running the tools ----------------------------------------------------------------
def bench_env() -> dict[str, str]:
    """Environment for the tools: no PTIM_* overrides (the cache folder is kept), an empty
    userdata folder.

    PTIM then runs on its built-in defaults whatever the user's config says.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PTIM_") or k == "PTIM_CACHE_DIR"}  # the cache is no setting
    userdata = OUT_DIR / "userdata"
    userdata.mkdir(parents=True, exist_ok=True)
    env["PTIM_USERDATA_DIR"] = str(userdata)
    return env


def python_exe() -> str:
    """The interpreter running this script (the project's venv when run as documented)."""
    return sys.executable


def deface_exe() -> str:
    """The deface CLI next to the interpreter, else 'deface' on PATH."""
    local = Path(sys.executable).with_name("deface")
    return str(local) if local.exists() else "deface"


def ptim_cmd(clip: Path, out: Path, *extra: str) -> list[str]:
    """``python main.py process CLIP -o OUT --quiet [extra]``."""
    return [python_exe(), str(ROOT / "main.py"), "process", str(clip), "-o", str(out),
            "--quiet", *extra]


def deface_cmd(clip: Path, out: Path, *extra: str) -> list[str]:
    """``deface CLIP -o OUT [extra]`` (deface's defaults otherwise)."""
    return [deface_exe(), str(clip), "-o", str(out), *extra]


def passthrough_cmd(clip: Path, out: Path) -> list[str]:
    """``python bench/common.py passthrough CLIP OUT`` (decode + encode, no detection)."""
    return [python_exe(), str(Path(__file__).resolve()), "passthrough", str(clip), str(out)]


def show(cmd: Sequence[str]) -> str:
    """A command as a shell line, paths relative to the repo where possible."""
    def rel(a: str) -> str:
        with contextlib.suppress(ValueError):
            return str(Path(a).relative_to(ROOT)) if a.startswith(str(ROOT)) else a
        return a

    return shlex.join(rel(a) for a in cmd)


@dataclass(slots=True)
class RunResult:
    """Wall time (process start to exit) and outcome of one command."""

    cmd: list[str]
    seconds: float
    returncode: int
    stderr: str


def run_timed(cmd: Sequence[str], echo: bool = True) -> RunResult:
    """Run ``cmd`` (stdout/stderr captured), timing process start to exit."""
    if echo:
        print(f"$ {show(cmd)}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(list(cmd), capture_output=True, text=True, env=bench_env(), cwd=ROOT)
    seconds = time.perf_counter() - t0
    res = RunResult(list(cmd), seconds, proc.returncode, proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        print(f"  exit {proc.returncode}: {tail}", flush=True)
    return res


# -- pass-through ceiling -------------------------------------------------------------
def passthrough(src: Path, dst: Path) -> int:
    """Decode ``src`` and re-encode it to ``dst`` exactly like PTIM's writer, no detection.

    Two threads like ``backend.batch``: a reader thread decodes with ``VideoFileSource``
    into a bounded queue (8), this thread encodes with ``VideoRecorder`` using PTIM's
    default settings (libx264, preset veryfast, crf 23, BT.709, the x264 threads of
    ``batch_encoder_threads``). Returns frames written.
    """
    from backend.sinks.recorder import VideoRecorder, batch_encoder_threads
    from backend.sources.video_file import VideoFileSource

    source = VideoFileSource(src)
    source.open()
    q: queue.Queue = queue.Queue(maxsize=8)

    def reader() -> None:
        try:
            while (frame := source.read()) is not None:
                q.put(frame)
        finally:
            q.put(None)  # also after a decode error: the writer stops, the file ends

    t = threading.Thread(target=reader, name="passthrough-read", daemon=True)
    t.start()
    rec = VideoRecorder(dst, fps=source.fps, size=source.size, time_base=source.time_base,
                        crf=23, preset="veryfast", threads=batch_encoder_threads())
    with rec:
        while (frame := q.get()) is not None:
            rec.write(frame)
    t.join()
    source.close()
    return rec.frames_written


def _main(argv: list[str]) -> int:
    """``common.py passthrough IN OUT``: the pass-through ceiling as its own process."""
    if len(argv) != 3 or argv[0] != "passthrough":
        print("usage: common.py passthrough INPUT OUTPUT", file=sys.stderr)
        return 2
    passthrough(Path(argv[1]), Path(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
