"""Findings of the review in a real window, each driven as a user would: keys and clicks."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

import app.ui.capture.capture_controls as capture_controls
from app.ui.models.models_workspace import ModelsWorkspace
from tests.ui.workspace_fixtures import answer_yes, app_context, project, register_fixture_model, shown  # noqa: F401


@pytest.fixture
def models_ws(qtbot, app_context, project):
    for version in ("v1", "v2", "v3"):
        register_fixture_model(project, version, deploy=False)
    project.deploy("v2")
    app_context._set_project(project)
    ws = shown(qtbot, ModelsWorkspace(app_context))
    return ws


def test_tab_in_the_models_table_does_not_change_what_gets_deployed(qtbot, models_ws, project, answer_yes):
    models_ws.select_version("v3")
    models_ws.activateWindow()
    models_ws.table.setFocus()
    for modifier in (Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.ControlModifier):
        QTest.keyClick(models_ws.table, Qt.Key.Key_Tab, modifier)
        assert models_ws.selected().version == "v3"
    QTest.keyClick(models_ws.table, Qt.Key.Key_Backtab, Qt.KeyboardModifier.ShiftModifier)
    assert models_ws.selected().version == "v3"
    assert models_ws.deploy_button.text() == "Set v3 as production"  # says what it deploys
    QTest.mouseClick(models_ws.deploy_button, Qt.MouseButton.LeftButton)
    assert project.production_model().version == "v3"


def test_rollback_button_click(qtbot, models_ws, project, answer_yes):
    project.deploy("v3")  # v2 retired
    models_ws.refresh()
    assert models_ws.rollback_button.text() == "Roll back to v2"
    QTest.mouseClick(models_ws.rollback_button, Qt.MouseButton.LeftButton)
    assert project.production_model().version == "v2"


def test_capture_key_field_refuses_a_labeling_key(main_window, qtbot):
    window = main_window()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=3000)
    capture = window.capture
    for key, text in ((Qt.Key.Key_0, "0"), (Qt.Key.Key_G, "G"), (Qt.Key.Key_Left, "Left")):
        QTest.mouseClick(capture.key_edit, Qt.MouseButton.LeftButton)
        assert capture.key_edit.hasFocus()
        QTest.keyClick(capture.key_edit, key)
        qtbot.waitUntil(lambda: capture.key_message.isVisible(), timeout=3000)
        assert text in capture.key_message.text() and "Space" in capture.key_message.text()
        assert capture.capture_key_text() == "Space"
        assert capture.capture_shortcut.key().toString() == "Space"
        assert capture.key_edit.keySequence().toString() == "Space"
        capture.key_message.hide()
    # A key nothing else uses is taken, and the message goes.
    QTest.mouseClick(capture.key_edit, Qt.MouseButton.LeftButton)
    QTest.keyClick(capture.key_edit, Qt.Key.Key_PageDown)
    qtbot.waitUntil(lambda: capture.capture_key_text() == "PgDown", timeout=3000)
    assert not capture.key_message.isVisible()


def test_no_camera_found_is_not_shown_while_the_simulated_line_runs(main_window, qtbot, monkeypatch):
    monkeypatch.setattr(capture_controls, "probe_cameras", lambda **_k: [])
    window = main_window()
    panel = window.capture.camera_panel
    QTest.mouseClick(panel.find_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "No camera found" in panel.support_note.text(), timeout=5000)
    assert panel.source_box.currentData() == "sim"
    QTest.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.camera_label.text() == "Camera: connected: Simulated line", timeout=5000)
    assert "No camera" not in panel.support_note.text()
    QTest.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)  # Stop
    qtbot.waitUntil(lambda: window.context.capture_thread is None, timeout=5000)


def test_window_title_names_lineside_once(main_window):
    window = main_window(open_project=False)
    display = QApplication.applicationDisplayName()
    assert window.windowTitle() == display
    window.create_project(str(window.context.settings.fileName()).rsplit("/", 1)[0] + "/press 7")
    # Qt appends the display name unless the title ends with it.
    assert window.windowTitle() == f"press 7 — {display}"
    assert window.windowTitle().count("Lineside") == 1
