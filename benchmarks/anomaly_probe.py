"""Measure the good-only anomaly model (training/anomaly.py) on a data set with a fixed
split (magnetic tile by default; `--dataset` points at another, e.g. kolektorsdd).

`--judge test` (the default) fits on the train+val `good` images, scores the test split,
and reports image AUROC, pixel AUROC and PRO, catch and false reject at the threshold set
from the out-of-fold OK scores for 1% false reject, the fit time and the per-part ONNX
Runtime time on one thread.

`--judge decision` keeps the test split out of the choice: it fits on the train split's
`good` images only and judges the val split's `good` images against every train and val
defect (the parts a trainer holds), then the test split for the record.

Parts are letterboxed whole into `--size` px, or with `--tiled` cut into the tiles the
trainer would cut from the OK parts' sizes alone (`choose_tile_plan`), each part scored by
its highest tile and its heatmap stitched, the tiles' outer ring left out as the trainer
does. `--one-scale` scales every part alike (the median part's long side fills `--size`)
and cuts the parts that are then larger than one input into tiles. `--taps 4:3,10:1,14:1` taps blocks with their own neighbourhood (block:k; a block
may appear twice); `--heatmap model,raw,max3,mean3` measures the model's heatmap, each
patch's own distance, and the heatmaps that take each patch's highest or mean distance
around it (k x k) before it is mapped onto the part.

    python benchmarks/anomaly_probe.py --size 288 [--layers 4,10] [--neighbourhood 3] [--part-statistics] ...
    python benchmarks/anomaly_probe.py --judge decision --part-statistics --taps 4:3,10:1,14:1 --heatmap raw,max3
    python benchmarks/anomaly_probe.py --judge decision --tiled --dataset ../shared/datasets/kolektorsdd
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.evaluation import auroc, localization_metrics, rates_at, threshold_for_false_reject  # noqa: E402
from app.core.imageio import read_image, read_mask  # noqa: E402
from app.core.preprocess import (TILE_MARGIN, Letterbox, TilePlan, choose_tile_plan, heatmap_to_image,  # noqa: E402
                                 letterbox, stitch)
from benchmarks.tile_data import DEFAULT_DATASET, GOOD_CLASS, in_split, read_split  # noqa: E402


def load(size: int, root: Path):
    """(train+val OK images, test images, test labels), letterboxed to *size*."""
    items = read_split(root)
    train = [letterbox(read_image(i.path), size)[0] for i in in_split(items, "train", "val") if i.label == GOOD_CLASS]
    test_items = in_split(items, "test")
    test = [letterbox(read_image(i.path), size)[0] for i in test_items]
    return train, test, np.array([i.label for i in test_items])


@dataclass
class Parts:
    """Parts as the model sees them: each one's inputs (its letterboxed image, or its
    tiles), where they sit on it (Letterbox or TileLayout), its label and full-size mask."""

    inputs: list
    places: list
    labels: np.ndarray
    masks: list

    @classmethod
    def read(cls, items, root: Path, size: int, plan=None, masks: bool = True) -> "Parts":
        inputs, places, all_masks = [], [], []
        for item in items:
            image = read_image(item.path)
            if plan is None:
                boxed, place = letterbox(image, size)
                inputs.append([boxed])
            else:
                tiles, place = plan.tiles(image)
                inputs.append(tiles)
            places.append(place)
            if masks:
                mask_file = item.mask_path(root)
                all_masks.append(read_mask(mask_file, image.shape[:2]) if item.label != GOOD_CLASS and mask_file.is_file()
                                 else np.zeros(image.shape[:2], np.uint8))
        return cls(inputs, places, np.array([i.label for i in items]), all_masks)

    def flat(self) -> tuple[list, np.ndarray]:
        """Every input in order, and the index of the part it belongs to."""
        owner = np.repeat(np.arange(len(self.inputs)), [len(x) for x in self.inputs])
        return [x for xs in self.inputs for x in xs], owner


def part_max(values: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Each part's highest value among its inputs (*owner*: the part of each input)."""
    out = np.full(int(owner.max()) + 1, -np.inf)
    np.maximum.at(out, owner, values)
    return out


