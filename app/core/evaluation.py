"""How good is a model at the line: catch rate, false rejects, AUROC, per-class results.

The numbers a quality engineer asks for: "of the bad parts, how many do we stop?"
(catch rate) at "how many good parts do we throw away?" (false reject rate). A part is
rejected when its score is >= the threshold, here and in the runtime. Numpy only: the
trainer and the line compute the same figures from the same code.

A rate measured on 20 defective parts is not a rate measured on 2000: every rate comes
with an exact (Clopper-Pearson) interval. Where masks exist, the heatmaps are scored
too (pixel AUROC and PRO, as in MVTec AD): does the model point at the defect?
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, NamedTuple, Sequence

import cv2
import numpy as np

from app.core.errors import BadImageError, LinesideError, NotEnoughDataError
from app.core.imageio import decode_image, read_file, read_mask

if TYPE_CHECKING:
    from app.core.runtime import Inspector, Verdict

OK_CLASS = "ok"
# rate * n is computed in floating point: 0.29 * 100 is 28.999999999999996.
_COUNT_EPSILON = 1e-9
CONFIDENCE = 0.95
# Pixel metrics work on heatmaps/masks no longer than this on their longest side: a
# folder of 5-megapixel images would otherwise need gigabytes. At 256 px a part costs
# about 320 KB (float32 heatmap + bool mask).
PIXEL_MAX_SIDE = 256
# Score thresholds the pixel ROC and PRO curves are evaluated at (half from the defect
# pixels' scores, half from the background's); below this many distinct scores, every
# distinct score is a threshold and the figures are exact.
PIXEL_THRESHOLDS = 1000
# At most this many pixel scores per kind are kept to place the thresholds.
_THRESHOLD_SAMPLE = 1_000_000


def _array(values: Iterable[float]) -> np.ndarray:
    return np.asarray(list(values) if not isinstance(values, np.ndarray) else values, np.float64).ravel()


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (labels 1 = defect); ties count half (Mann-Whitney U)."""
    labels = np.asarray(labels).ravel().astype(bool)
    scores = _array(scores)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # 1-based rank of each distinct value, averaged over its ties.
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0
    rank_sum = float(average_rank[inverse][labels].sum())
    u = rank_sum - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def threshold_for_false_reject(ok_scores: Iterable[float], rate: float = 0.01) -> float:
    """Smallest threshold t with share(ok_scores >= t) <= rate.

    That is just above the (k+1)-th highest OK score, where k = floor(rate * n) OK parts
    may be rejected: the next representable float, so exactly k are rejected.
    """
    ok = np.sort(_array(ok_scores))[::-1]
    if ok.size == 0:
        raise NotEnoughDataError("No OK parts to set a threshold from: add OK images to the validation set.")
    allowed = int(math.floor(rate * ok.size + _COUNT_EPSILON))
    if allowed >= ok.size:
        return float(ok[-1])
    return float(np.nextafter(ok[allowed], np.inf))


def rates_at(
    ok_scores: Iterable[float], defect_scores: Iterable[float], threshold: float
) -> tuple[float, float]:
    """(catch_rate, false_reject_rate) when parts with score >= threshold are rejected."""
    ok, bad = _array(ok_scores), _array(defect_scores)
    catch = float(np.mean(bad >= threshold)) if bad.size else float("nan")
    false_reject = float(np.mean(ok >= threshold)) if ok.size else float("nan")
    return catch, false_reject


def catch_at_false_reject(
    ok_scores: Iterable[float], defect_scores: Iterable[float], rate: float = 0.01
) -> float:
    """Share of defective parts caught at the threshold that rejects at most *rate* OK parts."""
    ok, bad = _array(ok_scores), _array(defect_scores)
    if ok.size == 0 or bad.size == 0:
        return float("nan")
    return rates_at(ok, bad, threshold_for_false_reject(ok, rate))[0]


def _finite_or_none(value: float) -> float | None:
    # JSON has no NaN: an undefined metric (no defects in the set, say) is null.
    return None if value is None or not math.isfinite(value) else float(value)


# --- Exact binomial intervals (no scipy: the line-side install is numpy + OpenCV) ---------

