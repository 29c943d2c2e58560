"""Webcams through OpenCV's VideoCapture, and a quick probe of the cameras present."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2

from backend.errors import InputError
from backend.sources.base import Source, SourceReadError
from backend.sources.images import to_bgr8
from backend.types import Frame

log = logging.getLogger("ptim.sources")

_SYS_V4L = Path("/sys/class/video4linux")
# A fresh camera may deliver nothing for its first reads while it starts up.
_WARMUP_READS = 10


@dataclass(frozen=True, slots=True)
class CameraInfo:
    """A camera found by ``list_cameras``: its index for ``camera:N``, name and size."""

    index: int
    name: str
    width: int
    height: int


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    # OpenCV prints a multi-line warning per failed open; the caller reports it once
    try:
        old = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # builds without the logging module
        yield
        return
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(old)


def _linux_device_indexes() -> list[int]:
    found = set()
    for root in (_SYS_V4L, Path("/dev")):
        with contextlib.suppress(OSError):
            for entry in root.iterdir():
                m = re.fullmatch(r"video(\d+)", entry.name)
                if m:
                    found.add(int(m.group(1)))
    return sorted(found)


def _linux_name(index: int) -> str:
    try:
        return (_SYS_V4L / f"video{index}" / "name").read_text().strip() or f"Camera {index}"
    except OSError:
        return f"Camera {index}"


def _capture(index: int) -> cv2.VideoCapture:
    with _quiet_opencv():
        if sys.platform.startswith("linux"):
            return cv2.VideoCapture(index, cv2.CAP_V4L2)
        return cv2.VideoCapture(index)


def list_cameras(max_index: int = 5) -> list[CameraInfo]:
    """Cameras with index below ``max_index`` that open, with their default frame size.

    On Linux only existing ``/dev/videoN`` nodes are tried (names from sysfs), so a
    machine without cameras answers at once; metadata-only nodes that do not open are
    left out. Elsewhere indexes are tried from 0 until the first that does not open.
    """
    linux = sys.platform.startswith("linux")
    indexes = [i for i in _linux_device_indexes() if i < max_index] if linux else range(max_index)
    found: list[CameraInfo] = []
    for index in indexes:
        cap = _capture(index)
        try:
            if not cap.isOpened():
                if linux:
                    continue
                break
            w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
            h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        finally:
            cap.release()
        name = _linux_name(index) if linux else f"Camera {index}"
        found.append(CameraInfo(index, name, w, h))
    return found


class CameraSource(Source):
    """A live camera (``camera:N``).

    ``open()`` raises InputError "camera N: not available (busy or not connected)" when
    the device does not open or delivers no frame. ``read()`` never returns None: when
    the camera stops delivering it raises ``SourceReadError`` and the caller decides
    whether to ``reopen()`` (with backoff) or stop. Timestamps are seconds since open
    (monotonic clock); ``fps`` is what the driver reports, 30 when it reports nothing.
    Requested ``width``/``height``/``fps`` are hints the driver may ignore; ``size`` is
    the size actually delivered.
    """

    is_live = True

    def __init__(
        self, index: int, width: int | None = None, height: int | None = None,
        fps: float | None = None,
    ) -> None:
        self.index = int(index)
        self.name = f"camera {self.index}"
        self._want = (width, height, fps)
        self._cap: cv2.VideoCapture | None = None
        self._t0 = 0.0
        self._count = 0
        self._first: Frame | None = None

    def _unavailable(self) -> InputError:
        return InputError(f"camera {self.index}: not available (busy or not connected)")

    def open(self) -> None:
        """Open the device and read one frame to prove it works."""
        self._open(keep_clock=False)

    def _open(self, keep_clock: bool) -> None:
        self.close()
        if sys.platform.startswith("linux") and not os.path.exists(f"/dev/video{self.index}"):
            raise self._unavailable()  # no device node: skip OpenCV's slow, noisy probe
        cap = _capture(self.index)
        if not cap.isOpened():
            cap.release()
            raise self._unavailable()
        width, height, fps = self._want
        if width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            cap.set(cv2.CAP_PROP_FPS, fps)
        self._cap = cap
        if not keep_clock:
            self._t0 = time.monotonic()
            self._count = 0
        image = None
        for _ in range(_WARMUP_READS):
            ok, image = cap.read()
            if ok and image is not None:
                break
            image = None
        if image is None:
            self.close()
            raise self._unavailable()
        reported = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(reported) if 0 < reported < 1000 else 30.0
        self._first = self._make_frame(image)
        self.size = self._first.size

    def _make_frame(self, image) -> Frame:
        frame = Frame(self._count, time.monotonic() - self._t0, to_bgr8(image), self.name)
        self._count += 1
        return frame

    def read(self) -> Frame:
        """The next frame; raises SourceReadError when the camera fails to deliver one."""
        if self._first is not None:
            frame, self._first = self._first, None
            return frame
        if self._cap is None:
            raise SourceReadError(f"camera {self.index}: not open")
        ok, image = self._cap.read()
        if not ok or image is None:
            raise SourceReadError(f"camera {self.index}: read failed (unplugged or busy?)")
        return self._make_frame(image)

    def reopen(self) -> None:
        """Close and open again (after a SourceReadError); raises InputError on failure.

        Frame indexes and timestamps continue from before, so downstream order holds.
        """
        self._open(keep_clock=True)

    def close(self) -> None:
        """Release the device."""
        self._first = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None
