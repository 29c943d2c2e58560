"""What ``process`` says on the terminal: our one line, never FFmpeg's, never a CUDA warning
on a machine without an NVIDIA driver. Real files written here with PyAV, then damaged."""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import pytest

from tests.integration.conftest import run_main

# FFmpeg's own console format: "[h264 @ 0x55d0c1a2b3c0] Invalid NAL unit size"
FFMPEG_LINE = re.compile(r"^\[[^\]]+ @ 0x[0-9a-f]+\]", re.MULTILINE)


def _recording(path: Path, n: int = 24) -> Path:
    """An H.264 mp4 written as a camera writes it: media first, the index (moov) last."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 320, 180, "yuv420p"
        for i in range(n):
            image = np.full((180, 320, 3), (i * 9) % 256, np.uint8)
            image[40:140, 100 + i:200 + i] = 255 - image[0, 0]
            out.mux(s.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        out.mux(s.encode(None))
    return path


def _cut_before_index(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    moov = data.rindex(b"moov") - 4  # the box starts with its 4-byte size
    assert data.index(b"mdat") < moov  # media before the index, as recorded
    dst.write_bytes(data[: moov - 1000])  # the recording stopped inside the media
    return dst


def _log(userdata: Path) -> str:
    return (userdata / "playatewsidentitymasker.log").read_text(errors="replace")


def test_a_truncated_recording_says_its_index_is_missing(tmp_path: Path) -> None:
    cut = _cut_before_index(_recording(tmp_path / "full.mp4"), tmp_path / "cut.mp4")
    r = run_main("process", str(cut), "-o", str(tmp_path / "out.mp4"), cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    errors = [x for x in r.stderr.splitlines() if x.startswith("ptim: error:")]
    assert len(errors) == 1, r.stderr
    line = errors[0]
    assert str(cut) in line and "index" in line and "missing" in line
    assert "cut off while being written" in line and "untrunc" in line
    assert not FFMPEG_LINE.search(r.stderr) and "moov atom not found" not in r.stderr
    assert "CUDA" not in r.stderr
    assert not (tmp_path / "out.mp4").exists()


def test_ffmpeg_lines_go_to_the_log_under_verbose(tmp_path: Path) -> None:
    cut = _cut_before_index(_recording(tmp_path / "full.mp4"), tmp_path / "cut.mp4")
    userdata = tmp_path / "ud"
    r = run_main("process", str(cut), "-o", str(tmp_path / "out.mp4"), "--verbose",
                 cwd=tmp_path, env={"PTIM_USERDATA_DIR": str(userdata)})
    assert r.returncode == 3, r.stderr
    assert re.search(r"ERROR libav\.mov[\w,]*: moov atom not found", _log(userdata))
    assert not FFMPEG_LINE.search(r.stderr)  # in our format, not FFmpeg's raw one


def test_damaged_packets_are_decoded_around_quietly(tmp_path: Path) -> None:
    full = _recording(tmp_path / "full.mp4", n=48).read_bytes()
    data = bytearray(full)
    start, end = data.index(b"mdat") + 4, data.rindex(b"moov") - 4
    for k in range(start + (end - start) // 3, start + (end - start) // 2, 7):
        data[k] ^= 0x5A  # scribble over a stretch of the middle of the media
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    r = run_main("process", str(bad), "-o", str(tmp_path / "out.mp4"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not FFMPEG_LINE.search(r.stderr), r.stderr
    assert [x for x in r.stderr.splitlines() if "error" in x.lower()] == [], r.stderr
    userdata = tmp_path / "ud"
    r = run_main("process", str(bad), "-o", str(tmp_path / "out2.mp4"), "--verbose",
                 cwd=tmp_path, env={"PTIM_USERDATA_DIR": str(userdata)})
    assert r.returncode == 0, r.stderr
    assert " libav.h264: " in _log(userdata)  # FFmpeg did complain: into the log


def test_an_unsupported_codec_is_named(tmp_path: Path) -> None:
    data = bytearray(_recording(tmp_path / "full.mp4").read_bytes())
    entry = data.index(b"avc1", data.index(b"stsd"))
    data[entry:entry + 4] = b"zzzz"  # a sample entry no FFmpeg decoder handles
    odd = tmp_path / "odd.mp4"
    odd.write_bytes(bytes(data))
    r = run_main("process", str(odd), "-o", str(tmp_path / "out.mp4"), cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    errors = [x for x in r.stderr.splitlines() if x.startswith("ptim: error:")]
    assert errors == [f"ptim: error: {odd}: unsupported video codec 'zzzz' (this FFmpeg "
                      "build has no decoder for it)"], r.stderr


def test_no_cuda_line_and_no_recovery_without_an_nvidia_driver(tmp_path: Path) -> None:
    from backend.detect.session import nvidia_driver_present

    if nvidia_driver_present():
        pytest.skip("this machine has an NVIDIA driver")
    src = _recording(tmp_path / "in.mp4")
    r = run_main("process", str(src), "-o", str(tmp_path / "out.mp4"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "CUDA" not in r.stderr and "NVIDIA" not in r.stderr and "GPU" not in r.stderr
    r = run_main("process", str(src), "-o", str(tmp_path / "out2.mp4"), "--verbose",
                 cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    notes = [x for x in r.stderr.splitlines() if "CUDA" in x or "NVIDIA" in x]
    assert notes == ["ptim: no NVIDIA driver on this machine: the detector runs on CPU"]
    assert "recoveries:" not in r.stderr  # nothing was counted in backend.errors.STATS
