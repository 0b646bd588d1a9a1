"""The audit trail in the app: every entry (when, who, action, what), filterable, with
the hash-chain check at the top.

The check is the point of the view: a quality manager reads the entries only after
Lineside says they have not been edited since they were written. A broken chain is
shown in red above everything else, naming the first entry that does not fit.
"""

from __future__ import annotations

import json

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.core import audit
from app.core.audit import Entry, Verification
from app.ui.shared.style import PASS
from app.ui.shared.table_models import ListTableModel

ALL_ACTIONS = ""
WHAT_CHARS = 160  # the table shows this much of an entry's details; the tooltip all of it


# Keys that say most about an entry come first: the column is cut after WHAT_CHARS.
LEADING_KEYS = ("version", "candidate", "name", "to", "from", "image_id", "reason", "passed", "role")


def _value_text(value: object) -> str:
    if value is None:
        return "–"
    return str(value) if isinstance(value, (str, int, float)) else json.dumps(value, default=str)


def what_text(what: object) -> str:
    """An entry's details on one line: `key: value` pairs, nested values as JSON."""
    if isinstance(what, dict):
        keys = sorted(what, key=lambda k: (LEADING_KEYS.index(k) if k in LEADING_KEYS else len(LEADING_KEYS), k))
        return ", ".join(f"{k}: {_value_text(what[k])}" for k in keys)
    return what if isinstance(what, str) else json.dumps(what, default=str)


def local_time(entry: Entry) -> str:
    return entry.when.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def matches(entry: Entry, action: str, text: str) -> bool:
    if action and entry.action != action:
        return False
    if not text:
        return True
    haystack = " ".join((local_time(entry), entry.actor, entry.action, what_text(entry.what))).casefold()
    return all(word in haystack for word in text.casefold().split())


class AuditTableModel(ListTableModel):
    columns = ("#", "When", "Who", "Action", "What")

    def cell(self, entry: Entry, column: int, role: Qt.ItemDataRole):
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            what = what_text(entry.what)
            if role == Qt.ItemDataRole.DisplayRole and len(what) > WHAT_CHARS:
                what = what[:WHAT_CHARS - 1] + "…"
            return (str(entry.id), local_time(entry), entry.actor or "–", entry.action, what)[column]
        return None


class ChainBanner(QFrame):
    """Green line when the chain holds; a red alarm with the core's words when it does not."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.label)
        self.intact: bool | None = None

    def show_result(self, result: Verification) -> None:
        self.intact = result.intact
        if result.intact:
            self.setProperty("role", "")
            self.label.setText(f"✓ {result.describe()}. No entry was edited, inserted or removed since it was "
                               "written (compare the count and head with your last shift report to see none "
                               "were cut off the end).")
            self.label.setStyleSheet(f"color: {PASS}; font-weight: 700;")
        else:
            self.setProperty("role", "alarm")  # the stylesheet's red alarm frame
            self.label.setText(f"⚠ {result.describe()}\nEntries from {result.broken_id} on cannot be trusted. "
                               "Keep a copy of project.db as it is and report it.")
            self.label.setStyleSheet("")
        self.style().unpolish(self)
        self.style().polish(self)


class AuditDialog(QDialog):
    def __init__(self, context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.setWindowTitle("Audit trail")
        self.resize(980, 640)
        self.entries: list[Entry] = []
        self.verification: Verification | None = None
        layout = QVBoxLayout(self)
        self.banner = ChainBanner()
        layout.addWidget(self.banner)
        filters = QHBoxLayout()
        filters.addWidget(QLabel("Action"))
        self.action_box = QComboBox()
        self.action_box.setMinimumWidth(240)
        self.action_box.currentIndexChanged.connect(lambda _i: self.apply_filter())
        filters.addWidget(self.action_box)
        filters.addWidget(QLabel("Search"))
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("name, version, image id…")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.textChanged.connect(lambda _t: self.apply_filter())
        filters.addWidget(self.search_edit, 1)
        layout.addLayout(filters)
        self.table_model = AuditTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        layout.addWidget(self.table, 1)
        bottom = QHBoxLayout()
        self.count_label = QLabel("")
        self.count_label.setProperty("role", "hint")
        bottom.addWidget(self.count_label, 1)
        self.refresh_button = QPushButton("Check again")
        self.close_button = QPushButton("Close")
        for button in (self.refresh_button, self.close_button):
            button.setAutoDefault(False)
            bottom.addWidget(button)
        layout.addLayout(bottom)
        self.refresh_button.clicked.connect(lambda: self.reload())
        self.close_button.clicked.connect(lambda: self.accept())

    def reload(self) -> None:
        """Verify the whole chain, then read the entries (newest first)."""
        project = self.context.project
        if project is None:
            self.entries, self.verification = [], None
            self.table_model.set_rows([])
            self.count_label.setText("Open a project to see its audit trail.")
            return
        self.verification = audit.verify(project)
        self.banner.show_result(self.verification)
        self.entries = list(reversed(audit.entries(project)))
        current = self.action_box.currentData()
        self.action_box.blockSignals(True)
        self.action_box.clear()
        self.action_box.addItem("All actions", ALL_ACTIONS)
        for action in sorted({e.action for e in self.entries}):
            self.action_box.addItem(action, action)
        self.action_box.setCurrentIndex(max(0, self.action_box.findData(current)))
        self.action_box.blockSignals(False)
        self.apply_filter()

    def set_action(self, action: str) -> None:
        self.action_box.setCurrentIndex(max(0, self.action_box.findData(action)))

    def apply_filter(self) -> None:
        action = self.action_box.currentData() or ALL_ACTIONS
        text = self.search_edit.text().strip()
        shown = [e for e in self.entries if matches(e, action, text)]
        self.table_model.set_rows(shown)
        self.count_label.setText(f"{len(shown)} of {len(self.entries)} entries, newest first")

    def shown_entries(self) -> list[Entry]:
        return list(self.table_model.rows)
