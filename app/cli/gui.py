"""`lineside` with no command: the desktop app (`--demo` opens the demo project)."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def demo_project_path() -> Path:
    from app.core.userdirs import demo_project_dir

    return demo_project_dir()


def prepare_demo_project(path: Path) -> Path:
    """Make sure the demo project exists at *path* (generated on first use; slow: run it
    off the GUI thread)."""
    try:
        from app.cli.train import ensure_demo_project
    except ImportError:
        ensure_demo_project = None
    if ensure_demo_project is not None:
        ensure_demo_project(path)
        return path
    # TODO: remove once app.cli.train.ensure_demo_project is in every build; until then
    # the demo opens as an empty project (the simulated camera still delivers parts).
    from app.core.project import Project

    if not Project.is_project(path):
        Project.create(path, name="Demo").close()
    return path


def run_gui(demo: bool = False) -> int:
    """Open the desktop app; returns the process exit code."""
    from app.core.userdirs import setup_logging
    from app.ui.app import create_application
    from app.ui.context import AppContext
    from app.ui.main_window import MainWindow

    setup_logging("lineside")
    app = create_application()
    window = MainWindow(AppContext(), demo_path=demo_project_path(), prepare_demo=prepare_demo_project)
    window.show()
    # Probe cameras once in the background, so the list is ready when it is opened.
    window.capture.camera_panel.find_cameras()
    if demo:
        window.open_demo(start_camera=True)
    else:
        recent = window.context.recent_projects()
        window.show_start_page()
        log.info("app started, %d recent project(s)", len(recent))
    code = app.exec()
    window.shutdown()
    return int(code)
