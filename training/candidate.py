"""Turning a trained network into a registered candidate: the version folder, the
threshold set on what ONNX Runtime computes, and the figures the line will get.

Every figure here comes from the exported model run by `app.core.runtime.Inspector`
on whole held-out parts (tiled where the model tiles), not from the PyTorch network
the trainer held: the line runs the file, so the file is what is measured.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx

from app.core.atomic import atomic_path
from app.core.evaluation import auroc, catch_at_false_reject
from app.core.operating_point import OperatingPoint
from app.core.project import Project
from app.core.runtime import METADATA_KEY, Inspector, Verdict
from training.data import OK


def claim_version_folder(project: Project, partial: Path) -> tuple[str, Path]:
    """Rename the finished *partial* folder to the next free `models/vN`.

    The rename is the claim: a model folder is never empty, so renaming onto one that
    another training just created fails, and we take the next number instead of
    throwing a finished training away.
    """
    for _ in range(1000):
        version = project.next_version()
        final = project.models_dir / version
        try:
            os.rename(partial, final)
            return version, final
        except OSError:
            if not final.exists():
                raise  # not a clash: a real error (disk, permissions)
    raise OSError(f"could not find a free version folder in {project.models_dir}")


def set_onnx_metadata(path: Path, metadata: dict) -> None:
    """Rewrite the Lineside metadata inside an exported model (the graph is untouched)."""
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(metadata)})
    with atomic_path(path) as tmp:
        tmp.write_bytes(model.SerializeToString())


def judge(model_path: Path, images: list[np.ndarray], threads: int | None = None) -> list[Verdict]:
    """The exported model on whole parts, a few at a time (bounded memory)."""
    inspector = Inspector(model_path, threads=threads or os.cpu_count() or 1, threshold=1.0)
    verdicts: list[Verdict] = []
    for i in range(0, len(images), 8):
        verdicts += inspector.inspect_batch(images[i:i + 8])
    return verdicts


def line_metrics(scores: np.ndarray, truth: list[str], predicted: list[str | None], point: OperatingPoint,
                 class_names: list[str], measured_on: str) -> dict:
    """The figures every screen leads with: catch and false reject at the stored threshold."""
    defect = np.array([t != OK for t in truth])
    per_class = {}
    for name in sorted({t for t in truth if t != OK}, key=lambda n: (n not in class_names, n)):
        sel = [i for i, t in enumerate(truth) if t == name]
        per_class[name] = {"n": len(sel), "caught": float(np.mean(scores[sel] >= point.threshold))}
        if name in class_names:  # a good-only model names no classes
            per_class[name]["class_correct"] = float(np.mean([predicted[i] == name for i in sel]))
    has_both = defect.any() and (~defect).any()
    return {
        **point.to_dict(),
        "auroc": auroc(defect.astype(int), scores) if has_both else None,
        # The curve's best case on these parts: labelled so wherever it is shown.
        "catch_at_1pct_false_reject": catch_at_false_reject(scores[~defect], scores[defect], 0.01)
        if has_both else None,
        "n_val": int(len(scores)), "per_class": per_class, "measured_on": measured_on,
    }
