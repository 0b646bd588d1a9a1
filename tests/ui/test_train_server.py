"""Retrain "on the training server", driven by clicks with the stylesheet on.

The queue is the project's own (app/core/train_jobs.py) on a SQLite project, as on one
PC with a worker beside the app. One test runs the real `lineside worker --once` as a
child process on a tiny training; the others play the worker's part through the
queue's own functions (claim, events, heartbeat, finish), which is all a worker does
to the database.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMessageBox

from app.core import train_jobs
from app.core.errors import LinesideError
from app.core.project import Project
from app.ui.train.train_target import ON_SERVER, ON_THIS_PC, ServerStatus, ago, status_text
from app.ui.train.train_workspace import TrainWorkspace
from tests.training_fixtures import TINY_INPUT_SIZE
from tests.ui.workspace_fixtures import add_labeled_parts, answer_yes, app_context, project, shown  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
HAS_TRAINER = importlib.util.find_spec("app.cli.train") is not None and importlib.util.find_spec("torch") is not None
EVENT_WAIT_MS = 10_000


def click(widget, pos=None) -> None:
    if pos is None:
        QTest.mouseClick(widget, Qt.MouseButton.LeftButton)
    else:
        QTest.mouseClick(widget, Qt.MouseButton.LeftButton, pos=pos)


def choose(qtbot, combo, text: str) -> None:
    """Open the combo's list with a click and click the entry."""
    click(combo)
    view = combo.view()
    qtbot.waitUntil(view.isVisible, timeout=5000)
    index = combo.findText(text)
    # Qt's list ignores a release within a double-click interval of opening, and
    # selects the entry under the pointer: a hand waits a moment and moves there.
    QTest.qWait(QApplication.doubleClickInterval() + 50)
    where = view.visualRect(view.model().index(index, 0)).center()
    QTest.mouseMove(view.viewport(), where)
    click(view.viewport(), where)
    qtbot.waitUntil(lambda: combo.currentIndex() == index and not view.isVisible(), timeout=5000)


def only_job(project) -> train_jobs.Job:
    listed = train_jobs.jobs(project)
    assert len(listed) == 1, listed
    return listed[0]


@pytest.fixture
def train_ws(qtbot, app_context, project, answer_yes):
    add_labeled_parts(project, 14, {"scratch": 12}, seed=3)  # 12 defects: supervised
    # The quick training of tests/test_train_jobs.py: small input, no tiles, no curve.
    project.set_setting("input_size", TINY_INPUT_SIZE)
    project.set_setting("tiling", False)
    project.set_setting("learning_curve", False)
    app_context._set_project(project)
    ws = shown(qtbot, TrainWorkspace(app_context))
    yield ws
    ws.shutdown()


def queue_a_retrain(qtbot, ws, epochs: int = 2) -> int:
    choose(qtbot, ws.target_box, ON_SERVER)
    ws.epochs_spin.setValue(epochs)
    click(ws.retrain_button)
    qtbot.waitUntil(lambda: ws.server.job_id is not None, timeout=EVENT_WAIT_MS)
    qtbot.waitUntil(lambda: "Waiting for the training server" in ws.phase_label.text(), timeout=EVENT_WAIT_MS)
    return ws.server.job_id


def test_the_choice_says_no_server_has_run_yet_and_is_remembered_per_project(qtbot, train_ws, app_context, tmp_path):
    ws = train_ws
    assert ws.target_box.currentText() == ON_THIS_PC and not ws.server_status.isVisible()
    choose(qtbot, ws.target_box, ON_SERVER)
    assert ws.server_status.isVisible()
    qtbot.waitUntil(lambda: "No training server has taken a job yet" in ws.server_status.text(), timeout=EVENT_WAIT_MS)
    assert f"lineside worker {app_context.project.path}" in ws.server_status.text()
    assert "no job waiting" in ws.server_status.text()
    assert "Training runs on: <b>the training server</b>" in ws.data_label.text()

    first = app_context.project.path
    app_context.create_project(tmp_path / "other")  # another project trains on this PC
    assert ws.target_box.currentText() == ON_THIS_PC and not ws.server_status.isVisible()
    app_context.open_project(first)  # the first one still on the server
    assert ws.target_box.currentText() == ON_SERVER and ws.server_status.isVisible()
    app_context.close_project()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TRAINER, reason="the trainer (torch, `lineside worker`) is not installed")
