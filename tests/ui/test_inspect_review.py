"""Review at the line: a row of the results log shows that part, by mouse and by keys,
while the line keeps running; "this verdict is wrong" works on the part under review."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from app.ui.inspect.inspect_panels import CorrectionDialog
from app.ui.inspect.inspect_review import PartRing, RetainedPart, retain
from app.ui.inspect.inspect_view import bgr_to_qimage, blend_heatmap
from app.ui.inspect.inspect_workspace import InspectWorkspace
from tests.ui.workspace_fixtures import app_context, project, register_fixture_model, shown  # noqa: F401  (fixtures)


@pytest.fixture
def line(qtbot, app_context, project):
    """An Inspect workspace on a 1024 x 700 screen with a model at the line (not started)."""
    register_fixture_model(project)
    project.add_class("scratch")
    app_context._set_project(project)
    ws = shown(qtbot, InspectWorkspace(app_context))
    ws.activateWindow()
    yield ws
    ws.shutdown()


def run_until(qtbot, ws, parts: int) -> None:
    if not ws.is_running():
        assert ws.start("simulated")
    qtbot.waitUntil(lambda: ws.counters.parts >= parts and ws.table_model.rowCount() >= parts, timeout=30_000)


def click_row(qtbot, ws, row: int) -> None:
    table = ws.table
    QApplication.processEvents()  # the rows just added are laid out
    table.scrollTo(ws.table_model.index(row, 0))
    rect = table.visualRect(ws.table_model.index(row, 1))
    assert table.viewport().rect().contains(rect.center()), "the row is not on screen"
    QTest.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())


def press(ws, key) -> None:
    """A key pressed on whatever has the focus, as a person would."""
    QTest.keyClick(QApplication.focusWidget() or ws, key)


def expected_image(ws, record):
    part = ws.parts.get(record.inspection_id)
    assert part is not None
    return bgr_to_qimage(blend_heatmap(part.base, part.heat01(), ws.heatmap_controls.alpha()))


def current_record(ws):
    index = ws.table.currentIndex()
    return ws.table_model.record(index.row()) if index.isValid() else None


def test_clicked_row_stays_on_screen_while_the_line_runs_then_esc_goes_back_to_live(qtbot, line, project):
    run_until(qtbot, line, 5)
    click_row(qtbot, line, 3)
    record = line.reviewing
    assert record is not None and record is current_record(line)
    assert line.review_bar.isVisible() and f"score {record.score:.3f}" in line.review_bar.label.text()
    assert line.banner.headline == record.label and f"{record.score:.2f}" in line.banner.detail
    shown_image = line.image_view.image()
    assert shown_image == expected_image(line, record)
    # The part is the one the project logged under that id, with that verdict and score.
    logged = {row["id"]: row for row in project.inspections()}
    assert logged[record.inspection_id]["verdict"] == record.label
    assert logged[record.inspection_id]["score"] == pytest.approx(record.score)

    parts = line.counters.parts
    qtbot.waitUntil(lambda: line.counters.parts >= parts + 6, timeout=30_000)  # the line goes on
    assert line.counters_panel.values["parts"].text() == str(line.counters.parts)
    assert line.reviewing is record and current_record(line) is record  # the row moved down, still selected
    assert line.image_view.image() == shown_image and line.banner.headline == record.label
    row = line.table_model.row_of(record)
    assert line.table.viewport().rect().intersects(line.table.visualRect(line.table_model.index(row, 0)))

    press(line, Qt.Key.Key_Escape)
    assert line.reviewing is None and not line.review_bar.isVisible()
    assert not line.table.selectionModel().hasSelection()
    newest = line.latest
    qtbot.waitUntil(lambda: line.latest is not newest, timeout=20_000)  # live updates again
    assert line.image_view.image() == line.latest.display
    assert line.banner.headline == line.latest.record.label


def test_back_to_live_button(qtbot, line):
    run_until(qtbot, line, 3)
    line.stop()
    click_row(qtbot, line, 2)
    assert line.reviewing is line.table_model.record(2)
    QTest.mouseClick(line.review_bar.back_button, Qt.MouseButton.LeftButton)
    assert line.reviewing is None and not line.review_bar.isVisible()
    assert line.image_view.image() == line.latest.display


def test_up_down_move_through_the_log_and_enter_opens_the_selected_part(qtbot, line):
    line.mode_combo.setCurrentIndex(1)  # trigger mode: Enter elsewhere inspects one part
    run_until(qtbot, line, 0)
    for n in range(1, 4):
        line.trigger_button.click()
        qtbot.waitUntil(lambda n=n: line.table_model.rowCount() == n, timeout=20_000)
    triggered: list[bool] = []
    for shortcut in line._trigger_shortcuts:
        shortcut.activated.connect(lambda: triggered.append(True))
    rows = [line.table_model.record(r) for r in range(3)]

    line.table.setFocus()
    qtbot.waitUntil(line.table.hasFocus, timeout=3000)
    assert line.reviewing is None  # the log has the focus; nothing is opened yet
    press(line, Qt.Key.Key_Down)
    press(line, Qt.Key.Key_Down)
    assert line.reviewing is rows[2] and line.image_view.image() == expected_image(line, rows[2])
    press(line, Qt.Key.Key_Up)
    assert line.reviewing is rows[1] and line.banner.headline == rows[1].label
    press(line, Qt.Key.Key_Up)
    assert line.reviewing is rows[0] and current_record(line) is rows[0]

    press(line, Qt.Key.Key_Escape)
    assert line.reviewing is None and line.table.hasFocus()
    press(line, Qt.Key.Key_Return)  # nothing selected any more: Enter opens the newest part
    assert line.reviewing is rows[0]
    assert triggered == []  # Enter in the log opened a part; it did not trigger an inspection
    line.stop()


def test_w_corrects_the_part_under_review_not_the_live_one(qtbot, line, project):
    run_until(qtbot, line, 4)
    line.stop()
    click_row(qtbot, line, 3)
    record = line.reviewing
    part = line.parts.get(record.inspection_id)
    assert record is not line.latest.record and line.wrong_button.isEnabled()
    said: list[str] = []

    def answer() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, CorrectionDialog):
            QTimer.singleShot(20, answer)
            return
        said.append(dialog.findChildren(type(line.review_bar.label))[0].text())
        QTest.mouseClick(dialog.buttons["scratch"], Qt.MouseButton.LeftButton)

    QTimer.singleShot(0, answer)
    before = len(project.images())
    with qtbot.waitSignal(line.context.labels_changed, timeout=10_000) as blocker:
        press(line, Qt.Key.Key_W)
    image_id = blocker.args[0]
    expected_said = "PASS" if record.label == "PASS" else f"FAIL ({record.defect_class})"
    assert said and f"<b>{expected_said}</b>" in said[0]
    assert len(project.images()) == before + 1 and project.label(image_id).verdict == "scratch"
    assert np.array_equal(project.load_image(image_id), part.image)
    assert not np.array_equal(project.load_image(image_id), line.latest.image)
    assert line.reviewing is record  # still reviewing it
    assert not line.wrong_button.isEnabled()  # one correction per part
    click_row(qtbot, line, 2)
    assert line.wrong_button.isEnabled()  # another part can be corrected


def test_a_part_whose_image_is_gone_says_image_not_kept(qtbot, line, project):
    line.parts.max_parts = 3
    run_until(qtbot, line, 6)
    line.stop()
    oldest = line.table_model.rowCount() - 1
    click_row(qtbot, line, oldest)
    record = line.reviewing
    assert record is line.table_model.record(oldest) and record.inspection_id not in line.parts
    assert line.image_view.image() is None
    assert line.image_view.placeholder().startswith("Image not kept")
    assert "(image not kept)" in line.review_bar.label.text()
    assert line.banner.headline == record.label  # the verdict and score are still shown
    assert not line.wrong_button.isEnabled()
    before = len(project.images())
    opened: list = []
    QTimer.singleShot(0, lambda: opened.append(QApplication.activeModalWidget()))
    press(line, Qt.Key.Key_W)  # nothing to store: no dialog, no image
    qtbot.waitUntil(lambda: bool(opened), timeout=3000)
    assert opened == [None] and len(project.images()) == before
    click_row(qtbot, line, 0)
    assert line.image_view.image() == expected_image(line, line.reviewing)


def test_a_part_scrolled_out_of_the_log_stays_on_screen(qtbot, line, monkeypatch):
    import app.ui.inspect.inspect_log as inspect_log
    import app.ui.inspect.inspect_workspace as inspect_workspace

    monkeypatch.setattr(inspect_log, "MAX_TABLE_ROWS", 5)
    monkeypatch.setattr(inspect_workspace, "MAX_TABLE_ROWS", 5)
    run_until(qtbot, line, 5)
    click_row(qtbot, line, 4)
    record, image = line.reviewing, line.image_view.image()
    qtbot.waitUntil(lambda: line.table_model.row_of(record) is None, timeout=30_000)
    assert line.table_model.rowCount() == 5
    assert line.reviewing is record and line.image_view.image() == image
    assert not line.table.selectionModel().hasSelection()
    line.stop()


def test_heatmap_opacity_reblends_the_part_under_review(qtbot, line):
    run_until(qtbot, line, 3)
    line.stop()
    click_row(qtbot, line, 1)
    record = line.reviewing
    part = line.parts.get(record.inspection_id)
    line.heatmap_controls.slider.setValue(0)
    assert line.image_view.image() == bgr_to_qimage(part.base)
    line.heatmap_controls.slider.setValue(90)
    assert line.reviewing is record and line.image_view.image() == expected_image(line, record)


def test_part_ring_is_bounded_by_count_and_bytes_newest_kept():
    def part(side: int) -> RetainedPart:
        image = np.zeros((side, side, 3), np.uint8)
        return retain(image, image, np.zeros((side, side), np.float32))

    ring = PartRing(max_parts=3, max_bytes=10**9)  # 400 bytes a part
    for key in range(1, 6):
        ring.put(key, part(10))
    assert len(ring) == 3 and 1 not in ring and 2 not in ring and ring.get(5) is not None
    assert ring.nbytes == 3 * (300 + 100)
    small = PartRing(max_parts=100, max_bytes=700)
    small.put(1, part(10))
    small.put(2, part(10))
    assert 1 not in small and 2 in small  # 800 bytes would not fit: the older went
    small.put(3, part(20))  # over budget on its own: still kept, alone
    assert len(small) == 1 and small.get(3) is not None
    small.clear()
    assert len(small) == 0 and small.nbytes == 0 and small.get(None) is None
