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

import hashlib
from collections import deque
from datetime import datetime

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
# Since when a drift shows: a change point after which at least this share of the
# window's parts lie outside the reference's 5-95 % range on the drifting side.
ONSET_SHARE = 0.8
# What to look at first for each kind of drift (retraining does not fix a blurred camera).
_ACTIONS = {
    ("brightness", "below"): "check the lighting, or retrain on parts taken under the new light",
    ("brightness", "above"): "check the lighting, or retrain on parts taken under the new light",
    ("contrast", "below"): "check the lighting and the camera exposure, or retrain on parts taken as they are now",
    ("contrast", "above"): "check the lighting and the camera exposure, or retrain on parts taken as they are now",
    ("sharpness", "below"): "check the camera focus and clean the lens (retraining does not fix blur)",
    ("sharpness", "above"): "check the camera focus setting, or retrain on parts taken at the new focus",
    ("saturation", "below"): "check the white balance and the material batch, or retrain on the new parts",
    ("saturation", "above"): "check the white balance and the material batch, or retrain on the new parts",
    (SCORE, "above"): "check recent parts by hand; if they are good, label them and retrain",
}
_WORDS = {
    ("brightness", "below"): "images darker", ("brightness", "above"): "images brighter",
    ("contrast", "below"): "images flatter (less contrast)", ("contrast", "above"): "images harsher (more contrast)",
    ("sharpness", "below"): "images blurrier", ("sharpness", "above"): "images sharper",
    ("saturation", "below"): "colours paler", ("saturation", "above"): "colours stronger",
}  # fmt: skip
# Inspections picked for a second look by a person (audit sampling): this share by default.
DEFAULT_AUDIT_SAMPLE_RATE = 1 / 200


def should_sample(inspection_id: int, rate: float = DEFAULT_AUDIT_SAMPLE_RATE) -> bool:
    """Whether inspection *inspection_id* is one a person re-checks (audit sampling).

    Deterministic: the same id gives the same answer on any PC and after a restart (a
    hash of the id, not a random draw), so a sample can be re-derived at an audit, and
    about *rate* of all inspections are picked, spread evenly.
    """
    return _picked(f"lineside-audit-sample:{int(inspection_id)}", rate)


def should_sample_uid(result_uid: str, rate: float = DEFAULT_AUDIT_SAMPLE_RATE) -> bool:
    """should_sample for a plant station's result, picked by its result_uid: the station
    decides before any inspection id exists (app/core/outbox.py). Same rate, same
    determinism."""
    return _picked(f"lineside-audit-sample-uid:{result_uid}", rate)


def _picked(key: str, rate: float) -> bool:
    if not rate or rate <= 0:
        return False
    if rate >= 1:
        return True
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") < rate * 2**64


