"""Qt test set-up: offscreen, the app's own style, slot exceptions fail tests,
isolated settings, a main window factory, leak checks.

Every test gets its own settings folder and organisation name, so recent projects or a
capture key set by one test never reach another (nor the developer's real settings).
At teardown no camera thread, background task or child process may still be running.

An exception raised in a Qt slot never reaches the code that emitted the signal: Qt
hands it to sys.excepthook and carries on, so a button that does nothing but print a
traceback looks fine to a test. pytest-qt catches these too, but only while its
capture is on (the ini option or marker `qt_no_exception_capture` turns it off); ours
is always on for UI tests, and a test that expects one takes it with
`slot_exceptions.take()`.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
import uuid

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any QApplication exists

import pytest  # noqa: E402
from PySide6.QtCore import QCoreApplication, QProcess, QSettings  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _emit_refcount_guard():
    """Every test emits signals, with or without an AppContext (see guard_against_emit_refcount_bug)."""
    from app.ui.app import guard_against_emit_refcount_bug

    guard_against_emit_refcount_bug()


@pytest.fixture(autouse=True, scope="session")
def _app_style(qapp):
    """The stylesheet, font and display name the app runs with (sizes, titles and the
    disabled look all depend on them), applied by the app's own function."""
    from app.ui.app import dress_application

    dress_application(qapp)
    return qapp


class SlotExceptions:
    """Exceptions that reached sys.excepthook (raised in slots, virtual methods, QThreads)."""

    def __init__(self) -> None:
        self.recorded: list[tuple[type[BaseException], BaseException, object]] = []

    def hook(self, exc_type, value, tb) -> None:
        self.recorded.append((exc_type, value, tb))
        sys.stderr.write("".join(traceback.format_exception(exc_type, value, tb)))

    def take(self) -> list[BaseException]:
        """The exceptions so far (oldest first), forgotten: a test that expects one takes it."""
        taken, self.recorded = [value for _t, value, _tb in self.recorded], []
        return taken

    def fail_if_any(self, when: str) -> None:
        if not self.recorded:
            return
        text = "".join("".join(traceback.format_exception(t, v, tb)) for t, v, tb in self.recorded)
        self.recorded = []
        pytest.fail(f"{when}: an exception was raised in a Qt slot:\n{text}", pytrace=False)


@pytest.fixture(autouse=True)
def slot_exceptions(request):
    """Record slot exceptions during the test; fail it if any were left untaken."""
    recorder = SlotExceptions()
    previous, sys.excepthook = sys.excepthook, recorder.hook
    request.node._slot_exceptions = recorder
    try:
        yield recorder
        from PySide6.QtWidgets import QApplication

        if QApplication.instance() is not None:
            QApplication.processEvents()  # deliver what is still queued while we listen
    finally:
        sys.excepthook = previous
    recorder.fail_if_any("TEARDOWN")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """Fail the test itself (not only its teardown) when its body raised in a slot."""
    result = yield
    recorder = getattr(item, "_slot_exceptions", None)
    if recorder is not None:
        from PySide6.QtWidgets import QApplication

        if QApplication.instance() is not None:
            QApplication.processEvents()
        recorder.fail_if_any("CALL")
    return result


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
    from app.ui.shared.workers import wait_for_background_work

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

    def factory(open_project: bool = True, project_path=None, demo_path=None, prepare_demo=None, demo_command=None,
                size=(1400, 900)):
        context = AppContext(QSettings())
        window = MainWindow(context, demo_path=demo_path, prepare_demo=prepare_demo, demo_command=demo_command)
        qtbot.addWidget(window)
        window.resize(*size)
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
