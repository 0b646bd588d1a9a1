"""Retrain a project: check the data, train, export, check parity, register a candidate.

The new version is assembled in a hidden temp folder and renamed into `models/<vN>`
only when complete, then registered as a *candidate*. It never replaces the production
model by itself: `lineside deploy` (or Deploy in the app) does.
"""

from __future__ import annotations

import hashlib
import math
import json
import os
import platform
import shutil
import tempfile
import time
import traceback
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from app.core.atomic import write_bytes, write_text
from app.core.errors import NotEnoughDataError
from app.core.monitoring import build_reference, image_stats
from app.core.operating_point import DEFAULT_FALSE_REJECT_TARGET, highest_ok_parts, operating_point
from app.core.preprocess import TILE_MARGIN, TilePlan, choose_tile_plan, defect_extent
from app.core.project import HELD_OUT_SPLITS, Project
from app.core.records import ModelVersion
from training.candidate import claim_version_folder, judge, line_metrics, set_onnx_metadata
from training.comparisons import baseline_on, changes_since, per_class_counts, production_on, ranking_figures
from training.data import OK, load_sample, load_tiled_samples, part_key
from training.export import export_checked
from training.lookalikes import with_lookalikes
from training.loop import Cancelled, TrainConfig, config_dict, learning_curve, train
from training.modes import (COMBINED, GOOD_ONLY, SUPERVISED, check_good_only, check_supervised, choose_mode,
                            merge_short_classes)
from training.network import HEATMAP_STRIDE

MIN_INPUT_SIZE, MAX_INPUT_SIZE = 224, 288  # 288: the most a CPU retrain affords (docs/adr/0005)
# A combined model's anomaly half tries these shares of its bank, smallest first
# (`_Run._smallest_bank`), and keeps the first that holds the validation catch with an
# AUROC at most BANK_AUROC_TOLERANCE lower (the INT8 gate allows the same drop).
BANK_FRACTIONS = (1 / 8, 1 / 4, 1 / 2)
BANK_AUROC_TOLERANCE = 0.002
# The report's learning-curve note while the curve is measured after the hand-over.
CURVE_PENDING = "being measured after the model was handed over (or the trainer stopped before it finished)"
PIXELS_PER_SMALL_DEFECT = 20  # a small defect should span more than one 16-px heatmap patch


def choose_input_size(project: Project, labeled: list, mode: str = SUPERVISED) -> int:
    """The square model input side for this project: large enough that small defects survive.

    An explicit project setting `input_size` wins. A good-only model takes the largest
    size (never larger than the images themselves): it learns no weights, so the CPU
    backprop cost that bounds the supervised size does not apply, and its patch
    features lose most at small inputs (tiles of 224 px have proportionally more
    border patches, whose zero-padded features look unusual to the bank: on the
    kolektorsdd test split, a bank of its 226 train+val OK parts tiled at scale 0.48
    gave image AUROC 0.92 with 288-px tiles and 0.85 with 224-px tiles). Otherwise:
    the size at which the smaller defects (25th percentile of the painted regions'
    extent relative to their image) span about PIXELS_PER_SMALL_DEFECT pixels, never
    larger than the images themselves, rounded to a multiple of 32 within
    [MIN_INPUT_SIZE, MAX_INPUT_SIZE]. With no painted region at all the defects' size is
    unknown, and the largest size is taken, as for good-only (it used to be the
    smallest: kolektorsdd by class folders without masks, letterboxed whole, caught
    14/17 unseen test cracks at 288 px against 13/17 at 224 px, AUROC 0.996 against
    0.994, no false rejects either way, trained in 36 s against 29 s).
    """
    explicit = project.get_setting("input_size")
    if explicit:
        return int(explicit)
    longest = [max(r.width, r.height) for r, _ in labeled]
    largest = float(np.median(longest)) if longest else MAX_INPUT_SIZE
    largest_size = int(np.clip(32 * math.floor(largest / 32), MIN_INPUT_SIZE, MAX_INPUT_SIZE))
    if mode == GOOD_ONLY:
        return largest_size
    import cv2

    relative = []
    for record, label in labeled:
        mask = project.load_mask(label) if label.verdict != OK and label.mask_path else None
        if mask is None or not mask.any():
            continue
        n, _, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8))
        extent = min(max(stats[i, 2], stats[i, 3]) for i in range(1, n))
        relative.append(extent / max(mask.shape))
    if not relative:  # no defect size to go by: do not shrink the part more than the CPU needs
        return largest_size
    wanted = PIXELS_PER_SMALL_DEFECT / max(float(np.percentile(relative, 25)), 1e-3)
    wanted = min(wanted, float(np.median(longest)))  # upscaling adds no detail
    return int(np.clip(32 * round(wanted / 32), MIN_INPUT_SIZE, MAX_INPUT_SIZE))


