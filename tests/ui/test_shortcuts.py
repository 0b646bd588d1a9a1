"""Window-wide keys, pressed on whatever has the focus: Ctrl+1..5 and the F1 overlay."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QShortcut
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QAbstractButton, QApplication

from app.ui.window_dialogs import SHORTCUTS, listed_keys

CTRL = Qt.KeyboardModifier.ControlModifier


def press(window, key, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    QTest.keyClick(QApplication.focusWidget() or window, key, modifier)


def active_window(main_window, qtbot):
    window = main_window()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=3000)
    return window


def test_ctrl_number_switches_workspaces(main_window, qtbot):
    window = active_window(main_window, qtbot)
    keys = (Qt.Key.Key_1, Qt.Key.Key_2, Qt.Key.Key_3, Qt.Key.Key_4, Qt.Key.Key_5)
    for index, key in reversed(list(enumerate(keys))):
        press(window, key, CTRL)
        assert window.tabs.currentIndex() == index, window.tabs.tabText(index)
    assert window.capture.timer.isActive()  # Capture & Label was activated as by a click
    press(window, Qt.Key.Key_2, CTRL)
    assert not window.capture.timer.isActive()


def test_f1_shows_every_key_and_f1_hides_it(main_window, qtbot):
    window = active_window(main_window, qtbot)
    press(window, Qt.Key.Key_F1)
    overlay = window.shortcuts_overlay
    assert overlay is not None and overlay.isVisible()
    text = overlay.text()
    for group, shown, what, _keys in SHORTCUTS:
        assert f"{group}: {shown} — {what}" in text
    qtbot.waitUntil(lambda: QApplication.focusWidget() is not None, timeout=3000)
    press(window, Qt.Key.Key_F1)
    assert not overlay.isVisible()


def test_every_key_the_window_binds_is_in_the_overlay(main_window, qtbot):
    window = main_window()
    qtbot.wait(10)  # the labeling keys first bound on the workspace itself are deleted later
    bound = {seq.toString() for action in window.findChildren(QAction) for seq in action.shortcuts()}
    bound |= {s.key().toString() for s in window.findChildren(QShortcut)}
    bound |= {b.shortcut().toString() for b in window.findChildren(QAbstractButton)}
    bound.discard("")
    assert {"Ctrl+1", "F1", "0", "Ctrl+R", "H"} <= bound  # the collection found the bindings
    assert bound - listed_keys() == set()
