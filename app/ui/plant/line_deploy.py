"""Deploy a model version to the stations of one line (the other lines keep theirs), or
let a line follow production again.

The core decides (app/core/stations.py deploy_to_line): who may deploy, whether the
model runs, and the deploy gate on the golden set. It runs off the GUI thread (the gate
inspects every golden part); a refusal opens the app's gate dialog, where an engineer
may deploy to the line anyway with a written reason.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QDialog, QGridLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.core import stations
from app.core.errors import LinesideError
from app.core.golden import GateRefusedError
from app.core.plant_overview import LineRollout
from app.ui.shared.workers import run_in_background
from app.ui.trust.gate_dialog import GateRefusedDialog
from app.ui.trust.people_dialogs import say

log = logging.getLogger(__name__)


class LineGateRefusedDialog(GateRefusedDialog):
    """The gate's refusal of a line deploy; "Deploy anyway" pins the line, not production."""

    def __init__(self, context, line: str, version: str, result: dict, parent: QWidget | None = None) -> None:
        super().__init__(context, version, result, parent)
        self.line = line
        self.setWindowTitle(f"The deploy gate refuses {version} for {line}")
        self.confirm_button.setText(f"Deploy {version} to {line} anyway")

    def deploy_anyway(self) -> bool:
        reason = self.reason_edit.toPlainText().strip()
        if not reason:
            say(self.message, f"Write down why deploying {self.version} is safe; nothing was deployed.", ok=False)
            return False
        try:  # the core checks the role and the reason again, runs the gate and audits the override
            stations.deploy_to_line(self.context.project, self.line, self.version, self.context.person, reason)
        except LinesideError as exc:
            say(self.message, str(exc), ok=False)
            return False
        self.deployed = True
        self.context.models_changed.emit()  # the override is in the model's report
        self.context.status_message.emit(f"{self.line} now runs {self.version} (gate overridden).")
        self.accept()
        return True


class DeployToLineDialog(QDialog):
    """Which version goes to which line; the button says both before anything happens."""

    line_changed = Signal(str)  # a line was pinned or unpinned

    def __init__(self, context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.lines: dict[str, LineRollout] = {}
        self.gate_dialog: LineGateRefusedDialog | None = None
        self.setWindowTitle("Deploy to line")
        self.setMinimumWidth(620)
        layout = QVBoxLayout(self)
        intro = QLabel("The stations of the line load the version within seconds and report it; the other lines "
                       "keep their model. The deploy gate checks the version on the golden set first.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QGridLayout()
        self.line_box = QComboBox()
        self.line_box.setEditable(True)  # a line with no station yet can be pinned ahead of them
        self.version_box = QComboBox()
        form.addWidget(QLabel("Line"), 0, 0)
        form.addWidget(self.line_box, 0, 1)
        form.addWidget(QLabel("Version"), 1, 0)
        form.addWidget(self.version_box, 1, 1)
        form.setColumnStretch(1, 1)
        layout.addLayout(form)
        self.now_running = QLabel("")
        self.now_running.setProperty("role", "hint")
        self.now_running.setWordWrap(True)
        layout.addWidget(self.now_running)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        buttons = QHBoxLayout()
        self.follow_button = QPushButton("Follow production")
        self.follow_button.setToolTip("The line runs the production model again, like every line without a pin.")
        self.deploy_button = QPushButton("Deploy")
        self.deploy_button.setProperty("primary", True)
        self.cancel_button = QPushButton("Cancel")
        for button in (self.follow_button, self.cancel_button, self.deploy_button):
            button.setAutoDefault(False)
        buttons.addWidget(self.follow_button)
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.deploy_button)
        layout.addLayout(buttons)
        self.line_box.currentTextChanged.connect(lambda _text: self._update_buttons())
        self.version_box.currentIndexChanged.connect(lambda _i: self._update_buttons())
        self.deploy_button.clicked.connect(lambda: self.deploy())
        self.follow_button.clicked.connect(lambda: self.follow_production())
        self.cancel_button.clicked.connect(lambda: self.reject())

    def prepare(self, lines: list[LineRollout], versions: list[tuple[str, str]], line: str | None) -> None:
        """The lines the plant knows, the versions (newest first, with their status), and
        the line to start with (the selected station's)."""
        self.lines = {x.line: x for x in lines}
        self.line_box.clear()
        self.line_box.addItems([x.line for x in lines])
        self.line_box.setEditText(line or (lines[0].line if lines else ""))
        self.version_box.clear()
        for version, status in versions:
            self.version_box.addItem(f"{version} ({status})", version)
        self.message.setText("")
        self._busy(False)

    def chosen_line(self) -> str:
        return self.line_box.currentText().strip()

    def chosen_version(self) -> str | None:
        return self.version_box.currentData()

    def _update_buttons(self) -> None:
        line, version = self.chosen_line(), self.chosen_version()
        self.deploy_button.setText(f"Deploy {version} to {line}" if line and version else "Deploy")
        self.deploy_button.setEnabled(bool(line and version))
        known = self.lines.get(line)
        pinned = known is not None and known.target is not None and known.target.pinned
        self.follow_button.setEnabled(pinned)
        if known is None:
            self.now_running.setText(f"No station of {line} has reported yet." if line else "")
        else:
            self.now_running.setText(f"Now: {known.summary()} ({'pinned to this line' if pinned else 'production'}).")

    def _busy(self, busy: bool, text: str = "") -> None:
        for widget in (self.line_box, self.version_box, self.deploy_button, self.follow_button):
            widget.setEnabled(not busy)
        if busy:
            self.message.setText(text)
            self.message.setStyleSheet("")
        else:
            self._update_buttons()

    def deploy(self) -> None:
        project, person = self.context.project, self.context.person
        line, version = self.chosen_line(), self.chosen_version()
        if project is None or not line or not version:
            return
        self._busy(True, f"Checking {version} on the golden set, then deploying it to {line}…")
        run_in_background(lambda: stations.deploy_to_line(project, line, version, person),
                          lambda _target: self._done(line, f"{line} now runs {version}; its stations load it."),
                          lambda exc: self._failed(line, version, exc), owner=self)  # fmt: skip

    def follow_production(self) -> None:
        project, person, line = self.context.project, self.context.person, self.chosen_line()
        if project is None or not line:
            return
        self._busy(True, f"{line} goes back to the production model…")
        run_in_background(lambda: stations.follow_production(project, line, person),
                          lambda _none: self._done(line, f"{line} follows production again."),
                          lambda exc: self._failed(line, None, exc), owner=self)  # fmt: skip

    def _done(self, line: str, text: str) -> None:
        self._busy(False)
        self.context.status_message.emit(text)
        self.line_changed.emit(line)
        self.accept()

    def _failed(self, line: str, version: str | None, exc: Exception) -> None:
        self._busy(False)
        if isinstance(exc, GateRefusedError) and version is not None:
            self.context.models_changed.emit()  # the refusal is stored in the model's report
            self.accept()
            self.gate_dialog = LineGateRefusedDialog(self.context, line, version, exc.result, self.parentWidget())
            self.gate_dialog.accepted.connect(lambda: self.line_changed.emit(line))
            self.gate_dialog.open()
            return
        if not isinstance(exc, LinesideError):
            log.error("deploying to %s failed", line, exc_info=exc)
        say(self.message, str(exc) if isinstance(exc, LinesideError) else f"Nothing was deployed: {exc}", ok=False)
