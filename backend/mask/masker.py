"""Maskers: paint over every tracked face in a BGR frame, in place.

Mask box = the track box scaled by ``settings.scale`` about its centre. Shapes: the box
itself or the ellipse inscribed in it. A soft edge (``feather > 0``) only ever adds a
fading band *outside* the shape: the shape itself is always fully covered, so feathering
never exposes any part of the face that a hard mask would hide.

Effects work on the region of interest of each face only, clipped to the frame; boxes
partly or wholly outside the frame are fine. A box cut off by the frame edge is first
completed to a whole face past that edge (``complete_at_edges``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from backend.mask.image import MaskImage, load_mask_image
from backend.replace import FaceReplacer
from backend.types import Track
from config.schema import MaskSettings

MASK_TYPES: tuple[str, ...] = ("pixelate", "solid", "blur", "image")
"""Mask types in the order the UI cycles through them (replace is chosen with its model,
never by cycling: it needs a file that is checked first)."""

FAIL_CLOSED_BLOCKS = 16
"""Blocks (mosaic) or samples (blur) across the long side of a fail-closed frame."""

FACE_ASPECT = 1.25
"""Height / width of a whole face box from the detector (CenterFace: about 1.2 to 1.35)."""

EDGE_MARGIN = 2.0
"""A box side within this many pixels of the frame edge (or past it) counts as cut off ..."""

EDGE_SHARE = 0.15
"""... or within this share of the box's size: the network's box of a face cut by the edge
often stops a few pixels short of it (bench/real_world.py: 3 px on a 27 px box)."""

EDGE_SNAP = 0.35
"""A box whose gap to the frame edge is under this share of its size is stretched to that
edge first: the network places the box of a face the edge cuts inside the frame, on what
it sees, and the cut part of the face lies in the gap (bench/real_world.py sweeps: boxes
14 px below the top of a face whose eyes touch it)."""

_SHIFT = 4  # cv2 drawing with 4 fractional bits: sub-pixel shapes
_ONE = 1 << _SHIFT


def next_mask_type(current: str) -> str:
    """Return the mask type after ``current`` in ``MASK_TYPES`` (wraps; unknown -> the first)."""
    try:
        return MASK_TYPES[(MASK_TYPES.index(current) + 1) % len(MASK_TYPES)]
    except ValueError:
        return MASK_TYPES[0]


def mask_box(box: np.ndarray | Sequence[float], scale: float) -> np.ndarray:
    """Return the mask box: xyxy ``box`` scaled by ``scale`` about its centre, (4,) float64."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    hw, hh = (x2 - x1) * scale / 2, (y2 - y1) * scale / 2
    return np.array([cx - hw, cy - hh, cx + hw, cy + hh])


