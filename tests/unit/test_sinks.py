"""Recorder and image sink on real files: timestamps, audio, atomicity, errors, odd sizes."""

from __future__ import annotations

import os
import resource
import signal
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from backend.errors import InputError, OutputError
from backend.sinks import ImageSink, VideoRecorder, h264_pix_fmt, output_writable
from backend.sources import SceneSpec, VideoFileSource, render, write_clip
from backend.sources.synthetic import sine
from backend.types import Frame

SPEC = SceneSpec(
    width=320, height=240, fps=30.0, n_frames=30,
    faces=(sine((0.5, 0.5), (0.2, 0.1), (30, 15), 0.4),),
)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _frames(spec: SceneSpec, timestamps=None) -> list[Frame]:
    ts = timestamps or [i / spec.fps for i in range(spec.n_frames)]
    return [Frame(i, t, render(spec, i % spec.n_frames)[0], "x") for i, t in enumerate(ts)]


def _read(path: Path) -> list[Frame]:
    with VideoFileSource(path) as src:
        return list(src)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "ptim" in p.name)


@pytest.fixture(scope="module")
def clip_with_audio(tmp_path_factory) -> Path:
    return write_clip(SPEC, tmp_path_factory.mktemp("a") / "talk.mp4", with_audio=True)


def _audio_info(path: Path) -> tuple[str, float, list[bytes]] | None:
    with av.open(os.fspath(path)) as c:
        if not c.streams.audio:
            return None
        s = c.streams.audio[0]
        packets = [p for p in c.demux(s) if p.size]
        end = max(float((p.pts + p.duration) * p.time_base) for p in packets)
        return s.codec_context.name, end, [bytes(p) for p in packets]


# -- recorder ---------------------------------------------------------------------------
def test_round_trip_keeps_count_size_time_and_pixels(tmp_path):
    out = tmp_path / "out.mp4"
    frames = _frames(SPEC)
    with VideoRecorder(out, SPEC.fps, (320, 240)) as rec:
        for f in frames:
            rec.write(f)
    assert rec.frames_written == SPEC.n_frames and rec.pts_adjusted == 0
    back = _read(out)
    assert len(back) == SPEC.n_frames
    assert [round(f.timestamp, 4) for f in back] == [round(f.timestamp, 4) for f in frames]
    assert back[0].image.shape == (240, 320, 3)
    assert min(_psnr(a.image, b.image) for a, b in zip(back, frames, strict=True)) > 30
    assert _leftovers(tmp_path) == []
    with av.open(os.fspath(out)) as c:
        cc = c.streams.video[0].codec_context
        assert cc.name == "h264" and cc.pix_fmt == "yuv420p"
        assert float(c.streams.video[0].average_rate) == pytest.approx(30.0)


@pytest.mark.parametrize(("cpus", "threads"), [(1, 1), (2, 1), (4, 1), (8, 2), (16, 4)])
def test_files_encode_on_a_quarter_of_the_cores_and_round_trip(tmp_path, cpus, threads):
    from backend.sinks import batch_encoder_threads

    assert batch_encoder_threads(cpus) == threads
    out = tmp_path / "out.mp4"
    frames = _frames(SPEC)
    with VideoRecorder(out, SPEC.fps, (320, 240), threads=threads) as rec:
        for f in frames:
            rec.write(f)
    back = _read(out)
    assert len(back) == SPEC.n_frames
    assert min(_psnr(a.image, b.image) for a, b in zip(back, frames, strict=True)) > 30


def test_variable_frame_rate_is_kept(tmp_path):
    ts = [0.0, 0.033, 0.1, 0.105, 0.5, 0.51, 1.2, 1.2001, 2.0]
    spec = SceneSpec(width=160, height=96, n_frames=len(ts))
    out = tmp_path / "vfr.mp4"
    with VideoRecorder(out, 30.0, (160, 96)) as rec:
        for f in _frames(spec, ts):
            rec.write(f)
    back = [f.timestamp for f in _read(out)]
    assert len(back) == len(ts)
    assert np.abs(np.array(back) - ts).max() < 1e-3


def test_source_time_base_and_origin(tmp_path):
    # recording starts mid-stream: the output starts at 0, spacing kept in the given base
    out = tmp_path / "late.mkv"
    ts = [5.0 + i / 25 for i in range(6)]
    spec = SceneSpec(width=64, height=48, n_frames=6)
    with VideoRecorder(out, 25.0, (64, 48), time_base=Fraction(1, 1000)) as rec:
        for f in _frames(spec, ts):
            rec.write(f)
    back = [f.timestamp for f in _read(out)]
    assert back == pytest.approx([i / 25 for i in range(6)], abs=1e-3)


