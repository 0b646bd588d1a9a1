"""The main window: start page, projects, workspaces, status bar, clean shutdown."""

from __future__ import annotations

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from app.core.camera import SimulatedCamera
from app.core.project import Project
from tests.ui.conftest import lineside_threads


def test_first_run_start_page_offers_demo_and_create(main_window):
    window = main_window(open_project=False, demo_path=None)
    window.show_start_page()
    page = window.start_page
    assert window.stack.currentWidget() is page
    assert page.recent_list.isHidden() and not page.empty_hint.isHidden()
    assert page.create_button.property("primary") is True
    assert page.demo_button.isHidden()  # no demo without a way to make one


def test_open_create_recent_and_errors(main_window, tmp_path, monkeypatch):
    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", staticmethod(lambda _p, title, text, *a, **k: warnings.append(text)))
    window = main_window(open_project=False)
    context = window.context

    assert window.create_project(str(tmp_path / "line 3")) is True
    assert window.stack.currentWidget() is window.tabs
    # Qt appends the display name to a title that does not end with it: once, not twice.
    assert window.windowTitle() == "line 3 — Lineside"
    assert window.windowTitle().endswith(QApplication.applicationDisplayName())
    first = str((tmp_path / "line 3").resolve())
    assert context.recent_projects() == [first]

    # A folder that is not a project: a clear message naming it, nothing changes.
    not_a_project = tmp_path / "holiday photos"
    not_a_project.mkdir()
    assert window.open_project(str(not_a_project)) is False
    assert "holiday photos" in warnings[-1] and "not a Lineside project" in warnings[-1]
    assert context.project is not None and context.project.path.name == "line 3"

    window.close_project()
    assert context.project is None
    assert window.stack.currentWidget() is window.start_page
    assert window.start_page.recent_list.count() == 1
    assert not window.start_page.recent_list.isHidden()

    # A recent project whose database is gone fails to open with a message, and stays
    # listed while its folder exists (a share that comes back, a copy in progress)...
    Project.create(tmp_path / "second").close()
    assert window.open_project(str(tmp_path / "second"))
    window.close_project()
    assert context.recent_projects()[0].endswith("second")
    (tmp_path / "second" / "project.db").unlink()
    for leftover in (tmp_path / "second").glob("project.db*"):
        leftover.unlink()
    missing = context.recent_projects()[0]
    assert window.open_project(missing) is False
    assert missing in context.recent_projects()
    # ...and is dropped from the list once the folder itself has gone.
    import shutil

    shutil.rmtree(tmp_path / "second")
    assert window.open_project(missing) is False
    assert missing not in context.recent_projects()

    # Clicking a recent item opens it.
    window.show_start_page()
    item = next(
        window.start_page.recent_list.item(i)
        for i in range(window.start_page.recent_list.count())
        if window.start_page.recent_list.item(i).text().startswith("line 3")
    )
    window.start_page.recent_list.itemClicked.emit(item)
    assert context.project is not None and context.project.path.name == "line 3"


def test_workspaces_are_activated_and_deactivated(main_window, qtbot):
    window = main_window()
    assert [window.tabs.tabText(i) for i in range(window.tabs.count())] == [
        "Capture && Label", "Train", "Inspect", "Models", "Plant",
    ]  # fmt: skip
    capture = window.capture
    assert capture.timer.isActive()
    window.show_workspace("Train")
    assert window.tabs.currentIndex() == 1
    assert not capture.timer.isActive()
    window.show_workspace("capture")
    assert capture.timer.isActive()


def test_status_bar_shows_camera_model_and_device(main_window, qtbot):
    from tests.ui.workspace_fixtures import register_fixture_model

    window = main_window()
    assert window.model_label.text() == "Model at the line: none"
    register_fixture_model(window.context.project, "v7")
    window.context.models_changed.emit()
    assert window.model_label.text() == "Model at the line: v7"
    assert window.device_label.text().startswith("Training on: ")
    window.context.start_source(SimulatedCamera(fps=30))
    qtbot.waitUntil(lambda: window.camera_label.text() == "Camera: connected: Simulated line", timeout=5000)


