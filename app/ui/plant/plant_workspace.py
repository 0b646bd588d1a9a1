"""Plant: every station of the project, what it runs and how its line is rolling out.

The same figures as `lineside plant` (app/core/plant_overview.py), read every two seconds
while the workspace is shown, always on a worker thread: on a plant store each read is
a round trip to the database server, and the window must not stall on a slow network.
A single-PC project has no stations; the view then says how a station joins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QStackedWidget,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.core import people, plant_overview
from app.core.errors import LinesideError
from app.core.plant_overview import LineRollout, PlantOverview
from app.ui.plant.line_deploy import DeployToLineDialog
from app.ui.plant.station_table import HOST, NOTE, StationTableModel
from app.ui.shared.flow_layout import FlowLayout
from app.ui.shared.style import FAIL, LINE, MUTED, PASS, WARN
from app.ui.shared.workers import run_in_background
from app.ui.trust.people_dialogs import refuse_tooltip

REFRESH_MS = 2000
WIDE = 1200  # px; narrower, the host column goes and the drift / message column gets its room
DEPLOY_TIP = "Deploy a version to the stations of one line; the other lines keep theirs."


@dataclass(frozen=True)
class PlantSnapshot:
    overview: PlantOverview
    versions: list[tuple[str, str]]  # (version, status), newest first
    deploy_refusal: str | None  # why the person signed in may not deploy; None if they may


def read_snapshot(project, person) -> PlantSnapshot:
    """Everything the workspace shows, read in one go on a worker thread."""
    overview = plant_overview.read(project)
    versions = [(m.version, m.status) for m in project.models()]
    try:
        people.require(project, person, "deploy")
        refusal = None if versions else "No trained model to deploy yet: train one in Train."
    except LinesideError as exc:
        refusal = str(exc)
    return PlantSnapshot(overview, versions, refusal)


def _chip_colour(line: LineRollout) -> str:
    if line.problem:
        return FAIL
    if line.total and line.done == line.total:
        return PASS
    return WARN if line.total else LINE


class PlantWorkspace(QWidget):
    refreshed = Signal()  # a snapshot (or a failure to read one) was shown

    def __init__(self, context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.snapshot: PlantSnapshot | None = None
        self.deploy_dialog: DeployToLineDialog | None = None
        self._reading = self._again = self._active = False
        root = QVBoxLayout(self)
        top = QHBoxLayout()
        title = QLabel("Plant")
        title.setStyleSheet("font-size: 24pt; font-weight: bold;")
        top.addWidget(title)
        top.addStretch(1)
        self.deploy_button = QPushButton("Deploy to line…")
        self.deploy_button.setMinimumSize(240, 56)
        top.addWidget(self.deploy_button)
        root.addLayout(top)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setStyleSheet("font-size: 15pt;")
        root.addWidget(self.summary)
        self.chips = QWidget()
        self.chip_layout = FlowLayout(self.chips, spacing=8)
        root.addWidget(self.chips)

        self.table_model = StationTableModel(self)
        self.table = self._station_table(self.table_model)
        self.empty = QLabel()
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.empty.setStyleSheet("font-size: 14pt;")
        self.stack = QStackedWidget()
        self.stack.addWidget(self.table)
        self.stack.addWidget(self.empty)
        root.addWidget(self.stack, 1)
        self.footer = QLabel()
        self.footer.setProperty("role", "hint")
        self.footer.setWordWrap(True)
        root.addWidget(self.footer)

        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.deploy_button.clicked.connect(lambda: self.open_deploy_dialog())
        context.project_changed.connect(lambda _p: self._project_changed())
        context.access_changed.connect(lambda: self._active and self.refresh())
        self._project_changed()

    @staticmethod
    def _station_table(model: StationTableModel) -> QTableView:
        table = QTableView()
        table.setModel(model)
        table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        table.setTabKeyNavigation(False)
        table.setWordWrap(True)  # a long drift warning wraps rather than hiding off the edge
        rows = table.verticalHeader()
        rows.hide()
        rows.setMinimumSectionSize(44)
        rows.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header = table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(NOTE, QHeaderView.ResizeMode.Stretch)
        return table

    # -- shown or hidden ----------------------------------------------------------------

    def activate(self) -> None:
        self._active = True
        self.timer.start()
        self.refresh()

    def deactivate(self) -> None:
        self._active = False
        self.timer.stop()

    def shutdown(self) -> None:
        self.deactivate()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.table.setColumnHidden(HOST, self.width() < WIDE)
        super().resizeEvent(event)

    # -- reading --------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the plant on a worker thread; one read at a time (a slow server gets no queue)."""
        project = self.context.project
        if project is None:
            return
        if self._reading:
            self._again = True
            return
        self._reading, self._again = True, False
        person = self.context.person
        run_in_background(lambda: read_snapshot(project, person), lambda snap: self._arrived(project, snap),
                          lambda exc: self._failed(project, exc), owner=self)  # fmt: skip

    def _finished_reading(self, project) -> bool:
        """True when what was read still belongs on screen."""
        self._reading = False
        if self._again and self._active:
            self.refresh()
        return project is self.context.project

    def _arrived(self, project, snapshot: PlantSnapshot) -> None:
        if not self._finished_reading(project):
            return
        self.snapshot = snapshot
        self._show(project, snapshot)
        self.refreshed.emit()

    def _failed(self, project, exc: Exception) -> None:
        if not self._finished_reading(project):
            return
        self.footer.setText(f"Cannot read the stations now: {exc}")
        self.footer.setStyleSheet(f"color: {FAIL}; font-weight: 700;")
        self.refreshed.emit()

    def _project_changed(self) -> None:
        self.snapshot = None
        self.table_model.set_rows([])
        self._set_chips([])
        project = self.context.project
        waiting = "Reading the stations…"
        self.summary.setText(waiting if project is not None else "Open a project to see its stations.")
        self.footer.setText("")
        refuse_tooltip(self.deploy_button, waiting if project is not None else "Open a project first.")
        if project is not None and self._active:
            self.refresh()

    # -- showing --------------------------------------------------------------------------

    def _show(self, project, snapshot: PlantSnapshot) -> None:
        overview = snapshot.overview
        selected = self.selected_station()
        self.table_model.update(overview.rows)
        if selected is not None and (row := self.table_model.row_of(selected)) is not None:
            self.table.selectRow(row)
        self.stack.setCurrentWidget(self.table if overview.rows else self.empty)
        if not overview.rows:
            self.empty.setText(self._empty_text(project))
        online = sum(r.status.online for r in overview.rows)
        counts = (f"{len(overview.rows)} station{'' if len(overview.rows) == 1 else 's'}, {online} online. "
                  if overview.rows else "")
        production = overview.production
        follows = (f"Lines without a pin run the production model {production.version}." if production else
                   overview.production_problem or "No model in production yet.")
        self.summary.setText(counts + follows)
        self._set_chips(overview.lines)
        self.footer.setText(f"Updated {datetime.now():%H:%M:%S}, every {REFRESH_MS // 1000} s while shown. "
                            f"Database: {project.database_url or 'project.db on this PC'}.")
        self.footer.setStyleSheet(f"color: {MUTED};")
        refuse_tooltip(self.deploy_button, snapshot.deploy_refusal, DEPLOY_TIP)

    @staticmethod
    def _empty_text(project) -> str:
        text = ("No station has reported to this project yet.\n\nA station joins when it runs with a name and "
                f"its line:\n{plant_overview.join_hint(project.path)}")
        return text + ("\n\n" + plant_overview.SINGLE_PC_HINT if project.database_url is None else "")

    def _set_chips(self, lines: list[LineRollout]) -> None:
        """One chip per line: "Line A: v4 on 3 of 4 stations · pinned", its border green
        once every station runs it, orange while it rolls out."""
        texts = [(f"{x.summary()} · {x.follows}" if not x.problem else x.summary(), _chip_colour(x)) for x in lines]
        chips = [self.chip_layout.itemAt(i).widget() for i in range(self.chip_layout.count())]
        if texts == [(c.text(), c.property("colour")) for c in chips]:
            return
        while self.chip_layout.count():
            item = self.chip_layout.takeAt(0)
            item.widget().deleteLater()
        for text, colour in texts:
            chip = QLabel(text, self.chips)
            chip.setProperty("colour", colour)
            chip.setStyleSheet(f"border: 3px solid {colour}; border-radius: 8px; padding: 4px 12px; "
                               "font-size: 13pt; font-weight: 600;")
            self.chip_layout.addWidget(chip)
        self.chips.setVisible(bool(texts))

    def chip_texts(self) -> list[str]:
        return [self.chip_layout.itemAt(i).widget().text() for i in range(self.chip_layout.count())]

    def selected_station(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self.table_model.rows[rows[0].row()].status.name if rows else None

    # -- deploying ------------------------------------------------------------------------

    def open_deploy_dialog(self) -> DeployToLineDialog | None:
        """Window-modal without a nested event loop, so a test can click in it."""
        snapshot = self.snapshot
        if snapshot is None or self.context.project is None:
            return None
        if self.deploy_dialog is None:
            self.deploy_dialog = DeployToLineDialog(self.context, self)
            self.deploy_dialog.line_changed.connect(lambda _line: self.refresh())
        selected = self.selected_station()
        line = next((r.status.line for r in snapshot.overview.rows if r.status.name == selected), None)
        self.deploy_dialog.prepare(snapshot.overview.lines, snapshot.versions, line)
        self.deploy_dialog.open()
        return self.deploy_dialog
