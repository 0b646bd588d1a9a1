"""Lineside fits a 1024 x 768 line PC screen, with the app's stylesheet on.

Every visible control of every workspace must lie inside the window, or inside a
scroll area that can scroll it into view, and must be at least as large as it needs to
be to show its text.
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QRect
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSlider,
    QAbstractSpinBox,
    QComboBox,
    QKeySequenceEdit,
    QLineEdit,
    QScrollArea,
    QScrollBar,
    QWidget,
)

from tests.ui.workspace_fixtures import register_fixture_model

SCREEN = (1024, 768)
INTERACTIVE = (QAbstractButton, QComboBox, QAbstractSpinBox, QLineEdit, QAbstractSlider, QAbstractItemView,
               QKeySequenceEdit)
DONE_EVENT = {
    "version": "v2", "elapsed_s": 95.0, "device": "cpu (2 cores)",
    "metrics": {"auroc": 0.97, "catch_rate": 0.91, "false_reject_rate": 0.01, "threshold": 0.52},
    "production": {"version": "v1", "auroc": 0.9, "catch_rate": 0.8, "false_reject_rate": 0.05},
    "changes": ["+12 scratch", "+30 ok"], "shortfalls": ["dent: 3 labeled images, at least 5 needed"],
    "baseline": {"method": "image statistics", "auroc": 0.7, "catch_at_1pct_false_reject": 0.1},
}


def rect_in(widget: QWidget, ancestor: QWidget) -> QRect:
    return QRect(widget.mapTo(ancestor, QPoint(0, 0)), widget.size())


def scroll_areas_above(widget: QWidget) -> list[QScrollArea]:
    found, parent = [], widget.parentWidget()
    while parent is not None:
        if isinstance(parent, QScrollArea):
            found.append(parent)
        parent = parent.parentWidget()
    return found


def unreachable_controls(window: QWidget) -> list[str]:
    """Controls that are neither in the window nor reachable by scrolling, or squeezed."""
    problems = []
    inside = window.rect()
    for widget in window.findChildren(QWidget):
        if not isinstance(widget, INTERACTIVE) or not widget.isVisible():
            continue
        if isinstance(widget.parentWidget(), (QAbstractSpinBox, QKeySequenceEdit, QComboBox)):
            continue  # the line edit inside a spin box or key field: checked as its owner
        if isinstance(widget, QScrollBar):
            continue  # part of its scroll area, whose viewport is checked
        name = f"{type(widget).__name__} {getattr(widget, 'text', lambda: '')()!r}"
        for area in scroll_areas_above(widget):
            area.ensureWidgetVisible(widget, 0, 0)  # what scrolling to it would show
            if not inside.contains(rect_in(area.viewport(), window)):
                problems.append(f"{name}: its scroll area sticks out of the window")
            if not rect_in(area.viewport(), window).contains(rect_in(widget, window)):
                problems.append(f"{name}: its scroll area cannot bring it into view")
        if not inside.contains(rect_in(widget, window)):
            problems.append(f"{name}: at {rect_in(widget, window).getRect()}, outside the window")
        needed = widget.minimumSizeHint()
        if isinstance(widget, (QAbstractButton, QComboBox)) and widget.width() < needed.width() - 1:
            problems.append(f"{name}: {widget.width()} px wide, needs {needed.width()}")
    return problems


@pytest.fixture
def small_window(main_window, qtbot):
    window = main_window(size=SCREEN)
    project = window.context.project
    for i, name in enumerate(("scratch", "dent", "crack", "blowhole", "stain", "chip", "burr", "fray", "spot")):
        project.add_class(name)
    register_fixture_model(project, "v1")
    window.context.models_changed.emit()
    window.context.images_changed.emit()
    return window


def test_the_window_fits_1024_by_768(small_window):
    hint = small_window.minimumSizeHint().expandedTo(small_window.minimumSize())
    assert hint.width() <= SCREEN[0] and hint.height() <= SCREEN[1], hint
    assert (small_window.width(), small_window.height()) == SCREEN


@pytest.mark.parametrize("tab", ["Capture", "Train", "Inspect", "Models"])
def test_every_control_is_reachable_at_1024_by_768(small_window, qtbot, tab):
    small_window.show_workspace(tab)
    workspace = small_window.tabs.currentWidget()
    if tab == "Train":  # the tallest state: the result card with Deploy under the curves
        workspace.summary.show_result(DONE_EVENT)
        workspace.summary.show()
    small_window.resize(*SCREEN)
    qtbot.wait(50)  # layouts settle
    assert (small_window.width(), small_window.height()) == SCREEN
    checked = [w for w in workspace.findChildren(QWidget) if isinstance(w, INTERACTIVE) and w.isVisible()]
    assert len(checked) >= 4  # the check looked at the workspace's controls
    assert unreachable_controls(small_window) == []


def test_start_page_fits_1024_by_768(main_window, qtbot):
    window = main_window(open_project=False, size=SCREEN)
    window.show_start_page()
    qtbot.wait(50)
    assert (window.width(), window.height()) == SCREEN
    assert unreachable_controls(window) == []


def test_nine_class_buttons_wrap_into_view_at_1024_by_768(small_window, qtbot):
    """Every class button in sight without scrolling: they wrap onto further rows."""
    small_window.show_workspace("Capture")
    labeling = small_window.capture.labeling
    small_window.resize(*SCREEN)
    qtbot.wait(50)
    strip = labeling.class_strip
    buttons = list(labeling.class_buttons.values())
    assert len(buttons) == 11  # OK, nine classes, "+ Add class"
    for button in buttons:
        assert button.isVisible() and strip.rect().contains(rect_in(button, strip)), button.text()
        assert not scroll_areas_above(button) or all(
            not area.horizontalScrollBar().isVisible() for area in scroll_areas_above(button))
    rows = {rect_in(b, strip).top() for b in buttons}
    assert len(rows) >= 2  # they did not fit one row at this width, and wrapped
