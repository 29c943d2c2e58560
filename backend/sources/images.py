"""Still images as sources: one image file, or a folder of images read in name order."""

from __future__ import annotations

import logging
import os
import re
import struct
from pathlib import Path

import cv2
import numpy as np

from backend.errors import InputError
from backend.formats import IMAGE_EXTENSIONS
from backend.sources.base import MAX_SIDE, Source
from backend.types import Frame

log = logging.getLogger("ptim.sources")

# ANYDEPTH|ANYCOLOR keeps 16-bit and grayscale (normalised below) and, unlike
# IMREAD_UNCHANGED, applies the EXIF orientation of phone photos; alpha is dropped.
_IMREAD_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """True when the file name ends with one of ``IMAGE_EXTENSIONS`` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Return ``image`` as a C-contiguous ``(H, W, 3)`` uint8 BGR array.

    Grayscale (2-D or one channel) is replicated to three channels, gray+alpha and BGRA
    drop their alpha, 16-bit is scaled by 255/65535, float is taken as 0..1 and clipped.
    Raises ValueError for any other layout or dtype.
    """
    img = image
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3 and img.shape[2] == 2:
        img = img[:, :, 0]  # gray + alpha
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"unsupported image layout {image.shape}")
    if img.dtype == np.uint16:
        img = cv2.convertScaleAbs(img, alpha=255.0 / 65535.0)
    elif img.dtype.kind == "f":
        img = (np.clip(np.nan_to_num(img), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ValueError(f"unsupported pixel type {image.dtype}")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(img)


# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): they hold the size.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        (seglen,) = struct.unpack_from(">H", data, i + 2)
        if marker in _JPEG_SOF and i + 9 <= len(data):
            h, w = struct.unpack_from(">HH", data, i + 5)
            return w, h
        if marker == 0xDA:  # start of scan before any frame header: give up
            return None
        i += 2 + seglen
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    if ifd + 2 > len(data):
        return None
    (count,) = struct.unpack_from(order + "H", data, ifd)
    found: dict[int, int] = {}
    for k in range(min(count, 512)):
        at = ifd + 2 + 12 * k
        if at + 12 > len(data):
            break
        tag, kind = struct.unpack_from(order + "HH", data, at)
        if tag in (256, 257):
            fmt = order + ("H" if kind == 3 else "I")
            found[tag] = struct.unpack_from(fmt, data, at + 8)[0]
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


def image_header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) declared in an image file's header, or None when not recognised.

    Covers PNG, JPEG, BMP, WebP and TIFF. The point is to refuse a file that claims an
    enormous size (a few hundred bytes can declare 16000x16000) before the decoder
    allocates gigabytes for it; anything unrecognised is left to the decoder.
    """
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return struct.unpack_from(">II", data, 16)  # type: ignore[return-value]
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
        if data[:2] == b"BM" and len(data) >= 26:
            (hsize,) = struct.unpack_from("<I", data, 14)
            if hsize == 12:  # OS/2 header: 16-bit sides
                return struct.unpack_from("<HH", data, 18)  # type: ignore[return-value]
            w, h = struct.unpack_from("<ii", data, 18)
            return abs(w), abs(h)  # negative height: rows stored top-down
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            chunk = data[12:16]
            if chunk == b"VP8X":
                return (1 + int.from_bytes(data[24:27], "little"),
                        1 + int.from_bytes(data[27:30], "little"))
            if chunk == b"VP8L":
                (bits,) = struct.unpack_from("<I", data, 21)
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            if chunk == b"VP8 ":
                w, h = struct.unpack_from("<HH", data, 26)
                return w & 0x3FFF, h & 0x3FFF
            return None
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_size(data)
    except struct.error:  # a header cut short: the decoder reports the file as damaged
        return None
    return None


def too_large(width: int, height: int, limit: int = MAX_SIDE) -> str | None:
    """The one-line reason a picture of this size is refused, or None when it fits."""
    if width > limit or height > limit:
        return f"image too large: {width}x{height} pixels (at most {limit} per side)"
    return None


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one image file as BGR uint8 (see ``to_bgr8``), EXIF orientation applied.

    Raises ValueError with a short reason (no path in it) when the file cannot be used:
    unreadable, not a decodable image, unsupported pixel type, larger than 8192 per side
    (checked in the file's header first, so a tiny file claiming a huge size costs nothing).
    """
    try:
        # np.fromfile + imdecode: works with non-ASCII paths on every OS, unlike imread
        data = np.fromfile(os.fspath(path), dtype=np.uint8)
    except PermissionError:
        raise ValueError("permission denied") from None
    except OSError as exc:
        raise ValueError(exc.strerror or str(exc)) from None
    if data.size == 0:
        raise ValueError("empty file (0 bytes)")
    declared = image_header_size(data[:65536].tobytes())
    if declared is not None and (why := too_large(*declared)):
        raise ValueError(why)  # refused before the decoder allocates it
    try:
        img = cv2.imdecode(data, _IMREAD_FLAGS)
    except cv2.error as exc:
        raise ValueError(f"cannot decode image ({str(exc).strip().splitlines()[-1]})") from None
    if img is None:
        raise ValueError("not a readable image")
    h, w = img.shape[:2]
    if why := too_large(w, h):
        raise ValueError(why)
    return to_bgr8(img)


def _natural_key(name: str) -> list[object]:
    # "img2" sorts before "img10", as file browsers show them
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


class ImageFileSource(Source):
    """One image file as a one-frame source; ``Frame.source_id`` is the file name."""

    def __init__(self, path: str | os.PathLike[str], fps: float = 30.0) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.fps = float(fps)
        self.frame_count = 1
        self._image: np.ndarray | None = None
        self._done = False

    def open(self) -> None:
        """Read the image now; InputError when it is missing or unreadable."""
        if not self.path.exists():
            raise InputError(f"{self.path}: file not found")
        try:
            self._image = read_image(self.path)
        except ValueError as exc:
            raise InputError(f"{self.path}: {exc}") from None
        self.size = (int(self._image.shape[1]), int(self._image.shape[0]))
        self._done = False

    def read(self) -> Frame | None:
        """The image once, then None."""
        if self._done or self._image is None:
            return None
        self._done = True
        return Frame(0, 0.0, self._image, self.path.name)

    def close(self) -> None:
        """Forget the image."""
        self._image = None


class ImageFolderSource(Source):
    """Every image directly inside a folder, in natural name order, one frame each.

    Files whose extension is in ``IMAGE_EXTENSIONS`` are used (hidden files and
    subfolders are not). An image that cannot be read is skipped: logged and appended to
    ``skipped`` as (path, reason). ``frame_count`` counts the candidate files, so it is an
    upper bound when some are skipped. Images may differ in size; ``size`` is the first
    readable one's. Timestamps are ``index / fps`` (a folder is often a video's frames).
    """

    def __init__(self, path: str | os.PathLike[str], fps: float = 30.0) -> None:
        self.path = Path(path)
        self.name = self.path.name or str(self.path)
        self.fps = float(fps)
        self.skipped: list[tuple[Path, str]] = []
        self._files: list[Path] = []
        self._pos = 0
        self._index = 0
        self._pending: Frame | None = None

    def open(self) -> None:
        """List the folder and read its first image; InputError when there is none."""
        if not self.path.is_dir():
            raise InputError(f"{self.path}: folder not found")
        try:
            names = [
                e.name
                for e in os.scandir(self.path)
                if not e.name.startswith(".") and e.is_file() and is_image_path(e.name)
            ]
        except PermissionError:
            raise InputError(f"{self.path}: permission denied") from None
        except OSError as exc:
            raise InputError(f"{self.path}: cannot list folder ({exc.strerror})") from None
        if not names:
            exts = " ".join(sorted(IMAGE_EXTENSIONS))
            raise InputError(f"{self.path}: no images in folder (looked for {exts})")
        self._files = [self.path / n for n in sorted(names, key=_natural_key)]
        self.frame_count = len(self._files)
        self.skipped = []
        self._pos = 0
        self._index = 0
        self._pending = self._next_frame()
        if self._pending is None:
            first = self.skipped[0]
            raise InputError(
                f"{self.path}: none of {len(self._files)} images is readable "
                f"({first[0].name}: {first[1]})"
            )
        self.size = self._pending.size

    def _next_frame(self) -> Frame | None:
        while self._pos < len(self._files):
            path = self._files[self._pos]
            self._pos += 1
            try:
                image = read_image(path)
            except ValueError as exc:
                self.skipped.append((path, str(exc)))
                log.warning("skipped %s: %s", path, exc)
                continue
            frame = Frame(self._index, self._index / self.fps, image, path.name)
            self._index += 1
            return frame
        return None

    def read(self) -> Frame | None:
        """The next readable image, or None after the last one."""
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        return self._next_frame()

    def close(self) -> None:
        """Stop reading; the file list is kept for ``skipped`` reporting."""
        self._pending = None
        self._pos = len(self._files)
