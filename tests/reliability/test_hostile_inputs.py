"""Hostile inputs to ``main.py process``, as one table (docs/reliability.md mirrors it).

Every row builds its input in a fresh folder, runs the command in a subprocess and checks:
the exit code; the error lines (each starts ``ptim: error:``, names the file or key and the
cause; one line unless the row allows more); no traceback; every file that existed before
is byte-identical afterwards (inputs untouched); no temporary ``*.ptim-tmp*`` file is left;
nothing new appears except the row's expected outputs, each of which must be readable and
of the expected size (and frame count, for videos).
"""

from __future__ import annotations

import contextlib
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from tests.reliability.conftest import (
    decode_video,
    error_lines,
    leaked_frames,
    permission_mode,
    run_ptim,
    small_tmpfs,
    snapshot,
    temp_leftovers,
)


@dataclass
class Ctx:
    """What a row's builder gets: its folder, the shared clip and scene, a cleanup stack."""

    dir: Path
    clip: Path
    scene: object
    stack: contextlib.ExitStack
    expected_frames: dict[str, int] = field(default_factory=dict)
    modes: list[tuple[Path, int]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # set by builders that need a path

    def copy_clip(self, name: str = "clip.mp4") -> Path:
        """A copy of the shared clip in this row's folder."""
        dst = self.dir / name
        shutil.copy(self.clip, dst)
        return dst

    def write(self, name: str, data: bytes | str) -> Path:
        """Write a file (folders made as needed) and return its path."""
        p = self.dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            p.write_text(data)
        else:
            p.write_bytes(data)
        return p

    def chmod(self, path: Path, mode: int) -> None:
        """chmod for the run only: applied after the "before" snapshot, restored before
        the "after" one (so both see the same files, whoever runs the suite)."""
        self.modes.append((path, mode))

    def mkdir(self, name: str) -> Path:
        """Make a folder and return its path."""
        path = self.dir / name
        path.mkdir(parents=True)
        return path

    @contextlib.contextmanager
    def modes_applied(self):
        """Apply the recorded modes for the duration of the run, then restore them."""
        old = [(p, p.stat().st_mode & 0o7777) for p, _ in self.modes]
        try:
            for p, mode in self.modes:
                p.chmod(mode)
            yield
        finally:
            for p, mode in reversed(old):
                p.chmod(mode)


@dataclass(frozen=True)
class Case:
    """One row: id, builder (returns argv after ``process``), expected exit and words."""

    id: str
    build: Callable[[Ctx], list[str]]
    code: int
    words: tuple[str, ...] = ()  # all must appear (case-insensitive) in the error lines
    notes: tuple[str, ...] = ()  # words expected anywhere in stderr (warnings)
    outputs: tuple[tuple[str, tuple[int, int], int], ...] = ()  # (path, (w, h), frames)
    env: dict[str, str] = field(default_factory=dict)
    errors: int = 1  # error lines expected when code != 0
    as_user: bool = False  # root must obey file modes (permission cases)


# -- builders ---------------------------------------------------------------------------

def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height with only a few rows of (zero) data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + width * 3) * 4)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def astronaut_png(ctx: Ctx, name: str, convert: Callable[[np.ndarray], np.ndarray]) -> Path:
    from backend.sources import astronaut

    img, _ = astronaut()
    path = ctx.dir / name
    assert cv2.imwrite(str(path), convert(img))
    return path


def truncated_clip(ctx: Ctx) -> list[str]:
    data = ctx.clip.read_bytes()
    cut = ctx.write("cut.mp4", data[: int(len(data) * 0.6)])
    # frames whose packets are complete before the cut: all of them must come out
    with av.open(str(cut)) as c:
        complete = sum(1 for p in c.demux(c.streams.video[0])
                       if p.size and p.pos is not None and p.pos + p.size <= len(data) * 0.6
                       and not p.is_corrupt)
    ctx.expected_frames["cut_masked.mp4"] = complete
    return [str(cut), "--mask", "solid"]


