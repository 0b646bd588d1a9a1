"""Evaluation metrics against hand-computed cases, and a whole folder through a fixture model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from app.core.errors import NotEnoughDataError
from app.core.importer import labeled_files, labeled_files_with_masks
from app.core.evaluation import (
    PIXEL_MAX_SIDE,
    auroc,
    beta_cdf,
    beta_quantile,
    catch_at_false_reject,
    downscale_pair,
    evaluate_folder,
    localization_metrics,
    pixel_auroc,
    pro_score,
    rate_interval,
    rates_at,
    summarize,
    threshold_false_reject_interval,
    threshold_for_false_reject,
)
from app.core.imageio import encode_png
from app.core.runtime import Inspector
from tests.onnx_fixtures import write_model

DATASET = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "magnetic-tile"


def test_auroc_hand_computed():
    # Pairs (defect, ok): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3 of 4.
    assert auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)


def test_auroc_counts_ties_as_half():
    # Pairs: (0.5 vs 0.5) = 0.5, (0.5 vs 0.2) = 1, (0.9 vs 0.5) = 1, (0.9 vs 0.2) = 1 -> 3.5 / 4.
    assert auroc(np.array([0, 0, 1, 1]), np.array([0.5, 0.2, 0.5, 0.9])) == pytest.approx(0.875)
    assert auroc(np.array([0, 1, 0, 1]), np.full(4, 0.3)) == pytest.approx(0.5)
    assert auroc(np.array([1, 1, 0]), np.array([0.9, 0.8, 0.1])) == pytest.approx(1.0)
    assert auroc(np.array([1, 1, 0]), np.array([0.0, 0.1, 0.9])) == pytest.approx(0.0)


def test_auroc_is_nan_with_one_class():
    assert math.isnan(auroc(np.array([0, 0]), np.array([0.1, 0.2])))
    assert math.isnan(auroc(np.array([1]), np.array([0.1])))


def test_threshold_for_one_percent_false_reject():
    ok = np.arange(100) / 100.0  # 0.00 .. 0.99
    t = threshold_for_false_reject(ok, 0.01)
    # One OK part (0.99) may be rejected: t is just above 0.98.
    assert 0.98 < t <= 0.99 and t == pytest.approx(0.98)
    assert np.mean(ok >= t) == pytest.approx(0.01)
    # No false rejects at all: just above the highest OK score.
    t0 = threshold_for_false_reject(ok, 0.0)
    assert t0 > 0.99 and np.mean(ok >= t0) == 0.0
    # 0.29 * 100 is 28.999... in floating point; 29 parts may still be rejected.
    assert np.sum(ok >= threshold_for_false_reject(ok, 0.29)) == 29


def test_threshold_with_tied_ok_scores_rejects_fewer_not_more():
    ok = np.concatenate([[0.9, 0.9], np.linspace(0, 0.5, 98)])
    t = threshold_for_false_reject(ok, 0.01)  # one reject allowed, but two share 0.9
    assert t > 0.9 and np.mean(ok >= t) == 0.0


def test_threshold_needs_ok_scores():
    with pytest.raises(NotEnoughDataError):
        threshold_for_false_reject([], 0.01)


def test_rates_and_catch_at_false_reject():
    ok = [0.1, 0.2, 0.3, 0.6]
    bad = [0.5, 0.7, 0.9, 0.25]
    assert rates_at(ok, bad, 0.5) == (0.75, 0.25)
    assert rates_at(ok, bad, 0.95) == (0.0, 0.0)
    # 4 OK scores, 1% allowed -> 0 rejects -> threshold just above 0.6 -> catches 0.7 and 0.9.
    assert catch_at_false_reject(ok, bad, 0.01) == pytest.approx(0.5)
    # 25% allowed -> one reject -> threshold just above 0.3 -> catches 0.5, 0.7, 0.9.
    assert catch_at_false_reject(ok, bad, 0.25) == pytest.approx(0.75)
    assert math.isnan(catch_at_false_reject(ok, [], 0.01))


def test_summarize_hand_computed():
    true = ["ok", "ok", "ok", "scratch", "scratch", "spot"]
    scores = [0.1, 0.2, 0.7, 0.8, 0.3, 0.9]
    pred = [None, "ok", "scratch", "scratch", "ok", "scratch"]
    result = summarize(true, scores, pred, 0.5, ["ok", "scratch", "spot"])
    assert result["n_images"] == 6 and result["n_ok"] == 3 and result["n_defect"] == 3
    assert result["catch_rate"] == pytest.approx(2 / 3)
    assert result["false_reject_rate"] == pytest.approx(1 / 3)
    # Defect/ok pairs won: 0.8 beats all 3, 0.3 beats 2, 0.9 beats 3 -> 8 of 9.
    assert result["auroc"] == pytest.approx(8 / 9)
    assert result["catch_at_1pct_false_reject"] == pytest.approx(2 / 3)  # threshold just above 0.7
    assert result["per_class"]["ok"] == {"n": 3, "caught": pytest.approx(1 / 3), "classified_as": {"ok": 2, "scratch": 1}}
    assert result["per_class"]["scratch"]["classified_as"] == {"scratch": 1, "ok": 1}
    assert result["per_class"]["spot"] == {"n": 1, "caught": 1.0, "classified_as": {"scratch": 1}}
    assert result["confusion"] == {
        "labels": ["ok", "scratch", "spot"],
        "matrix": [[2, 1, 0], [1, 1, 0], [0, 1, 0]],
    }
    # 2 of 3 defects caught, 1 of 3 OK parts rejected at the threshold.
    assert result["catch_rate_ci"] == pytest.approx(list(rate_interval(2, 3)))
    assert result["false_reject_rate_ci"] == pytest.approx(list(rate_interval(1, 3)))
    assert result["ci_confidence"] == 0.95
    json.dumps(result)  # JSON-able as it is


def test_summarize_intervals_follow_the_confidence_or_are_left_out():
    true, scores, pred = ["ok"] * 4 + ["x"] * 4, [0.1, 0.2, 0.3, 0.9, 0.8, 0.7, 0.6, 0.1], [None] * 8
    wide = summarize(true, scores, pred, 0.5, ["ok", "x"], confidence=0.99)["catch_rate_ci"]
    narrow = summarize(true, scores, pred, 0.5, ["ok", "x"], confidence=0.8)["catch_rate_ci"]
    assert wide[0] < narrow[0] < 0.75 < narrow[1] < wide[1]
    none = summarize(true, scores, pred, 0.5, ["ok", "x"], confidence=None)
    assert none["catch_rate_ci"] is None and none["false_reject_rate_ci"] is None
    assert none["catch_rate"] == 0.75  # the rates themselves are still there


def test_summarize_without_defects_has_undefined_metrics_as_none():
    result = summarize(["ok", "ok"], [0.1, 0.2], [None, None], 0.5, ["ok", "x"])
    assert result["auroc"] is None and result["catch_rate"] is None
    assert result["catch_at_1pct_false_reject"] is None
    assert result["false_reject_rate"] == 0.0
    assert result["catch_rate_ci"] is None
    assert result["false_reject_rate_ci"] == pytest.approx(list(rate_interval(0, 2)))


def test_summarize_keeps_classes_the_model_does_not_know():
    result = summarize(["ok", "dent"], [0.1, 0.9], ["ok", "scratch"], 0.5, ["ok", "scratch"])
    assert result["confusion"]["labels"] == ["ok", "scratch", "dent"]
    assert result["confusion"]["matrix"][2] == [0, 1, 0]


def _binomial_tail_at_least(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def test_beta_cdf_matches_closed_forms():
    for x in (0.01, 0.3, 0.5, 0.77, 0.999):
        assert beta_cdf(x, 3.0, 1.0) == pytest.approx(x**3, rel=1e-12)  # I_x(a, 1) = x^a
        assert beta_cdf(x, 1.0, 7.0) == pytest.approx(1 - (1 - x) ** 7, rel=1e-12)  # I_x(1, b)
        assert beta_cdf(x, 2.5, 4.0) == pytest.approx(1 - beta_cdf(1 - x, 4.0, 2.5), abs=1e-14)
    assert beta_cdf(0.0, 2, 3) == 0.0 and beta_cdf(1.0, 2, 3) == 1.0


def test_beta_cdf_is_a_binomial_tail_for_large_counts():
    # I_p(k, n-k+1) = P(Binomial(n, p) >= k); n = 400 needs many continued-fraction terms.
    for k, n, p in ((3, 10, 0.2), (120, 400, 0.31), (390, 400, 0.99)):
        assert beta_cdf(p, k, n - k + 1) == pytest.approx(_binomial_tail_at_least(k, n, p), rel=1e-9, abs=1e-15)


def test_beta_quantile_inverts_the_cdf():
    for q, a, b in ((0.025, 1, 10), (0.5, 5, 6), (0.975, 30, 2), (0.001, 200, 800)):
        assert beta_cdf(beta_quantile(q, a, b), a, b) == pytest.approx(q, rel=1e-9)
    assert beta_quantile(0.0, 2, 2) == 0.0 and beta_quantile(1.0, 2, 2) == 1.0


def test_rate_interval_known_values():
    low, high = rate_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-12)  # 0.3085
    assert rate_interval(5, 10) == pytest.approx((0.1871, 0.8129), abs=1e-4)
    low, high = rate_interval(10, 10)
    assert high == 1.0 and low == pytest.approx(0.025 ** (1 / 10), abs=1e-12)
    assert rate_interval(3, 20, confidence=0.99)[1] > rate_interval(3, 20)[1]


def test_rate_interval_bounds_are_where_the_binomial_tails_are_alpha_half():
    # Clopper-Pearson by definition: P(X >= k | low) = P(X <= k | high) = 2.5 %.
    for k, n in ((1, 7), (4, 30), (29, 31)):
        low, high = rate_interval(k, n)
        assert _binomial_tail_at_least(k, n, low) == pytest.approx(0.025, rel=1e-7)
        assert 1 - _binomial_tail_at_least(k + 1, n, high) == pytest.approx(0.025, rel=1e-7)


@pytest.mark.parametrize("k, n, confidence", [(-1, 5, 0.95), (6, 5, 0.95), (0, 0, 0.95), (1, 5, 1.0), (1, 5, 0.0)])
def test_rate_interval_rejects_nonsense(k, n, confidence):
    with pytest.raises(ValueError):
        rate_interval(k, n, confidence)


def test_threshold_false_reject_interval_is_the_beta_of_the_order_statistic():
    n, k = 200, 2
    low, high, mean = threshold_false_reject_interval(n, k)
    assert mean == pytest.approx((k + 1) / (n + 1))
    assert beta_cdf(low, k + 1, n - k) == pytest.approx(0.025) and beta_cdf(high, k + 1, n - k) == pytest.approx(0.975)
    # k = 0 is Beta(1, n): quantile q is 1 - (1 - q)^(1/n).
    low0, high0, _ = threshold_false_reject_interval(n, 0)
    assert (low0, high0) == pytest.approx((1 - 0.975 ** (1 / n), 1 - 0.025 ** (1 / n)))
    with pytest.raises(ValueError):
        threshold_false_reject_interval(10, 10)


def test_threshold_false_reject_interval_covers_the_true_rate_in_simulation():
    # OK scores ~ N(0, 1); a threshold set at 1 % false rejects on 200 held-out parts
    # rejects a share 1 - Phi(t) of all future OK parts. The interval should hold it ~95 %.
    rng = np.random.default_rng(7)
    n, rate, repetitions = 200, 0.01, 2000
    k = int(math.floor(rate * n))
    low, high, mean = threshold_false_reject_interval(n, k)
    thresholds = [threshold_for_false_reject(ok, rate) for ok in rng.standard_normal((repetitions, n))]
    true_rates = np.array([0.5 * math.erfc(t / math.sqrt(2)) for t in thresholds])  # 1 - Phi(t)
    coverage = float(np.mean((true_rates >= low) & (true_rates <= high)))
    assert 0.9 <= coverage <= 0.99
    assert np.mean(true_rates) == pytest.approx(mean, rel=0.1)  # the Beta's mean, (k+1)/(n+1)


# --- Pixel metrics ---------------------------------------------------------------------


def _blob_masks(rng: np.random.Generator, count: int = 4, shape=(120, 160)) -> list[np.ndarray]:
    masks = []
    for _ in range(count):
        mask = np.zeros(shape, np.uint8)
        y, x = rng.integers(0, shape[0] - 30), rng.integers(0, shape[1] - 30)
        mask[y : y + rng.integers(3, 30), x : x + rng.integers(3, 30)] = 255
        mask[rng.integers(0, shape[0]), :] = 255  # a thin scratch: a second region
        masks.append(mask)
    return masks + [np.zeros(shape, np.uint8)]  # an OK part: all background


def test_a_perfect_heatmap_scores_one_and_an_inverted_one_zero():
    masks = _blob_masks(np.random.default_rng(1))
    perfect = [m / 255.0 for m in masks]
    assert pixel_auroc(perfect, masks) == 1.0 and pro_score(perfect, masks) == 1.0
    inverted = [1.0 - h for h in perfect]
    assert pixel_auroc(inverted, masks) == 0.0 and pro_score(inverted, masks) == 0.0


def test_a_random_heatmap_is_chance():
    rng = np.random.default_rng(2)
    masks = _blob_masks(rng)
    noise = [rng.random(m.shape) for m in masks]  # many distinct values: thresholds are quantiles
    assert pixel_auroc(noise, masks) == pytest.approx(0.5, abs=0.03)
    # Noise covers a share t of every region when it flags a share t of the background:
    # PRO(FPR) = FPR, whose mean over 0..0.3 is 0.15.
    assert pro_score(noise, masks) == pytest.approx(0.15, abs=0.03)


def test_quantile_thresholds_match_the_theory_for_shifted_noise():
    # Background ~ U(0, 1), defect ~ U(0.5, 1.5): P(defect > background) = 1 - 1/8, and
    # at false-positive rate f each region has a share min(1, 0.5 + f) above the
    # threshold 1 - f, so PRO = mean of 0.5 + f over 0..0.3 = 0.65.
    rng = np.random.default_rng(5)
    masks, heatmaps = [], []
    for i in range(30):
        mask = np.zeros((128, 128), bool)
        mask[10 + i : 40 + i, 20:50] = True
        masks.append(mask)
        heatmaps.append(rng.random(mask.shape) + 0.5 * mask)
    assert pixel_auroc(heatmaps, masks) == pytest.approx(0.875, abs=0.01)
    assert pro_score(heatmaps, masks) == pytest.approx(0.65, abs=0.01)


def test_pixel_auroc_agrees_with_the_rank_auroc_of_all_pixels():
    rng = np.random.default_rng(3)
    masks = _blob_masks(rng)
    heatmaps = [np.round(rng.random(m.shape) * 40 + (m > 0) * 8) / 48 for m in masks]  # ties on purpose
    labels = np.concatenate([m.ravel() > 0 for m in masks])
    expected = auroc(labels, np.concatenate([h.ravel() for h in heatmaps]))
    assert pixel_auroc(heatmaps, masks) == pytest.approx(expected, abs=1e-12)
    assert 0.5 < expected < 1.0


def test_pixel_metrics_hand_computed():
    # Regions (8-connected): A = the two top-left pixels (0.9, 0.8), B = the right one (0.4).
    # Background: 0.1, 0.4, 0.7, 0.2, 0.3 (0.4 ties with B).
    heat = np.array([[0.9, 0.8, 0.1, 0.4], [0.7, 0.2, 0.3, 0.4]])
    mask = np.array([[1, 1, 0, 0], [0, 0, 0, 1]])
    # Defect/background pairs won: 0.9 -> 5, 0.8 -> 5, 0.4 -> 3 + the tie 0.5 = 13.5 of 15.
    assert pixel_auroc([heat], [mask]) == pytest.approx(13.5 / 15)
    # Lowering the threshold: 0.9 -> (FPR 0, PRO 1/4), 0.8 -> (0, 1/2), 0.7 -> (0.2, 1/2),
    # 0.4 -> (0.4, 1): cut at 0.3 the last segment gives PRO 0.75. Area 0.2 * 0.5 +
    # 0.1 * (0.5 + 0.75) / 2 = 0.1625, over 0.3.
    assert pro_score([heat], [mask], max_fpr=0.3) == pytest.approx(0.1625 / 0.3)
    assert pro_score([heat], [mask], max_fpr=0.2) == pytest.approx(0.5)
    # An OK part brighter than every defect adds one background pixel each defect loses to.
    ok_heat, ok_mask = np.array([[0.95]]), np.zeros((1, 1))
    assert pixel_auroc([heat, ok_heat], [mask, ok_mask]) == pytest.approx(13.5 / 18)


def test_images_without_a_mask_are_left_out():
    heat = np.array([[0.9, 0.8, 0.1, 0.4], [0.7, 0.2, 0.3, 0.4]])
    mask = np.array([[1, 1, 0, 0], [0, 0, 0, 1]])
    unannotated = np.full((5, 5), 0.99)
    assert pixel_auroc([heat, unannotated], [mask, None]) == pixel_auroc([heat], [mask])
    assert pro_score([unannotated, heat], [None, mask]) == pro_score([heat], [mask])
    assert math.isnan(pixel_auroc([unannotated], [None])) and math.isnan(pro_score([], []))
    # Only OK parts: no defect pixel, nothing to measure.
    assert localization_metrics([heat], [np.zeros(heat.shape)]) == {"pixel_auroc": None, "pro": None}
    with pytest.raises(ValueError):
        pixel_auroc([heat], [np.zeros((3, 3))])  # a mask of another size


def test_downscale_keeps_thin_defects_and_the_mean_heat():
    heat = np.random.default_rng(4).random((1000, 700)).astype(np.float32)
    mask = np.zeros((1000, 700), np.uint8)
    mask[517, 100:600] = 255  # a 1-px scratch
    mask[3, 699] = 255  # a single pixel in the last, partial block
    small_heat, small_mask = downscale_pair(heat, mask)
    assert max(small_heat.shape) <= PIXEL_MAX_SIDE and small_heat.shape == small_mask.shape
    factor = math.ceil(1000 / PIXEL_MAX_SIDE)
    assert small_mask[517 // factor, 100 // factor : 600 // factor].all()
    assert small_mask[0, 699 // factor] and small_mask.sum() == len(range(100 // factor, 599 // factor + 1)) + 1
    assert small_heat[:-1, :-1].mean() == pytest.approx(heat[: 249 * factor, : 174 * factor].mean(), rel=1e-5)
    same_heat, same_mask = downscale_pair(heat[:200, :100], mask[:200, :100])
    assert same_heat.shape == (200, 100) and np.array_equal(same_mask, mask[:200, :100] > 0)


def _write(path: Path, bgr: tuple[int, int, int], size: tuple[int, int] = (40, 60)) -> None:
    image = np.empty((*size, 3), np.uint8)
    image[:] = bgr
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(image))


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for i in range(4):
        _write(root / "Good" / f"g{i}.png", (10 + i, 10, 10))
    _write(root / "Good" / "nested" / "g9.png", (240, 240, 240))  # a bright OK part: a false reject
    for i in range(3):
        _write(root / "scratch" / f"s{i}.png", (250, 220, 60))
    _write(root / "spot" / "p0.png", (120, 250, 120))
    _write(root / "spot" / "p1.png", (5, 5, 5))  # a dark defect the model misses
    _write(root / "masks" / "spot" / "p0.png", (255, 255, 255))  # masks are not parts
    (root / "spot" / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "scratch" / "notes.txt").write_text("not an image")
    return root


def test_evaluate_folder(dataset: Path, tmp_path: Path):
    inspector = Inspector(write_model(tmp_path / "m.onnx"))
    progress = []
    result = evaluate_folder(inspector, dataset, on_progress=lambda done, total: progress.append((done, total)))
    assert result["n_images"] == 10 and result["n_ok"] == 5 and result["n_defect"] == 5
    assert progress[-1] == (11, 11)
    assert [s["path"] for s in result["skipped"]] == [str(dataset / "spot" / "broken.png")]
    assert "broken.png" in result["skipped"][0]["reason"]
    assert result["catch_rate"] == pytest.approx(4 / 5)
    assert result["false_reject_rate"] == pytest.approx(1 / 5)
    assert result["per_class"]["scratch"]["classified_as"] == {"scratch": 3}
    assert result["per_class"]["spot"]["classified_as"] == {"spot": 1, "ok": 1}
    assert result["threshold"] == 0.5 and result["model_version"] == "v1"
    assert 0 < result["latency_ms_p50"] <= result["latency_ms_p95"]
    assert result["catch_rate_ci"] == pytest.approx(list(rate_interval(4, 5)))
    assert result["false_reject_rate_ci"] == pytest.approx(list(rate_interval(1, 5)))
    assert result["mode"] == "supervised"  # the fixture model says nothing: the default
    # One mask (spot/p0, all defect) against the five OK parts: four are darker than p0
    # everywhere, the bright one (g9, a fifth of the background) brighter everywhere.
    assert result["n_masks"] == 1
    assert result["pixel_auroc"] == pytest.approx(4 / 5)
    # PRO stays 0 until the FPR reaches 0.2 (all of g9), then is 1: (0.3 - 0.2) / 0.3.
    assert result["pro"] == pytest.approx(1 / 3)
    json.dumps(result)


def _part_with_square(path: Path, square: slice = slice(16, 48)) -> None:
    # 64 x 64 fills the fixture model's input exactly: its 16-px heatmap cells line up
    # with the bright square.
    image = np.full((64, 64, 3), 10, np.uint8)
    image[square, square] = 250
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(image))


def _mask(path: Path, rows: slice, cols: slice, shape=(64, 64)) -> None:
    mask = np.zeros(shape, np.uint8)
    mask[rows, cols] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(mask))


def test_evaluate_folder_scores_the_heatmaps_against_the_masks(tmp_path: Path):
    inspector = Inspector(write_model(tmp_path / "m.onnx"))
    for where, rows in (("right", slice(16, 48)), ("wrong", slice(0, 16))):
        root = tmp_path / where
        for i in range(3):
            _write(root / "good" / f"g{i}.png", (10 + i, 10, 10), size=(64, 64))
            _part_with_square(root / "scratch" / f"s{i}.png")
            _mask(root / "masks" / "scratch" / f"s{i}.png", rows, rows)
        _part_with_square(root / "scratch" / "unmasked.png")  # no mask: left out of the pixel figures
        result = evaluate_folder(inspector, root)
        assert result["n_images"] == 7 and result["n_masks"] == 3
        if where == "right":  # the bright square is where the defect is
            assert result["pixel_auroc"] > 0.95 and result["pro"] > 0.8
        else:  # the mask marks a dark corner: the heatmap points elsewhere
            assert result["pixel_auroc"] < 0.5 and result["pro"] < 0.2


def test_evaluate_folder_reports_an_unusable_mask_and_keeps_the_image(tmp_path: Path):
    root = tmp_path / "data"
    _write(root / "good" / "g.png", (10, 10, 10), size=(64, 64))
    _part_with_square(root / "scratch" / "a.png")
    _mask(root / "masks" / "scratch" / "a.png", slice(16, 48), slice(16, 48))
    _part_with_square(root / "scratch" / "b.png")
    _mask(root / "masks" / "scratch" / "b.png", slice(0, 5), slice(0, 5), shape=(10, 10))
    (root / "masks" / "scratch" / "c.png").write_bytes(b"not a png")
    _part_with_square(root / "scratch" / "c.png")
    result = evaluate_folder(Inspector(write_model(tmp_path / "m.onnx")), root)
    assert result["n_images"] == 4 and result["n_masks"] == 1
    reasons = {Path(s["path"]).name: s["reason"] for s in result["skipped"]}
    assert set(reasons) == {"b.png", "c.png"}
    assert "10x10 but the image is 64x64" in reasons["b.png"]
    assert all(r.endswith("image evaluated without its mask") for r in reasons.values())
    assert result["pixel_auroc"] is not None


def test_evaluate_folder_without_masks_has_no_pixel_figures(tmp_path: Path):
    root = tmp_path / "data"
    _write(root / "good" / "g.png", (10, 10, 10))
    _write(root / "spot" / "p.png", (120, 250, 120))
    result = evaluate_folder(Inspector(write_model(tmp_path / "m.onnx")), root)
    assert result["n_masks"] == 0 and result["pixel_auroc"] is None and result["pro"] is None
    assert result["catch_rate_ci"] == pytest.approx(list(rate_interval(1, 1)))


def test_evaluate_folder_finds_mvtec_ground_truth_masks(tmp_path: Path):
    root = tmp_path / "bottle"
    _write(root / "train" / "good" / "t.png", (10, 10, 10), size=(64, 64))
    _write(root / "test" / "good" / "g.png", (12, 10, 10), size=(64, 64))
    _part_with_square(root / "test" / "crack" / "c.png")
    _mask(root / "ground_truth" / "crack" / "c_mask.png", slice(16, 48), slice(16, 48))
    _part_with_square(root / "test" / "crack" / "d.png")  # MVTec without its mask
    files = {path.name: mask for _, path, mask in labeled_files_with_masks(root)[0]}
    mask = root / "ground_truth" / "crack" / "c_mask.png"
    assert files == {"t.png": None, "g.png": None, "c.png": mask, "d.png": None}
    result = evaluate_folder(Inspector(write_model(tmp_path / "m.onnx")), root)
    assert result["n_masks"] == 1 and result["pixel_auroc"] > 0.95


def test_evaluate_folder_reads_an_images_subfolder(tmp_path: Path):
    root = tmp_path / "tiles"
    _write(root / "images" / "good" / "a.png", (5, 5, 5))
    _write(root / "images" / "crack" / "b.png", (250, 250, 250))
    _write(root / "masks" / "crack" / "b.png", (255, 255, 255))
    assert sorted(name for name, _ in labeled_files(root)[0]) == ["crack", "ok"]
    result = evaluate_folder(Inspector(write_model(tmp_path / "m.onnx")), root)
    assert result["n_images"] == 2 and result["auroc"] == 1.0


def test_evaluate_missing_or_empty_folder(tmp_path: Path):
    inspector = Inspector(write_model(tmp_path / "m.onnx"))
    with pytest.raises(NotEnoughDataError, match="nowhere"):
        evaluate_folder(inspector, tmp_path / "nowhere")
    (tmp_path / "empty" / "good").mkdir(parents=True)
    with pytest.raises(NotEnoughDataError, match="no images"):
        evaluate_folder(inspector, tmp_path / "empty")


@pytest.mark.dataset
@pytest.mark.skipif(not DATASET.is_dir(), reason="magnetic-tile dataset not present")
def test_class_folders_of_the_magnetic_tile_dataset():
    names = {name for name, _ in labeled_files(DATASET)[0]}
    assert "ok" in names and "blowhole" in names and "masks" not in names


def test_training_set_of_reads_the_models_images_and_tolerates_none(tmp_path: Path):
    from app.core.evaluation import training_set_of

    (tmp_path / "training_set.json").write_text('{"train": ["aa", "bb"], "val": ["cc"]}')
    assert training_set_of(tmp_path) == {"aa": "train", "bb": "train", "cc": "val"}
    (tmp_path / "training_set.json").write_text("not json")
    assert training_set_of(tmp_path) == {}
    assert training_set_of(tmp_path / "missing") == {}
