"""Train: one button that retrains the model on everything labeled so far.

The training itself runs in a child process (TrainerProcess); this widget shows what
the model will learn from, the live progress and curves, and at the end whether the
new model beats the one at the line, with a Deploy button.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.ui.train.charts import LineChart
from app.ui.train.train_summary import TrainSummaryCard, device_text, duration
from app.ui.train.trainer_process import TrainerProcess
from app.ui.trust.model_actions import confirm_and_deploy

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
BIG_BUTTON_STYLE = "font-size: 20pt; font-weight: bold; padding: 0 32px;"


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


class TrainWorkspace(QWidget):
    """Retrain, follow the progress, compare, deploy."""

    training_running = Signal(bool)

    def __init__(self, context, parent: QWidget | None = None, trainer: TrainerProcess | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.trainer = trainer or TrainerProcess(self)
        # Replaces the trainer's argv (used to run a stand-in trainer); None = the real one.
        self.command_override: list[str] | None = None
        self._build()
        self._connect()
        self.refresh()

    # -- layout ----------------------------------------------------------------------

    def _build(self) -> None:
        # Everything scrolls as one page: with the result card up, the curves and the
        # card need more height than a 768 px screen gives.
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        outer.addWidget(self.scroll)
        page = QWidget()
        self.scroll.setWidget(page)
        root = QVBoxLayout(page)
        root.setSpacing(14)
        title = QLabel("Train")
        title.setStyleSheet("font-size: 24pt; font-weight: bold;")
        root.addWidget(title)

        self.data_label = QLabel()
        self.data_label.setWordWrap(True)
        self.data_label.setStyleSheet("font-size: 14pt;")
        self.data_label.setTextFormat(Qt.TextFormat.RichText)
        root.addWidget(self.data_label)

        controls = QHBoxLayout()
        self.retrain_button = QPushButton("Retrain")
        self.retrain_button.setMinimumHeight(80)
        self.retrain_button.setStyleSheet(BIG_BUTTON_STYLE)
        self.retrain_button.setProperty("primary", True)
        self.retrain_button.setShortcut("Ctrl+R")
        self.retrain_button.setToolTip("Train a new model on all labeled images (Ctrl+R)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setMinimumHeight(80)
        self.cancel_button.setStyleSheet(BIG_BUTTON_STYLE)
        self.cancel_button.setEnabled(False)
        self.cancel_button.setShortcut("Esc")
        self.cancel_button.setToolTip("Stop the training (Esc); nothing is saved")
        controls.addWidget(self.retrain_button, 2)
        controls.addWidget(self.cancel_button, 1)
        options = QVBoxLayout()
        self.epochs_spin = self._spin(options, "Epochs (0 = automatic)", 0, 500, 0)
        self.budget_spin = self._spin(options, "Time limit, minutes (0 = none)", 0, 24 * 60, 0)
        controls.addLayout(options, 1)
        root.addLayout(controls)

        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setMinimumHeight(40)
        self.progress_bar.setStyleSheet("font-size: 14pt;")
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat("")
        root.addWidget(self.progress_bar)
        status_row = QHBoxLayout()
        self.phase_label = QLabel("Not started.")
        self.phase_label.setStyleSheet("font-size: 14pt;")
        self.eta_label = QLabel("")
        self.eta_label.setStyleSheet("font-size: 14pt; font-weight: bold;")
        status_row.addWidget(self.phase_label, 1)
        status_row.addWidget(self.eta_label)
        root.addLayout(status_row)

        charts = QHBoxLayout()
        self.loss_chart = LineChart("Loss", x_label="epoch", integer_x=True, y_from_zero=True)
        self.loss_chart.add_series("training", "#1f77b4")
        self.loss_chart.add_series("validation", "#d62728", dashed=True)
        self.quality_chart = LineChart("Validation", x_label="epoch", y_range=(0.0, 1.02), integer_x=True)
        self.quality_chart.add_series("AUROC", "#2ca02c")
        # The training's yardstick: caught at 1 % false reject on the validation parts.
        self.quality_chart.add_series("caught at 1 % false reject", "#9467bd")
        charts.addWidget(self.loss_chart)
        charts.addWidget(self.quality_chart)
        root.addLayout(charts, 1)

        self.summary = TrainSummaryCard()
        self.summary.hide()
        root.addWidget(self.summary)

    def _spin(self, layout: QVBoxLayout, text: str, low: int, high: int, value: int) -> QSpinBox:
        row = QHBoxLayout()
        label = QLabel(text)
        spin = QSpinBox()
        spin.setRange(low, high)
        spin.setValue(value)
        spin.setMinimumHeight(48)
        spin.setMinimumWidth(130)
        label.setBuddy(spin)
        row.addWidget(label, 1)
        row.addWidget(spin)
        layout.addLayout(row)
        return spin

    def _connect(self) -> None:
        self.retrain_button.clicked.connect(lambda: self.start_training())
        self.cancel_button.clicked.connect(lambda: self.cancel_training())
        self.trainer.started_training.connect(self._on_start)
        self.trainer.progress.connect(self._on_progress)
        self.trainer.epoch_finished.connect(self._on_epoch)
        self.trainer.done.connect(self._on_done)
        self.trainer.failed.connect(self._on_failed)
        self.trainer.cancelled.connect(self._on_cancelled)
        self.trainer.finished.connect(self._on_finished)
        self.summary.deploy_requested.connect(self._deploy)
        self.context.project_changed.connect(self._on_project_changed)
        self.context.labels_changed.connect(lambda _id: self.refresh())
        if hasattr(self.context, "images_changed"):  # imports change the unlabeled count
            self.context.images_changed.connect(self.refresh)
        self.context.models_changed.connect(self.refresh)

    # -- state -----------------------------------------------------------------------

    def is_busy(self) -> bool:
        return self.trainer.is_running()

    def refresh(self) -> None:
        """Show what the next training would learn from."""
        project = self.context.project
        running = self.trainer.is_running()
        self.retrain_button.setEnabled(project is not None and not running)
        if project is None:
            self.data_label.setText("Open a project to train a model.")
            return
        counts = {str(k): int(v) for k, v in dict(project.label_counts()).items()}
        labeled = {k: v for k, v in counts.items() if k not in ("unlabeled", "none", "None")}
        names = ["ok"] + [c.name for c in project.classes()]
        names += [k for k in labeled if k not in names]
        parts = [f"<b>{name}</b>: {labeled.get(name, 0)}" for name in names]
        device = self.context.training_device() if hasattr(self.context, "training_device") else "CPU"
        unlabeled = counts.get("unlabeled")
        tail = f" &nbsp;·&nbsp; {unlabeled} not labeled yet" if unlabeled else ""
        self.data_label.setText(
            f"Trains on {sum(labeled.values())} labeled images — " + " &nbsp; ".join(parts) + tail
            + f"<br>Training runs on: <b>{device}</b>"
        )

    def start_training(self) -> None:
        project = self.context.project
        if project is None or self.trainer.is_running():
            return
        if not self._confirm_changed_data(project):
            return
        self._reset_view("Starting…", "Starting the trainer…", keep_summary=True)
        self._set_running(True)
        self.trainer.start(
            project.path,
            epochs=self.epochs_spin.value() or None,
            time_budget_s=self.budget_spin.value() * 60 or None,
            command=self.command_override,
        )
        self.context.status_message.emit("Training started.")

    def _confirm_changed_data(self, project) -> bool:
        """Ask before retraining on exactly the labels the newest model was trained on."""
        models = project.models()
        stored = models[0].report.get("labeled_data_sha256") if models else None
        if not stored or stored != project.labeled_fingerprint():
            return True
        answer = QMessageBox.question(
            self, "Nothing new to learn",
            f"The labels have not changed since {models[0].version} was trained: a retrain would give "
            "a near copy of it. Retrain anyway?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def cancel_training(self) -> None:
        if self.trainer.is_running():
            self.phase_label.setText("Cancelling: stopping after the current batch…")
            self.cancel_button.setEnabled(False)
            self.trainer.cancel()

    def shutdown(self, timeout_ms: int = 30_000) -> None:
        """Stop a running training and wait for the child (the window is closing)."""
        self.trainer.cancel()
        self.trainer.wait_stopped(timeout_ms)

    def _set_running(self, running: bool) -> None:
        self.retrain_button.setEnabled(not running and self.context.project is not None)
        self.cancel_button.setEnabled(running)
        self.epochs_spin.setEnabled(not running)
        self.budget_spin.setEnabled(not running)
        self.training_running.emit(running)

    # -- trainer events --------------------------------------------------------------

    def _on_start(self, event: dict) -> None:
        classes = ", ".join(event.get("classes") or [])
        self.phase_label.setText(
            f"Training on {event.get('n_train')} images, checking on {event.get('n_val')} ({classes}), "
            f"device {device_text(event.get('device'))}."
        )

    def _on_progress(self, event: dict) -> None:
        # Phases after training (the learning curve, the anomaly model of a combined run)
        # never move the bar backwards.
        fraction = max(overall_fraction(event), self.progress_bar.value() / 1000)
        self.progress_bar.setValue(int(fraction * 1000))
        self.progress_bar.setFormat(f"{fraction * 100:.0f} %")
        self.phase_label.setText(phase_text(event))
        self.eta_label.setText(eta_text(event.get("eta_s"), fraction))
        if event.get("phase") == "train" and isinstance(event.get("loss"), (int, float)):
            steps = max(1, int(event.get("steps") or 1))
            x = int(event.get("epoch") or 1) - 1 + float(event.get("step") or 0) / steps
            self.loss_chart.add_point("training", x, event["loss"])

    def _on_epoch(self, event: dict) -> None:
        x = float(event.get("epoch") or 0)
        self.loss_chart.add_point("validation", x, event.get("val_loss"))
        self.quality_chart.add_point("AUROC", x, event.get("val_auroc"))
        self.quality_chart.add_point("caught at 1 % false reject", x, event.get("val_catch_rate"))

    def _on_done(self, event: dict) -> None:
        self.progress_bar.setValue(1000)
        self.progress_bar.setFormat("Done")
        self.phase_label.setText(f"Finished: candidate {event.get('version')} is saved.")
        self.eta_label.setText("")
        self.summary.show_result(event)
        self.summary.show()
        self.context.models_changed.emit()
        self.context.status_message.emit(f"Training finished: {event.get('version')} is ready to deploy.")

    def _on_failed(self, message: str) -> None:
        self.progress_bar.setFormat("Failed")
        self.phase_label.setText("The training failed. Nothing was changed.")
        self.eta_label.setText("")
        self.context.status_message.emit("Training failed.")
        QMessageBox.warning(self, "Training failed", message)

    def _on_cancelled(self) -> None:
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("Cancelled")
        self.phase_label.setText("Cancelled. No new model was saved.")
        self.eta_label.setText("")
        self.context.status_message.emit("Training cancelled.")

    def _on_finished(self, _code: int) -> None:
        self._set_running(False)
        self.refresh()

    def _deploy(self, version: str) -> None:
        if confirm_and_deploy(self, self.context, version):
            self.summary.set_deployed(True)

    def _on_project_changed(self, _project) -> None:
        if self.trainer.is_running():  # the running training belongs to the old project
            self.trainer.cancel()
        self._reset_view("", "Not started.")
        self.refresh()

    def _reset_view(self, bar_text: str, status: str, keep_summary: bool = False) -> None:
        """Clear the progress; *keep_summary* leaves the last candidate's card (and its
        Deploy button) up: a new run, or a cancelled one, has not replaced it."""
        self.loss_chart.clear()
        self.quality_chart.clear()
        if not keep_summary:
            self.summary.hide()
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat(bar_text)
        self.phase_label.setText(status)
        self.eta_label.setText("")
