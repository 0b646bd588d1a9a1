"""The live PLC signals in the Inspect workspace: a lamp per bit, a value per register.

What the commissioning engineer and the inspector want to see while the PLC runs the
line: did the trigger arrive, is the station ready or busy, which result is valid,
PASS or FAIL, its class, score and inspection id, the heartbeat, the error code and
the missed triggers. The values are read from the PlcLink (the very state the Modbus
and OPC UA servers answer with) by a QTimer on the GUI thread a few times a second:
reading it takes the link's lock for microseconds and never waits for the line.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QFrame, QGridLayout, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from app.core.plc.signals import SCORE_SCALE, SIGNALS, ErrorCode
from app.ui.inspect.inspect_plc import PlcConfig
from app.ui.shared.style import ACCENT, FAIL, MUTED, PASS, WARN

REFRESH_MS = 250  # 4 Hz: the 0.5 s heartbeat is seen toggling, the GUI hardly notices
OFF_COLOR = "#c5ccd6"

# (signal, lamp text, colour when on); inputs first: what the PLC wrote.
INPUT_LAMPS = (("trigger", "Trigger", ACCENT), ("trigger_enable", "Enable", ACCENT), ("result_ack", "Ack", ACCENT))
OUTPUT_LAMPS = (
    ("ready", "Ready", PASS), ("busy", "Busy", WARN), ("trigger_ack", "Trig ack", ACCENT),
    ("result_valid", "Result valid", ACCENT), ("passed", "PASS", PASS), ("failed", "FAIL", FAIL),
    ("heartbeat", "Heartbeat", ACCENT), ("error", "Error", FAIL),
)  # fmt: skip
VALUES = (("class_code", "Class"), ("score", "Score"), ("inspection_id", "Id"),
          ("error_code", "Error code"), ("missed_triggers", "Missed"))


class Lamp(QWidget):
    """A round lamp with its signal's name beside it."""

    def __init__(self, text: str, color: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.on = False
        self._color = QColor(color)
        self.text = text
        self.setMinimumHeight(20)
        self.setAccessibleName(text)

    def set_on(self, on: bool) -> None:
        if bool(on) != self.on:
            self.on = bool(on)
            self.setAccessibleDescription("on" if self.on else "off")
            self.update()

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(22 + self.fontMetrics().horizontalAdvance(self.text), 20)

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return self.sizeHint()

    def paintEvent(self, event) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(self._color if self.on else QColor(OFF_COLOR))
        y = (self.height() - 14) / 2
        painter.drawEllipse(2, int(y), 14, 14)
        painter.setPen(self.palette().windowText().color())
        painter.drawText(self.rect().adjusted(20, 0, 0, 0), Qt.AlignmentFlag.AlignVCenter, self.text)
        painter.end()


def value_text(name: str, value: int) -> str:
    return str(value)  # as the PLC reads it (the score x 10000: the tooltip says so)


class PlcPanel(QFrame):
    """Lamps and values of one PlcLink; hidden while the project has no PLC configured.

    Five short rows, so that it fits under the part's views on a 1024 x 768 panel PC:
    where it listens, the PLC's inputs, the station's bits, then the registers.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("plcPanel")
        self.setStyleSheet(f"#plcPanel {{ border: 1px solid {OFF_COLOR}; border-radius: 6px; }}")
        self.link = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 2, 8, 2)
        layout.setSpacing(0)
        self.title = QLabel("PLC")
        self.title.setStyleSheet("font-weight: bold;")
        # Narrow screens clip the address rather than widen the workspace; the tooltip has it whole.
        self.title.setMinimumWidth(120)
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.state = QLabel("")
        self.state.setStyleSheet(f"color: {MUTED};")
        head = QHBoxLayout()
        head.addWidget(self.title, 1)
        head.addWidget(self.state)
        layout.addLayout(head)
        grid = QGridLayout()
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(0)
        self.lamps: dict[str, Lamp] = {}
        inputs = QLabel("In")
        inputs.setToolTip("What the PLC wrote")
        grid.addWidget(inputs, 0, 0)
        for column, (name, text, color) in enumerate(INPUT_LAMPS, start=1):
            self._add_lamp(grid, name, text, color, 0, column)
        outputs = QLabel("Out")
        outputs.setToolTip("What the station answers")
        grid.addWidget(outputs, 1, 0)
        for i, (name, text, color) in enumerate(OUTPUT_LAMPS):
            row, column = divmod(i, 4)
            self._add_lamp(grid, name, text, color, 1 + row, 1 + column)
        self.values: dict[str, QLabel] = {}
        # The registers fill the row under the bits, and the input row's free place.
        places = [(3, 1), (3, 2), (3, 3), (3, 4), (0, 4)]
        for (name, text), (row, column) in zip(VALUES, places):
            label = QLabel(f"{text} –")
            label.setToolTip(SIGNALS[name].doc)
            grid.addWidget(label, row, column)
            self.values[name] = label
        grid.setColumnStretch(5, 1)
        layout.addLayout(grid)
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh)
        self.set_config(PlcConfig())

    def _add_lamp(self, grid: QGridLayout, name: str, text: str, color: str, row: int, column: int) -> None:
        lamp = Lamp(text, color)
        lamp.setToolTip(SIGNALS[name].doc)
        grid.addWidget(lamp, row, column)
        self.lamps[name] = lamp

    def set_config(self, config: PlcConfig) -> None:
        """Shown only with a PLC configured; the title says where it listens."""
        self.title.setText(f"PLC {config.describe()}")
        self.title.setToolTip(f"{config.describe()}\n{config.url}")
        self.setVisible(config.enabled)
        if self.link is None:
            self.state.setText("from Start")

    def attach(self, link) -> None:
        """Show *link*'s signals until detach() (the line started with a PLC)."""
        self.link = link
        self.state.setText("starting…")
        self._timer.start()
        self.refresh()

    def detach(self) -> None:
        self._timer.stop()
        self.link = None
        for lamp in self.lamps.values():
            lamp.set_on(False)
        for name, text in VALUES:
            self.values[name].setText(f"{text} –")
        self.state.setText("stopped")

    def refresh(self) -> None:
        link = self.link
        if link is None:
            return
        out, inputs = link.outputs(), link.inputs()
        for name, lamp in self.lamps.items():
            lamp.set_on(bool(inputs.get(name) if name in inputs else out.get(name)))
        for name, text in VALUES:
            self.values[name].setText(f"{text} {value_text(name, int(out.get(name, 0)))}")
        code = int(out.get("error_code", 0))
        self.values["error_code"].setToolTip(_error_text(code))
        self.values["score"].setToolTip(f"{SIGNALS['score'].doc} Now {int(out.get('score', 0)) / SCORE_SCALE:.4f}.")
        self.state.setText("running" if out.get("running") else "starting…")

    def shown_values(self) -> dict[str, int]:
        """What the panel shows now, by signal name (lamps 0/1, registers as numbers)."""
        shown = {name: int(lamp.on) for name, lamp in self.lamps.items()}
        for name, text in VALUES:
            number = self.values[name].text().removeprefix(text).split()[0]
            shown[name] = int(number) if number.isdigit() else -1
        return shown


def _error_text(code: int) -> str:
    try:
        return f"{code}: {ErrorCode(code).describe()}"
    except ValueError:
        return f"{code}: unknown"
