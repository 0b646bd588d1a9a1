"""The trainer end to end on generated parts: real backprop, real export, real ONNX Runtime."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import torch

from app.core.errors import DiskFullError, NotEnoughDataError
from app.core.project import Project
from app.core.runtime import Inspector
from tests.training_fixtures import TINY_INPUT_SIZE, make_tiny_project
from training import export as export_mod
from training import pipeline
from training.checkpoint import load_network
from training.loop import Cancelled
from training.network import InspectionNet, load_pretrained_backbone


def test_pretrained_weights_load_strictly_and_outputs_are_consistent():
    net = InspectionNet(3, load_pretrained_backbone()).eval()
    images = torch.randint(0, 256, (2, 128, 128, 3), dtype=torch.uint8)
    with torch.no_grad():
        out = net(images)
    assert out.score.shape == (2,)
    assert out.class_probs.shape == (2, 4)
    assert out.heatmap.shape == (2, 8, 8)
    assert torch.allclose(out.class_probs.sum(1), torch.ones(2), atol=1e-5)
    # The score is exactly "not OK": one number, two views of it.
    assert torch.allclose(out.class_probs[:, 0], 1 - out.score, atol=1e-6)
    assert float(out.heatmap.min()) >= 0 and float(out.heatmap.max()) <= 1


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real training run shared by the tests below (a few seconds at 96 px)."""
    project_dir = make_tiny_project(tmp_path_factory.mktemp("train") / "project")
    events: list[dict] = []

    def on_event(event: dict) -> None:
        if event["event"] == "done":  # what the project holds at the hand-over
            with Project.open(project_dir) as project:
                event = {**event, "registered_report": project.model(event["version"]).report}
        events.append(event)

    model = pipeline.train_project(project_dir, epochs=3, on_event=on_event)
    return project_dir, model, events


def test_training_registers_a_candidate_with_metrics_and_report(trained):
    project_dir, model, events = trained
    with Project.open(project_dir) as project:
        assert [m.version for m in project.models()] == [model.version]
        assert project.model(model.version).status == "candidate"
        assert project.production_model() is None  # training never deploys by itself
        # What it was trained on, as the app compares it before the next retrain.
        assert model.report["labeled_data_sha256"] == project.labeled_fingerprint()
    assert 0.0 <= model.threshold <= 1.0
    for key in ("auroc", "catch_rate", "false_reject_rate", "catch_at_1pct_false_reject", "highest_ok_parts"):
        assert key in model.metrics
    assert model.report["n_train"] + model.report["n_val"] == 14 + 3 * 6
    assert model.report["parity_max_abs_diff"] <= export_mod.PARITY_TOLERANCE
    assert model.report["changes"] == ["first model of this project"]
    saved = torch.load(model.path / "checkpoint.pt", weights_only=True)
    assert saved["config"]["input_size"] == TINY_INPUT_SIZE  # the config travels with the weights
    assert saved["class_names"][0] == "ok"
    kinds = [e["event"] for e in events]
    assert kinds[0] == "progress" and "start" in kinds and kinds[-1] == "curve"
    assert sum(k == "epoch" for k in kinds) >= 1
    assert not list(model.path.parent.glob(".partial-*"))


def test_the_report_holds_a_learning_curve_of_real_re_fits(trained):
    _, model, events = trained
    curve = model.report["learning_curve"]
    assert [p["fraction"] for p in curve] == [0.25, 0.5, 1.0]
    # Each re-fit learned from fewer parts than the next; all judged on the same validation parts.
    parts = [p["n_train_parts"] for p in curve]
    assert parts[0] < parts[1] < parts[2] == model.report["n_train"]
    assert all(p["auroc"] is None or 0.0 <= p["auroc"] <= 1.0 for p in curve)
    assert any(e.get("phase") == "curve" for e in events)


