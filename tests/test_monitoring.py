"""Drift monitoring on generated parts: alarms on brighter, darker and blurred streams only."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Callable

import cv2
import numpy as np
import pytest

from app.core.monitoring import (DEFAULT_AUDIT_SAMPLE_RATE, DriftMonitor, audit_sample_rate, build_reference,
                                 image_stats, should_sample)
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


# -- what to do about it --------------------------------------------------------------


def _timed_stream(reference: dict, parts: list[np.ndarray], change, from_index: int) -> tuple[dict, datetime]:
    """One part a minute from 14:00 today; *change* applies from part *from_index* on."""
    start = datetime.now().astimezone().replace(hour=14, minute=0, second=0, microsecond=0)
    monitor = DriftMonitor(reference, window=200)
    scores = np.random.default_rng(1).beta(2, 30, len(parts))
    for i, (image, score) in enumerate(zip(parts, scores)):
        shown = change(image) if i >= from_index else image
        monitor.update(image_stats(shown), float(score), at=start + timedelta(minutes=i))
    return monitor.status(), start + timedelta(minutes=from_index)


def test_darker_and_blurrier_stream_says_what_to_do_and_since_when(reference, line_parts):
    def darker_and_blurrier(img):
        return cv2.GaussianBlur(_scaled(0.6)(img), (0, 0), 2.0)

    status, began = _timed_stream(reference, line_parts, darker_and_blurrier, from_index=20)
    assert status["drifting"]
    by_stat = {e["stat"]: e for e in status["evidence"]}
    assert by_stat["brightness"]["direction"] == "below" and by_stat["sharpness"]["direction"] == "below"
    assert by_stat["brightness"]["since"] == began.isoformat()  # the first darkened part, 14:20
    assert "images darker than 95 % of the training images since 14:20" in by_stat["brightness"]["sentence"]
    assert "images blurrier than 95 % of the training images since 14:20" in by_stat["sharpness"]["sentence"]
    assert [abs(e["z"]) for e in status["evidence"]] == sorted((abs(e["z"]) for e in status["evidence"]), reverse=True)
    first = status["evidence"][0]
    assert status["recommendation"].startswith(f"{first['action']}: {first['sentence']}")
    assert "images darker" in status["recommendation"] and "images blurrier" in status["recommendation"]
    assert "since 14:20" in status["recommendation"]


def test_darker_stream_recommends_lighting_or_retraining(reference, line_parts):
    status, _ = _timed_stream(reference, line_parts, _scaled(0.6), from_index=0)
    assert status["recommendation"].startswith("check the lighting, or retrain on parts taken under the new light: "
                                               "images darker than 95 % of the training images since 14:00")
    assert "median brightness" in status["recommendation"]


def test_unchanged_stream_recommends_nothing(reference, line_parts):
    status, _ = _timed_stream(reference, line_parts, lambda img: img, from_index=0)
    assert not status["drifting"] and status["evidence"] == [] and status["recommendation"] == ""


def test_audit_sampling_is_deterministic_and_near_its_rate():
    ids = range(1, 40001)
    picked = [i for i in ids if should_sample(i)]
    assert picked == [i for i in ids if should_sample(i)]  # the same ids every time
    assert 0.8 * 200 <= len(picked) <= 1.2 * 200  # 1/200 of 40,000 = 200
    assert DEFAULT_AUDIT_SAMPLE_RATE == 1 / 200
    assert not any(should_sample(i, 0.0) for i in range(100)) and all(should_sample(i, 1.0) for i in range(100))
    tenth = sum(should_sample(i, 0.1) for i in ids)
    assert 0.09 * 40000 <= tenth <= 0.11 * 40000 and set(picked) <= {i for i in ids if should_sample(i, 0.1)}


def test_audit_sample_rate_setting(tmp_path):
    from app.core.project import Project

    with Project.create(tmp_path / "p") as project:
        assert audit_sample_rate(project) == DEFAULT_AUDIT_SAMPLE_RATE
        project.set_setting("audit_sample_rate", "1/50")
        assert audit_sample_rate(project) == pytest.approx(0.02)
        project.set_setting("audit_sample_rate", 0.1)
        assert audit_sample_rate(project) == 0.1
        project.set_setting("audit_sample_rate", "lots")
        assert audit_sample_rate(project) == DEFAULT_AUDIT_SAMPLE_RATE
