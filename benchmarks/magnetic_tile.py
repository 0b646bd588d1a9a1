"""Lineside on real parts: the magnetic-tile dataset, end to end, on this machine's CPU.

  1. imports the train and val images (labels, masks, the dataset's fixed split) into a
     temporary project, as an inspector's import would;
  2. retrains with the real trainer on the CPU (timed: the whole retrain);
  3. judges the held-out TEST split with the exported ONNX model in ONNX Runtime:
     AUROC, catch at 1% false reject, catch and false reject at the stored threshold,
     per-class catch, confusion matrix;
  4. single-part latency at the model's input size, ONNX Runtime vs PyTorch eager, one
     thread each; batch throughput on all cores;
  5. a baseline of hand-made image statistics and a logistic regression, same split;
  6. what half the training data would give (skip with --no-half).

Prints the figures and writes them to benchmarks/results/magnetic_tile.md.

    python benchmarks/magnetic_tile.py [--epochs N] [--quick] [--no-half] [--out PATH]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from app.core.evaluation import summarize, threshold_for_false_reject  # noqa: E402
from app.core.imageio import read_image  # noqa: E402
from app.core.records import OK  # noqa: E402
from app.core.runtime import Inspector  # noqa: E402
from benchmarks import latency, tile_data  # noqa: E402
from training import baseline  # noqa: E402
from benchmarks.machine import load_average  # noqa: E402
from benchmarks.tile_report import Run, render  # noqa: E402

RESULTS = REPO_ROOT / "benchmarks" / "results" / "magnetic_tile.md"
QUICK_RESULTS = REPO_ROOT / "benchmarks" / "results" / "magnetic_tile_quick.md"
SEED = 0
# --quick: enough of every class for the trainer's minimums (5 labeled per class, also
# for the half model), small enough to run in a minute or two.
QUICK_COUNTS = {
    "train": {"good": 12, "*": 5},
    "val": {"good": 6, "*": 2},
    "test": {"good": 15, "*": 2},
}
QUICK_EPOCHS = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs (default: the trainer's own, with its early stop)")
    parser.add_argument("--quick", action="store_true",
                        help="a small stratified subset and 2 epochs: checks the script works, not a result")
    parser.add_argument("--half", dest="half", action="store_true", default=True,
                        help="also train on a stratified half of the training split (the default)")
    parser.add_argument("--no-half", dest="half", action="store_false", help="skip the half-data model")
    parser.add_argument("--out", type=Path, default=None, help=f"results file (default {RESULTS.relative_to(REPO_ROOT)})")
    parser.add_argument("--dataset", type=Path, default=tile_data.DEFAULT_DATASET,
                        help="the magnetic-tile folder (default ../shared/datasets/magnetic-tile from the repository)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary projects (their path is printed)")
    return parser.parse_args(argv)


def choose_items(items: list[tile_data.Item], quick: bool) -> dict[str, list[tile_data.Item]]:
    chosen = {}
    for split in ("train", "val", "test"):
        rows = tile_data.in_split(items, split)
        if quick:
            labels = tile_data.class_counts(rows)
            per = QUICK_COUNTS[split]
            rows = tile_data.stratified_counts(rows, {c: per.get(c, per["*"]) for c in labels}, SEED)
        chosen[split] = rows
    return chosen


def printing_events(prefix: str):
    """Trainer events as short progress lines (epochs, not every batch)."""
    def on_event(event: dict) -> None:
        kind = event.get("event")
        if kind == "start":
            print(f"  {prefix}: training on {event['device']}, {event['n_train']} train / "
                  f"{event['n_val']} val, up to {event['epochs']} epochs", flush=True)
        elif kind == "epoch":
            print(f"  {prefix}: epoch {event['epoch']}/{event['epochs']} loss {event['train_loss']:.4f} "
                  f"val AUROC {event['val_auroc']:.4f} val catch@1%FR {event['val_catch_rate']:.3f} "
                  f"({event['elapsed_s']:.0f} s)", flush=True)
        elif kind == "done":
            print(f"  {prefix}: done, {event['version']} in {event['elapsed_s']:.1f} s", flush=True)
    return on_event


def import_and_train(name: str, work: Path, root: Path, items: list[tile_data.Item], epochs: int | None) -> Run:
    from training.pipeline import train_project

    t0 = time.perf_counter()
    folder = tile_data.build_project(work / name, root, items)
    import_s = time.perf_counter() - t0
    print(f"  {name}: imported {len(items)} images in {import_s:.1f} s", flush=True)
    t0 = time.perf_counter()
    model = train_project(folder, epochs=epochs, device="cpu", seed=SEED, on_event=printing_events(name))
    train_s = time.perf_counter() - t0
    print(f"  {name}: CPU retrain wall time {train_s:.1f} s", flush=True)
    return Run(name=name, model=model, import_s=import_s, train_s=train_s,
               n_train=len(tile_data.in_split(items, "train")), n_val=len(tile_data.in_split(items, "val")))


def evaluate_on_test(model_dir: Path, test: list[tuple[tile_data.Item, np.ndarray]]) -> dict:
    """The exported model in ONNX Runtime on every test image, at the stored threshold."""
    inspector = Inspector(model_dir / "model.onnx", threads=1)
    verdicts = [inspector.inspect(image) for _, image in test]
    truth = [item.verdict for item, _ in test]
    preds = [OK if v.passed else v.defect_class for v in verdicts]
    return summarize(truth, [v.score for v in verdicts], preds, inspector.threshold, inspector.info.class_names)


def run_baseline(train_val: list[tile_data.Item], test: list[tuple[tile_data.Item, np.ndarray]]) -> dict:
    """Fit on train (L2 chosen on val), threshold for 1% false reject on val, judge test."""
    def features(items: list[tile_data.Item]) -> np.ndarray:
        return np.stack([baseline.image_features(read_image(item.path)) for item in items])

    def defects(items) -> np.ndarray:
        return np.array([item.verdict != OK for item in items])

    train = tile_data.in_split(train_val, "train")
    val = tile_data.in_split(train_val, "val")
    t0 = time.perf_counter()
    val_x = features(val)
    model = baseline.fit_selected(features(train), defects(train), val_x, defects(val))
    threshold = threshold_for_false_reject(model.scores(val_x)[~defects(val)], 0.01)
    test_items = [item for item, _ in test]
    scores = model.scores(np.stack([baseline.image_features(image) for _, image in test]))
    preds = [OK if s < threshold else "defect" for s in scores]
    result = summarize([i.verdict for i in test_items], scores, preds, threshold, [OK, "defect"])
    result.update({"l2": model.l2, "n_features": int(model.mean.size), "seconds": time.perf_counter() - t0})
    return result


TARGET_LATENCY_SIZE = 224  # the latency target is stated at 224 px, whatever the project's size


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_at_start = load_average()
    try:
        items = tile_data.read_split(args.dataset)
    except tile_data.DatasetMissing as exc:
        print(f"magnetic_tile: {exc}", file=sys.stderr)
        return 2
    out = args.out or (QUICK_RESULTS if args.quick else RESULTS)
    epochs = args.epochs if args.epochs is not None else (QUICK_EPOCHS if args.quick else None)
    splits = choose_items(items, args.quick)
    train_val = splits["train"] + splits["val"]
    print(f"magnetic-tile: train {len(splits['train'])}, val {len(splits['val'])}, test {len(splits['test'])}"
          + (" (--quick subset)" if args.quick else ""), flush=True)
    work = Path(tempfile.mkdtemp(prefix="lineside-magnetic-tile-"))
    try:
        print("[1-2] import and retrain (full training split)", flush=True)
        full = import_and_train("full", work, args.dataset, train_val, epochs)
        test = [(item, read_image(item.path)) for item in splits["test"]]
        print(f"[3] judging {len(test)} test images with ONNX Runtime", flush=True)
        full.test = evaluate_on_test(full.model.path, test)
        print(f"  full: test AUROC {full.test['auroc']:.4f}, catch@1%FR {full.test['catch_at_1pct_false_reject']:.3f}",
              flush=True)
        print("[4] latency: ONNX Runtime vs PyTorch eager, one thread, alternating", flush=True)
        images = [image for _, image in test]
        single = latency.single_image_latency(full.model.path, images)
        print(f"  p50 ORT {single.row('ort')['p50']:.2f} ms, eager {single.row('torch')['p50']:.2f} ms "
              f"({single.speedup_p50:.2f}x)", flush=True)
        at_224 = latency.model_at_size(full.model.path, TARGET_LATENCY_SIZE, work / "latency-224")
        single_224 = latency.single_image_latency(at_224, images)
        print(f"  at {TARGET_LATENCY_SIZE} px: p50 ORT {single_224.row('ort')['p50']:.2f} ms, "
              f"eager {single_224.row('torch')['p50']:.2f} ms ({single_224.speedup_p50:.2f}x)", flush=True)
        throughput = latency.batch_throughput(full.model.path / "model.onnx", images,
                                              min_images=64 if args.quick else 512)
        print(f"  batch {throughput['batch']} on {throughput['threads']} threads: "
              f"{throughput['images_per_s']:.0f} images/s", flush=True)
        print("[5] baseline: image statistics + logistic regression", flush=True)
        base = run_baseline(train_val, test)
        print(f"  baseline: test AUROC {base['auroc']:.4f}, catch@1%FR {base['catch_at_1pct_false_reject']:.3f}",
              flush=True)
        half = None
        if args.half:
            print("[6] half the training split (same val split)", flush=True)
            half_train = tile_data.stratified_fraction(splits["train"], 0.5, SEED)
            half = import_and_train("half", work, args.dataset, half_train + splits["val"], epochs)
            half.test = evaluate_on_test(half.model.path, test)
            print(f"  half: test AUROC {half.test['auroc']:.4f}, "
                  f"catch@1%FR {half.test['catch_at_1pct_false_reject']:.3f}", flush=True)
        report = render(full=full, half=half, baseline=base, single=single, single_224=single_224,
                        throughput=throughput,
                        splits=splits, quick=args.quick, epochs=epochs, load_at_start=load_at_start)
    finally:
        if args.keep:
            print(f"projects kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    from app.core.atomic import write_text

    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, report)
    print()
    print(report)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