def choose_size_and_tiling(project: Project, labeled: list, mode: str) -> tuple[int, TilePlan | None]:
    """The input side and the tile plan. A part that is tiled at the largest input is cut
    into MAX_INPUT_SIZE tiles: fewer, larger tiles carry more context and fewer tile
    borders, and as the short side fills one tile the scale rises with the tile (more
    pixels per part, so a slower retrain and part). On kolektorsdd, 288-px tiles at scale
    0.576 against 224-px tiles at 0.485: test AUROC 0.996 vs 0.969, caught 15/17 vs 14/17
    at the stored threshold, retrain 196 s vs 122 s. Otherwise the whole part is
    letterboxed at `choose_input_size`, or tiled at that size if that size tiles (the
    tiling gain is measured against whole-part letterboxing at the same size, so a
    smaller input can tile where 288 px does not). The tile is that size plus a margin on
    each side (`app.core.preprocess.TILE_MARGIN`), so the model input is 320 px for 288 px
    of part. An explicit `input_size` setting is the tile side, margin included."""
    explicit = project.get_setting("input_size")
    if not explicit:
        plan = choose_tiling(project, labeled, MAX_INPUT_SIZE)
        if plan is not None:
            return plan.tile, plan
    size = choose_input_size(project, labeled, mode)
    plan = choose_tiling(project, labeled, size - 2 * TILE_MARGIN if explicit else size, whole_size=size)
    return (plan.tile if plan is not None else size), plan


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


def ok_val_fraction(n_ok: int, target: float) -> float:
    """Share of OK parts held out for the threshold in supervised mode.

    The threshold needs about 3/target held-out OK parts for the rate it promises to
    rest on more than the single highest OK score (299 at 1 %: the 3rd highest). OK
    parts are what a line has plenty of, so up to half of them are held out when that
    many are needed; never fewer than the usual 20 %.
    """
    wanted = math.ceil(3 / target) - 1
    return float(min(0.5, max(0.2, wanted / max(1, n_ok))))


def choose_tiling(project: Project, labeled: list, size: int, whole_size: int | None = None) -> TilePlan | None:
    """Tiles at (close to) native resolution for parts much larger than the input, else None.

    The rule is `app.core.preprocess.choose_tile_plan` on the labeled images' sizes and
    painted defects; a project setting `tiling` = false turns tiling off.
    """
    if project.get_setting("tiling") is False:
        return None
    sizes = [(r.height, r.width) for r, _ in labeled]
    extents = [defect_extent(project.load_mask(label)) for _, label in labeled
               if label.verdict != OK and label.mask_path]
    return choose_tile_plan(sizes, [e for e in extents if e], size, whole_size=whole_size)


def load_split(project: Project, split: str, size: int, plan: TilePlan | None = None,
               verdict_map: dict[str, str] | None = None):
    """(samples, parts, unpainted): network inputs, the (record, verdict) of each whole
    part, and how many defective parts were tiled without a painted region (their tiles
    train as a bag: training.weak_tiles).
    *verdict_map* renames classes that train together (see modes.merge_short_classes)."""
    samples, parts, unpainted = [], [], 0
    for record, label in project.labeled(split=split):
        mask = project.load_mask(label) if label.verdict != OK else None
        verdict = (verdict_map or {}).get(label.verdict, label.verdict)
        if plan is None:
            samples.append(load_sample(record.path, verdict, size, mask=mask, key=record.sha256))
        else:
            tiles = load_tiled_samples(record.path, verdict, plan, mask=mask, key=record.sha256)
            unpainted += verdict != OK and not any(s.mask is not None for s in tiles)
            samples += tiles
        parts.append((record, verdict))
    return samples, parts, unpainted


def _predicted(verdicts, class_names: list[str], threshold: float) -> list[str | None]:
    """The class each part would get at the stored threshold (None = PASS)."""
    out = []
    for v in verdicts:
        probs = [v.class_probs.get(name, 0.0) for name in class_names[1:]]
        out.append(None if v.score < threshold else (class_names[1 + int(np.argmax(probs))] if probs else "defect"))
    return out