def avi_without_frames(ctx: Ctx) -> list[str]:
    path = ctx.dir / "noframes.avi"
    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg4", rate=30)
        s.width, s.height, s.pix_fmt = 320, 180, "yuv420p"
        out.start_encoding()
    with av.open(str(path)) as c:  # the case needs a real video stream with no frame
        assert c.streams.video and c.streams.video[0].frames == 0
    return [str(path)]


def mkv_header_only(ctx: Ctx) -> list[str]:
    path = ctx.dir / "header_only.mkv"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 320, 180, "yuv420p"
        out.start_encoding()
    return [str(path)]


def audio_only(ctx: Ctx) -> list[str]:
    path = ctx.dir / "voice.mp4"
    with av.open(str(path), "w") as out:
        a = out.add_stream("aac", rate=48000, layout="mono")
        for i in range(8):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                           layout="mono")
            f.sample_rate, f.pts = 48000, i * 1024
            out.mux(a.encode(f))
        out.mux(a.encode(None))
    return [str(path)]


def y4m_claiming(ctx: Ctx) -> list[str]:
    # YUV4MPEG2's text header is the container's word on the size; 1 kB of "frame" follows
    head = b"YUV4MPEG2 W16000 H16000 F30:1 Ip A1:1 C420jpeg\nFRAME\n"
    return [str(ctx.write("huge.y4m", head + bytes(1000)))]


def tall_png(ctx: Ctx) -> list[str]:
    path = ctx.dir / "tall.png"  # really 9000 px tall, a few kB on disk
    assert cv2.imwrite(str(path), np.zeros((9000, 40, 3), np.uint8))
    return [str(path)]


def odd_video(ctx: Ctx) -> list[str]:
    from backend.sources import write_clip

    path = write_clip(replace(ctx.scene, width=3, height=7, n_frames=5), ctx.dir / "odd.mp4")
    return [str(path)]


def mixed_folder(ctx: Ctx) -> list[str]:
    folder = ctx.dir / "shots"
    folder.mkdir()
    shutil.copy(ctx.clip, folder / "a.mp4")
    astronaut_png(ctx, "shots/b.png", lambda im: im)
    ctx.write("shots/c.mp4", "not a video")
    ctx.write("shots/d.png", b"")
    ctx.write("shots/e.png", png_claiming(16000, 16000))
    ctx.write("shots/notes.txt", "shot list")
    return [str(folder), "--mask", "solid"]


def unreadable_file(ctx: Ctx) -> list[str]:
    src = ctx.copy_clip("locked.mp4")
    ctx.chmod(src, 0)
    return [str(src)]


def unreadable_folder(ctx: Ctx) -> list[str]:
    folder = ctx.dir / "private"
    folder.mkdir()
    astronaut_png(ctx, "private/p.png", lambda im: im)
    ctx.chmod(folder, 0)
    return [str(folder), "-o", str(ctx.dir / "out")]


def file_in_unreadable_folder(ctx: Ctx) -> list[str]:
    folder = ctx.dir / "private"
    folder.mkdir()
    img = astronaut_png(ctx, "private/p.png", lambda im: im)
    ctx.chmod(folder, 0)
    return [str(img), "-o", str(ctx.dir / "p_out.png")]


def read_only_output(ctx: Ctx) -> list[str]:
    ro = ctx.dir / "ro"
    ro.mkdir()
    ctx.chmod(ro, 0o555)
    return [str(ctx.copy_clip()), "-o", str(ro / "x.mp4")]


def full_disk(ctx: Ctx) -> list[str]:
    mnt = ctx.dir / "full"
    if not ctx.stack.enter_context(small_tmpfs(mnt, "8k")):
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN); the "
                    "disk_full_seam row covers the same path through PTIM_FAULTS")
    return [str(ctx.copy_clip()), "-o", str(mnt / "x.mp4")]


def model_cfg(ctx: Ctx, model: Path) -> list[str]:
    cfg = ctx.write("model.yaml", f"detector:\n  model_path: '{model}'\n")
    img = astronaut_png(ctx, "p.png", lambda im: im)
    return [str(img), "-o", str(ctx.dir / "p_out.png"), "--config", str(cfg)]


