"""Merging a replacement face back into the frame: mask shaping, colour transfer, paste.

Crop-space images are (S, S, 3) float32 BGR in 0..1 and masks (S, S) float32 in 0..1.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

REFERENCE_CROP = 224
"""Crop side the pixel settings (erode, blur, border) are given for; scaled to others."""

BORDER_PX = 12.0
"""Band inside the crop border where the mask is zero (at ``REFERENCE_CROP``), so the
square crop edge never shows."""


def shape_mask(mask: np.ndarray, erode_px: float, blur_px: float) -> np.ndarray:
    """Erode ``mask`` (S, S), zero a band inside the crop border, then blur it.

    Pixel amounts are for a ``REFERENCE_CROP`` crop and scale with S. Returns a new
    (S, S) float32 array in 0..1.
    """
    size = mask.shape[0]
    k = size / REFERENCE_CROP
    m = np.clip(np.asarray(mask, np.float32), 0.0, 1.0)
    it = int(round(erode_px * k))
    if it > 0:
        m = cv2.erode(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)), iterations=it)
    band = max(1, int(round(BORDER_PX * k)))
    m[:band] = 0.0
    m[-band:] = 0.0
    m[:, :band] = 0.0
    m[:, -band:] = 0.0
    sigma = blur_px * k
    if sigma > 0:
        m = cv2.GaussianBlur(m, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_CONSTANT)
    return m


def face_ellipse(points: np.ndarray, size: int) -> np.ndarray:
    """A filled face-shaped ellipse (S, S) float32 from the template ``points`` (5, 2, 0..1).

    Centred between the eyes and the mouth, as wide as twice the eye distance and reaching
    from the brows to the chin, so it covers the features the identity is in.
    """
    p = np.asarray(points, np.float64) * size
    eyes, mouth = p[:2].mean(0), p[3:].mean(0)
    eye_dist = float(np.linalg.norm(p[1] - p[0]))
    down = float(np.linalg.norm(mouth - eyes))
    centre = eyes + 0.55 * (mouth - eyes)
    axes = (1.0 * eye_dist, 1.55 * down)
    angle = math.degrees(math.atan2(p[1, 1] - p[0, 1], p[1, 0] - p[0, 0]))
    m = np.zeros((size, size), np.float32)
    shift = 4
    c = (int(round(centre[0] * 16)), int(round(centre[1] * 16)))
    a = (max(1, int(round(axes[0] * 16))), max(1, int(round(axes[1] * 16))))
    cv2.ellipse(m, c, a, angle, 0, 360, 1.0, -1, cv2.LINE_AA, shift)
    return m


def core_coverage(mask: np.ndarray, points: np.ndarray) -> float:
    """Mean of ``mask`` over the box spanned by the eyes and mouth (template ``points``).

    The replacement counts as hiding the face only when this is high: a model whose mask
    misses the face would otherwise leave the real one visible.
    """
    size = mask.shape[0]
    p = np.asarray(points, np.float64) * size
    x0, y0 = np.floor(p.min(0)).astype(int)
    x1, y1 = np.ceil(p.max(0)).astype(int) + 1
    x0, y0 = max(x0, 0), max(y0, 0)
    region = mask[y0:min(y1, size), x0:min(x1, size)]
    return float(region.mean()) if region.size else 0.0


def rct(face: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Reinhard colour transfer of ``face`` towards ``ref`` in Lab, statistics inside the mask.

    Per channel ``(x - mean_face) * std_ref / std_face + mean_ref``, means and spreads
    weighted by ``mask`` (pixels outside it do not count); a flat channel keeps its spread.
    Both images (S, S, 3) float32 BGR 0..1; returns a new one, clipped to 0..1.
    """
    w = np.clip(mask, 0.0, 1.0).astype(np.float32)
    total = float(w.sum())
    if total < 1.0:
        return face.copy()
    lab_f = cv2.cvtColor(np.clip(face, 0, 1).astype(np.float32), cv2.COLOR_BGR2LAB)
    lab_r = cv2.cvtColor(np.clip(ref, 0, 1).astype(np.float32), cv2.COLOR_BGR2LAB)
    ww = w[..., None]
    mf = (lab_f * ww).sum((0, 1)) / total
    mr = (lab_r * ww).sum((0, 1)) / total
    sf = np.sqrt(((lab_f - mf) ** 2 * ww).sum((0, 1)) / total)
    sr = np.sqrt(((lab_r - mr) ** 2 * ww).sum((0, 1)) / total)
    gain = np.where(sf > 1e-3, sr / np.maximum(sf, 1e-3), 1.0)
    out = (lab_f - mf) * gain + mr
    out[..., 0] = np.clip(out[..., 0], 0.0, 100.0)
    out[..., 1:] = np.clip(out[..., 1:], -127.0, 127.0)
    return np.clip(cv2.cvtColor(out.astype(np.float32), cv2.COLOR_LAB2BGR), 0.0, 1.0)


