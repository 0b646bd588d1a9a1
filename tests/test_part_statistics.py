"""The good-only model's part-wide term (training/part_statistics.py) on generated parts."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from app.core.evaluation import auroc
from app.core.preprocess import PAD_VALUE, letterbox
from tests.test_anomaly import texture
from training.anomaly import AnomalyConfig, anomaly_scores, export_anomaly, fit_anomaly
from training.part_statistics import fit_gaussian, ledoit_wolf_shrinkage, mahalanobis, part_statistics

SIZE = 128


def part(rng: np.random.Generator, contrast: float = 1.0, spot: bool = False) -> np.ndarray:
    """A 128 x 96 textured part letterboxed into 128 px (grey bands left and right); an
    'uneven' one has its whole surface's contrast lowered."""
    img, _ = texture(rng, spot, SIZE)
    img = img[:, 16:112].astype(np.float32)
    if contrast != 1.0:
        img = img.mean() + (img - img.mean()) * contrast
    return letterbox(np.clip(img, 0, 255).astype(np.uint8), SIZE)[0]


def test_statistics_leave_the_letterbox_padding_out():
    rng = np.random.default_rng(0)
    grid = SIZE // 16
    features = torch.from_numpy(rng.normal(size=(2, grid * grid, 5)).astype(np.float32))
    images = np.full((2, SIZE, SIZE, 3), PAD_VALUE, np.uint8)
    images[0, :, 48:80] = rng.integers(0, 255, (SIZE, 32, 3))  # a part 32 px wide in the middle
    got = part_statistics(features, torch.from_numpy(images)).numpy()

    inside = np.zeros((grid, grid), bool)
    inside[:, 3:5] = True  # the patches that are the part
    f = features[0].numpy()[inside.ravel()]
    np.testing.assert_allclose(got[0], np.r_[f.mean(0), f.std(0)], rtol=1e-5, atol=1e-5)
    # A part that is all letterbox grey counts every patch rather than none.
    every = features[1].numpy()
    np.testing.assert_allclose(got[1], np.r_[every.mean(0), every.std(0)], rtol=1e-5, atol=1e-5)


def test_ledoit_wolf_shrinkage_follows_its_definition_and_the_data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 6)) * np.array([5, 3, 1, 1, 0.5, 0.2])
    n, d = x.shape
    xc = x - x.mean(0)
    s = xc.T @ xc / n
    m = np.trace(s) / d
    beta = sum(((np.outer(r, r) - s) ** 2).sum() for r in xc) / n ** 2
    delta = ((s - m * np.eye(d)) ** 2).sum()
    assert ledoit_wolf_shrinkage(x) == pytest.approx(min(beta, delta) / delta, rel=1e-9)
    # Many parts of a very uneven spread: little shrinkage; few parts: much more.
    many = rng.normal(size=(2000, 6)) * np.array([5, 3, 1, 1, 0.5, 0.2])
    assert ledoit_wolf_shrinkage(many) < 0.02 < ledoit_wolf_shrinkage(many[:8])
    assert ledoit_wolf_shrinkage(many[:1]) == 1.0


def test_the_whitened_distance_is_the_mahalanobis_distance():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 4)) @ np.array([[2, 0, 0, 0], [1, 1, 0, 0], [0, 0, 3, 0], [0, 0, 1, 0.5]])
    mean, whiten, shrink = fit_gaussian(x)
    cov = np.cov(x.T, bias=True)
    cov = (1 - shrink) * cov + shrink * np.trace(cov) / 4 * np.eye(4)
    g = rng.normal(size=(7, 4))
    expected = np.sqrt(np.einsum("nd,de,ne->n", g - x.mean(0), np.linalg.inv(cov), g - x.mean(0)))
    np.testing.assert_allclose(mahalanobis(g, mean, whiten), expected, rtol=1e-4)


@pytest.fixture(scope="module")
def ok_parts():
    rng = np.random.default_rng(3)
    return [part(rng) for _ in range(30)]


@pytest.fixture(scope="module")
def with_term(ok_parts):
    return fit_anomaly(ok_parts, AnomalyConfig(input_size=SIZE, part_statistics=True))


def test_a_change_of_the_whole_surface_is_caught_by_the_part_wide_term(ok_parts, with_term):
    rng = np.random.default_rng(4)
    test = [part(rng) for _ in range(20)] + [part(rng, contrast=0.6) for _ in range(20)]
    defect = np.r_[np.zeros(20), np.ones(20)]
    patches_only = fit_anomaly(ok_parts, AnomalyConfig(input_size=SIZE))
    assert patches_only.part_shrinkage is None and patches_only.net.part_gaussian is None
    before = auroc(defect, anomaly_scores(patches_only.net, test))
    after = auroc(defect, anomaly_scores(with_term.net, test))
    # Every patch of the low-contrast surface is near some OK patch; the part as a whole is not.
    assert after >= 0.97 and after > before + 0.05, (before, after)
    assert 0.0 < with_term.part_shrinkage < 1.0


def test_a_local_defect_is_still_caught_with_the_part_wide_term(with_term):
    rng = np.random.default_rng(5)
    test = [part(rng) for _ in range(20)] + [part(rng, spot=True) for _ in range(20)]
    assert auroc(np.r_[np.zeros(20), np.ones(20)], anomaly_scores(with_term.net, test)) >= 0.95


def test_the_out_of_fold_scores_are_calibrated_on_the_sum(with_term):
    # The sum's calibration is its out-of-fold median: a typical unseen OK part reads 0.5.
    assert float(np.median(with_term.oof_ok_scores)) == pytest.approx(0.5, abs=1e-6)
    assert len(with_term.oof_ok_scores) == 30


def test_export_parity_and_checkpoint_round_trip(ok_parts, with_term, tmp_path):
    from training.checkpoint import load_network

    rng = np.random.default_rng(6)
    parts = [part(rng) for _ in range(3)] + [part(rng, contrast=0.6)]
    path = tmp_path / "model.onnx"
    diff = export_anomaly(with_term.net, path, SIZE, {"mode": "good-only"}, parts)
    assert diff < 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    score, _, _ = session.run(None, {"image": np.stack(parts)})
    np.testing.assert_allclose(score, anomaly_scores(with_term.net, parts), atol=1e-4)

    torch.save({"state_dict": with_term.net.state_dict(), "config": vars(AnomalyConfig(input_size=SIZE))},
               tmp_path / "checkpoint.pt")
    again = load_network(tmp_path / "checkpoint.pt")
    assert again.part_gaussian is not None
    np.testing.assert_allclose(anomaly_scores(again, parts), anomaly_scores(with_term.net, parts), atol=1e-6)


def test_too_few_ok_parts_for_a_covariance_leave_the_model_to_its_patches():
    from training.anomaly import MIN_GAUSSIAN_PARTS

    rng = np.random.default_rng(7)
    few = [part(rng) for _ in range(MIN_GAUSSIAN_PARTS)]  # 4 folds: each fit sees about 3/4 of them
    fit = fit_anomaly(few, AnomalyConfig(input_size=SIZE, part_statistics=True))
    assert fit.net.part_gaussian is None and fit.part_shrinkage is None
    test = [part(rng) for _ in range(10)] + [part(rng, spot=True) for _ in range(10)]
    scores = anomaly_scores(fit.net, test)
    assert np.isfinite(scores).all() and auroc(np.r_[np.zeros(10), np.ones(10)], scores) >= 0.9