def relative_weight_change(net) -> dict[str, float]:
    """How far training moved each part of the backbone from its ImageNet weights:
    |w - w0| / |w0| per block (0 = untouched), for the model report."""
    from training.network import load_pretrained_backbone

    before = load_pretrained_backbone().state_dict()
    after = net.backbone.state_dict()
    groups: dict[str, list[str]] = {}
    for name in before:
        if name.endswith(("running_mean", "running_var", "num_batches_tracked")) or name.startswith("_fc"):
            continue
        group = ".".join(name.split(".")[:2]) if name.startswith("_blocks.") else name.split(".")[0]
        groups.setdefault(group, []).append(name)
    change = {}
    for group, names in groups.items():
        delta = sum(float(torch.sum((after[n].float() - before[n].float()) ** 2)) for n in names)
        base = sum(float(torch.sum(before[n].float() ** 2)) for n in names)
        change[group.replace("_blocks.", "block ").lstrip("_")] = round((delta / max(base, 1e-12)) ** 0.5, 6)
    return change


def _exported(onnx_bytes: bytes, parity_diff: float) -> Callable[[Path, dict], float]:
    """An export step that writes a file already exported and parity-checked, with the
    metadata it is given (on magnetic tile a second export and parity check cost 1.4 s)."""

    def export(path: Path, metadata: dict) -> float:
        write_bytes(path, onnx_bytes)
        set_onnx_metadata(path, metadata)
        return parity_diff

    return export


def _per_part_max(samples, scores) -> dict[str, float]:
    """A part's score is the max over its tiles, at the line and here: {part key: score}."""
    best: dict[str, float] = {}
    for sample, score in zip(samples, scores):
        part = part_key(sample.key)
        best[part] = max(best.get(part, float("-inf")), float(score))
    return best


def train_project(project_dir: Path | str, *, epochs: int | None = None, time_budget_s: float | None = None,
                  device: str = "auto", seed: int = 0, mode: str = "auto", false_reject_target: float | None = None,
                  on_event: Callable[[dict], None] = lambda e: None,
                  should_stop: Callable[[], bool] = lambda: False, train_fn: Callable | None = None) -> ModelVersion:
    """*train_fn* is the backprop step (training.loop.train's signature); several
    processes share it through training/distributed.py."""
    t0 = time.monotonic()
    project = Project.open(project_dir)
    try:
        run = _Run(project, epochs, time_budget_s, device, seed, mode, false_reject_target, on_event, should_stop, t0)
        run.train_fn = train_fn or run.train_fn
        return run.execute()
    finally:
        project.close()


