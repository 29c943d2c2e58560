"""Small ONNX models with exactly the real replacement formats' inputs and outputs.

Built with ``onnx.helper``; each has a known, checkable behaviour:

- ``dfm``: DFM signature (``in_face:0`` NHWC BGR 0..1, optional ``morph_value:0``;
  ``out_face_mask:0``, ``out_celeb_face:0``, ``out_celeb_face_mask:0``). The face is the
  colour-inverted input (``1 - x``); both masks are all ones. With ``work`` > 0 a stack
  of 3x3 convolutions of that many channels runs on the input first (its result is
  multiplied by 0), so a speed figure pays for a network of a known size.
- ``inswapper``: ``target`` (1,3,S,S) RGB, ``source`` (1,512) -> ``output``: half the
  target plus a colour that depends on the source latent (two identities, two colours);
  the last initializer is a 512x512 ``emap``.
- ``arcface``: (N,3,112,112) -> (N,512): the mean colour of the face times a fixed
  matrix, so different photos give different embeddings.
- ``nan_dfm`` / ``constant_dfm`` / ``wrong_signature``: refused at load.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.write_bytes(model.SerializeToString())
    return path


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def _work_nodes(size: int, work: int, depth: int) -> tuple[list, list, str]:
    """Convs on the NCHW input: output 'work_zero' (N,1,S,S)... broadcast-ready zeros."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Transpose", ["in_face:0"], ["w_nchw"], perm=[0, 3, 1, 2])]
    inits = []
    prev, ch = "w_nchw", 3
    for k in range(depth):
        stride = 2 if k < 3 else 1  # down to S/8 like an encoder, then work at that scale
        w = rng.normal(0, 0.05, (work, ch, 3, 3)).astype(np.float32)
        inits.append(_const(f"w{k}", w))
        nodes.append(helper.make_node("Conv", [prev, f"w{k}"], [f"c{k}"], pads=[1, 1, 1, 1],
                                      strides=[stride, stride]))
        nodes.append(helper.make_node("Relu", [f"c{k}"], [f"r{k}"]))
        prev, ch = f"r{k}", work
    inits.append(_const("zero", np.zeros((), np.float32)))
    nodes.append(helper.make_node("ReduceMean", [prev], ["w_mean"], axes=[1, 2, 3],
                                  keepdims=1))
    nodes.append(helper.make_node("Mul", ["w_mean", "zero"], ["w_zero"]))  # (N,1,1,1)
    return nodes, inits, "w_zero"


def dfm(path: Path, size: int = 64, morph: bool = False, batch: str | int = "N",
        work: int = 0, depth: int = 6, out_value: str = "invert") -> Path:
    """A DFM-signature model (see the module docstring); ``out_value`` picks the face:
    invert (1 - x), nan (NaN everywhere) or constant (all zeros)."""
    inp = helper.make_tensor_value_info("in_face:0", TensorProto.FLOAT, [batch, size, size, 3])
    inputs = [inp]
    nodes: list = []
    inits = [_const("one", np.ones((), np.float32))]
    src = "in_face:0"
    if work:
        wn, wi, zero = _work_nodes(size, work, depth)
        nodes += wn
        inits += wi
        # (N,1,1,1) zeros broadcast over NHWC: the result depends on the convs' output
        nodes.append(helper.make_node("Add", ["in_face:0", zero], ["in_w"]))
        src = "in_w"
    if morph:
        inputs.append(helper.make_tensor_value_info("morph_value:0", TensorProto.FLOAT, [1]))
        inits.append(_const("zero_m", np.zeros((), np.float32)))
        nodes.append(helper.make_node("Mul", ["morph_value:0", "zero_m"], ["m0"]))
        nodes.append(helper.make_node("Add", [src, "m0"], ["in_m"]))
        src = "in_m"
    if out_value == "invert":
        nodes.append(helper.make_node("Sub", ["one", src], ["out_celeb_face:0"]))
    elif out_value == "nan":
        inits.append(_const("nan", np.array(np.nan, np.float32)))
        nodes.append(helper.make_node("Mul", [src, "nan"], ["out_celeb_face:0"]))
    else:
        inits.append(_const("zero_c", np.zeros((), np.float32)))
        nodes.append(helper.make_node("Mul", [src, "zero_c"], ["out_celeb_face:0"]))
    # masks: ones of shape (N,S,S,1) = ReduceMean over C of x*0 + 1
    inits.append(_const("zero_k", np.zeros((), np.float32)))
    nodes.append(helper.make_node("Mul", [src, "zero_k"], ["z"]))
    nodes.append(helper.make_node("ReduceMean", ["z"], ["z1"], axes=[3], keepdims=1))
    nodes.append(helper.make_node("Add", ["z1", "one"], ["out_face_mask:0"]))
    nodes.append(helper.make_node("Add", ["z1", "one"], ["out_celeb_face_mask:0"]))
    outs = [
        helper.make_tensor_value_info("out_face_mask:0", TensorProto.FLOAT,
                                      [batch, size, size, 1]),
        helper.make_tensor_value_info("out_celeb_face:0", TensorProto.FLOAT,
                                      [batch, size, size, 3]),
        helper.make_tensor_value_info("out_celeb_face_mask:0", TensorProto.FLOAT,
                                      [batch, size, size, 1]),
    ]
    return _save(helper.make_graph(nodes, "dfm", inputs, outs, inits), path)


