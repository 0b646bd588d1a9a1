"""What the Train workspace hears from a training, wherever it runs.

A training on this PC (TrainerProcess, the trainer as a child process) and one on the
training server (ServerTrainer, its events read back from the project database) emit
the same signals from the same events (app/core/trainer_events.py), so the workspace's
progress bar, curves and result card are one piece of code for both.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QObject, Signal


class TrainerSignals(QObject):
    """One training at a time; exactly one of `done`, `failed` or `cancelled` per run,
    then `finished`. After `done` the trainer may go on measuring the new model's
    learning curve (`progress` of phase "curve", then `curve_measured`)."""

    started_training = Signal(dict)  # the "start" event
    progress = Signal(dict)  # "progress" events (phase, epoch, step, loss, eta_s)
    epoch_finished = Signal(dict)  # "epoch" events (train/val loss, val metrics)
    done = Signal(dict)  # "done" event: the new candidate version and its metrics
    curve_measured = Signal(dict)  # "curve" event, after done: the candidate's learning curve is in its report
    failed = Signal(str)  # a message fit to show to the user
    cancelled = Signal()
    log_line = Signal(str)  # text that is no event, for a details view
    finished = Signal(int)  # exit code; emitted after done/failed/cancelled

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._outcome_reported = False

    def is_running(self) -> bool:
        raise NotImplementedError

    def cancel(self) -> None:
        raise NotImplementedError

    def emit_progress_event(self, event: dict) -> bool:
        """Emit a start, progress or epoch event; False for any other kind."""
        kind = event.get("event")
        if kind == "start":
            self.started_training.emit(event)
        elif kind == "progress":
            self.progress.emit(event)
        elif kind == "epoch":
            self.epoch_finished.emit(event)
        elif kind == "curve":
            self.curve_measured.emit(event)
        else:
            return False
        return True

    def _new_run(self) -> None:
        self._outcome_reported = False

    def _report(self, emit: Callable[[], None]) -> None:
        """Emit the run's outcome, once: a later (or second) outcome is dropped."""
        if not self._outcome_reported:
            self._outcome_reported = True
            emit()