def test_demo_opens_with_the_simulated_camera(main_window, qtbot, tmp_path):
    made: list = []

    def prepare(path):
        made.append(path)
        if not Project.is_project(path):
            Project.create(path, name="Demo").close()

    window = main_window(open_project=False, demo_path=tmp_path / "demo", prepare_demo=prepare)
    window.show_start_page()
    window.start_page.demo_button.click()
    qtbot.waitUntil(lambda: window.context.project is not None, timeout=5000)
    assert made == [tmp_path / "demo"]
    assert window.context.project.name == "Demo"
    qtbot.waitUntil(lambda: window.capture.last_frame is not None, timeout=5000)
    assert window.context.frame_source.name == "Simulated line"


def test_closing_with_a_running_camera_leaves_no_threads(main_window, qtbot):
    window = main_window()
    window.context.start_source(SimulatedCamera(fps=30))
    qtbot.waitUntil(lambda: window.capture.last_frame is not None, timeout=5000)
    assert lineside_threads()
    window.close()
    assert window.context.capture_thread is None
    assert not [t for t in lineside_threads() if t.name.startswith("lineside-capture")]


def test_run_gui_starts_and_quits(qtbot, no_leaks, monkeypatch):
    """run_gui builds, shows and shuts down the real window.

    QApplication.quit() would stop every later event loop in this test process (a
    pytest-qt caveat), so the application's exec() is replaced by a local event loop
    that closes the window after a moment.
    """
    import app.ui.app as app_module
    from app.cli.gui import run_gui

    real_create = app_module.create_application
    seen = []

    class LocalLoopApp:
        def __init__(self, app) -> None:
            self.app = app

        def exec(self) -> int:
            loop = QEventLoop()

            def close_all() -> None:
                windows = [w for w in QApplication.topLevelWidgets() if type(w).__name__ == "MainWindow" and w.isVisible()]
                seen.extend(windows)
                for window in windows:
                    qtbot.addWidget(window)  # deleted by pytest-qt, like every test window
                    window.close()
                loop.quit()

            QTimer.singleShot(300, close_all)
            loop.exec()
            return 0

    monkeypatch.setattr(app_module, "create_application", lambda *a: LocalLoopApp(real_create(*a)))
    assert run_gui(demo=False) == 0
    assert len(seen) == 1
    assert seen[0].stack.currentWidget() is seen[0].start_page
    assert seen[0].context.project is None


def test_signal_emits_cannot_use_up_the_references_to_true(qapp):
    """PySide6 6.12.0's Signal.emit() returns True without a reference: guarded at start."""
    import sys

    from PySide6.QtCore import QObject, Signal

    from app.ui.app import guard_against_emit_refcount_bug

    class Pinger(QObject):
        ping = Signal(int)

    guard_against_emit_refcount_bug()
    pinger = Pinger()
    pinger.ping.connect(lambda _v: None)
    for i in range(20000):  # more than True has references in a plain interpreter
        pinger.ping.emit(i)
    assert sys.getrefcount(True) > 1000


def test_demo_built_by_a_child_process_shows_its_progress(main_window, qtbot, tmp_path, monkeypatch):
    import sys

    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", staticmethod(lambda _p, title, text, *a, **k: warnings.append(text)))
    demo = tmp_path / "demo"
    script = (
        "import sys, time\n"
        "from app.core.project import Project\n"
        "print('drawing parts ...', flush=True)\n"
        "time.sleep(0.3)\n"
        "Project.create(sys.argv[1], name='Demo parts').close()\n"
        "print('deployed', flush=True)\n"
    )
    command = [sys.executable, "-c", script, str(demo)]
    window = main_window(open_project=False, demo_path=demo, demo_command=command)
    window.show_start_page()
    window.start_page.demo_button.click()
    qtbot.waitUntil(lambda: "drawing parts" in window.start_page.busy_label.text(), timeout=10000)
    assert not window.start_page.create_button.isEnabled()  # busy: one thing at a time
    qtbot.waitUntil(lambda: window.context.project is not None, timeout=15000)
    assert window.context.project.name == "Demo parts"
    assert window.start_page.busy_label.text() == ""
    assert warnings == []

    # A builder that fails: its last words are shown, nothing is opened.
    window.close_project()
    window.demo_command = [sys.executable, "-c", "print('training is not installed'); raise SystemExit(2)"]
    window.demo_path = tmp_path / "demo2"
    window.open_demo(start_camera=False)
    qtbot.waitUntil(lambda: bool(warnings), timeout=10000)
    assert "training is not installed" in warnings[0]
    assert window.context.project is None
