"""Model loading and provider choice, on real ONNX files (CenterFace and tiny graphs)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from backend.detect import ModelError, SessionInfo, create_session, default_model_path
from backend.detect.session import nvidia_driver_present, prepare_model
from backend.errors import STATS, UsageError

CUDA_LISTED = "CUDAExecutionProvider" in ort.get_available_providers()


def _tiny_model(
    path: Path,
    inputs: list[tuple[str, int, list]] | None = None,
    outputs: list[list] | None = None,
) -> Path:
    """Write a valid ONNX graph whose outputs all come from the first input (Identity)."""
    inputs = inputs if inputs is not None else [("image", TensorProto.FLOAT, ["N", 3, "H", "W"])]
    outputs = (
        outputs
        if outputs is not None
        else [["N", 1, "H", "W"], ["N", 2, "H", "W"], ["N", 2, "H", "W"], ["N", 10, "H", "W"]]
    )
    in_infos = [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs]
    elem = inputs[0][1]
    out_infos = [helper.make_tensor_value_info(f"out{i}", elem, s) for i, s in enumerate(outputs)]
    nodes = [helper.make_node("Identity", [inputs[0][0]], [f"out{i}"]) for i in range(len(outputs))]
    graph = helper.make_graph(nodes, "tiny", in_infos, out_infos)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _assert_one_line_naming(err: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg
    for word in words:
        assert word in msg, msg


# -- files that are not usable models ----------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.onnx"
    with pytest.raises(ModelError) as err:
        create_session(path, "cpu")
    _assert_one_line_naming(err, path, "not found")


def test_directory_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as err:
        create_session(tmp_path, "cpu")
    _assert_one_line_naming(err, tmp_path, "not a file")


def test_text_file_is_not_onnx(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_text("this is a face detector, honest\n")
    with pytest.raises(ModelError) as err:
        create_session(path, "cpu")
    _assert_one_line_naming(err, path, "not an ONNX file")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"")
    with pytest.raises(ModelError) as err:
        create_session(path, "cpu")
    _assert_one_line_naming(err, path, "empty")


@pytest.mark.parametrize("keep", [1000, 3_000_000])
def test_truncated_real_model(tmp_path: Path, keep: int) -> None:
    path = tmp_path / "centerface.onnx"
    path.write_bytes(default_model_path().read_bytes()[:keep])
    with pytest.raises(ModelError) as err:
        create_session(path, "cpu")
    _assert_one_line_naming(err, path, "truncated ONNX file")


def test_model_error_is_a_usage_error() -> None:
    assert issubclass(ModelError, UsageError)
    assert ModelError("x").exit_code == 2


F, I64 = TensorProto.FLOAT, TensorProto.INT64
FOUR_OUT = [["N", 1, "H", "W"], ["N", 2, "H", "W"], ["N", 2, "H", "W"], ["N", 10, "H", "W"]]


@pytest.mark.parametrize(
    "inputs, outputs, expected",
    [
        ([("x", F, ["N", 3])], FOUR_OUT, "rank 4"),
        ([("x", F, ["N", 4, "H", "W"])], FOUR_OUT, "3 channels"),
        ([("x", I64, ["N", 3, "H", "W"])], FOUR_OUT, "float32"),
        ([("x", F, ["N", 3, "H", "W"]), ("y", F, ["N", 3, "H", "W"])], FOUR_OUT, "1 image input"),
        ([("x", F, ["N", 3, "H", "W"])], FOUR_OUT[:1], "4 outputs"),
        ([("x", F, ["N", 3, "H", "W"])], FOUR_OUT + FOUR_OUT[:1], "4 outputs"),
        (
            [("x", F, ["N", 3, "H", "W"])],
            [["N", 3, "H", "W"], *FOUR_OUT[1:]],
            "(heatmap) must have 1 channel,",
        ),
        ([("x", F, ["N", 3, "H", "W"])], [["N", 1, "H"], *FOUR_OUT[1:]], "rank 4"),
    ],
)
def test_graph_that_is_not_a_detector(
    tmp_path: Path, inputs: list, outputs: list, expected: str
) -> None:
    path = _tiny_model(tmp_path / "model.onnx", inputs, outputs)
    with pytest.raises(ModelError) as err:
        create_session(path, "cpu")
    _assert_one_line_naming(err, path, "not a CenterFace-compatible detector", expected)


def test_compatible_tiny_graph_loads(tmp_path: Path) -> None:
    info = create_session(_tiny_model(tmp_path / "model.onnx"), "cpu")
    out = info.session.run(None, {info.input_name: np.ones((1, 3, 8, 8), np.float32)})
    assert len(out) == 4


def test_invalid_graph_fails_checker(tmp_path: Path) -> None:
    path = _tiny_model(tmp_path / "model.onnx")
    model = onnx.load(str(path))
    model.graph.node[0].input[0] = "does_not_exist"
    onnx.save(model, str(path))
    with pytest.raises(ModelError) as err:
        create_session(path, "cpu")
    _assert_one_line_naming(err, path, "invalid ONNX model")


# -- the real CenterFace model -----------------------------------------------------------


def test_prepare_model_makes_centerface_dynamic() -> None:
    model = onnx.load_from_string(prepare_model(None))
    assert [i.name for i in model.graph.input] == ["input.1"]  # weights are not inputs
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 3, "H", "W"]
    for out, channels in zip(model.graph.output, (1, 2, 2, 10), strict=True):
        odims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
        assert odims == ["N", channels, "h", "w"]


@pytest.mark.parametrize("width, height", [(32, 32), (96, 64), (640, 352)])
def test_centerface_runs_at_any_multiple_of_32(width: int, height: int) -> None:
    info = create_session(None, "cpu")
    x = np.zeros((1, 3, height, width), np.float32)
    outs = info.session.run(None, {info.input_name: x})
    assert [o.shape for o in outs] == [(1, c, height // 4, width // 4) for c in (1, 2, 2, 10)]


def test_cpu_provider_and_thread_options() -> None:
    info = create_session(None, "cpu", threads=3)
    assert isinstance(info, SessionInfo)
    assert (info.provider, info.note) == ("cpu", "")
    assert info.session.get_providers() == ["CPUExecutionProvider"]
    opts = info.session.get_session_options()
    assert opts.intra_op_num_threads == 3
    assert opts.inter_op_num_threads == 1
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


@pytest.mark.parametrize("provider", ["auto", "cuda"])
def test_gpu_request_ends_where_the_session_really_runs(
    provider: str, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    before = STATS.counts().get("gpu.fallback", 0)
    with caplog.at_level(logging.WARNING, logger="ptim.detect"):
        info = create_session(None, provider)
    real = info.session.get_providers()
    if info.provider == "cuda":  # a machine with working CUDA
        assert "CUDAExecutionProvider" in real and info.note == ""
    else:
        assert real == ["CPUExecutionProvider"]
        if nvidia_driver_present() or provider == "cuda":
            assert info.note.endswith("using CPU") and "\n" not in info.note
            assert "CUDA" in info.note
            assert STATS.counts().get("gpu.fallback", 0) == before + 1
        else:  # no NVIDIA driver: CPU is the plan, not a fault
            assert info.note == ""
            assert STATS.counts().get("gpu.fallback", 0) == before
            assert not [r for r in caplog.records if "CUDA" in r.getMessage()]
    err = capfd.readouterr().err
    # onnxruntime's own multi-line red load errors must not reach the console
    assert "onnxruntime" not in err and "EP Error" not in err and "\x1b[" not in err


@pytest.fixture
def driver(monkeypatch: pytest.MonkeyPatch):
    """Set what the NVIDIA driver probe answers (the one part of the machine not here)."""
    from backend.detect import session

    def answer(present: bool) -> None:
        monkeypatch.setattr(session, "nvidia_driver_present", lambda: present)
        monkeypatch.setattr(session, "_noted", set())  # each case logs its first line

    return answer


def test_without_a_driver_auto_is_cpu_silently_and_counts_nothing(
    driver, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    driver(False)
    before = STATS.counts()
    with caplog.at_level(logging.DEBUG, logger="ptim.detect"):
        info = create_session(None, "auto")
    assert (info.provider, info.note) == ("cpu", "")
    assert STATS.counts() == before
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if "CUDA" in r.getMessage()
             or "NVIDIA" in r.getMessage()]
    assert lines == [(logging.DEBUG, "no NVIDIA driver on this machine: the detector runs "
                                     "on CPU")]  # the one line --verbose shows
    assert capfd.readouterr().err == ""


def test_without_a_driver_asking_for_cuda_says_so(driver) -> None:
    driver(False)
    before = STATS.counts().get("gpu.fallback", 0)
    info = create_session(None, "cuda")
    assert info.provider == "cpu"
    assert info.note == "CUDA requested but this machine has no NVIDIA driver; using CPU"
    assert STATS.counts().get("gpu.fallback", 0) == before + 1


@pytest.mark.skipif(not CUDA_LISTED, reason="this onnxruntime build lists no CUDA provider")
def test_with_a_driver_a_provider_that_cannot_load_names_the_fix(
    driver, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    driver(True)  # the real CUDA provider then really tries to load its libraries
    before = STATS.counts().get("gpu.fallback", 0)
    with caplog.at_level(logging.WARNING, logger="ptim.detect"):
        info = create_session(None, "auto")
    if info.provider == "cuda":
        pytest.skip("CUDA works on this machine")
    assert info.note.startswith("NVIDIA GPU found but CUDA failed to load (")
    assert info.note.endswith("; using CPU") and "\n" not in info.note
    # the reason is one of the diagnosed causes, never onnxruntime's raw multi-line dump
    assert any(key in info.note for key in ("missing CUDA libraries", "no usable CUDA",
                                            "not installed"))
    if "missing CUDA libraries" in info.note:
        assert "install them with 'make setup GPU=1'" in info.note
    assert [r.getMessage() for r in caplog.records] == [info.note]  # one line
    assert STATS.counts().get("gpu.fallback", 0) == before + 1
    out = capfd.readouterr()
    assert out.out == "" and "\x1b[" not in out.err  # preload_dlls' prints went to the log


def test_cuda_arena_gets_the_pool_budget() -> None:
    from backend.detect.session import _cuda_options

    assert _cuda_options(None) == {"cudnn_conv_algo_search": "HEURISTIC"}
    assert _cuda_options(512) == {"cudnn_conv_algo_search": "HEURISTIC",
                                  "gpu_mem_limit": str(512 * 2**20),
                                  "arena_extend_strategy": "kSameAsRequested"}


@pytest.mark.parametrize("provider, threads", [("gpu", 2), ("CPU", 2), ("cpu", -1)])
def test_bad_provider_or_threads_is_a_usage_error(provider: str, threads: int) -> None:
    with pytest.raises(UsageError) as err:
        create_session(None, provider, threads)
    assert "\n" not in str(err.value)
