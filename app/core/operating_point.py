"""The operating point the line gets: a threshold set on held-out OK parts, with intervals.

The engineer states a target false-reject rate (default 1 %). The threshold is set on
scores of OK parts the model never trained on, computed by the exported model in ONNX
Runtime (the very numbers the line will compute), so the rate it delivers on new parts
is known in advance:

- With n held-out OK scores and the threshold just above the (k+1)-th highest, the
  share of *new* OK parts at or above it is Beta(k+1, n-k) distributed (the classic
  order-statistic / conformal argument; it needs only that new OK parts resemble the
  held-out ones). Its mean is (k+1)/(n+1). We pick the largest k whose mean stays
  within the target, and report the Beta interval as the false-reject interval.
- The catch rate is counted on held-out defective parts (Clopper-Pearson interval).

Any threshold above the (k+1)-th highest OK score keeps that promise; where in the gap
it sits decides the margin on either side. It sits halfway (in logit space) between the
highest OK score that must pass and the next held-out score above it, OK or defective:
a held-out defect scored in the gap pulls the threshold down towards it, so parts like
it are caught at the same promised false-reject rate. With nothing above (k = 0 and
no defect scored above every OK part) it sits above the top OK score by half the gap
to the second. Never one float step above a score: a part scored 3e-8 higher by
another runtime or CPU must not flip from PASS to FAIL.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from app.core.errors import NotEnoughDataError

DEFAULT_FALSE_REJECT_TARGET = 0.01
# Half the logit gap to the next score, but at least this: far above any float
# difference between PyTorch, ONNX Runtime builds and CPUs (about 1e-6 in logit).
MIN_LOGIT_MARGIN = 1e-3
FLOAT32_STEPS = 4  # ... and at least this many float32 steps (scores leave the model as float32)
_CLIP = 1e-7


def logit(p: np.ndarray) -> np.ndarray:
    """Scores (0..1) to logits, float64; the one definition the runtime, the trainer's
    modes and the INT8 gate share."""
    p = np.clip(np.asarray(p, np.float64), _CLIP, 1 - _CLIP)
    return np.log(p) - np.log1p(-p)


def sigmoid(z):
    """Logits to scores (0..1): a float for a number, an array for an array. Clipped at
    +-40, where float64 has no room left between the score and 0 or 1."""
    out = 1.0 / (1.0 + np.exp(-np.clip(np.asarray(z, np.float64), -40.0, 40.0)))
    return float(out) if out.ndim == 0 else out


def threshold_text(threshold: float, decimals: int = 3) -> str:
    """A threshold as people read it: *decimals* places, more where fewer would show a
    good-only model's 0.9999983 as "1.000" and hide where the line is drawn (its scores
    crowd towards 1 far from the OK parts)."""
    places = decimals
    text = f"{threshold:.{places}f}"
    while float(text) in (0.0, 1.0) and threshold not in (0.0, 1.0) and places < 9:
        places += 1
        text = f"{threshold:.{places}f}"
    return text


def allowed_rejects(n_ok: int, target: float) -> int:
    """Largest k with (k+1)/(n+1) <= target: how many held-out OK scores may lie above.

    0 when even k = 0 exceeds the target (fewer than 1/target - 1 OK parts): the
    threshold then sits above every held-out OK score and the interval says how far
    from the target that may be.
    """
    return max(0, int(math.floor(target * (n_ok + 1) + 1e-9)) - 1)


def single_part_note(n_ok: int, target: float) -> str | None:
    """What to say when the threshold rests on one held-out OK part (too few of them for
    the target to allow any above it), else None: then one unusual OK part decides
    where the line is drawn, and more OK parts make it steadier."""
    if n_ok <= 0 or allowed_rejects(n_ok, target) > 0:
        return None
    needed = next(n for n in range(n_ok + 1, 10**7) if allowed_rejects(n, target) > 0)
    return (f"The threshold sits above the highest of the {n_ok} held-out OK scores, so that one part "
            f"decides it; with {needed} or more held-out OK parts it would rest on more than one "
            "(label more OK parts).")


def highest_ok_parts(image_ids, filenames, scores, threshold: float, limit: int = 3) -> list[dict]:
    """The held-out OK parts that scored highest, highest first: the ones that place the
    threshold. One defective part among them labeled OK raises the threshold for every
    part the line judges, so these are the labels worth a second look."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")[:limit]
    return [{"image_id": int(image_ids[i]), "filename": str(filenames[i]), "score": float(scores[i]),
             "rejected": bool(scores[i] >= threshold)} for i in order]


def highest_ok_text(parts: list[dict]) -> str | None:
    """One sentence for the screens that show the threshold, or None without parts."""
    if not parts:
        return None
    listed = ", ".join(f"{p['filename']} ({threshold_text(p['score'])}{_looks_like(p)})" for p in parts)
    return (f"Highest-scoring held-out OK parts: {listed}. They place the threshold: if one of them is "
            "in fact defective, relabel it and retrain.")


