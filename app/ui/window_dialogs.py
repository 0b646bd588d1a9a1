"""Dialogs of the main window: closing during a training, and the keyboard overlay (F1)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QGridLayout, QLabel, QMessageBox, QPushButton, QScrollArea, QVBoxLayout, QWidget

KEEP, CANCEL, STAY = "keep", "cancel", "stay"

# (where, key as shown, what, the key sequences it stands for). The one list of keys:
# the overlay shows it, and a test checks that every key the window binds is in it.
SHORTCUTS: list[tuple[str, str, str, str]] = [
    ("Everywhere", "F1", "Show or hide this list of keys", "F1"),
    ("Everywhere", "Ctrl+1 … Ctrl+5", "Capture & Label, Train, Inspect, Models, Plant",
     "Ctrl+1 Ctrl+2 Ctrl+3 Ctrl+4 Ctrl+5"),
    ("Everywhere", "Ctrl+Shift+O", "Start page", "Ctrl+Shift+O"),
    ("Everywhere", "Ctrl+W", "Close the project", "Ctrl+W"),
    ("Everywhere", "Ctrl+Q", "Quit", "Ctrl+Q"),
    ("Capture & Label", "Space (settable)", "Capture the live frame", "Space"),
    ("Capture & Label", "0 or G", "Label OK", "0 G"),
    ("Capture & Label", "1 – 9", "Label with the defect class on that key", "1 2 3 4 5 6 7 8 9"),
    ("Capture & Label", "← ↑ / → ↓", "Previous / next image", "Left Up Right Down"),
    ("Capture & Label", "Ctrl+Z", "Undo the last label change", "Ctrl+Z"),
    ("Capture & Label", "Del", "Back to unlabeled", "Del"),
    ("Capture & Label", "B / E / P / H", "Brush, eraser, polygon, pan", "B E P H"),
    ("Capture & Label", "[ and ]", "Smaller / larger brush", "[ ]"),
    ("Capture & Label", "F", "Fit the image", "F"),
    ("Capture & Label", "Esc", "Drop the polygon; leave a text field", "Esc"),
    ("Train", "Ctrl+R", "Retrain", "Ctrl+R"),
    ("Train", "Esc", "Cancel the training", "Esc"),
    ("Inspect", "Space (settable) or Enter", "Inspect one part (trigger mode)", "Space Return"),
    ("Inspect", "H", "Heatmap on / off", "H"),
    ("Inspect", "↑ / ↓ in the log", "Review a newer / older part (or click its row)", "Up Down"),
    ("Inspect", "Enter in the log", "Open the selected part", "Return"),
    ("Inspect", "W", "This verdict is wrong: label the part on screen", "W"),
    ("Inspect", "Esc", "Back to live", "Esc"),
    ("Inspect", "Alt+S / Alt+I", "Start or stop / inspect now", "Alt+S Alt+I"),
    ("Inspect", "Alt+W / Alt+E / Alt+R", "Verdict is wrong / export CSV / reset counters", "Alt+W Alt+E Alt+R"),
    ("Inspect", "Alt+V / Alt+L", "The views of a part / PLC settings", "Alt+V Alt+L"),
]


def listed_keys() -> set[str]:
    """Every key sequence SHORTCUTS stands for, as QKeySequence.toString() writes it."""
    return {key for *_shown, keys in SHORTCUTS for key in keys.split()}


def ask_close_during_training(parent: QWidget) -> str:
    """KEEP (finish the training, then quit), CANCEL (stop it and quit) or STAY.

    Closing used to cancel a training without a word: minutes of work gone by a click
    on the window's X. Plain QMessageBox with renamed standard buttons, so tests can
    answer it by patching QMessageBox.exec.
    """
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("A training is running")
    box.setText("A training is running. What should happen to it?")
    box.setInformativeText(
        "Keep training: the window closes, the training finishes in the background and its "
        "model is saved as a candidate. Cancel: the training stops and nothing is saved."
    )
    Button = QMessageBox.StandardButton
    box.setStandardButtons(Button.Yes | Button.No | Button.Cancel)
    box.button(Button.Yes).setText("Keep training in the background")
    box.button(Button.No).setText("Cancel the training")
    box.button(Button.Cancel).setText("Don't close")
    box.setDefaultButton(Button.Cancel)
    box.setEscapeButton(Button.Cancel)
    answer = box.exec()
    return {Button.Yes: KEEP, Button.No: CANCEL}.get(Button(answer), STAY)


class ShortcutsOverlay(QDialog):
    """Every key the app answers to, by workspace. F1 or Esc closes it again."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        layout = QVBoxLayout(self)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        body = QWidget()
        grid = QGridLayout(body)
        grid.setHorizontalSpacing(24)
        self.rows: list[tuple[str, str, str]] = []
        row, last_group = 0, None
        for group, key, what, _keys in SHORTCUTS:
            if group != last_group:
                heading = QLabel(group)
                heading.setStyleSheet("font-size: 15pt; font-weight: 700; margin-top: 8px;")
                grid.addWidget(heading, row, 0, 1, 2)
                row, last_group = row + 1, group
            key_label = QLabel(key)
            key_label.setStyleSheet("font-weight: 700; font-family: monospace;")
            grid.addWidget(key_label, row, 0, Qt.AlignmentFlag.AlignTop)
            text = QLabel(what)
            text.setWordWrap(True)
            grid.addWidget(text, row, 1)
            self.rows.append((group, key, what))
            row += 1
        scroll.setWidget(body)
        layout.addWidget(scroll, 1)
        close = QPushButton("Close  (F1 / Esc)")
        close.clicked.connect(lambda: self.accept())
        layout.addWidget(close)
        self.resize(640, 560)

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_F1:
            self.accept()
            return
        super().keyPressEvent(event)

    def text(self) -> str:
        return "\n".join(f"{group}: {key} — {what}" for group, key, what in self.rows)