def wrong_inputs_onnx(ctx: Ctx) -> list[str]:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 10])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 10])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = ctx.dir / "wrong.onnx"
    onnx.save(model, str(path))
    return model_cfg(ctx, path)


def truncated_onnx(ctx: Ctx) -> list[str]:
    from backend.detect import default_model_path

    return model_cfg(ctx, ctx.write("cut.onnx", default_model_path().read_bytes()[:4000]))


def mask_image(ctx: Ctx, path: Path) -> list[str]:
    img = astronaut_png(ctx, "p.png", lambda im: im)
    return [str(img), "-o", str(ctx.dir / "p_out.png"), "--mask", "image",
            "--mask-image", str(path)]


def cfg_run(ctx: Ctx, text: str | bytes) -> list[str]:
    cfg = ctx.write("settings.yaml", text)
    img = astronaut_png(ctx, "p.png", lambda im: im)
    return [str(img), "-o", str(ctx.dir / "p_out.png"), "--config", str(cfg)]


def photo(ctx: Ctx) -> list[str]:
    return [str(astronaut_png(ctx, "p.png", lambda im: im)), "-o", str(ctx.dir / "p_out.png")]


def userdata_is_a_file(ctx: Ctx) -> list[str]:
    # PTIM_USERDATA_DIR naming a file: no user settings, no log file, the run still works
    ctx.env["PTIM_USERDATA_DIR"] = str(ctx.write("userdata", "a file"))
    return [*photo(ctx), "--verbose"]


def gray16(im: np.ndarray) -> np.ndarray:
    return im.astype(np.uint16) * 257


def rgba(im: np.ndarray) -> np.ndarray:
    return np.dstack([im, np.full(im.shape[:2], 180, np.uint8)])


VID = (320, 180)
ASTRO = (512, 512)

