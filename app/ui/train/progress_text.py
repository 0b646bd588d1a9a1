"""What the progress bar and the status line say about a training's events.

Shared by a training on this PC and one on the training server: both report the
trainer's events (app/core/trainer_events.py).
"""

from __future__ import annotations

from app.ui.train.train_summary import duration

PHASE_TEXT = {
    "cache": "Preparing images",
    "train": "Training",
    "curve": "Measuring what less data would give",
    "features": "Reading OK parts for the anomaly model",
    "coreset": "Choosing the anomaly model's memory",
    "oof": "Scoring OK parts the anomaly model has not seen",
    "export": "Exporting the model",
    "evaluate": "Checking the model on validation images",
}
# Share of the progress bar each phase takes: training dominates the wall time.
PHASE_SPAN = {"cache": (0.0, 0.1), "train": (0.1, 0.9), "curve": (0.9, 0.9), "export": (0.9, 0.95),
              "evaluate": (0.95, 1.0),
              # the good-only model's phases (in a combined run they follow training: the bar holds)
              "features": (0.1, 0.6), "coreset": (0.6, 0.8), "oof": (0.8, 0.9)}
MIN_FRACTION_FOR_ETA = 0.05


def overall_fraction(event: dict) -> float:
    """Where a progress event sits in the whole run, 0..1."""
    low, high = PHASE_SPAN.get(str(event.get("phase")), (0.0, 1.0))
    steps = max(1, int(event.get("steps") or 1))
    within = min(1.0, max(0.0, float(event.get("step") or 0) / steps))
    if event.get("phase") == "train":
        epochs = max(1, int(event.get("epochs") or 1))
        done_epochs = max(0, int(event.get("epoch") or 1) - 1)  # epochs are counted from 1
        within = min(1.0, (done_epochs + within) / epochs)
    return low + (high - low) * within


def phase_text(event: dict) -> str:
    phase = str(event.get("phase") or "")
    text = PHASE_TEXT.get(phase, phase.capitalize())
    if phase == "train":
        text += f" — epoch {event.get('epoch')} of {event.get('epochs')}"
        if isinstance(event.get("loss"), (int, float)):
            text += f", loss {event['loss']:.3f}"
    elif event.get("steps"):
        text += f" — {event.get('step')} of {event.get('steps')}"
    return text


def eta_text(eta: object, fraction: float) -> str:
    """"About 3 min 10 s left", or "Estimating time left…" while an estimate means nothing.

    The trainer's first estimates come from a batch or two (caching, warm-up), and said
    "About 0 s left" at 1 %: until a few percent are done, or while the estimate is
    under a second with most of the work ahead, we say we are still estimating.
    """
    if not isinstance(eta, (int, float)):
        return ""
    if fraction < MIN_FRACTION_FOR_ETA or (eta < 1 and fraction < 0.95) or eta < 0:
        return "Estimating time left…"
    return f"About {duration(eta)} left"
