"""Drift monitoring on generated parts: alarms on brighter, darker and blurred streams only."""

from __future__ import annotations

import json
from typing import Callable

import cv2
import numpy as np
import pytest

from app.core.monitoring import DriftMonitor, build_reference, image_stats
from app.core.synthetic import PartStream

N_REFERENCE, N_STREAM = 120, 60


def _ok_parts(seed: int, n: int) -> list[np.ndarray]:
    stream = PartStream(seed=seed, defect_rate=0.0, size=160)
    return [stream.next_frame()[0] for _ in range(n)]


@pytest.fixture(scope="module")
def reference() -> dict:
    scores = np.random.default_rng(0).beta(2, 30, N_REFERENCE)
    return build_reference([image_stats(img) for img in _ok_parts(1, N_REFERENCE)], list(scores))


@pytest.fixture(scope="module")
def line_parts() -> list[np.ndarray]:
    return _ok_parts(2, N_STREAM)


def _run(reference: dict, parts: list[np.ndarray], change: Callable[[np.ndarray], np.ndarray], scores=None) -> dict:
    monitor = DriftMonitor(reference, window=200)
    scores = np.random.default_rng(1).beta(2, 30, len(parts)) if scores is None else scores
    for image, score in zip(parts, scores):
        monitor.update(image_stats(change(image)), float(score))
    return monitor.status()


def _scaled(factor: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda img: np.clip(img.astype(np.float32) * factor, 0, 255).astype(np.uint8)


def test_image_stats_are_plausible():
    flat = np.full((300, 400, 3), 100, np.uint8)
    stats = image_stats(flat)
    assert stats == {"brightness": 100.0, "contrast": 0.0, "sharpness": 0.0, "saturation": 0.0}
    noisy = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    assert image_stats(noisy)["sharpness"] > image_stats(cv2.GaussianBlur(noisy, (0, 0), 2))["sharpness"] * 10
    red = np.zeros((50, 50, 3), np.uint8)
    red[:, :, 2] = 200
    assert image_stats(red)["saturation"] == 255.0
    big = cv2.resize(noisy, (4000, 3000), interpolation=cv2.INTER_NEAREST)
    assert set(image_stats(big)) == set(stats)


def test_reference_is_json_and_describes_each_stat(reference):
    again = json.loads(json.dumps(reference))
    assert again["n"] == N_REFERENCE
    assert set(again["stats"]) == {"brightness", "contrast", "sharpness", "saturation"}
    brightness = again["stats"]["brightness"]
    assert brightness["q05"] <= brightness["q50"] <= brightness["q95"] and brightness["std"] > 0
    assert 0 < again["ok_scores"]["q50"] < 0.2


def test_same_line_does_not_drift(reference, line_parts):
    status = _run(reference, line_parts, lambda img: img)
    assert status["ready"] and status["n"] == N_STREAM
    assert not status["drifting"], status["reasons"]
    assert status["reasons"] == [] and status["message"] == ""
    assert set(status["per_stat"]) == {"brightness", "contrast", "sharpness", "saturation", "score"}
    assert all(abs(s["z"]) < 2 for s in status["per_stat"].values()), status["per_stat"]


def test_darker_line_drifts(reference, line_parts):
    status = _run(reference, line_parts, _scaled(0.6))
    assert status["drifting"]
    assert any(r.startswith("brightness") and "below training" in r for r in status["reasons"]), status["reasons"]
    assert status["per_stat"]["brightness"]["change"] == pytest.approx(-0.4, abs=0.05)
    assert status["message"] == "; ".join(status["reasons"]) and "brightness" in status["message"]


def test_brighter_line_drifts(reference, line_parts):
    status = _run(reference, line_parts, _scaled(1.5))
    assert status["drifting"]
    assert any(r.startswith("brightness") and "above training" in r for r in status["reasons"]), status["reasons"]


def test_blurred_line_drifts_on_sharpness(reference, line_parts):
    status = _run(reference, line_parts, lambda img: cv2.GaussianBlur(img, (0, 0), 2.0))
    assert status["drifting"]
    assert any(r.startswith("sharpness") and "below" in r for r in status["reasons"]), status["reasons"]
    assert not any(r.startswith("brightness") for r in status["reasons"])


def test_rising_scores_drift_but_falling_scores_do_not(reference, line_parts):
    high = _run(reference, line_parts, lambda img: img, scores=np.full(N_STREAM, 0.45))
    assert high["drifting"] and any(r.startswith("scores higher") for r in high["reasons"])
    low = _run(reference, line_parts, lambda img: img, scores=np.zeros(N_STREAM))
    assert not low["drifting"]


def test_no_alarm_before_enough_samples(reference, line_parts):
    status = _run(reference, line_parts[:10], _scaled(0.4))
    assert not status["ready"] and not status["drifting"]
    assert status["per_stat"]["brightness"]["z"] < -3  # visible, but not yet an alarm


def test_window_forgets_old_parts_and_reset(reference, line_parts):
    monitor = DriftMonitor(reference, window=30)
    dark = _scaled(0.5)
    for image in line_parts[:30]:
        monitor.update(image_stats(dark(image)), 0.05)
    assert monitor.status()["drifting"]
    for image in line_parts[30:60]:  # the lamp was fixed: the window fills with normal parts
        monitor.update(image_stats(image), 0.05)
    assert not monitor.status()["drifting"]
    monitor.reset()
    assert monitor.status()["n"] == 0


def test_without_reference_never_drifts(line_parts):
    monitor = DriftMonitor(None)
    for image in line_parts[:40]:
        monitor.update(image_stats(image), 0.9)
    status = monitor.status()
    assert not monitor.has_reference and not status["drifting"] and status["per_stat"] == {}
