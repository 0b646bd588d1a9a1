"""Who is at the station: the sign-in dialog and the People dialog (the status-bar
control and the Trust menu that open them are in app/ui/trust/station_access.py).

The core (app/core/people.py) holds the people, checks PINs and decides who may do
what; these widgets only ask it and say its answers. A project without people shows
"No roles set up" and everything works as for a single user.

The dialogs open window-modal but without a nested event loop (`open()`), so a test can
fill them in and click their buttons like a person would.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core import people
from app.core.errors import LinesideError
from app.ui.shared.style import FAIL, PASS, WARN

NEEDS_ENGINEER = "needs an engineer"


def pin_field() -> QLineEdit:
    """A PIN entry: masked, and kept away from input-method prediction and history."""
    edit = QLineEdit()
    edit.setEchoMode(QLineEdit.EchoMode.Password)
    edit.setInputMethodHints(Qt.InputMethodHint.ImhHiddenText | Qt.InputMethodHint.ImhSensitiveData
                             | Qt.InputMethodHint.ImhNoPredictiveText)
    edit.setMaxLength(64)
    return edit


def say(label: QLabel, text: str, ok: bool) -> None:
    label.setText(text)
    label.setStyleSheet(f"color: {PASS if ok else FAIL}; font-weight: 700;")


def refuse_tooltip(widget: QWidget, refusal: str | None, allowed_tip: str = "") -> None:
    """Enable *widget* when the core allows it; otherwise grey it out and say why."""
    widget.setEnabled(refusal is None)
    if refusal is None:
        widget.setToolTip(allowed_tip)
    else:
        first = refusal if NEEDS_ENGINEER not in refusal else f"This {NEEDS_ENGINEER}. {refusal}"
        widget.setToolTip(first)


class SignInDialog(QDialog):
    """Name and PIN; signs in (or out) the person at this station."""

    def __init__(self, context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.setWindowTitle("Sign in")
        self.setMinimumWidth(520)
        layout = QVBoxLayout(self)
        self.current = QLabel()
        self.current.setWordWrap(True)
        layout.addWidget(self.current)
        form = QGridLayout()
        self.name_box = QComboBox()
        self.name_box.setEditable(True)  # pick from the list, or type (a long list on a panel PC)
        self.name_box.setMinimumWidth(280)
        self.pin_edit = pin_field()
        self.pin_edit.returnPressed.connect(self.submit)
        form.addWidget(QLabel("Name"), 0, 0)
        form.addWidget(self.name_box, 0, 1)
        form.addWidget(QLabel("PIN"), 1, 0)
        form.addWidget(self.pin_edit, 1, 1)
        layout.addLayout(form)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        buttons = QHBoxLayout()
        self.sign_in_button = QPushButton("Sign in")
        self.sign_in_button.setProperty("primary", True)
        self.sign_out_button = QPushButton("Sign out")
        self.close_button = QPushButton("Close")
        for button in (self.sign_in_button, self.sign_out_button, self.close_button):
            button.setAutoDefault(False)
            buttons.addWidget(button)
        layout.addLayout(buttons)
        self.sign_in_button.clicked.connect(lambda: self.submit())
        self.sign_out_button.clicked.connect(lambda: self.sign_out())
        self.close_button.clicked.connect(lambda: self.reject())
        self.prepare()

    def prepare(self) -> None:
        """Fresh fields for the next person: the PIN of the last one never stays."""
        project, person = self.context.project, self.context.person
        self.name_box.clear()
        if project is not None:
            self.name_box.addItems([p.name for p in people.people(project)])
        self.name_box.setCurrentIndex(-1)
        self.name_box.setEditText("")
        self.pin_edit.clear()
        self.message.setText("")
        self.current.setText(f"Signed in: <b>{person.name}</b> ({person.role}). Another person signs in "
                             "below; Sign out leaves the station to nobody." if person else
                             "Nobody is signed in at this station.")
        self.sign_out_button.setEnabled(person is not None)
        self.name_box.setFocus()

    def submit(self) -> bool:
        name, pin = self.name_box.currentText().strip(), self.pin_edit.text()
        if not name:
            say(self.message, "Choose or type your name first.", ok=False)
            return False
        if not pin:
            say(self.message, "Type your PIN.", ok=False)
            self.pin_edit.setFocus()
            return False
        try:
            person = self.context.sign_in(name, pin)
        except LinesideError as exc:  # wrong PIN or unknown name: the core says which words to use
            self.pin_edit.clear()
            self.pin_edit.setFocus()
            say(self.message, str(exc), ok=False)
            return False
        self.pin_edit.clear()
        self.context.status_message.emit(f"Signed in: {person.name} ({person.role}).")
        self.accept()
        return True

    def sign_out(self) -> None:
        self.context.sign_out()
        self.prepare()
        say(self.message, "Signed out: nobody is signed in at this station.", ok=True)


class PeopleDialog(QDialog):
    """Add people, change a role, reset a PIN, remove a person: each through the core,
    with the signed-in person as the one doing it."""

    def __init__(self, context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.setWindowTitle("People and roles")
        self.resize(760, 620)
        layout = QVBoxLayout(self)
        self.mark = QLabel()
        self.mark.setWordWrap(True)
        layout.addWidget(self.mark)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Name", "Role"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        layout.addWidget(self.table, 1)

        form = QGridLayout()
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("name as the person signs in")
        self.role_box = QComboBox()
        self.role_box.addItems(list(people.ROLES))
        self.pin_edit, self.pin_again = pin_field(), pin_field()
        self.pin_edit.setPlaceholderText(f"at least {people.MIN_PIN_LENGTH} characters")
        for row, (text, widget, text2, widget2) in enumerate((
                ("Name", self.name_edit, "Role", self.role_box),
                ("PIN", self.pin_edit, "PIN again", self.pin_again))):
            form.addWidget(QLabel(text), row, 0)
            form.addWidget(widget, row, 1)
            form.addWidget(QLabel(text2), row, 2)
            form.addWidget(widget2, row, 3)
        layout.addLayout(form)
        buttons = QHBoxLayout()
        self.add_button = QPushButton("Add person")
        self.role_button = QPushButton("Change role")
        self.pin_button = QPushButton("Reset PIN")
        self.remove_button = QPushButton("Remove")
        self.close_button = QPushButton("Close")
        for button in (self.add_button, self.role_button, self.pin_button, self.remove_button):
            button.setAutoDefault(False)
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        layout.addLayout(buttons)
        self.add_button.clicked.connect(lambda: self.add())
        self.role_button.clicked.connect(lambda: self.change_role())
        self.pin_button.clicked.connect(lambda: self.reset_pin())
        self.remove_button.clicked.connect(lambda: self.remove())
        self.close_button.clicked.connect(lambda: self.accept())
        context.access_changed.connect(self._update_buttons)
        self.reload()

    # -- state -----------------------------------------------------------------------

    def reload(self) -> None:
        project = self.context.project
        everyone = people.people(project) if project is not None else []
        self.table.setRowCount(len(everyone))
        for row, person in enumerate(everyone):
            self.table.setItem(row, 0, QTableWidgetItem(person.name))
            self.table.setItem(row, 1, QTableWidgetItem(person.role))
        enabled = project is not None and people.roles_enabled(project)
        who = self.context.person
        acting = f"You are signed in as {who.name} ({who.role})." if who else "Nobody is signed in."
        if project is None:
            self.mark.setText("Open a project first.")
        elif enabled:
            self.mark.setText(f"Roles are enforced: only an engineer adds, changes or removes people. {acting}")
        else:
            self.mark.setText("No roles set up: everyone may do everything. Add the first engineer to "
                              "enforce roles (operators inspect, capture and label; engineers also deploy).")
        self.mark.setStyleSheet("" if enabled else f"color: {WARN}; font-weight: 700;")
        if not self.name_edit.text():
            self.role_box.setCurrentText(people.OPERATOR if enabled else people.ENGINEER)
        self._update_buttons()

    def selected_name(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self.table.item(rows[0].row(), 0).text() if rows else None

    def select(self, name: str) -> None:
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).text() == name:
                self.table.selectRow(row)

    def _selection_changed(self) -> None:
        name = self.selected_name()
        if name is not None:
            self.name_edit.setText(name)
            self.role_box.setCurrentText(self.table.item(self.table.currentRow(), 1).text())
        self._update_buttons()

    def _update_buttons(self) -> None:
        if self.context.project is None:
            for button in (self.add_button, self.role_button, self.pin_button, self.remove_button):
                button.setEnabled(False)
            return
        refusal = self.context.refusal("manage_people")
        selected = self.selected_name()
        refuse_tooltip(self.add_button, refusal)
        for button in (self.role_button, self.remove_button):
            refuse_tooltip(button, refusal if selected else "Select a person in the list first.")
        me = self.context.person is not None and selected == self.context.person.name
        refuse_tooltip(self.pin_button, "Select a person in the list first." if not selected else
                       None if me else refusal, "A new PIN for the selected person.")

    def _pin(self) -> str | None:
        pin = self.pin_edit.text()
        if pin != self.pin_again.text():
            say(self.message, "The two PINs differ; nothing was changed. Type the same PIN twice.", ok=False)
            return None
        return pin

    def _done(self, text: str) -> None:
        self.pin_edit.clear()
        self.pin_again.clear()
        say(self.message, text, ok=True)
        self.reload()
        self.context.people_changed()

    def _failed(self, exc: LinesideError) -> None:
        say(self.message, str(exc), ok=False)

    # -- actions ---------------------------------------------------------------------

    def add(self) -> bool:
        project, name, role = self.context.project, self.name_edit.text().strip(), self.role_box.currentText()
        pin = self._pin()
        if project is None or pin is None:
            return False
        first = not people.roles_enabled(project)
        try:
            person = people.add_person(project, name, role, pin, actor=self.context.person)
            # The first engineer is the person setting roles up: signed in with the PIN
            # just typed (an audited sign-in like any other), so they can go on at once.
            if first and person.is_engineer and self.context.person is None:
                self.context.sign_in(person.name, pin)
        except LinesideError as exc:
            self._failed(exc)
            return False
        self.name_edit.clear()
        extra = " Roles are now enforced; you are signed in." if first and person.is_engineer else ""
        self._done(f"Added {person.name} as {person.role}.{extra}")
        self.select(person.name)
        return True

    def change_role(self) -> bool:
        name, role = self.selected_name(), self.role_box.currentText()
        if name is None:
            return False
        try:
            person = people.set_role(self.context.project, name, role, self.context.person)
        except LinesideError as exc:
            self._failed(exc)
            return False
        self._done(f"{person.name} is now {person.role}.")
        return True

    def reset_pin(self) -> bool:
        name, pin = self.selected_name(), self._pin()
        if name is None or pin is None:
            return False
        try:
            people.set_pin(self.context.project, name, pin, self.context.person)
        except LinesideError as exc:
            self._failed(exc)
            return False
        self._done(f"New PIN set for {name}.")
        return True

    def remove(self) -> bool:
        name = self.selected_name()
        if name is None:
            return False
        answer = QMessageBox.question(
            self, f"Remove {name}?", f"{name} will no longer be able to sign in. The audit trail keeps "
            "their name on what they did.", QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel)
        if answer != QMessageBox.StandardButton.Yes:
            return False
        try:
            people.remove_person(self.context.project, name, self.context.person)
        except LinesideError as exc:
            self._failed(exc)
            return False
        self.name_edit.clear()
        self._done(f"{name} can no longer sign in.")
        return True
