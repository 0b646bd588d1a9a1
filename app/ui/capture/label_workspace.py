"""Labeling: the filmstrip, the canvas, the class bar; keyboard first.

Keys: 0 or G = OK, 1-9 = the defect class with that key, arrows = previous/next image,
Ctrl+Z = undo the last label change, Delete = back to unlabeled, B/E/P/H = brush, eraser, polygon, pan,
[ and ] = brush size, F = fit. Every label is saved (set_label commits) before the
"Saved" line says so; a failure says "NOT saved" in red and nothing shows as done.
Once a project has roles, labels carry the signed-in person's name, and what needs an
engineer (adding classes, the golden set) is greyed out for anyone else.
"""

from __future__ import annotations

import logging

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QColorDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.core.errors import LinesideError
from app.core.records import OK
from app.ui.capture.filmstrip import Filmstrip
from app.ui.capture.label_canvas import LabelCanvas
from app.ui.shared.flow_layout import FlowLayout
from app.ui.shared.style import FAIL, PASS, readable_text_on
from app.ui.trust.gate_dialog import GoldenButton
from app.ui.trust.people_dialogs import refuse_tooltip

log = logging.getLogger(__name__)

TOOL_KEYS = {"brush": "B", "eraser": "E", "polygon": "P", "pan": "H"}
CLASS_BUTTON_HEIGHT = 56


