"""Replacement sources: DFM models, inswapper models (+ ArcFace), and face photos.

Each loads into a ``FaceSource`` whose ``run(crops)`` turns aligned face crops into new
faces (and, for DFM, masks). Loading checks the file's signature and runs it once on a
test crop; any problem is a ``ReplaceError``: one line naming the file, what was expected
and what was found (exit 2). Nothing is downloaded; the only built-in face is ``demo``,
the face in scikit-image's ``camera`` photo.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from backend.replace.align import ARCFACE_112, ARCFACE_128, align, template
from config.errors import UsageError

log = logging.getLogger("ptim.replace")

PHOTO_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
PHOTO_CROP = 256
"""Side of the aligned crop a face photo is resampled into."""

DFM_INPUT, DFM_MORPH = "in_face:0", "morph_value:0"
DFM_OUTPUTS = ("out_face_mask:0", "out_celeb_face:0", "out_celeb_face_mask:0")
DFM_EXPECTED = (f"a DFM model (input {DFM_INPUT} [N,H,W,3], optional {DFM_MORPH} [1]; outputs "
                + ", ".join(DFM_OUTPUTS) + ")")
SWAP_EXPECTED = "an inswapper model (inputs target [1,3,128,128], source [1,512]; output output)"
ARC_EXPECTED = "an ArcFace recognition model (one input [N,3,112,112], one output [N,512])"
CONSTANT_STD = 1e-4
"""A test-run face whose pixels vary less than this (0..1 scale) is a constant image."""


class ReplaceError(UsageError):
    """An unusable replacement model, photo or setting (exit 2); the message is one line."""


def _short(exc: BaseException | str, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _sig(items: list[Any]) -> str:
    """ONNX inputs/outputs as 'name [d0,d1,..]' (symbolic dims as N)."""
    def dim(d: Any) -> str:
        return str(d) if isinstance(d, int) else "N"
    return ", ".join(f"{i.name} [{','.join(dim(d) for d in i.shape)}]" for i in items) or "none"


def _ort() -> Any:
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # errors reach the user as one line, not ORT's log
    return ort


def _session(data: bytes, path: Path, expected: str, threads: int) -> Any:
    """An onnxruntime session on CUDA where it really loads, else CPU."""
    from backend.detect.session import model_session

    _ort()  # onnxruntime's own log stays quiet: errors reach the user as one line
    try:
        sess, note = model_session(data, threads)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises many types; all mean "unusable"
        raise ReplaceError(f"{path}: expected {expected}, found a file onnxruntime cannot "
                           f"load (truncated or damaged? {_short(exc)})") from None
    if note:
        log.info("%s: %s", path.name, note)
    return sess


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ReplaceError(f"{path}: replacement file not found") from None
    except OSError as exc:
        raise ReplaceError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _batched(dim: Any) -> bool:
    # a symbolic or -1 batch dim takes several faces per call; a fixed 1 only one
    return not isinstance(dim, int) or dim <= 0 or dim > 1


def test_crop(size: int) -> np.ndarray:
    """A deterministic (1, S, S, 3) float32 BGR 0..1 test image: gradients plus noise."""
    rng = np.random.default_rng(1234)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    img = np.stack([x, y, 1.0 - 0.5 * (x + y)], axis=-1)
    img = 0.8 * img + 0.2 * rng.random((size, size, 3), dtype=np.float32)
    return img[None].astype(np.float32)


def _check_output(path: Path, face: np.ndarray, what: str) -> None:
    """Refuse NaN/inf or spatially constant test-run output (the peers' black squares)."""
    if not np.isfinite(face).all():
        raise ReplaceError(f"{path}: expected finite {what} from a test run, found NaN or inf "
                           "(a broken model, e.g. a bad fp16 export)")
    if float(face.std()) < CONSTANT_STD:
        raise ReplaceError(f"{path}: expected a varying {what} from a test run, found a constant "
                           f"image (every value {float(face.mean()):.3f}: a 'black square' model)")


@dataclass
class FaceSource:
    """What the merge needs from a replacement source.

    ``size``: crop side in px. ``points(name, coverage)``: the (5, 2, 0..1) template the
    crops are aligned to. ``mask_from_model``: True when ``run`` returns masks (DFM).
    ``color_transfer``: the ``auto`` colour transfer. ``batch``: faces per call (0 = any).
    """

    path: Path
    kind: str  # "dfm", "inswapper" or "photo"
    size: int
    mask_from_model: bool = False
    color_transfer: str = "none"
    batch: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def points(self, name: str, coverage: float) -> np.ndarray:
        """The template this source aligns to (``auto``: the format's own)."""
        return template("whole_face" if name == "auto" else name, coverage)

    def run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, S, S, 3) float32 BGR 0..1 crops -> (faces like them, masks (N, S, S) or None)."""
        raise NotImplementedError


class DfmSource(FaceSource):
    """A DeepFaceLab/DeepFaceLive live model: in_face (NHWC BGR 0..1) -> face + masks."""

    def __init__(self, path: Path, session: Any, morph: float) -> None:
        inp = session.get_inputs()
        size = int(inp[0].shape[1])
        super().__init__(path, "dfm", size, mask_from_model=True,
                         batch=0 if _batched(inp[0].shape[0]) else 1)
        self.session = session
        self.has_morph = any(i.name == DFM_MORPH for i in inp)
        self.morph = np.array([morph], np.float32)

    def run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Run the model; masks are out_face_mask * out_celeb_face_mask."""
        feed: dict[str, np.ndarray] = {DFM_INPUT: np.ascontiguousarray(crops, np.float32)}
        if self.has_morph:
            feed[DFM_MORPH] = self.morph
        with self.lock:
            outs = self.session.run(list(DFM_OUTPUTS), feed)
        n, s = crops.shape[0], self.size
        face_mask, face, celeb_mask = (np.asarray(o, np.float32) for o in outs)
        face = face.reshape(n, s, s, 3)
        masks = face_mask.reshape(n, s, s) * celeb_mask.reshape(n, s, s)
        return face, masks