def complete_at_edges(box: np.ndarray, width: int, height: int) -> np.ndarray:
    """The whole face a box cut off by the frame edge belongs to, (4,) float64.

    A face entering or leaving the frame is detected as its visible part only: a box too
    flat (or too narrow) for a face that touches the top or bottom (left or right) edge is
    extended past that edge to ``FACE_ASPECT``, so the mask shape, an ellipse in
    particular, is centred on the whole face and covers the visible part up to the edge.
    A box that stops short of an edge by less than ``EDGE_SNAP`` of its size is first
    stretched to it. Boxes clear of the edges are returned unchanged; no box is ever made
    smaller.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    sx, sy = EDGE_SNAP * w, EDGE_SNAP * h
    x0, x1 = (min(x0, 0.0) if x0 < sx else x0), (max(x1, width) if x1 > width - sx else x1)
    y0, y1 = (min(y0, 0.0) if y0 < sy else y0), (max(y1, height) if y1 > height - sy else y1)
    w, h = x1 - x0, y1 - y0
    mx, my = max(EDGE_MARGIN, EDGE_SHARE * w), max(EDGE_MARGIN, EDGE_SHARE * h)
    top, bottom = y0 <= my, y1 >= height - my
    left, right = x0 <= mx, x1 >= width - mx
    need = FACE_ASPECT * w - h
    if need > 0 and (top or bottom):
        up = 0.5 if top and bottom else 1.0 if top else 0.0  # share grown past the top
        y0, y1 = y0 - need * up, y1 + need * (1.0 - up)
    need = (y1 - y0) / FACE_ASPECT - w
    if need > 0 and (left or right):
        out = 0.5 if left and right else 1.0 if left else 0.0  # share grown past the left
        x0, x1 = x0 - need * out, x1 + need * (1.0 - out)
    return np.array([x0, y0, x1, y1])


def _odd(k: float) -> int:
    k = max(3, int(round(k)))
    return k if k % 2 else k + 1


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"expected an (H, W, 3) BGR image, got shape {shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if not image.flags.writeable:
        raise ValueError("the image is read-only; masks are painted in place")


def _cv_writable(arr: np.ndarray) -> bool:
    """True when cv2 can draw into ``arr`` in place (rows may be strided, pixels packed)."""
    st = arr.strides
    return arr.flags.writeable and st[2] == 1 and st[1] == 3 and st[0] > 0


def _fill(dst: np.ndarray, color: tuple[int, int, int]) -> None:
    """Fill (h, w, 3) ``dst`` with a BGR colour in place."""
    h, w = dst.shape[:2]
    if h and w:
        if _cv_writable(dst):
            # cv2 fills ~40x faster than numpy broadcasting a 3-vector
            cv2.rectangle(dst, (0, 0), (w - 1, h - 1), color, -1)
        else:
            dst[...] = color


class _Scratch:
    """Work buffers reused from frame to frame, grown on demand.

    A fresh large numpy allocation costs page faults on first touch, which is several
    times the cost of the cv2 call itself on a ROI; reuse keeps masking well under 1 ms.
    """

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: type = np.uint8) -> np.ndarray:
        """A contiguous uninitialised array of ``shape``/``dtype``, valid until the next get."""
        n = math.prod(shape)
        buf = self._bufs.get(name)
        if buf is None or buf.dtype != np.dtype(dtype) or buf.size < n:
            buf = np.empty(max(n, 1), dtype)
            self._bufs[name] = buf
        return buf[:n].reshape(shape)


def _blend(
    roi: np.ndarray, effect: np.ndarray, alpha: np.ndarray, scratch: _Scratch,
) -> None:
    """roi = effect * alpha + roi * (1 - alpha) in place; alpha (h, w) float32 in [0, 1].

    Where alpha is 1 the result equals ``effect`` (h, w, 3) uint8 exactly.
    """
    inv = np.subtract(1.0, alpha, out=scratch.get("inv", alpha.shape, np.float32))
    out = scratch.get("blend", roi.shape, np.uint8)
    cv2.blendLinear(effect, roi, alpha, inv, dst=out)
    roi[...] = out


def pixelate(roi: np.ndarray, block: int, scratch: _Scratch | None = None) -> np.ndarray:
    """Mosaic of (h, w, 3) uint8 ``roi``: each ``block`` x ``block`` cell holds its mean.

    Cells start at the ROI's top-left; a partial last row/column of cells (ROI clipped by
    the frame) averages its own pixels with the edge replicated. Returns a new (h, w, 3)
    array (a view of a scratch buffer when ``scratch`` is given).
    """
    scratch = scratch or _Scratch()
    h, w = roi.shape[:2]
    nx, ny = -(-w // block), -(-h // block)
    pw, ph = nx * block, ny * block
    src = roi
    if (pw, ph) != (w, h):
        src = cv2.copyMakeBorder(
            roi, 0, ph - h, 0, pw - w, cv2.BORDER_REPLICATE,
            dst=scratch.get("pad", (ph, pw, 3)),
        )
    # INTER_AREA by an integer factor is the exact block mean (not one sampled pixel)
    small = cv2.resize(src, (nx, ny), interpolation=cv2.INTER_AREA)
    big = cv2.resize(
        small, (pw, ph), dst=scratch.get("effect", (ph, pw, 3)),
        interpolation=cv2.INTER_NEAREST,
    )
    return big[:h, :w]


def box_blur(roi: np.ndarray, kernel: int, scratch: _Scratch | None = None) -> np.ndarray:
    """Two passes of a ``kernel`` x ``kernel`` box blur of (h, w, 3) uint8 ``roi``.

    Two box passes make a triangle kernel (sigma ~0.4 kernel), smooth and strong; the cost
    does not depend on the kernel size. Returns a new array (scratch view when given).
    """
    scratch = scratch or _Scratch()
    once = cv2.blur(roi, (kernel, kernel), dst=scratch.get("blur1", roi.shape),
                    borderType=cv2.BORDER_REPLICATE)
    return cv2.blur(once, (kernel, kernel), dst=scratch.get("effect", roi.shape),
                    borderType=cv2.BORDER_REPLICATE)


def _draw_shape(
    canvas: np.ndarray, m: np.ndarray, origin: tuple[int, int], shape: str, grow: float,
    value: float | tuple[int, int, int],
) -> None:
    """Fill mask box ``m`` (frame xyxy) grown by ``grow`` px, as ``shape``, on ``canvas``.

    ``canvas`` is the region of the frame starting at ``origin`` (x, y); the shape is
    clipped to it. Sub-pixel accurate for ellipses; a box covers every pixel it touches.
    """
    h, w = canvas.shape[:2]
    ox, oy = origin
    x1, y1 = m[0] - grow - ox, m[1] - grow - oy
    x2, y2 = m[2] + grow - ox, m[3] + grow - oy
    if shape == "ellipse":
        center = (round((x1 + x2) / 2 * _ONE), round((y1 + y2) / 2 * _ONE))
        axes = (max(1, round((x2 - x1) / 2 * _ONE)), max(1, round((y2 - y1) / 2 * _ONE)))
        cv2.ellipse(canvas, center, axes, 0, 0, 360, value, -1, cv2.LINE_8, _SHIFT)
        return
    cx0, cy0 = max(0, math.floor(x1)), max(0, math.floor(y1))
    cx1, cy1 = min(w, math.ceil(x2)), min(h, math.ceil(y2))
    if cx0 < cx1 and cy0 < cy1:
        cv2.rectangle(canvas, (cx0, cy0), (cx1 - 1, cy1 - 1), value, -1)


def _shape_alpha(
    size: tuple[int, int], m: np.ndarray, origin: tuple[int, int], shape: str, band: float,
    scratch: _Scratch,
) -> np.ndarray | None:
    """Coverage of a ROI: None = all of it, uint8 0/1 (h, w) = hard, float32 (h, w) = soft."""
    if shape == "box" and band <= 0:
        return None
    hard = scratch.get("hard", size, np.uint8)
    hard.fill(0)
    _draw_shape(hard, m, origin, shape, 0.0, 1)
    if band <= 0:
        return hard
    canvas = scratch.get("canvas", size, np.float32)
    canvas.fill(0.0)
    _draw_shape(canvas, m, origin, shape, band / 2, 1.0)
    # a box filter as wide as the band turns the edge at +band/2 into a ramp over
    # [0, band] outside the shape; replicate keeps shapes cut by the frame edge whole
    k = max(3, int(round(band)) | 1)
    soft = cv2.blur(canvas, (k, k), dst=scratch.get("soft", size, np.float32),
                    borderType=cv2.BORDER_REPLICATE)
    np.maximum(soft, hard, out=soft)  # the shape itself is always fully covered
    return soft


class Masker:
    """Hides faces: ``apply`` paints every non-exempt track, ``obscure_frame`` the whole frame.

    Images are (H, W, 3) uint8 BGR and are modified in place. Settings can change between
    frames with ``apply_settings``; a mask image is loaded there (or here), never per frame.
    One masker serves one thread at a time (it reuses work buffers between calls).
    """

    def __init__(self, settings: MaskSettings | None = None) -> None:
        settings = settings or MaskSettings()
        self._config: tuple[MaskSettings, MaskImage | FaceReplacer | None] = (
            settings, self._load(settings))
        self._scratch = _Scratch()

    @staticmethod
    def _load(settings: MaskSettings) -> MaskImage | FaceReplacer | None:
        from backend.replace import disclosure

        disclosure.note_replacing(settings.type == "replace")
        if settings.type == "replace":
            # the model loads once per file (cached); a bad one is refused with one line
            return FaceReplacer(settings)
        # only the image type needs the picture; a bad path is reported when it is chosen
        return load_mask_image(settings.image_path) if settings.type == "image" else None

    @property
    def replace_counts(self) -> tuple[int, int]:
        """(faces replaced, faces masked instead) by this masker's current replacer."""
        rep = self._config[1]
        return (rep.replaced, rep.fell_back) if isinstance(rep, FaceReplacer) else (0, 0)

    @property
    def settings(self) -> MaskSettings:
        """The settings in use."""
        return self._config[0]

    def apply_settings(self, settings: MaskSettings) -> None:
        """Use new settings from the next frame on.

        Raises MaskImageError when the type is image and its picture cannot be loaded, or
        ReplaceError when the type is replace and its model or photo is refused; the
        previous settings then stay in use.
        """
        self._config = (settings, self._load(settings))

    # -- per frame ----------------------------------------------------------------------
    def apply(self, image: np.ndarray, tracks: Sequence[Track]) -> np.ndarray:
        """Mask every non-exempt track on ``image`` (H, W, 3) uint8 BGR in place; return it.

        A track whose box is not finite cannot be located, so the whole frame is obscured
        (fail closed) instead of guessing. Type replace: each face whose replacement fails
        gets the irreversible ``fail_closed`` style (pixelate or solid) instead.
        """
        _check_image(image)
        settings, picture = self._config
        if isinstance(picture, FaceReplacer):
            return self._apply_replace(image, tracks, settings, picture)
        for track in tracks:
            if track.exempt:
                continue
            box = np.asarray(track.box, np.float64).reshape(4)
            if not np.isfinite(box).all():
                self._obscure(image, settings)
                return image
            self._paint(image, complete_at_edges(box, image.shape[1], image.shape[0]),
                        settings, picture)
        return image

    def obscure_frame(self, image: np.ndarray) -> np.ndarray:
        """Make the whole (H, W, 3) uint8 BGR ``image`` unrecognisable in place; return it.

        Style from ``settings.fail_closed``: pixelate = a mosaic of 16 block means across
        the long side; blur = the same 16 samples smoothly interpolated; solid = ``color``.
        """
        _check_image(image)
        self._obscure(image, self._config[0])
        return image

    # -- internals ----------------------------------------------------------------------
    def _apply_replace(
        self, image: np.ndarray, tracks: Sequence[Track], settings: MaskSettings,
        replacer: FaceReplacer,
    ) -> np.ndarray:
        """Replace every non-exempt face; mask the ones that could not be replaced."""
        shown = [t for t in tracks if not t.exempt]
        boxes = [np.asarray(t.box, np.float64).reshape(4) for t in shown]
        if not all(np.isfinite(b).all() for b in boxes):
            self._obscure(image, settings)
            return image
        # blur can be undone in part: a face that could not be replaced is hidden for good
        style = "solid" if settings.fail_closed == "solid" else "pixelate"
        fallback = settings.model_copy(update={"type": style})
        h, w = image.shape[:2]
        # boxes with no fresh landmarks (held over) cannot be replaced: they are masked
        # first, so a face replaced in this frame is pasted over a held box that reaches it
        fresh = [not t.held_over and t.landmarks is not None for t in shown]
        source = None if all(fresh) else image.copy()
        for ok, box in zip(fresh, boxes, strict=True):
            if not ok:
                self._paint(image, complete_at_edges(box, w, h), fallback, None)
        done = replacer.replace(image, shown, source)
        for ok, was_fresh, box in zip(done, fresh, boxes, strict=True):
            if not ok and was_fresh:
                self._paint(image, complete_at_edges(box, w, h), fallback, None)
        replacer.draw_label(image)  # last, so no mask paints over it
        return image

    @staticmethod
    def _obscure(image: np.ndarray, settings: MaskSettings) -> None:
        h, w = image.shape[:2]
        if h == 0 or w == 0:
            return
        if settings.fail_closed == "solid":
            _fill(image, settings.color)
            return
        long_side = max(w, h)
        nx = max(1, min(w, round(FAIL_CLOSED_BLOCKS * w / long_side)))
        ny = max(1, min(h, round(FAIL_CLOSED_BLOCKS * h / long_side)))
        small = cv2.resize(image, (nx, ny), interpolation=cv2.INTER_AREA)
        interp = cv2.INTER_NEAREST if settings.fail_closed == "pixelate" else cv2.INTER_LINEAR
        image[...] = cv2.resize(small, (w, h), interpolation=interp)

    def _paint(
        self, image: np.ndarray, box: np.ndarray, settings: MaskSettings,
        picture: MaskImage | None,
    ) -> None:
        fw, fh = box[2] - box[0], box[3] - box[1]
        if fw <= 0 or fh <= 0:
            return
        m = mask_box(box, settings.scale)
        band = settings.feather * min(m[2] - m[0], m[3] - m[1])
        # round outward: a fractional edge pixel is masked, never left out
        ex0, ey0 = math.floor(m[0] - band), math.floor(m[1] - band)
        ex1, ey1 = math.ceil(m[2] + band), math.ceil(m[3] + band)
        block = 0
        if settings.type == "pixelate":
            block = max(2, math.ceil(max(fw, fh) / settings.pixel_blocks))
            # cells on a grid fixed to the frame: a still face gives a still mosaic, and
            # shifting cells cannot be combined across frames to recover detail
            ex0, ey0 = ex0 // block * block, ey0 // block * block
            ex1, ey1 = -(-ex1 // block) * block, -(-ey1 // block) * block
        h, w = image.shape[:2]
        x0, y0, x1, y1 = max(ex0, 0), max(ey0, 0), min(ex1, w), min(ey1, h)
        if x0 >= x1 or y0 >= y1:
            return
        roi = image[y0:y1, x0:x1]
        if _cv_writable(roi):
            self._paint_roi(roi, m, (x0, y0), band, block, settings, picture)
        else:  # an exotic memory layout: work on a packed copy, then write it back
            work = np.ascontiguousarray(roi)
            self._paint_roi(work, m, (x0, y0), band, block, settings, picture)
            roi[...] = work

    def _paint_roi(
        self, roi: np.ndarray, m: np.ndarray, origin: tuple[int, int], band: float,
        block: int, settings: MaskSettings, picture: MaskImage | None,
    ) -> None:
        """Paint one face's mask on ``roi``, the frame region that starts at ``origin``."""
        shape = settings.shape
        kind = settings.type
        scratch = self._scratch
        if kind == "solid" and band <= 0:
            # hard solid: cv2 draws the colour straight into the frame
            _draw_shape(roi, m, origin, shape, 0.0, settings.color)
            return
        alpha = _shape_alpha(roi.shape[:2], m, origin, shape, band, scratch)
        if kind == "image":
            if picture is not None:
                self._paint_picture(roi, m, origin, alpha, picture)
            return
        if kind == "solid":
            effect = scratch.get("effect", roi.shape)
            _fill(effect, settings.color)
        elif kind == "pixelate":
            effect = pixelate(roi, block, scratch)
        else:  # blur
            face = max(m[2] - m[0], m[3] - m[1]) / settings.scale
            effect = box_blur(roi, _odd(settings.blur_strength * face), scratch)
        if alpha is None:
            roi[...] = effect
        elif alpha.dtype == np.uint8:
            cv2.copyTo(effect, alpha, roi)
        else:
            _blend(roi, effect, alpha, scratch)

    def _paint_picture(
        self, roi: np.ndarray, m: np.ndarray, origin: tuple[int, int],
        alpha: np.ndarray | None, picture: MaskImage,
    ) -> None:
        """Alpha-blend the picture, aspect kept, fitted into mask box ``m`` and centred."""
        iw, ih = picture.size
        mw, mh = m[2] - m[0], m[3] - m[1]
        s = min(mw / iw, mh / ih)
        tw, th = max(1, round(iw * s)), max(1, round(ih * s))
        ox, oy = origin
        tx0 = round((m[0] + m[2]) / 2 - tw / 2) - ox
        ty0 = round((m[1] + m[3]) / 2 - th / 2) - oy
        h, w = roi.shape[:2]
        sx0, sy0 = max(tx0, 0), max(ty0, 0)
        sx1, sy1 = min(tx0 + tw, w), min(ty0 + th, h)
        if sx0 >= sx1 or sy0 >= sy1:
            return
        bgr, a = picture.fitted(tw, th)
        pick = (slice(sy0 - ty0, sy1 - ty0), slice(sx0 - tx0, sx1 - tx0))
        a = a[pick]
        if alpha is not None:
            # the shape (uint8 0/1 or soft float32) clips the picture's own alpha
            a = np.multiply(a, alpha[sy0:sy1, sx0:sx1], dtype=np.float32,
                            out=self._scratch.get("alpha", a.shape, np.float32))
        _blend(roi[sy0:sy1, sx0:sx1], bgr[pick], np.ascontiguousarray(a), self._scratch)
