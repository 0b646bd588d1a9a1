"""ONNX export with preprocessing inside the graph, and the parity check.

The exported graph takes the letterboxed uint8 BGR part, exactly what the line has in
hand, and does normalisation itself. Every export is checked against PyTorch on real
validation images; an export whose scores differ by more than PARITY_TOLERANCE is
refused and nothing is written.

We use the TorchScript-based exporter (`dynamo=False`): it needs no onnxscript and
works inside a frozen (PyInstaller) app. See docs/adr/0003-onnx-export.md.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from app.core.atomic import atomic_path
from app.core.errors import LinesideError
from training.network import ExportWrapper, InspectionNet

OPSET = 17
PARITY_TOLERANCE = 1e-4
OUTPUT_NAMES = ["score", "class_probs", "heatmap"]


class ExportParityError(LinesideError):
    pass


def onnx_bytes(net: InspectionNet, input_size: int, metadata: dict) -> bytes:
    wrapper = ExportWrapper(net.cpu().eval()).eval()
    dummy = torch.zeros(1, input_size, input_size, 3, dtype=torch.uint8)
    buf = io.BytesIO()
    dynamic = {name: {0: "n"} for name in ["image", *OUTPUT_NAMES]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notice, see module doc
        torch.onnx.export(wrapper, (dummy,), buf, dynamo=False, opset_version=OPSET,
                          input_names=["image"], output_names=OUTPUT_NAMES, dynamic_axes=dynamic,
                          do_constant_folding=True)
    model = onnx.load_from_string(buf.getvalue())
    onnx.helper.set_model_props(model, {"lineside": json.dumps(metadata)})
    model.producer_name = "lineside"
    onnx.checker.check_model(model)
    return model.SerializeToString()


def parity(net: InspectionNet, model_bytes: bytes, images: list[np.ndarray]) -> float:
    """Largest difference between PyTorch and ONNX Runtime over all three outputs."""
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    batch = np.stack(images)
    with torch.no_grad():
        out = net.cpu().eval()(torch.from_numpy(batch))
    ref = [out.score.numpy(), out.class_probs.numpy(), out.heatmap.numpy()]
    got = session.run(OUTPUT_NAMES, {"image": batch})
    return float(max(np.max(np.abs(a - b)) for a, b in zip(ref, got)))


def export_checked(net: InspectionNet, path: Path, input_size: int, metadata: dict,
                   parity_images: list[np.ndarray]) -> float:
    """Export to *path* (atomically) after the parity check passes; returns the figure."""
    data = onnx_bytes(net, input_size, metadata)
    diff = parity(net, data, parity_images)
    if not diff <= PARITY_TOLERANCE:
        raise ExportParityError(
            f"The exported model disagrees with the trained one by {diff:.2e} "
            f"(allowed {PARITY_TOLERANCE:.0e}); the export was refused and nothing was written.")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return diff