CASES: list[Case] = [
    # -- unreadable or unsupported input: exit 3 ------------------------------------------
    Case("missing_file", lambda c: [str(c.dir / "nope.mp4")], 3, ("nope.mp4", "no such file")),
    Case("zero_bytes", lambda c: [str(c.write("empty.mp4", b""))], 3,
         ("empty.mp4", "empty file")),
    Case("text_named_mp4", lambda c: [str(c.write("notes.mp4", "hello\n" * 50))], 3,
         ("notes.mp4", "not a video file")),
    Case("audio_only_mp4", audio_only, 3, ("voice.mp4", "no video stream")),
    Case("video_stream_no_frames", avi_without_frames, 3,
         ("noframes.avi", "no decodable video frames")),
    Case("mkv_header_only", mkv_header_only, 3, ("header_only.mkv", "no video frames")),
    Case("png_header_16000", lambda c: [str(c.write("huge.png", png_claiming(16000, 16000)))],
         3, ("huge.png", "too large", "16000x16000")),
    Case("png_really_9000_tall", tall_png, 3, ("tall.png", "too large", "40x9000")),
    Case("video_header_16000", y4m_claiming, 3, ("huge.y4m", "too large", "16000x16000")),
    Case("empty_folder", lambda c: [str(c.mkdir("void"))], 3, ("void", "no files")),
    Case("unreadable_file", unreadable_file, 3, ("locked.mp4", "permission denied"),
         as_user=True),
    Case("unreadable_folder", unreadable_folder, 3, ("private", "permission denied"),
         as_user=True),
    Case("file_in_unreadable_folder", file_in_unreadable_folder, 3,
         ("p.png", "permission denied"), as_user=True),
    # -- damaged or unusual but usable input: processed, exit 0 ----------------------------
    Case("truncated_mp4", truncated_clip, 0, notes=("cut.mp4", "truncated"),
         outputs=(("cut_masked.mp4", VID, -1),)),
    Case("image_1x1", lambda c: [str(c.write("dot.png", cv2.imencode(
        ".png", np.full((1, 1, 3), 77, np.uint8))[1].tobytes()))], 0,
         outputs=(("dot_masked.png", (1, 1), 1),)),
    Case("image_3x7", lambda c: [str(c.write("odd.png", cv2.imencode(
        ".png", np.full((7, 3, 3), 77, np.uint8))[1].tobytes()))], 0,
         outputs=(("odd_masked.png", (3, 7), 1),)),
    Case("video_3x7", odd_video, 0, outputs=(("odd_masked.mp4", (3, 7), 5),)),
    Case("grayscale_png", lambda c: [str(astronaut_png(
        c, "g.png", lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2GRAY))), "--mask", "solid"], 0,
         outputs=(("g_masked.png", ASTRO, 1),)),
    Case("png_16_bit", lambda c: [str(astronaut_png(c, "d.png", gray16)), "--mask", "solid"],
         0, outputs=(("d_masked.png", ASTRO, 1),)),
    Case("png_rgba", lambda c: [str(astronaut_png(c, "a.png", rgba)), "--mask", "solid"], 0,
         outputs=(("a_masked.png", ASTRO, 1),)),
    Case("folder_good_and_bad", mixed_folder, 5,
         ("c.mp4", "d.png", "e.png", "notes.txt", "not a video file", "empty file",
          "too large", "skipped"),
         outputs=(("shots_masked/a.mp4", VID, 30), ("shots_masked/b.png", ASTRO, 1)),
         errors=4),
    # -- output problems: exit 4 ---------------------------------------------------------
    Case("output_is_input", lambda c: [str(c.copy_clip()), "-o", str(c.dir / "clip.mp4")], 4,
         ("clip.mp4", "overwrite the input")),
    Case("output_is_input_other_spelling", lambda c: [
        str(c.copy_clip()), "-o", str(c.dir / "sub" / ".." / "clip.mp4")], 4,
         ("overwrite the input",)),
    Case("output_symlink_to_input", lambda c: [
        str(c.copy_clip()), "-o", str(_symlink(c.dir / "link.mp4", c.dir / "clip.mp4"))], 4,
         ("overwrite the input",)),
    Case("folder_output_is_input_folder", lambda c: [
        str(c.mkdir("in")), "-o", str(c.copy_clip("in/a.mp4").parent)], 4,
         ("overwrite the input",)),
    Case("output_folder_missing_is_created", lambda c: [
        str(c.copy_clip()), "-o", str(c.dir / "new" / "deeper" / "x.mp4"), "--mask", "solid"], 0,
         outputs=(("new/deeper/x.mp4", VID, 30),)),
    Case("output_folder_read_only", read_only_output, 4, ("x.mp4", "not writable"),
         as_user=True),
    Case("output_under_a_file", lambda c: [
        str(c.copy_clip()), "-o", str(c.write("blocker", "a file") / "x.mp4")], 4,
         ("x.mp4", "cannot create folder")),
    Case("output_is_an_existing_folder", lambda c: [
        str(c.copy_clip()), "-o", str(c.mkdir("outdir")), "--mask", "solid"], 0,
         outputs=(("outdir/clip_masked.mp4", VID, 30),)),
    Case("boxes_file_is_a_folder", lambda c: [
        str(c.copy_clip()), "-o", str(c.dir / "o.mp4"), "--boxes", str(c.dir)], 4,
         ("is a folder",)),
    Case("disk_full_tmpfs", full_disk, 4, ("x.mp4", "no space left")),
    Case("disk_full_seam", lambda c: [str(c.copy_clip()), "-o", str(c.dir / "x.mp4")], 4,
         ("x.mp4", "no space left"), env={"PTIM_FAULTS": "write.fail=12"}),
    # -- settings: exit 2 ---------------------------------------------------------------
    Case("yaml_invalid", lambda c: cfg_run(c, "mask:\n  type: [solid\n"), 2,
         ("settings.yaml", "not valid yaml", "line")),
    Case("yaml_not_utf8", lambda c: cfg_run(c, b"\xff\xfe\x00garbage"), 2,
         ("settings.yaml", "not utf-8")),
    Case("yaml_not_a_mapping", lambda c: cfg_run(c, "- a\n- b\n"), 2, ("must be a mapping",)),
    Case("yaml_wrong_types", lambda c: cfg_run(
        c, "mask:\n  scale: big\n  color: red\ntracker:\n  hold_frames: [1]\n"), 2,
         ("mask.scale", "'big'", "mask.color", "tracker.hold_frames", "must be"), errors=3),
    Case("yaml_out_of_range", lambda c: cfg_run(
        c, "detector:\n  threshold: 5\n  deadline_ms: -1\nmask:\n  color: [0, 0, 300]\n"), 2,
         ("detector.threshold", "<= 0.99", "detector.deadline_ms", ">= 10", "mask.color"),
         errors=3),
    Case("yaml_unknown_keys", lambda c: cfg_run(c, "bogus:\n  x: 1\ntracker:\n  nope: 3\n"),
         2, ("unknown section 'bogus'", "tracker.nope", "unknown key"), errors=2),
    Case("yaml_nan", lambda c: cfg_run(c, "performance:\n  target_fps: .nan\n"), 2,
         ("performance.target_fps", "must be a number")),
    Case("yaml_record_dir_is_a_file", lambda c: cfg_run(
        c, f"ui:\n  record_dir: '{c.write('rec.txt', 'x')}'\n"), 2,
         ("ui.record_dir", "is a file")),
    Case("config_missing", lambda c: [str(c.copy_clip()), "--config", str(c.dir / "no.yaml")],
         2, ("no.yaml", "not found")),
    Case("config_is_a_folder", lambda c: [str(c.copy_clip()), "--config", str(c.dir)], 2,
         ("is a folder",)),
    Case("env_int_garbage", photo, 2, ("PTIM_MAX_WORKERS", "'lots'", "whole number"),
         env={"PTIM_MAX_WORKERS": "lots"}),
    Case("env_control_chars", photo, 2, ("PTIM_GPU_MEMORY_POOL_SIZE",),
         env={"PTIM_GPU_MEMORY_POOL_SIZE": "\x01\x02\x1b[31m"}),
    Case("env_float_nan", photo, 2, ("PTIM_TARGET_FPS", "must be a number"),
         env={"PTIM_TARGET_FPS": "nan"}),
    Case("env_bad_choice", photo, 2, ("PTIM_MASK__TYPE", "one of"),
         env={"PTIM_MASK__TYPE": "rainbow"}),
    Case("env_unknown_key", photo, 2, ("PTIM_MASK__NOPE", "unknown key"),
         env={"PTIM_MASK__NOPE": "1"}),
    Case("env_bad_list", photo, 2, ("PTIM_MASK__COLOR", "list of 3"),
         env={"PTIM_MASK__COLOR": "[1, 2"}),
    Case("env_faults_garbage", photo, 2, ("PTIM_FAULTS", "detect.raise=x"),
         env={"PTIM_FAULTS": "detect.raise=x"}),
    Case("env_userdata_dir_is_a_file", userdata_is_a_file, 0,
         outputs=(("p_out.png", ASTRO, 1),)),
    Case("model_not_onnx", lambda c: model_cfg(c, c.write("m.onnx", "just text")), 2,
         ("m.onnx", "not an onnx file")),
    Case("model_truncated", truncated_onnx, 2, ("cut.onnx", "truncated onnx")),
    Case("model_wrong_inputs", wrong_inputs_onnx, 2,
         ("wrong.onnx", "not a centerface-compatible", "rank 4")),
    Case("model_is_a_folder", lambda c: model_cfg(c, c.dir), 2, ("not a file",)),
    Case("model_missing", lambda c: model_cfg(c, c.dir / "gone.onnx"), 2,
         ("gone.onnx", "not found")),
    Case("mask_image_missing", lambda c: mask_image(c, c.dir / "gone.png"), 2,
         ("gone.png", "not found")),
    Case("mask_image_not_an_image", lambda c: mask_image(c, c.write("m.png", "text")), 2,
         ("m.png", "not a readable image")),
    Case("mask_image_is_a_folder", lambda c: mask_image(c, c.dir), 2, ("is a folder",)),
    Case("mask_image_too_large", lambda c: mask_image(
        c, c.write("big.png", png_claiming(16000, 16000))), 2, ("big.png", "too large")),
]


