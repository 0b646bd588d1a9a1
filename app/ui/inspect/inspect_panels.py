"""Pieces of the Inspect workspace: the counters, the no-model notice, the correction dialog."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.records import OK
from app.ui.inspect.inspect_log import InspectionCounters, latency_text
from app.ui.shared.style import FAIL, PASS


class CountersPanel(QFrame):
    """Parts, passed, failed (per class), yield and latency in large type.

    Two by two, not one under the other: on a 768 px screen the log below needs the
    height to show more than three parts for review.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("counters")
        self.setStyleSheet("#counters QLabel { font-size: 16pt; } #counters QLabel[big=\"true\"] { font-size: 26pt; font-weight: bold; }")
        grid = QGridLayout(self)
        grid.setVerticalSpacing(2)
        grid.setHorizontalSpacing(8)
        grid.setColumnMinimumWidth(2, 16)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(4, 1)
        self.values: dict[str, QLabel] = {}
        for i, (key, text, color) in enumerate(
            (("parts", "Parts", None), ("passed", "Passed", PASS), ("failed", "Failed", FAIL), ("yield", "Yield", None))
        ):
            name = QLabel(text)
            value = QLabel("0")
            value.setProperty("big", True)
            value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if color:
                value.setStyleSheet(f"color: {color};")
            row, column = divmod(i, 2)
            grid.addWidget(name, row, 3 * column)
            grid.addWidget(value, row, 3 * column + 1)
            self.values[key] = value
        self.per_class = QLabel("")
        self.per_class.setWordWrap(True)
        grid.addWidget(self.per_class, 2, 0, 1, 5)
        self.latency = QLabel("Latency –")
        grid.addWidget(self.latency, 3, 0, 1, 5)
        self.values["yield"].setText("–")

    def show_counters(self, counters: InspectionCounters) -> None:
        self.values["parts"].setText(str(counters.parts))
        self.values["passed"].setText(str(counters.passed))
        self.values["failed"].setText(str(counters.failed))
        y = counters.yield_percent
        self.values["yield"].setText("–" if y is None else f"{y:.1f} %")
        self.per_class.setText(
            "  ".join(f"{name}: {n}" for name, n in counters.failed_by_class.most_common())
        )
        mean = counters.mean_latency_ms
        self.latency.setText(
            "Latency –" if mean is None else f"Latency {latency_text(counters.last_latency_ms)} (mean {latency_text(mean)})"
        )


class NoModelPanel(QFrame):
    """Shown instead of the line view while no model is in production."""

    navigate_requested = Signal(str)  # "train" or "models"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        self.message = QLabel("No model is in production yet.")
        self.message.setStyleSheet("font-size: 24pt; font-weight: bold;")
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        hint = QLabel("Label some parts, train a model, then deploy it to start inspecting.")
        hint.setStyleSheet("font-size: 15pt;")
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint.setWordWrap(True)
        layout.addWidget(hint)
        row = QHBoxLayout()
        row.addStretch(1)
        for key, text in (("train", "Go to Train"), ("models", "Go to Models")):
            button = QPushButton(text)
            button.setMinimumSize(220, 64)
            button.setProperty("primary", key == "train")
            button.clicked.connect(lambda _=False, k=key: self.navigate_requested.emit(k))
            row.addWidget(button)
        row.addStretch(1)
        layout.addLayout(row)
        layout.addStretch(2)

    def set_message(self, text: str) -> None:
        self.message.setText(text)


class CorrectionDialog(QDialog):
    """Asks what the part really is: OK, or which defect class. Big buttons, keys 0-9."""

    def __init__(self, classes: list, model_said: str, parent: QWidget | None = None, part: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Correct this verdict")
        self.setMinimumWidth(440)  # the title and the question, unclipped
        self.choice: str | None = None
        layout = QVBoxLayout(self)
        which = f" about the part {part}" if part else ""
        question = QLabel(f"The model said <b>{model_said}</b>{which}. What is this part really?")
        question.setStyleSheet("font-size: 16pt;")
        question.setWordWrap(True)
        layout.addWidget(question)
        ok = QPushButton("0  OK — a good part")
        ok.setMinimumHeight(64)
        ok.setStyleSheet(f"font-size: 16pt; color: {PASS};")
        ok.setShortcut("0")
        ok.clicked.connect(lambda: self._choose(OK))
        layout.addWidget(ok)
        self.buttons = {OK: ok}
        for i, cls in enumerate(classes, start=1):
            key = cls.key if getattr(cls, "key", None) else (i if i <= 9 else None)
            button = QPushButton(f"{key or ' '}  {cls.name}")
            button.setMinimumHeight(64)
            button.setStyleSheet(f"font-size: 16pt; border-left: 12px solid {cls.color};")
            if key:
                button.setShortcut(str(key))
            button.clicked.connect(lambda _=False, name=cls.name: self._choose(name))
            layout.addWidget(button)
            self.buttons[cls.name] = button
        cancel = QPushButton("Cancel")
        cancel.setMinimumHeight(52)
        cancel.clicked.connect(self.reject)
        layout.addWidget(cancel)

    def _choose(self, verdict: str) -> None:
        self.choice = verdict
        self.accept()
