"""Several views of one part in Inspect: set up in the Views dialog, side by side on
screen, one trigger captures them all, the banner names the view that failed, and the
station opens again with its views."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

import app.core.camera as camera_module
import app.ui.inspect.inspect_station as inspect_station
from app.core.frames import Frame
from app.ui.inspect.inspect_views import VIEWS_SETTING, load_views
from app.ui.inspect.inspect_views_dialog import ViewsDialog
from app.ui.inspect.inspect_workspace import InspectWorkspace
from tests.ui.workspace_fixtures import app_context, project, register_fixture_model, shown  # noqa: F401  (fixtures)

# The fixture model's score is the part's brightness (threshold 0.45): see tests/onnx_fixtures.py.
DARK = np.full((48, 64, 3), 30, np.uint8)  # score 0.12: PASS
BRIGHT_BLUE = np.zeros((48, 64, 3), np.uint8)
BRIGHT_BLUE[..., 0] = 255
BRIGHT_BLUE[..., 1:] = 120  # score ~0.65: FAIL, class 1 (scratch)


class FixedCamera:
    """A camera that always sees the same part (a good one, or one with a defect)."""

    none_means_lost = True

    def __init__(self, image: np.ndarray, name: str) -> None:
        self.image, self.name = image, name
        self.count = 0
        self._closed = threading.Event()

    def open(self) -> None:
        self._closed.clear()

    def read(self) -> Frame | None:
        self._closed.wait(0.03)  # about 30 frames a second
        self.count += 1
        return Frame(self.image.copy(), self.count, time.time(), self.name)

    def close(self) -> None:
        self._closed.set()


def click(widget) -> None:
    assert widget.isVisible() and widget.isEnabled(), f"{widget} cannot be clicked"
    QTest.mouseClick(widget, Qt.MouseButton.LeftButton)


def type_into(line_edit, text: str) -> None:
    line_edit.selectAll()
    QTest.keyClicks(line_edit, text)


@pytest.fixture
def workspace(qtbot, app_context, project):
    register_fixture_model(project)
    project.add_class("scratch")
    app_context._set_project(project)
    made = []

    def make() -> InspectWorkspace:
        made.append(shown(qtbot, InspectWorkspace(app_context)))
        return made[-1]

    yield make
    for ws in made:
        ws.shutdown()
        assert not ws.is_running()


def open_views_dialog(qtbot, ws) -> ViewsDialog:
    click(ws.station.views_button)
    qtbot.waitUntil(lambda: ws.station.views_dialog is not None and ws.station.views_dialog.isVisible(), timeout=5000)
    return ws.station.views_dialog


def test_two_views_one_trigger_the_failing_view_is_named(qtbot, workspace, project, monkeypatch):
    # View 1's simulated line makes good parts, view 2's a part with a defect.
    monkeypatch.setattr(camera_module, "SimulatedCamera", lambda seed=0, **_kw: FixedCamera(DARK, "Simulated line"))
    monkeypatch.setattr(inspect_station, "make_view_source",
                        lambda spec, index, seed=None: FixedCamera(BRIGHT_BLUE, f"Simulated line {index + 1}"))
    ws = workspace()
    assert ws.view_grid.count == 1 and not ws.view_grid.tiles[0].tag.isVisible()  # one view: as it always was

    dialog = open_views_dialog(qtbot, ws)
    click(dialog.add_button)
    assert len(dialog.rows) == 2 and dialog.rows[1].kind() == "simulated"
    type_into(dialog.rows[0].name_edit, "Top")
    type_into(dialog.rows[1].name_edit, "Side")
    click(dialog.ok_button)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=5000)
    stored = project.get_setting(VIEWS_SETTING)
    assert [(v["name"], v["kind"]) for v in stored] == [("Top", "simulated"), ("Side", "simulated")]

    top, side = ws.view_grid.tiles
    assert top.isVisible() and side.isVisible() and top.tag.isVisible() and side.tag.isVisible()
    qtbot.waitUntil(lambda: side.x() > top.x() + top.width() // 2 and side.y() == top.y(), timeout=5000)  # side by side

    ws.mode_combo.setCurrentIndex(1)  # "On trigger key"
    click(ws.start_button)
    qtbot.waitUntil(lambda: ws.worker is not None and ws.worker.session.ready, timeout=20_000)
    assert ws.counters.parts == 0  # nothing is judged without a trigger
    click(ws.trigger_button)
    qtbot.waitUntil(lambda: ws.counters.parts == 1 and ws.latest is not None, timeout=20_000)

    record = ws.latest.record
    assert [(v.name, v.label) for v in record.views] == [("Top", "PASS"), ("Side", "FAIL")]
    assert record.label == "FAIL" and record.defect_class == "scratch"
    assert ws.banner.headline == "FAIL" and "SIDE" in ws.banner.detail and "TOP" not in ws.banner.detail
    assert top.tag.text().startswith("Top · PASS") and side.tag.text().startswith("Side · FAIL scratch")
    assert all(image is not None and not image.isNull() for image in ws.view_grid.images())
    assert top.image_view.image() is ws.image_view.image()  # view 1 is the workspace's image view
    # The failing view is the one selected: "this verdict is wrong" would save its image.
    assert ws.view_grid.selected == 1 and np.array_equal(ws._part_on_screen()[1], BRIGHT_BLUE)
    QTest.mouseClick(top.image_view, Qt.MouseButton.LeftButton)
    assert ws.view_grid.selected == 0 and np.array_equal(ws._part_on_screen()[1], DARK)

    click(ws.start_button)  # Stop
    assert not ws.is_running() and ws.counters.parts == 1  # one trigger, one part, two views
    rows = project.inspections()
    assert len(rows) == 1 and rows[0]["verdict"] == "FAIL"

    again = workspace()  # the station opens again with its views
    assert again.view_grid.count == 2 and again.station.names == ["Top", "Side"]


def test_four_simulated_views_in_a_grid_each_tagged_with_its_own_verdict(qtbot, workspace, project):
    project.set_setting(VIEWS_SETTING, [{"name": f"Cam {i}", "kind": "simulated"} for i in "ABCD"])
    ws = workspace()
    tiles = ws.view_grid.tiles
    assert len(tiles) == 4 and all(tile.isVisible() for tile in tiles)
    qtbot.waitUntil(lambda: tiles[0].y() == tiles[1].y() < tiles[2].y() == tiles[3].y()  # 2 x 2
                    and tiles[0].x() == tiles[2].x() < tiles[1].x() == tiles[3].x(), timeout=5000)
    assert ws.start("simulated")
    try:
        qtbot.waitUntil(lambda: ws.counters.parts >= 4 and ws.latest is not None
                        and ws.latest.record.inspection_id is not None, timeout=30_000)
    finally:
        ws.stop()
    record = ws.latest.record
    assert [v.name for v in record.views] == ["Cam A", "Cam B", "Cam C", "Cam D"]
    assert record.label == ("FAIL" if any(v.label == "FAIL" for v in record.views) else "PASS")
    assert record.score == pytest.approx(max(v.score for v in record.views))
    for tile, outcome in zip(tiles, record.views):
        assert tile.tag.text().startswith(f"{outcome.name} · {outcome.label}")
    for name in record.failed_views:
        assert name.upper() in ws.banner.detail
    # Review a past part: all four of its views come back from memory.
    ws.review(ws.table_model.record(1))
    part = ws.parts.get(ws.reviewing.inspection_id)
    assert part is not None and part.view_count == 4
    assert all(image is not None for image in ws.view_grid.images())
    assert [t.tag.text().split(" · ")[0] for t in tiles] == ["Cam A", "Cam B", "Cam C", "Cam D"]


def test_views_dialog_refuses_what_cannot_run_and_stops_at_four(qtbot, workspace, project):
    ws = workspace()
    dialog = open_views_dialog(qtbot, ws)
    for _ in range(3):
        click(dialog.add_button)
    assert len(dialog.rows) == 4 and not dialog.add_button.isEnabled()
    type_into(dialog.rows[3].name_edit, "View 1")
    click(dialog.ok_button)
    assert dialog.isVisible() and "own name" in dialog.problem.text()
    type_into(dialog.rows[3].name_edit, "Back")
    for row in dialog.rows[2:]:
        row.kind_combo.setCurrentIndex(row.kind_combo.findData("camera"))
        row.camera_spin.setValue(3)
    click(dialog.ok_button)
    assert dialog.isVisible() and "same camera 3" in dialog.problem.text()
    click(dialog.rows[3].remove_button)
    click(dialog.rows[2].remove_button)
    assert dialog.add_button.isEnabled()
    click(dialog.ok_button)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=5000)
    assert [v.name for v in load_views(project)] == ["View 1", "View 2"]
    assert ws.view_grid.count == 2
    # The Source picker is view 1's source, and the station keeps it too.
    ws.source_combo.setCurrentIndex(ws.source_combo.findData("camera"))
    assert [v.kind for v in load_views(project)] == ["camera", "simulated"]
    assert workspace().source_combo.currentData() == "camera"
