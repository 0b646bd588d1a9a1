"""Probe the CPU recipe's trainable tail on magnetic tile (docs/adr/0005): several tails
trained from different random starts on one cache and averaged, and which part of the
augmentation makes the cached augmented view unlike real parts.

The dataset's own train/val split: the tails train on its train images and are
validated (epoch kept, threshold at 1 % false reject) on its val images; the test split
is judged for the record. Part logits are averaged across tails. Prints one JSON line
per model.

    python benchmarks/tail_probe.py ensemble --tails 4 --views 2     # all tails on both views
    python benchmarks/tail_probe.py ensemble --tails 4 --views 1     # the untouched image only
    python benchmarks/tail_probe.py augmentation                      # each tail on one augmented view alone
    python benchmarks/tail_probe.py pooling --sharpness 1,4,16 --seeds 3  # the part logit's smooth maximum
    python benchmarks/tail_probe.py pooling --mask-weight 0.5,1,2 --seeds 3  # weight of the patch term of the loss
    python benchmarks/tail_probe.py paste --seeds 3                   # painted defects copied onto OK parts
    python benchmarks/tail_probe.py ranking --rank-weight 0.5,2 --seeds 3  # defects ranked above the batch's top OK parts
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.evaluation import auroc  # noqa: E402
from app.core.operating_point import choose_threshold, logit, sigmoid  # noqa: E402
from benchmarks.tile_data import DEFAULT_DATASET, GOOD_CLASS, in_split, read_split, without_leaks  # noqa: E402
from training import loop  # noqa: E402
from training.data import OK, Sample, load_sample  # noqa: E402
from training.network import InspectionNet, load_pretrained_backbone  # noqa: E402
from training.synthetic_defects import content_box  # noqa: E402

SIZE = 288  # what the trainer chooses for magnetic tile
CLASSES = ["ok", "blowhole", "break", "crack", "fray", "uneven"]


def samples(items, root: Path) -> list[Sample]:
    out = []
    for item in items:
        verdict = OK if item.label == GOOD_CLASS else item.label
        mask = root / "masks" / item.label / (item.path.stem + ".png")
        out.append(load_sample(item.path, verdict, SIZE, mask_path=mask if verdict != OK and mask.is_file() else None))
    return out


def augment(image, mask, rng, rotate=True, lighting=True, blur_noise=True):
    """training.data.augment with parts of it switched off (same draws otherwise)."""
    size = image.shape[0]
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], None if mask is None else mask[:, ::-1]
    if rng.random() < 0.5:
        image, mask = image[::-1], None if mask is None else mask[::-1]
    if rotate:
        m = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(-10, 10), rng.uniform(0.95, 1.05))
        m[:, 2] += rng.uniform(-0.04, 0.04, size=2) * size
        image = cv2.warpAffine(np.ascontiguousarray(image), m, (size, size), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        if mask is not None:
            mask = cv2.warpAffine(np.ascontiguousarray(mask), m, (size, size), flags=cv2.INTER_NEAREST, borderValue=0)
    img = np.ascontiguousarray(image).astype(np.float32)
    if lighting:
        img = (img - 128.0) * rng.uniform(0.8, 1.2) + 128.0 + rng.uniform(-20, 20)
    if blur_noise:
        if rng.random() < 0.2:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.0))
        if rng.random() < 0.3:
            img = img + rng.normal(0, rng.uniform(1, 5), img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), None if mask is None else np.ascontiguousarray(mask)


class Probe:
    def __init__(self, root: Path):
        items = read_split(root)
        seen = in_split(items, "train", "val")
        test_items, _ = without_leaks(in_split(items, "test"), seen)
        self.train = samples(in_split(items, "train"), root)
        self.val = samples(in_split(items, "val"), root)
        test = samples(test_items, root)
        self.cfg = loop.TrainConfig(input_size=SIZE, class_names=CLASSES)
        self.base = InspectionNet(len(CLASSES) - 1, load_pretrained_backbone()).eval()
        self.val_cache, self.test_cache = self.cache(self.val), self.cache(test)
        self.val_defect = np.array([s.verdict != OK for s in self.val])
        self.test_defect = np.array([s.verdict != OK for s in test])

    def cache(self, parts: list[Sample], views: int = 1):
        grid = SIZE // 16
        index = {name: i for i, name in enumerate(CLASSES)}
        return loop._build_cache(self.base, parts, self.cfg, index, grid, np.random.default_rng(0),
                                 lambda e: None, lambda: False, views)

    def fit(self, cache, seed: int, sharpness: float = 4.0, mask_weight: float = 1.0,
            train: list[Sample] | None = None) -> tuple[np.ndarray, np.ndarray, int, float]:
        """(validation logits, test logits, epochs run, seconds) of one tail."""
        loop.seed_everything(seed)
        net = InspectionNet(len(CLASSES) - 1, load_pretrained_backbone(), pool_sharpness=sharpness)
        cfg = loop.TrainConfig(input_size=SIZE, class_names=CLASSES, seed=seed, mask_loss_weight=mask_weight)
        t0 = time.monotonic()
        fit = loop._Fit(net, train or self.train, self.val, cfg, cfg.frozen_blocks, cache, self.val_cache)
        _, epochs, _ = fit.run(np.random.default_rng(seed), lambda e: None, lambda: False, t0)
        logits = [logit(loop._cached_outputs(net, c, cfg.frozen_blocks, "cpu")[0].astype(np.float64))
                  for c in (self.val_cache, self.test_cache)]
        return logits[0], logits[1], epochs, time.monotonic() - t0

    def report(self, name: str, val_logits: np.ndarray, test_logits: np.ndarray, **extra) -> None:
        ok, bad = self.val_defect == 0, self.val_defect
        threshold, _ = choose_threshold(sigmoid(val_logits[ok]), self.cfg.false_reject_target, sigmoid(val_logits[bad]))
        cut = logit(np.array([threshold]))[0]
        t_ok, t_bad = ~self.test_defect, self.test_defect
        print(json.dumps({"model": name, **extra,
                          "val_auroc": round(auroc(self.val_defect.astype(int), val_logits), 4),
                          "val_caught": f"{int(np.sum(val_logits[bad] >= cut))}/{int(bad.sum())}",
                          "test_auroc": round(auroc(self.test_defect.astype(int), test_logits), 4),
                          "test_caught": f"{int(np.sum(test_logits[t_bad] >= cut))}/{int(t_bad.sum())}",
                          "test_false_rejects": f"{int(np.sum(test_logits[t_ok] >= cut))}/{int(t_ok.sum())}"}),
              flush=True)


def ensemble(probe: Probe, tails: int, views: int) -> None:
    cache = probe.cache(probe.train, views)
    val, test = [], []
    for seed in range(tails):
        v, t, epochs, seconds = probe.fit(cache, seed)
        val.append(v)
        test.append(t)
        probe.report(f"tail {seed}", v, t, views=views, epochs=epochs, seconds=round(seconds))
        if seed:
            probe.report(f"average of {seed + 1} tails", np.mean(val, 0), np.mean(test, 0), views=views)


def augmentation(probe: Probe) -> None:
    variants = {"all of it": {}, "without rotation": {"rotate": False}, "without blur and noise": {"blur_noise": False},
                "without lighting": {"lighting": False}}
    v, t, epochs, seconds = probe.fit(probe.cache(probe.train), 0)
    probe.report("untouched view alone", v, t, epochs=epochs, seconds=round(seconds))
    for name, switches in variants.items():
        rng = np.random.default_rng(1)
        views = [Sample(*augment(s.image, s.mask, rng, **switches), s.verdict, s.key) for s in probe.train]
        v, t, epochs, seconds = probe.fit(probe.cache(views), 0)
        probe.report(f"augmented view alone, {name}", v, t, epochs=epochs, seconds=round(seconds))


def pooling(probe: Probe, sharpness: list[float], mask_weights: list[float], seeds: int, views: int) -> None:
    """Each setting trained from the same seeds on one cache; the shipped one is 4 and 1."""
    cache = probe.cache(probe.train, views)
    for r in sharpness:
        for w in mask_weights:
            for seed in range(seeds):
                v, t, epochs, seconds = probe.fit(cache, seed, sharpness=r, mask_weight=w)
                probe.report(f"sharpness {r:g}, mask weight {w:g}", v, t, seed=seed, views=views, epochs=epochs,
                             seconds=round(seconds))


def paste_defect(ok: Sample, donor: Sample, rng: np.random.Generator, margin: int = 6) -> Sample | None:
    """The donor's painted defect (and a margin of its surface) blended onto an OK part at
    a random place inside the part, its grey level moved to the OK part's there. None when
    the defect does not fit."""
    m = donor.mask > 0
    ys, xs = np.nonzero(m)
    dy0, dy1, dx0, dx1 = content_box(donor.image)
    y0, y1 = max(dy0, ys.min() - margin), min(dy1, ys.max() + 1 + margin)
    x0, x1 = max(dx0, xs.min() - margin), min(dx1, xs.max() + 1 + margin)
    crop, crop_mask = donor.image[y0:y1, x0:x1].astype(np.float32), m[y0:y1, x0:x1]
    if rng.random() < 0.5:
        crop, crop_mask = crop[:, ::-1], crop_mask[:, ::-1]
    if rng.random() < 0.5:
        crop, crop_mask = crop[::-1], crop_mask[::-1]
    h, w = crop_mask.shape
    oy0, oy1, ox0, ox1 = content_box(ok.image)
    if h > oy1 - oy0 or w > ox1 - ox0:
        return None
    ty, tx = int(rng.integers(oy0, oy1 - h + 1)), int(rng.integers(ox0, ox1 - w + 1))
    target = ok.image[ty:ty + h, tx:tx + w].astype(np.float32)
    alpha = cv2.dilate(crop_mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(np.float32)
    alpha = np.clip(cv2.GaussianBlur(alpha, (0, 0), 2.0) * 1.5, 0, 1)[..., None]
    around = alpha[..., 0] < 0.05
    if around.any():  # the donor's surface level moved to the OK part's
        crop = crop + (target[around].mean(0) - crop[around].mean(0))
    image = ok.image.copy()
    image[ty:ty + h, tx:tx + w] = np.clip(target * (1 - alpha) + crop * alpha, 0, 255).astype(np.uint8)
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[ty:ty + h, tx:tx + w] = np.ascontiguousarray(crop_mask).astype(np.uint8) * 255
    return Sample(image, mask, donor.verdict, f"{ok.key}+{donor.key}")


def paste(probe: Probe, seeds: int, views: int, per_defect: int, sheet_path: Path | None) -> None:
    """Tails trained with *per_defect* pasted copies of each painted training defect
    beside the real parts, from the same seeds as the shipped recipe's. *sheet_path*,
    when given, receives twelve pasted parts side by side, to look at what was made."""
    rng = np.random.default_rng(7)
    oks = [s for s in probe.train if s.verdict == OK]
    donors = [s for s in probe.train if s.verdict != OK and s.mask is not None and s.mask.any()]
    pasted = []
    for _ in range(per_defect):
        for donor in donors:
            made = paste_defect(oks[int(rng.integers(len(oks)))], donor, rng)
            if made is not None:
                pasted.append(made)
    print(json.dumps({"pasted": len(pasted), "donors": len(donors), "ok_parts": len(oks)}), flush=True)
    if sheet_path is not None and len(pasted) >= 12:
        sheet = np.concatenate([np.concatenate([p.image for p in pasted[i:i + 6]], 1) for i in (0, 6)], 0)
        cv2.imwrite(str(sheet_path), sheet)
    parts = probe.train + pasted
    cache = probe.cache(parts, views)
    for seed in range(seeds):
        v, t, epochs, seconds = probe.fit(cache, seed, train=parts)
        probe.report(f"{per_defect} pasted copies per defect", v, t, seed=seed, views=views, epochs=epochs,
                     seconds=round(seconds))


def ranking(probe: Probe, weights: list[float], top_k: int, seeds: int, views: int) -> None:
    """The loss plus a pairwise term on what the line's threshold sees: every defect in a
    batch against the *top_k* highest-scoring OK parts of that batch, log(1 + e^(ok - defect))
    (a surrogate for catch at a low false-reject rate). Same cache and seeds as the shipped
    recipe's rows (`pooling` with its defaults)."""
    shipped = loop.compute_loss
    cache = probe.cache(probe.train, views)
    for weight in weights:
        def with_ranking(out, is_defect, *args, weight=weight, **kwargs):
            loss = shipped(out, is_defect, *args, **kwargs)
            defect, ok = out.defect_logit[is_defect > 0.5], out.defect_logit[is_defect < 0.5]
            if len(defect) and len(ok):
                hardest = ok.topk(min(top_k, len(ok))).values
                loss = loss + weight * torch.nn.functional.softplus(hardest[None, :] - defect[:, None]).mean()
            return loss
        loop.compute_loss = with_ranking
        try:
            for seed in range(seeds):
                v, t, epochs, seconds = probe.fit(cache, seed)
                probe.report(f"ranking weight {weight:g}, top {top_k} OK", v, t, seed=seed, views=views,
                             epochs=epochs, seconds=round(seconds))
        finally:
            loop.compute_loss = shipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["ensemble", "augmentation", "pooling", "paste", "ranking"])
    parser.add_argument("--tails", type=int, default=4)
    parser.add_argument("--views", type=int, default=2, help="views per training image in the shared cache")
    parser.add_argument("--sharpness", default="4", help="pooling: comma-separated smooth-maximum sharpness")
    parser.add_argument("--mask-weight", default="1", help="pooling: comma-separated weights of the patch loss")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--per-defect", type=int, default=1, help="paste: pasted copies of each painted defect")
    parser.add_argument("--sheet", type=Path, help="paste: write a PNG of twelve pasted parts here")
    parser.add_argument("--rank-weight", default="1", help="ranking: comma-separated weights of the pairwise term")
    parser.add_argument("--top-k", type=int, default=4, help="ranking: OK parts per batch each defect is ranked above")
    parser.add_argument("--dataset-root", type=Path, default=DEFAULT_DATASET)
    args = parser.parse_args()
    torch.set_num_threads(2)
    probe = Probe(args.dataset_root)
    if args.what == "ensemble":
        ensemble(probe, args.tails, args.views)
    elif args.what == "paste":
        paste(probe, args.seeds, args.views, args.per_defect, args.sheet)
    elif args.what == "ranking":
        ranking(probe, [float(x) for x in args.rank_weight.split(",")], args.top_k, args.seeds, args.views)
    elif args.what == "pooling":
        pooling(probe, [float(x) for x in args.sharpness.split(",")], [float(x) for x in args.mask_weight.split(",")],
                args.seeds, args.views)
    else:
        augmentation(probe)


if __name__ == "__main__":
    main()
