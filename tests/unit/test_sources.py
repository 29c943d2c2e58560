"""Sources on real files generated here: video round trips, damaged inputs, images, cameras."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from backend.errors import InputError
from backend.sources import (
    CameraSource,
    DemoSource,
    ImageFileSource,
    ImageFolderSource,
    SceneSpec,
    VideoFileSource,
    list_cameras,
    open_source,
    render,
    to_bgr8,
    write_clip,
)
from backend.sources.synthetic import sine
from tests.timing import budget

SPEC = SceneSpec(
    width=320, height=240, fps=30.0, n_frames=45,
    faces=(sine((0.5, 0.5), (0.2, 0.1), (45, 30), 0.4),),
)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _encode(path: Path, frames: list[np.ndarray], pix_fmt: str = "yuv420p", codec="libx264"):
    """A plain encode with PyAV (no project code), for inputs the project must read."""
    h, w = frames[0].shape[:2]
    with av.open(os.fspath(path), "w") as out:
        s = out.add_stream(codec, rate=30)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        for i, img in enumerate(frames):
            fmt = "gray" if img.ndim == 2 else "bgr24"
            vf = av.VideoFrame.from_ndarray(img, format=fmt)
            vf.pts = i
            out.mux(s.encode(vf))
        out.mux(s.encode(None))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(SPEC, tmp_path_factory.mktemp("clip") / "clip.mp4")


# -- video files ----------------------------------------------------------------------
def test_write_clip_round_trip(clip):
    src = VideoFileSource(clip)
    with src:
        assert src.size == (320, 240) and src.fps == pytest.approx(30.0)
        assert src.frame_count == SPEC.n_frames and not src.is_live and not src.audio
        assert isinstance(src.time_base, Fraction)
        assert src.duration == pytest.approx(SPEC.duration, abs=0.05)
        frames = list(src)
    assert len(frames) == SPEC.n_frames and src.frames_read == SPEC.n_frames
    assert not src.truncated
    ts = [f.timestamp for f in frames]
    assert all(b > a for a, b in zip(ts, ts[1:], strict=False))
    for f in frames:
        assert f.timestamp == pytest.approx(f.index / SPEC.fps, abs=1e-3)
        assert f.image.dtype == np.uint8 and f.image.shape == (240, 320, 3)
        assert f.image.flags.c_contiguous and f.source_id == "clip.mp4"
    assert _psnr(frames[20].image, render(SPEC, 20)[0]) > 30


def test_read_after_end_and_close_are_safe(clip):
    src = VideoFileSource(clip)
    src.open()
    while src.read() is not None:
        pass
    assert src.read() is None
    src.close()
    src.close()
    assert src.read() is None


def test_truncated_mp4_gives_the_frames_before_the_cut(clip, tmp_path, caplog):
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    src = VideoFileSource(cut)
    with src:
        frames = list(src)
    assert 5 < len(frames) < SPEC.n_frames
    assert src.truncated
    assert "cut.mp4" in caplog.text
    assert _psnr(frames[3].image, render(SPEC, 3)[0]) > 30


def test_truncated_mkv_without_index(tmp_path):
    full = write_clip(SPEC, tmp_path / "clip.mkv")
    data = full.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with VideoFileSource(cut) as src:
        n = sum(1 for _ in src)
    assert 5 < n < SPEC.n_frames


def test_mp4_missing_its_index_is_an_input_error(tmp_path):
    # written without faststart, the index (moov) is at the end: a cut file has none
    path = tmp_path / "late_index.mp4"
    _encode(path, [render(SPEC, i)[0] for i in range(10)])
    data = path.read_bytes()
    cut = tmp_path / "late_cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="late_cut.mp4"):
        VideoFileSource(cut).open()


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.mp4", b"", "empty file"),
        ("text.mp4", b"this is not a video\n" * 20, "not a video"),
        ("missing.mp4", None, "not found"),
    ],
)
def test_unreadable_inputs_are_input_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as err:
        open_source(str(path)).open()
    text = str(err.value)
    assert str(path) in text and message in text and "\n" not in text
    assert err.value.exit_code == 3


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "voice.m4a"
    with av.open(os.fspath(path), "w") as out:
        s = out.add_stream("aac", rate=48000, layout="mono")
        for i in range(10):
            silence = np.zeros((1, 1024), np.float32)
            af = av.AudioFrame.from_ndarray(silence, format="fltp", layout="mono")
            af.sample_rate, af.pts = 48000, i * 1024
            out.mux(s.encode(af))
        out.mux(s.encode(None))
    with pytest.raises(InputError, match="no video stream"):
        VideoFileSource(path).open()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_permission_denied(clip, tmp_path):
    path = tmp_path / "locked.mp4"
    shutil.copy(clip, path)
    path.chmod(0)
    with pytest.raises(InputError, match="permission denied"):
        VideoFileSource(path).open()


def test_huge_video_is_refused(tmp_path):
    path = tmp_path / "wide.mkv"
    _encode(path, [np.zeros((16, 8200, 3), np.uint8)])
    with pytest.raises(InputError, match="8192"):
        VideoFileSource(path).open()


def test_grayscale_and_odd_sized_video_becomes_bgr(tmp_path):
    path = tmp_path / "gray.mkv"
    frames = [np.full((37, 51), 40 + 10 * i, np.uint8) for i in range(5)]
    _encode(path, frames, pix_fmt="gray")
    with VideoFileSource(path) as src:
        out = list(src)
    assert src.size == (51, 37) and len(out) == 5
    img = out[3].image
    assert img.shape == (37, 51, 3) and img.dtype == np.uint8 and img.flags.c_contiguous
    # x264's gray is limited-range luma: Y=70 displays as (70 - 16) * 255 / 219
    assert np.abs(img.astype(int) - (70 - 16) * 255 / 219).max() <= 2
    assert np.array_equal(img[:, :, 0], img[:, :, 2])


def test_rotated_phone_video_is_turned_upright(tmp_path):
    ffmpeg = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()
    img = np.zeros((32, 64, 3), np.uint8)
    img[:16, :32] = 255  # white top-left quadrant of the stored frame
    plain = tmp_path / "plain.mp4"
    _encode(plain, [img] * 3)
    rotated = tmp_path / "rotated.mp4"
    subprocess.run(
        [ffmpeg, "-y", "-loglevel", "error", "-display_rotation", "90", "-i", str(plain),
         "-c", "copy", str(rotated)],
        check=True,
    )
    with VideoFileSource(rotated) as src:
        frame = src.read()
    assert src.size == (32, 64) and frame.image.shape == (64, 32, 3)
    # 90 degrees counterclockwise (ffmpeg's own autorotation): the white block ends
    # up bottom-left
    assert frame.image[40:, :16].mean() > 200 and frame.image[:32].mean() < 30


# -- images -----------------------------------------------------------------------------
def test_image_folder_normalises_and_skips(tmp_path):
    gray = np.tile(np.arange(64, dtype=np.uint8), (48, 1))
    g16 = np.full((40, 30), 65535, np.uint16)
    g16[:, :10] = 0
    rgba = np.zeros((20, 24, 4), np.uint8)
    rgba[..., 0], rgba[..., 2], rgba[..., 3] = 200, 50, 10
    cv2.imwrite(str(tmp_path / "img1_gray.png"), gray)
    cv2.imwrite(str(tmp_path / "img2_deep.png"), g16)
    cv2.imwrite(str(tmp_path / "img10_rgba.png"), rgba)
    (tmp_path / "img3_broken.png").write_bytes(b"\x89PNG garbage, not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden.png").write_bytes(b"ignored too")
    src = open_source(str(tmp_path))
    assert isinstance(src, ImageFolderSource)
    with src:
        assert src.size == (64, 48) and src.frame_count == 4
        frames = list(src)
    assert [f.source_id for f in frames] == ["img1_gray.png", "img2_deep.png", "img10_rgba.png"]
    for f in frames:
        assert f.image.dtype == np.uint8 and f.image.ndim == 3 and f.image.shape[2] == 3
        assert f.image.flags.c_contiguous
    assert [f.index for f in frames] == [0, 1, 2]
    np.testing.assert_array_equal(frames[0].image[:, :, 1], gray)
    assert frames[1].image[:, :10].max() == 0 and frames[1].image[:, 10:].min() == 255
    assert tuple(frames[2].image[5, 5]) == (200, 0, 50)
    assert len(src.skipped) == 1
    path, reason = src.skipped[0]
    assert path.name == "img3_broken.png" and "image" in reason


def test_image_folder_without_images(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(InputError, match="no images"):
        ImageFolderSource(tmp_path).open()
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    with pytest.raises(InputError, match="none of 1 images is readable"):
        ImageFolderSource(tmp_path).open()


def test_image_file_source(tmp_path):
    img, _ = render(SPEC, 0)
    path = tmp_path / "photo.JPG"
    cv2.imwrite(str(path.with_suffix(".jpg")), img)
    path.with_suffix(".jpg").rename(path)
    src = open_source(str(path))
    assert isinstance(src, ImageFileSource)
    with src:
        frames = list(src)
    assert len(frames) == 1 and frames[0].source_id == "photo.JPG" and src.size == (320, 240)
    assert _psnr(frames[0].image, img) > 30
    with pytest.raises(InputError, match="not a readable image"):
        bad = tmp_path / "bad.png"
        bad.write_bytes(b"0" * 100)
        ImageFileSource(bad).open()


def test_exif_orientation_is_applied(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    im = pil.fromarray(np.zeros((20, 40, 3), np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "phone.jpg", exif=exif)
    with ImageFileSource(tmp_path / "phone.jpg") as src:
        assert src.size == (20, 40)


@pytest.mark.parametrize(
    "image, shape",
    [
        (np.zeros((4, 5), np.uint8), (4, 5, 3)),
        (np.zeros((4, 5, 1), np.uint8), (4, 5, 3)),
        (np.zeros((4, 5, 2), np.uint8), (4, 5, 3)),
        (np.zeros((4, 5, 4), np.uint8), (4, 5, 3)),
        (np.zeros((4, 5, 3), np.uint16), (4, 5, 3)),
        (np.ones((4, 5, 3), np.float32), (4, 5, 3)),
        (np.zeros((4, 5, 3), np.uint8)[:, ::2], (4, 3, 3)),
    ],
)
def test_to_bgr8(image, shape):
    out = to_bgr8(image)
    assert out.shape == shape and out.dtype == np.uint8 and out.flags.c_contiguous


def test_to_bgr8_rejects_unknown_layouts():
    with pytest.raises(ValueError):
        to_bgr8(np.zeros((4, 5, 5), np.uint8))
    with pytest.raises(ValueError):
        to_bgr8(np.zeros((4, 5, 3), np.int32))


# -- cameras and the factory ----------------------------------------------------------
def test_missing_camera_is_an_input_error_quickly():
    t0 = time.monotonic()
    with pytest.raises(InputError, match=r"camera 7: not available \(busy or not connected\)"):
        open_source("camera:7").open()
    assert time.monotonic() - t0 < budget(5)


def test_bad_camera_spec():
    with pytest.raises(InputError, match="camera:N"):
        open_source("camera:front")


def test_list_cameras_is_empty_and_fast_without_cameras():
    if list(Path("/dev").glob("video*")):
        pytest.skip("this machine has video devices")
    t0 = time.monotonic()
    assert list_cameras() == []
    assert time.monotonic() - t0 < budget(2)


@pytest.mark.parametrize(
    "spec, kind",
    [
        ("camera:0", CameraSource),
        ("demo", DemoSource),
        ("demo:fast_motion", DemoSource),
        ("holiday.MP4", VideoFileSource),
        ("shot.webp", ImageFileSource),
        ("scan.tiff", ImageFileSource),
        ("no_extension", VideoFileSource),
    ],
)
def test_open_source_dispatch(spec, kind):
    src = open_source(spec)
    assert type(src) is kind
    assert src.is_live == (kind is CameraSource or kind is DemoSource)


def test_open_source_folder(tmp_path):
    assert isinstance(open_source(tmp_path), ImageFolderSource)