def test_a_tiled_part_is_defective_when_any_of_its_tiles_is():
    # The tiles of a defective part outside its painted region are OK tiles; the
    # learning curve judges parts, so a crack in the last tile still makes the part a defect.
    from training.data import Sample
    from training.loop import _part_scores, _stratified_subset

    blank = np.zeros((8, 8, 3), np.uint8)
    tiles = [Sample(blank, None, "ok", "crack#t0"), Sample(blank, None, "ok", "crack#t1"),
             Sample(blank, np.ones((8, 8), np.uint8), "scratch", "crack#t2"),
             Sample(blank, None, "ok", "clean#t0"), Sample(blank, None, "ok", "clean#t1")]
    scores, is_defect = _part_scores(tiles, np.array([0.1, 0.2, 0.9, 0.3, 0.05]))
    assert scores.tolist() == [0.9, 0.3]
    assert is_defect.tolist() == [True, False]
    # Only the tile suffix joins samples into a part: any other "#" in a key does not.
    others = [Sample(blank, None, "ok", "p1"), Sample(blank, None, "scratch", "p1#synthetic0-1"),
              Sample(blank, None, "ok", "p1#tx")]
    scores, is_defect = _part_scores(others, np.array([0.2, 0.8, 0.4]))
    assert scores.tolist() == [0.2, 0.8, 0.4] and is_defect.tolist() == [False, True, False]
    # A share of the parts for the learning curve is stratified by the part's class, and
    # keeps every tile of a part it keeps.
    parts = [Sample(blank, None, "ok", f"ok{i}#t0") for i in range(8)] + [
        Sample(blank, None, "ok", f"bad{i}#t{t}") if t else Sample(blank, None, "scratch", f"bad{i}#t0")
        for i in range(4) for t in range(2)]
    keep = _stratified_subset(parts, 0.5, np.random.default_rng(0))
    kept = {parts[i].key.split("#")[0] for i in keep}
    assert sum(p.startswith("ok") for p in kept) == 4 and sum(p.startswith("bad") for p in kept) == 2
    assert len(keep) == 4 + 2 * 2


def test_the_model_is_handed_over_before_the_learning_curve_is_measured(trained):
    project_dir, model, events = trained
    kinds = [e["event"] for e in events]
    done = kinds.index("done")
    # Registered at "done", its report saying the curve is on its way; the re-fits come after.
    assert events[done]["curve_follows"] is True
    held = events[done]["registered_report"]
    assert held["learning_curve"] is None and held["learning_curve_note"] == pipeline.CURVE_PENDING
    assert all(e.get("phase") == "curve" for e in events[done + 1:-1])
    curve_event = events[-1]
    assert curve_event["version"] == model.version and curve_event["learning_curve_s"] > 0
    assert curve_event["elapsed_s"] >= events[done]["elapsed_s"]
    # The curve is in the store's report and in model.json, the pending note gone.
    with Project.open(project_dir) as project:
        stored = project.model(model.version).report
    on_disk = json.loads((model.path / "model.json").read_text(encoding="utf-8"))["report"]
    for report in (stored, on_disk, model.report):
        assert report["learning_curve"] == model.report["learning_curve"] and "learning_curve_note" not in report
        assert report["learning_curve_s"] == curve_event["learning_curve_s"]