def _looks_like(part: dict) -> str:
    """", looks most like X, labeled Y" when the labeled part the trainer found most like
    this one is defective (training/lookalikes.py), else ""."""
    like = part.get("looks_like")
    return f", looks most like {like['filename']}, labeled {like['verdict']}" if like else ""


def choose_threshold(ok_scores, target: float = DEFAULT_FALSE_REJECT_TARGET,
                     defect_scores=()) -> tuple[float, int]:
    """(threshold, k): k held-out OK parts score at or above the returned threshold.

    *defect_scores* (held-out defective parts) only place the threshold within the gap
    the OK scores allow (see the module text); they never change k or the promise.
    """
    ok = np.sort(np.asarray(ok_scores, np.float64).ravel())[::-1]
    if ok.size == 0:
        raise NotEnoughDataError("No held-out OK parts to set a threshold from: label more OK parts.")
    if not np.all(np.isfinite(ok)):
        raise NotEnoughDataError("The model gave invalid (NaN) scores on held-out OK parts; retrain.")
    k = min(allowed_rejects(ok.size, target), ok.size - 1)
    logits = logit(ok)
    below = logits[k]  # the highest score that must PASS
    above = [logits[k - 1]] if k > 0 else []  # the lowest OK score that may FAIL
    bad = logit(np.asarray(defect_scores, np.float64).ravel())
    above += list(bad[np.isfinite(bad) & (bad > below)])
    if above:
        gap = min(above) - below
    elif ok.size > 1:
        gap = below - logits[1]  # nothing above: extrapolate by the top gap
    else:
        gap = 0.0
    threshold = sigmoid(below + max(MIN_LOGIT_MARGIN, 0.5 * gap))
    # Near 1 (a good-only model's scores crowd there) float32 scores are 6e-8 apart, more
    # than a small logit margin: then at least a few of those steps above the score.
    top = float(ok[k])
    threshold = min(1.0, max(threshold, top + FLOAT32_STEPS * float(np.spacing(np.float32(top)))))
    return threshold, int(np.sum(ok >= threshold))


@dataclass
class OperatingPoint:
    threshold: float
    false_reject_target: float
    false_reject_rate: float  # expected on new OK parts: (k+1)/(n+1)
    false_reject_rate_ci: list[float]
    false_reject_on_heldout: float  # what the held-out OK parts themselves show (k/n)
    n_ok_heldout: int
    catch_rate: float | None  # on held-out defective parts
    catch_rate_ci: list[float] | None
    n_defect_heldout: int
    threshold_source: str
    confidence: float = 0.95

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line for the CLI and the reports."""
        fr = (f"false reject {self.false_reject_rate:.1%} expected "
              f"(95% CI {self.false_reject_rate_ci[0]:.1%}-{self.false_reject_rate_ci[1]:.1%})")
        if self.catch_rate is None:
            return f"{fr}; no held-out defective parts to measure the catch rate"
        lo, hi = self.catch_rate_ci
        return (f"catch {self.catch_rate:.1%} (95% CI {lo:.1%}-{hi:.1%}) of {self.n_defect_heldout} "
                f"held-out defective parts, {fr}")


def operating_point(ok_scores, defect_scores, target: float = DEFAULT_FALSE_REJECT_TARGET,
                    source: str = "held-out OK parts", confidence: float = 0.95,
                    threshold: float | None = None) -> OperatingPoint:
    """The threshold by `choose_threshold` (or the given *threshold*) with what it does on
    these held-out parts and what it forecasts for new ones."""
    from app.core.evaluation import rate_interval, threshold_false_reject_interval

    ok = np.asarray(ok_scores, np.float64).ravel()
    bad = np.asarray(defect_scores, np.float64).ravel()
    if threshold is None:
        threshold, k = choose_threshold(ok, target, bad)
    else:
        k = int(np.sum(ok >= threshold))
    forecast = threshold_false_reject_interval(ok.size, k, confidence)
    expected, low, high = forecast.mean, forecast.low, forecast.high
    catch = ci = None
    if bad.size:
        caught = int(np.sum(bad >= threshold))
        catch = caught / bad.size
        ci = [float(v) for v in rate_interval(caught, bad.size, confidence)]
    return OperatingPoint(
        threshold=float(threshold), false_reject_target=float(target), false_reject_rate=float(expected),
        false_reject_rate_ci=[float(low), float(high)],
        false_reject_on_heldout=float(np.mean(ok >= threshold)), n_ok_heldout=int(ok.size),
        catch_rate=catch, catch_rate_ci=ci, n_defect_heldout=int(bad.size), threshold_source=source,
        confidence=confidence)
