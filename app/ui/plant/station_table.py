"""The stations table of the Plant workspace: one row per station, its state cell coloured.

Colour only where someone walking past must notice: green while a station runs, orange
for a drift warning or a model still rolling out, red when it is offline or in error.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont

from app.core.plant_overview import StationRow, ago
from app.ui.shared.style import FAIL, INK, MUTED, PANEL, PASS, WARN
from app.ui.shared.table_models import ListTableModel

# Two-word headers on two lines and the host last: on a narrow screen the workspace hides
# the host (the station's tooltip names it) so that the drift warning and the station's
# last problem stay in sight.
COLUMNS = ("Station", "Line", "Model", "State", "Last seen", "Parts\ntoday", "Yield\ntoday", "Backlog",
           "Drift / message", "Host")
STATION, MODEL, STATE, LAST_SEEN, BACKLOG, NOTE, HOST = 0, 2, 3, 4, 7, 8, 9
NUMBERS = (5, 6, BACKLOG)
# (background, text) of the state cell
STATE_COLOURS = {
    "running": (PASS, "white"), "drift warning": (WARN, "white"), "offline": (FAIL, "white"),
    "error": (FAIL, "white"), "stopped": (MUTED, "white"), "starting": (PANEL, INK),
}  # fmt: skip


def _bold() -> QFont:
    font = QFont()
    font.setBold(True)
    return font


class StationTableModel(ListTableModel):
    columns = COLUMNS

    def update(self, rows: list[StationRow]) -> None:
        """New figures for the same stations change the cells only, so the selection and
        the scroll position survive the refresh every two seconds."""
        if [r.status.name for r in rows] != [r.status.name for r in self.rows]:
            self.set_rows(rows)
            return
        self.rows = list(rows)
        if rows:
            self.dataChanged.emit(self.index(0, 0), self.index(len(rows) - 1, len(COLUMNS) - 1))

    def row_of(self, station: str) -> int | None:
        return next((i for i, r in enumerate(self.rows) if r.status.name == station), None)

    def cell(self, row: StationRow, column: int, role: Qt.ItemDataRole):
        s = row.status
        if role == Qt.ItemDataRole.DisplayRole:
            return (s.name, s.line, row.model_text(), s.shown_state, ago(row.seconds_since_seen), f"{s.parts_today:,}",
                    row.yield_text(), str(s.buffered), row.note() or "-", s.host or "-")[column]
        if column == STATE and role in (Qt.ItemDataRole.BackgroundRole, Qt.ItemDataRole.ForegroundRole):
            background, text = STATE_COLOURS.get(s.shown_state, (PANEL, INK))
            return QColor(background if role == Qt.ItemDataRole.BackgroundRole else text)
        if role == Qt.ItemDataRole.ForegroundRole:
            if column == MODEL and not row.done and row.wanted is not None:
                return QColor(WARN)
            if column == LAST_SEEN and not s.online:
                return QColor(FAIL)
        if role == Qt.ItemDataRole.FontRole and (column == STATE or (column == MODEL and not row.done)):
            return _bold()
        if role == Qt.ItemDataRole.TextAlignmentRole and column in NUMBERS:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(row, column)
        return None

    @staticmethod
    def _tooltip(row: StationRow, column: int) -> str | None:
        s = row.status
        if column == STATION:
            return f"{s.name} on {s.host or 'an unnamed host'}, line {s.line}."
        if column == NOTE:
            return row.note() or None
        if column == MODEL:
            wanted = row.wanted
            goal = f"Its line should run {wanted.version} (file hash {wanted.sha256[:12]}…)." if wanted else \
                "Its line has no model in production yet."
            return f"Runs {s.model_version or 'no model'} (file hash {(s.model_sha or '-')[:12]}…). {goal}"
        if column == LAST_SEEN:
            return f"Last heartbeat {s.last_seen.astimezone():%Y-%m-%d %H:%M:%S}; running since " \
                   f"{s.started_at.astimezone():%Y-%m-%d %H:%M:%S}."
        if column == BACKLOG:
            return "Results the station judged that are still waiting in its outbox for the database."
        return None
