"""Video files decoded with PyAV (FFmpeg): real timestamps, rotation applied."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from backend.errors import InputError
from backend.sources import isobmff
from backend.sources.base import MAX_SIDE, Source
from backend.types import Frame

log = logging.getLogger("ptim.sources")

# Consecutive undecodable packets tolerated before the stream is ended: one damaged
# packet costs a few frames, a damaged tail ends the file instead of spinning on it.
_MAX_CONSECUTIVE_ERRORS = 8


MISSING_INDEX = (
    "its index (the moov atom) is missing: the file was cut off while being written (a "
    "recording stopped before it finished); tools such as untrunc can rebuild it from a "
    "complete file recorded by the same camera"
)
"""Why an MP4/MOV with media but no index cannot be opened, in the user's words."""


def _refused(path: Path, exc: BaseException) -> str:
    """The cause of FFmpeg refusing to open ``path``, named when it is a known damage."""
    found = isobmff.layout(path)
    if found is not None and found.missing_index:
        return MISSING_INDEX
    if isinstance(exc, av.error.InvalidDataError):
        return "not a video file, or a damaged one"
    return f"cannot open ({_cause(exc)})"


def _cause(exc: BaseException) -> str:
    """One short line from an FFmpeg/OS error, without the repeated path."""
    msg = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(msg).strip().splitlines()[0]


