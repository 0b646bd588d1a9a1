"""Combined mode: supervised + anomaly evidence in one exported graph, kept only where it helps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.cli import main as cli
from app.core.project import Project
from app.core.runtime import Inspector
from tests.training_fixtures import TINY_INPUT_SIZE, make_spot_project
from training.checkpoint import load_network
from training.combined import Reference, combined_scores, compare


def test_compare_keeps_the_combination_only_when_it_catches_more():
    rng = np.random.default_rng(0)
    ok = rng.normal(0, 1, 300)
    is_defect = np.r_[np.zeros(300, bool), np.ones(20, bool)]
    weak = np.r_[ok, rng.normal(1.0, 1, 20)]  # defects barely above the OK parts
    strong = np.r_[ok, rng.normal(5.0, 1, 20)]
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    helped = compare(sig(weak), sig(strong), is_defect, 0.01)
    assert helped.keep_combined and helped.caught["combined"] > helped.caught["supervised"]
    hurt = compare(sig(strong), sig(weak), is_defect, 0.01)
    assert not hurt.keep_combined
    assert "left out" in hurt.sentence() and f"/{hurt.n_defects}" in hurt.sentence()
    # As many caught, a slightly higher AUROC: not a measured help, the simpler model stays.
    nudged = strong.copy()
    nudged[300:] += 1e-3
    tie = compare(sig(strong), sig(nudged), is_defect, 0.01)
    assert tie.caught["combined"] == tie.caught["supervised"] and not tie.keep_combined


def test_compare_keeps_the_anomaly_model_alone_when_it_catches_more_than_supervised_and_no_fewer_than_both():
    rng = np.random.default_rng(2)
    ok = rng.normal(0, 1, 300)
    is_defect = np.r_[np.zeros(300, bool), np.ones(20, bool)]
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    weak, middling, strong = (sig(np.r_[ok, rng.normal(mean, 1, 20)]) for mean in (1.0, 2.5, 5.0))
    alone = compare(weak, middling, is_defect, 0.01, anomaly=strong)
    assert alone.kept == "good-only" and not alone.keep_combined
    assert alone.caught["good-only"] > max(alone.caught["supervised"], alone.caught["combined"])
    assert "anomaly model alone is kept" in alone.sentence() and alone.to_dict()["kept"] == "good-only"
    # As many as the combination: the simpler of the two, the anomaly model alone.
    tie = compare(weak, strong, is_defect, 0.01, anomaly=strong)
    assert tie.caught["good-only"] == tie.caught["combined"] > tie.caught["supervised"]
    assert tie.kept == "good-only"
    # As many as supervised alone: supervised, the simplest (and the combination must
    # catch strictly more than it to be kept).
    same = compare(strong, middling, is_defect, 0.01, anomaly=strong)
    assert same.caught["good-only"] == same.caught["supervised"] and same.kept == "supervised"
    # Without the anomaly scores (combined mode asked for) there is no third candidate.
    assert "good-only" not in compare(weak, middling, is_defect, 0.01).caught


def test_reference_puts_ok_parts_at_zero_and_their_99th_percentile_at_one():
    rng = np.random.default_rng(1)
    ok_logits = rng.normal(-4.0, 2.0, 2000)
    ref = Reference.from_ok_scores(1 / (1 + np.exp(-ok_logits)))
    z = ref.z(ok_logits)
    assert abs(np.median(z)) < 1e-6 and abs(np.quantile(z, 0.99) - 1.0) < 1e-6
    # Two models at their own 99th percentiles sum to 2 in z: a score of sigmoid(2).
    both = combined_scores([1 / (1 + np.exp(-np.quantile(ok_logits, 0.99)))] * 2, [0.5, 0.5], ref,
                           Reference(0.0, 1.0))
    assert np.allclose(both, 1 / (1 + np.exp(-1.0)))


@pytest.fixture(scope="module")
def combined_model(tmp_path_factory):
    project = make_spot_project(tmp_path_factory.mktemp("combined") / "spots")
    assert cli(["train", str(project), "--mode", "combined", "--epochs", "3"]) == 0
    with Project.open(project) as p:
        return project, p.models()[0]


@pytest.mark.slow
def test_combined_mode_exports_one_parity_checked_graph(combined_model):
    _, model = combined_model
    assert model.metrics["mode"] == "combined"
    assert "supervised + anomaly" in model.metrics["mode_reason"]
    comparison = model.report["mode_comparison"]
    assert set(comparison["caught"]) == {"supervised", "combined"}
    assert model.report["parity_max_abs_diff"] <= 1e-4
    bank = model.report["bank"]
    assert 0 < bank["entries"] <= bank["fitted_entries"]  # the anomaly half is inside
    assert "bank entries" in model.metrics["mode_reason"]  # and says how much of its bank it searches
    assert model.report["weight_change"]  # and so is the trained supervised half
    inspector = Inspector(model.onnx_path, threshold=model.threshold)
    assert inspector.info.mode == "combined"
    part = np.full((TINY_INPUT_SIZE, TINY_INPUT_SIZE, 3), 128, np.uint8)
    verdict = inspector.inspect(part)
    assert 0.0 <= verdict.score <= 1.0
    assert verdict.heatmap_on_image().shape == part.shape[:2]


@pytest.mark.slow
def test_the_shared_backbone_pass_gives_what_two_separate_passes_give(combined_model):
    project, model = combined_model
    state = torch.load(model.path / "checkpoint.pt", weights_only=True)
    assert state["shared_backbone_prefix"] is True  # the CPU path froze the early blocks
    net = load_network(model.path / "checkpoint.pt")
    assert net.shared
    assert net.anomaly.bank_entries == model.report["bank"]["entries"]  # the checkpoint holds the bank it searches
    rng = np.random.default_rng(3)
    images = torch.from_numpy(rng.integers(0, 255, (3, TINY_INPUT_SIZE, TINY_INPUT_SIZE, 3), dtype=np.uint8))
    with torch.no_grad():
        shared = net(images)
        net.shared = False
        separate = net(images)
    assert torch.allclose(shared.score, separate.score, atol=1e-5)
    assert torch.allclose(shared.heatmap, separate.heatmap, atol=1e-5)


@pytest.mark.slow
def test_auto_keeps_the_anomaly_model_it_fitted_when_that_catches_most(tmp_path, monkeypatch):
    """The real retrain with the comparison's verdict forced to "good-only" (which
    candidate wins on generated parts is not what this checks): the model saved is the
    good-only model `--mode good-only` trains, every OK part in its bank, its threshold
    on their out-of-fold scores, its catch on every labeled defect."""
    import training.combined as combined

    real = combined.compare

    def anomaly_wins(sup, both, is_defect, target, anomaly=None):
        result = real(sup, both, is_defect, target, anomaly)
        if anomaly is not None:
            result.kept = "good-only"
        return result

    monkeypatch.setattr(combined, "compare", anomaly_wins)
    project = make_spot_project(tmp_path / "spots")
    assert cli(["train", str(project), "--epochs", "1"]) == 0
    with Project.open(project) as p:
        model = p.models()[0]
        labeled = p.labeled()
        defects = [p.load_image(r.id) for r, lab in labeled if lab.verdict != "ok"]
    n_ok = sum(lab.verdict == "ok" for _, lab in labeled)
    assert model.metrics["mode"] == "good-only" and model.report["mode_comparison"]["kept"] == "good-only"
    assert "the anomaly model alone is kept" in model.metrics["mode_reason"]
    assert f"all {n_ok} OK parts in its bank" in model.metrics["mode_reason"]
    assert model.report["learning_curve_note"] is None  # the supervised model's curve is not its own
    inspector = Inspector(model.onnx_path)
    assert inspector.info.mode == "good-only" and inspector.info.class_names == ["ok"]
    assert inspector.info.threshold == pytest.approx(model.threshold)
    assert model.report["per_class"]["ok"] == {"train": n_ok, "val": 0}
    assert model.metrics["n_ok_heldout"] == n_ok and model.metrics["n_defect_heldout"] == len(defects)
    # The catch it reports is the exported file's on every labeled defect at its threshold.
    scores = np.array([v.score for v in inspector.inspect_batch(defects)])
    assert np.mean(scores >= model.threshold) == pytest.approx(model.metrics["catch_rate"])
    assert model.report["parity_max_abs_diff"] <= 1e-4
