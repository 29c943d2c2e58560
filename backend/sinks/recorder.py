"""H.264 recorder with real timestamps, audio copied from the input, atomic output.

Decisions (see the VideoRecorder docstring for the contract):

- Codec: libx264 through PyAV, BT.709 tagged. Even sizes use yuv420p, which every
  player decodes. 4:2:0 H.264 cannot describe an odd width or height at all (its crop
  unit is 2 pixels), so odd sizes use yuv444p (High 4:4:4): the output keeps the exact
  size, at the cost of players without 4:4:4 support (some browsers and hardware
  decoders). Real sources are virtually always even.
- Containers by extension: .mp4/.m4v, .mov (index at the front, "faststart"), .mkv.
- Audio: copied packet by packet in the same pass as the video (no second remux pass
  over a large file), shifted onto the output clock and trimmed to the video's length.
  Only when the container refuses the codec (e.g. an exotic codec into mp4) is the
  audio re-encoded to AAC.
- Atomicity: everything goes to ``.<stem>.ptim-tmp<suffix>`` next to the output, renamed
  over the final path by ``close()``; ``abort()`` and every error remove it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np
from av.video.reformatter import Colorspace

from backend.errors import InputError, OutputError
from backend.sinks.checks import output_writable
from backend.types import Frame

log = logging.getLogger("ptim.sinks")

_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
_DEFAULT_TIME_BASE = Fraction(1, 90000)  # exact for 24, 25, 30, 50, 60 and 29.97 fps
_BT709 = 1  # AVCOL_PRI/TRC/SPC_BT709
_TV_RANGE = 1  # AVCOL_RANGE_MPEG
# Audio packets ending this long before the first video frame are still copied: AAC's
# priming packet and the decoder's overlap need them; the muxer's edit list hides them.
_PREROLL = 0.05


def _cause(exc: BaseException) -> str:
    msg = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(msg).strip().splitlines()[0]


def container_format(path: str | os.PathLike[str]) -> str:
    """FFmpeg muxer name for the output's extension; OutputError for others."""
    suffix = Path(path).suffix.lower()
    try:
        return _FORMATS[suffix]
    except KeyError:
        raise OutputError(
            f"{path}: unsupported video file type '{suffix}' (use .mp4, .mov or .mkv)"
        ) from None


def h264_pix_fmt(width: int, height: int) -> str:
    """yuv420p for even sizes; yuv444p when a side is odd (4:2:0 cannot express it)."""
    return "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"


# The writer's presets that trade compression for speed anyway: on these, x264 also goes
# without B-frames, searches motion by diamond at subpixel level 1 and splits only intra
# blocks. On real 720p clips (one thread, veryfast, crf 23) no B-frames and the diamond took
# 30% less encoder CPU for 2% more bytes at the same PSNR (35.42 against 35.44 dB): B-frame
# decisions cost far more than they saved; subme 1 and intra-only partitions then took 25%
# less again for 1.5% more bytes (37.60 against 37.61 dB).
FAST_PRESETS = ("ultrafast", "superfast", "veryfast")
FAST_X264 = "bframes=0:me=dia:subme=1:partitions=i8x8,i4x4"


def add_h264_stream(
    container: av.container.OutputContainer, width: int, height: int, rate: Fraction,
    time_base: Fraction, *, crf: int = 23, preset: str = "veryfast", threads: int = 0,
    x264_params: str | None = None,
) -> av.video.VideoStream:
    """Add a libx264 stream (pix fmt from ``h264_pix_fmt``, BT.709 tags) to ``container``;
    ``x264_params``: extra x264 options (``key=value:...``)."""
    stream = container.add_stream("libx264", rate=rate)
    stream.width, stream.height = width, height
    stream.pix_fmt = h264_pix_fmt(width, height)
    stream.time_base = time_base
    cc = stream.codec_context
    cc.time_base = time_base
    cc.options = {"crf": str(crf), "preset": preset,
                  **({"x264-params": x264_params} if x264_params else {})}
    cc.thread_count = threads
    cc.color_primaries = cc.color_trc = cc.colorspace = _BT709
    cc.color_range = _TV_RANGE
    return stream


def batch_encoder_threads(cpus: int | None = None) -> int:
    """x264 threads for files: a quarter of the cores, at least 1 (``cpus`` None: this
    machine's). Detection, decode and masking keep the rest busy; on few cores x264's own
    frame threads only add hand-offs (measured on 2 cores: 19 ms of CPU a 720p frame on
    one thread, 24 ms on its automatic three)."""
    n = cpus if cpus is not None else (os.cpu_count() or 1)
    return max(1, round(n / 4))


