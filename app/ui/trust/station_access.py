"""The "who is at the station" button of the status bar, and the Trust menu.

The button reads "No roles set up" (it opens People, to add the first engineer),
"Nobody signed in · Sign in", or the name and role of the person signed in (it opens
the sign-in dialog, to switch person or sign out). The menu reaches the same dialogs
and the audit trail.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QMenuBar, QPushButton, QWidget

from app.core import people
from app.ui.shared.style import WARN
from app.ui.trust.people_dialogs import PeopleDialog, SignInDialog


class StationAccess(QObject):
    """The "who is at the station" button of the status bar, the Trust menu, and the
    dialogs they open (kept as attributes, one of each, so tests can reach them)."""

    def __init__(self, window: QWidget, context) -> None:
        super().__init__(window)
        self.window, self.context = window, context
        self.sign_in_dialog: SignInDialog | None = None
        self.people_dialog: PeopleDialog | None = None
        self.audit_dialog = None
        self.button = QPushButton()
        self.button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the workspaces' keys stay where they are
        self.button.clicked.connect(lambda: self.open_from_button())
        self.actions: dict[str, QAction] = {}
        for key, text, slot in (("sign_in", "Sign in or switch person…", self.open_sign_in),
                                ("sign_out", "Sign out", self.sign_out),
                                ("people", "People and roles…", self.open_people),
                                ("audit", "Audit trail…", self.open_audit)):
            action = QAction(text, self)
            action.triggered.connect(lambda _checked=False, slot=slot: slot())
            self.actions[key] = action
        context.access_changed.connect(self.update)
        self.update()

    def add_menu(self, bar: QMenuBar) -> QMenu:
        menu = bar.addMenu("&Trust")
        for key in ("sign_in", "sign_out", "people"):
            menu.addAction(self.actions[key])
        menu.addSeparator()
        menu.addAction(self.actions["audit"])
        return menu

    def update(self) -> None:
        project, person = self.context.project, self.context.person
        self.button.setVisible(project is not None)
        for action in self.actions.values():
            action.setEnabled(project is not None)
        self.actions["sign_out"].setEnabled(person is not None)
        if project is None:
            return
        if not people.roles_enabled(project):
            text, tip, color = "No roles set up", people.NO_ROLES_MARK + ". Click to add people.", WARN
        elif person is None:
            text, tip, color = "Nobody signed in · Sign in", "Roles are enforced. Click to sign in.", WARN
        else:
            text, tip, color = (f"{person.name} · {person.role}",
                                f"Signed in as {person.name} ({person.role}). Click to switch person or sign out.", "")
        self.button.setText(text)
        self.button.setToolTip(tip)
        self.button.setStyleSheet(f"color: {color};" if color else "")

    def open_from_button(self) -> None:
        project = self.context.project
        if project is not None and not people.roles_enabled(project):
            self.open_people()
        else:
            self.open_sign_in()

    def open_sign_in(self) -> SignInDialog:
        if self.sign_in_dialog is None:
            self.sign_in_dialog = SignInDialog(self.context, self.window)
        self.sign_in_dialog.prepare()
        self.sign_in_dialog.open()
        return self.sign_in_dialog

    def open_people(self) -> PeopleDialog:
        if self.people_dialog is None:
            self.people_dialog = PeopleDialog(self.context, self.window)
        self.people_dialog.message.setText("")
        self.people_dialog.reload()
        self.people_dialog.open()
        return self.people_dialog

    def open_audit(self):
        from app.ui.trust.audit_view import AuditDialog

        if self.audit_dialog is None:
            self.audit_dialog = AuditDialog(self.context, self.window)
        self.audit_dialog.reload()
        self.audit_dialog.open()
        return self.audit_dialog

    def sign_out(self) -> None:
        name = self.context.person.name if self.context.person else None
        self.context.sign_out()
        if name:
            self.context.status_message.emit(f"{name} signed out.")