class VideoFileSource(Source):
    """A video file's first video stream, decoded to BGR frames.

    ``Frame.timestamp`` is the frame's real presentation time in seconds, counted from
    the stream's start time (so the first frame is at ~0 even in MPEG-TS files whose
    clock starts elsewhere); ``start_time`` keeps that offset. Variable frame rate is
    preserved. Frames carrying a display rotation (phone videos) are rotated upright, so
    ``size`` is the displayed size. ``frame_count`` is the container's count, or None
    when the container does not store one; ``duration`` (seconds) likewise.
    ``Frame.source_id`` is the file name; ``audio`` says whether the file has sound.

    A truncated or damaged file yields the frames before the damage, then None; the
    reason is logged and ``truncated`` is set. ``frames_read`` counts delivered frames.
    """

    is_live = False

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.audio = False
        self.duration: float | None = None
        self.start_time = 0.0
        self.frames_read = 0
        self.decode_errors = 0
        self.truncated = False
        self._container: av.container.InputContainer | None = None
        self._frames: Iterator[av.VideoFrame] | None = None
        self._pending: av.VideoFrame | None = None
        self._rotation = 0
        self._last_ts = -1.0

    # -- Source -----------------------------------------------------------------------
    def open(self) -> None:
        """Open the file and decode its first frame; InputError when that fails."""
        self.close()
        self.frames_read = self.decode_errors = 0
        self.truncated = False
        self._last_ts = -1.0
        p = self.path
        if not p.exists():
            raise InputError(f"{p}: file not found")
        if p.is_dir():
            raise InputError(f"{p}: is a folder, not a video file")
        try:
            if p.stat().st_size == 0:
                raise InputError(f"{p}: empty file (0 bytes)")
            container = av.open(os.fspath(p), mode="r")
        except InputError:
            raise
        except PermissionError:
            raise InputError(f"{p}: permission denied") from None
        except av.error.InvalidDataError as exc:
            raise InputError(f"{p}: {_refused(p, exc)}") from None
        except av.error.EOFError:
            # e.g. a Matroska file cut after its header: streams declared, no frame stored
            raise InputError(f"{p}: no video frames (the file ends before its first frame)") \
                from None
        except av.FFmpegError as exc:
            raise InputError(f"{p}: {_refused(p, exc)}") from None
        except OSError as exc:
            raise InputError(f"{p}: cannot open ({_cause(exc)})") from None
        self._container = container
        try:
            self._setup(container)
        except BaseException:
            self.close()
            raise

    def _setup(self, container: av.container.InputContainer) -> None:
        p = self.path
        if not container.streams.video:
            raise InputError(f"{p}: no video stream (audio-only or data file)")
        stream = container.streams.video[0]
        if stream.codec_context is None:  # PyAV makes none when FFmpeg has no decoder
            tag = isobmff.video_fourcc(p)
            named = f" '{tag}'" if tag else ""
            raise InputError(f"{p}: unsupported video codec{named} (this FFmpeg build has no "
                             "decoder for it)")
        # Slice threads only: with frame threads FFmpeg drops the frames still in flight
        # when a later packet fails to decode, so a truncated file would lose complete
        # frames before the cut. Decoding is not the bottleneck (detection and encoding are).
        stream.thread_type = "SLICE"
        cc = stream.codec_context
        if cc.width > MAX_SIDE or cc.height > MAX_SIDE:
            raise InputError(
                f"{p}: video too large: {cc.width}x{cc.height} pixels "
                f"(at most {MAX_SIDE} per side)"
            )
        self.audio = bool(container.streams.audio)
        self.time_base = Fraction(stream.time_base) if stream.time_base else None
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps = float(rate) if rate else 30.0
        self.frame_count = int(stream.frames) or None
        if stream.duration is not None and stream.time_base:
            self.duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            self.duration = container.duration / av.time_base
        if stream.start_time is not None and stream.time_base:
            self.start_time = float(stream.start_time * stream.time_base)
        self._stream = stream
        self._frames = self._decode(container, stream)
        self._pending = next(self._frames, None)
        if self._pending is None:
            found = isobmff.layout(p)
            cut = (": the file is cut off before its first complete frame"
                   if found is not None and found.truncated else "")
            raise InputError(f"{p}: no decodable video frames{cut}")
        self._rotation = int(round((self._pending.rotation or 0) / 90.0)) % 4
        w, h = self._pending.width, self._pending.height
        if self._rotation % 2:
            w, h = h, w
        if w > MAX_SIDE or h > MAX_SIDE or w <= 0 or h <= 0:
            raise InputError(f"{p}: unsupported frame size {w}x{h} (too large or empty; "
                             f"at most {MAX_SIDE} per side)")
        self.size = (w, h)

    def seek(self, pts: int, index: int = 0) -> None:
        """Go to the keyframe at or before stream time ``pts`` (the stream's time base).

        The next ``read`` returns that keyframe's frame, numbered ``index`` (its position in
        the file, for ``backend.segments`` windows); a later frame when the container's index
        is coarse, which the caller checks by timestamp. InputError when seeking fails.
        """
        if self._container is None:
            raise RuntimeError(f"{self.path}: seek before open")
        try:
            self._container.seek(int(pts), stream=self._stream, backward=True, any_frame=False)
        except (av.FFmpegError, OSError) as exc:
            raise InputError(f"{self.path}: cannot seek ({_cause(exc)})") from None
        self._frames = self._decode(self._container, self._stream)
        self._pending = None
        self.frames_read = int(index)
        self._last_ts = -1.0

    def _decode(
        self, container: av.container.InputContainer, stream: av.video.VideoStream
    ) -> Iterator[av.VideoFrame]:
        errors = 0
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except (av.FFmpegError, OSError) as exc:
                self._end_early(f"demuxing failed ({_cause(exc)})")
                return
            try:
                frames = stream.decode(packet)
            except (av.FFmpegError, OSError, ValueError) as exc:
                errors += 1
                self.decode_errors += 1
                if errors >= _MAX_CONSECUTIVE_ERRORS:
                    self._end_early(f"{errors} packets in a row failed to decode ({_cause(exc)})")
                    return
                continue
            errors = 0
            yield from frames

    def _end_early(self, why: str) -> None:
        self.truncated = True
        log.warning("%s: %s; stopped after %d frames", self.path, why, self.frames_read)

    def read(self) -> Frame | None:
        """Next frame (BGR uint8, C-contiguous, real timestamp), or None at the end."""
        if self._frames is None:
            return None
        if self._pending is not None:
            vf, self._pending = self._pending, None
        else:
            try:
                vf = next(self._frames, None)
            except (av.FFmpegError, OSError) as exc:  # decoder flush failures
                self._end_early(f"decoding failed ({_cause(exc)})")
                vf = None
            if vf is None:
                self._finish()
                return None
        image = vf.to_ndarray(format="bgr24")  # honours the frame's colour space tags
        if self._rotation:
            image = np.rot90(image, self._rotation)
        image = np.ascontiguousarray(image)
        if vf.pts is not None and vf.time_base:
            ts = float(vf.pts * vf.time_base) - self.start_time
        else:
            ts = self._last_ts + 1.0 / self.fps  # raw streams without timestamps
        self._last_ts = ts
        frame = Frame(self.frames_read, ts, image, self.name)
        self.frames_read += 1
        return frame

    def _finish(self) -> None:
        if self._frames is None:
            return
        self._frames = None
        expected = self.frame_count
        if expected is not None and self.frames_read < expected and not self.truncated:
            self.truncated = True
            log.warning(
                "%s: file ended after %d of %d frames (truncated?)",
                self.path, self.frames_read, expected,
            )

    def close(self) -> None:
        """Close the file. Safe to call more than once."""
        self._frames = None
        self._pending = None
        if self._container is not None:
            try:
                self._container.close()
            finally:
                self._container = None
