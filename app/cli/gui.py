"""`lineside` with no command: the desktop app (`--demo` opens the demo project)."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def demo_project_path() -> Path:
    from app.core.userdirs import demo_project_dir

    return demo_project_dir()


def demo_ready(path: Path) -> bool:
    """True when the demo project exists with a model at the line (nothing to build)."""
    from app.core.errors import LinesideError
    from app.core.project import Project

    if not Project.is_project(path):
        return False
    try:
        with Project.open(path) as project:
            return project.production_model() is not None
    except LinesideError:  # damaged: let the builder say what is wrong, in the app
        return False


def demo_command(path: Path) -> list[str]:
    """`lineside demo PATH --prepare-only` as a child process (it trains: torch stays out
    of the app's process, and a frozen app runs itself the same way)."""
    from app.cli import trainer_command

    *launcher, _train = trainer_command()
    return [*launcher, "demo", str(path), "--prepare-only"]


def run_gui(demo: bool = False) -> int:
    """Open the desktop app; returns the process exit code."""
    from app.core.userdirs import setup_logging
    from app.ui.app import create_application
    from app.ui.context import AppContext
    from app.ui.main_window import MainWindow

    setup_logging("lineside")
    app = create_application()
    path = demo_project_path()
    window = MainWindow(AppContext(), demo_path=path, demo_command=None if demo_ready(path) else demo_command(path))
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
