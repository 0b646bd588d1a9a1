"""Retrain a project: check the data, train, export, check parity, register a candidate.

The new version is assembled in a hidden temp folder and renamed into `models/<vN>`
only when complete, then registered as a *candidate*. It never replaces the production
model by itself: `lineside deploy` (or Deploy in the app) does.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from app.core.atomic import write_text
from app.core.errors import NotEnoughDataError
from app.core.evaluation import auroc, catch_at_false_reject, rates_at
from app.core.monitoring import build_reference, image_stats
from app.core.project import Project
from app.core.records import ModelVersion
from training.data import OK, Sample, load_sample
from training.export import export_checked
from training.loop import Cancelled, TrainConfig, TrainResult, config_dict, train
from training.network import HEATMAP_STRIDE

MIN_OK = 10  # below this the false-reject threshold means nothing
MIN_PER_CLASS = 5  # below this a class cannot be both learned and validated
RECOMMENDED_PER_CLASS = 20
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 224, 288  # 288: the most a CPU retrain affords (docs/adr/0005)
PIXELS_PER_SMALL_DEFECT = 20  # a small defect should span more than one 16-px heatmap patch


def choose_input_size(project: Project, labeled: list) -> int:
    """The square model input side for this project: large enough that small defects survive.

    An explicit project setting `input_size` wins. Otherwise: the size at which the
    smaller defects (25th percentile of the painted regions' extent relative to their
    image) span about PIXELS_PER_SMALL_DEFECT pixels, never larger than the images
    themselves, rounded to a multiple of 32 within [MIN_INPUT_SIZE, MAX_INPUT_SIZE].
    """
    explicit = project.get_setting("input_size")
    if explicit:
        return int(explicit)
    import cv2

    longest = [max(r.width, r.height) for r, _ in labeled]
    relative = []
    for record, label in labeled:
        mask = project.load_mask(label) if label.verdict != OK and label.mask_path else None
        if mask is None or not mask.any():
            continue
        n, _, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8))
        extent = min(max(stats[i, 2], stats[i, 3]) for i in range(1, n))
        relative.append(extent / max(mask.shape))
    if not relative:
        return MIN_INPUT_SIZE
    wanted = PIXELS_PER_SMALL_DEFECT / max(float(np.percentile(relative, 25)), 1e-3)
    wanted = min(wanted, float(np.median(longest)))  # upscaling adds no detail
    return int(np.clip(32 * round(wanted / 32), MIN_INPUT_SIZE, MAX_INPUT_SIZE))


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise NotEnoughDataError("--device cuda was asked for, but no CUDA GPU is available here.")
    return device


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return f"GPU ({torch.cuda.get_device_name(0)})"
    return f"CPU ({os.cpu_count()} cores)"


def class_names_for(project: Project, counts: dict[str, int]) -> list[str]:
    """'ok' first, then the project's defect classes that have labels, in project order."""
    names = [c.name for c in project.classes() if counts.get(c.name, 0) > 0]
    names += sorted(v for v in counts if v not in names and v not in (OK, "unlabeled"))
    return [OK, *names]


def check_data(counts: dict[str, int], class_names: list[str]) -> list[str]:
    """Raise NotEnoughDataError naming every class that is short; return soft shortfalls."""
    problems = []
    if counts.get(OK, 0) < MIN_OK:
        problems.append(f"ok: {counts.get(OK, 0)} labeled images, at least {MIN_OK} needed")
    if len(class_names) < 2:
        problems.append(f"no defect class has labeled images; at least {MIN_PER_CLASS} of one are needed")
    for name in class_names[1:]:
        if counts.get(name, 0) < MIN_PER_CLASS:
            problems.append(f"{name}: {counts.get(name, 0)} labeled images, at least {MIN_PER_CLASS} needed")
    if problems:
        raise NotEnoughDataError("Not enough labeled images to train. " + "; ".join(problems) + ".")
    return [f"{name}: {counts[name]} labeled images, {RECOMMENDED_PER_CLASS}+ recommended for a reliable catch rate"
            for name in class_names[1:] if counts[name] < RECOMMENDED_PER_CLASS]


