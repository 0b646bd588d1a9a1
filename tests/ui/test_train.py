"""Train workspace and the trainer child process.

The protocol edge cases (output split mid-line, noise, error event, a child that ignores
SIGTERM) run against tests/ui/fake_trainer.py; retraining, cancelling and deploying run
the real trainer on a tiny generated project.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QProcess, Qt
from PySide6.QtTest import QTest

from app.ui.train.train_workspace import TrainWorkspace, overall_fraction, phase_text
from app.ui.train.trainer_process import TrainerProcess
from tests.ui.workspace_fixtures import (  # noqa: F401  (fixtures)
    add_labeled_parts,
    answer_yes,
    app_context,
    project,
)

FAKE = [sys.executable, str(Path(__file__).with_name("fake_trainer.py"))]
HAS_TRAINER = importlib.util.find_spec("app.cli.train") is not None and importlib.util.find_spec("torch") is not None


def collect(trainer: TrainerProcess) -> list[tuple]:
    events: list[tuple] = []
    for name in ("started_training", "progress", "epoch_finished", "done", "curve_measured", "failed", "log_line"):
        getattr(trainer, name).connect(lambda *a, n=name: events.append((n, *a)))
    trainer.cancelled.connect(lambda: events.append(("cancelled",)))
    trainer.finished.connect(lambda code: events.append(("finished", code)))
    return events


def test_protocol_events_with_split_lines_and_noise(qtbot):
    trainer = TrainerProcess()
    events = collect(trainer)
    with qtbot.waitSignal(trainer.finished, timeout=20_000):
        trainer.start("unused", command=FAKE + ["ok"])
    kinds = [e[0] for e in events]
    assert kinds[0] == "started_training"
    assert kinds.count("progress") == 8 + 4 and kinds.count("epoch_finished") == 2
    # The model is handed over first; its learning curve follows, then the process ends.
    assert kinds[-7:] == ["done"] + ["progress"] * 4 + ["curve_measured", "finished"]
    assert events[-7][1]["version"] == "v9" and events[-2][1]["learning_curve_s"] == 1.0 and events[-1][1] == 0
    logs = [e[1] for e in events if e[0] == "log_line"]
    assert "not json at all" in logs and "a warning from some library" in logs
    assert not trainer.is_running()


@pytest.mark.parametrize(
    "mode, expected", [("error", "scratch: 0 labeled images"), ("crash", "Traceback: something broke")]
)
def test_failures_are_reported_once(qtbot, mode, expected):
    trainer = TrainerProcess()
    events = collect(trainer)
    with qtbot.waitSignal(trainer.finished, timeout=20_000):
        trainer.start("unused", command=FAKE + [mode])
    failures = [e[1] for e in events if e[0] == "failed"]
    assert len(failures) == 1 and expected in failures[0]
    assert not [e for e in events if e[0] in ("done", "cancelled")]


def test_cancel_kills_a_trainer_that_ignores_sigterm(qtbot):
    trainer = TrainerProcess(cancel_grace_ms=500)
    events = collect(trainer)
    trainer.start("unused", command=FAKE + ["hang", "0.5"])
    qtbot.waitUntil(lambda: any(e[0] == "progress" for e in events), timeout=20_000)
    pid = trainer.pid()
    with qtbot.waitSignal(trainer.finished, timeout=10_000):
        trainer.cancel()
    assert [e[0] for e in events][-2:] == ["cancelled", "finished"]
    assert not trainer.is_running()
    assert not Path(f"/proc/{pid}").exists() or sys.platform != "linux"


def test_the_workspace_counts_what_training_learns_from_and_what_is_held_out(qtbot, app_context, project):
    add_labeled_parts(project, 3, {"scratch": 2})
    scratch = [r for r, lab in project.labeled() if lab.verdict == "scratch"]
    project.set_split(scratch[0].id, "test")  # e.g. MVTec AD's test images
    app_context._set_project(project)
    ws = TrainWorkspace(app_context)
    qtbot.addWidget(ws)
    text = ws.data_label.text()
    assert "Trains on 4 labeled images" in text and "scratch</b>: 1" in text
    assert "1 held out for testing (never trained on)" in text


def test_workspace_with_protocol_trainer(qtbot, app_context, project, answer_yes):
    add_labeled_parts(project, 3, {"scratch": 2})
    app_context._set_project(project)
    ws = TrainWorkspace(app_context)
    qtbot.addWidget(ws)
    assert "ok</b>: 3" in ws.data_label.text() and "scratch</b>: 2" in ws.data_label.text()
    ws.command_override = FAKE + ["ok", "0.02"]
    with qtbot.waitSignal(ws.trainer.finished, timeout=20_000):
        ws.retrain_button.click()
        assert not ws.retrain_button.isEnabled() and ws.cancel_button.isEnabled()
    assert len(ws.loss_chart.points("training")) == 8
    assert [p[1] for p in ws.quality_chart.points("AUROC")] == pytest.approx([0.85, 0.9])
    assert ws.summary.isVisibleTo(ws) and ws.summary.version == "v9"
    assert "crack: 3 labeled images" in ws.summary.shortfalls.text()
    assert ws.retrain_button.isEnabled() and not ws.cancel_button.isEnabled()


def test_progress_helpers():
    assert overall_fraction({"phase": "cache", "step": 5, "steps": 10}) == pytest.approx(0.05)
    assert overall_fraction({"phase": "train", "epoch": 2, "epochs": 2, "step": 5, "steps": 10}) == pytest.approx(0.1 + 0.8 * 0.75)
    assert overall_fraction({"phase": "evaluate", "step": 1, "steps": 1}) == pytest.approx(1.0)
    assert phase_text({"phase": "train", "epoch": 1, "epochs": 3, "loss": 0.25}) == "Training — epoch 1 of 3, loss 0.250"


@pytest.fixture
def curve_workspace(qtbot, app_context, project):
    """The Train workspace on a project, its trainer the stand-in with a slow learning curve."""
    add_labeled_parts(project, 4, {"scratch": 2}, seed=5)
    app_context._set_project(project)
    ws = TrainWorkspace(app_context)
    qtbot.addWidget(ws)
    ws.command_override = FAKE + ["ok", "0.4"]
    return ws


def test_the_model_is_handed_over_before_its_learning_curve(qtbot, curve_workspace):
    ws = curve_workspace
    events = collect(ws.trainer)
    with qtbot.waitSignal(ws.trainer.done, timeout=20_000):
        QTest.mouseClick(ws.retrain_button, Qt.MouseButton.LeftButton)
    # Saved and shown while the curve is measured: closing the window would not ask.
    assert ws.progress_bar.format() == "Done" and ws.summary.isVisibleTo(ws)
    qtbot.waitUntil(lambda: "ready to deploy" in ws.phase_label.text(), timeout=5000)
    assert "v9 is saved" in ws.phase_label.text() and not ws.is_busy()
    assert not ws.retrain_button.isEnabled()  # one training at a time, curve included
    assert ws.cancel_button.text() == "Skip curve" and ws.cancel_button.isEnabled()
    with qtbot.waitSignal(ws.trainer.finished, timeout=20_000):
        pass
    assert "learning curve was measured in 1 s" in ws.phase_label.text()
    assert ws.retrain_button.isEnabled() and not any(e[0] in ("failed", "cancelled") for e in events)
    assert ws.cancel_button.text() == "Cancel" and not ws.cancel_button.isEnabled()


def test_cancel_during_the_learning_curve_keeps_the_model(qtbot, curve_workspace):
    ws = curve_workspace
    events = collect(ws.trainer)
    with qtbot.waitSignal(ws.trainer.done, timeout=20_000):
        QTest.mouseClick(ws.retrain_button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(ws.trainer.finished, timeout=20_000):
        QTest.mouseClick(ws.cancel_button, Qt.MouseButton.LeftButton)
    assert [e[0] for e in events].count("done") == 1 and ("cancelled",) not in events
    assert ws.progress_bar.format() == "Done"
    assert "v9 is saved; its learning curve was" in ws.phase_label.text()
    assert ws.retrain_button.isEnabled()


# -- the real trainer ---------------------------------------------------------------

needs_trainer = pytest.mark.skipif(not HAS_TRAINER, reason="the trainer (torch, `lineside train`) is not installed")


@pytest.fixture
def tiny_project(app_context, project):
    add_labeled_parts(project, 14, {"scratch": 12}, seed=3)  # 12 defects: supervised
    app_context._set_project(project)
    return project


@pytest.mark.slow
@needs_trainer
def test_retrain_for_real_then_deploy_and_inspect(qtbot, app_context, tiny_project, answer_yes):
    ws = TrainWorkspace(app_context)
    qtbot.addWidget(ws)
    ws.epochs_spin.setValue(1)
    events = collect(ws.trainer)
    with qtbot.waitSignal(ws.trainer.finished, timeout=300_000):
        ws.retrain_button.click()
    done = [e[1] for e in events if e[0] == "done"]
    assert done, f"the trainer did not finish: {[e for e in events if e[0] in ('failed', 'log_line')][-5:]}"
    version = done[0]["version"]
    assert [m.version for m in tiny_project.models()] == [version]
    assert ws.summary.isVisibleTo(ws) and ws.loss_chart.points("training")
    # The held-out OK parts that placed the threshold, highest first, one click from their label.
    highest = done[0]["metrics"]["highest_ok_parts"]
    val_ok = {r.id for r, label in tiny_project.labeled(split="val") if label.verdict == "ok"}
    assert highest and {p["image_id"] for p in highest} <= val_ok
    assert [p["score"] for p in highest] == sorted((p["score"] for p in highest), reverse=True)
    assert len(ws.summary.review_strip.buttons) == len(highest)
    assert [b.toolTip().split(":")[0] for b in ws.summary.review_strip.buttons] == [p["filename"] for p in highest]
    with qtbot.waitSignal(app_context.models_changed, timeout=2000):
        ws.summary.deploy_button.click()
    assert tiny_project.production_model().version == version
    assert not ws.summary.deploy_button.isEnabled()

    from app.ui.inspect.inspect_workspace import InspectWorkspace

    inspect = InspectWorkspace(app_context)
    qtbot.addWidget(inspect)
    assert inspect.start("simulated")
    try:
        qtbot.waitUntil(lambda: inspect.counters.parts >= 3, timeout=60_000)
    finally:
        inspect.stop()
    assert {row["model_version"] for row in tiny_project.inspections()} == {version}


@pytest.mark.slow
@needs_trainer
def test_cancel_a_real_retrain_leaves_nothing(qtbot, app_context, tiny_project):
    ws = TrainWorkspace(app_context)
    qtbot.addWidget(ws)
    ws.epochs_spin.setValue(50)
    events = collect(ws.trainer)
    ws.retrain_button.click()
    qtbot.waitUntil(lambda: any(e[0] == "progress" for e in events), timeout=120_000)
    with qtbot.waitSignal(ws.trainer.finished, timeout=60_000):
        ws.cancel_button.click()
    assert ("cancelled",) in events and not any(e[0] == "done" for e in events)
    assert ws.trainer._process.state() == QProcess.ProcessState.NotRunning
    assert tiny_project.models() == []
    assert not list(tiny_project.models_dir.rglob("model.onnx"))
    assert not [p for p in tiny_project.path.rglob("*.tmp")]
    assert "Cancelled" in ws.phase_label.text()


@pytest.mark.skipif(not hasattr(__import__("os"), "getpriority"), reason="no process priorities here")
def test_trainer_runs_below_the_gui_priority(qtbot):
    import os

    trainer = TrainerProcess()
    events = collect(trainer)
    trainer.start("unused", command=FAKE + ["hang", "0.5"])
    qtbot.waitUntil(lambda: any(e[0] == "progress" for e in events), timeout=20_000)
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, trainer.pid()) == min(19, ours + 10)
    trainer.wait_stopped(100)  # kills it: the hang mode ignores SIGTERM
    assert not trainer.is_running()


def test_summary_card_leads_with_the_stored_threshold_figures_and_their_intervals(qtbot):
    from app.ui.train.train_summary import TrainSummaryCard

    card = TrainSummaryCard()
    qtbot.addWidget(card)
    card.show_result({"version": "v4", "mode": "good-only", "mode_reason": "good-only: 3 labeled defective parts",
                      "elapsed_s": 42, "device": "cpu (2 cores)",
                      "metrics": {"catch_rate": 0.75, "catch_rate_ci": [0.4, 0.95], "false_reject_rate": 0.009,
                                  "false_reject_rate_ci": [0.003, 0.017], "threshold": 0.91, "auroc": 0.97,
                                  "threshold_source": "523 training OK parts scored out-of-fold",
                                  "false_reject_target": 0.01, "catch_at_1pct_false_reject": 0.8}})
    assert card.cells[("catch", "candidate")].text() == "75.0 % (40.0-95.0 %)"
    assert card.cells[("false_reject", "candidate")].text() == "0.9 % (0.3-1.7 %)"
    details = card.details.text()
    assert "good-only: 3 labeled defective parts" in details
    assert "out-of-fold" in details and "Best case" in details
    assert "decides it" not in details  # no n_ok_heldout given: nothing to say about it
    # A threshold resting on the highest of 109 validation OK scores says so, and what would help.
    card.show_result({"version": "v5", "elapsed_s": 12, "device": "cpu (2 cores)",
                      "metrics": {"catch_rate": 1.0, "catch_rate_ci": [0.6, 1.0], "false_reject_rate": 0.009,
                                  "false_reject_rate_ci": [0.0, 0.033], "threshold": 0.9665, "auroc": 1.0,
                                  "threshold_source": "109 validation OK parts", "false_reject_target": 0.01,
                                  "n_ok_heldout": 109}})
    assert "highest of the 109 held-out OK scores" in card.details.text()
    assert "199 or more" in card.details.text()


def test_check_opens_a_threshold_placing_ok_part_where_it_is_labeled(main_window, qtbot):
    # The Train summary names the held-out OK parts that scored highest; a defective part
    # among them labeled OK raises the threshold, so "Check" opens it in Capture & Label.
    window = main_window()
    project = window.context.project
    add_labeled_parts(project, n_ok=3, per_defect={})
    records = [r for r, _ in project.labeled()]
    train = next(w for w in window.workspaces if isinstance(w, TrainWorkspace))
    window.show_workspace("train")
    train.summary.show_result({"version": "v2", "elapsed_s": 30, "device": "cpu (2 cores)", "metrics": {
        "catch_rate": 1.0, "false_reject_rate": 0.009, "threshold": 0.9, "auroc": 1.0,
        "n_ok_heldout": 109, "false_reject_target": 0.01,
        "highest_ok_parts": [{"image_id": records[1].id, "filename": "kos21_Part5.jpg", "score": 0.77,
                              "rejected": False},
                             {"image_id": records[2].id, "filename": "2026-11-30T10-22-33_camera1_part000123.png",
                              "score": 0.04, "rejected": False}]}})
    train.summary.show()
    assert "kos21_Part5.jpg (0.770)" in train.summary.details.text()
    buttons = train.summary.review_strip.buttons
    # A long camera file name is shortened on its button (three must fit 1024 px), whole in the tooltip.
    assert [b.text() for b in buttons] == ["Check kos21_Part5.jpg", "Check 2026-11-30T1…art000123.png"]
    assert buttons[1].toolTip().startswith("2026-11-30T10-22-33_camera1_part000123.png: held-out OK part")
    qtbot.waitUntil(buttons[0].isVisible)
    QTest.mouseClick(buttons[0], Qt.MouseButton.LeftButton)
    assert window.tabs.currentWidget() is window.capture
    assert window.capture.labeling.image_id == records[1].id
    # A new result replaces the buttons (none when the trainer named no parts).
    train.summary.show_result({"version": "v3", "metrics": {}})
    assert train.summary.review_strip.buttons == [] and train.summary.review_strip.row.count() == 0



def test_the_start_of_a_good_only_run_says_what_it_is_checked_on(qtbot, app_context, project):
    app_context._set_project(project)
    ws = TrainWorkspace(app_context)
    qtbot.addWidget(ws)
    ws._on_start({"event": "start", "device": "CPU (2 cores)", "n_train": 666, "n_val": 0, "classes": ["ok"],
                  "mode": "good-only"})
    text = ws.phase_label.text()
    assert "Training on 666 images, checking every OK part out-of-fold and the labeled defects (ok)" in text
    assert "checking on 0" not in text
