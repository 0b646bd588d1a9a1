"""The simple baseline the report sets beside every model (training/baseline.py)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")

from training.baseline import fit_selected, image_features, percentiles  # noqa: E402
from training.comparisons import baseline_on  # noqa: E402


@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_percentiles_from_one_sort_match_numpy(n):
    values = np.random.default_rng(n).normal(size=n).astype(np.float32)
    q = (0, 1, 5, 25, 50, 75, 95, 99, 100)
    assert np.allclose(percentiles(values, q), np.percentile(values, q), rtol=0, atol=1e-6)
    assert float(percentiles(values, 50.0)) == pytest.approx(float(np.median(values)), abs=1e-6)


def _part(rng: np.random.Generator, hole: bool) -> np.ndarray:
    image = np.clip(rng.normal(150, 6, (120, 160, 3)), 0, 255).astype(np.uint8)
    if hole:  # a dark blowhole somewhere on the part
        y, x = rng.integers(20, 100), rng.integers(20, 140)
        image[y - 5:y + 5, x - 5:x + 5] = 40
    return image


def test_the_baseline_tells_holes_from_clean_parts_from_images_or_their_features():
    rng = np.random.default_rng(0)
    train = [(_part(rng, i % 3 == 0), i % 3 == 0) for i in range(60)]
    held = [(_part(rng, i % 3 == 0), i % 3 == 0) for i in range(30)]
    from_images = baseline_on(train, held)
    # A caller that reads many parts passes their feature vectors instead: the same result.
    from_features = baseline_on([(image_features(img), d) for img, d in train], held)
    assert from_images["auroc"] >= 0.95
    assert from_features["auroc"] == from_images["auroc"]
    tx = np.stack([image_features(img) for img, _ in train])
    ty = np.array([d for _, d in train])
    assert fit_selected(tx, ty, tx, ty).scores(tx).shape == (60,)


def test_a_models_ranking_figures_read_like_the_baselines():
    from training.comparisons import ranking_figures

    ok = np.linspace(0.0, 0.5, 200)
    assert ranking_figures(ok, np.array([0.9, 0.95, 0.3])) == {
        "auroc": pytest.approx((2 * 200 + 120) / 600), "catch_at_1pct_false_reject": pytest.approx(2 / 3)}
    assert ranking_figures(ok, np.array([])) is None and ranking_figures(np.array([]), np.array([0.9])) is None