def paste(
    image: np.ndarray, face: np.ndarray, mask: np.ndarray, inverse: np.ndarray,
    opacity: float = 1.0,
) -> tuple[int, int, np.ndarray] | None:
    """Warp ``face`` and ``mask`` back with ``inverse`` (crop -> frame) and blend in place.

    ``image`` (H, W, 3) uint8 BGR; only the bounding box of the warped crop is touched:
    ``out = frame * (1 - m) + face * m`` with ``m = mask * opacity``; the face is warped
    with replicated borders, the mask with zeros. Returns (x0, y0, alpha): the ROI's
    origin in the frame and the (h, w) float32 alpha used there; None when the crop lies
    wholly outside the frame (nothing painted).
    """
    size = face.shape[0]
    h, w = image.shape[:2]
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64)
    pts = corners @ inverse.T
    x0, y0 = np.floor(pts.min(0)).astype(int)
    x1, y1 = np.ceil(pts.max(0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1 + 1, w), min(y1 + 1, h)
    if x0 >= x1 or y0 >= y1:
        return None
    m = inverse.copy()
    m[:, 2] -= (x0, y0)  # into ROI coordinates
    dsize = (x1 - x0, y1 - y0)
    face_u8 = np.clip(face * 255.0 + 0.5, 0, 255).astype(np.uint8)
    warped = cv2.warpAffine(face_u8, m, dsize, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(np.ascontiguousarray(mask, np.float32), m, dsize,
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if opacity < 1.0:
        alpha *= float(opacity)
    np.clip(alpha, 0.0, 1.0, out=alpha)
    roi = image[y0:y1, x0:x1]
    inv = 1.0 - alpha
    out = cv2.blendLinear(warped, np.ascontiguousarray(roi), alpha, inv)
    roi[...] = out
    return x0, y0, alpha


def covered(box: np.ndarray, pasted: list[tuple[int, int, np.ndarray]]) -> float:
    """How much of frame box ``box`` (xyxy) the pasted faces' alphas cover, 0..1.

    The best single paste's mean alpha over the box (outside its ROI counts as 0).
    """
    x0, y0 = int(np.floor(box[0])), int(np.floor(box[1]))
    x1, y1 = int(np.ceil(box[2])), int(np.ceil(box[3]))
    area = max(x1 - x0, 0) * max(y1 - y0, 0)
    best = 0.0
    for ox, oy, alpha in pasted:
        h, w = alpha.shape
        ix0, iy0 = max(x0, ox), max(y0, oy)
        ix1, iy1 = min(x1, ox + w), min(y1, oy + h)
        if area and ix0 < ix1 and iy0 < iy1:
            best = max(best, float(alpha[iy0 - oy:iy1 - oy, ix0 - ox:ix1 - ox].sum()) / area)
    return best


def crop(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The (S, S, 3) uint8 crop of ``image`` under ``matrix`` (frame -> crop), bilinear,
    replicated borders (a face at the frame edge is continued, not cut by black)."""
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