def test_retrain_on_the_server_with_a_real_worker_ends_like_a_local_one(qtbot, train_ws, project, tmp_path):
    ws = train_ws
    seen: dict[str, list] = {"progress": [], "epoch": [], "models_changed": []}
    ws.server.progress.connect(seen["progress"].append)
    ws.server.epoch_finished.connect(seen["epoch"].append)
    ws.context.models_changed.connect(lambda: seen["models_changed"].append(True))

    job_id = queue_a_retrain(qtbot, ws, epochs=2)
    job = only_job(project)
    assert job.id == job_id and job.state == train_jobs.QUEUED
    assert job.options == {**train_jobs.DEFAULT_OPTIONS, "epochs": 2}  # what the local retrain passes
    assert "Waiting for the training server (0 ahead)" in ws.phase_label.text()
    assert not ws.retrain_button.isEnabled() and ws.cancel_button.isEnabled()
    assert not ws.target_box.isEnabled()
    qtbot.waitUntil(lambda: "1 job waiting" in ws.server_status.text(), timeout=EVENT_WAIT_MS)

    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen([sys.executable, "-m", "app", "worker", str(project.path), "--once",
                                   "--device", "cpu", "--poll", "0.2", "--heartbeat", "0.5", "--name", "w-ui"],
                                  cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        with qtbot.waitSignal(ws.server.finished, timeout=300_000):
            pass
        assert worker.wait(60) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    final = train_jobs.job(project, job_id)
    assert final.state == train_jobs.DONE, log.read_text()
    version = final.result_version
    # The same view a local retrain ends with: curves, the result card, the models list.
    assert seen["progress"] and [e["epoch"] for e in seen["epoch"]] == [1, 2]
    assert ws.loss_chart.points("training") and len(ws.quality_chart.points("AUROC")) == 2
    assert ws.summary.isVisible() and ws.summary.version == version and ws.summary.deploy_button.isEnabled()
    assert ws.summary.cells[("auroc", "candidate")].text() != "–"  # from the worker's "done" event
    assert f"candidate {version} is saved" in ws.phase_label.text() and ws.progress_bar.format() == "Done"
    assert seen["models_changed"] and [m.version for m in project.models()] == [version]
    assert ws.retrain_button.isEnabled() and not ws.cancel_button.isEnabled() and ws.target_box.isEnabled()
    # --once: the worker said it stopped as it exited, so none is online now.
    qtbot.waitUntil(lambda: "the last one, <b>w-ui</b>, was seen" in ws.server_status.text(), timeout=EVENT_WAIT_MS)


def test_cancel_while_queued_cancels_the_job(qtbot, train_ws, project):
    ws = train_ws
    job_id = queue_a_retrain(qtbot, ws)
    with qtbot.waitSignal(ws.server.cancelled, timeout=EVENT_WAIT_MS):
        click(ws.cancel_button)
        assert ws.phase_label.text().startswith("Cancelling") and not ws.cancel_button.isEnabled()
    job = train_jobs.job(project, job_id)
    assert job.state == train_jobs.CANCELLED and job.worker is None
    qtbot.waitUntil(ws.retrain_button.isEnabled, timeout=EVENT_WAIT_MS)
    assert "Cancelled" in ws.phase_label.text() and ws.progress_bar.format() == "Cancelled"


def test_a_cancel_that_does_not_reach_the_queue_can_be_pressed_again(qtbot, train_ws, project, monkeypatch):
    ws = train_ws
    job_id = queue_a_retrain(qtbot, ws)

    def unreachable(*_args):
        raise LinesideError("The project database did not answer")

    with monkeypatch.context() as patch:
        patch.setattr(train_jobs, "request_cancel", unreachable)
        click(ws.cancel_button)
        qtbot.waitUntil(ws.cancel_button.isEnabled, timeout=EVENT_WAIT_MS)
    assert "did not reach the training queue" in ws.phase_label.text() and ws.server.is_running()
    assert train_jobs.job(project, job_id).state == train_jobs.QUEUED
    with qtbot.waitSignal(ws.server.cancelled, timeout=EVENT_WAIT_MS):
        click(ws.cancel_button)
    assert train_jobs.job(project, job_id).state == train_jobs.CANCELLED


def play_events(project, job_id: int, epochs: int = 2) -> None:
    """What a worker writes for a short training (app/core/trainer_events.py)."""
    train_jobs.append_event(project, job_id, {"event": "start", "device": "cuda (H100)", "n_train": 20, "n_val": 6,
                                              "classes": ["ok", "scratch"], "epochs": epochs})
    for epoch in range(1, epochs + 1):
        train_jobs.append_event(project, job_id, {"event": "progress", "phase": "train", "epoch": epoch,
                                                  "epochs": epochs, "step": 1, "steps": 1, "loss": 0.5 / epoch,
                                                  "eta_s": 3.0})
        train_jobs.append_event(project, job_id, {"event": "epoch", "epoch": epoch, "epochs": epochs,
                                                  "train_loss": 0.5, "val_loss": 0.4, "val_auroc": 0.9,
                                                  "val_catch_rate": 0.8, "eta_s": 1.0})


def test_a_failed_server_job_shows_its_progress_then_the_error(qtbot, train_ws, project, answer_yes):
    ws = train_ws
    job_id = queue_a_retrain(qtbot, ws)
    assert train_jobs.claim_next(project, "gpu-1").id == job_id
    qtbot.waitUntil(lambda: "running on the training server gpu-1" in ws.phase_label.text(), timeout=EVENT_WAIT_MS)
    play_events(project, job_id)
    qtbot.waitUntil(lambda: len(ws.quality_chart.points("AUROC")) == 2, timeout=EVENT_WAIT_MS)
    assert len(ws.loss_chart.points("training")) == 2
    with qtbot.waitSignal(ws.server.finished, timeout=EVENT_WAIT_MS):
        train_jobs.append_event(project, job_id, {"event": "error", "message": "CUDA out of memory"})
        train_jobs.finish(project, job_id, "gpu-1", train_jobs.FAILED, error="CUDA out of memory")
    assert answer_yes == ["Training failed: CUDA out of memory"]
    assert ws.progress_bar.format() == "Failed" and ws.retrain_button.isEnabled()
    assert not ws.summary.isVisible() and project.models() == []


def test_a_server_jobs_model_is_shown_at_done_while_its_curve_is_measured(qtbot, train_ws, project):
    ws = train_ws
    job_id = queue_a_retrain(qtbot, ws)
    train_jobs.claim_next(project, "gpu-1")
    play_events(project, job_id, epochs=1)
    # What a worker writes at the hand-over: the model is saved, the job still runs.
    with qtbot.waitSignal(ws.server.done, timeout=EVENT_WAIT_MS):
        train_jobs.append_event(project, job_id, {"event": "done", "version": "v4", "elapsed_s": 12.0,
                                                  "device": "cuda (H100)", "metrics": {"auroc": 0.9},
                                                  "curve_follows": True})
        train_jobs.record_result(project, job_id, "gpu-1", "v4")
    assert ws.progress_bar.format() == "Done" and ws.server.is_running()
    assert ws.cancel_button.text() == "Skip curve" and not ws.retrain_button.isEnabled()
    train_jobs.append_event(project, job_id, {"event": "progress", "phase": "curve", "step": 1, "steps": 3,
                                              "eta_s": None})
    qtbot.waitUntil(lambda: "v4 is saved and ready to deploy" in ws.phase_label.text(), timeout=EVENT_WAIT_MS)
    with qtbot.waitSignal(ws.server.finished, timeout=EVENT_WAIT_MS):
        train_jobs.append_event(project, job_id, {"event": "curve", "version": "v4", "elapsed_s": 30.0,
                                                  "learning_curve_s": 18.0})
        train_jobs.finish(project, job_id, "gpu-1", train_jobs.DONE, result_version="v4")
    assert "v4 is saved; its learning curve was measured in 18 s" in ws.phase_label.text()
    assert ws.retrain_button.isEnabled() and ws.cancel_button.text() == "Cancel"


def test_cancel_of_a_running_job_waits_for_the_worker(qtbot, train_ws, project):
    ws = train_ws
    job_id = queue_a_retrain(qtbot, ws)
    train_jobs.claim_next(project, "gpu-1")
    play_events(project, job_id, epochs=1)
    qtbot.waitUntil(lambda: bool(ws.loss_chart.points("training")), timeout=EVENT_WAIT_MS)
    click(ws.cancel_button)
    qtbot.waitUntil(lambda: train_jobs.job(project, job_id).cancel_requested, timeout=EVENT_WAIT_MS)
    assert ws.phase_label.text() == "Cancelling: waiting for the training server to stop the job…"
    # The worker goes on for a step before it hears of the cancel: still "Cancelling".
    train_jobs.append_event(project, job_id, {"event": "progress", "phase": "train", "epoch": 1, "epochs": 1,
                                              "step": 1, "steps": 1, "loss": 0.3, "eta_s": 1.0})
    qtbot.waitUntil(lambda: len(ws.loss_chart.points("training")) == 2, timeout=EVENT_WAIT_MS)
    assert ws.phase_label.text().startswith("Cancelling") and ws.server.is_running()
    assert train_jobs.heartbeat(project, job_id, "gpu-1") == train_jobs.CANCEL
    with qtbot.waitSignal(ws.server.cancelled, timeout=EVENT_WAIT_MS):
        train_jobs.append_event(project, job_id, {"event": "cancelled"})
        train_jobs.finish(project, job_id, "gpu-1", train_jobs.CANCELLED, error="cancelled on request")
    qtbot.waitUntil(ws.retrain_button.isEnabled, timeout=EVENT_WAIT_MS)
    assert "Cancelled" in ws.phase_label.text()


def test_closing_does_not_cancel_and_reopening_follows_the_job_again(qtbot, train_ws, app_context, project):
    ws = train_ws
    other = train_jobs.request_retrain(project, {"epochs": 3}, "another station")  # queued first
    job_id = queue_a_retrain(qtbot, ws)
    assert "(1 ahead)" in ws.phase_label.text()
    ws.shutdown()  # the window closes: the job is the server's
    ws.close()
    assert train_jobs.job(project, job_id).state == train_jobs.QUEUED

    reopened = shown(qtbot, TrainWorkspace(app_context))
    try:
        qtbot.waitUntil(lambda: reopened.server.job_id == job_id, timeout=EVENT_WAIT_MS)
        qtbot.waitUntil(lambda: "(1 ahead)" in reopened.phase_label.text(), timeout=EVENT_WAIT_MS)
        assert reopened.cancel_button.isEnabled() and not reopened.retrain_button.isEnabled()
        train_jobs.request_cancel(project, other.id)  # the job ahead goes: this one moves up
        qtbot.waitUntil(lambda: "(0 ahead)" in reopened.phase_label.text(), timeout=EVENT_WAIT_MS)
        app_context.close_project()  # switching project lets go of the job, does not cancel it
        assert not reopened.server.is_running() and reopened.phase_label.text() == "Not started."
        assert train_jobs.job(project, job_id).state == train_jobs.QUEUED
    finally:
        reopened.shutdown()


def test_closing_the_window_leaves_the_server_job_alone(qtbot, main_window, monkeypatch):
    window = main_window(size=(1024, 768))
    window.show_workspace("train")
    train = window._training()
    job_id = queue_a_retrain(qtbot, train)
    asked: list[str] = []
    monkeypatch.setattr(QMessageBox, "exec", lambda box: asked.append(box.text()) or 0)
    project = window.context.project
    folder = project.path
    window.close()
    assert not window.isVisible() and asked == []  # nothing of this PC's to stop: no question
    with Project.open(folder) as reopened:
        assert train_jobs.job(reopened, job_id).state == train_jobs.QUEUED


def _job(job_id: int, state: str, worker: str | None, heard: datetime | None = None,
         finished: datetime | None = None) -> train_jobs.Job:
    return train_jobs.Job(job_id, "ann", NOW, dict(train_jobs.DEFAULT_OPTIONS), state, worker, heard, finished,
                          heard, False, 1, None, None)


NOW = datetime(2024, 5, 6, 12, 0, tzinfo=timezone.utc)


def test_the_server_line_says_what_is_known_of_the_workers():
    never = status_text(ServerStatus(2, [], None), "/plant/line3", NOW)
    assert "2 jobs waiting" in never and "No training server has taken a job yet" in never
    assert "<tt>lineside worker /plant/line3</tt>" in never
    busy = status_text(ServerStatus(0, [_job(7, train_jobs.RUNNING, "gpu-1", NOW - timedelta(seconds=12))], None),
                       "/p", NOW)
    assert busy == "Training server: <b>gpu-1</b> is running job 7 (last heartbeat 12 s ago); no job waiting."
    silent = status_text(ServerStatus(1, [_job(7, train_jobs.RUNNING, "gpu-1", NOW - timedelta(minutes=20))], None),
                         "/p", NOW)
    assert "its last heartbeat was 20 min ago: it may have stopped" in silent and "1 job waiting" in silent
    idle = status_text(ServerStatus(0, [], _job(5, train_jobs.DONE, "gpu<2>", finished=NOW - timedelta(hours=3))),
                       "/p", NOW)
    assert "last job finished 3 h ago by <b>gpu&lt;2&gt;</b>" in idle
    assert ago(NOW - timedelta(days=2), NOW) == "2 days ago" and ago(NOW, NOW) == "just now"
