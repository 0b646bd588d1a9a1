"""Good-only by synthetic defects: the supervised InspectionNet trained on OK parts plus
defects drawn on OK parts (training/synthetic_defects.py), scored on the real test split.

Train: the dataset's train-split OK parts + `--per-ok` synthetic defects per OK part.
Validation (early stopping, epoch choice, threshold): the val-split OK parts + as many
synthetic defects made from them. No real defect is seen before the test split.
Test: every test-split part (all real defect classes vs good). Reports image AUROC,
catch at the threshold for 1 % false reject set on the val OK scores
(`app.core.operating_point.operating_point`), pixel AUROC (heatmap upsampled to the
letterboxed mask), train time; with `--bank`, also the memory bank (training/anomaly.py)
fitted on the same train OK parts, and combinations of the two calibrated scores.

    python benchmarks/synthetic_probe.py --dataset ../shared/datasets/magnetic-tile [--bank]
    python benchmarks/synthetic_probe.py --dataset ../shared/datasets/kolektorsdd [--bank]

Datasets: magnetic tile (Huang, Qiu and Yuan, The Visual Computer 2020); KolektorSDD
(Tabernik et al., Journal of Intelligent Manufacturing 2020).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.evaluation import auroc, pixel_auroc  # noqa: E402
from app.core.imageio import read_image, read_mask  # noqa: E402
from app.core.operating_point import choose_threshold, operating_point  # noqa: E402
from app.core.preprocess import letterbox, letterbox_mask  # noqa: E402
from benchmarks.anomaly_probe import part_max  # noqa: E402
from benchmarks.tile_data import DEFAULT_DATASET, GOOD_CLASS, in_split, read_split  # noqa: E402


def load(root: Path, size: int) -> dict:
    """Letterboxed train OK, val OK, test images + masks + labels (cached in /tmp)."""
    cache = Path(f"/tmp/synthetic_probe_{root.name}_{size}.npz")
    if cache.exists():
        z = np.load(cache, allow_pickle=True)
        return {k: z[k] for k in z.files}
    items = read_split(root)

    def boxed(item):
        return letterbox(read_image(item.path), size)[0]

    test_items = in_split(items, "test")
    masks = []
    for item in test_items:
        img = read_image(item.path)
        mp = item.mask_path(root)
        m = read_mask(mp, img.shape[:2]) if item.label != GOOD_CLASS and mp.is_file() \
            else np.zeros(img.shape[:2], np.uint8)
        masks.append(letterbox_mask(m, size))
    data = {
        "train_ok": np.stack([boxed(i) for i in in_split(items, "train") if i.label == GOOD_CLASS]),
        "val_ok": np.stack([boxed(i) for i in in_split(items, "val") if i.label == GOOD_CLASS]),
        "test": np.stack([boxed(i) for i in test_items]),
        "test_masks": np.stack(masks),
        "test_labels": np.array([i.label for i in test_items]),
    }
    np.savez(cache, **data)
    return data


def load_tiled(root: Path, size: int) -> tuple[dict, object]:
    """Like `load`, but cut into the tiles the line would cut (`choose_tile_plan` from the
    OK parts' sizes only: a good-only line has no painted defects to size by). Test parts
    keep their tiles' owner index, layouts and full-resolution masks (cached in /tmp)."""
    import pickle

    from app.core.preprocess import choose_tile_plan

    cache = Path(f"/tmp/synthetic_probe_{root.name}_{size}_margin_tiled.pkl")
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    items = read_split(root)
    ok_train = [i for i in in_split(items, "train") if i.label == GOOD_CLASS]
    sizes = [read_image(i.path).shape[:2] for i in ok_train]
    plan = choose_tile_plan(sizes, [], size)
    if plan is None:
        raise SystemExit("choose_tile_plan says letterbox: no tiling for this data set")

    def cut(group):
        tiles, owner, layouts, images = [], [], [], []
        for n, item in enumerate(group):
            img = read_image(item.path)
            t, layout = plan.tiles(img)
            tiles += t
            owner += [n] * len(t)
            layouts.append(layout)
            images.append(img.shape[:2])
        return np.stack(tiles), np.array(owner), layouts

    test_items = in_split(items, "test")
    masks = []
    for item in test_items:
        shape = read_image(item.path).shape[:2]
        mp = item.mask_path(root)
        masks.append(read_mask(mp, shape) if item.label != GOOD_CLASS and mp.is_file() else np.zeros(shape, np.uint8))
    tr, _, _ = cut(ok_train)
    va, va_owner, _ = cut([i for i in in_split(items, "val") if i.label == GOOD_CLASS])
    te, te_owner, te_layouts = cut(test_items)
    data = {"train_ok": tr, "val_ok": va, "val_owner": va_owner, "test": te, "test_owner": te_owner,
            "test_layouts": te_layouts, "test_masks": masks,
            "test_labels": np.array([i.label for i in test_items])}
    cache.write_bytes(pickle.dumps((data, plan)))
    return data, plan


def heatmaps_of(net, images: list[np.ndarray], size: int | None) -> list[np.ndarray]:
    import cv2
    import torch

    net.eval()
    out = []
    with torch.no_grad():
        for img in images:
            hm = net(torch.from_numpy(img[None])).heatmap[0].numpy().astype(np.float32)
            out.append(hm if size is None else cv2.resize(hm, (size, size), interpolation=cv2.INTER_LINEAR))
    return out


def figures(name: str, val_ok: np.ndarray, test: np.ndarray, is_defect: np.ndarray, labels: np.ndarray) -> dict:
    # The threshold from validation OK scores alone: test defects must not place it.
    op = operating_point(val_ok, test[is_defect], threshold=choose_threshold(val_ok)[0])
    fr = float(np.mean(test[~is_defect] >= op.threshold))
    per_class = {c: round(float(np.mean(test[labels == c] >= op.threshold)), 3)
                 for c in sorted(set(labels)) if c != GOOD_CLASS}
    return {"model": name, "auroc": round(float(auroc(is_defect.astype(int), test)), 4),
            "catch": round(float(op.catch_rate), 4), "catch_ci": [round(v, 3) for v in op.catch_rate_ci],
            "test_false_reject": round(fr, 4), "threshold": op.threshold, "catch_by_class": per_class}


def _z(scores: np.ndarray, ref_ok: np.ndarray) -> np.ndarray:
    """Logit, standardised by the val OK parts (median, robust spread): comparable scales."""
    def logit(p):
        p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
        return np.log(p) - np.log1p(-p)
    ref = logit(ref_ok)
    mu = np.median(ref)
    sigma = max(1.4826 * np.median(np.abs(ref - mu)), 1e-6)
    return (logit(scores) - mu) / sigma


def _sig(z):
    return 1 / (1 + np.exp(-np.clip(z, -30, 30)))


def main() -> None:
    import torch

    from training.data import Sample
    from training.loop import TrainConfig, predict, train
    from training.synthetic_defects import synthesize

    p = argparse.ArgumentParser()
    p.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    p.add_argument("--size", type=int, default=288)
    p.add_argument("--per-ok", type=float, default=1.0, help="synthetic defects per training OK part")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bank", action="store_true", help="also fit the memory bank and combine")
    p.add_argument("--tag", default="")
    p.add_argument("--tiles", action="store_true", help="cut parts into the line's tiles (choose_tile_plan)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    size = args.size
    plan = None
    if args.tiles:
        data, plan = load_tiled(args.dataset, size)
        size = plan.tile  # the part's --size inside the tile's margins: the network sees the tile
    else:
        data = load(args.dataset, size)
    labels = data["test_labels"]
    is_defect = labels != GOOD_CLASS
    train_ok = [Sample(im, None, "ok", f"train{i}") for i, im in enumerate(data["train_ok"])]
    val_ok = [Sample(im, None, "ok", f"val{i}") for i, im in enumerate(data["val_ok"])]

    t0 = time.monotonic()
    train_def = synthesize(train_ok, int(round(args.per_ok * len(train_ok))), np.random.default_rng(args.seed))
    val_def = synthesize(val_ok, len(val_ok), np.random.default_rng(args.seed + 1000))
    synth_s = time.monotonic() - t0

    cfg = TrainConfig(class_names=["ok", "defect"], input_size=size, seed=args.seed)
    if args.epochs:
        cfg = replace(cfg, epochs=args.epochs)

    def on_event(e):
        if e.get("event") == "epoch":
            print(json.dumps(e), file=sys.stderr, flush=True)

    result = train(train_ok + train_def, val_ok + val_def, cfg, on_event)
    val_ok_scores = result.val_scores[: len(val_ok)]
    t1 = time.monotonic()
    test_scores, _ = predict(result.net, list(data["test"]), "cpu")
    maps = heatmaps_of(result.net, list(data["test"]), None if plan else size)
    score_s = time.monotonic() - t1
    if plan is not None:  # the line's pooling: a part's score is the max over its tiles
        from app.core.preprocess import stitch

        val_ok_scores = part_max(val_ok_scores, data["val_owner"])
        owner = data["test_owner"]
        maps = [stitch([maps[j] for j in np.flatnonzero(owner == n)], layout)
                for n, layout in enumerate(data["test_layouts"])]
        test_scores = part_max(test_scores, owner)
    out = {
        "dataset": args.dataset.name, "size": size, "tiling": plan.to_dict() if plan else None,
        "per_ok": args.per_ok, "seed": args.seed,
        "n_train_ok": len(train_ok), "n_train_synthetic": len(train_def), "n_val_ok": len(val_ok),
        "n_val_synthetic": len(val_def), "n_test": int(len(labels)), "n_test_defect": int(is_defect.sum()),
        "epochs_run": result.epochs_run, "stopped_early": result.stopped_early,
        "best_val": max(result.history, key=lambda h: (round(h["val_auroc"], 3), -h["val_loss"])),
        "train_s": round(result.elapsed_s, 1), "synthesize_s": round(synth_s, 1),
        "test_scoring_s": round(score_s, 1),
        "synthetic": figures("synthetic", val_ok_scores, test_scores, is_defect, labels),
    }
    out["synthetic"]["pixel_auroc"] = round(float(pixel_auroc(maps, list(data["test_masks"]))), 4)
    tag = f"{args.dataset.name}_{size}_{args.per_ok}_{args.seed}{'_tiled' if plan else ''}{args.tag}"
    np.savez(f"/tmp/synthetic_probe_scores_{tag}.npz", val_ok=val_ok_scores, test=test_scores)

    if args.bank:
        from training.anomaly import AnomalyConfig, anomaly_outputs, fit_anomaly

        bank_cache = Path(f"/tmp/synthetic_probe_bank_{args.dataset.name}_{size}{'_tiled' if plan else ''}.npz")
        if bank_cache.exists():
            z = np.load(bank_cache, allow_pickle=True)
            b_val, b_test, b_maps, fit_s = z["val_ok"], z["test"], z["maps"], float(z["fit_s"])
        else:
            fit = fit_anomaly(list(data["train_ok"]), AnomalyConfig(input_size=size))
            fit_s = fit.elapsed_s
            b_val = anomaly_outputs(fit.net, list(data["val_ok"])).score.numpy()
            o = anomaly_outputs(fit.net, list(data["test"]))
            b_test, b_maps = o.score.numpy(), o.heatmap.numpy()
            if plan is not None:
                from app.core.preprocess import stitch

                b_val, owner = part_max(b_val, data["val_owner"]), data["test_owner"]
                b_maps = np.array([stitch([b_maps[j] for j in np.flatnonzero(owner == n)], layout)
                                   for n, layout in enumerate(data["test_layouts"])], dtype=object)
                b_test = part_max(b_test, owner)
            np.savez(bank_cache, val_ok=b_val, test=b_test, maps=b_maps, fit_s=fit_s)
        import cv2

        up = [m.astype(np.float32) if plan
              else cv2.resize(m.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR) for m in b_maps]
        out["bank"] = figures("memory bank (train OK only, threshold on val OK)", b_val, b_test, is_defect, labels)
        out["bank"]["pixel_auroc"] = round(float(pixel_auroc(up, list(data["test_masks"]))), 4)
        out["bank"]["fit_s"] = round(fit_s, 1)
        zs_val, zs_test = _z(val_ok_scores, val_ok_scores), _z(test_scores, val_ok_scores)
        zb_val, zb_test = _z(b_val, b_val), _z(b_test, b_val)
        out["mean"] = figures("mean of z-scores", _sig((zs_val + zb_val) / 2), _sig((zs_test + zb_test) / 2),
                              is_defect, labels)
        out["max"] = figures("max of z-scores", _sig(np.maximum(zs_val, zb_val)), _sig(np.maximum(zs_test, zb_test)),
                             is_defect, labels)
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
