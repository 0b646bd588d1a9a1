"""The test harness itself: slot exceptions fail tests, the app's style is on, and no
button hands its `checked` flag to a slot that would take it for an argument."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QPushButton

from app.ui.shared.style import BASE_POINT_SIZE, STYLESHEET

UI_DIR = Path(__file__).resolve().parents[2] / "app" / "ui"
# Signals that pass an argument the slot may not expect.
ARG_SIGNALS = {"clicked", "triggered", "toggled"}


def test_an_exception_in_a_slot_is_recorded_and_would_fail_the_test(qtbot, slot_exceptions):
    button = QPushButton("Boom")
    qtbot.addWidget(button)
    button.show()

    def slot(verdict=None):  # the shape of the bug: clicked(bool) fills `verdict`
        raise AttributeError(f"{verdict!r} has no attribute 'strip'")

    button.clicked.connect(slot)
    assert sys.excepthook == slot_exceptions.hook
    QTest.mouseClick(button, Qt.MouseButton.LeftButton)
    recorded = list(slot_exceptions.recorded)
    assert [type(v) for _t, v, _tb in recorded] == [AttributeError]
    assert "False" in str(recorded[0][1])
    # What the call phase does with it: the test fails, naming the exception.
    with pytest.raises(pytest.fail.Exception, match="AttributeError"):
        slot_exceptions.fail_if_any("CALL")
    assert slot_exceptions.take() == []  # failing consumed it: this test itself passes


def test_take_consumes_expected_exceptions(qtbot, slot_exceptions):
    button = QPushButton("Divide")
    qtbot.addWidget(button)
    button.clicked.connect(lambda: 1 / 0)
    button.click()
    assert [type(e) for e in slot_exceptions.take()] == [ZeroDivisionError]
    assert slot_exceptions.recorded == []


def test_the_apps_stylesheet_and_display_name_are_on(qapp):
    assert QApplication.instance().styleSheet() == STYLESHEET
    assert QApplication.applicationDisplayName() == "Lineside"
    assert QApplication.font().pointSize() == BASE_POINT_SIZE


def _methods_with_optional_parameters() -> dict[str, list[str]]:
    """Every method in app/ui whose signature accepts a positional argument besides self."""
    found: dict[str, list[str]] = {}
    for path in UI_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef):
                        params = item.args.posonlyargs + item.args.args
                        if len(params) > 1 or item.args.vararg is not None:
                            found.setdefault(item.name, []).append(f"{path.name}:{node.name}")
    return found


def test_no_argument_passing_signal_is_connected_straight_to_a_method_with_parameters():
    """clicked(bool) passes `checked` to any slot that takes a positional argument."""
    takes_args = _methods_with_optional_parameters()
    offenders = []
    for path in UI_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "connect"):
                continue
            signal = node.func.value
            if not (isinstance(signal, ast.Attribute) and signal.attr in ARG_SIGNALS) or not node.args:
                continue
            target = node.args[0]
            # toggled(bool) into a method that wants the bool is the intended use.
            if isinstance(target, ast.Attribute) and target.attr in takes_args and signal.attr != "toggled":
                offenders.append(f"{path.name}:{node.lineno} {signal.attr} -> {target.attr}")
    assert offenders == []