class ArcFace:
    """An ArcFace recognition model: aligned 112 px RGB face -> L2-normalised 512-d vector."""

    def __init__(self, path: Path, threads: int) -> None:
        self.path = path
        self.session = _session(_read(path), path, ARC_EXPECTED, threads)
        ins, outs = self.session.get_inputs(), self.session.get_outputs()
        shp = list(ins[0].shape) if len(ins) == 1 else []
        ok = (len(ins) == 1 and len(outs) == 1 and len(shp) == 4 and shp[1:] == [3, 112, 112]
              and len(outs[0].shape) == 2 and outs[0].shape[1] == 512)
        if not ok:
            raise ReplaceError(f"{path}: expected {ARC_EXPECTED}, found inputs {_sig(ins)}; "
                               f"outputs {_sig(outs)}")
        self.input = ins[0].name

    def embed(self, crop_bgr: np.ndarray) -> np.ndarray:
        """(112, 112, 3) uint8 BGR aligned face -> (512,) float32, unit length."""
        rgb = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2RGB).astype(np.float32)
        x = ((rgb - 127.5) / 127.5).transpose(2, 0, 1)[None]
        emb = np.asarray(self.session.run(None, {self.input: x})[0], np.float32).reshape(-1)
        norm = float(np.linalg.norm(emb))
        if not np.isfinite(emb).all() or norm < 1e-6:
            raise ReplaceError(f"{self.path}: expected a finite, non-zero embedding, found "
                               f"{'NaN' if not np.isfinite(emb).all() else 'all zeros'}")
        return emb / norm


class InswapperSource(FaceSource):
    """An inswapper-style model: target (NCHW RGB 0..1) + source latent -> output face."""

    def __init__(self, path: Path, session: Any, latent: np.ndarray) -> None:
        ins = {i.name: i for i in session.get_inputs()}
        size = int(ins["target"].shape[2])
        both = _batched(ins["target"].shape[0]) and _batched(ins["source"].shape[0])
        super().__init__(path, "inswapper", size, batch=0 if both else 1)
        self.session = session
        self.latent = latent.reshape(1, -1).astype(np.float32)
        self.output = session.get_outputs()[0].name

    def points(self, name: str, coverage: float) -> np.ndarray:
        """Always the ArcFace template: the model was trained on it."""
        return ARCFACE_128.copy()

    def run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Run the model; no masks (the merge uses a face ellipse)."""
        n = crops.shape[0]
        target = np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2), np.float32)
        source = np.repeat(self.latent, n, axis=0)
        with self.lock:
            out = np.asarray(self.session.run([self.output],
                                              {"target": target, "source": source})[0])
        return np.ascontiguousarray(out.transpose(0, 2, 3, 1)[..., ::-1], np.float32), None


class PhotoSource(FaceSource):
    """The model-free mode: one photo's face, aligned to each tracked face."""

    def __init__(self, path: Path, image: np.ndarray, landmarks: np.ndarray) -> None:
        super().__init__(path, "photo", PHOTO_CROP, color_transfer="rct")
        self.image = image
        self.landmarks = landmarks
        self._crops: dict[bytes, np.ndarray] = {}

    def points(self, name: str, coverage: float) -> np.ndarray:
        """The template (``auto``: full face, the tightest: the photo's face fills it)."""
        return template("full_face" if name == "auto" else name, coverage)

    def face_for(self, points: np.ndarray) -> np.ndarray:
        """The photo's face aligned to ``points``, (S, S, 3) float32 BGR 0..1 (cached)."""
        key = np.asarray(points, np.float64).tobytes()
        face = self._crops.get(key)
        if face is None:
            al = align(self.landmarks, points, self.size)
            if al is None:
                raise ReplaceError(f"{self.path}: expected a frontal face, found one turned too "
                                   "far for its 5 landmarks to fit")
            from backend.replace.merge import crop

            face = crop(self.image, al.matrix, self.size).astype(np.float32) / 255.0
            self._crops[key] = face
        return face

    def run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Not used: the engine takes ``face_for`` directly (the face does not change)."""
        raise NotImplementedError


def demo_photo() -> np.ndarray:
    """scikit-image's public-domain ``camera`` photo as (512, 512, 3) uint8 BGR."""
    from skimage import data

    return cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2BGR)


