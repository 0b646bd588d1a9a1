"""What the line catches, on a real dataset with a fixed split: one command per dataset.

    python benchmarks/detection.py magnetic-tile     # -> benchmarks/results/magnetic_tile.md
    python benchmarks/detection.py kolektorsdd       # -> benchmarks/results/kolektorsdd.md
    options: --quick (a small subset, checks the script), --no-curve, --dataset-root PATH

For each dataset, with the trainer's DEFAULT settings (nothing here is tuned per
dataset; the trainer picks mode, input size and tiling from the data):
  1. the train and val images go into a fresh project with their labels, masks and the
     dataset's split; the test split is never shown to the trainer;
  2. `auto` mode (supervised or combined here) and `good-only` mode (on the OK parts alone)
     are trained, each timed;
  3. the exported models judge every test image through ONNX Runtime at the threshold
     they store: catch and false reject with 95 % intervals lead; AUROC, the test-optimal
     catch at 1 % false reject (labelled as such), pixel AUROC and PRO follow;
  4. the image-statistics baseline on the same split;
  5. the learning curve: 5, 10, 20 and all training defects (same OK parts), plus good
     parts only, catch at the stored threshold (table and PNG plot).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from app.core.imageio import read_image, read_mask  # noqa: E402
from app.core.project import Project  # noqa: E402
from app.core.records import OK  # noqa: E402
from app.core.runtime import Inspector  # noqa: E402
from benchmarks import tile_data  # noqa: E402
from benchmarks.detection_report import render  # noqa: E402
from benchmarks.machine import load_average  # noqa: E402

DATASETS = {
    "magnetic-tile": 'Y. Huang, C. Qiu and K. Yuan, "Surface defect saliency of magnetic tile", '
                     "The Visual Computer 36, 85-96 (2020)",
    "kolektorsdd": 'D. Tabernik, S. Sela, J. Skvarc and D. Skocaj, "Segmentation-based deep-learning approach '
                   'for surface-defect detection", Journal of Intelligent Manufacturing 31, 759-776 (2020); '
                   "CC BY-NC-SA 4.0",
}
SEED = 0
CURVE_DEFECTS = (5, 10, 20)  # plus "all"
QUICK = {"train": {"good": 16, "*": 6}, "val": {"good": 8, "*": 3}, "test": {"good": 12, "*": 4}}


@dataclass
class Trained:
    name: str
    mode: str
    version: str
    model_dir: Path
    train_s: float
    metrics: dict
    report: dict
    n_train_defects: int
    test: dict = field(default_factory=dict)


def train(project_dir: Path, name: str, mode: str, quick: bool, seed: int | None = None) -> Trained:
    from training.pipeline import train_project

    events: list[dict] = []
    t0 = time.perf_counter()
    model = train_project(project_dir, device="cpu", seed=SEED if seed is None else seed, mode=mode,
                          epochs=2 if quick else None, on_event=events.append)
    total_s = time.perf_counter() - t0
    # The retrain is the time to the saved model ("done"); the learning curve, measured
    # after the hand-over, is reported beside it (report["learning_curve_s"]).
    seconds = next(e["elapsed_s"] for e in events if e["event"] == "done")
    start = next(e for e in events if e["event"] == "start")
    print(f"  {name}: {model.version} {model.metrics.get('mode')} handed over in {seconds:.1f} s, "
          f"{total_s:.1f} s with its learning curve ({start['n_train']} train / {start['n_val']} val); "
          f"{model.metrics.get('mode_reason')}", flush=True)
    n_def = sum(v["train"] for k, v in model.report["per_class"].items() if k != OK)
    return Trained(name, model.metrics.get("mode", mode), model.version, model.path, seconds, model.metrics,
                   model.report, n_def)


def judge_test(run: Trained, test: list[tile_data.Item], root: Path) -> dict:
    """The exported model at its stored threshold on every test image, with localization."""
    from app.core.evaluation import pixel_auroc, pro_score, rate_interval

    inspector = Inspector(run.model_dir / "model.onnx", threads=2)
    scores, truth, heatmaps, masks, names = [], [], [], [], []
    examples: dict[str, list[np.ndarray]] = {"missed": [], "false_rejected": []}
    for item in test:
        image = read_image(item.path)
        verdict = inspector.inspect(image)
        wrong = ("missed" if item.verdict != OK and verdict.passed else
                 "false_rejected" if item.verdict == OK and not verdict.passed else None)
        if wrong and len(examples[wrong]) < EXAMPLES:
            examples[wrong].append(thumbnail(image, verdict.heatmap_on_image(), verdict.score, item.path.name))
        scores.append(verdict.score)
        truth.append(item.verdict)
        names.append(item.path.name)
        mask_file = item.mask_path(root)
        if item.verdict == OK or mask_file.is_file():
            mask = read_mask(mask_file, image.shape[:2]) if mask_file.is_file() else np.zeros(image.shape[:2], np.uint8)
            heatmaps.append(verdict.heatmap_on_image())
            masks.append(mask)
    scores = np.array(scores)
    defect = np.array([t != OK for t in truth])
    t = inspector.threshold
    caught, rejected = int(np.sum(scores[defect] >= t)), int(np.sum(scores[~defect] >= t))
    from app.core.evaluation import auroc, catch_at_false_reject

    result = {
        "threshold": t, "n_defect": int(defect.sum()), "n_ok": int((~defect).sum()),
        "caught": caught, "false_rejects": rejected,
        "catch_rate": caught / max(1, defect.sum()), "catch_rate_ci": list(rate_interval(caught, int(defect.sum()))),
        "false_reject_rate": rejected / max(1, (~defect).sum()),
        "false_reject_rate_ci": list(rate_interval(rejected, int((~defect).sum()))),
        "auroc": auroc(defect.astype(int), scores),
        "catch_at_1pct_false_reject_test_optimal": catch_at_false_reject(scores[~defect], scores[defect], 0.01),
        "pixel_auroc": pixel_auroc(heatmaps, masks) if any(m.any() for m in masks) else None,
        "pro": pro_score(heatmaps, masks) if any(m.any() for m in masks) else None,
        "per_class": {},
        "missed": [n for n, s, d in zip(names, scores, defect) if d and s < t],
        "false_rejected": [n for n, s, d in zip(names, scores, defect) if not d and s >= t],
        "examples": examples,
    }
    for cls in sorted({x for x in truth if x != OK}):
        sel = np.array([x == cls for x in truth])
        result["per_class"][cls] = {"n": int(sel.sum()), "caught": float(np.mean(scores[sel] >= t))}
    return result


def probe_supervised(dataset_root: Path, name: str, seed: int) -> dict:
    """One supervised retrain on the benchmark's project (the dataset's train and val
    images, split by the trainer) without the learning curve, judged on the test split
    at its stored threshold: the summary the probes (benchmarks/*_probe.py) print. The
    probe changes the trainer before it calls this."""
    items = tile_data.read_split(dataset_root)
    train_val = tile_data.in_split(items, "train", "val")
    test, _ = tile_data.without_leaks(tile_data.in_split(items, "test"), train_val)
    with tempfile.TemporaryDirectory(prefix="lineside-probe-") as work:
        project = tile_data.build_project(Path(work) / "project", dataset_root, train_val, keep_splits=False)
        with Project.open(project) as p:
            p.set_setting("learning_curve", False)
        run = train(project, name, "supervised", False, seed=seed)
        t = judge_test(run, test, dataset_root)
    history = run.report.get("history") or []
    kept = max(history, key=lambda h: (round(h["val_auroc"], 3), round(h["val_patch_auroc"] or -1.0, 3),
                                       -h["val_loss"])) if history else {}
    return {"seed": seed, "retrain_s": round(run.train_s), "validation_auroc": run.metrics.get("auroc"),
            "epochs_run": len(history), "kept_epoch": kept.get("epoch"),
            "kept_val_patch_auroc": kept.get("val_patch_auroc"),
            "highest_ok_parts": [{k: h[k] for k in ("filename", "score", "looks_like") if k in h}
                                 for h in run.metrics.get("highest_ok_parts", [])],
            "caught": f"{t['caught']}/{t['n_defect']}", "false_rejects": f"{t['false_rejects']}/{t['n_ok']}",
            "test_auroc": round(t["auroc"], 4), "pixel_auroc": t["pixel_auroc"] and round(t["pixel_auroc"], 4),
            "test_optimal_catch_at_1pct": round(t["catch_at_1pct_false_reject_test_optimal"], 3)}


EXAMPLES = 4  # per kind and model: a few, never the dataset


def thumbnail(image: np.ndarray, heat: np.ndarray, score: float, name: str, side: int = 180) -> np.ndarray:
    """The part with its heatmap blended in, the score and the file name written on it."""
    import cv2

    scale = side / max(image.shape[:2])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    colour = cv2.applyColorMap((np.clip(cv2.resize(heat, size), 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    out = np.full((side + 30, side, 3), 255, np.uint8)
    out[:size[1], :size[0]] = cv2.addWeighted(small, 0.6, colour, 0.4, 0)
    cv2.putText(out, f"{score:.3f} {name[:18]}", (2, side + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    return out


def save_examples(runs: list, path: Path) -> bool:
    """One PNG: a row per model and kind (missed defects, false rejects)."""
    import cv2

    rows = []
    for run in runs:
        for kind, tiles in run.test["examples"].items():
            if tiles:
                label = np.full((210, 150, 3), 255, np.uint8)
                for i, text in enumerate([run.name[:20], run.mode, kind.replace("_", " ")]):
                    cv2.putText(label, text, (4, 60 + 24 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
                padded = [np.pad(t, ((0, 210 - t.shape[0]), (0, 190 - t.shape[1]), (0, 0)), constant_values=255)
                          for t in tiles]
                padded += [np.full((210, 190, 3), 255, np.uint8)] * (EXAMPLES - len(padded))
                rows.append(np.hstack([label, *padded]))
    if not rows:
        return False
    cv2.imwrite(str(path), np.vstack(rows))
    return True


def run_baseline(train_val: list[tile_data.Item], test: list[tile_data.Item]) -> dict:
    """Image statistics + logistic regression: fit on train, L2 and threshold on val, judge test."""
    from app.core.evaluation import auroc, catch_at_false_reject, rate_interval, threshold_for_false_reject
    from training import baseline

    def xy(items):
        return (np.stack([baseline.image_features(read_image(i.path)) for i in items]),
                np.array([i.verdict != OK for i in items]))

    (tx, ty), (vx, vy) = xy(tile_data.in_split(train_val, "train")), xy(tile_data.in_split(train_val, "val"))
    model = baseline.fit_selected(tx, ty, vx, vy)
    threshold = threshold_for_false_reject(model.scores(vx)[~vy], 0.01)
    sx, sy = xy(test)
    scores = model.scores(sx)
    caught, rejected = int(np.sum(scores[sy] >= threshold)), int(np.sum(scores[~sy] >= threshold))
    return {"auroc": auroc(sy.astype(int), scores), "catch_rate": caught / sy.sum(),
            "catch_rate_ci": list(rate_interval(caught, int(sy.sum()))),
            "false_reject_rate": rejected / (~sy).sum(),
            "false_reject_rate_ci": list(rate_interval(rejected, int((~sy).sum()))),
            "catch_at_1pct_false_reject_test_optimal": catch_at_false_reject(scores[~sy], scores[sy], 0.01)}


def curve_items(train_val: list[tile_data.Item], n_defects: int) -> list[tile_data.Item]:
    """Every OK part and *n_defects* labeled defective parts in all (stratified by class,
    seeded): what a line has after labeling that many defects. The trainer splits them."""
    defects = [i for i in train_val if i.verdict != OK]
    keep = {i.path for i in tile_data.stratified_fraction(defects, n_defects / len(defects), SEED)[:n_defects]}
    return [i for i in train_val if i.verdict == OK or i.path in keep]


def plot_curve(rows: list[dict], path: Path, dataset: str) -> None:
    import cv2

    w, h, m = 640, 400, 60
    canvas = np.full((h, w, 3), 255, np.uint8)
    xs = [r["n_train_defects"] for r in rows]
    xmax = max(xs) or 1
    cv2.rectangle(canvas, (m, 20), (w - 20, h - m), (0, 0, 0), 1)
    for frac in (0, 0.25, 0.5, 0.75, 1.0):
        y = int(h - m - frac * (h - m - 20))
        cv2.line(canvas, (m - 4, y), (m, y), (0, 0, 0), 1)
        cv2.putText(canvas, f"{int(frac * 100)}%", (8, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    pts = []
    for r in rows:
        x = int(m + (r["n_train_defects"] / xmax) * (w - 20 - m))
        y = int(h - m - r["catch_rate"] * (h - m - 20))
        lo, hi = r["catch_rate_ci"]
        cv2.line(canvas, (x, int(h - m - lo * (h - m - 20))), (x, int(h - m - hi * (h - m - 20))), (160, 160, 160), 2)
        color = {"supervised": (200, 80, 0), "combined": (40, 160, 40)}.get(r["mode"], (0, 120, 220))
        cv2.circle(canvas, (x, y), 5, color, -1)
        cv2.putText(canvas, str(r["n_train_defects"]), (x - 6, h - m + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        pts.append((x, y))
    for a, b in zip(pts, pts[1:]):
        cv2.line(canvas, a, b, (120, 120, 120), 1)
    cv2.putText(canvas, f"{dataset}: catch on test at the stored threshold vs labeled defects",
                (m, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    cv2.putText(canvas, "labeled defective parts (blue: supervised, green: combined, orange: good-only)",
                (m, h - 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.imwrite(str(path), canvas)


def write_report_example(project: Path, version: str, folder: Path) -> None:
    """The model report of *version* as `lineside report` writes it (PDF), and its pages as
    PNG (pdftoppm, from poppler-utils) so people can look at it without the app."""
    import shutil
    import subprocess

    from app.cli import main as cli

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("page-*.png"):
        old.unlink()
    pdf = folder / "report.pdf"
    if cli(["report", str(project), version, "--pdf", str(pdf)]) != 0:
        raise SystemExit("the report could not be written")
    if shutil.which("pdftoppm") is None:
        print("  pdftoppm not found (poppler-utils): the report's PNG pages were not made", flush=True)
        return
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(pdf), str(folder / "page")], check=True)
    pages = sorted(folder.glob("page-*.png"))
    print(f"  report example: {pdf} and {len(pages)} PNG pages", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--dataset-root", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="a small subset and 2 epochs: checks the script only")
    parser.add_argument("--no-curve", action="store_true", help="skip the learning curve")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--report-example", type=Path, default=None, metavar="DIR",
                        help="also write the default model's report as PDF and PNG pages (pdftoppm) to DIR")
    args = parser.parse_args(argv)
    root = args.dataset_root or REPO_ROOT.parent / "shared" / "datasets" / args.dataset
    load_at_start = load_average()
    try:
        items = tile_data.read_split(root)
    except tile_data.DatasetMissing as exc:
        print(f"detection: {exc}", file=sys.stderr)
        return 2
    if args.quick:
        items = [i for s in ("train", "val", "test") for i in tile_data.stratified_counts(
            tile_data.in_split(items, s), {c: QUICK[s].get(c, QUICK[s]["*"])
                                           for c in tile_data.class_counts(tile_data.in_split(items, s))}, SEED)]
    train_val = tile_data.in_split(items, "train", "val")
    test, leaked = tile_data.without_leaks(tile_data.in_split(items, "test"), train_val)
    stem = args.dataset.replace("-", "_") + ("_quick" if args.quick else "")
    out = args.out or REPO_ROOT / "benchmarks" / "results" / f"{stem}.md"
    print(f"{args.dataset}: {len(tile_data.in_split(items, 'train'))} train, "
          f"{len(tile_data.in_split(items, 'val'))} val, {len(test)} test"
          + (f" ({len(leaked)} test images left out: the same bytes are in train/val)" if leaked else ""), flush=True)
    runs: list[Trained] = []
    curve: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="lineside-detection-") as work:
        work = Path(work)
        t0 = time.perf_counter()
        project = tile_data.build_project(work / "full", root, train_val, keep_splits=False)
        import_s = time.perf_counter() - t0
        # The good-only row gets its own project of the OK parts alone: what a line with good
        # parts only has. Its own, because the trainer splits a project the first time it
        # trains it and a good-only model holds out fewer OK parts (its threshold also rests
        # on out-of-fold scores): the supervised split would starve its bank. OK parts alone,
        # because held-out defects would place its threshold within the gap the OK scores
        # leave (app/core/operating_point.py), which a line without defects cannot do.
        good_only_project = tile_data.build_project(work / "good-only", root,
                                                    [i for i in train_val if i.verdict == OK], keep_splits=False)
        for name, mode, where in (("default (auto)", "auto", project),
                                  ("good parts only", "good-only", good_only_project)):
            run = train(where, name, mode, args.quick)
            run.test = judge_test(run, test, root)
            t = run.test
            print(f"  {name} on test at the stored threshold: caught {t['caught']}/{t['n_defect']}, "
                  f"false reject {t['false_rejects']}/{t['n_ok']}; AUROC {t['auroc']:.4f}", flush=True)
            runs.append(run)
        baseline = run_baseline(train_val, test)
        if args.report_example:
            write_report_example(project, runs[0].version, args.report_example)
        if not args.no_curve:
            n_all = sum(1 for i in train_val if i.verdict != OK)
            for n in [c for c in CURVE_DEFECTS if c < n_all]:
                sub = tile_data.build_project(work / f"curve-{n}", root, curve_items(train_val, n),
                                              keep_splits=False)
                with Project.open(sub) as sub_project:  # its own learning curve is not reported here
                    sub_project.set_setting("learning_curve", False)
                run = train(sub, f"{n} defects", "auto", args.quick)
                run.test = judge_test(run, test, root)
                curve.append({"n_train_defects": n, "mode": run.mode, "n_trained_on": run.n_train_defects, "catch_rate": run.test["catch_rate"],
                              "catch_rate_ci": run.test["catch_rate_ci"],
                              "false_reject_rate": run.test["false_reject_rate"], "auroc": run.test["auroc"]})
            for run in runs:
                curve.append({"n_train_defects": n_all if run.mode != "good-only" else 0,
                              "n_trained_on": run.n_train_defects if run.mode != "good-only" else 0,
                              "mode": run.mode, "catch_rate": run.test["catch_rate"],
                              "catch_rate_ci": run.test["catch_rate_ci"],
                              "false_reject_rate": run.test["false_reject_rate"], "auroc": run.test["auroc"]})
            curve.sort(key=lambda r: (r["n_train_defects"], r["mode"]))
            plot_curve(curve, out.with_suffix(".curve.png"), args.dataset)
    examples_png = out.with_suffix(".examples.png")
    has_examples = save_examples(runs, examples_png)
    for run in runs:
        run.test.pop("examples", None)
    report = render(dataset=args.dataset, citation=DATASETS[args.dataset], runs=runs, baseline=baseline,
                    curve=curve, items=items, import_s=import_s, quick=args.quick, load_at_start=load_at_start,
                    curve_png=out.with_suffix(".curve.png").name if curve else None, leaked=leaked,
                    examples_png=examples_png.name if has_examples else None)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    out.with_suffix(".json").write_text(json.dumps({"runs": [{**r.__dict__, "model_dir": None} for r in runs],
                                                    "baseline": baseline, "curve": curve}, indent=1, default=float))
    print(report)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
