"""Measure the good-only anomaly model (training/anomaly.py) on the magnetic-tile data.

Fits on the train+val `good` images (letterboxed), scores the test split, and reports
image AUROC, catch and false reject at the threshold set from the out-of-fold OK scores
for 1% false reject, the fit time and the per-part ONNX Runtime time on one thread.

    python benchmarks/anomaly_probe.py --size 288 [--layers 4,10] [--neighbourhood 3] [--part-statistics] ...
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.evaluation import auroc, rates_at, threshold_for_false_reject  # noqa: E402
from app.core.imageio import read_image  # noqa: E402
from app.core.preprocess import letterbox  # noqa: E402
from benchmarks.tile_data import DEFAULT_DATASET, GOOD_CLASS, in_split, read_split  # noqa: E402


def load(size: int, root: Path):
    cache = Path(f"/tmp/anomaly_probe_mt_{size}.npz")
    if cache.exists():
        z = np.load(cache, allow_pickle=True)
        return list(z["train"]), list(z["test"]), z["test_labels"]
    items = read_split(root)
    train = [letterbox(read_image(i.path), size)[0] for i in in_split(items, "train", "val") if i.label == GOOD_CLASS]
    test_items = in_split(items, "test")
    test = [letterbox(read_image(i.path), size)[0] for i in test_items]
    labels = np.array([i.label for i in test_items])
    np.savez(cache, train=np.stack(train), test=np.stack(test), test_labels=labels)
    return train, test, labels


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

    from training.anomaly import AnomalyConfig, anomaly_outputs, fit_anomaly

    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=288)
    p.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    p.add_argument("--layers", default=None)
    p.add_argument("--neighbourhood", type=int, default=None)
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
    train, test, labels = load(args.size, args.dataset)
    cfg = AnomalyConfig(input_size=args.size)
    if args.layers:
        cfg.layers = tuple(int(x) for x in args.layers.split(","))
    for name, attr in [("neighbourhood", "neighbourhood"), ("ratio", "coreset_ratio"), ("entries", "max_bank_entries"),
                       ("pool_rows", "pool_rows"), ("pool", "pool"), ("folds", "folds")]:
        v = getattr(args, name)
        if v is not None:
            setattr(cfg, attr, v)
    cfg.part_statistics = args.part_statistics
    fit = fit_anomaly(train, cfg)
    t = time.monotonic()
    out = anomaly_outputs(fit.net, test)
    score_s = time.monotonic() - t
    scores = out.score.numpy()
    is_defect = labels != GOOD_CLASS
    thr = threshold_for_false_reject(fit.oof_ok_scores, 0.01)
    catch, fr = rates_at(scores[~is_defect], scores[is_defect], thr)
    per_class = {c: round(float(np.mean(scores[labels == c] >= thr)), 3) for c in sorted(set(labels)) if c != GOOD_CLASS}
    result = {
        "config": {k: v for k, v in vars(cfg).items()},
        "n_train_ok": len(train), "n_test": len(test),
        "auroc": round(auroc(is_defect, scores), 4),
        "threshold": round(thr, 4), "catch": round(catch, 4), "false_reject": round(fr, 4),
        "catch_by_class": per_class,
        "fit_s": round(fit.elapsed_s, 1), "timings": {k: round(v, 1) for k, v in fit.timings.items()},
        "bank_entries": fit.bank_entries, "bank_bytes": fit.bank_bytes,
        "torch_test_scoring_s": round(score_s, 1),
    }
    if not args.no_ort_time:
        result["ort_1thread_ms_per_part"] = round(1000 * ort_time(fit.net, args.size, test), 1)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