def find_face(image: np.ndarray, label: str) -> np.ndarray:
    """The 5 landmarks (5, 2) of the most prominent face in a BGR photo (our detector).

    Raises ReplaceError naming ``label`` when no face scores 0.5 or more.
    """
    from backend.detect import CenterFaceDetector

    h, w = image.shape[:2]
    det = CenterFaceDetector(threshold=0.5, long_side=int(min(max(h, w), 1280)),
                             provider="cpu", precision="fp32")
    dets = det.detect(np.ascontiguousarray(image))
    if not len(dets):
        raise ReplaceError(f"{label}: expected a photo with a face, found none that our "
                           "detector scores 0.5 or more")
    area = np.prod(dets.xyxy[:, 2:] - dets.xyxy[:, :2], axis=1)
    best = int(np.argmax(dets.confidence * np.sqrt(np.maximum(area, 0))))
    log.debug("%s: face at %s, score %.2f", label, np.round(dets.xyxy[best], 1),
              dets.confidence[best])
    return dets.landmarks[best].astype(np.float64)


def read_photo(path: Path) -> np.ndarray:
    """A photo file as (H, W, 3) uint8 BGR; ReplaceError when it is not an image."""
    raw = np.frombuffer(_read(path), np.uint8)
    img = cv2.imdecode(raw, cv2.IMREAD_COLOR) if raw.size else None
    if img is None:
        raise ReplaceError(f"{path}: expected a .jpg/.png face photo, found a file that cannot "
                           "be decoded as an image")
    return img


def _load_photo(spec: str) -> PhotoSource:
    if spec == "demo":
        img = demo_photo()
        return PhotoSource(Path("demo"), img, find_face(img, "demo (scikit-image camera)"))
    path = Path(spec).expanduser()
    img = read_photo(path)
    return PhotoSource(path, img, find_face(img, str(path)))


def _load_dfm(path: Path, data: bytes, session: Any, morph: float) -> DfmSource:
    ins, outs = session.get_inputs(), session.get_outputs()
    first = ins[0]
    shp = list(first.shape)
    names_in = [i.name for i in ins]
    ok_in = (first.name == DFM_INPUT and len(shp) == 4 and shp[3] == 3
             and isinstance(shp[1], int) and shp[1] == shp[2] and shp[1] >= 16
             and set(names_in[1:]) <= {DFM_MORPH} and len(names_in) <= 2)
    ok_out = sorted(o.name for o in outs) == sorted(DFM_OUTPUTS)
    if not (ok_in and ok_out):
        raise ReplaceError(f"{path}: expected {DFM_EXPECTED}, found inputs {_sig(ins)}; "
                           f"outputs {_sig(outs)}")
    src = DfmSource(path, session, morph)
    try:
        face, masks = src.run(test_crop(src.size))
    except Exception as exc:  # noqa: BLE001 - any failure of the test run refuses the model
        raise ReplaceError(f"{path}: expected {DFM_EXPECTED} that runs, found a test run "
                           f"failing ({_short(exc)})") from None
    _check_output(path, face, "face (out_celeb_face:0)")
    if masks is not None and not np.isfinite(masks).all():
        raise ReplaceError(f"{path}: expected finite masks from a test run, found NaN or inf")
    return src


def _emap(path: Path, data: bytes) -> np.ndarray:
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # noqa: BLE001 - protobuf errors vary
        raise ReplaceError(f"{path}: expected {SWAP_EXPECTED}, found a file that cannot be "
                           f"parsed ({_short(exc)})") from None
    inits = model.graph.initializer
    emap = numpy_helper.to_array(inits[-1]) if len(inits) else np.zeros(0)
    if emap.shape != (512, 512):
        raise ReplaceError(f"{path}: expected {SWAP_EXPECTED} whose last initializer is the "
                           f"512x512 emap, found {tuple(emap.shape) or 'no initializer'}")
    return emap.astype(np.float32)


