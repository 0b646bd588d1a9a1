"""`lineside` with no command: the desktop app (`--demo` opens the demo project)."""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

# The system libraries Qt's X11 platform plugin (plugins/platforms/libqxcb.so and
# libQt6XcbQpa) links against, beyond Qt itself, and the Debian/Ubuntu packages that
# hold them (`objdump -p libqxcb.so | grep NEEDED`, then `dpkg -S`). The pip route
# installs none of them; a stock desktop lacks some (libxcb-cursor0 first of all).
XCB_LIBRARIES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
}
# Also needed, but on every desktop; named only when one is missing.
OTHER_LIBRARIES = {
    "libGL.so.1": "libgl1",
    "libX11.so.6": "libx11-6",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
}
APT_INSTALL_LINE = "sudo apt install " + " ".join(XCB_LIBRARIES.values())


def _loads(soname: str) -> bool:
    try:
        ctypes.CDLL(soname, mode=getattr(os, "RTLD_LAZY", 1) | getattr(os, "RTLD_LOCAL", 0))
        return True
    except OSError:
        pass
    # A frozen app may carry a library beside itself where dlopen does not look.
    bundled = getattr(sys, "_MEIPASS", None)
    return bool(bundled) and any(Path(bundled).rglob(soname))


def xcb_will_be_used(env: dict | None = None, platform: str | None = None) -> bool:
    """True when Qt will try its X11 (xcb) platform plugin: Linux, an X display, and no
    other platform asked for (GNOME's Wayland session runs Qt on XWayland too)."""
    env = os.environ if env is None else env
    if not (platform or sys.platform).startswith("linux") or not env.get("DISPLAY"):
        return False
    asked = env.get("QT_QPA_PLATFORM", "").strip()
    if asked:
        return asked.split(";")[0].split(":")[0].strip() == "xcb"
    if env.get("XDG_SESSION_TYPE") == "wayland":  # as QGuiApplication decides
        desktops = (env.get("XDG_CURRENT_DESKTOP", "") + env.get("XDG_SESSION_DESKTOP", "")).lower()
        return "gnome" in desktops  # Qt ignores the Wayland session on GNOME
    return True


def missing_xcb_libraries(loads=_loads) -> list[str]:
    """The libraries of Qt's xcb plugin that the system cannot load (a few dlopen calls)."""
    return [name for name in (*XCB_LIBRARIES, *OTHER_LIBRARIES) if not loads(name)]


def xcb_help_message(missing: list[str]) -> str:
    """What to tell a person whose system lacks *missing* (sonames) for Qt's xcb plugin."""
    packages = {**XCB_LIBRARIES, **OTHER_LIBRARIES}
    extra = sorted({packages[name] for name in missing if name in OTHER_LIBRARIES})
    lines = [
        "lineside: the desktop app cannot start: Qt's X11 (xcb) platform plugin needs system",
        f"libraries that are not installed: {', '.join(missing)}.",
        "On Debian or Ubuntu install them with:",
        "",
        f"    {APT_INSTALL_LINE}" + (f" {' '.join(extra)}" if extra else ""),
        "",
        "(The command line works without them; see `lineside --help`.)",
    ]
    return "\n".join(lines)


def check_qt_platform(env: dict | None = None, loads=_loads) -> str | None:
    """The message to print instead of starting Qt when its xcb plugin cannot load, else None.

    Without this Qt aborts with "Could not load the Qt platform plugin" and a core dump,
    naming one library at best.
    """
    if not xcb_will_be_used(env):
        return None
    missing = missing_xcb_libraries(loads)
    return xcb_help_message(missing) if missing else None


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
    from app.core.trainer_command import trainer_command

    *launcher, _train = trainer_command()
    return [*launcher, "demo", str(path), "--prepare-only"]


def run_gui(demo: bool = False) -> int:
    """Open the desktop app; returns the process exit code."""
    from app.core.userdirs import setup_logging
    from app.ui.app import create_application
    from app.ui.context import AppContext
    from app.ui.main_window import MainWindow

    setup_logging("lineside")
    problem = check_qt_platform()
    if problem:
        print(problem, file=sys.stderr)
        log.error("Qt's xcb platform plugin cannot load: %s", " ".join(problem.splitlines()[:2]))
        return 1
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