def audit_sample_rate(project) -> float:
    """The project's setting `audit_sample_rate` (a number or "1/200"); the default if unset or invalid."""
    value = project.get_setting("audit_sample_rate")
    try:
        if isinstance(value, str) and "/" in value:
            num, den = value.split("/", 1)
            value = float(num) / float(den)
        rate = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return DEFAULT_AUDIT_SAMPLE_RATE
    return rate if 0.0 <= rate <= 1.0 else DEFAULT_AUDIT_SAMPLE_RATE


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
        self._when: dict[str, deque[datetime]] = {name: deque(maxlen=window) for name in self._reference}
        self._n = 0
        self._window = window

    @property
    def has_reference(self) -> bool:
        return bool(self._reference)

    def update(self, stats: dict, score: float, at: datetime | None = None) -> None:
        """Add one part; *at* is when it was inspected (default: now)."""
        values = {**stats, SCORE: score}
        at = at or datetime.now().astimezone()
        for name, recent in self._recent.items():
            value = values.get(name)
            if value is not None and np.isfinite(value):
                recent.append(float(value))
                self._when[name].append(at)
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
                f"scores higher than on the held-out OK parts (median {cmp['current']:.3f} "
                f"vs {cmp['reference']:.3f})"
            )
        direction = "above" if cmp["change"] > 0 else "below"
        return f"{name} {abs(cmp['change']):.0%} {direction} training"

    def _onset(self, name: str, below: bool) -> datetime | None:
        """When the drift on *name* began: the change point of "lies beyond the
        reference's q05 (below) / q95 (above)" in the window, the split into before and
        after that explains those yes/no marks best (Bernoulli likelihood), taken where
        most parts after it lie beyond. A normal part that happens to lie beyond just
        before the real change does not move it, nor does a drifted part that happens to
        lie inside the range. The window's first part when it drifts all along."""
        ref = self._reference[name]
        values, times = list(self._recent[name]), list(self._when[name])
        out = np.array([v < ref["q05"] if below else v > ref["q95"] for v in values], np.float64)
        n = len(out)
        if not n:
            return None
        ones_before = np.concatenate([[0.0], np.cumsum(out)])  # beyond among the first i parts

        def loglik(k: float, m: float) -> float:
            return sum(c * np.log(c / m) for c in (k, m - k) if c > 0) if m else 0.0

        best, onset = -np.inf, None
        for i in range(n):
            k_after, m_after = ones_before[n] - ones_before[i], n - i
            if not out[i] or k_after < ONSET_SHARE * m_after:
                continue
            # A change inside the window must explain the marks better than none does
            # (one more parameter: a BIC-like penalty of log n).
            score = loglik(ones_before[i], i) + loglik(k_after, m_after) - (np.log(n) if i else 0.0)
            if score > best:
                best, onset = score, times[i]
        return onset

    def _evidence(self, name: str, cmp: dict) -> dict:
        ref = self._reference[name]
        direction = "above" if cmp["current"] >= cmp["reference"] else "below"
        since = self._onset(name, direction == "below")
        beyond_range = cmp["current"] < ref["q05"] if direction == "below" else cmp["current"] > ref["q95"]
        if name == SCORE:
            what = "parts score more like defects than the held-out OK parts did"
            figures = f"median score {cmp['current']:.3f}, held-out OK {cmp['reference']:.3f}"
        else:
            words = _WORDS[(name, direction)]
            what = f"{words} than {'95 % of the training images' if beyond_range else 'usual in training'}"
            figures = f"median {name} {cmp['current']:.3g}, training {cmp['reference']:.3g}"
        sentence = f"{what}{' since ' + _clock(since) if since else ''} ({figures})"
        return {"stat": name, "direction": direction, "current": cmp["current"], "reference": cmp["reference"],
                "reference_range": [ref["q05"], ref["q95"]], "z": cmp["z"], "change": cmp["change"],
                "since": since.isoformat() if since else None, "sentence": sentence,
                "action": _ACTIONS.get((name, direction), "check the line, or retrain on parts taken as they are now")}

    def status(self) -> dict:
        """{"drifting", "n", "ready", "reasons", "message", "per_stat", "evidence", "recommendation"}.

        Never drifting before min_samples parts; "message" is the reasons in one line
        (empty when not drifting), ready to show at the line. "evidence" says, per
        drifting fingerprint (strongest first), which way, by how much and since when;
        "recommendation" is one sentence on what to do, led by the strongest drift
        ("" when not drifting).
        """
        ready = self.has_reference and self._n >= self.min_samples
        per_stat, reasons, evidence = {}, [], []
        for name in self._recent:
            cmp = self._compare(name)
            if cmp is None:
                continue
            per_stat[name] = cmp
            # Scores lower than in validation mean parts look *more* like good ones: no alarm.
            alarming = cmp["z"] >= self.z_alarm if name == SCORE else abs(cmp["z"]) >= self.z_alarm
            if ready and alarming:
                reasons.append(self._reason(name, cmp))
                evidence.append(self._evidence(name, cmp))
        evidence.sort(key=lambda e: -abs(e["z"]))
        recommendation = ""
        if evidence:
            first, rest = evidence[0], evidence[1:]
            recommendation = f"{first['action']}: {first['sentence']}"
            if rest:
                recommendation += "; also " + "; ".join(e["sentence"] for e in rest)
        return {
            "drifting": bool(reasons),
            "n": min(self._n, self._window),
            "ready": ready,
            "reasons": reasons,
            "message": "; ".join(reasons),
            "per_stat": per_stat,
            "evidence": evidence,
            "recommendation": recommendation,
        }

    def reset(self) -> None:
        """Forget the window (after the line was fixed, or a new model was deployed)."""
        for recent in self._recent.values():
            recent.clear()
        for when in self._when.values():
            when.clear()
        self._n = 0


def _clock(at: datetime) -> str:
    """14:02 today, else 2024-05-03 14:02 (local time)."""
    local = at.astimezone()
    return local.strftime("%H:%M") if local.date() == datetime.now().astimezone().date() else local.strftime(
        "%Y-%m-%d %H:%M")