def _load_inswapper(path: Path, data: bytes, session: Any, source_face: str,
                    recognition: str, threads: int) -> InswapperSource:
    ins, outs = session.get_inputs(), session.get_outputs()
    by = {i.name: list(i.shape) for i in ins}
    t, s = by.get("target", []), by.get("source", [])
    ok = (len(ins) == 2 and len(t) == 4 and t[1] == 3 and isinstance(t[2], int)
          and t[2] == t[3] and len(s) == 2 and s[1] == 512 and len(outs) == 1
          and len(outs[0].shape) == 4 and outs[0].shape[1] == 3)
    if not ok:
        raise ReplaceError(f"{path}: expected {SWAP_EXPECTED}, found inputs {_sig(ins)}; "
                           f"outputs {_sig(outs)}")
    missing = [f for f, v in (("--source-face PHOTO (mask.source_face)", source_face),
                              ("--recognition-model PATH (mask.recognition_model)", recognition))
               if not v.strip()]
    if missing:
        raise ReplaceError(f"{path}: an inswapper model needs {' and '.join(missing)}, found "
                           "none given")
    emap = _emap(path, data)
    arc = ArcFace(Path(recognition).expanduser(), threads)
    photo_path = Path(source_face).expanduser()
    photo = demo_photo() if source_face == "demo" else read_photo(photo_path)
    lm = find_face(photo, str(photo_path))
    al = align(lm, ARCFACE_112, 112)
    if al is None:
        raise ReplaceError(f"{photo_path}: expected a frontal face, found one turned too far "
                           "for its 5 landmarks to fit")
    from backend.replace.merge import crop

    emb = arc.embed(crop(photo, al.matrix, 112))  # once per photo: the identity
    latent = emb @ emap
    latent /= max(float(np.linalg.norm(latent)), 1e-9)
    src = InswapperSource(path, session, latent)
    try:
        face, _ = src.run(test_crop(src.size))
    except Exception as exc:  # noqa: BLE001 - any failure of the test run refuses the model
        raise ReplaceError(f"{path}: expected {SWAP_EXPECTED} that runs, found a test run "
                           f"failing ({_short(exc)})") from None
    if face.shape[1:3] != (src.size, src.size):
        raise ReplaceError(f"{path}: expected an output of {src.size}x{src.size}, found "
                           f"{face.shape[1]}x{face.shape[2]}")
    _check_output(path, face, "face (output)")
    return src


_cache: dict[tuple, FaceSource] = {}
_cache_lock = threading.Lock()


def _stamp(spec: str) -> tuple:
    if not spec or spec == "demo":
        return (spec,)
    p = Path(spec).expanduser()
    try:
        st = p.stat()
        return (str(p.resolve()), st.st_mtime_ns, st.st_size)
    except OSError:
        return (str(p),)


def load_source(replace_face: str, *, morph: float = 0.75, source_face: str = "",
                recognition_model: str = "", threads: int | None = None) -> FaceSource:
    """Load (once per file version) and check the replacement source ``replace_face``.

    ``replace_face``: a .dfm or inswapper .onnx model, a .jpg/.png photo, or ``demo``.
    Raises ReplaceError (one line: the file, what was expected, what was found).
    """
    spec = replace_face.strip()
    if not spec:
        raise ReplaceError("mask.replace_face is empty: expected a DFM model, an inswapper "
                           "model, a face photo or demo (--replace-face)")
    threads = threads or max(1, min(4, os.cpu_count() or 1))
    key = (_stamp(spec), float(morph), _stamp(source_face.strip()),
           _stamp(recognition_model.strip()))
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            return hit
        src = _load(spec, morph, source_face.strip(), recognition_model.strip(), threads)
        _cache.clear()  # one source in use at a time: do not keep old sessions alive
        _cache[key] = src
        return src


def _load(spec: str, morph: float, source_face: str, recognition: str,
          threads: int) -> FaceSource:
    path = Path(spec).expanduser()
    if spec == "demo" or path.suffix.lower() in PHOTO_EXTS:
        return _load_photo(spec)
    if path.is_dir():
        raise ReplaceError(f"{path}: expected a model or photo file, found a folder")
    data = _read(path)
    what = DFM_EXPECTED if path.suffix.lower() == ".dfm" else \
        f"{DFM_EXPECTED}, {SWAP_EXPECTED} or a .jpg/.png face photo"
    if not data:
        raise ReplaceError(f"{path}: expected {what}, found an empty file")
    session = _session(data, path, what, threads)
    names = {i.name for i in session.get_inputs()}
    if DFM_INPUT in names or path.suffix.lower() == ".dfm":
        return _load_dfm(path, data, session, morph)
    if {"target", "source"} <= names:
        return _load_inswapper(path, data, session, source_face, recognition, threads)
    raise ReplaceError(f"{path}: expected {what}, found inputs {_sig(session.get_inputs())}; "
                       f"outputs {_sig(session.get_outputs())}")
