"""Loading the picture of the image mask, once, with a one-line error when it cannot be used."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from backend.errors import UsageError

# Larger images are shrunk once at load time so the per-frame resize stays cheap.
MAX_SIDE = 1024


class MaskImageError(UsageError):
    """The mask image (mask.image_path) is missing or not a readable image."""


class MaskImage:
    """A mask picture as BGR + alpha, with a small cache of resized copies.

    ``bgr`` is (h, w, 3) uint8 BGR; ``alpha`` is (h, w) float32 in [0, 1] (1 for images
    without an alpha channel).
    """

    def __init__(self, bgr: np.ndarray, alpha: np.ndarray, path: str) -> None:
        self.bgr = bgr
        self.alpha = alpha
        self.path = path
        self._cache: OrderedDict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the loaded picture."""
        return int(self.bgr.shape[1]), int(self.bgr.shape[0])

    def fitted(self, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """(bgr, alpha) resized to exactly (width, height); recent sizes are cached."""
        key = (width, height)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        shrink = width < self.bgr.shape[1] or height < self.bgr.shape[0]
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        bgr = cv2.resize(self.bgr, (width, height), interpolation=interp)
        alpha = cv2.resize(self.alpha, (width, height), interpolation=interp)
        self._cache[key] = (bgr, alpha)
        if len(self._cache) > 16:
            self._cache.popitem(last=False)
        return bgr, alpha


def load_mask_image(path: str | Path) -> MaskImage:
    """Read an RGB/RGBA/grey picture (8 or 16 bit) for the image mask.

    Raises MaskImageError with one line naming the path and the cause when the path is
    empty, missing, not a file, unreadable, not a decodable image, or declares more than
    8192 pixels per side.
    """
    text = str(path).strip()
    if not text:
        raise MaskImageError("mask.image_path is empty: set it to a PNG/JPEG to use the image mask")
    p = Path(text).expanduser()
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise MaskImageError(f"mask image {text}: file not found") from None
    except IsADirectoryError:
        raise MaskImageError(f"mask image {text}: is a folder, not an image file") from None
    except OSError as exc:
        raise MaskImageError(f"mask image {text}: cannot read ({exc.strerror or exc})") from None
    from backend.sources.images import image_header_size, too_large

    declared = image_header_size(data[:65536])
    if declared is not None and (why := too_large(*declared)):
        # refused before decoding: a few hundred bytes can claim gigabytes of pixels
        raise MaskImageError(f"mask image {text}: {why}")
    # imdecode instead of imread: works with non-ASCII paths on Windows too
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if img is None or img.size == 0:
        raise MaskImageError(
            f"mask image {text}: not a readable image (empty, corrupt or unsupported format)"
        )
    if img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 2:
        img = img[:, :, None]
    channels = img.shape[2]
    if channels == 1:
        bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        alpha = np.ones(img.shape[:2], np.float32)
    elif channels == 2:  # grey + alpha
        bgr = cv2.cvtColor(np.ascontiguousarray(img[:, :, 0]), cv2.COLOR_GRAY2BGR)
        alpha = img[:, :, 1].astype(np.float32) / 255.0
    elif channels == 3:
        bgr = img
        alpha = np.ones(img.shape[:2], np.float32)
    elif channels == 4:
        bgr = np.ascontiguousarray(img[:, :, :3])
        alpha = img[:, :, 3].astype(np.float32) / 255.0
    else:
        raise MaskImageError(f"mask image {text}: unsupported number of channels ({channels})")
    long_side = max(bgr.shape[:2])
    if long_side > MAX_SIDE:
        f = MAX_SIDE / long_side
        size = (max(1, round(bgr.shape[1] * f)), max(1, round(bgr.shape[0] * f)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
    return MaskImage(np.ascontiguousarray(bgr), np.ascontiguousarray(alpha), text)
