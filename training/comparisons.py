"""What a new version is judged beside: the previous version's data, the production
model and a simple baseline, all on the candidate's own held-out parts."""

from __future__ import annotations

import os

import numpy as np

from app.core.evaluation import auroc, catch_at_false_reject, rates_at
from app.core.project import Project
from app.core.records import ModelVersion
from training.data import OK


def per_class_counts(parts: list[tuple]) -> dict[str, int]:
    """Verdict -> number of parts, from (record, verdict) pairs."""
    out: dict[str, int] = {}
    for _, verdict in parts:
        out[verdict] = out.get(verdict, 0) + 1
    return out


def changes_since(previous: ModelVersion | None, per_class: dict[str, dict[str, int]], n_train: int) -> list[str]:
    """What changed in the training data since the previous version, in words."""
    if previous is None:
        return ["first model of this project"]
    before = previous.report.get("per_class", {})
    lines = []
    n_before = previous.report.get("n_train", 0) + previous.report.get("n_val", 0)
    n_now = n_train + sum(v.get("val", 0) for v in per_class.values())
    if n_now != n_before:
        lines.append(f"{n_now - n_before:+d} labeled images since {previous.version} ({n_before} -> {n_now})")
    for name in sorted(set(per_class) | set(before)):
        a = sum(before.get(name, {}).values())
        b = sum(per_class.get(name, {}).values())
        if name not in before:
            lines.append(f"new class '{name}' ({b} images)")
        elif name not in per_class:
            lines.append(f"class '{name}' no longer trained")
        elif a != b:
            lines.append(f"{name}: {a} -> {b} images")
    return lines or [f"same labeled data as {previous.version}"]


def production_on(project: Project, images: list[np.ndarray], truth: list[str]) -> dict | None:
    """The production model judged on the candidate's validation images, for a fair comparison."""
    prod = project.production_model()
    if prod is None:
        return None
    from app.core.runtime import Inspector

    try:
        inspector = Inspector(prod.onnx_path, threads=os.cpu_count() or 1, threshold=prod.threshold)
    except Exception as exc:  # a damaged production file must not block a retrain
        return {"version": prod.version, "error": str(exc)}
    scores = np.array([v.score for v in inspector.inspect_batch(images)])
    defect = np.array([t != OK for t in truth])
    catch, fr = rates_at(scores[~defect], scores[defect], prod.threshold)
    return {"version": prod.version, "catch_rate": catch, "false_reject_rate": fr,
            "auroc": auroc(defect.astype(int), scores), "threshold": prod.threshold}


def baseline_on(train: list[tuple[np.ndarray, bool]], held_out: list[tuple[np.ndarray, bool]]) -> dict | None:
    """What a simpler method catches on the same held-out parts: the honest yardstick.

    Hand-made image statistics + logistic regression (training/baseline.py) on whole
    parts, (image or its `image_features` vector, is_defect) pairs: a caller that reads
    many parts passes the vectors, so it never holds all their images at once. Its L2
    strength is picked on the same held-out parts, which flatters the baseline, not the
    network. None when either side lacks OK or defective parts (a logistic regression
    needs both).
    """
    from training.baseline import fit_selected, image_features

    def xy(pairs):
        rows = [x if x.ndim == 1 else image_features(x) for x, _ in pairs]
        return np.stack(rows), np.array([d for _, d in pairs])

    if not train or not held_out:
        return None
    (tx, ty), (vx, vy) = xy(train), xy(held_out)
    if ty.all() or not ty.any() or vy.all() or not vy.any():
        return None
    scores = fit_selected(tx, ty, vx, vy).scores(vx)
    return {"method": "image statistics + logistic regression",
            "auroc": auroc(vy.astype(int), scores),
            "catch_at_1pct_false_reject": catch_at_false_reject(scores[~vy], scores[vy], 0.01),
            "roc": roc_points(vy, scores)}


def ranking_figures(ok_scores: np.ndarray, defect_scores: np.ndarray) -> dict | None:
    """A model's AUROC and best-case catch at 1 % false reject, as `baseline_on` reports
    the baseline's, so the two stand side by side on the same parts."""
    if not ok_scores.size or not defect_scores.size:
        return None
    truth = np.r_[np.zeros(ok_scores.size), np.ones(defect_scores.size)].astype(int)
    return {"auroc": auroc(truth, np.r_[ok_scores, defect_scores]),
            "catch_at_1pct_false_reject": catch_at_false_reject(ok_scores, defect_scores, 0.01)}


MAX_ROC_POINTS = 200  # enough for a drawn curve; the report stays small


def roc_points(is_defect: np.ndarray, scores: np.ndarray) -> dict:
    """The ROC curve (false reject, catch) at up to MAX_ROC_POINTS thresholds, for the
    model report to draw beside the model's own curve."""
    from app.core.charts import roc_curve

    fpr, tpr = roc_curve(np.asarray(is_defect, bool), np.asarray(scores, np.float64))
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), MAX_ROC_POINTS)).round().astype(int))
    return {"false_reject": [round(float(v), 5) for v in fpr[keep]], "catch": [round(float(v), 5) for v in tpr[keep]]}
