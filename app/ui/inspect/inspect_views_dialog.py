"""The "Views…" dialog: up to four views of one part, each a simulated line, a camera or
a hot folder, with a name the screen and the log use ("Top", "Side")."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.core.line_session import MAX_VIEWS
from app.ui.inspect.inspect_views import KINDS, ViewSpec, default_name, duplicate_sources
from app.ui.shared.style import FAIL

FIRST_CAMERA_TEXT = "as in Capture"  # view 1's camera: the index the Capture workspace uses


class ViewRow(QWidget):
    """One view: name, kind, and the camera index or folder its kind needs."""

    remove_requested = Signal(object)

    def __init__(self, index: int, spec: ViewSpec, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.name_edit = QLineEdit(spec.name)
        self.name_edit.setMaxLength(40)
        self.name_edit.setMaximumWidth(130)
        self.name_edit.setAccessibleName("View name")
        self.kind_combo = QComboBox()
        for key, text in KINDS:
            self.kind_combo.addItem(text.rstrip("…"), key)
        self.kind_combo.setCurrentIndex(max(0, self.kind_combo.findData(spec.kind)))
        self.camera_spin = QSpinBox()
        self.camera_spin.setRange(-1 if index == 0 else 0, 63)
        self.camera_spin.setSpecialValueText(FIRST_CAMERA_TEXT)
        self.camera_spin.setPrefix("Camera ")
        self.camera_spin.setValue(spec.camera if spec.camera is not None else (-1 if index == 0 else index))
        self.folder_edit = QLineEdit(spec.folder)
        self.folder_edit.setPlaceholderText("asked at Start" if index == 0 else "the folder the camera writes to")
        self.browse_button = QPushButton("Browse…")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setVisible(index > 0)  # a part has at least one view
        for widget in (self.name_edit, self.kind_combo, self.camera_spin):
            layout.addWidget(widget)
        layout.addWidget(self.folder_edit, 1)
        layout.addWidget(self.browse_button)
        layout.addStretch(0)  # a camera row keeps its fields left, Remove right
        layout.addWidget(self.remove_button)
        self.kind_combo.currentIndexChanged.connect(lambda _i: self._show_kind())
        self.browse_button.clicked.connect(lambda: self._browse())
        self.remove_button.clicked.connect(lambda: self.remove_requested.emit(self))
        self._show_kind()

    def kind(self) -> str:
        return str(self.kind_combo.currentData())

    def _show_kind(self) -> None:
        kind = self.kind()
        self.camera_spin.setVisible(kind == "camera")
        self.folder_edit.setVisible(kind == "folder")
        self.browse_button.setVisible(kind == "folder")

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Hot folder of this view", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    def spec(self, index: int) -> ViewSpec:
        camera = self.camera_spin.value()
        return ViewSpec(
            name=self.name_edit.text().strip() or default_name(index), kind=self.kind(),
            camera=None if camera < 0 else camera, folder=self.folder_edit.text().strip(),
        )  # fmt: skip


class ViewsDialog(QDialog):
    """Edits the list of views; `views()` is the result once accepted."""

    def __init__(self, views: list[ViewSpec], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Views of a part")
        self.setMinimumWidth(720)
        layout = QVBoxLayout(self)
        intro = QLabel(f"Up to {MAX_VIEWS} views look at the same part. One trigger captures every view; "
                       "the part FAILs if any view fails, and the screen says which one.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self._rows_layout = QVBoxLayout()
        layout.addLayout(self._rows_layout)
        self.rows: list[ViewRow] = []
        self.add_button = QPushButton("&Add view")
        self.add_button.clicked.connect(lambda: self._add_row(ViewSpec(default_name(len(self.rows)))))
        self.problem = QLabel("")
        self.problem.setStyleSheet(f"color: {FAIL}; font-weight: bold;")
        self.problem.setWordWrap(True)
        for spec in views:
            self._add_row(spec)
        add_row = QHBoxLayout()
        add_row.addWidget(self.add_button)
        add_row.addStretch(1)
        layout.addLayout(add_row)
        layout.addWidget(self.problem)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.buttons.accepted.connect(self._accept_if_valid)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self._update_add()

    def _add_row(self, spec: ViewSpec) -> None:
        if len(self.rows) >= MAX_VIEWS:
            return
        row = ViewRow(len(self.rows), spec)
        row.remove_requested.connect(self._remove_row)
        self.rows.append(row)
        self._rows_layout.addWidget(row)
        row.show()  # in an open dialog, at once (not after the next turn of the event loop)
        self._update_add()

    def _remove_row(self, row: ViewRow) -> None:
        self.rows.remove(row)
        self._rows_layout.removeWidget(row)
        row.deleteLater()
        self._update_add()

    def _update_add(self) -> None:
        self.add_button.setEnabled(len(self.rows) < MAX_VIEWS)
        self.problem.setText("")

    def views(self) -> list[ViewSpec]:
        return [row.spec(i) for i, row in enumerate(self.rows)]

    def problem_with(self, views: list[ViewSpec]) -> str | None:
        """Why these views cannot be saved, or None."""
        names = [v.name for v in views]
        if len(set(names)) < len(names):
            return "Give each view its own name: the screen and the log tell views apart by it."
        missing = next((v for i, v in enumerate(views) if i > 0 and v.kind == "folder" and not v.folder), None)
        if missing is not None:
            return f"Choose the hot folder of {missing.name}."
        return duplicate_sources(views)

    def _accept_if_valid(self) -> None:
        problem = self.problem_with(self.views())
        if problem:
            self.problem.setText(problem)
            return
        self.accept()