def heatmap_grids(net, out, heatmap: str) -> np.ndarray:
    """The model's heatmap ("model"), each patch's own distance ("raw"), or its highest
    ("max3") or mean ("mean3") distance around it (k x k) over the patches the model
    scores (its ring left out), calibrated and with the ring zeroed as the model does."""
    import torch
    import torch.nn.functional as F

    if heatmap == "model":
        return out.heatmap.numpy()
    kind, k = ("max", 1) if heatmap == "raw" else (heatmap[:-1], int(heatmap[-1]))
    d = out.patch_distance[:, None]
    r = net.ring
    if r:
        d = d[..., r:d.shape[2] - r, r:d.shape[3] - r]
    if kind == "max":
        d = F.max_pool2d(d, k, 1, k // 2)
    elif kind == "mean":
        d = F.avg_pool2d(d, k, 1, k // 2, count_include_pad=False)
    else:
        raise SystemExit(f"unknown heatmap {heatmap!r}")
    heat = torch.sigmoid((d[:, 0] - net.mu) / net.sigma)
    if r:
        heat = F.pad(heat, (r, r, r, r))
    return heat.numpy()


def judge(fit, parts: Parts, threshold: float, heatmaps: tuple[str, ...] = ("model",)) -> dict:
    """Image AUROC, catch and false reject at *threshold*, and pixel AUROC and PRO of each
    kind of heatmap mapped back onto each part (the first kind's under the plain keys)."""
    from training.anomaly import anomaly_outputs

    images, owner = parts.flat()
    out = anomaly_outputs(fit.net, images)
    scores = part_max(out.score.numpy().astype(np.float64), owner)
    is_defect = parts.labels != GOOD_CLASS
    catch, fr = rates_at(scores[~is_defect], scores[is_defect], threshold)
    result = {"auroc": round(auroc(is_defect, scores), 4), "catch": round(catch, 4), "false_reject": round(fr, 4)}
    for n_kind, kind in enumerate(heatmaps):
        grids = heatmap_grids(fit.net, out, kind)
        heat = []
        for n, place in enumerate(parts.places):
            mine = grids[owner == n]
            heat.append(heatmap_to_image(mine[0], place) if isinstance(place, Letterbox) else stitch(list(mine), place))
        loc = localization_metrics(heat, parts.masks)
        suffix = "" if n_kind == 0 else f"_{kind}"
        result[f"pixel_auroc{suffix}"] = loc["pixel_auroc"] and round(loc["pixel_auroc"], 4)
        result[f"pro{suffix}"] = loc["pro"] and round(loc["pro"], 4)
    result["catch_by_class"] = {c: round(float(np.mean(scores[parts.labels == c] >= threshold)), 3)
                                for c in sorted(set(parts.labels)) if c != GOOD_CLASS}
    return result


def install_taps(spec: str) -> None:
    """Make the trainer's patch embedder tap `block:k` pairs (see the module docstring)."""
    import torch

    from training import anomaly

    pairs = [tuple(int(v) for v in pair.split(":")) for pair in spec.split(",")]
    blocks = tuple(sorted({block for block, _ in pairs}))

    class TappedEmbedder(anomaly.PatchEmbedder):
        def __init__(self, backbone, _layers, neighbourhood):
            super().__init__(backbone, blocks, neighbourhood)
            self.dim = sum(self.blocks[block]._bn2.num_features for block, _ in pairs)

        def pool_maps(self, maps, grid):
            by_block = dict(zip(self.layers, maps))
            return torch.cat([anomaly.onto_grid(by_block[block], k, grid) for block, k in pairs], 1)

    anomaly.PatchEmbedder = TappedEmbedder


def ort_time(net, size: int, images, repeats: int = 20) -> float:
    import onnxruntime as ort

    from training.export import onnx_bytes

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes(net, size, {}), options, providers=["CPUExecutionProvider"])
    for img in images[:3]:
        session.run(None, {"image": img[None]})
    t = time.perf_counter()
    for i in range(repeats):
        session.run(None, {"image": images[i % len(images)][None]})
    return (time.perf_counter() - t) / repeats


def main() -> None:
    import torch

    from training.anomaly import HEATMAP_STRIDE, AnomalyConfig, fit_anomaly

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--judge", choices=["test", "decision"], default="test")
    p.add_argument("--size", type=int, default=288)
    p.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    p.add_argument("--tiled", action="store_true", help="cut parts into the tiles the trainer would")
    p.add_argument("--one-scale", action="store_true",
                   help="every part at one scale (the median part's long side fills the input), larger ones in tiles")
    p.add_argument("--layers", default=None)
    p.add_argument("--neighbourhood", type=int, default=None)
    p.add_argument("--taps", default=None, help="block:k pairs, e.g. 4:3,10:1,14:1")
    p.add_argument("--heatmap", default="model",
                   help="heatmaps to measure, comma-separated: model, raw, maxK or meanK (K x K patches around each)")
    p.add_argument("--ratio", type=float, default=None)
    p.add_argument("--entries", type=int, default=None)
    p.add_argument("--pool-rows", type=int, default=None)
    p.add_argument("--pool", default=None)
    p.add_argument("--folds", type=int, default=None)
    p.add_argument("--part-statistics", action="store_true", help="add the part-wide term (whole parts)")
    p.add_argument("--no-ort-time", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.taps:
        install_taps(args.taps)
    heatmaps = tuple(args.heatmap.split(","))
    items = read_split(args.dataset)
    bank_items = [i for i in in_split(items, *(("train",) if args.judge == "decision" else ("train", "val")))
                  if i.label == GOOD_CLASS]
    sizes = [read_image(i.path).shape[:2] for i in bank_items]
    plan = choose_tile_plan(sizes, [], args.size) if args.tiled else None
    if args.one_scale:
        plan = TilePlan(args.size + 2 * TILE_MARGIN, args.size / float(np.median([max(s) for s in sizes])),
                        margin=TILE_MARGIN)
    size = plan.tile if plan is not None else args.size
    bank = Parts.read(bank_items, args.dataset, args.size, plan, masks=False)
    images, owner = bank.flat()
    cfg = AnomalyConfig(input_size=size, ring=plan.redundant_ring(HEATMAP_STRIDE) if plan is not None else 0)
    if args.layers:
        cfg.layers = tuple(int(x) for x in args.layers.split(","))
    for name, attr in [("neighbourhood", "neighbourhood"), ("ratio", "coreset_ratio"), ("entries", "max_bank_entries"),
                       ("pool_rows", "pool_rows"), ("pool", "pool"), ("folds", "folds")]:
        v = getattr(args, name)
        if v is not None:
            setattr(cfg, attr, v)
    cfg.part_statistics = args.part_statistics
    fit = fit_anomaly(images, cfg, groups=list(owner))
    threshold = threshold_for_false_reject(part_max(np.asarray(fit.oof_ok_scores, np.float64), owner), 0.01)
    result = {
        "config": {k: v for k, v in vars(cfg).items()}, "taps": args.taps, "heatmaps": args.heatmap,
        "plan": plan.to_dict() if plan is not None else None, "judge": args.judge, "n_bank_ok": len(bank_items),
        "threshold": round(threshold, 4), "fit_s": round(fit.elapsed_s, 1),
        "timings": {k: round(v, 1) for k, v in fit.timings.items()},
        "bank_entries": fit.bank_entries, "bank_bytes": fit.bank_bytes,
    }
    if args.judge == "decision":
        held = [i for i in in_split(items, "val") if i.label == GOOD_CLASS]
        held += [i for i in in_split(items, "train", "val") if i.label != GOOD_CLASS]
        result["decision"] = judge(fit, Parts.read(held, args.dataset, args.size, plan), threshold, heatmaps)
    test = Parts.read(in_split(items, "test"), args.dataset, args.size, plan)
    t = time.monotonic()
    result["test"] = judge(fit, test, threshold, heatmaps)
    result["torch_test_scoring_s"] = round(time.monotonic() - t, 1)
    if not args.no_ort_time:
        result["ort_1thread_ms_per_part"] = round(1000 * ort_time(fit.net, size, test.flat()[0]), 1)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
