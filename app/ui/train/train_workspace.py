"""Train: one button that retrains the model on everything labeled so far.

The training runs on this PC in a child process (TrainerProcess) or on the training
server (ServerTrainer, docs/adr/0011); both report the same signals, so this widget
shows what the model will learn from, the live progress and curves, and at the end
whether the new model beats the one at the line, with a Deploy button, the same way
for either. A server job is the server's: closing the window or opening another
project stops following it, never the job, and the Train view follows it again when
the project is opened.
"""

from __future__ import annotations

import getpass

from PySide6.QtCore import QSettings, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from app.ui.shared.workers import run_in_background
from app.ui.train.progress_text import eta_text, overall_fraction, phase_text
from app.ui.train.server_trainer import ServerTrainer, newest_open_job
from app.ui.train.train_page import TrainPage
from app.ui.train.train_summary import device_text, duration
from app.ui.train.train_target import target_text
from app.ui.train.trainer_process import TrainerProcess
from app.ui.trust.model_actions import confirm_and_deploy

__all__ = ["TrainWorkspace", "eta_text", "overall_fraction", "phase_text"]


class TrainWorkspace(TrainPage):
    """Retrain, follow the progress, compare, deploy."""

    training_running = Signal(bool)
    # What trains, for the status bar: "" for this PC, else target_text's "server gpu-1".
    training_target_changed = Signal(str)
    review_image_requested = Signal(int)  # an image id to show where it is labeled

    def __init__(self, context, parent: QWidget | None = None, trainer: TrainerProcess | None = None) -> None:
        super().__init__(getattr(context, "settings", None) or QSettings(), parent)
        self.context = context
        self.trainer = trainer or TrainerProcess(self)
        self.server = ServerTrainer(self)
        self._cancelling = False  # the status line says so until the training has stopped
        # "done" came: the model is saved; the trainer may still measure its learning curve.
        self._handed_over: str | None = None
        self._cancel_text: tuple[str, str] | None = None  # Cancel's own words while it says "Skip curve"
        # Replaces the trainer's argv (used to run a stand-in trainer); None = the real one.
        self.command_override: list[str] | None = None
        self._connect()
        self._on_project_changed(self.context.project)

    def _connect(self) -> None:
        self.retrain_button.clicked.connect(lambda: self.start_training())
        self.cancel_button.clicked.connect(lambda: self.cancel_training())
        for trainer in (self.trainer, self.server):  # one view for both (TrainerSignals)
            trainer.started_training.connect(self._on_start)
            trainer.progress.connect(self._on_progress)
            trainer.epoch_finished.connect(self._on_epoch)
            trainer.done.connect(self._on_done)
            trainer.curve_measured.connect(self._on_curve)
            trainer.failed.connect(self._on_failed)
            trainer.cancelled.connect(self._on_cancelled)
            trainer.finished.connect(self._on_finished)
        self.server.queued.connect(self._on_queued)
        self.server.taken.connect(self._on_taken)
        for change in (self.server.queued, self.server.taken):  # the queue line follows the job
            change.connect(lambda *_: self.server_status.refresh())
        self.server.cancelling.connect(lambda: self._show_cancelling(
            f"Skipping the learning curve; {self._handed_over} is saved." if self._handed_over
            else "Cancelling: waiting for the training server to stop the job…"))
        self.server.cancel_failed.connect(self._on_cancel_failed)
        self.server.notice.connect(self.context.status_message.emit)
        self.target_box.currentIndexChanged.connect(lambda _i: self._on_target_changed())
        self.server_status.status_read.connect(self._on_server_status)
        self.summary.deploy_requested.connect(self._deploy)
        self.summary.review_requested.connect(self.review_image_requested)
        self.context.project_changed.connect(self._on_project_changed)
        self.context.labels_changed.connect(lambda _id: self.refresh())
        if hasattr(self.context, "images_changed"):  # imports change the unlabeled count
            self.context.images_changed.connect(self.refresh)
        self.context.models_changed.connect(self.refresh)

    # -- state -----------------------------------------------------------------------

    def is_busy(self) -> bool:
        """A training on this PC runs (closing the window would end it); a server job
        does not count: it goes on whatever this window does. Nor does a learning curve
        measured after the model was saved: closing only skips it."""
        return self.trainer.is_running() and self._handed_over is None

    def _running(self) -> bool:
        return self.trainer.is_running() or self.server.is_running()

    def refresh(self) -> None:
        """Show what the next training would learn from."""
        project = self.context.project
        running = self._running()
        self.retrain_button.setEnabled(project is not None and not running)
        if project is None:
            self.data_label.setText("Open a project to train a model.")
            return
        counts = {str(k): int(v) for k, v in dict(project.label_counts(for_training=True)).items()}
        labeled = {k: v for k, v in counts.items() if k not in ("unlabeled", "none", "None")}
        everything = {str(k): int(v) for k, v in dict(project.label_counts()).items() if k != "unlabeled"}
        held_out = sum(everything.values()) - sum(labeled.values())
        names = ["ok"] + [c.name for c in project.classes()]
        names += [k for k in labeled if k not in names]
        parts = [f"<b>{name}</b>: {labeled.get(name, 0)}" for name in names]
        if self.target_box.on_server():
            device = "the training server"
        else:
            device = self.context.training_device() if hasattr(self.context, "training_device") else "CPU"
        unlabeled = counts.get("unlabeled")
        tail = f" &nbsp;·&nbsp; {unlabeled} not labeled yet" if unlabeled else ""
        if held_out:
            tail += f" &nbsp;·&nbsp; {held_out} held out for testing (never trained on)"
        self.data_label.setText(
            f"Trains on {sum(labeled.values())} labeled images — " + " &nbsp; ".join(parts) + tail
            + f"<br>Training runs on: <b>{device}</b>"
        )

    def start_training(self) -> None:
        project = self.context.project
        if project is None or self._running():
            return
        if not self._confirm_changed_data(project):
            return
        self._handed_over = None
        # The same options either way; the server path adds the `lineside train`
        # defaults the local trainer takes (train_jobs.check_options fills them in).
        options = {"epochs": self.epochs_spin.value() or None,
                   "time_budget_s": self.budget_spin.value() * 60 or None, "device": "auto"}
        if self.target_box.on_server():
            self._reset_view("Queued", "Queuing the retrain for the training server…", keep_summary=True)
            self._set_running(True)
            self.server.start(project, options, getattr(self.context, "person", None) or getpass.getuser())
            self.context.status_message.emit("Retrain queued for the training server.")
            return
        self._reset_view("Starting…", "Starting the trainer…", keep_summary=True)
        self._set_running(True)
        self.trainer.start(project.path, command=self.command_override, **options)
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
            self._show_cancelling(f"Skipping the learning curve; {self._handed_over} is saved." if self._handed_over
                                  else "Cancelling: stopping after the current batch…")
            self.trainer.cancel()
        elif self.server.is_running():
            self.server.cancel()  # says `cancelling`, then `cancelled` once the job is

    def _show_cancelling(self, text: str) -> None:
        self._cancelling = True
        self.phase_label.setText(text)
        self.cancel_button.setEnabled(False)

    def _on_cancel_failed(self, message: str) -> None:
        self._cancelling = False
        self.cancel_button.setEnabled(self._running())
        self.phase_label.setText(message)

    def shutdown(self, timeout_ms: int = 30_000) -> None:
        """Stop a training on this PC and wait for the child (the window is closing);
        a server job goes on."""
        self.server.stop_following()
        self.trainer.cancel()
        self.trainer.wait_stopped(timeout_ms)

    def _set_running(self, running: bool) -> None:
        self.retrain_button.setEnabled(not running and self.context.project is not None)
        self.cancel_button.setEnabled(running and not self._cancelling)
        self.target_box.setEnabled(not running)
        self.epochs_spin.setEnabled(not running)
        self.budget_spin.setEnabled(not running)
        self.training_running.emit(running)

    # -- trainer events --------------------------------------------------------------

    def _on_queued(self, job, ahead: int) -> None:
        if self._cancelling:
            return
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("Queued")
        self.phase_label.setText(f"Waiting for the training server ({ahead} ahead): "
                                 f"job {job.id}, asked for by {job.requested_by}.")
        self.eta_label.setText("")

    def _on_taken(self, job) -> None:
        if not self._cancelling:
            self.progress_bar.setFormat("Starting…")
            self.phase_label.setText(f"Job {job.id} is running on the training server {job.worker}; preparing…")

    def _on_start(self, event: dict) -> None:
        # A server job taken over by another worker starts over: so do its curves.
        self.loss_chart.clear()
        self.quality_chart.clear()
        self.progress_bar.setValue(0)
        if self._cancelling:
            return
        classes = ", ".join(event.get("classes") or [])
        checking = (f"checking on {event.get('n_val')}" if event.get("mode") != "good-only"
                    else "checking every OK part out-of-fold and the labeled defects")
        self.phase_label.setText(
            f"Training on {event.get('n_train')} images, {checking} ({classes}), "
            f"device {device_text(event.get('device'))}."
        )

    def _on_progress(self, event: dict) -> None:
        if self._handed_over is not None:  # the bar says Done; the line says what follows
            if not self._cancelling:
                self.phase_label.setText(f"{self._handed_over} is saved and ready to deploy. {phase_text(event)}…")
            return
        # Phases after training (the learning curve, the anomaly model of a combined run)
        # never move the bar backwards.
        fraction = max(overall_fraction(event), self.progress_bar.value() / 1000)
        self.progress_bar.setValue(int(fraction * 1000))
        self.progress_bar.setFormat(f"{fraction * 100:.0f} %")
        if not self._cancelling:  # "Cancelling…" stays up until the training has stopped
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
        self._handed_over = str(event.get("version"))
        self.progress_bar.setValue(1000)
        self.progress_bar.setFormat("Done")
        self.phase_label.setText(f"Finished: candidate {event.get('version')} is saved.")
        self.eta_label.setText("")
        self.summary.show_result(event)
        self.summary.show()
        if event.get("curve_follows") and self._running():  # stopping now only skips the curve
            self._cancel_text = (self.cancel_button.text(), self.cancel_button.toolTip())
            self.cancel_button.setText("Skip curve")
            self.cancel_button.setToolTip(f"Skip the learning curve (Esc); {self._handed_over} stays saved")
        self.context.models_changed.emit()
        self.context.status_message.emit(f"Training finished: {event.get('version')} is ready to deploy.")

    def _on_curve(self, event: dict) -> None:
        seconds = event.get("learning_curve_s")
        said = (f"its learning curve was measured in {duration(seconds)} (the report in Models shows it)"
                if seconds is not None else f"its learning curve was {event.get('note') or 'not measured'}")
        if not self._cancelling:
            self.phase_label.setText(f"Finished: candidate {event.get('version')} is saved; {said}.")
        self.context.models_changed.emit()

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
        if self._cancelling and self._handed_over is not None:
            self.phase_label.setText(f"Finished: candidate {self._handed_over} is saved; its learning curve "
                                     "was skipped.")
        self._cancelling = False
        self._handed_over = None
        if self._cancel_text is not None:
            self.cancel_button.setText(self._cancel_text[0])
            self.cancel_button.setToolTip(self._cancel_text[1])
            self._cancel_text = None
        self._set_running(False)
        self.refresh()
        self.server_status.refresh()

    def _deploy(self, version: str) -> None:
        if confirm_and_deploy(self, self.context, version):
            self.summary.set_deployed(True)

    def _on_project_changed(self, project) -> None:
        if self.trainer.is_running():  # the running training belongs to the old project
            self.trainer.cancel()
        if self.server.is_running():  # the server's job goes on; this view lets go of it
            self.server.stop_following()
            self._set_running(False)
        self._cancelling = False
        self._reset_view("", "Not started.")
        self.target_box.set_project(project)
        self.server_status.set_project(project)
        self.refresh()
        if project is not None:
            self._follow_open_job(project)

    def _on_target_changed(self) -> None:
        on_server = self.target_box.on_server()
        self.server_status.setVisible(on_server)
        self.training_target_changed.emit(target_text(None) if on_server else "")
        if on_server:
            self.server_status.refresh()  # read now, not at the next tick: the status bar waits for it
        self.refresh()

    def _on_server_status(self, status) -> None:
        if self.target_box.on_server():
            self.training_target_changed.emit(target_text(status))

    def _follow_open_job(self, project) -> None:
        """Show a server job that is still queued or running (the view was reopened)."""

        def follow(job) -> None:
            if job is None or project is not self.context.project or self._running():
                return
            self._reset_view("Queued", f"Following job {job.id} on the training server…")
            self._set_running(True)
            self.server.follow(project, job.id)

        run_in_background(lambda: newest_open_job(project), follow,
                          lambda exc: self.context.status_message.emit(f"The training queue was not read: {exc}"),
                          owner=self)
