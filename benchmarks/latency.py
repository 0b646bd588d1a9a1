"""Single-part latency (ONNX Runtime vs PyTorch eager, one thread) and batch throughput.

Both paths do the same work per part, from a decoded image to a result the line could
use: letterbox to the model's input size, run the network, read score, class
probabilities and heatmap. They run in the same process on the same images, taking
turns (which one goes first alternates per image) so that a busy neighbour on a shared
machine slows both alike; the first WARMUP parts of each are not counted.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.core.imageio import to_bgr8
from app.core.preprocess import letterbox
from app.core.runtime import Inspector

WARMUP = 10
BATCH = 16


@dataclass
class LatencyResult:
    n: int
    ort_ms: list[float]
    torch_ms: list[float]
    max_score_diff: float  # ORT vs eager on the same parts: the export is the same network

    @staticmethod
    def _p(values: list[float], q: float) -> float:
        return float(np.percentile(values, q)) if values else float("nan")

    def row(self, name: str) -> dict:
        values = self.ort_ms if name == "ort" else self.torch_ms
        return {"p50": self._p(values, 50), "p95": self._p(values, 95), "mean": float(np.mean(values))}

    @property
    def speedup_p50(self) -> float:
        return self.row("torch")["p50"] / self.row("ort")["p50"]


def load_eager_network(checkpoint: Path):
    """The trained network in PyTorch, from the checkpoint saved beside the ONNX file."""
    import torch

    from training.network import InspectionNet

    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    net = InspectionNet(len(saved["class_names"]) - 1)
    net.load_state_dict(saved["state_dict"])
    return net.eval()


def _eager_verdict(net, image: np.ndarray, size: int) -> tuple[float, np.ndarray, np.ndarray]:
    import torch

    square, _ = letterbox(to_bgr8(image), size)
    with torch.inference_mode():
        out = net(torch.from_numpy(square[None]))
        return float(out.score[0]), out.class_probs[0].numpy(), out.heatmap[0].numpy()


def single_image_latency(model_dir: Path, images: list[np.ndarray]) -> LatencyResult:
    """Per-part wall time of Inspector.inspect vs the eager network, both on one thread."""
    import torch

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        inspector = Inspector(model_dir / "model.onnx", threads=1)
        net = load_eager_network(model_dir / "checkpoint.pt")
        size = inspector.info.input_size
        ort_ms: list[float] = []
        torch_ms: list[float] = []
        diff = 0.0
        sequence = [images[i % len(images)] for i in range(WARMUP)] + list(images)
        for i, image in enumerate(sequence):
            order = ("ort", "torch") if i % 2 == 0 else ("torch", "ort")
            scores = {}
            for which in order:
                start = time.perf_counter()
                if which == "ort":
                    scores[which] = inspector.inspect(image).score
                else:
                    scores[which] = _eager_verdict(net, image, size)[0]
                ms = (time.perf_counter() - start) * 1000.0
                if i >= WARMUP:
                    (ort_ms if which == "ort" else torch_ms).append(ms)
            diff = max(diff, abs(scores["ort"] - scores["torch"]))
    finally:
        torch.set_num_threads(previous_threads)
    return LatencyResult(len(images), ort_ms, torch_ms, diff)


def batch_throughput(model_path: Path, images: list[np.ndarray], min_images: int = 256) -> dict:
    """Parts per second through Inspector.inspect_batch at batch 16 on all cores."""
    threads = os.cpu_count() or 1
    inspector = Inspector(model_path, threads=threads)
    batches = [images[i:i + BATCH] for i in range(0, len(images), BATCH)]
    batches = [b for b in batches if len(b) == BATCH] or [images[:BATCH]]
    inspector.inspect_batch(batches[0])  # warm-up, not counted
    done, start = 0, time.perf_counter()
    while done < min_images:
        for batch in batches:
            inspector.inspect_batch(batch)
            done += len(batch)
    seconds = time.perf_counter() - start
    return {"threads": threads, "batch": len(batches[0]), "images": done, "seconds": seconds,
            "images_per_s": done / seconds}


def model_at_size(model_dir: Path, size: int, dest: Path) -> Path:
    """The same trained weights exported at another input side (the network is fully
    convolutional), with the checkpoint beside it: for latency at a stated size."""
    import json
    import shutil

    from training.export import onnx_bytes

    net = load_eager_network(model_dir / "checkpoint.pt")
    meta = json.loads((model_dir / "model.json").read_text())
    meta = {k: v for k, v in meta.items() if k not in ("metrics", "report")} | {"input_size": size}
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "model.onnx").write_bytes(onnx_bytes(net, size, meta))
    shutil.copyfile(model_dir / "checkpoint.pt", dest / "checkpoint.pt")
    return dest