def inswapper(path: Path, size: int = 128, work: int = 0, depth: int = 6) -> Path:
    """An inswapper-signature model: output = 0.5 * target + 0.5 * sigmoid(source @ P)."""
    rng = np.random.default_rng(7)
    t = helper.make_tensor_value_info("target", TensorProto.FLOAT, [1, 3, size, size])
    s = helper.make_tensor_value_info("source", TensorProto.FLOAT, [1, 512])
    o = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, size, size])
    proj = rng.normal(0, 4.0, (512, 3)).astype(np.float32)
    inits = [_const("proj", proj), _const("half", np.array(0.5, np.float32)),
             numpy_helper.from_array(np.array([1, 3, 1, 1], np.int64), "shape")]
    nodes = [
        helper.make_node("MatMul", ["source", "proj"], ["sp"]),
        helper.make_node("Sigmoid", ["sp"], ["sg"]),
        helper.make_node("Reshape", ["sg", "shape"], ["col"]),
        helper.make_node("Mul", ["target", "half"], ["th"]),
        helper.make_node("Mul", ["col", "half"], ["ch"]),
    ]
    last = "th"
    if work:
        w_nodes = []
        prev, ch = "target", 3
        for k in range(depth):
            stride = 2 if k < 2 else 1
            w = rng.normal(0, 0.05, (work, ch, 3, 3)).astype(np.float32)
            inits.append(_const(f"w{k}", w))
            w_nodes.append(helper.make_node("Conv", [prev, f"w{k}"], [f"c{k}"],
                                            pads=[1, 1, 1, 1], strides=[stride, stride]))
            w_nodes.append(helper.make_node("Relu", [f"c{k}"], [f"r{k}"]))
            prev, ch = f"r{k}", work
        inits.append(_const("zero", np.zeros((), np.float32)))
        w_nodes += [helper.make_node("ReduceMean", [prev], ["wm"], axes=[1, 2, 3], keepdims=1),
                    helper.make_node("Mul", ["wm", "zero"], ["wz"]),
                    helper.make_node("Add", ["th", "wz"], ["thw"])]
        nodes += w_nodes
        last = "thw"
    nodes.append(helper.make_node("Add", [last, "ch"], ["output"]))
    emap = rng.normal(0, 1.0, (512, 512)).astype(np.float32)
    inits.append(_const("emap", emap))  # the real format keeps the emap last, unused by the graph
    return _save(helper.make_graph(nodes, "inswapper", [t, s], [o], inits), path)


def arcface(path: Path) -> Path:
    """An ArcFace-shaped model: (N,3,112,112) -> (N,512) from the face's mean colour and
    its top/bottom contrast."""
    rng = np.random.default_rng(11)
    x = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, 112, 112])
    y = helper.make_tensor_value_info("683", TensorProto.FLOAT, ["N", 512])
    inits = [_const("proj", rng.normal(0, 1.0, (6, 512))),
             numpy_helper.from_array(np.array([0], np.int64), "s0"),
             numpy_helper.from_array(np.array([56], np.int64), "s1"),
             numpy_helper.from_array(np.array([2], np.int64), "ax")]
    nodes = [
        helper.make_node("Slice", ["input.1", "s0", "s1", "ax"], ["top"]),
        helper.make_node("ReduceMean", ["top"], ["mt"], axes=[2, 3], keepdims=0),
        helper.make_node("ReduceMean", ["input.1"], ["ma"], axes=[2, 3], keepdims=0),
        helper.make_node("Concat", ["mt", "ma"], ["m6"], axis=1),
        helper.make_node("MatMul", ["m6", "proj"], ["683"]),
    ]
    return _save(helper.make_graph(nodes, "arcface", [x], [y], inits), path)


def wrong_signature(path: Path) -> Path:
    """A valid ONNX model with the wrong inputs/outputs (a 1x3x64x64 identity)."""
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3, 64, 64])
    return _save(helper.make_graph([helper.make_node("Identity", ["images"], ["scores"])],
                                   "other", [x], [y]), path)


def truncated(src: Path, path: Path) -> Path:
    """The first 60% of the bytes of model ``src``."""
    data = Path(src).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * 0.6)])
    return Path(path)


def conv_gflops(size: int, work: int, depth: int, downs: int = 3) -> float:
    """Multiply-adds (G) of ``_work_nodes``' convolution stack at a ``size`` crop."""
    total, ch, s = 0.0, 3, size
    for k in range(depth):
        if k < downs:
            s = (s + 1) // 2
        total += s * s * work * ch * 9
        ch = work
    return total / 1e9
