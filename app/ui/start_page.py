"""The start page: open the demo, create a project, open one, or pick a recent one.

On first run (no recent projects) the demo and "create" are the two big buttons: a
new user should see the whole loop working within a minute.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.ui.shared.style import TOUCH


def _default_projects_dir() -> Path:
    try:
        from app.core.userdirs import projects_dir

        return projects_dir()
    except Exception:
        return Path.home()


class StartPage(QWidget):
    open_requested = Signal(str)
    create_requested = Signal(str)
    demo_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        outer = QHBoxLayout(self)
        outer.addStretch(1)
        column = QVBoxLayout()
        column.setSpacing(16)
        outer.addLayout(column, 4)
        outer.addStretch(1)

        column.addStretch(1)
        title = QLabel("Lineside")
        title.setProperty("role", "title")
        subtitle = QLabel("Capture parts, label them, retrain with one button, inspect at the line.")
        subtitle.setProperty("role", "subtitle")
        subtitle.setWordWrap(True)
        column.addWidget(title)
        column.addWidget(subtitle)

        buttons = QHBoxLayout()
        buttons.setSpacing(12)
        self.demo_button = QPushButton("Open the demo project")
        self.create_button = QPushButton("Create a new project…")
        self.open_button = QPushButton("Open a project…")
        for button in (self.demo_button, self.create_button, self.open_button):
            button.setMinimumHeight(TOUCH + 24)
            button.setStyleSheet("font-size: 15pt;")
            buttons.addWidget(button)
        column.addLayout(buttons)
        self.demo_button.clicked.connect(self.demo_requested)
        self.create_button.clicked.connect(self._choose_new_folder)
        self.open_button.clicked.connect(self._choose_existing_folder)

        self.busy_label = QLabel("")
        self.busy_label.setProperty("role", "subtitle")
        column.addWidget(self.busy_label)

        self.recent_title = QLabel("Recent projects")
        self.recent_title.setStyleSheet("font-size: 16pt; font-weight: 700; margin-top: 12px;")
        column.addWidget(self.recent_title)
        self.recent_list = QListWidget()
        self.recent_list.setStyleSheet("QListWidget::item { min-height: 56px; padding: 4px 12px; font-size: 14pt; }")
        self.recent_list.itemActivated.connect(self._open_item)
        self.recent_list.itemClicked.connect(self._open_item)
        column.addWidget(self.recent_list, 3)
        self.empty_hint = QLabel(
            "No projects yet. The demo project comes with a simulated camera and generated parts, "
            "so you can try capturing, labeling, training and inspecting right away."
        )
        self.empty_hint.setWordWrap(True)
        self.empty_hint.setProperty("role", "hint")
        column.addWidget(self.empty_hint)
        column.addStretch(1)

    def set_recent(self, paths: list[str]) -> None:
        self.recent_list.clear()
        for path in paths:
            exists = (Path(path) / "lineside.db").exists() or Path(path).is_dir()
            item = QListWidgetItem(f"{Path(path).name}    —    {path}" + ("" if exists else "    (missing)"))
            item.setData(Qt.ItemDataRole.UserRole, path)
            item.setToolTip(path)
            if not exists:
                item.setForeground(Qt.GlobalColor.gray)
            self.recent_list.addItem(item)
        first_run = not paths
        self.recent_title.setVisible(not first_run)
        self.recent_list.setVisible(not first_run)
        self.empty_hint.setVisible(first_run)
        # First run: the two ways in are the prominent ones.
        self.demo_button.setProperty("primary", first_run)
        self.create_button.setProperty("primary", first_run)
        for button in (self.demo_button, self.create_button):
            button.style().unpolish(button)
            button.style().polish(button)
        if not first_run:
            self.recent_list.setCurrentRow(0)

    def set_busy(self, text: str) -> None:
        """Show what is happening (e.g. the demo being generated) and block the buttons."""
        self.busy_label.setText(text)
        for widget in (self.demo_button, self.create_button, self.open_button, self.recent_list):
            widget.setEnabled(not text)

    def _open_item(self, item: QListWidgetItem) -> None:
        self.open_requested.emit(str(item.data(Qt.ItemDataRole.UserRole)))

    def _choose_new_folder(self) -> None:
        folder = QFileDialog.getSaveFileName(
            self, "Create a project: choose a name for the new project folder", str(_default_projects_dir() / "New project"),
            options=QFileDialog.Option.DontConfirmOverwrite,
        )[0]
        if folder:
            self.create_requested.emit(folder)

    def _choose_existing_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a project folder", str(_default_projects_dir()))
        if folder:
            self.open_requested.emit(folder)
