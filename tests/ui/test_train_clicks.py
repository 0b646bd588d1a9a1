"""Train driven by clicks with the stylesheet on: Retrain while training, the last
candidate's card, the time estimate, the chart axes, closing the window mid-training."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QMessageBox

from app.ui.main_window import MainWindow
from app.ui.shared.style import ACCENT
from app.ui.train.charts import LineChart
from app.ui.train.train_workspace import TrainWorkspace, eta_text
from tests.ui.workspace_fixtures import add_labeled_parts, answer_yes, app_context, project, shown  # noqa: F401

FAKE = [sys.executable, str(Path(__file__).with_name("fake_trainer.py"))]


@pytest.fixture
def train_ws(qtbot, app_context, project):
    add_labeled_parts(project, 3, {"scratch": 2})
    app_context._set_project(project)
    ws = shown(qtbot, TrainWorkspace(app_context))
    yield ws
    ws.shutdown()


def click(button) -> None:
    QTest.mouseClick(button, Qt.MouseButton.LeftButton)


def background_of(button) -> QColor:
    """The colour the user sees beside the button's text (left padding, mid-height)."""
    image = button.grab().toImage()
    return image.pixelColor(max(6, image.width() // 12), image.height() // 2)


def test_retrain_is_disabled_and_looks_it_while_training(qtbot, train_ws):
    train_ws.command_override = FAKE + ["ok", "0.1"]
    assert background_of(train_ws.retrain_button) == QColor(ACCENT)  # enabled: the primary colour
    click(train_ws.retrain_button)
    process = train_ws.trainer._process
    assert train_ws.trainer.is_running()
    qtbot.waitUntil(lambda: bool(train_ws.loss_chart.points("training")), timeout=10_000)
    assert not train_ws.retrain_button.isEnabled()
    assert background_of(train_ws.retrain_button) != QColor(ACCENT)  # and does not look clickable
    click(train_ws.retrain_button)  # a second click starts nothing
    assert train_ws.trainer._process is process
    with qtbot.waitSignal(train_ws.trainer.finished, timeout=20_000):
        pass
    assert train_ws.retrain_button.isEnabled()


def test_starting_and_cancelling_keep_the_last_candidates_card(qtbot, train_ws):
    train_ws.command_override = FAKE + ["ok", "0.01"]
    with qtbot.waitSignal(train_ws.trainer.finished, timeout=20_000):
        click(train_ws.retrain_button)
    card = train_ws.summary
    assert card.isVisible() and card.version == "v9" and card.deploy_button.isEnabled()

    train_ws.command_override = FAKE + ["ok", "0.3"]
    click(train_ws.retrain_button)
    assert card.isVisible() and card.deploy_button.isVisible()  # starting did not remove it
    qtbot.waitUntil(lambda: bool(train_ws.loss_chart.points("training")), timeout=10_000)
    with qtbot.waitSignal(train_ws.trainer.cancelled, timeout=20_000):
        click(train_ws.cancel_button)
    qtbot.waitUntil(lambda: not train_ws.trainer.is_running(), timeout=10_000)
    assert "Cancelled" in train_ws.phase_label.text()
    assert card.isVisible() and card.version == "v9" and card.deploy_button.isEnabled()


def test_eta_says_estimating_until_it_means_something(train_ws):
    assert eta_text(0.0, 0.01) == "Estimating time left…"
    assert eta_text(300.0, 0.02) == "Estimating time left…"
    assert eta_text(0.2, 0.5) == "Estimating time left…"
    assert eta_text(130.0, 0.4) == "About 2 min 10 s left"
    assert eta_text(None, 0.4) == ""
    train_ws._on_progress({"phase": "cache", "step": 1, "steps": 10, "eta_s": 0.0})  # 1 %
    assert train_ws.eta_label.text() == "Estimating time left…"
    train_ws._on_progress({"phase": "train", "epoch": 2, "epochs": 4, "step": 1, "steps": 2, "eta_s": 65.0, "loss": 0.3})
    assert train_ws.eta_label.text() == "About 1 min 05 s left"


def test_chart_axes_whole_epochs_and_loss_from_zero(qtbot):
    chart = LineChart("Loss", x_label="epoch", integer_x=True, y_from_zero=True)
    qtbot.addWidget(chart)
    chart.add_series("training", "#000")
    for i in range(1, 68):  # 8 points per epoch, the last at epoch 8.375
        chart.add_point("training", i / 8, 0.2 + 0.5 / i)
    x0, x1, y0, y1 = chart.bounds()
    assert (x0, x1) == (0, 9) and y0 == 0.0 and y1 >= 0.7
    ticks = chart.x_ticks()
    assert ticks[0] == 0 and ticks[-1] <= 9 and all(float(t).is_integer() for t in ticks) and len(ticks) <= 9
    chart.resize(400, 240)
    chart.show()
    assert not chart.grab().isNull()  # paints with ticks without raising


@pytest.fixture
def training_window(main_window, qtbot):
    window = main_window(size=(1024, 768))
    window.show_workspace("train")
    train = window._training()
    train.command_override = FAKE + ["ok", "0.4"]
    click(train.retrain_button)
    qtbot.waitUntil(lambda: bool(train.loss_chart.points("training")), timeout=10_000)
    return window, train


def answer_close_question(monkeypatch, button) -> list[str]:
    asked: list[str] = []

    def fake_exec(box) -> int:
        asked.append(" / ".join(b.text() for b in box.buttons()))
        return int(button.value)

    monkeypatch.setattr(QMessageBox, "exec", fake_exec)
    return asked


def test_closing_during_training_asks_and_dont_close_keeps_everything(qtbot, monkeypatch, training_window):
    window, train = training_window
    asked = answer_close_question(monkeypatch, QMessageBox.StandardButton.Cancel)
    window.close()
    assert len(asked) == 1 and "Keep training in the background" in asked[0] and "Don't close" in asked[0]
    assert window.isVisible() and train.trainer.is_running()
    answer_close_question(monkeypatch, QMessageBox.StandardButton.No)  # cancel the training
    with qtbot.waitSignal(train.trainer.cancelled, timeout=20_000):
        window.close()
    assert not window.isVisible() and not train.trainer.is_running()


def test_closing_during_training_can_keep_it_running_in_the_background(qtbot, monkeypatch, training_window):
    window, train = training_window
    answer_close_question(monkeypatch, QMessageBox.StandardButton.Yes)
    quits: list[bool] = []
    monkeypatch.setattr(MainWindow, "quit_application", staticmethod(lambda: quits.append(True)))
    window.close()
    assert not window.isVisible() and train.trainer.is_running()  # hidden, still training
    with qtbot.waitSignal(train.trainer.done, timeout=30_000) as blocker:
        pass
    assert blocker.args[0]["version"] == "v9"
    qtbot.waitUntil(lambda: quits == [True], timeout=5000)  # then the app ends
    assert window.context.project is None  # shut down properly


def test_retrain_on_unchanged_labels_asks_first(qtbot, train_ws, project, monkeypatch):
    from tests.onnx_fixtures import write_model

    # The newest model was trained on exactly the labels the project holds now.
    folder = project.models_dir / "v1"
    folder.mkdir(parents=True)
    write_model(folder / "model.onnx", version="v1", threshold=0.5)
    project.register_model("v1", folder, 0.5, {"auroc": 0.9},
                           {"n_train": 5, "labeled_data_sha256": project.labeled_fingerprint()})
    asked: list[str] = []

    def question(parent, title, text, *args, **kwargs):
        asked.append(text)
        return QMessageBox.StandardButton.No

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    train_ws.command_override = FAKE + ["ok", "0.01"]
    click(train_ws.retrain_button)
    assert len(asked) == 1 and "have not changed since v1" in asked[0]
    assert not train_ws.trainer.is_running()  # "No": nothing started
    # A new label changes the data: no question, the training starts.
    add_labeled_parts(project, 1, {}, seed=99)
    click(train_ws.retrain_button)
    assert len(asked) == 1 and train_ws.trainer.is_running()
    with qtbot.waitSignal(train_ws.trainer.finished, timeout=20_000):
        pass
