"""Qt test set-up: offscreen, isolated settings, a main window factory, leak checks.

Every test gets its own settings folder and organisation name, so recent projects or a
capture key set by one test never reach another (nor the developer's real settings).
At teardown no camera thread, background task or child process may still be running.
"""

from __future__ import annotations

import os
import threading
import uuid

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any QApplication exists

import pytest  # noqa: E402
from PySide6.QtCore import QCoreApplication, QProcess, QSettings  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _emit_refcount_guard():
    """Every test emits signals, with or without an AppContext (see guard_against_emit_refcount_bug)."""
    from app.ui.app import guard_against_emit_refcount_bug

    guard_against_emit_refcount_bug()


def lineside_threads() -> list[threading.Thread]:
    """Our own threads (capture, probes) that are still running; named "lineside-*"."""
    return [t for t in threading.enumerate() if t.name.startswith("lineside-") and t.is_alive()]


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path, monkeypatch):
    folder = tmp_path / "settings"
    folder.mkdir()
    monkeypatch.setenv("LINESIDE_HOME", str(tmp_path / "home"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    old_org = QCoreApplication.organizationName()
    QCoreApplication.setOrganizationName(f"LinesideTest-{uuid.uuid4().hex[:8]}")
    yield folder
    QCoreApplication.setOrganizationName(old_org)


@pytest.fixture
def no_leaks():
    """Fails the test if it leaves our threads or new non-daemon threads running."""
    before = set(threading.enumerate())
    yield
    from app.ui.workers import wait_for_background_work

    assert wait_for_background_work(10000), "background tasks still running"
    deadline_threads = [t for t in lineside_threads() if t not in before]
    for thread in deadline_threads:  # a capture thread told to stop gets a moment
        thread.join(3)
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    leaked = [t for t in leaked if not t.daemon or t.name.startswith("lineside-")]
    assert not leaked, f"threads left running: {leaked}"


@pytest.fixture
def main_window(qtbot, tmp_path, no_leaks):
    """Factory: main_window(open_project=True) -> a shown MainWindow on a temp project.

    The window is closed at teardown (which must stop every thread and child process).
    """
    from app.ui.context import AppContext
    from app.ui.main_window import MainWindow

    windows = []

    def factory(open_project: bool = True, project_path=None, demo_path=None, prepare_demo=None, demo_command=None):
        context = AppContext(QSettings())
        window = MainWindow(context, demo_path=demo_path, prepare_demo=prepare_demo, demo_command=demo_command)
        qtbot.addWidget(window)
        window.resize(1400, 900)
        window.show()
        qtbot.waitExposed(window)
        if open_project:
            path = project_path or tmp_path / f"project{len(windows)}"
            if (path / "project.db").exists():
                context.open_project(path)
            else:
                context.create_project(path)
        windows.append(window)
        return window

    yield factory
    for window in windows:
        processes = window.findChildren(QProcess)
        window.close()
        for process in processes:
            assert process.state() == QProcess.ProcessState.NotRunning, "a child process outlived the window"
        assert window.context.capture_thread is None