def test_repeated_timestamps_are_made_strictly_increasing(tmp_path):
    out = tmp_path / "dup.mp4"
    spec = SceneSpec(width=64, height=48, n_frames=4)
    with VideoRecorder(out, 30.0, (64, 48)) as rec:
        for f in _frames(spec, [0.0, 0.1, 0.1, 0.05]):
            rec.write(f)
    assert rec.pts_adjusted == 2
    back = [f.timestamp for f in _read(out)]
    assert len(back) == 4 and all(b > a for a, b in zip(back, back[1:], strict=False))


@pytest.mark.parametrize("size", [(3, 7), (1281, 721), (64, 33)])
def test_odd_sizes_round_trip_exactly(tmp_path, size):
    w, h = size
    out = tmp_path / "odd.mp4"
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), (w, h))
    frames = [Frame(i, i / 30, np.roll(base, i, axis=1), "x") for i in range(3)]
    with VideoRecorder(out, 30.0, size, crf=10) as rec:  # geometry, not compression
        for f in frames:
            rec.write(f)
    back = _read(out)
    assert len(back) == 3 and back[0].image.shape == (h, w, 3)
    assert _psnr(back[2].image, frames[2].image) > 28
    with av.open(os.fspath(out)) as c:
        expected = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"
        assert c.streams.video[0].codec_context.pix_fmt == h264_pix_fmt(w, h) == expected


def test_audio_is_copied_and_aligned(tmp_path, clip_with_audio):
    with VideoFileSource(clip_with_audio) as src:
        assert src.audio
        out = tmp_path / "masked.mp4"
        with VideoRecorder(out, src.fps, src.size, time_base=src.time_base,
                           audio_from=clip_with_audio) as rec:
            for f in src:
                rec.write(f)
    assert rec.has_audio
    codec_in, end_in, packets_in = _audio_info(clip_with_audio)
    codec_out, end_out, packets_out = _audio_info(out)
    assert codec_out == codec_in == "aac"
    assert end_out == pytest.approx(SPEC.duration, abs=0.05)
    # copied, not re-encoded: the compressed packets are byte for byte the input's
    assert packets_out == packets_in
    assert len(_read(out)) == SPEC.n_frames


def test_audio_is_cut_to_the_recorded_video(tmp_path, clip_with_audio):
    out = tmp_path / "half.mp4"
    with VideoFileSource(clip_with_audio) as src, VideoRecorder(
        out, src.fps, src.size, audio_from=clip_with_audio
    ) as rec:
        for f in src:
            if f.index >= 15:
                break
            rec.write(f)
    _, end, _ = _audio_info(out)
    assert end == pytest.approx(15 / SPEC.fps, abs=0.05)


def test_recording_from_mid_file_keeps_audio_in_sync(tmp_path, clip_with_audio):
    out = tmp_path / "late.mp4"
    with VideoFileSource(clip_with_audio) as src, VideoRecorder(
        out, src.fps, src.size, audio_from=clip_with_audio
    ) as rec:
        for f in src:
            if f.index >= 10:
                rec.write(f)
    # the output starts at the first written frame (t=1/3 s in the input): audio too
    assert _read(out)[0].timestamp == pytest.approx(0.0, abs=1e-3)
    _, end, _ = _audio_info(out)
    assert end == pytest.approx(20 / SPEC.fps, abs=0.05)

    # every copied packet plays 1/3 s earlier than in the input: the frames' shift
    def packets(path):
        with av.open(os.fspath(path)) as c:
            s = c.streams.audio[0]
            return [(bytes(p), float(p.pts * p.time_base)) for p in c.demux(s) if p.size]

    p_in, p_out = packets(clip_with_audio), packets(out)
    data_in, data_out = [d for d, _ in p_in], [d for d, _ in p_out]
    k = next(i for i in range(len(p_in)) if data_in[i : i + len(p_out)] == data_out)
    shifts = [p_in[k + j][1] - t for j, (_, t) in enumerate(p_out)]
    assert len(shifts) > 10
    assert shifts == pytest.approx([10 / SPEC.fps] * len(shifts), abs=1e-3)


def test_audio_from_a_silent_file_gives_a_silent_output(tmp_path):
    silent = write_clip(SPEC, tmp_path / "silent.mp4")
    out = tmp_path / "out.mp4"
    with VideoRecorder(out, 30.0, (320, 240), audio_from=silent) as rec:
        rec.write(_frames(SPEC)[0])
    assert not rec.has_audio and _audio_info(out) is None