def _symlink(link: Path, target: Path) -> Path:
    link.symlink_to(target)
    return link


def _check_output(ctx: Ctx, rel: str, size: tuple[int, int], frames: int) -> None:
    path = ctx.dir / rel
    assert path.is_file(), f"{rel} missing"
    w, h = size
    if path.suffix == ".png":
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        # decided: outputs are 3-channel 8-bit BGR whatever the input's depth and alpha
        assert img is not None and img.shape == (h, w, 3) and img.dtype == np.uint8, rel
        if size == ASTRO:
            from backend.live import frame_is_raw
            from backend.sources import astronaut

            orig, box = astronaut()
            assert not frame_is_raw(img, orig, [box]), f"{rel}: face left raw"
        return
    got, ts = decode_video(path)
    want = ctx.expected_frames.get(rel, frames)
    assert len(got) == want, f"{rel}: {len(got)} frames, expected {want}"
    assert all(f.shape == (h, w, 3) for f in got)
    if size == VID:
        assert leaked_frames(got, ts, ctx.scene) == [], f"{rel}: raw face"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_input(case: Case, tmp_path: Path, clip: Path, scene) -> None:
    if case.as_user and permission_mode() is None:
        pytest.skip("root here cannot drop CAP_DAC_OVERRIDE, so file modes cannot be tested")
    with contextlib.ExitStack() as stack:
        ctx = Ctx(tmp_path, clip, scene, stack)
        argv = case.build(ctx)
        before = snapshot(tmp_path)
        with ctx.modes_applied():
            r = run_ptim("process", *argv, cwd=tmp_path, env={**case.env, **ctx.env},
                         as_user=case.as_user)
        after = snapshot(tmp_path)
        leftovers = temp_leftovers(tmp_path)
        stack.close()  # unmount before the outputs are checked (they are not on it)

        assert r.returncode == case.code, r.stderr
        assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
        errs = error_lines(r.stderr)
        if case.code == 0:
            assert errs == [], r.stderr
        else:
            assert len(errs) == case.errors, r.stderr
            text = "\n".join(errs).lower()
            missing = [w for w in case.words if w.lower() not in text]
            assert not missing, f"{missing} not in: {errs}"
            # values are quoted, never echoed raw: no terminal escapes from hostile env
            assert all(ch.isprintable() for line in errs for ch in line), errs
        for word in case.notes:
            assert word.lower() in r.stderr.lower(), r.stderr
        # inputs (everything that existed) untouched; nothing new but the expected outputs
        assert {k: after.get(k) for k in before} == before
        expected = {rel for rel, _, _ in case.outputs}
        assert set(after) - set(before) == expected, sorted(set(after) - set(before))
        assert leftovers == []
        for rel, size, frames in case.outputs:
            _check_output(ctx, rel, size, frames)


def test_table_in_docs_lists_every_case() -> None:
    """docs/reliability.md names every row of this table, so the two cannot drift."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "reliability.md").read_text()
    missing = [c.id for c in CASES if f"`{c.id}`" not in doc]
    assert missing == []


def test_header_sniffing_matches_the_decoders() -> None:
    """The size read from each format's header equals what OpenCV decodes."""
    from backend.sources.images import image_header_size

    img = np.random.default_rng(0).integers(0, 255, (37, 53, 3), np.uint8)
    for ext in (".png", ".jpg", ".bmp", ".webp", ".tif"):
        ok, buf = cv2.imencode(ext, img)
        assert ok and image_header_size(buf.tobytes()) == (53, 37), ext
    ok, buf = cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, 101])  # lossless: VP8L
    assert image_header_size(buf.tobytes()) == (53, 37)
    assert image_header_size(png_claiming(16000, 9)) == (16000, 9)
    for junk in (b"", b"\x89PNG", b"\xff\xd8\xff", b"RIFF\0\0\0\0WEBPVP8 ", b"II*\0\xff"):
        assert image_header_size(junk) is None
