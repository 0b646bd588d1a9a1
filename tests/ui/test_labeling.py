"""Keyboard labeling and mask painting, checked against the project database."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from app.core.project import Project
from app.core.synthetic import generate_part


@pytest.fixture
def labeled_window(main_window, tmp_path):
    """A window on a project with 4 generated parts and classes scratch (1), dent (2)."""
    path = tmp_path / "labels"
    project = Project.create(path)
    rng = np.random.default_rng(3)
    for defect in (None, "scratch", None, "scratch"):
        image, _mask = generate_part(rng, defect, size=160)
        project.add_image_array(image, source="test")
    project.add_class("scratch", "#ff0000")
    project.add_class("dent")
    project.close()
    window = main_window(project_path=path)
    workspace = window.capture
    labeling = workspace.labeling
    labeling.advance_after_ok = True
    labeling.select(1)
    workspace.setFocus()
    return window, workspace, labeling


def current_verdict(project: Project, image_id: int) -> str | None:
    label = project.label(image_id)
    return label.verdict if label else None


def press(qtbot, widget, key, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    qtbot.keyClick(widget, key, modifier)


def test_keys_label_move_and_undo(labeled_window, qtbot):
    window, workspace, labeling = labeled_window
    project = window.context.project
    assert labeling.image_id == 1

    press(qtbot, workspace, Qt.Key.Key_0)  # OK, saved, and on to the next image
    assert current_verdict(project, 1) == "ok"
    assert labeling.image_id == 2
    assert "Saved" in labeling.saved.text()

    press(qtbot, workspace, Qt.Key.Key_1)  # scratch, stays to paint
    assert current_verdict(project, 2) == "scratch"
    assert labeling.image_id == 2

    press(qtbot, workspace, Qt.Key.Key_Right)
    assert labeling.image_id == 3
    press(qtbot, workspace, Qt.Key.Key_G)  # G is OK too
    assert current_verdict(project, 3) == "ok"
    assert labeling.image_id == 4

    press(qtbot, workspace, Qt.Key.Key_Left)
    press(qtbot, workspace, Qt.Key.Key_Left)
    assert labeling.image_id == 2
    press(qtbot, workspace, Qt.Key.Key_2)  # relabel scratch -> dent
    assert current_verdict(project, 2) == "dent"

    press(qtbot, workspace, Qt.Key.Key_9)  # no class on 9: nothing changes
    assert current_verdict(project, 2) == "dent"

    # Ctrl+Z walks back through the changes in order, across images.
    press(qtbot, workspace, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert current_verdict(project, 2) == "scratch"
    press(qtbot, workspace, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert current_verdict(project, 3) is None
    assert labeling.image_id == 3
    assert "Undone" in labeling.saved.text()
    press(qtbot, workspace, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert current_verdict(project, 2) is None
    assert current_verdict(project, 1) == "ok"

    # The filmstrip shows the state of the database.
    assert labeling.filmstrip._verdicts[1] == "ok"
    assert labeling.filmstrip._verdicts[2] is None


def _canvas_point(canvas, x: float, y: float) -> QPoint:
    p = canvas.to_widget(x, y)
    return QPoint(round(p.x()), round(p.y()))


def test_brush_stroke_saves_a_mask_with_the_class(labeled_window, qtbot):
    window, workspace, labeling = labeled_window
    project = window.context.project
    canvas = labeling.canvas
    labeling.select(2)
    press(qtbot, workspace, Qt.Key.Key_1)  # scratch
    labeling.set_tool("brush")
    canvas.set_brush_radius(6)

    start, end = _canvas_point(canvas, 40, 80), _canvas_point(canvas, 120, 80)
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=start)
    for t in np.linspace(0, 1, 8):
        qtbot.mouseMove(canvas, QPoint(round(start.x() + t * (end.x() - start.x())), start.y()))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=end)

    label = project.label(2)
    assert label.verdict == "scratch" and label.mask_path is not None
    mask = project.load_mask(label)
    assert mask.shape == (160, 160)
    assert mask[80, 80] == 255 and mask[80, 45] == 255 and mask[80, 115] == 255
    assert mask[20, 80] == 0 and mask[140, 80] == 0
    painted = int((mask > 0).sum())
    assert 80 * 8 < painted < 100 * 16  # a band about 80 x 12 px

    # The eraser takes part of it away; saved as a new label, the old one in history.
    labeling.set_tool("eraser")
    middle = _canvas_point(canvas, 80, 80)
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=middle)
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=middle)
    erased = project.load_mask(project.label(2))
    assert erased[80, 80] == 0 and erased[80, 45] == 255
    assert len(project.label_history(2)) == 3

    # Undo restores the stroke's mask.
    press(qtbot, workspace, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    restored = project.load_mask(project.label(2))
    assert restored[80, 80] == 255
    assert labeling.canvas.mask[80, 80] == 255


def test_painting_an_unlabeled_image_labels_it_with_the_active_class(labeled_window, qtbot):
    window, workspace, labeling = labeled_window
    project = window.context.project
    labeling.select(4)
    labeling.paint_class = "dent"
    canvas = labeling.canvas
    point = _canvas_point(canvas, 50, 50)
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=point)
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=point)
    label = project.label(4)
    assert label.verdict == "dent"
    assert project.load_mask(label)[50, 50] == 255


def test_polygon_fills_the_region(labeled_window, qtbot):
    window, workspace, labeling = labeled_window
    project = window.context.project
    canvas = labeling.canvas
    labeling.select(3)
    press(qtbot, workspace, Qt.Key.Key_2)  # dent
    press(qtbot, workspace, Qt.Key.Key_P)
    assert canvas.tool == "polygon"
    corners = [(30, 30), (110, 30), (110, 90), (30, 90)]
    for x, y in corners:
        qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=_canvas_point(canvas, x, y))
    assert project.label(3).mask_path is None  # not closed yet: nothing saved
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=_canvas_point(canvas, 30, 30))  # back to the start
    label = project.label(3)
    assert label.verdict == "dent"
    mask = project.load_mask(label)
    assert mask[60, 70] == 255
    assert mask[10, 70] == 0 and mask[60, 130] == 0
    area = int((mask > 0).sum())
    assert abs(area - 81 * 61) < 300

    # A second polygon, closed with Enter, adds to the region.
    for x, y in [(120, 120), (150, 120), (150, 150)]:
        qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=_canvas_point(canvas, x, y))
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_Return)
    mask = project.load_mask(project.label(3))
    assert mask[60, 70] == 255 and mask[125, 145] == 255


def test_ok_after_painting_drops_the_mask(labeled_window, qtbot):
    window, workspace, labeling = labeled_window
    project = window.context.project
    labeling.advance_after_ok = False
    labeling.select(2)
    press(qtbot, workspace, Qt.Key.Key_1)
    canvas = labeling.canvas
    point = _canvas_point(canvas, 60, 60)
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=point)
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=point)
    assert project.label(2).mask_path is not None
    press(qtbot, workspace, Qt.Key.Key_0)
    label = project.label(2)
    assert label.verdict == "ok" and label.mask_path is None
    assert not canvas.mask.any()


def test_zoom_and_pan_keep_painting_in_image_coordinates(labeled_window, qtbot):
    window, workspace, labeling = labeled_window
    project = window.context.project
    canvas = labeling.canvas
    labeling.select(4)
    press(qtbot, workspace, Qt.Key.Key_1)
    canvas.zoom(3.0, canvas.to_widget(100, 100))
    # Pan with the right button: the image point under the pointer moves with it.
    before = canvas.to_image(QPoint(200, 200))
    qtbot.mousePress(canvas, Qt.MouseButton.RightButton, pos=QPoint(200, 200))
    qtbot.mouseMove(canvas, QPoint(230, 215))
    qtbot.mouseRelease(canvas, Qt.MouseButton.RightButton, pos=QPoint(230, 215))
    after = canvas.to_image(QPoint(230, 215))
    assert after == pytest.approx(before, abs=0.5)
    canvas.set_brush_radius(2)
    point = _canvas_point(canvas, 100, 100)
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=point)
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=point)
    mask = project.load_mask(project.label(4))
    ys, xs = np.nonzero(mask)
    assert abs(xs.mean() - 100) < 1.5 and abs(ys.mean() - 100) < 1.5


def test_filmstrip_filters(labeled_window, qtbot):
    window, workspace, labeling = labeled_window
    project = window.context.project
    project.set_label(1, "ok")
    project.set_label(2, "scratch")
    labeling.filmstrip.reload()
    strip = labeling.filmstrip
    strip.set_filter("unlabeled")
    assert strip.ids() == [3, 4]
    strip.set_filter("ok")
    assert strip.ids() == [1]
    strip.set_filter("scratch")
    assert strip.ids() == [2]
    strip.set_filter("dent")
    assert strip.ids() == []
    strip.set_filter("disagrees")  # no model deployed: says so, shows nothing
    assert strip.ids() == []
    assert "No model" in strip.note.text()


def test_model_disagrees_and_most_uncertain_filters_use_the_production_model(main_window, qtbot, tmp_path):
    """The fixture model scores a part by its brightness (threshold 0.45): bright fails."""
    from tests.ui.workspace_fixtures import register_fixture_model

    path = tmp_path / "opinions"
    project = Project.create(path)
    ids = {}
    for name, value in (("dark", 30), ("bright", 220), ("middle", 120), ("dim", 60)):
        image = np.full((64, 64, 3), value, np.uint8)
        ids[name] = project.add_image_array(image, source="test")[0].id
    project.set_label(ids["dark"], "scratch")  # the model passes it: disagrees
    project.set_label(ids["bright"], "ok")  # the model fails it: disagrees
    project.set_label(ids["dim"], "ok")  # agrees
    register_fixture_model(project, "v1", threshold=0.45)
    project.close()

    window = main_window(project_path=path)
    strip = window.capture.labeling.filmstrip
    strip.set_filter("disagrees")
    assert "looking at" in strip.note.text()  # computed in the background
    qtbot.waitUntil(lambda: strip.ids() != [], timeout=10000)
    assert sorted(strip.ids()) == sorted([ids["dark"], ids["bright"]])
    assert "v1" in strip.note.text()

    strip.set_filter("uncertain")  # |score - threshold|: 120/255 = 0.47 is closest to 0.45
    assert strip.ids()[0] == ids["middle"]
    assert strip.ids()[-1] == ids["bright"]


def test_escape_drops_an_open_polygon(labeled_window, qtbot):
    window, workspace, labeling = labeled_window
    canvas = labeling.canvas
    press(qtbot, workspace, Qt.Key.Key_P)
    for x, y in [(20, 20), (60, 20), (60, 60)]:
        qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=_canvas_point(canvas, x, y))
    assert len(canvas.polygon) == 3
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)
    assert canvas.polygon == []
    assert window.context.project.label(1) is None


def test_delete_clears_and_the_author_is_recorded(labeled_window, qtbot):
    window, workspace, labeling = labeled_window
    project = window.context.project
    labeling.advance_box.setChecked(False)
    assert window.context.settings.value("label/advance_after_ok") == "false"
    labeling.author_edit.setText("  A. Inspector ")
    labeling._author_edited()
    press(qtbot, workspace, Qt.Key.Key_1)
    assert project.label(1).author == "A. Inspector"
    press(qtbot, workspace, Qt.Key.Key_Delete)
    assert project.label(1) is None
    assert labeling.image_id == 1
    assert [h.verdict for h in project.label_history(1)] == ["scratch", None]
    press(qtbot, workspace, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert project.label(1).verdict == "scratch"