_BETACF_MAX_ITERATIONS = 10_000  # the fraction needs O(sqrt(max(a, b))) terms
_BETACF_EPS = 1e-15
_TINY = 1e-300  # keeps the Lentz recurrence away from division by zero


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction for I_x(a, b) (Numerical Recipes `betacf`, modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _BETACF_MAX_ITERATIONS + 1):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _BETACF_EPS:
            return h
    raise ArithmeticError(f"incomplete beta did not converge (a={a}, b={b}, x={x})")


def beta_cdf(x: float, a: float, b: float) -> float:
    """Regularized incomplete beta function I_x(a, b): P(X <= x) for X ~ Beta(a, b)."""
    if a <= 0 or b <= 0:
        raise ValueError("beta parameters must be positive")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    # The fraction converges fast only left of the mean; right of it use I_x(a,b) = 1 - I_(1-x)(b,a).
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def beta_quantile(q: float, a: float, b: float) -> float:
    """x with I_x(a, b) = q, by bisection (the cdf is monotone; ~60 halvings reach float precision)."""
    if not 0.0 <= q <= 1.0:
        raise ValueError("q must be in [0, 1]")
    if q in (0.0, 1.0):  # the cdf rounds to 0 or 1 before x does: bisection would stop short
        return q
    low, high = 0.0, 1.0
    while True:
        mid = 0.5 * (low + high)
        if mid in (low, high):  # the interval cannot shrink any further
            return mid
        if beta_cdf(mid, a, b) < q:
            low = mid
        else:
            high = mid


