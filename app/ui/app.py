"""QApplication set-up: names, settings location, icon, style."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QSettings
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from app.ui.style import apply_style

ORGANIZATION = "Lineside"
APPLICATION = "Lineside"


def _icon_path() -> Path | None:
    # Resources sit beside the package in a checkout and in the frozen app alike.
    base = Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parents[2]))
    path = base / "resources" / "lineside.png"
    return path if path.is_file() else None


def configure_settings_location() -> None:
    """Keep settings in an INI file in the user's settings folder (readable, portable)."""
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    try:
        from app.core.userdirs import settings_dir

        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(settings_dir()))
    except Exception:  # a locked-down profile: fall back to Qt's default place
        pass


def create_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication (reused if one exists, as under pytest-qt), styled."""
    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APPLICATION)
    app = QApplication.instance()
    if app is None:
        configure_settings_location()
        app = QApplication(argv if argv is not None else sys.argv)
    assert isinstance(app, QApplication)
    app.setApplicationDisplayName(APPLICATION)
    icon = _icon_path()
    if icon is not None:
        app.setWindowIcon(QIcon(str(icon)))
    apply_style(app)
    return app
