"""The Plant workspace in the real window, with the app's stylesheet, through real clicks.

Stations are simulated by calling `stations.register` and `stations.heartbeat` as
`lineside run --station` does, on a clock the test moves (`stations._now`), so a station
whose heartbeat stops turns offline without the test waiting ten seconds. The golden
line comes from tests/test_stations.py: v1 in production, v2 as good, v3 refused by the
deploy gate.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QWidget

from app.core import audit, stations
from app.ui.plant.station_table import COLUMNS
from app.ui.shared.style import FAIL, PASS, WARN
from tests.test_stations import ENG_PIN, OP_PIN, REASON, golden_line, pins, sha, staff
from tests.ui.test_small_screen import INTERACTIVE, SCREEN, unreachable_controls

REFRESH_WAIT_MS = 6000  # the view reads every 2 s


def click(widget) -> None:
    assert widget.isVisible(), f"{widget.text() if hasattr(widget, 'text') else widget} is not on screen"
    QTest.mouseClick(widget, Qt.MouseButton.LeftButton)


@pytest.fixture
def clock(monkeypatch):
    """The stations' clock (heartbeats and the view's "now"), moved by the test."""
    now = [stations._now()]
    monkeypatch.setattr(stations, "_now", lambda: now[0])
    return now


def beat(project, name: str, **values) -> None:
    values.setdefault("model_version", "v1")
    values.setdefault("model_sha", sha(project, values["model_version"]))
    stations.heartbeat(project, name, state=values.pop("state", "running"), **values)


@pytest.fixture
def plant(main_window, clock):
    """The window on the golden line, with A1 running, A2 warning of drift, B1 and B2 running."""
    window = main_window()
    project = window.context.project
    golden_line(project)
    for name, line in (("A1", "Line A"), ("A2", "Line A"), ("B1", "Line B"), ("B2", "Line B")):
        stations.register(project, name, line, host=f"pc-{name.lower()}")
    beat(project, "A1", parts_today=400, fails_today=8)
    beat(project, "A2", parts_today=300, fails_today=30, drift="brightness +14% since training")
    beat(project, "B1", parts_today=250)
    beat(project, "B2", parts_today=10)
    window.context.models_changed.emit()
    return window


def show_plant(window, qtbot):
    with qtbot.waitSignal(window.workspaces[4].refreshed, timeout=REFRESH_WAIT_MS):
        window.show_workspace("Plant")
    return window.workspaces[4]


def cells(workspace, title: str, role=Qt.ItemDataRole.DisplayRole) -> dict:
    """Station -> the cell under the column *title*."""
    model, column = workspace.table_model, COLUMNS.index(title)
    return {model.data(model.index(r, 0)): model.data(model.index(r, column), role) for r in range(model.rowCount())}


def test_the_table_shows_each_station_its_state_in_colour(plant, qtbot):
    assert plant.tabs.tabText(4) == "Plant"
    view = show_plant(plant, qtbot)
    assert view.stack.currentWidget() is view.table
    assert cells(view, "State") == {"A1": "running", "A2": "drift warning", "B1": "running", "B2": "running"}
    colours = cells(view, "State", Qt.ItemDataRole.BackgroundRole)
    assert colours["A1"] == QColor(PASS) and colours["A2"] == QColor(WARN)
    assert cells(view, "Host") == {"A1": "pc-a1", "A2": "pc-a2", "B1": "pc-b1", "B2": "pc-b2"}
    assert cells(view, "Yield\ntoday")["A1"] == "98.0%" and cells(view, "Yield\ntoday")["A2"] == "90.0%"
    assert "brightness +14%" in cells(view, "Drift / message")["A2"]
    assert view.chip_texts() == ["Line A: v1 on 2 of 2 stations · production",
                                 "Line B: v1 on 2 of 2 stations · production"]
    assert "4 stations, 4 online" in view.summary.text() and "project.db on this PC" in view.footer.text()


def test_a_station_whose_heartbeat_stops_turns_offline(plant, qtbot, clock):
    view = show_plant(plant, qtbot)
    project = plant.context.project
    view.table.selectRow(2)  # B1: the selection survives the refreshes
    clock[0] += timedelta(seconds=stations.OFFLINE_AFTER_S + 5)
    for name in ("A1", "B2"):  # B1 says nothing any more
        beat(project, name)
    beat(project, "A2", drift="brightness +14% since training")
    # The timer's refresh, not one the test asked for.
    qtbot.waitUntil(lambda: cells(view, "State")["B1"] == "offline", timeout=REFRESH_WAIT_MS)
    assert cells(view, "State") == {"A1": "running", "A2": "drift warning", "B1": "offline", "B2": "running"}
    assert cells(view, "State", Qt.ItemDataRole.BackgroundRole)["B1"] == QColor(FAIL)
    assert cells(view, "Last seen")["B1"] == "15 s ago" and view.selected_station() == "B1"
    assert "4 stations, 3 online" in view.summary.text()


def deploy_by_dialog(view, qtbot, line: str, version: str):
    click(view.deploy_button)
    dialog = view.deploy_dialog
    assert dialog.isVisible() and dialog.chosen_line() == "Line B"  # the selected station's line
    dialog.line_box.setEditText(line)
    dialog.version_box.setCurrentIndex(dialog.version_box.findData(version))
    assert dialog.deploy_button.text() == f"Deploy {version} to {line}"
    click(dialog.deploy_button)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=10000)
    return dialog


def test_an_engineer_deploys_to_one_line(plant, qtbot):
    project = plant.context.project
    staff(project)
    plant.context.sign_in("Erin", ENG_PIN)
    view = show_plant(plant, qtbot)
    qtbot.waitUntil(lambda: view.deploy_button.isEnabled(), timeout=REFRESH_WAIT_MS)
    view.table.selectRow(3)
    deploy_by_dialog(view, qtbot, "Line B", "v2")
    assert pins(project) == {"": "v1", "Line B": "v2"} and project.production_model().version == "v1"
    deployed = audit.entries(project, action=audit.DEPLOY)[-1]
    assert deployed.actor == "Erin" and deployed.what["line"] == "Line B"
    qtbot.waitUntil(lambda: "Line B: v2 on 0 of 2 stations · pinned" in view.chip_texts(), timeout=REFRESH_WAIT_MS)
    assert cells(view, "Model")["B1"] == "v1 → v2 rolling out" and cells(view, "Model")["A1"] == "v1"
    beat(project, "B1", model_version="v2")  # the station loaded it
    qtbot.waitUntil(lambda: "Line B: v2 on 1 of 2 stations · pinned" in view.chip_texts(), timeout=REFRESH_WAIT_MS)


def test_a_gate_refusal_for_a_line_and_the_engineers_override(plant, qtbot):
    project = plant.context.project
    staff(project)
    plant.context.sign_in("Erin", ENG_PIN)
    view = show_plant(plant, qtbot)
    qtbot.waitUntil(lambda: view.deploy_button.isEnabled(), timeout=REFRESH_WAIT_MS)
    view.table.selectRow(2)
    dialog = deploy_by_dialog(view, qtbot, "Line B", "v3")
    refusal = dialog.gate_dialog
    assert refusal is not None and refusal.isVisible() and "Line B" in refusal.windowTitle()
    assert pins(project) == {"": "v1"}
    click(refusal.override_button)
    QTest.keyClicks(refusal.reason_edit, REASON)
    assert refusal.confirm_button.text() == "Deploy v3 to Line B anyway"
    click(refusal.confirm_button)
    assert pins(project) == {"": "v1", "Line B": "v3"} and not refusal.isVisible()
    assert audit.entries(project, action=audit.GATE_OVERRIDE)[-1].what["reason"] == REASON

    qtbot.waitUntil(lambda: "Line B: v3 on 0 of 2 stations · pinned" in view.chip_texts(), timeout=REFRESH_WAIT_MS)
    click(view.deploy_button)  # and back: the line follows production again
    assert view.deploy_dialog.follow_button.isEnabled()
    click(view.deploy_dialog.follow_button)
    qtbot.waitUntil(lambda: pins(project) == {"": "v1"}, timeout=10000)


def test_an_operator_sees_deploy_to_line_greyed(plant, qtbot):
    staff(plant.context.project)
    plant.context.sign_in("Olaf", OP_PIN)
    view = show_plant(plant, qtbot)
    qtbot.waitUntil(lambda: not view.deploy_button.isEnabled(), timeout=REFRESH_WAIT_MS)
    assert "needs an engineer" in view.deploy_button.toolTip()
    QTest.mouseClick(view.deploy_button, Qt.MouseButton.LeftButton)
    assert view.deploy_dialog is None  # nothing opened
    plant.context.sign_out()  # nobody signed in: still refused, now saying so
    qtbot.waitUntil(lambda: "nobody is signed in" in view.deploy_button.toolTip(), timeout=REFRESH_WAIT_MS)
    assert not view.deploy_button.isEnabled()


def test_a_single_pc_project_says_how_a_station_joins(main_window, qtbot):
    window = main_window()
    view = show_plant(window, qtbot)
    assert view.stack.currentWidget() is view.empty and view.empty.isVisible()
    text = view.empty.text()
    assert "No station has reported" in text and "--station NAME --line LINE" in text and "project.db" in text
    assert not view.deploy_button.isEnabled() and "No trained model" in view.deploy_button.toolTip()
    assert view.chip_texts() == []


def test_the_plant_view_fits_1024_by_768(plant, qtbot):
    plant.resize(*SCREEN)
    view = show_plant(plant, qtbot)
    qtbot.wait(50)
    assert (plant.width(), plant.height()) == SCREEN
    checked = [w for w in view.findChildren(QWidget) if isinstance(w, INTERACTIVE) and w.isVisible()]
    assert len(checked) >= 2
    assert unreachable_controls(plant) == []
    assert view.table.viewport().height() >= 4 * 44  # all four stations in sight
