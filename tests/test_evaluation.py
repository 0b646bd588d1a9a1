"""Evaluation metrics against hand-computed cases, and a whole folder through a fixture model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from app.core.errors import NotEnoughDataError
from app.core.importer import labeled_files
from app.core.evaluation import (
    auroc,
    catch_at_false_reject,
    evaluate_folder,
    rates_at,
    summarize,
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
    json.dumps(result)  # JSON-able as it is


def test_summarize_without_defects_has_undefined_metrics_as_none():
    result = summarize(["ok", "ok"], [0.1, 0.2], [None, None], 0.5, ["ok", "x"])
    assert result["auroc"] is None and result["catch_rate"] is None
    assert result["catch_at_1pct_false_reject"] is None
    assert result["false_reject_rate"] == 0.0


def test_summarize_keeps_classes_the_model_does_not_know():
    result = summarize(["ok", "dent"], [0.1, 0.9], ["ok", "scratch"], 0.5, ["ok", "scratch"])
    assert result["confusion"]["labels"] == ["ok", "scratch", "dent"]
    assert result["confusion"]["matrix"][2] == [0, 1, 0]


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
    json.dumps(result)


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
