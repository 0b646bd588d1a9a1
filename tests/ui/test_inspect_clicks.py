"""Inspect driven by real mouse clicks and keys, with the app's stylesheet on.

Calling a slot directly hides what the button passes it: clicked(bool) handed False to
export_log(path=None) and correct_current(verdict=None). These tests click.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QFileDialog

from app.core.project import Project
from app.ui.inspect.inspect_panels import CorrectionDialog
from app.ui.inspect.inspect_view import bgr_to_qimage
from app.ui.inspect.inspect_workspace import InspectWorkspace
from tests.ui.workspace_fixtures import app_context, project, register_fixture_model, shown  # noqa: F401  (fixtures)


@pytest.fixture
def inspected(qtbot, app_context, project):
    """An Inspect workspace that has judged a few simulated parts and stopped."""
    register_fixture_model(project)
    project.add_class("scratch")
    app_context._set_project(project)
    ws = shown(qtbot, InspectWorkspace(app_context))
    assert ws.start("simulated")
    try:
        qtbot.waitUntil(lambda: ws.counters.parts >= 3 and ws.latest is not None, timeout=20_000)
    finally:
        ws.stop()
    yield ws
    ws.shutdown()


def click(widget) -> None:
    assert widget.isVisible() and widget.isEnabled(), f"{widget.text()} cannot be clicked"
    QTest.mouseClick(widget, Qt.MouseButton.LeftButton)


def test_export_csv_button_asks_where_and_writes_the_log(inspected, tmp_path, monkeypatch):
    target = tmp_path / "exports" / "shift.csv"
    asked: list[str] = []

    def fake_dialog(parent, title, start, filters, *args, **kwargs):
        asked.append(title)
        return str(target), filters

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(fake_dialog))
    click(inspected.export_button)
    assert asked == ["Export the log"]
    rows = list(csv.DictReader(target.open()))
    assert len(rows) == inspected.counters.parts >= 3
    assert {r["verdict"] for r in rows} <= {"PASS", "FAIL"}


def answer_correction_dialog(qtbot, choice: str, seen: list) -> None:
    """When the correction dialog is up, note its choices and click *choice* with the mouse."""

    def attempt() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, CorrectionDialog):
            QTimer.singleShot(20, attempt)
            return
        seen.append(sorted(dialog.buttons))
        QTest.mouseClick(dialog.buttons[choice], Qt.MouseButton.LeftButton)

    QTimer.singleShot(0, attempt)


def test_wrong_verdict_button_asks_for_the_right_label_and_stores_it(qtbot, inspected, project):
    before = len(project.images())
    seen: list = []
    answer_correction_dialog(qtbot, "scratch", seen)
    with qtbot.waitSignal(inspected.context.labels_changed, timeout=10_000) as blocker:
        click(inspected.wrong_button)
    assert seen == [["ok", "scratch"]]  # the dialog offered OK and every class
    image_id = blocker.args[0]
    assert len(project.images()) == before + 1
    assert project.label(image_id).verdict == "scratch"
    assert np.array_equal(project.load_image(image_id), inspected.latest.image)
    assert not inspected.wrong_button.isEnabled()  # one correction per part


def test_wrong_verdict_ok_choice_is_stored_as_ok(qtbot, inspected, project):
    seen: list = []
    answer_correction_dialog(qtbot, "ok", seen)
    with qtbot.waitSignal(inspected.context.labels_changed, timeout=10_000) as blocker:
        click(inspected.wrong_button)
    assert project.label(blocker.args[0]).verdict == "ok"


def test_reset_counters_button(inspected):
    click(inspected.reset_button)
    assert inspected.counters.parts == 0 and inspected.table_model.rowCount() == 0


def test_reopening_a_project_clears_the_last_verdict_and_image(inspected, app_context, tmp_path):
    assert inspected.banner.headline in ("PASS", "FAIL") and inspected.image_view.image() is not None
    Project.create(tmp_path / "other").close()
    app_context.open_project(tmp_path / "other")
    assert inspected.latest is None
    assert inspected.banner.headline == "READY"
    assert inspected.image_view.image() is None
    assert not inspected.wrong_button.isEnabled()


def test_heatmap_opacity_slider_and_h_key(qtbot, inspected):
    controls, live = inspected.heatmap_controls, inspected.latest
    assert live.base is not None and live.heat is not None
    controls.slider.setValue(100)
    strong = inspected.image_view.image()
    assert strong == live.display
    controls.slider.setValue(0)
    assert inspected.image_view.image() == bgr_to_qimage(live.base)  # opacity 0: the bare part
    controls.slider.setValue(80)
    assert inspected.context.settings.value("inspect/heatmap_opacity") in (80, "80")

    inspected.activateWindow()
    inspected.image_view.setFocus()
    qtbot.keyClick(inspected.image_view, Qt.Key.Key_H)  # off
    assert not controls.toggle_box.isChecked() and controls.alpha() == 0.0
    assert inspected.image_view.image() == bgr_to_qimage(live.base)
    assert not controls.slider.isEnabled()
    qtbot.keyClick(inspected.image_view, Qt.Key.Key_H)  # on again, at the same opacity
    assert controls.toggle_box.isChecked() and controls.alpha() == pytest.approx(0.8)
    assert inspected.image_view.image() != bgr_to_qimage(live.base)
