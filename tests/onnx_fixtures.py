"""Small ONNX models that obey the Lineside model contract, built with onnx.helper.

The graph is simple enough to predict by hand:
- score = mean brightness of the letterboxed input (0..1), so a bright part fails;
- class_probs = softmax of [10 * (0.5 - brightness), 10 * mean(channel (i-1) % 3) ...]:
  a bright blue (BGR) part is class 1, a bright green one class 2, a bright red one class 3;
- heatmap = gray brightness average-pooled over stride x stride patches.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17  # ReduceMean still takes axes as an attribute here
IR_VERSION = 8  # old enough for any onnxruntime this project supports


def lineside_metadata(
    class_names: list[str],
    input_size: int,
    stride: int,
    threshold: float,
    version: str | None,
    reference: dict | None,
) -> dict:
    return {
        "format": 1,
        "class_names": list(class_names),
        "input_size": input_size,
        "heatmap_stride": stride,
        "threshold": threshold,
        "version": version,
        "reference": reference,
    }


def _class_weights(n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    weights = np.zeros((3, n_classes), np.float32)
    bias = np.zeros((n_classes,), np.float32)
    weights[:, 0] = -10.0 / 3.0  # ok logit = 5 - 10 * brightness
    bias[0] = 5.0
    for j in range(1, n_classes):
        weights[(j - 1) % 3, j] = 10.0
    return weights, bias


def build_model(
    class_names: list[str] = ("ok", "scratch", "spot"),
    input_size: int = 64,
    stride: int = 16,
    threshold: float = 0.5,
    version: str | None = "v1",
    reference: dict | None = None,
    metadata: dict | None | bool = True,
) -> onnx.ModelProto:
    """A contract-obeying model; metadata=False leaves the Lineside entry out, a dict replaces it."""
    n_classes = len(class_names)
    weights, bias = _class_weights(n_classes)
    grid = input_size // stride
    nodes = [
        helper.make_node("Cast", ["image"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["as_float", "inv255"], ["x"]),
        helper.make_node("ReduceMean", ["x"], ["channel_means"], axes=[1, 2], keepdims=0),
        helper.make_node("ReduceMean", ["channel_means"], ["score"], axes=[1], keepdims=0),
        helper.make_node("MatMul", ["channel_means", "weights"], ["logits_no_bias"]),
        helper.make_node("Add", ["logits_no_bias", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["class_probs"], axis=1),
        helper.make_node("ReduceMean", ["x"], ["gray"], axes=[3], keepdims=1),
        helper.make_node("Transpose", ["gray"], ["gray_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node(
            "AveragePool", ["gray_nchw"], ["pooled"], kernel_shape=[stride, stride], strides=[stride, stride]
        ),
        helper.make_node("Squeeze", ["pooled", "channel_axis"], ["heatmap"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array(1.0 / 255.0, np.float32), "inv255"),
        numpy_helper.from_array(weights, "weights"),
        numpy_helper.from_array(bias, "bias"),
        numpy_helper.from_array(np.array([1], np.int64), "channel_axis"),
    ]
    graph = helper.make_graph(
        nodes,
        "lineside_fixture",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", input_size, input_size, 3])],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("class_probs", TensorProto.FLOAT, ["N", n_classes]),
            helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, ["N", grid, grid]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    if metadata is True:
        metadata = lineside_metadata(list(class_names), input_size, stride, threshold, version, reference)
    if metadata:
        helper.set_model_props(model, {"lineside": json.dumps(metadata)})
    onnx.checker.check_model(model)
    return model


def write_model(path: Path, **kwargs) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(build_model(**kwargs), str(path))
    return path


def write_wrong_io_model(path: Path) -> Path:
    """A valid ONNX file (with Lineside metadata) whose input is float32 'input': not our contract."""
    nodes = [helper.make_node("Identity", ["input"], ["output"])]
    graph = helper.make_graph(
        nodes,
        "not_lineside",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 64, 64])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, 64, 64])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    helper.set_model_props(
        model, {"lineside": json.dumps(lineside_metadata(["ok", "x"], 64, 16, 0.5, "v1", None))}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
