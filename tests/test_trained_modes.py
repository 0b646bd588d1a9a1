"""The trainer's two modes and tiling end to end, on generated parts, through `lineside train`.

Real training, real export, real ONNX Runtime; small inputs so each run takes seconds.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from app.cli import main as cli
from app.core.evaluation import auroc, rate_interval
from app.core.imageio import encode_png
from app.core.importer import import_folder
from app.core.project import Project
from app.core.runtime import Inspector
from app.core.synthetic import generate_part, write_demo_dataset

pytestmark = pytest.mark.slow


def _project(path, source, input_size: int, tiling: bool = False):
    with Project.create(path, name="modes") as project:
        project.set_setting("input_size", input_size)
        project.set_setting("tiling", None if tiling else False)
        import_folder(project, source)
    return path


@pytest.fixture(scope="module")
def good_only(tmp_path_factory):
    """A line that has only good parts: 60 OK washers, no defect labels at all."""
    root = tmp_path_factory.mktemp("good-only")
    write_demo_dataset(root / "source", n_ok=60, n_per_defect=0, seed=11)
    project = _project(root / "project", root / "source", input_size=256)
    assert cli(["train", str(project)]) == 0
    with Project.open(project) as p:
        return project, p.models()[0]


def test_a_project_with_only_ok_parts_trains_a_good_only_model(good_only):
    _, model = good_only
    assert model.metrics["mode"] == "good-only"
    assert "good-only" in model.metrics["mode_reason"]
    assert model.metrics["catch_rate"] is None  # no defects to measure it on, and it says so
    # No OK part is held out of the bank: the model learned from all 60, and its threshold
    # rests on each of them scored out-of-fold, by a bank fitted without it.
    assert model.metrics["n_ok_heldout"] == 60
    assert model.report["n_train"] == 60 and model.report["n_val"] == 0
    assert "out-of-fold" in model.metrics["threshold_source"]
    # The OK parts that scored highest, out-of-fold training parts among the candidates,
    # named by their image: the first is the one the threshold sits just above or below.
    with Project.open(good_only[0]) as p:
        ok_ids = {r.id for r, label in p.labeled() if label.verdict == "ok"}
    highest = model.metrics["highest_ok_parts"]
    assert len(highest) == 3 and {h["image_id"] for h in highest} <= ok_ids
    assert highest[0]["score"] == max(h["score"] for h in highest)
    lo, hi = model.metrics["false_reject_rate_ci"]
    assert 0 <= lo < model.metrics["false_reject_rate"] < hi <= 1
    info = Inspector(model.onnx_path).info
    assert info.mode == "good-only" and info.class_names == ["ok"]


def test_good_only_threshold_holds_on_new_ok_parts_and_flags_defects(good_only):
    _, model = good_only
    inspector = Inspector(model.onnx_path, threshold=model.threshold)
    rng = np.random.default_rng(2024)  # parts the model never saw
    ok = [inspector.inspect(generate_part(rng)[0]).score for _ in range(80)]
    bad = [inspector.inspect(generate_part(rng, "spot")[0]).score for _ in range(20)]
    rejected = int(np.sum(np.array(ok) >= model.threshold))
    # The observed false-reject rate on new parts agrees with the interval the model promised.
    seen_lo, seen_hi = rate_interval(rejected, len(ok))
    promised_lo, promised_hi = model.metrics["false_reject_rate_ci"]
    assert seen_lo <= promised_hi and promised_lo <= seen_hi
    # And it tells the defective parts from the good ones without a single defect label.
    assert auroc(np.r_[np.zeros(len(ok)), np.ones(len(bad))], np.r_[ok, bad]) > 0.7


def test_good_only_with_defect_labels_banks_every_ok_part_and_compares_on_unseen_ones(tmp_path):
    """`--mode good-only` on a project with defect labels: the bank holds every OK part,
    the defects measure the catch, and the baseline is compared on OK parts it never
    learned from (the validation OK parts the bank took in)."""
    write_demo_dataset(tmp_path / "source", n_ok=40, n_per_defect=5, seed=5)
    project = _project(tmp_path / "project", tmp_path / "source", input_size=192)
    assert cli(["train", str(project), "--mode", "good-only"]) == 0
    with Project.open(project) as p:
        model = p.models()[0]
        n_defects = sum(1 for _, label in p.labeled() if label.verdict != "ok")
        val_ok = [r for r, label in p.labeled() if label.verdict == "ok" and r.split == "val"]
    assert model.metrics["mode"] == "good-only" and n_defects > 0 and val_ok
    assert model.report["per_class"]["ok"] == {"train": 40, "val": 0}
    assert model.metrics["n_ok_heldout"] == 40 and model.metrics["n_defect_heldout"] == n_defects
    assert model.metrics["auroc"] is not None  # out-of-fold OK scores against the held-out defects
    baseline = model.report["baseline_on_same_val"]
    assert baseline is not None and 0.0 <= baseline["auroc"] <= 1.0
    assert len(baseline["roc"]) >= 2
    # Beside it, the model on the same parts: the validation OK parts out-of-fold, every defect.
    own = model.report["model_on_same_val"]
    assert own is not None and 0.0 <= own["auroc"] <= 1.0 and 0.0 <= own["catch_at_1pct_false_reject"] <= 1.0


def _long_part(rng, defect: bool) -> tuple[np.ndarray, np.ndarray]:
    """A 96 x 384 px strip of brushed texture; a defect is a dark 3 x 3 px pit."""
    h, w = 96, 384
    base = cv2.GaussianBlur(rng.normal(128, 12, (h, w)).astype(np.float32), (0, 0), 1.2)
    base += np.linspace(-15, 15, w, dtype=np.float32)[None, :] * rng.uniform(-1, 1)
    mask = np.zeros((h, w), np.uint8)
    if defect:
        y, x = int(rng.integers(8, h - 8)), int(rng.integers(8, w - 8))
        base[y - 1:y + 2, x - 1:x + 2] -= 70
        mask[y - 2:y + 3, x - 2:x + 3] = 255
    image = np.clip(base, 0, 255).astype(np.uint8)
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), mask


def test_a_long_part_is_trained_and_judged_in_tiles(tmp_path):
    rng = np.random.default_rng(5)
    source = tmp_path / "source"
    for kind, n in (("good", 24), ("pit", 14)):
        for i in range(n):
            image, mask = _long_part(rng, kind == "pit")
            (source / kind).mkdir(parents=True, exist_ok=True)
            (source / kind / f"{i}.png").write_bytes(encode_png(image))
            if kind == "pit":
                (source / "masks" / kind).mkdir(parents=True, exist_ok=True)
                (source / "masks" / kind / f"{i}.png").write_bytes(encode_png(mask))
    project = _project(tmp_path / "project", source, input_size=96, tiling=True)
    assert cli(["train", str(project), "--epochs", "2"]) == 0
    with Project.open(project) as p:
        model = p.models()[0]
    # Auto trains the supervised model and keeps the anomaly score beside it only if that
    # caught more validation defects; either way the report says which was kept.
    assert model.metrics["mode"] == model.report["mode_comparison"]["kept"]
    assert model.report["tiling"] is not None and model.report["tiling"]["tile"] == 96
    assert model.report["n_train_inputs"] > model.report["n_train"]  # several tiles a part
    inspector = Inspector(model.onnx_path, threshold=model.threshold)
    assert inspector.info.tiling is not None
    image, mask = _long_part(np.random.default_rng(99), True)
    verdict = inspector.inspect(image)
    assert verdict.heatmap_on_image().shape == image.shape[:2]  # stitched over the whole part
    assert model.report["parity_max_abs_diff"] <= 1e-4
    # The saved file is the one judged on the held-out parts, with the version's metadata.
    saved = Inspector(model.onnx_path)
    assert saved.info.version == model.version and saved.info.threshold == pytest.approx(model.threshold)
    with Project.open(project) as p:
        if model.metrics["mode"] == "good-only":  # every defect held out; its OK side is out-of-fold
            held_out = [(p.load_image(r.id), True) for r, lab in p.labeled() if lab.verdict != "ok"]
        else:
            held_out = [(p.load_image(r.id), lab.verdict != "ok") for r, lab in p.labeled(split="val")]
    scores = np.array([v.score for v in saved.inspect_batch([image for image, _ in held_out])])
    is_defect = np.array([d for _, d in held_out])
    assert np.mean(scores[is_defect] >= model.threshold) == pytest.approx(model.metrics["catch_rate"])
    if model.metrics["mode"] != "good-only":
        assert auroc(is_defect.astype(int), scores) == pytest.approx(model.metrics["auroc"])


def test_long_parts_labeled_without_painted_regions_train_their_tiles_as_bags(tmp_path):
    # Class folders and no masks, as many datasets ship: no tile is known to hold the
    # defect, so each part's tiles are a bag whose label goes to its most defective tile
    # (before, such parts were left out and the tiles of OK parts alone were trained).
    rng = np.random.default_rng(6)
    source = tmp_path / "source"
    for kind, n in (("good", 24), ("dent", 14)):
        (source / kind).mkdir(parents=True)
        for i in range(n):
            image = np.hstack([_long_part(rng, False)[0] for _ in range(2)])  # 96 x 768: tiles at 288 px
            if kind == "dent":
                y, x = int(rng.integers(20, 76)), int(rng.integers(20, 748))
                cv2.circle(image, (x, y), 6, (40, 40, 40), -1)
            (source / kind / f"{i}.png").write_bytes(encode_png(image))
    with Project.create(tmp_path / "project", name="unpainted") as project:
        import_folder(project, source)
    assert cli(["train", str(tmp_path / "project"), "--epochs", "3", "--mode", "supervised"]) == 0
    with Project.open(tmp_path / "project") as p:
        model = p.models()[0]
        val = [(p.load_image(r.id), lab.verdict != "ok") for r, lab in p.labeled(split="val")]
    report = model.report
    assert report["tiling"] is not None and report["tiling"]["tile"] == 320
    assert report["n_train_inputs"] > report["n_train"]  # several tiles a part
    assert any("14 defective parts have no painted region" in note for note in report["shortfalls"])
    # Judged by its highest tile, as the line judges it, the model tells dents from OK parts.
    scores = np.array([v.score for v in Inspector(model.onnx_path).inspect_batch([im for im, _ in val])])
    truth = np.array([d for _, d in val])
    assert truth.any() and auroc(truth.astype(int), scores) > 0.8


def _mvtec_folder(root, seed: int):
    """The MVTec AD layout from generated parts: train/good (OK parts only), test/good and
    test/<kind> with ground_truth/<kind>/<stem>_mask.png."""
    import shutil

    flat = root / "flat"
    write_demo_dataset(flat, n_ok=45, n_per_defect=4, seed=seed)
    mvtec = root / "mvtec"
    for i, path in enumerate(sorted((flat / "good").iterdir())):
        dest = mvtec / ("train" if i < 35 else "test") / "good" / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
    for kind in (p.name for p in flat.iterdir() if p.name not in ("good", "masks")):
        shutil.copytree(flat / kind, mvtec / "test" / kind)
        (mvtec / "ground_truth" / kind).mkdir(parents=True)
        for mask in (flat / "masks" / kind).iterdir():
            shutil.copy(mask, mvtec / "ground_truth" / kind / f"{mask.stem}_mask.png")
    return mvtec


def test_an_mvtec_folder_imported_whole_is_trained_on_train_good_and_measured_on_its_test_split(tmp_path, capsys):
    """The dataset's own held-out images stay held out: the trainer learns from train/good
    alone (a good-only model, as the dataset intends), `evaluate` on test/ sees none of
    its training set, and `evaluate` on images it was built from says so."""
    mvtec = _mvtec_folder(tmp_path, seed=21)
    project = tmp_path / "project"
    with Project.create(project, name="mvtec") as p:
        p.set_setting("input_size", 192)
    assert cli(["import", str(project), str(mvtec)]) == 0
    out = capsys.readouterr().out
    n_test = sum(1 for f in (mvtec / "test").rglob("*.png"))
    assert f"{n_test} of them are in a held-out split" in out and "lineside evaluate" in out
    with Project.open(project) as p:
        assert p.label_counts(for_training=True) == {"ok": 35, "unlabeled": 0}
        assert sum(v for k, v in p.label_counts().items() if k != "unlabeled") == 35 + n_test
    assert cli(["train", str(project)]) == 0
    capsys.readouterr()
    with Project.open(project) as p:
        model = p.models()[0]
        test_shas = {r.sha256 for r in p.images() if r.split == "test"}
    assert model.metrics["mode"] == "good-only"  # no labeled defect outside the test split
    chosen = json.loads((model.path / "training_set.json").read_text())
    assert len(chosen["train"]) == 35 and not test_shas & {*chosen["train"], *chosen["val"]}

    assert cli(["evaluate", str(project), str(mvtec / "test"), "--model", "v1", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["seen_in_training"] == {"n": 0, "train": 0, "val": 0, "examples": []}
    assert result["n_images"] == n_test and result["n_masks"] > 0 and "WARNING" not in captured.err

    assert cli(["evaluate", str(project), str(mvtec / "train"), "--model", "v1"]) == 0
    captured = capsys.readouterr()
    assert "35 of the 35 images were in model v1's training set (35 in its training split" in captured.err
    assert "WARNING: 35 of the 35 images" in captured.out