def _check_confidence(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be between 0 and 1 (e.g. 0.95)")
    return 1.0 - confidence


def rate_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for a rate of k events in n parts.

    Conservative: it covers the true rate at least *confidence* of the time, however
    few the parts. The bounds are beta quantiles: low = B(alpha/2; k, n-k+1) and
    high = B(1-alpha/2; k+1, n-k), with 0 when k = 0 and 1 when k = n.
    """
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0 (k={k}, n={n})")
    alpha = _check_confidence(confidence)
    low = 0.0 if k == 0 else beta_quantile(alpha / 2.0, k, n - k + 1)
    high = 1.0 if k == n else beta_quantile(1.0 - alpha / 2.0, k + 1, n - k)
    return low, high


class FalseRejectForecast(NamedTuple):
    low: float
    high: float
    mean: float


def threshold_false_reject_interval(
    n_heldout_ok: int, k_allowed: int, confidence: float = CONFIDENCE
) -> FalseRejectForecast:
    """What false-reject rate to expect on new OK parts from a threshold set on held-out ones.

    The threshold is just above the (k+1)-th highest of n held-out OK scores (as
    threshold_for_false_reject sets it, k = floor(rate * n)). If new OK parts are
    exchangeable with the held-out ones (same line, same conditions), the share of new
    OK parts scoring above the (k+1)-th highest of n is distributed Beta(k+1, n-k): the
    order-statistic (conformal) argument, F(X_(n-k)) ~ Beta(n-k, k+1), whatever the score
    distribution. Returned: the equal-tailed *confidence* interval of that Beta (its
    alpha/2 and 1-alpha/2 quantiles, by bisection on beta_cdf) and its mean (k+1)/(n+1).
    """
    if not 0 <= k_allowed < n_heldout_ok:
        raise ValueError(f"need 0 <= k_allowed < n_heldout_ok (k={k_allowed}, n={n_heldout_ok})")
    alpha = _check_confidence(confidence)
    a, b = k_allowed + 1, n_heldout_ok - k_allowed
    return FalseRejectForecast(
        beta_quantile(alpha / 2.0, a, b), beta_quantile(1.0 - alpha / 2.0, a, b), a / (n_heldout_ok + 1.0)
    )


def _interval_or_none(rejected: np.ndarray, confidence: float | None) -> list[float] | None:
    # A list, not a tuple: the result goes to JSON and comes back as a list.
    if confidence is None or rejected.size == 0:
        return None
    return list(rate_interval(int(rejected.sum()), int(rejected.size), confidence))


def summarize(
    true_classes: list[str],
    scores: Iterable[float],
    pred_classes: list[str | None],
    threshold: float,
    class_names: list[str],
    confidence: float | None = CONFIDENCE,
) -> dict:
    """All evaluation figures for one set of parts, JSON-able (undefined metrics are None).

    pred_classes holds "ok" (or None) for a passed part, else its defect class.
    catch_rate_ci and false_reject_rate_ci are exact *confidence* intervals [low, high]
    of the rates at *threshold* (None without parts of that kind, or confidence=None).
    """
    scores = _array(scores)
    if not (len(true_classes) == len(scores) == len(pred_classes)):
        raise ValueError("true_classes, scores and pred_classes must have the same length")
    preds = [OK_CLASS if p is None else p for p in pred_classes]
    is_defect = np.array([c != OK_CLASS for c in true_classes], bool)
    ok_scores, defect_scores = scores[~is_defect], scores[is_defect]
    catch, false_reject = rates_at(ok_scores, defect_scores, threshold)
    labels = list(class_names)
    labels += sorted({c for c in list(true_classes) + preds if c not in labels})
    index = {c: i for i, c in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), np.int64)
    for true, pred in zip(true_classes, preds):
        matrix[index[true], index[pred]] += 1
    per_class = {}
    for cls in labels:
        rows = [i for i, c in enumerate(true_classes) if c == cls]
        if not rows:
            continue
        counts: dict[str, int] = {}
        for i in rows:
            counts[preds[i]] = counts.get(preds[i], 0) + 1
        caught = float(np.mean(scores[rows] >= threshold))
        per_class[cls] = {"n": len(rows), "caught": caught, "classified_as": counts}
    return {
        "auroc": _finite_or_none(auroc(is_defect, scores)),
        "catch_at_1pct_false_reject": _finite_or_none(catch_at_false_reject(ok_scores, defect_scores, 0.01)),
        "catch_rate": _finite_or_none(catch),
        "false_reject_rate": _finite_or_none(false_reject),
        "catch_rate_ci": _interval_or_none(defect_scores >= threshold, confidence),
        "false_reject_rate_ci": _interval_or_none(ok_scores >= threshold, confidence),
        "ci_confidence": confidence,
        "threshold": float(threshold),
        "n_images": int(len(scores)),
        "n_ok": int((~is_defect).sum()),
        "n_defect": int(is_defect.sum()),
        "per_class": per_class,
        "confusion": {"labels": labels, "matrix": matrix.tolist()},
    }


# --- Localization: does the heatmap point at the defect? ------------------------------


def downscale_pair(
    heatmap: np.ndarray, mask: np.ndarray, max_side: int = PIXEL_MAX_SIDE
) -> tuple[np.ndarray, np.ndarray]:
    """(float32 heatmap, bool defect mask), longest side at most *max_side* px.

    Both shrink by the same whole factor over the same blocks, so they stay aligned: the
    heatmap by area averaging (INTER_AREA), the mask by max-pooling, so a block holding
    any defect pixel is defect and a 1-px scratch survives the reduction. The last,
    partial block is padded (heatmap: edge values; mask: background).
    """
    heatmap = np.asarray(heatmap, np.float32)
    mask = np.asarray(mask) > 0
    if heatmap.ndim != 2 or heatmap.shape != mask.shape:
        raise ValueError(f"heatmap {heatmap.shape} and mask {mask.shape} must have the same 2-D shape")
    height, width = heatmap.shape
    factor = math.ceil(max(height, width) / max_side)
    if factor <= 1:
        return heatmap, mask
    out_h, out_w = math.ceil(height / factor), math.ceil(width / factor)
    pad = ((0, out_h * factor - height), (0, out_w * factor - width))
    small = cv2.resize(np.pad(heatmap, pad, mode="edge"), (out_w, out_h), interpolation=cv2.INTER_AREA)
    pooled = np.pad(mask, pad).reshape(out_h, factor, out_w, factor).any(axis=(1, 3))
    return small, pooled


@dataclass
class _PixelCounts:
    """Pixels at or above each threshold (ascending), by kind: all the ROC and PRO need."""

    thresholds: np.ndarray
    defect: np.ndarray  # [j] defect pixels scoring >= thresholds[j]
    background: np.ndarray  # [j] background pixels scoring >= thresholds[j]
    overlap: np.ndarray  # [j] sum over defect regions of the region's share >= thresholds[j]
    n_defect: int = 0
    n_background: int = 0
    n_regions: int = 0


def _pairs(heatmaps: Iterable[np.ndarray], masks: Iterable[np.ndarray | None]) -> list[tuple[np.ndarray, np.ndarray]]:
    # A None mask means "not annotated": the image cannot say where its defect is.
    return [downscale_pair(h, m) for h, m in zip(heatmaps, masks, strict=True) if m is not None]


def _thresholds(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Every distinct score when there are few; else quantiles of defect and background
    scores (half each, so neither axis of the curves is coarse however rare defect
    pixels are) plus each kind's exact extremes (a clean separation is scored exactly)."""
    step = max(1, math.ceil(sum(h.size for h, _ in pairs) / _THRESHOLD_SAMPLE))
    picked: dict[bool, list[np.ndarray]] = {True: [], False: []}  # defect?, sampled scores
    extremes: list[float] = []
    for heatmap, mask in pairs:  # one image at a time: only the sample is kept
        for kind in (True, False):
            scores = heatmap[mask == kind]
            if scores.size:
                picked[kind].append(scores[::step].copy())  # a copy lets the full array go
                extremes += [float(scores.min()), float(scores.max())]
    samples = [np.concatenate(picked[kind]) for kind in (True, False) if picked[kind]]
    values = np.unique(np.concatenate(samples + [np.asarray(extremes, np.float32)]).astype(np.float64))
    if values.size <= PIXEL_THRESHOLDS:
        return values
    levels = np.linspace(0.0, 1.0, PIXEL_THRESHOLDS // 2)
    quantiles = [np.quantile(sample, levels) for sample in samples]
    return np.unique(np.concatenate(quantiles + [np.asarray(extremes, np.float64)]))


def _at_or_above(histogram: np.ndarray) -> np.ndarray:
    # histogram[..., b]: pixels with b thresholds <= their score; a pixel is at or
    # above thresholds[j] when b >= j + 1, so this is a reversed cumulative sum.
    return np.cumsum(histogram[..., ::-1], axis=-1)[..., ::-1][..., 1:]


def _add_regions(counts: _PixelCounts, mask: np.ndarray, bins: np.ndarray) -> None:
    """Per connected defect region (8-connected, as MVTec AD's evaluation), its share at or above each threshold."""
    n_labels, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if n_labels <= 1:
        return
    width = counts.thresholds.size + 1
    flat = labels[mask].astype(np.int64) * width + bins[mask]
    histogram = np.bincount(flat, minlength=n_labels * width).reshape(n_labels, width)[1:]
    counts.overlap += (_at_or_above(histogram) / histogram.sum(axis=1, keepdims=True)).sum(axis=0)
    counts.n_regions += n_labels - 1


def _pixel_counts(heatmaps: Iterable[np.ndarray], masks: Iterable[np.ndarray | None]) -> _PixelCounts:
    pairs = _pairs(heatmaps, masks)
    thresholds = _thresholds(pairs) if pairs else np.empty(0)
    k = thresholds.size
    counts = _PixelCounts(thresholds, np.zeros(k), np.zeros(k), np.zeros(k))
    for heatmap, mask in pairs:  # one image at a time: memory stays at one image's worth
        bins = np.searchsorted(thresholds, heatmap, side="right")
        counts.defect += _at_or_above(np.bincount(bins[mask], minlength=k + 1))
        counts.background += _at_or_above(np.bincount(bins[~mask], minlength=k + 1))
        counts.n_defect += int(mask.sum())
        counts.n_background += int(mask.size - mask.sum())
        _add_regions(counts, mask, bins)
    return counts


def _area_up_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid area under y(x) from 0 to x_max (x ascending), y interpolated at x_max."""
    keep = int(np.searchsorted(x, x_max, side="right"))  # points with x <= x_max
    xs, ys = x[:keep], y[:keep]
    if xs[-1] < x_max:  # the next point lies beyond x_max: cut its segment there
        x0, y0, x1, y1 = x[keep - 1], y[keep - 1], x[keep], y[keep]
        xs = np.append(xs, x_max)
        ys = np.append(ys, y0 + (y1 - y0) * (x_max - x0) / (x1 - x0))
    return float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2.0))


def _curve(counts: _PixelCounts, y_per_threshold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Highest threshold first, so the false-positive rate ascends; (0, 0) is "reject
    # nothing" and (1, 1) "reject everything".
    fpr = counts.background[::-1] / counts.n_background
    return np.concatenate([[0.0], fpr, [1.0]]), np.concatenate([[0.0], y_per_threshold[::-1], [1.0]])


def _roc_area(counts: _PixelCounts) -> float:
    if counts.n_defect == 0 or counts.n_background == 0:
        return float("nan")
    return _area_up_to(*_curve(counts, counts.defect / counts.n_defect), 1.0)


def _pro_area(counts: _PixelCounts, max_fpr: float) -> float:
    if not 0.0 < max_fpr <= 1.0:
        raise ValueError("max_fpr must be in (0, 1]")
    if counts.n_regions == 0 or counts.n_background == 0:
        return float("nan")
    area = _area_up_to(*_curve(counts, counts.overlap / counts.n_regions), max_fpr)
    return min(1.0, area / max_fpr)  # a perfect curve may round to 1 + 1e-16


def pixel_auroc(heatmaps: Sequence[np.ndarray], masks: Sequence[np.ndarray | None]) -> float:
    """AUROC of heatmap values as a defect-pixel detector, over all pixels of all images
    that have a mask (mask > 0 = defect; an all-zero mask, an OK part, is all background;
    a None mask leaves its image out). NaN without defect or background pixels.

    Each pair is first reduced to at most PIXEL_MAX_SIDE px (downscale_pair), then the ROC
    is evaluated at up to PIXEL_THRESHOLDS thresholds (exact when there are fewer distinct
    scores; ties count half).
    """
    return _roc_area(_pixel_counts(heatmaps, masks))


def pro_score(
    heatmaps: Sequence[np.ndarray], masks: Sequence[np.ndarray | None], max_fpr: float = 0.3
) -> float:
    """Per-region overlap (PRO) as in MVTec AD, normalised to 0..1.

    For each threshold, PRO is the mean over all connected defect regions (of all images)
    of the share of the region's pixels at or above it, and the false-positive rate is
    taken over the background pixels of all images. PRO(FPR) is integrated (trapezoid)
    from 0 to *max_fpr*, interpolated at max_fpr, and divided by max_fpr. Unlike pixel
    AUROC, a small defect weighs as much as a large one. Same reduction, thresholds and
    mask conventions as pixel_auroc; NaN without defect regions or background pixels.
    """
    return _pro_area(_pixel_counts(heatmaps, masks), max_fpr)


def localization_metrics(
    heatmaps: Sequence[np.ndarray], masks: Sequence[np.ndarray | None], max_fpr: float = 0.3
) -> dict:
    """{"pixel_auroc", "pro"} from one counting pass; undefined figures are None."""
    counts = _pixel_counts(heatmaps, masks)
    return {
        "pixel_auroc": _finite_or_none(_roc_area(counts)),
        "pro": _finite_or_none(_pro_area(counts, max_fpr)),
    }


def _labelled_files(source: Path) -> tuple[list[tuple[str, Path, Path | None]], list[tuple[str, str]]]:
    # Read a labeled folder exactly as `import` does: one definition of the layouts and
    # of where each image's mask lives.
    from app.core.importer import labeled_files_with_masks

    try:
        files, skipped = labeled_files_with_masks(source)
    except LinesideError as exc:
        raise NotEnoughDataError(str(exc)) from exc
    if not files:
        raise NotEnoughDataError(
            f"{source}: no images found. Expected one folder per class (good/ for OK parts, "
            "one folder per defect class) with images inside."
        )
    return files, skipped


def _pixel_pair(cls: str, heatmap: np.ndarray, mask_path: Path | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Downscaled (heatmap, mask) of one part for the pixel metrics; None for a defective
    part without a mask (it cannot say where the defect is). BadImageError when the mask
    file cannot be used."""
    if cls == OK_CLASS:
        return downscale_pair(heatmap, np.zeros(heatmap.shape, bool))  # an OK part is all background
    if mask_path is None:
        return None
    mask = read_mask(mask_path)
    if mask.shape != heatmap.shape:
        raise BadImageError(
            f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is {heatmap.shape[1]}x{heatmap.shape[0]}"
        )
    return downscale_pair(heatmap, mask)


@dataclass
class _Collected:
    """What evaluate_folder keeps per inspected part."""

    want_pixels: bool  # only when the folder has masks: else heatmaps would be kept for nothing
    true_classes: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    preds: list[str | None] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    heatmaps: list[np.ndarray] = field(default_factory=list)  # downscaled, see downscale_pair
    masks: list[np.ndarray] = field(default_factory=list)
    n_masks: int = 0  # defective parts whose mask is used

    def add(self, cls: str, verdict: "Verdict", mask_path: Path | None, skipped: list[dict]) -> None:
        self.true_classes.append(cls)
        self.scores.append(verdict.score)
        self.preds.append(OK_CLASS if verdict.passed else verdict.defect_class)
        self.latencies.append(verdict.latency_ms)
        if not self.want_pixels:
            return
        try:
            pair = _pixel_pair(cls, verdict.heatmap_on_image(), mask_path)
        except BadImageError as exc:
            # As `import` does: the image counts, its unusable mask is reported.
            reason = str(exc).removeprefix(f"{mask_path}: ")
            skipped.append({"path": str(mask_path), "reason": f"{reason}; image evaluated without its mask"})
            return
        if pair is not None:
            self.heatmaps.append(pair[0])
            self.masks.append(pair[1])
            self.n_masks += cls != OK_CLASS


def training_set_of(model_dir: Path | str) -> dict[str, str]:
    """sha256 of every image a model version was built from -> its split ("train" or
    "val"), from the `training_set.json` the trainer writes beside the model; empty when
    there is none (a model from elsewhere)."""
    import json

    try:
        chosen = json.loads((Path(model_dir) / "training_set.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(chosen, dict):
        return {}
    return {str(sha): split for split in ("val", "train") for sha in chosen.get(split, ())}


def evaluate_folder(
    inspector: "Inspector", source: Path, on_progress: Callable[[int, int], None] | None = None,
    training_set: dict[str, str] | None = None,
) -> dict:
    """Inspect every image of a class-folder dataset and summarise the results.

    Unreadable images (and unusable masks) are listed in result["skipped"] (path and
    reason), not fatal. on_progress(done, total) is called after each image.
    Besides summarize's figures: pixel_auroc and pro (localization_metrics over the parts
    with a mask, OK parts counting as all background; None when the folder has no
    masks), n_masks, and the model's mode. Only downscaled heatmaps are kept in memory.
    *training_set* (`training_set_of` the model): the images the model was built from,
    by content; result["seen_in_training"] counts the evaluated ones among them per split
    (the figures are not what the line gets on those) and lists up to 20 paths.
    """
    files, unreadable = _labelled_files(Path(source))
    skipped = [{"path": path, "reason": reason} for path, reason in unreadable]
    parts = _Collected(want_pixels=any(mask is not None for _, _, mask in files))
    seen: dict[str, list[str]] = {"train": [], "val": []}
    for done, (cls, path, mask_path) in enumerate(files, start=1):
        try:
            data = read_file(path)
            verdict = inspector.inspect(decode_image(data, str(path)))
        except BadImageError as exc:
            skipped.append({"path": str(path), "reason": str(exc)})
        else:
            parts.add(cls, verdict, mask_path, skipped)
            if training_set:  # hashing every file is only worth it with something to look up
                split = training_set.get(hashlib.sha256(data).hexdigest())
                if split is not None:
                    seen[split].append(str(path))
        if on_progress is not None:
            on_progress(done, len(files))
    if not parts.scores:
        raise NotEnoughDataError(f"{source}: none of the {len(files)} images could be read.")
    result = summarize(parts.true_classes, parts.scores, parts.preds, inspector.threshold, inspector.info.class_names)
    pixels = {"pixel_auroc": None, "pro": None}
    if parts.n_masks:
        pixels = localization_metrics(parts.heatmaps, parts.masks)
    result.update(
        {
            "source": str(source),
            "model_version": inspector.info.version,
            # Another model kind may come with its own mode; older models are supervised.
            "mode": getattr(inspector.info, "mode", "supervised"),
            **pixels,
            "n_masks": parts.n_masks,
            "latency_ms_p50": float(np.percentile(parts.latencies, 50)),
            "latency_ms_p95": float(np.percentile(parts.latencies, 95)),
            "skipped": skipped,
            "seen_in_training": {"n": len(seen["train"]) + len(seen["val"]), "train": len(seen["train"]),
                                 "val": len(seen["val"]), "examples": (seen["train"] + seen["val"])[:20]},
        }
    )
    return result