class _Run:
    """One retrain, step by step; each step is a method so the whole reads top to bottom."""

    def __init__(self, project, epochs, time_budget_s, device, seed, mode, target, on_event, should_stop, t0):
        self.project, self.epochs, self.time_budget_s, self.seed = project, epochs, time_budget_s, seed
        self.requested_device, self.requested_mode = device, mode
        self.target = float(target if target is not None else
                            project.get_setting("false_reject_target") or DEFAULT_FALSE_REJECT_TARGET)
        self.on_event, self.should_stop, self.t0 = on_event, should_stop, t0
        self.verdict_map: dict[str, str] = {}  # defect classes trained under another name
        self.train_fn = train
        self.curve_source = None  # the supervised fit whose learning curve follows the hand-over

    def execute(self) -> ModelVersion:
        project = self.project
        # 1. Which model, and is there enough data for it? Say exactly what is missing
        # before spending minutes.
        counts = project.label_counts(for_training=True)
        self.labeled_fingerprint = project.labeled_fingerprint()
        self.class_names = class_names_for(project, counts)
        self.mode, self.mode_reason = choose_mode(counts, self.requested_mode)
        if self.mode != GOOD_ONLY:
            merge_notes: list[str] = []
            if self.requested_mode == "auto":
                counts, self.class_names, self.verdict_map, merge_notes = merge_short_classes(
                    counts, self.class_names)
            self.shortfalls = check_supervised(counts, self.class_names) + merge_notes
        else:
            self.shortfalls = check_good_only(counts)
            self.class_names = [OK]  # an anomaly model says "differs from OK", not which defect
        self.device = resolve_device(self.requested_device)
        torch.set_num_threads(max(1, os.cpu_count() or 1))

        # 2. Stable splits: an image keeps its split across versions, so validation stays honest.
        project.assign_splits(0.2, {OK: ok_val_fraction(counts.get(OK, 0), self.target)}
                              if self.mode != GOOD_ONLY else None)
        # Held-out splits (a dataset's test images, golden parts) do not even choose the
        # input size or the tiles: their defect sizes are not the trainer's to see.
        labeled = [(r, lab) for r, lab in project.labeled() if r.split not in HELD_OUT_SPLITS]
        self.size, self.plan = choose_size_and_tiling(project, labeled, self.mode)
        self.on_event({"event": "progress", "phase": "prepare", "step": 0, "steps": 1, "eta_s": None})
        self.train_samples, self.train_parts, unpainted = load_split(project, "train", self.size, self.plan,
                                                                     self.verdict_map)
        self.val_samples, self.val_parts, unpainted_val = load_split(project, "val", self.size, self.plan,
                                                                     self.verdict_map)
        if unpainted + unpainted_val:
            self.shortfalls.append(
                f"{unpainted + unpainted_val} defective parts have no painted region. Large parts are trained "
                "tile by tile: for these the label went to the tile the model finds most defective. Paint the "
                "defect regions for a sharper heatmap.")
        self.compare_ok: list[tuple] = []
        if self.mode == GOOD_ONLY:
            self._bank_every_ok_part()
        self.held_out = self._held_out_records()
        self.on_event({"event": "start", "device": device_name(self.device), "n_train": len(self.train_parts),
                       "n_val": len(self.val_parts), "classes": self.class_names,
                       "tiling": self.plan.to_dict() if self.plan else None,
                       "epochs": self.epochs, "shortfalls": self.shortfalls, "mode": self.mode,
                       "mode_reason": self.mode_reason, "false_reject_target": self.target})

        # 3. Learn: backprop for the supervised model, a memory bank for good-only; auto
        # also tries both together and keeps that only where it measurably helps.
        fitted = self._fit_good_only() if self.mode == GOOD_ONLY else self._fit_supervised()
        if self.mode == COMBINED or (self.requested_mode == "auto" and self.mode == SUPERVISED):
            fitted = self._combine(fitted)
        model = self._assemble(fitted)

        # 4. The model is saved and handed over ("done"); what less data would have given
        # is measured after, so the line does not wait for it.
        return self._learning_curve_after_hand_over(model)

    # -- the data each mode holds out ---------------------------------------------------
    def _bank_every_ok_part(self) -> None:
        """A good-only model scores every OK part it learns from by a bank fitted without it
        (out-of-fold), so it needs no OK part held out: the validation OK parts join the
        training ones (magnetic tile, four seeds: AUROC 0.960 -> 0.967; ADR 0007). They
        remain the OK side on which the production model and the baseline are compared
        (`compare_ok`), and the baseline never learns from them."""
        self.compare_ok = [(r, v) for r, v in self.val_parts if v == OK]
        moved = {r.sha256 for r, _ in self.compare_ok}
        self.train_parts = self.train_parts + self.compare_ok
        self.val_parts = [(r, v) for r, v in self.val_parts if v != OK]
        self.train_samples = self.train_samples + [s for s in self.val_samples if part_key(s.key) in moved]
        self.val_samples = [s for s in self.val_samples if part_key(s.key) not in moved]

    def _held_out_records(self) -> list[tuple]:
        """(record, verdict) of parts the model never learns from, judged after export.

        Supervised: the validation split. Good-only: every labeled defect (an anomaly
        model never sees defects) and the OK parts the production model and the baseline
        are compared on (`compare_ok`); the new model scores those, like every OK part it
        learned from, out-of-fold (`_fit_good_only`).
        """
        held = list(self.val_parts)
        self.measured_on = "validation split"
        if self.mode != GOOD_ONLY:
            if not any(v == OK for _, v in held) or all(v == OK for _, v in held):
                raise NotEnoughDataError(
                    "The validation split needs both OK and defective parts: label a few more of each.")
            return held
        # The validation OK parts are compared on (production model, baseline) but, for the
        # new model, join its bank and are scored out-of-fold like the rest (`_fit_good_only`).
        self.measured_on = "every labeled defect (none trained on) and every OK part, scored out-of-fold"
        return self.compare_ok + [(r, v) for r, v in self.train_parts if v != OK] + held

    def _fit_supervised(self) -> dict:
        cfg = TrainConfig(input_size=self.size, class_names=self.class_names, device=self.device, seed=self.seed,
                          time_budget_s=self.time_budget_s, false_reject_target=self.target)
        if self.epochs is not None:
            cfg = replace(cfg, epochs=self.epochs)
        result = self.train_fn(self.train_samples, self.val_samples, cfg, self.on_event, self.should_stop)
        # The learning curve re-fits on the cached features after the hand-over (on unless
        # the project turns it off); nothing cached (the GPU and distributed paths): none.
        if self.project.get_setting("learning_curve") is not False and result.refit is not None:
            self.curve_source = result
        else:
            result.refit = None  # the cached features are the largest thing in memory

        def export(path: Path, metadata: dict) -> float:
            return export_checked(result.net, path, self.size, metadata, [s.image for s in self.val_samples[:16]])

        weight_change = relative_weight_change(result.net)
        torch_state = {"state_dict": result.net.state_dict(), "config": config_dict(cfg),
                       "class_names": self.class_names, "history": result.history}
        return {"net": result.net, "export": export, "checkpoint": torch_state, "extra_ok_scores": [],
                "config": config_dict(cfg),
                "weight_change": weight_change,
                "history": result.history, "epochs_run": result.epochs_run, "stopped_early": result.stopped_early,
                "threshold_source": f"{sum(v == OK for _, v in self.held_out)} validation OK parts"}

    def _fit_good_only(self, half_of_combined: bool = False) -> dict:
        """The good-only model; *half_of_combined*: the anomaly half of a combined model,
        whose threshold rests on validation parts, so its training OK parts are scored
        out-of-fold only as far as its calibration needs (one fold)."""
        from training.anomaly import AnomalyConfig, export_anomaly, fit_anomaly

        # Only parts labeled OK: a tile of a defective part is OK only as far as its painter saw.
        ok_parts = {r.sha256 for r, v in self.train_parts if v == OK}
        ok_inputs = [s for s in self.train_samples if part_key(s.key) in ok_parts]
        ok_images = [s.image for s in ok_inputs]
        ring = self.plan.redundant_ring(HEATMAP_STRIDE) if self.plan is not None else 0
        # Whole parts also get the part-wide term; tiles are pieces of a part (AnomalyConfig).
        cfg = AnomalyConfig(input_size=self.size, seed=self.seed, device=self.device,
                            score_every_fold=not half_of_combined, ring=ring, part_statistics=self.plan is None)
        fit = fit_anomaly(ok_images, cfg, self.on_event, self.should_stop,
                          groups=[part_key(s.key) for s in ok_inputs])
        ok_parity = [s.image for s in self.val_samples if s.verdict == OK][:8] or ok_images[:8]

        def export(path: Path, metadata: dict) -> float:
            return export_anomaly(fit.net, path, self.size, metadata, ok_parity)

        oof = _per_part_max(ok_inputs, fit.oof_ok_scores) if fit.oof_indices is None else {}
        records = {r.sha256: r for r, _ in self.train_parts}
        return {"net": fit.net, "export": export, "fit": fit, "ok_parity": ok_parity,
                "checkpoint": {"state_dict": fit.net.state_dict(), "config": asdict(cfg),
                                                 "class_names": self.class_names},
                "extra_ok_scores": list(oof.values()), "extra_ok_records": [records[key] for key in oof],
                "config": asdict(cfg),
                "history": [],
                "epochs_run": 0, "stopped_early": False,
                "bank": {"entries": int(fit.bank_entries), "bytes": int(fit.bank_bytes),
                         "part_statistics": fit.part_shrinkage is not None, "part_shrinkage": fit.part_shrinkage},
                "ok_out_of_fold": not half_of_combined,
                "threshold_source": f"{len(ok_parts)} OK parts, each scored out-of-fold by a bank without it"}

    def _combine(self, supervised: dict) -> dict:
        """Fit the anomaly model on the same training OK parts, judge both exported models
        on the validation split, and return the combined model when it catches more there
        (always when `--mode combined` asked for it), the good-only model when the anomaly
        model alone catches more than supervised and no fewer than both (auto only; refitted
        by `_anomaly_alone`); else the supervised one unchanged. A kept anomaly half
        searches the smallest prefix of its bank that holds the validation figures
        (`_smallest_bank`)."""
        from training.combined import CombinedNet

        anomaly = self._fit_good_only(half_of_combined=True)
        images = [self.project.load_image(r.id) for r, _ in self.held_out]
        is_defect = np.array([v != OK for _, v in self.held_out])
        with tempfile.TemporaryDirectory(prefix=".compare-", dir=self.project.models_dir) as tmp:
            def judged(name: str, export: Callable[[Path, dict], float]) -> np.ndarray:
                path = Path(tmp) / f"{name}.onnx"
                parity[name] = export(path, {**self._metadata(),
                                             "mode": SUPERVISED if name == "supervised" else GOOD_ONLY,
                                             "class_names": self.class_names if name == "supervised" else [OK]})
                verdicts[name] = judge(path, images)
                return np.array([v.score for v in verdicts[name]], np.float64)

            verdicts: dict[str, list] = {}
            parity: dict[str, float] = {}
            sup_scores = judged("supervised", supervised["export"])
            sup_ref, anom_ref, comparison = self._with_anomaly(sup_scores, judged("anomaly", anomaly["export"]),
                                                               is_defect, alone=self.mode != COMBINED)
            keep = self.mode == COMBINED or comparison.keep_combined
            self.mode_reason += "; " + comparison.sentence() + (" (combined was asked for)" if self.mode == COMBINED
                                                                 else "")
            if comparison.kept == GOOD_ONLY and self.mode != COMBINED:
                return self._anomaly_alone(comparison)
            if not keep:  # the held-out verdicts and the very file judged here, not a second export
                return {**supervised, "comparison": comparison.to_dict(),
                        "held_out_verdicts": verdicts["supervised"],
                        "export": _exported((Path(tmp) / "supervised.onnx").read_bytes(), parity["supervised"])}
            anomaly_net, anom_ref = self._smallest_bank(anomaly, sup_scores, is_defect, comparison, anom_ref, judged)
        self.mode = COMBINED
        net = CombinedNet(supervised["net"], anomaly_net, sup_ref, anom_ref)
        parity_images = [s.image for s in self.val_samples[:16]]

        def export(path: Path, metadata: dict) -> float:
            return export_checked(net, path, self.size, metadata, parity_images)

        # The supervised checkpoint's keys stay at the top (its state_dict and config), the
        # anomaly half and the scale constants beside them.
        anomaly_checkpoint = {**anomaly["checkpoint"], "state_dict": anomaly_net.state_dict()}
        checkpoint = {**supervised["checkpoint"], "mode": COMBINED, "anomaly": anomaly_checkpoint,
                      "references": {"supervised": asdict(sup_ref), "anomaly": asdict(anom_ref)},
                      "shared_backbone_prefix": net.shared}
        bank = {"entries": anomaly_net.bank_entries, "fitted_entries": anomaly["bank"]["entries"],
                "bytes": anomaly_net.bank_bytes}
        return {**supervised, "net": net, "export": export, "checkpoint": checkpoint, "bank": bank,
                "config": {"supervised": supervised["config"], "anomaly": anomaly["config"],
                           "references": checkpoint["references"]},
                "comparison": comparison.to_dict()}

    def _with_anomaly(self, sup_scores: np.ndarray, anom_scores: np.ndarray, is_defect: np.ndarray,
                      alone: bool = False):
        """Both halves' scales on validation OK parts, and supervised alone vs both (and
        vs the anomaly model alone when *alone*)."""
        from training.combined import Reference, combined_scores, compare

        sup_ref = Reference.from_ok_scores(sup_scores[~is_defect])
        anom_ref = Reference.from_ok_scores(anom_scores[~is_defect])
        both = combined_scores(sup_scores, anom_scores, sup_ref, anom_ref)
        return sup_ref, anom_ref, compare(sup_scores, both, is_defect, self.target,
                                          anomaly=anom_scores if alone else None)

    def _anomaly_alone(self, comparison) -> dict:
        """`auto` found that the anomaly model alone catches most validation defects: the
        model kept is then the one `--mode good-only` trains (every OK part in its bank,
        the threshold on their out-of-fold scores, the catch on every labeled defect), at
        the input size and tiling the comparison judged. The comparison's anomaly half,
        whose bank held only the training split's OK parts (up to half of them are held
        out for a supervised threshold), chose the kind of model, not the model. No
        learning curve: that re-fits the supervised model, which is not kept."""
        self.mode, self.class_names = GOOD_ONLY, [OK]
        self.curve_source = None
        self._bank_every_ok_part()
        self.held_out = self._held_out_records()
        self.mode_reason += (f"; it is fitted again as a good-only model with all "
                             f"{sum(v == OK for _, v in self.train_parts)} OK parts in its bank")
        return {**self._fit_good_only(), "comparison": comparison.to_dict()}

    def _smallest_bank(self, anomaly: dict, sup_scores, is_defect, full, anom_ref, judged):
        """The anomaly net to keep: the first prefix of the bank (1/8, 1/4, 1/2 of it)
        whose combined model catches as many validation defects as the full bank's, with
        a validation AUROC at most BANK_AUROC_TOLERANCE lower; else the full bank. The
        search is most of a combined model's time per part, and on some parts a small
        bank judges as well as a large one (kolektorsdd), on others it does not
        (magnetic tile's good-only AUROC falls from 0.96 to 0.93 at a quarter): the
        validation split decides, not the part type."""
        from training.anomaly import export_anomaly, with_bank_prefix

        fit = anomaly["fit"]
        for fraction in BANK_FRACTIONS:
            small = with_bank_prefix(fit.net, fit.fold_entries, fraction)
            if small.bank_entries >= fit.net.bank_entries:
                break
            scores = judged(f"anomaly-{small.bank_entries}",
                            lambda path, meta: export_anomaly(small, path, self.size, meta, anomaly["ok_parity"]))
            _, small_ref, cmp = self._with_anomaly(sup_scores, scores, is_defect)
            if (cmp.caught["combined"] >= full.caught["combined"]
                    and cmp.auroc["combined"] >= full.auroc["combined"] - BANK_AUROC_TOLERANCE):
                self.mode_reason += (f"; the anomaly score searches {small.bank_entries:,} of its "
                                     f"{fit.net.bank_entries:,} bank entries, the fewest that caught as many "
                                     f"validation defects ({cmp.caught['combined']}/{cmp.n_defects}, AUROC "
                                     f"{cmp.auroc['combined']:.3f})")
                return small, small_ref
        self.mode_reason += f"; the anomaly score searches all {fit.net.bank_entries:,} bank entries"
        return fit.net, anom_ref

    def _learning_curve_after_hand_over(self, model: ModelVersion) -> ModelVersion:
        """Re-fit on shares of the training data (training.loop.learning_curve), add the
        curve to *model*'s report, and say so with a "curve" event. The model is already
        saved: a cancel or a failure here costs the curve, never the model."""
        result, self.curve_source = self.curve_source, None
        if result is None:
            return model
        t_curve = time.monotonic()
        try:
            curve = learning_curve(result, self.train_samples, self.val_samples, on_event=self.on_event,
                                   should_stop=self.should_stop)
            changes = {"learning_curve": curve, "learning_curve_s": round(time.monotonic() - t_curve, 1),
                       "learning_curve_note": None}
        except Cancelled:
            changes = {"learning_curve_note": "not measured: the retrain was cancelled after the model was saved"}
        except Exception as exc:  # noqa: BLE001 - the saved model stands; the log keeps the trace
            traceback.print_exc()
            changes = {"learning_curve_note": f"not measured: {type(exc).__name__}: {exc}"}
        finally:
            result.refit = None
        model = self.project.add_to_report(model.version, changes)
        self.on_event({"event": "curve", "version": model.version,
                       "elapsed_s": round(time.monotonic() - self.t0, 1),
                       "learning_curve_s": changes.get("learning_curve_s"),
                       "note": changes.get("learning_curve_note")})
        return model

    def _metadata(self) -> dict:
        return {"format": 1, "class_names": self.class_names, "input_size": self.size,
                "heatmap_stride": HEATMAP_STRIDE, "threshold": 0.5, "version": None, "mode": self.mode,
                "tiling": self.plan.to_dict() if self.plan else None}

    # -- export, threshold on the exported model, register ------------------------------
    def _assemble(self, fitted: dict) -> ModelVersion:
        project, on_event = self.project, self.on_event
        on_event({"event": "progress", "phase": "export", "step": 0, "steps": 1, "eta_s": None})
        partial = project.models_dir / f".partial-{project.next_version()}-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            if self.should_stop():
                raise Cancelled()
            metadata = self._metadata()
            parity_diff = fitted["export"](partial / "model.onnx", metadata)
            torch.save(fitted["checkpoint"], partial / "checkpoint.pt")

            # The threshold and every headline figure come from the exported file.
            on_event({"event": "progress", "phase": "evaluate", "step": 0, "steps": 1, "eta_s": None})
            images = [project.load_image(r.id) for r, _ in self.held_out]
            truth = [v for _, v in self.held_out]
            # Held-out parts the file judges; OK parts in a good-only bank come out-of-fold.
            own = [i for i, v in enumerate(truth) if v != OK or not fitted.get("ok_out_of_fold")]
            verdicts = fitted.get("held_out_verdicts") or judge(partial / "model.onnx", [images[i] for i in own])
            extra = np.asarray(fitted["extra_ok_scores"], np.float64)
            scores = np.concatenate([[v.score for v in verdicts], extra]).astype(np.float64)
            scored_truth = [truth[i] for i in own] + [OK] * extra.size
            defect = np.array([t != OK for t in scored_truth])
            point = operating_point(scores[~defect], scores[defect], self.target, fitted["threshold_source"])
            predicted = (_predicted(verdicts, self.class_names, point.threshold)
                         + [None if s < point.threshold else "defect" for s in extra])
            ok_records = ([self.held_out[i][0] for i in own if truth[i] == OK]
                          + list(fitted.get("extra_ok_records", [])))
            metrics = {**line_metrics(scores, scored_truth, predicted, point, self.class_names, self.measured_on),
                       "mode": self.mode, "mode_reason": self.mode_reason,
                       "highest_ok_parts": self._with_lookalikes(highest_ok_parts(
                           [r.id for r in ok_records], [r.filename for r in ok_records], scores[~defect],
                           point.threshold))}
            train_stats, train_features = self._train_part_statistics()
            reference = build_reference(train_stats, [float(s) for s in scores[~defect]])
            report = self._report(fitted, truth, images, parity_diff, train_features)
            if self.compare_ok:  # the model's own figures on the very parts the baseline was judged on
                compared = {r.sha256 for r, _ in self.compare_ok}
                same = [s for r, s in zip(ok_records, scores[~defect]) if r.sha256 in compared]
                report["model_on_same_val"] = ranking_figures(np.asarray(same), scores[defect])
            version, final = claim_version_folder(project, partial)
            metadata.update(threshold=point.threshold, version=version, reference=reference)
            set_onnx_metadata(final / "model.onnx", metadata)
            write_text(final / "training_set.json", json.dumps(
                {"train": [r.sha256 for r, _ in self.train_parts], "val": [r.sha256 for r, _ in self.val_parts]},
                indent=1))
            write_text(final / "model.json", json.dumps({**metadata, "metrics": metrics, "report": report},
                                                        indent=2, default=float))
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        model = project.register_model(version, final, point.threshold, metrics, report)
        on_event({"event": "done", "version": version, "elapsed_s": round(time.monotonic() - self.t0, 1),
                  "device": device_name(self.device), "mode": self.mode, "mode_reason": self.mode_reason,
                  "metrics": {k: metrics[k] for k in ("auroc", "catch_rate", "false_reject_rate", "threshold",
                                                      "catch_rate_ci", "false_reject_rate_ci",
                                                      "false_reject_target", "n_ok_heldout", "n_defect_heldout",
                                                      "highest_ok_parts")},
                  "operating_point": point.describe(), "production": report["production_on_same_val"],
                  "baseline": report["baseline_on_same_val"], "shortfalls": self.shortfalls,
                  "changes": report["changes"], "curve_follows": self.curve_source is not None})
        return model

    def _with_lookalikes(self, parts: list[dict]) -> list[dict]:
        """The OK parts that place the threshold, each with the labeled defective part it
        looks most like where that is its closest labeled part (training/lookalikes.py).
        A failure here costs the hint, never the model."""
        try:
            held = {r.sha256 for r, _ in self.train_parts + self.val_parts}
            labeled = {r.sha256: (r.id, r.filename, label.verdict) for r, label in self.project.labeled()
                       if r.sha256 in held}
            return with_lookalikes(parts, self.train_samples + self.val_samples, labeled, OK)
        except Exception:  # noqa: BLE001 - the log keeps the trace
            traceback.print_exc()
            return parts

    def _train_part_statistics(self) -> tuple[list, list]:
        """One pass over the training parts, one image in memory at a time: the drift
        monitor's image statistics and the baseline's features of each (not of the parts
        the baseline is compared on, `compare_ok`)."""
        from training.baseline import image_features

        compared = {r.sha256 for r, _ in self.compare_ok}
        stats, features = [], []
        for record, verdict in self.train_parts:
            image = self.project.load_image(record.id)
            stats.append(image_stats(image))
            if record.sha256 not in compared:
                features.append((image_features(image), verdict != OK))
        return stats, features

    def _report(self, fitted: dict, truth: list[str], images: list[np.ndarray], parity_diff: float,
                train_features: list) -> dict:
        project = self.project
        production = production_on(project, images, truth)
        baseline = baseline_on(train_features, list(zip(images, [t != OK for t in truth])))
        counts_train, counts_val = per_class_counts(self.train_parts), per_class_counts(self.val_parts)
        names = sorted(set(counts_train) | set(counts_val), key=lambda n: (n != OK, n))
        per_class = {n: {"train": counts_train.get(n, 0), "val": counts_val.get(n, 0)} for n in names}
        return {"mode": self.mode, "mode_reason": self.mode_reason, "n_train": len(self.train_parts),
                "n_val": len(self.val_parts), "per_class": per_class,
                "tiling": self.plan.to_dict() if self.plan else None,
                "n_train_inputs": len(self.train_samples), "device": device_name(self.device),
                "elapsed_s": round(time.monotonic() - self.t0, 1), "epochs_run": fitted["epochs_run"],
                "stopped_early": fitted["stopped_early"], "history": fitted["history"], "config": fitted["config"],
                "bank": fitted.get("bank"), "weight_change": fitted.get("weight_change"),
                "mode_comparison": fitted.get("comparison"), "learning_curve": None,
                "learning_curve_note": CURVE_PENDING if self.curve_source is not None else None,
                "parity_max_abs_diff": parity_diff,
                "production_on_same_val": production, "baseline_on_same_val": baseline,
                "changes": changes_since(_latest_model(project), per_class, len(self.train_parts)),
                "shortfalls": self.shortfalls, "trained_at": datetime.now(timezone.utc).isoformat(),
                "host": platform.node(), "torch": torch.__version__,
                "labeled_data_sha256": self.labeled_fingerprint,
                "training_set_sha256": hashlib.sha256(
                    "".join(sorted(r.sha256 for r, _ in self.train_parts)).encode()).hexdigest()}


def _latest_model(project: Project) -> ModelVersion | None:
    models = project.models()
    return models[0] if models else None