def load_split(project: Project, split: str, size: int) -> tuple[list[Sample], list]:
    samples, records = [], []
    for record, label in project.labeled(split=split):
        mask = project.load_mask(label) if label.verdict != OK else None
        samples.append(load_sample(record.path, label.verdict, size, mask=mask, key=record.sha256))
        records.append(record)
    return samples, records


def _per_class(samples: list[Sample]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in samples:
        out[s.verdict] = out.get(s.verdict, 0) + 1
    return out


def _changes(previous: ModelVersion | None, per_class: dict[str, dict[str, int]], n_train: int) -> list[str]:
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


def _production_on(project: Project, images: list[np.ndarray], truth: list[str]) -> dict | None:
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


def _baseline_on(train_samples: list[Sample], val_samples: list[Sample]) -> dict:
    """What a simpler method catches on the same validation parts: the honest yardstick.

    Hand-made image statistics + logistic regression (training/baseline.py). Its L2
    strength is picked on the same validation split, which flatters the baseline, not
    the network.
    """
    from training.baseline import fit_selected, image_features

    def xy(samples):
        return (np.stack([image_features(s.image) for s in samples]),
                np.array([s.verdict != OK for s in samples]))

    (tx, ty), (vx, vy) = xy(train_samples), xy(val_samples)
    scores = fit_selected(tx, ty, vx, vy).scores(vx)
    return {"method": "image statistics + logistic regression",
            "auroc": auroc(vy.astype(int), scores),
            "catch_at_1pct_false_reject": catch_at_false_reject(scores[~vy], scores[vy], 0.01)}


def _metrics(result: TrainResult) -> dict:
    defect = np.array([t != OK for t in result.val_classes])
    s = result.val_scores
    catch, fr = rates_at(s[~defect], s[defect], result.threshold)
    per_class = {}
    for name in result.config.class_names[1:]:
        sel = np.array([t == name for t in result.val_classes])
        if sel.any():
            per_class[name] = {"n": int(sel.sum()), "caught": float(np.mean(s[sel] >= result.threshold)),
                               "class_correct": float(np.mean([p == name for p, t in zip(result.val_pred, result.val_classes) if t == name]))}
    return {"auroc": auroc(defect.astype(int), s), "catch_rate": catch, "false_reject_rate": fr,
            "catch_at_1pct_false_reject": catch_at_false_reject(s[~defect], s[defect], 0.01),
            "threshold": result.threshold, "n_val": int(len(s)), "per_class": per_class,
            "measured_on": "validation split"}


def train_project(project_dir: Path | str, *, epochs: int | None = None, time_budget_s: float | None = None,
                  device: str = "auto", seed: int = 0, on_event: Callable[[dict], None] = lambda e: None,
                  should_stop: Callable[[], bool] = lambda: False) -> ModelVersion:
    t0 = time.monotonic()
    project = Project.open(project_dir)
    try:
        return _train_project(project, epochs, time_budget_s, device, seed, on_event, should_stop, t0)
    finally:
        project.close()


def _train_project(project, epochs, time_budget_s, device, seed, on_event, should_stop, t0) -> ModelVersion:
    # 1. Is there enough data? Say exactly what is missing before spending minutes.
    counts = project.label_counts()
    class_names = class_names_for(project, counts)
    shortfalls = check_data(counts, class_names)
    device = resolve_device(device)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    # 2. Stable splits: an image keeps its split across versions, so validation stays honest.
    project.assign_splits(0.2)
    size = choose_input_size(project, project.labeled())
    on_event({"event": "progress", "phase": "prepare", "step": 0, "steps": 1, "eta_s": None})
    train_samples, train_records = load_split(project, "train", size)
    val_samples, val_records = load_split(project, "val", size)
    if not any(s.verdict == OK for s in val_samples) or all(s.verdict == OK for s in val_samples):
        raise NotEnoughDataError("The validation split needs both OK and defective parts: label a few more of each.")
    cfg = TrainConfig(input_size=size, class_names=class_names, device=device, seed=seed,
                      time_budget_s=time_budget_s)
    if epochs is not None:
        cfg = replace(cfg, epochs=epochs)
    on_event({"event": "start", "device": device_name(device), "n_train": len(train_samples),
              "n_val": len(val_samples), "classes": class_names, "epochs": cfg.epochs,
              "shortfalls": shortfalls})

    # 3. Backprop.
    result = train(train_samples, val_samples, cfg, on_event, should_stop)

    # 4. Assemble the version in a hidden folder; nothing visible until it is complete.
    on_event({"event": "progress", "phase": "export", "step": 0, "steps": 1, "eta_s": None})
    version = project.next_version()
    tmp = project.models_dir / f".partial-{version}-{os.getpid()}"
    final = project.models_dir / version
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if should_stop():
            raise Cancelled()
        val_originals = [project.load_image(r.id) for r in val_records]
        ok_val_scores = [float(s) for s, t in zip(result.val_scores, result.val_classes) if t == OK]
        reference = build_reference([image_stats(project.load_image(r.id)) for r in train_records], ok_val_scores)
        metadata = {"format": 1, "class_names": class_names, "input_size": size, "heatmap_stride": HEATMAP_STRIDE,
                    "threshold": result.threshold, "version": version, "reference": reference}
        parity_images = [s.image for s in val_samples[:16]]
        parity_diff = export_checked(result.net, tmp / "model.onnx", size, metadata, parity_images)
        torch.save({"state_dict": result.net.state_dict(), "config": config_dict(cfg),
                    "class_names": class_names, "history": result.history}, tmp / "checkpoint.pt")

        # 5. Honest numbers: the candidate and the production model on the same images.
        on_event({"event": "progress", "phase": "evaluate", "step": 0, "steps": 1, "eta_s": None})
        metrics = _metrics(result)
        production = _production_on(project, val_originals, result.val_classes)
        baseline = _baseline_on(train_samples, val_samples)
        per_class = {name: {"train": _per_class(train_samples).get(name, 0), "val": _per_class(val_samples).get(name, 0)}
                     for name in class_names}
        elapsed = time.monotonic() - t0
        report = {"n_train": len(train_samples), "n_val": len(val_samples), "per_class": per_class,
                  "device": device_name(device), "elapsed_s": round(elapsed, 1), "epochs_run": result.epochs_run,
                  "stopped_early": result.stopped_early, "history": result.history, "config": config_dict(cfg),
                  "parity_max_abs_diff": parity_diff, "production_on_same_val": production,
                  "baseline_on_same_val": baseline,
                  "changes": _changes(_latest_model(project), per_class, len(train_samples)),
                  "shortfalls": shortfalls, "trained_at": datetime.now(timezone.utc).isoformat(),
                  "host": platform.node(), "torch": torch.__version__,
                  "training_set_sha256": hashlib.sha256("".join(sorted(s.key for s in train_samples)).encode()).hexdigest()}
        write_text(tmp / "training_set.json", json.dumps(
            {"train": [r.sha256 for r in train_records], "val": [r.sha256 for r in val_records]}, indent=1))
        write_text(tmp / "model.json", json.dumps({**metadata, "metrics": metrics, "report": report}, indent=2))
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    model = project.register_model(version, final, result.threshold, metrics, report)
    on_event({"event": "done", "version": version, "elapsed_s": round(time.monotonic() - t0, 1),
              "device": device_name(device), "metrics": {k: metrics[k] for k in
                                                         ("auroc", "catch_rate", "false_reject_rate", "threshold")},
              "production": production, "baseline": baseline, "shortfalls": shortfalls,
              "changes": report["changes"]})
    return model


def _latest_model(project: Project) -> ModelVersion | None:
    models = project.models()
    return models[0] if models else None