def test_audio_the_container_refuses_is_re_encoded(tmp_path):
    # unsigned 8-bit PCM is legal in Matroska but not in MP4
    src_path = tmp_path / "old.mkv"
    with av.open(os.fspath(src_path), "w") as c:
        v = c.add_stream("libx264", rate=30)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = c.add_stream("pcm_u8", rate=16000, layout="mono")
        for i in range(15):
            vf = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="bgr24")
            vf.pts = i
            c.mux(v.encode(vf))
            samples = np.full((1, 16000 // 30), 128 + (i % 2) * 60, np.uint8)
            af = av.AudioFrame.from_ndarray(samples, format="u8", layout="mono")
            af.sample_rate, af.pts = 16000, i * (16000 // 30)
            c.mux(a.encode(af))
        c.mux(v.encode(None))
        c.mux(a.encode(None))
    out = tmp_path / "new.mp4"
    with VideoFileSource(src_path) as src, VideoRecorder(
        out, src.fps, src.size, audio_from=src_path
    ) as rec:
        for f in src:
            rec.write(f)
    codec, end, _ = _audio_info(out)
    assert codec == "aac" and end == pytest.approx(0.5, abs=0.1)


def test_unreadable_audio_source_is_an_input_error(tmp_path):
    bogus = tmp_path / "bogus.mp4"
    bogus.write_text("not a video")
    with pytest.raises(InputError, match="bogus.mp4"):
        VideoRecorder(tmp_path / "o.mp4", 30.0, (64, 48), audio_from=bogus)
    assert _leftovers(tmp_path) == []


def test_abort_leaves_nothing_and_keeps_an_existing_output(tmp_path):
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"previous result")
    rec = VideoRecorder(out, 30.0, (320, 240))
    for f in _frames(SPEC)[:5]:
        rec.write(f)
    assert _leftovers(tmp_path) == [".keep.ptim-tmp.mp4"]
    rec.abort()
    rec.abort()
    assert out.read_bytes() == b"previous result"
    assert _leftovers(tmp_path) == []
    assert rec.close() is None


def test_exception_mid_write_leaves_no_output(tmp_path):
    out = tmp_path / "crash.mp4"
    with pytest.raises(RuntimeError, match="boom"), VideoRecorder(out, 30.0, (320, 240)) as rec:
        for f in _frames(SPEC)[:5]:
            rec.write(f)
        raise RuntimeError("boom")
    assert not out.exists() and _leftovers(tmp_path) == []


def test_close_without_frames_writes_nothing(tmp_path):
    rec = VideoRecorder(tmp_path / "none.mp4", 30.0, (64, 48))
    assert rec.close() is None
    assert list(tmp_path.iterdir()) == []


def test_wrong_frame_size_is_refused_and_recorder_stays_usable(tmp_path):
    out = tmp_path / "sz.mp4"
    with VideoRecorder(out, 30.0, (64, 48)) as rec:
        with pytest.raises(ValueError, match="expects"):
            rec.write(Frame(0, 0.0, np.zeros((48, 66, 3), np.uint8)))
        rec.write(Frame(0, 0.0, np.zeros((48, 64, 3), np.uint8)))
    assert len(_read(out)) == 1


def _read_only_dir(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        return ro
    # root ignores permission bits; sysfs refuses new files even for root
    try:
        open("/sys/ptim-probe.mp4", "wb").close()
    except OSError:
        return Path("/sys")
    pytest.skip("no read-only folder available")


def test_read_only_folder_is_an_output_error(tmp_path):
    ro = _read_only_dir(tmp_path)
    with pytest.raises(OutputError) as err:
        VideoRecorder(ro / "out.mp4", 30.0, (64, 48))
    assert str(ro / "out.mp4") in str(err.value) and err.value.exit_code == 4
    with pytest.raises(OutputError):
        ImageSink(ro / "frames")


@pytest.mark.parametrize(
    "name, message",
    [
        ("missing_dir/out.mp4", "does not exist"),
        ("out.avi", "unsupported video file type"),
        (".", "is a folder"),
    ],
)
def test_bad_output_paths(tmp_path, name, message):
    with pytest.raises(OutputError, match=message):
        VideoRecorder(tmp_path / name, 30.0, (64, 48))


def test_output_must_not_be_the_input(tmp_path, clip_with_audio):
    with pytest.raises(OutputError, match="same file as the input"):
        VideoRecorder(clip_with_audio, 30.0, (320, 240), audio_from=clip_with_audio)
    with pytest.raises(OutputError, match="same file as the input"):
        output_writable(tmp_path / "sub" / ".." / "x.mp4", inputs=[tmp_path / "x.mp4"])


def test_output_writable_accepts_a_good_path_and_leaves_nothing(tmp_path):
    output_writable(tmp_path / "fine.mp4", inputs=[None, tmp_path / "in.mp4"])
    output_writable(tmp_path / "new_folder", folder=True)
    assert list(tmp_path.iterdir()) == []


def test_write_failure_disk_full_is_an_output_error(tmp_path):
    # a file size limit makes the kernel fail writes with EFBIG, like a full disk
    out = tmp_path / "big.mp4"
    rng = np.random.default_rng(1)
    noise = [
        Frame(i, i / 30, rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)) for i in range(40)
    ]
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))
        with pytest.raises(OutputError, match="big.mp4"):  # noqa: PT012
            rec = VideoRecorder(out, 30.0, (320, 240), crf=0)
            for f in noise:
                rec.write(f)
            rec.close()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert not out.exists() and _leftovers(tmp_path) == []