# BGR -> limited-range BT.709 Y, Cb, Cr (rows), offsets in the last column
_BGR_TO_BT709 = np.array([
    [0.0722 * 219 / 255, 0.7152 * 219 / 255, 0.2126 * 219 / 255, 16.0],
    [0.5 * 224 / 255, -0.3854 * 224 / 255, -0.1146 * 224 / 255, 128.0],
    [-0.0458 * 224 / 255, -0.4542 * 224 / 255, 0.5 * 224 / 255, 128.0],
], np.float32)


def to_video_frame(image: np.ndarray, stream: av.video.VideoStream) -> av.VideoFrame:
    """BGR uint8 image -> frame in the stream's pixel format, converted with BT.709.

    4:2:0 with a height divisible by 4 (720p, 1080p) is converted here (OpenCV: the
    matrix, then each chroma plane averaged over 2x2, within one level of swscale): 2.2 ms
    a 720p frame against swscale's 3.9."""
    h, w = image.shape[:2]
    if stream.pix_fmt == "yuv420p" and h % 4 == 0:  # its planes stack as rows of w
        import cv2

        ycc = cv2.transform(np.ascontiguousarray(image), _BGR_TO_BT709)
        half = cv2.resize(ycc, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        planes = np.empty((h * 3 // 2, w), np.uint8)
        planes[:h] = cv2.extractChannel(ycc, 0)
        planes[h:h + h // 4] = cv2.extractChannel(half, 1).reshape(h // 4, w)
        planes[h + h // 4:] = cv2.extractChannel(half, 2).reshape(h // 4, w)
        return av.VideoFrame.from_ndarray(planes, format="yuv420p")
    vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
    return vf.reformat(format=stream.pix_fmt, dst_colorspace=Colorspace.ITU709)


def _aac_layout(layout: av.AudioLayout) -> str:
    """A channel layout the AAC encoder takes: the input's, or a standard one by count."""
    named = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}
    if not layout.name.endswith("channels"):  # "3 channels": count known, order not
        return layout.name
    return named.get(layout.nb_channels, "stereo")


class AudioFeed:
    """The first audio stream of another file, fed into the output in time order.

    Times are on the output clock: seconds since the first written video frame. The
    input's clock is mapped by subtracting its video stream's start time (as
    ``VideoFileSource`` does) plus the timestamp of the first written frame.
    """

    def __init__(self, src: Path, out: av.container.OutputContainer, transcode: bool) -> None:
        try:
            self._in = av.open(os.fspath(src))
        except (av.FFmpegError, OSError) as exc:
            raise InputError(f"{src}: cannot read audio ({_cause(exc)})") from None
        self.stream_in = self._in.streams.audio[0]
        video = self._in.streams.video[0] if self._in.streams.video else None
        self._start = 0.0
        if video is not None and video.start_time is not None and video.time_base:
            self._start = float(video.start_time * video.time_base)
        self.transcode = transcode
        if transcode:
            cc = self.stream_in.codec_context
            self.stream_out = out.add_stream("aac", rate=cc.sample_rate or 48000)
            self.stream_out.layout = _aac_layout(cc.layout)
        else:
            self.stream_out = out.add_stream_from_template(self.stream_in)
        self._out = out
        self._items: Iterator[tuple[float, list[av.Packet]]] | None = None
        self._next: tuple[float, list[av.Packet]] | None = None
        self._origin = 0.0
        self.packets = 0

    def start(self, origin: float) -> None:
        """Begin at output time 0 = input video time ``origin`` (the first frame's)."""
        self._origin = origin
        self._items = self._generate()
        self._next = next(self._items, None)

    def _generate(self) -> Iterator[tuple[float, list[av.Packet]]]:
        tb = self.stream_in.time_base
        offset = self._start + self._origin
        shift = round(Fraction(offset).limit_denominator(10**9) / tb)
        try:
            for packet in self._in.demux(self.stream_in):
                if packet.pts is None:
                    if self.transcode and packet.size == 0:
                        for f in self.stream_in.decode(packet):
                            yield from self._encode(f, shift, tb)
                    continue
                t = float(packet.pts * tb) - offset
                dur = float(packet.duration * tb) if packet.duration else 0.0
                if t + dur < -_PREROLL:  # well before the first video frame
                    continue
                if self.transcode:
                    for f in self.stream_in.decode(packet):
                        yield from self._encode(f, shift, tb)
                    continue
                packet.pts -= shift
                if packet.dts is not None:
                    packet.dts -= shift
                packet.stream = self.stream_out
                yield t, [packet]
        except (av.FFmpegError, OSError) as exc:  # a truncated input ends its audio
            log.warning("%s: audio ends early (%s)", self._in.name, _cause(exc))

    def _encode(
        self, frame: av.AudioFrame, shift: int, tb: Fraction
    ) -> Iterator[tuple[float, list[av.Packet]]]:
        if frame.pts is None:
            return
        t = float(frame.pts * tb) - (self._start + self._origin)
        if t < 0:
            return
        frame.pts -= shift
        frame.time_base = tb
        yield t, list(self.stream_out.encode(frame))

    def pump(self, until: float) -> None:
        """Mux every audio packet that starts before output time ``until`` (seconds)."""
        while self._next is not None and self._next[0] < until:
            packets = self._next[1]
            if packets:
                self._out.mux(packets)
                self.packets += len(packets)
            self._next = next(self._items, None) if self._items is not None else None

    def finish(self, end: float) -> None:
        """Mux what starts before ``end`` and flush the encoder when transcoding."""
        if self._items is None:
            self.start(0.0)
        self.pump(end)
        if self.transcode:
            self._out.mux(self.stream_out.encode(None))

    def close(self) -> None:
        """Close the input file."""
        self._items = None
        self._next = None
        with contextlib.suppress(Exception):
            self._in.close()


def _has_audio(path: Path) -> bool:
    try:
        with av.open(os.fspath(path)) as c:
            return bool(c.streams.audio)
    except (av.FFmpegError, OSError) as exc:
        raise InputError(f"{path}: cannot read audio ({_cause(exc)})") from None


class VideoRecorder:
    """Write frames to an H.264 video file, atomically.

    ``path`` extension picks the container (.mp4/.m4v/.mov/.mkv). ``size`` is (width,
    height); any size from 1x1 to 8192x8192 is kept exactly (odd sizes: see the module
    docstring). ``write(frame)`` takes each frame's real ``timestamp``: pts are seconds
    since the first written frame, in ``time_base`` units (default 1/90000; pass the
    source's to keep its exact pts), so variable frame rate is preserved. Timestamps
    that do not increase are bumped by one tick (``pts_adjusted`` counts them). ``fps``
    is the nominal rate written into the stream headers.

    With ``audio_from`` (the input file), its first audio stream, if any, is copied
    without re-encoding, aligned with the video and cut at the video's end.

    Everything is written to ``.<stem>.ptim-tmp<suffix>`` in the output folder;
    ``close()`` finalizes it and renames it onto ``path``; ``abort()`` deletes it and
    never touches ``path``. Write failures (disk full, I/O errors) delete the temporary
    file and raise OutputError naming ``path`` and the cause; an unusable ``audio_from``
    raises InputError. As a context manager, an exception in the block aborts.
    Not thread-safe: one thread owns a recorder.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float,
        size: tuple[int, int],
        time_base: Fraction | None = None,
        crf: int = 23,
        preset: str = "veryfast",
        audio_from: str | os.PathLike[str] | None = None,
        threads: int = 0,
    ) -> None:
        self.path = Path(path)
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        w, h = int(size[0]), int(size[1])
        if not (0 < w <= 8192 and 0 < h <= 8192):
            raise ValueError(f"size {w}x{h} is outside 1..8192 per side")
        self.fps = float(fps)
        self.size = (w, h)
        self.time_base = Fraction(time_base) if time_base else _DEFAULT_TIME_BASE
        self.frames_written = 0
        self.pts_adjusted = 0
        self.has_audio = False
        self._crf, self._preset, self._threads = crf, preset, threads
        audio_path = Path(audio_from) if audio_from is not None else None
        output_writable(self.path, inputs=[audio_path])
        self._format = container_format(self.path)
        self._tmp = self.path.with_name(f".{self.path.stem}.ptim-tmp{self.path.suffix}")
        self._out: av.container.OutputContainer | None = None
        self._audio: AudioFeed | None = None
        self._closed = False
        # write() runs on a writer thread while abort() may come from the main one (Ctrl+C):
        # the lock keeps a frame half-muxed from recreating the file that abort removed
        self._io_lock = threading.RLock()
        self._saved: Path | None = None
        self._last_pts: int | None = None
        self._origin = 0.0
        self._last_ts = 0.0
        copy_audio = audio_path is not None and _has_audio(audio_path)
        try:
            try:
                self._start(audio_path if copy_audio else None, transcode=False)
            except (av.FFmpegError, ValueError) as exc:
                if not copy_audio:
                    raise
                # the container refused the audio codec: re-encode it to AAC instead
                log.info("%s: audio cannot be copied (%s); re-encoding to AAC",
                         self.path, _cause(exc))
                self._discard()
                self._start(audio_path, transcode=True)
        except (av.FFmpegError, OSError, ValueError) as exc:
            self._discard()
            raise OutputError(f"{self.path}: cannot start recording ({_cause(exc)})") from None
        except BaseException:
            self._discard()
            raise

    def _start(self, audio_path: Path | None, transcode: bool) -> None:
        from backend.replace import disclosure

        opts = {"movflags": "+faststart"} if self._format in ("mp4", "mov") else {}
        tags = disclosure.metadata()  # faces are being replaced: the file says so
        if tags and opts:
            opts["movflags"] += "+use_metadata_tags"  # mp4/mov drop custom keys otherwise
        self._out = av.open(os.fspath(self._tmp), "w", format=self._format, options=opts)
        self._out.metadata.update(tags)
        rate = Fraction(self.fps).limit_denominator(100000)
        w, h = self.size
        self._video = add_h264_stream(
            self._out, w, h, rate, self.time_base,
            crf=self._crf, preset=self._preset, threads=self._threads,
            x264_params=FAST_X264 if self._preset in FAST_PRESETS else None,
        )
        if audio_path is not None:
            self._audio = AudioFeed(audio_path, self._out, transcode)
        self._out.start_encoding()  # writes the header now: codec errors surface here
        self.has_audio = self._audio is not None

    # -- writing ----------------------------------------------------------------------
    def write(self, frame: Frame) -> None:
        """Encode one frame (BGR uint8 of exactly ``size``) at its timestamp.

        Raises ValueError for a frame of another size or type (the recorder stays
        usable), OutputError when writing fails (the recorder is then aborted). Safe to
        call while another thread aborts: the frame is either written before or refused.
        """
        with self._io_lock:
            self._write(frame)

    def _write(self, frame: Frame) -> None:
        if self._closed or self._out is None:
            raise RuntimeError(f"{self.path}: recorder is closed")
        img = frame.image
        w, h = self.size
        if img.dtype != np.uint8 or img.shape != (h, w, 3):
            raise ValueError(
                f"frame {frame.index} is {img.shape} {img.dtype}, "
                f"recorder expects ({h}, {w}, 3) uint8"
            )
        if self._last_pts is None:
            self._origin = frame.timestamp
            if self._audio is not None:
                self._audio.start(self._origin)
        ts = frame.timestamp - self._origin
        pts = round(Fraction(ts).limit_denominator(10**9) / self.time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
            self.pts_adjusted += 1
        try:
            vf = to_video_frame(img, self._video)
            vf.pts = pts
            vf.time_base = self.time_base
            self._out.mux(self._video.encode(vf))
            if self._audio is not None:
                self._audio.pump(ts)
        except (av.FFmpegError, OSError) as exc:
            self._fail(exc)
        self._last_pts = pts
        self._last_ts = float(pts * self.time_base)
        self.frames_written += 1

    def close(self) -> Path | None:
        """Finish the file and rename it onto ``path``; returns ``path``.

        With no frame written there is nothing to keep: the temporary file is removed,
        ``path`` is untouched and None is returned. Calling close() again is a no-op.
        """
        if self._closed:
            return self._saved
        if self.frames_written == 0:
            log.warning("%s: no frames were written; nothing saved", self.path)
            self.abort()
            return None
        try:
            self._out.mux(self._video.encode(None))
            if self._audio is not None:
                self._audio.finish(self._last_ts + 1.0 / self.fps)
            self._out.close()
            self._out = None
            os.replace(self._tmp, self.path)
        except (av.FFmpegError, OSError) as exc:
            self._fail(exc)
        finally:
            if self._audio is not None:
                self._audio.close()
        self._closed = True
        self._saved = self.path
        return self.path

    def abort(self) -> None:
        """Stop and delete the temporary file; ``path`` is never touched. Idempotent, and
        safe while another thread is in ``write`` (it waits for that frame)."""
        with self._io_lock:
            self._closed = True
            self._discard()

    # -- internals --------------------------------------------------------------------
    def _discard(self) -> None:
        if self._audio is not None:
            self._audio.close()
            self._audio = None
        if self._out is not None:
            with contextlib.suppress(Exception):  # half-written: the muxer may complain
                self._out.close()
            self._out = None
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._tmp)

    def _fail(self, exc: BaseException) -> None:
        self._discard()
        self._closed = True
        raise OutputError(f"{self.path}: cannot write video ({_cause(exc)})") from exc

    def __enter__(self) -> VideoRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()
