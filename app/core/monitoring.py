"""Drift: warn when the line moves away from what the model was trained on.

A model is only as good as the similarity of today's parts to its training images. A
lamp that ages, a camera knocked out of focus or a new batch of material changes the
pictures before it changes the verdicts, so the line keeps a cheap fingerprint of every
image (brightness, contrast, sharpness, saturation) and of its scores, and compares the
recent window with the reference the trainer stored in the model.

Comparison is robust on purpose: the window *median* (a few defective parts do not move
it) against the reference median, scaled by the reference's own spread on that side
(q05..q50 below, q50..q95 above; sharpness is skewed, so one symmetric std would be
wrong on one side).
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np

REFERENCE_FORMAT = 1
STAT_NAMES = ("brightness", "contrast", "sharpness", "saturation")
SCORE = "score"
# Fingerprints are computed on a downscaled copy: cheap on a 12 MP camera, and the same
# optics look the same sharpness whatever the sensor size.
STATS_MAX_SIDE = 256
# A reference of identical images has zero spread; changes smaller than these do not
# count as drift in any case.
MIN_RELATIVE_SPREAD = 0.02
MIN_SCORE_SPREAD = 0.02
Z_FOR_Q05 = 1.645  # q05 and q95 of a normal distribution lie 1.645 std from the median
DEFAULT_MIN_SAMPLES = 30


def image_stats(image_bgr: np.ndarray) -> dict[str, float]:
    """Cheap fingerprint of one image (uint8 BGR): brightness, contrast, sharpness, saturation."""
    h, w = image_bgr.shape[:2]
    scale = STATS_MAX_SIDE / max(h, w)
    small = image_bgr
    if scale < 1:
        small = cv2.resize(image_bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    saturation = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)[:, :, 1]
    return {
        "brightness": float(gray.mean()),
        "contrast": float(gray.std()),
        "sharpness": float(cv2.Laplacian(gray, cv2.CV_32F).var()),
        "saturation": float(saturation.mean()),
    }


def _distribution(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, np.float64)
    q05, q50, q95 = np.percentile(a, [5, 50, 95])
    return {"mean": float(a.mean()), "std": float(a.std()), "q05": float(q05), "q50": float(q50), "q95": float(q95)}


def build_reference(stats: list[dict], ok_scores: list[float]) -> dict:
    """The drift reference stored in a model: distributions of the validation images'
    fingerprints, and of the scores of its OK parts."""
    names = [n for n in STAT_NAMES if stats and all(n in s for s in stats)]
    return {
        "format": REFERENCE_FORMAT,
        "n": len(stats),
        "stats": {name: _distribution([s[name] for s in stats]) for name in names},
        "ok_scores": _distribution(list(ok_scores)) if len(ok_scores) else None,
    }


def _spreads(dist: dict, floor: float) -> tuple[float, float]:
    """(spread below the median, spread above it) as one-sided standard deviations."""
    below = (dist["q50"] - dist["q05"]) / Z_FOR_Q05
    above = (dist["q95"] - dist["q50"]) / Z_FOR_Q05
    return max(below, floor), max(above, floor)


class DriftMonitor:
    """Keeps the last *window* parts and says whether they drifted from the reference."""

    def __init__(
        self, reference: dict | None, window: int = 200, z_alarm: float = 3.0, min_samples: int = DEFAULT_MIN_SAMPLES
    ) -> None:
        reference = reference or {}
        self._reference: dict[str, dict] = dict(reference.get("stats") or {})
        if reference.get("ok_scores"):
            self._reference[SCORE] = reference["ok_scores"]
        self.z_alarm = z_alarm
        self.min_samples = min(min_samples, window)
        self._recent: dict[str, deque[float]] = {name: deque(maxlen=window) for name in self._reference}
        self._n = 0
        self._window = window

    @property
    def has_reference(self) -> bool:
        return bool(self._reference)

    def update(self, stats: dict, score: float) -> None:
        values = {**stats, SCORE: score}
        for name, recent in self._recent.items():
            value = values.get(name)
            if value is not None and np.isfinite(value):
                recent.append(float(value))
        self._n += 1

    def _compare(self, name: str) -> dict | None:
        recent = self._recent[name]
        if not recent:
            return None
        ref = self._reference[name]
        median = float(np.median(recent))
        floor = MIN_SCORE_SPREAD if name == SCORE else MIN_RELATIVE_SPREAD * max(abs(ref["q50"]), 1e-6)
        below, above = _spreads(ref, floor)
        z = (median - ref["q50"]) / (above if median >= ref["q50"] else below)
        change = (median - ref["q50"]) / abs(ref["q50"]) if ref["q50"] else 0.0
        return {"current": median, "reference": ref["q50"], "z": float(z), "change": float(change)}

    @staticmethod
    def _reason(name: str, cmp: dict) -> str:
        if name == SCORE:
            return (
                f"scores higher than on the validation OK parts (median {cmp['current']:.3f} "
                f"vs {cmp['reference']:.3f})"
            )
        direction = "above" if cmp["change"] > 0 else "below"
        return f"{name} {abs(cmp['change']):.0%} {direction} training"

    def status(self) -> dict:
        """{"drifting", "n", "ready", "reasons", "message", "per_stat"}.

        Never drifting before min_samples parts; "message" is the reasons in one line
        (empty when not drifting), ready to show at the line.
        """
        ready = self.has_reference and self._n >= self.min_samples
        per_stat, reasons = {}, []
        for name in self._recent:
            cmp = self._compare(name)
            if cmp is None:
                continue
            per_stat[name] = cmp
            # Scores lower than in validation mean parts look *more* like good ones: no alarm.
            alarming = cmp["z"] >= self.z_alarm if name == SCORE else abs(cmp["z"]) >= self.z_alarm
            if ready and alarming:
                reasons.append(self._reason(name, cmp))
        return {
            "drifting": bool(reasons),
            "n": min(self._n, self._window),
            "ready": ready,
            "reasons": reasons,
            "message": "; ".join(reasons),
            "per_stat": per_stat,
        }

    def reset(self) -> None:
        """Forget the window (after the line was fixed, or a new model was deployed)."""
        for recent in self._recent.values():
            recent.clear()
        self._n = 0