# -- image sink -----------------------------------------------------------------------
def test_image_sink_names_and_formats_by_source_id(tmp_path):
    img = render(SPEC, 3)[0]
    sink = ImageSink(tmp_path / "out")
    written = [
        sink.write(Frame(0, 0.0, img, "a.png")),
        sink.write(Frame(1, 0.0, img, "b.JPG")),
        sink.write(Frame(7, 0.0, img, "clip.mp4")),
        sink.write(Frame(8, 0.0, img, "")),
        sink.write(Frame(9, 0.0, img, "../../escape.png")),
        sink.write(Frame(10, 0.0, img, "sub/c.webp")),
    ]
    rel = [p.relative_to(tmp_path / "out").as_posix() for p in written]
    assert rel == [
        "a.png", "b.JPG", "clip_000007.png", "frame_000008.png", "escape.png", "sub/c.webp"
    ]
    assert sink.frames_written == 6
    np.testing.assert_array_equal(cv2.imread(str(written[0])), img)  # PNG is lossless
    assert _psnr(cv2.imread(str(written[1])), img) > 30  # a real JPEG
    assert (tmp_path / "out" / "b.JPG").read_bytes()[:2] == b"\xff\xd8"
    assert not list((tmp_path / "out").rglob("*ptim*"))
    assert not (tmp_path / "escape.png").exists()


def test_image_sink_single_file_and_forced_format(tmp_path):
    img = render(SPEC, 0)[0]
    single = ImageSink(tmp_path / "masked.jpg")
    assert single.single and single.write(Frame(0, 0.0, img, "in.png")) == tmp_path / "masked.jpg"
    forced = ImageSink(tmp_path / "pngs", ext="png")
    assert forced.write(Frame(0, 0.0, img, "x.jpg")).name == "x.png"
    with pytest.raises(OutputError, match="unsupported image type"):
        ImageSink(tmp_path / "o", ext=".gif")


def test_image_sink_refuses_to_overwrite_its_input(tmp_path):
    src = tmp_path / "photo.png"
    cv2.imwrite(str(src), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(OutputError, match="same file"):
        ImageSink(src, inputs=(src,))


def test_bt709_colours_survive_a_round_trip(tmp_path):
    # the recorder tags BT.709 and the source reads by the tags (PyAV >= 17 converts by
    # them; older PyAV read BT.709 as BT.601: red 255 came back as 230)
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, :32] = (0, 0, 255)
    image[:, 32:] = (40, 200, 60)
    out = tmp_path / "colours.mp4"
    with VideoRecorder(out, 30.0, (64, 64), crf=0) as rec:
        for i in range(3):
            rec.write(Frame(i, i / 30, image.copy(), "x"))
    back = _read(out)
    assert int(np.abs(back[0].image.astype(int) - image).max()) <= 6


# -- the writer's encoding -----------------------------------------------------------------------


@pytest.mark.parametrize(("preset", "b_frames"), [("veryfast", False), ("medium", True)])
def test_fast_presets_write_without_b_frames(tmp_path, preset, b_frames):
    """The writer's fast presets go without B-frames (every packet shown in decode order);
    a slower preset keeps them (packets out of display order)."""
    out = tmp_path / "out.mp4"
    spec = SceneSpec(width=320, height=240, fps=30.0, n_frames=40,
                     faces=(sine((0.5, 0.5), (0.3, 0.2), (10, 7), 0.4),), background="noise")
    with VideoRecorder(out, fps=30.0, size=(320, 240), preset=preset) as rec:
        for f in _frames(spec):
            rec.write(f)
    with av.open(str(out)) as c:
        pts = [p.pts for p in c.demux(c.streams.video[0]) if p.pts is not None]
    assert (pts != sorted(pts)) == b_frames


def test_the_bt709_conversion_is_swscale_s_to_within_a_level():
    from av.video.reformatter import Colorspace
    from skimage import data

    from backend.sinks.recorder import to_video_frame

    class _Stream:
        pix_fmt = "yuv420p"

    photo = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (1280, 720))
    noise = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), np.uint8)
    for image in (photo, noise):
        ours = to_video_frame(image, _Stream()).to_ndarray().astype(int)
        ref = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(
            format="yuv420p", dst_colorspace=Colorspace.ITU709).to_ndarray().astype(int)
        assert ours.shape == ref.shape
        assert np.abs(ours - ref).max() <= 2 and np.abs(ours - ref).mean() < 0.6
