"""How good is a model at the line: catch rate, false rejects, AUROC, per-class results.

The numbers a quality engineer asks for: "of the bad parts, how many do we stop?"
(catch rate) at "how many good parts do we throw away?" (false reject rate). A part is
rejected when its score is >= the threshold, here and in the runtime. Numpy only: the
trainer and the line compute the same figures from the same code.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from app.core.errors import BadImageError, LinesideError, NotEnoughDataError
from app.core.imageio import read_image

if TYPE_CHECKING:
    from app.core.runtime import Inspector

OK_CLASS = "ok"
# rate * n is computed in floating point: 0.29 * 100 is 28.999999999999996.
_COUNT_EPSILON = 1e-9


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


def summarize(
    true_classes: list[str],
    scores: Iterable[float],
    pred_classes: list[str | None],
    threshold: float,
    class_names: list[str],
) -> dict:
    """All evaluation figures for one set of parts, JSON-able (undefined metrics are None).

    pred_classes holds "ok" (or None) for a passed part, else its defect class.
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
        "threshold": float(threshold),
        "n_images": int(len(scores)),
        "n_ok": int((~is_defect).sum()),
        "n_defect": int(is_defect.sum()),
        "per_class": per_class,
        "confusion": {"labels": labels, "matrix": matrix.tolist()},
    }


def _labelled_files(source: Path) -> tuple[list[tuple[str, Path]], list[tuple[str, str]]]:
    # Read a labeled folder exactly as `import` does: one definition of the layouts.
    from app.core.importer import labeled_files

    try:
        files, skipped = labeled_files(source)
    except LinesideError as exc:
        raise NotEnoughDataError(str(exc)) from exc
    if not files:
        raise NotEnoughDataError(
            f"{source}: no images found. Expected one folder per class (good/ for OK parts, "
            "one folder per defect class) with images inside."
        )
    return files, skipped


def evaluate_folder(
    inspector: "Inspector", source: Path, on_progress: Callable[[int, int], None] | None = None
) -> dict:
    """Inspect every image of a class-folder dataset and summarise the results.

    Unreadable images are listed in result["skipped"] (path and reason), not fatal.
    on_progress(done, total) is called after each image.
    """
    files, unreadable = _labelled_files(Path(source))
    true_classes, scores, preds, latencies = [], [], [], []
    skipped = [{"path": path, "reason": reason} for path, reason in unreadable]
    for done, (cls, path) in enumerate(files, start=1):
        try:
            verdict = inspector.inspect(read_image(path))
        except BadImageError as exc:
            skipped.append({"path": str(path), "reason": str(exc)})
        else:
            true_classes.append(cls)
            scores.append(verdict.score)
            preds.append(OK_CLASS if verdict.passed else verdict.defect_class)
            latencies.append(verdict.latency_ms)
        if on_progress is not None:
            on_progress(done, len(files))
    if not scores:
        raise NotEnoughDataError(f"{source}: none of the {len(files)} images could be read.")
    result = summarize(true_classes, scores, preds, inspector.threshold, inspector.info.class_names)
    result.update(
        {
            "source": str(source),
            "model_version": inspector.info.version,
            "latency_ms_p50": float(np.percentile(latencies, 50)),
            "latency_ms_p95": float(np.percentile(latencies, 95)),
            "skipped": skipped,
        }
    )
    return result