class LabelWorkspace(QWidget):
    def __init__(self, context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.project = None
        self.image_id: int | None = None
        self.verdict: str | None = None
        self.paint_class: str | None = None  # the class a stroke on an unlabeled image gets
        self.classes: list = []
        self.advance_after_ok = str(context.settings.value("label/advance_after_ok", "true")).lower() == "true"
        self._history: list[int] = []  # image ids in the order they were labeled: Ctrl+Z walks back
        self._shortcuts: list[QShortcut] = []

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        # The class buttons wrap onto a second row: a project may have nine classes, more
        # than fit beside the camera on a 1024 px screen, and every one stays in sight.
        self.class_strip = QWidget()
        self.class_bar = FlowLayout(self.class_strip)
        layout.addWidget(self.class_strip)

        tools = QHBoxLayout()
        self.tool_group = QButtonGroup(self)
        self.tool_buttons: dict[str, QPushButton] = {}
        for tool, key in TOOL_KEYS.items():
            button = QPushButton(f"{tool.capitalize()}  ({key})")
            button.setCheckable(True)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.setStyleSheet("padding: 0 8px;")
            button.clicked.connect(lambda _c=False, t=tool: self.set_tool(t))
            self.tool_group.addButton(button)
            self.tool_buttons[tool] = button
            tools.addWidget(button)
        self.tool_buttons["brush"].setChecked(True)
        tools.addStretch(1)
        layout.addLayout(tools)
        tools = QHBoxLayout()  # a second row: in one they need more than 1024 px allows
        tools.addWidget(QLabel("Size"))
        self.size_spin = QSpinBox()
        self.size_spin.setRange(1, 200)
        self.size_spin.setValue(12)
        self.size_spin.setSuffix(" px")
        self.size_spin.valueChanged.connect(lambda v: self.canvas.set_brush_radius(v))
        tools.addWidget(self.size_spin)
        self.clear_button = QPushButton("Clear mask")
        self.fit_button = QPushButton("Fit  (F)")
        self.golden_button = GoldenButton(context)
        for button in (self.clear_button, self.fit_button, self.golden_button):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            tools.addWidget(button)
        tools.addStretch(1)
        layout.addLayout(tools)

        split = QSplitter(Qt.Orientation.Horizontal)
        self.filmstrip = Filmstrip()
        self.filmstrip.setMinimumWidth(150)
        self.canvas = LabelCanvas()
        split.addWidget(self.filmstrip)
        split.addWidget(self.canvas)
        split.setStretchFactor(1, 1)
        split.setSizes([300, 900])
        layout.addWidget(split, 1)

        self.info = QLabel("")
        self.info.setProperty("role", "hint")
        self.saved = QLabel("")
        self.saved.setStyleSheet("font-size: 14pt; font-weight: 700;")
        status = QHBoxLayout()
        status.addWidget(self.info, 1)
        status.addWidget(self.saved)
        layout.addLayout(status)

        options = QHBoxLayout()
        options.addWidget(QLabel("Labeled by"))
        self.author_edit = QLineEdit(str(context.settings.value("label/author", "")))
        self.author_edit.setPlaceholderText("your name or badge number")
        self.author_edit.setMaximumWidth(260)
        self.author_edit.setMinimumWidth(120)
        self.author_edit.editingFinished.connect(self._author_edited)
        options.addWidget(self.author_edit)
        self.advance_box = QCheckBox("Next image after OK")
        self.advance_box.setChecked(self.advance_after_ok)
        self.advance_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.advance_box.toggled.connect(self._advance_toggled)
        options.addWidget(self.advance_box)
        options.addStretch(1)
        layout.addLayout(options)

        self.filmstrip.image_selected.connect(self.show_image)
        self.canvas.mask_edited.connect(self._mask_edited)
        self.clear_button.clicked.connect(self.canvas.clear_mask)
        self.fit_button.clicked.connect(self.canvas.fit)
        context.project_changed.connect(self.set_project)
        context.images_changed.connect(self._images_changed)
        context.labels_changed.connect(self._label_changed_elsewhere)
        context.access_changed.connect(self._access_changed)
        context.golden_changed.connect(self._golden_changed)
        self.golden_button.message.connect(self._show_saved)
        self.install_shortcuts(self)
        self.set_project(context.project)

    # -- keyboard -------------------------------------------------------------------

    def install_shortcuts(self, host: QWidget) -> None:
        """Bind the labeling keys on *host* (the whole Capture & Label tab)."""
        for shortcut in self._shortcuts:
            shortcut.setEnabled(False)
            shortcut.deleteLater()
        bindings = [("0", lambda: self.label_current(OK)), ("G", lambda: self.label_current(OK)),
                    ("Left", lambda: self.move(-1)), ("Up", lambda: self.move(-1)),
                    ("Right", lambda: self.move(1)), ("Down", lambda: self.move(1)),
                    (QKeySequence.StandardKey.Undo, self.undo), ("[", lambda: self._grow_brush(-2)),
                    ("]", lambda: self._grow_brush(2)), ("F", self.canvas.fit),
                    ("Del", self.clear_label)]  # fmt: skip
        bindings += [(str(k), lambda k=k: self.label_with_key(k)) for k in range(1, 10)]
        bindings += [(key, lambda t=tool: self.set_tool(t)) for tool, key in TOOL_KEYS.items()]
        self._shortcuts = []
        for key, slot in bindings:
            shortcut = QShortcut(QKeySequence(key), host)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(slot)
            self._shortcuts.append(shortcut)

    def set_shortcuts_enabled(self, on: bool) -> None:
        for shortcut in self._shortcuts:
            shortcut.setEnabled(on)

    # -- project and classes ----------------------------------------------------------

    def set_project(self, project) -> None:
        self.project = project
        self.image_id, self.verdict, self._history = None, None, []
        self.canvas.set_image(None)
        self.golden_button.show_image(None)
        self.saved.setText("")
        self.reload_classes()
        self.filmstrip.set_project(project)
        if project is not None and self.filmstrip.ids():
            self.filmstrip.select(self.filmstrip.ids()[-1])

    def reload_classes(self) -> None:
        while self.class_bar.count():
            widget = self.class_bar.takeAt(0).widget()
            if widget is not None:
                # Hidden and unparented now: deleteLater alone leaves it on screen
                # until the event loop comes round.
                widget.hide()
                widget.setParent(None)
                widget.deleteLater()
        self.classes = self.project.classes() if self.project is not None else []
        if self.paint_class not in {c.name for c in self.classes}:
            self.paint_class = self.classes[0].name if self.classes else None
        self.class_buttons: dict[str, QPushButton] = {}
        ok = QPushButton("OK  (0 / G)")
        ok.setStyleSheet(f"background: {PASS}; color: white; font-size: 15pt;")
        ok.clicked.connect(lambda: self.label_current(OK))
        self.class_buttons[OK] = ok
        for cls in self.classes:
            key = f"{cls.key}  " if cls.key else ""
            button = QPushButton(f"{key}{cls.name}")
            button.setStyleSheet(f"background: {cls.color}; color: {readable_text_on(cls.color)}; font-size: 15pt;")
            button.clicked.connect(lambda _c=False, name=cls.name: self.label_current(name))
            self.class_buttons[cls.name] = button
        add = QPushButton("+ Add class")
        add.clicked.connect(self.add_class_dialog)
        refuse_tooltip(add, self.context.refusal("edit_classes"))
        self.class_buttons["+"] = add
        for button in self.class_buttons.values():
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.setMinimumHeight(CLASS_BUTTON_HEIGHT)
            self.class_bar.addWidget(button)

    def add_class_dialog(self) -> None:
        if self.project is None:
            return
        refusal = self.context.refusal("edit_classes")
        if refusal is not None:
            self._show_saved(refusal, ok=False)
            return
        name, ok = QInputDialog.getText(self, "Add a defect class", "Name of the defect (e.g. scratch, crack, dent):")
        if not ok or not name.strip():
            return
        color = QColorDialog.getColor(parent=self, title=f"Colour for {name.strip()}")
        try:
            cls = self.project.add_class(name, color.name() if color.isValid() else None)
        except LinesideError as exc:
            self._show_saved(str(exc), ok=False)
            return
        self.paint_class = cls.name
        self.reload_classes()
        self.filmstrip.reload(select_id=self.image_id)

    def class_color(self, name: str | None) -> str:
        for cls in self.classes:
            if cls.name == name:
                return cls.color
        return FAIL

    # -- showing --------------------------------------------------------------------

    def show_image(self, image_id: int) -> None:
        if self.project is None:
            return
        try:
            image = self.project.load_image(image_id)
            label = self.project.label(image_id)
            mask = self.project.load_mask(label) if label is not None else None
        except LinesideError as exc:
            self.canvas.set_image(None)
            self.canvas.placeholder = str(exc)
            self.image_id = None
            return
        self.image_id = image_id
        self.verdict = label.verdict if label else None
        self.canvas.set_image(image, mask, self.class_color(self.verdict if self.verdict != OK else self.paint_class))
        self.golden_button.show_image(image_id)
        if self.filmstrip.current_id() != image_id:
            self.filmstrip.select(image_id, emit=False)
        self._update_info()

    def _update_info(self) -> None:
        if self.image_id is None or self.project is None:
            self.info.setText("")
            return
        record = self.project.image(self.image_id)
        verdict = self.verdict or "unlabeled"
        self.info.setText(f"Image #{record.id} · {record.width}×{record.height} · {record.source} · {verdict}")
        for name, button in self.class_buttons.items():
            button.setText(button.text().replace("  ✓", "") + ("  ✓" if name == self.verdict else ""))

    def select(self, image_id: int) -> None:
        """Show *image_id*, switching the filmstrip filter to All if it is hidden."""
        if not self.filmstrip.select(image_id, emit=False):
            self.filmstrip.reload()
            if not self.filmstrip.select(image_id, emit=False):
                self.filmstrip.set_filter("all")
                self.filmstrip.select(image_id, emit=False)
        self.show_image(image_id)

    def move(self, delta: int) -> None:
        image_id = self.filmstrip.move(delta)
        if image_id is not None and image_id != self.image_id:
            self.show_image(image_id)

    def set_tool(self, tool: str) -> None:
        self.canvas.set_tool(tool)
        self.tool_buttons[tool].setChecked(True)

    def _grow_brush(self, step: int) -> None:
        self.size_spin.setValue(self.size_spin.value() + step)

    # -- labeling ---------------------------------------------------------------------

    def label_with_key(self, key: int) -> None:
        for cls in self.classes:
            if cls.key == key:
                self.label_current(cls.name)
                return
        self.context.status_message.emit(f"No defect class on key {key}. Add one with '+ Add class'.")

    def label_current(self, verdict: str) -> None:
        if self.image_id is None or self.project is None:
            return
        mask = None
        if verdict != OK:
            self.paint_class = verdict
            mask = self.canvas.mask if self.canvas.mask is not None and self.canvas.mask.any() else None
        if self._save(verdict, mask) and verdict == OK:
            self.canvas.set_mask(None)
            if self.advance_after_ok:
                self.move(1)

    def clear_label(self) -> None:
        """Back to unlabeled (a new row: the old label stays in the history, Ctrl+Z restores it)."""
        if self.image_id is not None and self.project is not None and self.verdict is not None:
            if self._save(None, None):
                self.canvas.set_mask(None)

    def _mask_edited(self, mask: np.ndarray) -> None:
        if self.image_id is None or self.project is None:
            return
        verdict = self.verdict if self.verdict not in (None, OK) else self.paint_class
        if verdict is None:
            self._show_saved("Add a defect class first: a painted region needs a class.", ok=False)
            self.canvas.set_mask(None)
            return
        self._save(verdict, mask)

    def _save(self, verdict: str | None, mask: np.ndarray | None) -> bool:
        image_id = self.image_id
        assert image_id is not None and self.project is not None
        try:
            label = self.project.set_label(image_id, verdict, mask=mask, author=self._author())
        except LinesideError as exc:
            self._show_saved(f"NOT saved: {exc}", ok=False)
            return False
        self.verdict = label.verdict
        self._history.append(image_id)
        self.canvas.set_color(self.class_color(self.verdict if self.verdict != OK else self.paint_class))
        painted = " with region" if label.mask_path is not None else ""
        self._show_saved(f"Saved ✓  #{image_id} → {label.verdict or 'unlabeled'}{painted}", ok=True)
        self._after_change(image_id)
        return True

    def undo(self) -> None:
        if self.project is None:
            return
        image_id = self._history.pop() if self._history else self.image_id
        if image_id is None:
            return
        try:
            label = self.project.undo_label(image_id)
        except LinesideError as exc:
            self._show_saved(f"NOT undone: {exc}", ok=False)
            return
        self._after_change(image_id)
        self.select(image_id)
        self._show_saved(f"Undone ✓  #{image_id} is {label.verdict if label else 'unlabeled'} again", ok=True)

    def _after_change(self, image_id: int) -> None:
        self._update_info()
        self.golden_button.show_image(self.image_id)  # a golden part needs a label
        self.context.labels_changed.emit(image_id)  # updates the filmstrip too

    def _images_changed(self) -> None:
        # An import may have brought new classes along.
        if self.project is not None and [c.name for c in self.project.classes()] != [c.name for c in self.classes]:
            self.reload_classes()
        self.filmstrip.reload(select_id=self.image_id)

    def _label_changed_elsewhere(self, image_id: int) -> None:
        # Inspect's "wrong verdict" correction, or our own change echoing back.
        self.filmstrip.update_image(image_id)
        if self.project is None:
            return
        label = self.project.label(image_id)
        if label is not None and label.verdict not in (OK, *(c.name for c in self.classes)):
            self.reload_classes()  # labeled with a class added elsewhere
        if image_id == self.image_id:
            if (label.verdict if label else None) != self.verdict:
                self.show_image(image_id)

    def _show_saved(self, text: str, ok: bool) -> None:
        self.saved.setText(text)
        self.saved.setStyleSheet(f"font-size: 14pt; font-weight: 700; color: {PASS if ok else FAIL};")

    def _author(self) -> str:
        person = self.context.person
        return person.name if person is not None else str(self.context.settings.value("label/author", ""))

    def _access_changed(self) -> None:
        # Signed in: labels are that person's; the free-text name is for projects without roles.
        person = self.context.person
        self.author_edit.setReadOnly(person is not None)
        self.author_edit.setText(person.name if person else str(self.context.settings.value("label/author", "")))
        refuse_tooltip(self.class_buttons["+"], self.context.refusal("edit_classes"))
        self.golden_button.show_image(self.image_id)

    def _golden_changed(self) -> None:
        self.filmstrip.update_golden()
        self.golden_button.show_image(self.image_id)

    def _author_edited(self) -> None:
        if self.context.person is None:
            self.context.settings.setValue("label/author", self.author_edit.text().strip())
        self.canvas.setFocus()  # back to the labeling keys

    def _advance_toggled(self, on: bool) -> None:
        self.advance_after_ok = on
        self.context.settings.setValue("label/advance_after_ok", "true" if on else "false")
