"""QApplication set-up: names, settings location, icon, style; a PySide6 bug work-around."""

from __future__ import annotations

import ctypes
import logging
import sys
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QObject, QSettings, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from app.ui.shared.style import apply_style

ORGANIZATION = "Lineside"
APPLICATION = "Lineside"
_TRUE_REFS_BUMP = 1 << 40
_guarded = False

log = logging.getLogger(__name__)


class _EmitProbe(QObject):
    ping = Signal()


def _emit_drops_a_reference_to_true() -> bool:
    probe = _EmitProbe()
    before = sys.getrefcount(True)
    for _ in range(16):
        probe.ping.emit()
    return sys.getrefcount(True) < before


def guard_against_emit_refcount_bug() -> bool:
    """Work around PySide6 6.12.0, whose Signal.emit() returns True without a reference.

    Every emit from Python then takes one reference from True; on Python < 3.12 (where
    True is not immortal) the interpreter aborts with "bool_dealloc" after a few
    thousand emits: minutes of live view or inspection. Detected, not assumed; the fix
    gives True more references than any run can use up (True is never freed anyway).
    Returns whether the work-around was applied.
    """
    global _guarded
    if _guarded or not _emit_drops_a_reference_to_true():
        return False
    refcount = ctypes.c_ssize_t.from_address(id(True))  # ob_refcnt leads every PyObject
    before = sys.getrefcount(True)
    refcount.value += _TRUE_REFS_BUMP
    if sys.getrefcount(True) - before != _TRUE_REFS_BUMP:  # not the layout we expect: undo
        refcount.value -= _TRUE_REFS_BUMP
        log.error("PySide6 Signal.emit() reference bug detected and NOT worked around")
        return False
    _guarded = True
    log.warning("PySide6 Signal.emit() drops a reference to True; worked around")
    return True


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
    guard_against_emit_refcount_bug()
    dress_application(app)
    return app


def dress_application(app: QApplication) -> None:
    """Display name, icon, style and stylesheet: everything that changes how the app looks.

    One function, so the UI tests dress their QApplication exactly as the app does
    (layouts that fit without the stylesheet can overflow with it).
    """
    app.setApplicationDisplayName(APPLICATION)
    icon = _icon_path()
    if icon is not None:
        app.setWindowIcon(QIcon(str(icon)))
    apply_style(app)