def test_exported_model_runs_in_onnx_runtime_and_matches_torch(trained):
    project_dir, model, _ = trained
    inspector = Inspector(model.path / "model.onnx")
    assert inspector.info.class_names[0] == "ok"
    assert inspector.info.input_size == TINY_INPUT_SIZE
    assert inspector.info.reference is not None  # drift reference travels in the model
    with Project.open(project_dir) as project:
        record, label = project.labeled()[0]
        image = project.load_image(record.id)
    verdict = inspector.inspect(image)
    assert verdict.heatmap.shape == (TINY_INPUT_SIZE // 16,) * 2
    assert verdict.heatmap_on_image().shape == image.shape[:2]
    # Same part through PyTorch: the graph holds the same preprocessing.
    from app.core.preprocess import letterbox

    net = load_network(model.path / "checkpoint.pt")  # supervised or combined, as auto chose
    boxed, _ = letterbox(image, TINY_INPUT_SIZE)
    with torch.no_grad():
        torch_score = float(net.eval()(torch.from_numpy(boxed[None])).score[0])
    assert abs(torch_score - verdict.score) <= 1e-4


def test_too_few_images_of_a_class_names_the_class(tmp_path):
    project_dir = make_tiny_project(tmp_path / "p", n_ok=12, n_per_defect=6)
    with Project.open(project_dir) as project:
        spots = project.images(verdict="spot")
        for record in spots[:4]:
            project.set_label(record.id, None)
    # Asked for a supervised model by name, the trainer says which class is short...
    with pytest.raises(NotEnoughDataError, match=r"spot: 2 labeled images, at least 5 needed"):
        pipeline.train_project(project_dir, epochs=1, mode="supervised")
    # ...and the default mode trains the classes together and says why.
    model = pipeline.train_project(project_dir, epochs=1)
    assert model.metrics["mode"] == "supervised"
    assert [n for n in model.report["per_class"]] == ["ok", "defect"]
    assert any("spot: 2 labeled images" in s and "'defect'" in s for s in model.report["shortfalls"])


def test_cancel_leaves_no_model_behind(tmp_path):
    project_dir = make_tiny_project(tmp_path / "p")
    calls = {"n": 0}

    def stop_after_a_few_batches() -> bool:
        calls["n"] += 1
        return calls["n"] > 5

    with pytest.raises(Cancelled):
        pipeline.train_project(project_dir, epochs=3, should_stop=stop_after_a_few_batches)
    with Project.open(project_dir) as project:
        assert project.models() == []
    assert list((project_dir / "models").glob("*")) == []  # no version and no half-written folder


def test_full_disk_during_export_keeps_the_previous_model(trained, tmp_path, monkeypatch):
    project_dir, model, _ = trained
    before = (model.path / "model.onnx").read_bytes()
    real_replace = export_mod.atomic_path.__globals__["os"].replace

    def full_disk(src, dst):
        if str(dst).endswith("model.onnx"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(export_mod.atomic_path.__globals__["os"], "replace", full_disk)
    with pytest.raises(DiskFullError, match="disk is full"):
        pipeline.train_project(project_dir, epochs=1)
    monkeypatch.undo()
    assert (model.path / "model.onnx").read_bytes() == before
    with Project.open(project_dir) as project:
        assert [m.version for m in project.models()] == [model.version]
    assert not list((project_dir / "models").glob(".partial-*"))


def test_an_export_that_disagrees_with_torch_is_refused(trained, monkeypatch, tmp_path):
    _, model, _ = trained
    state = torch.load(model.path / "checkpoint.pt", weights_only=True)
    net = InspectionNet(len(state["class_names"]) - 1)
    net.load_state_dict(state["state_dict"])
    monkeypatch.setattr(export_mod, "parity", lambda *a, **k: 3e-3)
    target = tmp_path / "model.onnx"
    images = [np.zeros((TINY_INPUT_SIZE, TINY_INPUT_SIZE, 3), np.uint8)]
    with pytest.raises(export_mod.ExportParityError, match="3.00e-03"):
        export_mod.export_checked(net, target, TINY_INPUT_SIZE, {"format": 1}, images)
    assert not target.exists()


def test_second_version_reports_what_changed(trained):
    project_dir, first, _ = trained
    with Project.open(project_dir) as project:
        record = project.images(verdict="ok")[0]
        project.set_label(record.id, "scratch")
    second = pipeline.train_project(project_dir, epochs=1)
    assert second.version != first.version
    assert any("scratch" in line for line in second.report["changes"])
    assert json.loads((second.path / "model.json").read_text())["version"] == second.version


def _generated_sample(rng, defect: str | None):
    """A 64-px generated part as a training Sample (with its mask when defective)."""
    from app.core.synthetic import generate_part
    from training.data import Sample

    image, mask = generate_part(rng, defect, size=64)
    return Sample(image, mask if defect else None, defect or "ok", key=str(rng.integers(1 << 30)))


def test_full_fine_tuning_path_runs_on_cpu():
    """The GPU path (every layer trains on fresh augmentations) runs anywhere; CI has no GPU."""
    from training.loop import TrainConfig, train

    rng = np.random.default_rng(0)

    def sample(defect):
        return _generated_sample(rng, defect)

    train_set = [sample(None) for _ in range(6)] + [sample("spot") for _ in range(4)]
    val_set = [sample(None) for _ in range(3)] + [sample("spot") for _ in range(2)]
    cfg = TrainConfig(input_size=64, epochs=1, batch_size=4, full_finetune=True, class_names=["ok", "spot"])
    before = InspectionNet(1, load_pretrained_backbone()).backbone._conv_stem.weight.detach().clone()
    result = train(train_set, val_set, cfg)
    # Full fine-tuning moves the very first layer too (the CPU path keeps it frozen).
    assert not torch.equal(result.net.backbone._conv_stem.weight.detach(), before)
    assert result.val_scores.shape == (5,)


def test_validation_judges_tiled_parts_whole_when_it_picks_the_epoch(monkeypatch):
    """A tile holding a sliver of a crack is a defect tile, but the line judges the part by
    its strongest tile: the epoch's validation AUROC (which picks the kept epoch) is the
    parts', not the tiles'."""
    from app.core.synthetic import generate_part
    from training import loop
    from training.data import Sample

    rng = np.random.default_rng(0)

    def tiles(part, verdicts):
        out = []
        for i, verdict in enumerate(verdicts):
            image, mask = generate_part(rng, None if verdict == "ok" else "spot", size=64)
            out.append(Sample(image, None if verdict == "ok" else mask, verdict, f"{part}#t{i}"))
        return out

    train_set = tiles("a", ["ok", "ok"]) + tiles("b", ["spot", "ok"]) + tiles("c", ["ok", "spot"])
    # Part "bad": its crack is in tile 0 and a sliver of it at tile 1's edge (both defect
    # tiles); parts "good1" and "good2" are clean.
    val_set = tiles("bad", ["spot", "spot"]) + tiles("good1", ["ok", "ok"]) + tiles("good2", ["ok", "ok"])
    # Scores as a network might give them: the sliver tile scores below the clean tiles.
    tile_scores = np.array([0.9, 0.1, 0.2, 0.3, 0.25, 0.15])
    monkeypatch.setattr(loop._Fit, "val_outputs", lambda self: (tile_scores, np.zeros((6, 4, 4), np.float32)))
    cfg = loop.TrainConfig(input_size=64, epochs=1, batch_size=4, class_names=["ok", "spot"])
    records = []
    loop.train(train_set, val_set, cfg, on_event=lambda e: records.append(e) if e["event"] == "epoch" else None)
    assert loop.auroc(np.array([1, 1, 0, 0, 0, 0]), tile_scores) == 0.5  # per tile: a coin toss
    assert records[0]["val_auroc"] == 1.0  # per part: 0.9 above 0.3 and 0.25
    assert records[0]["val_catch_rate"] == 1.0


def test_among_epochs_that_rank_parts_alike_the_one_whose_heatmap_points_at_the_defects_is_kept(monkeypatch):
    """Validation AUROC often saturates (every defect above every OK part). The loss then
    picked the most confident epoch; the patch AUROC against the painted masks now picks
    the one whose heatmap shows where the defect is, and the retrain is no longer."""
    from training import loop

    rng = np.random.default_rng(1)

    def sample(defect):
        return _generated_sample(rng, defect)

    train_set = [sample(None) for _ in range(4)] + [sample("spot") for _ in range(4)]
    val_set = [sample(None) for _ in range(3)] + [sample("spot") for _ in range(3)]
    confident = np.array([0.01, 0.01, 0.01, 0.99, 0.99, 0.99])
    timid = np.array([0.3, 0.3, 0.3, 0.7, 0.7, 0.7])  # the same ranking, a higher loss

    def val_outputs(self):
        epoch = len(self.seen) + 1
        self.seen.append(epoch)
        self.net.classify.bias.data[0] = float(epoch)  # marks the weights of this epoch
        targets = self.val_patch_targets()
        pointing = np.where(targets > 0, 3.0, -3.0).astype(np.float32)
        scores, patches = {1: (confident, -pointing), 2: (timid, pointing), 3: (timid, -pointing)}[epoch]
        return scores, patches

    monkeypatch.setattr(loop._Fit, "seen", [], raising=False)
    monkeypatch.setattr(loop._Fit, "val_outputs", val_outputs)
    cfg = loop.TrainConfig(input_size=64, epochs=3, batch_size=4, class_names=["ok", "spot"])
    records = []
    result = loop.train(train_set, val_set, cfg, on_event=lambda e: records.append(e) if e["event"] == "epoch" else None)
    assert [r["val_auroc"] for r in records] == [1.0, 1.0, 1.0]
    assert [r["val_patch_auroc"] for r in records] == [0.0, 1.0, 0.0]
    assert records[0]["val_loss"] < records[1]["val_loss"]  # the loss alone would keep epoch 1
    assert float(result.net.classify.bias.detach()[0]) == 2.0
    assert result.epochs_run == 3


def test_patch_auroc_counts_only_the_patches_whose_truth_is_known():
    from training.loop import patch_auroc

    targets = np.array([[1, 0, -1], [0, 1, -1]], np.float32)
    assert patch_auroc(targets, np.array([[5, 1, 9], [2, 4, 9]])) == 1.0  # the unknown 9s do not count
    assert patch_auroc(targets, np.array([[1, 5, 0], [4, 2, 0]])) == 0.0
    assert patch_auroc(np.zeros((2, 2)), np.ones((2, 2))) is None  # no painted patch: nothing to judge


# -- bags: the tiles of an unpainted defective part (training.weak_tiles) --------------------

def _tile(key: str, verdict: str, painted: bool = False):
    from training.data import Sample

    mask = np.full((32, 32), 255, np.uint8) if painted else None
    return Sample(np.zeros((32, 32, 3), np.uint8), mask, verdict, key)


def test_bags_are_the_unpainted_defective_parts_tiles_per_view():
    from training.weak_tiles import bag_ids, is_weak, part_counts

    samples = [_tile("a#t0", "crack"), _tile("a#t1", "crack"), _tile("b#t0", "ok"), _tile("c#t0", "crack", True),
               _tile("d", "crack"), _tile("e#t0", "dent"), _tile("a#t0", "crack")]
    assert [is_weak(s) for s in samples] == [True, True, False, False, False, True, True]
    # The last row is a second view of a#t0: a bag of its own with that view's tiles.
    assert bag_ids(samples, [0, 0, 0, 0, 0, 0, 1]).tolist() == [0, 0, -1, -1, -1, 1, 2]
    # A bag counts as one part of its class, for the class balance.
    assert part_counts(samples[:6]) == {"crack": 3, "ok": 1, "dent": 1}


def test_a_bags_weight_is_shared_then_goes_to_its_highest_tile():
    from training.weak_tiles import even_weights, highest_weights

    bags = np.array([-1, 0, 0, 0, -1, 1, 1])
    assert even_weights(bags).tolist() == pytest.approx([1, 1 / 3, 1 / 3, 1 / 3, 1, 0.5, 0.5])
    scores = np.array([0.9, 0.1, 0.7, 0.3, 0.0, 0.6, 0.2])
    assert highest_weights(bags, scores).tolist() == [1, 0, 1, 0, 1, 1, 0]


def test_a_cached_step_in_channels_last_computes_what_the_standard_layout_does(trained):
    """The trainer steps on cached activations in channels-last for speed
    (training.loop.CACHED_STEP_LAYOUT): the same loss and gradients, to float rounding,
    and the trained network comes back in the standard layout that export and
    checkpoints expect."""
    from training.loop import TrainConfig, _in_layout, _Step, compute_loss

    _, model, _ = trained
    net = load_network(model.path / "checkpoint.pt")
    net = getattr(net, "supervised", net)  # auto may have kept a combined model
    assert all(p.is_contiguous() for p in net.parameters())
    torch.manual_seed(0)
    x, f16 = torch.randn(4, 192, 3, 3), torch.randn(4, 112, 6, 6)
    is_defect, cls = torch.tensor([0.0, 1, 1, 0]), torch.tensor([-1, 0, 0, -1])
    patches = torch.where(torch.rand(4, 6, 6) > 0.8, 1.0, 0.0) * is_defect[:, None, None]

    def step(layout):
        net.train().to(memory_format=layout)
        net.zero_grad(set_to_none=True)
        out = _Step(net, TrainConfig().frozen_blocks, True)(_in_layout(x, layout), _in_layout(f16, layout))
        loss = compute_loss(out, is_defect, cls, patches, torch.tensor(1.0), torch.ones(net.n_defect_classes),
                            TrainConfig())
        loss.backward()
        grads = {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}
        net.to(memory_format=torch.contiguous_format)
        return float(loss.detach()), grads

    loss_standard, grads_standard = step(torch.contiguous_format)
    loss_last, grads_last = step(torch.channels_last)
    assert loss_last == pytest.approx(loss_standard, rel=1e-5)
    assert grads_last.keys() == grads_standard.keys() and len(grads_standard) > 10
    for name, grad in grads_standard.items():
        assert torch.allclose(grads_last[name], grad, rtol=1e-3, atol=1e-5), name


def test_weights_of_one_give_the_unweighted_loss():
    from training.loop import TrainConfig, compute_loss
    from training.network import NetOutput

    torch.manual_seed(0)
    n, classes, grid = 6, 3, 4
    def output(logit, class_logits, patch_logits):
        unused = torch.zeros(0)
        return NetOutput(score=unused, class_probs=unused, heatmap=unused, defect_logit=logit,
                         patch_logits=patch_logits, class_logits=class_logits)

    out = output(torch.randn(n), torch.randn(n, classes), torch.randn(n, grid, grid))
    is_defect = torch.tensor([0, 1, 1, 0, 1, 1], dtype=torch.float32)
    cls = torch.tensor([-1, 0, 2, -1, 1, 0])
    patches = torch.where(torch.rand(n, grid, grid) > 0.5, 1.0, 0.0)
    patches[2] = -1
    args = (out, is_defect, cls, patches, torch.tensor(2.0), torch.tensor([1.0, 0.5, 2.0]), TrainConfig())
    assert float(compute_loss(*args, weights=torch.ones(n))) == pytest.approx(float(compute_loss(*args)), rel=1e-6)
    # A row weighted 0 is as if it were not in the batch (its patches carry no target).
    patches[1] = -1
    keep = torch.tensor([0, 2, 3, 4, 5])
    sub = output(out.defect_logit[keep], out.class_logits[keep], out.patch_logits[keep])
    without = compute_loss(sub, is_defect[keep], cls[keep], patches[keep], *args[4:])
    weights = torch.tensor([1.0, 0.0, 1, 1, 1, 1])
    assert float(compute_loss(*args[:3], patches, *args[4:], weights=weights)) == pytest.approx(float(without), rel=1e-6)


@pytest.mark.parametrize("full", [False, True], ids=["cached", "full fine-tuning"])
def test_a_bags_weight_is_shared_in_the_first_epoch_then_given_to_one_tile(monkeypatch, full):
    """Both training paths step through the tiles of unpainted defective parts as bags."""
    from app.core.synthetic import generate_part
    from training import loop
    from training.data import Sample

    rng = np.random.default_rng(2)

    def part(name: str, verdicts: list[str], painted: bool = True):
        out = []
        for i, verdict in enumerate(verdicts):
            image, mask = generate_part(rng, None if verdict == "ok" else "spot", size=64)
            label = "spot" if "spot" in verdicts and not painted else verdict
            out.append(Sample(image, mask if painted and verdict != "ok" else None, label, f"{name}#t{i}"))
        return out

    train_set = (part("a", ["ok", "ok"]) + part("b", ["ok", "ok"]) + part("c", ["spot", "ok"])
                 + part("u1", ["spot", "ok"], painted=False) + part("u2", ["ok", "spot"], painted=False))
    val_set = part("v", ["ok", "ok"]) + part("w", ["spot", "ok"]) + part("x", ["ok", "spot"], painted=False)
    seen: list[tuple[int, torch.Tensor, np.ndarray]] = []
    real = loop._Fit.bag_weights

    def spy(self, epoch):
        weights = real(self, epoch)
        seen.append((epoch, weights, self.bags))
        return weights

    monkeypatch.setattr(loop._Fit, "bag_weights", spy)
    cfg = loop.TrainConfig(input_size=64, epochs=2, batch_size=4, full_finetune=full, patience=5,
                           class_names=["ok", "spot"])
    records = []
    loop.train(train_set, val_set, cfg, on_event=lambda e: records.append(e) if e["event"] == "epoch" else None)
    assert [epoch for epoch, _, _ in seen] == [1, 2] and len(records) == 2
    for epoch, weights, bags in seen:
        weak = bags >= 0
        n_bags = len(set(bags[weak].tolist()))
        assert n_bags == (2 if full else 2 * cfg.cached_views)  # two parts, in each cached view
        assert torch.all(weights[~torch.from_numpy(weak)] == 1)
        assert float(weights[torch.from_numpy(weak)].sum()) == pytest.approx(n_bags)  # a bag counts once
        if epoch == 1:
            assert torch.all(weights[torch.from_numpy(weak)] == 0.5)
        else:
            assert sorted(weights[torch.from_numpy(weak)].tolist()) == [0.0] * n_bags + [1.0] * n_bags
    assert np.isfinite(records[-1]["val_loss"])  # judged on the tiles whose label is known
