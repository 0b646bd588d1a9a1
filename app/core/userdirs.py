"""Where Lineside keeps the user's things: data, projects, logs, settings.

An installed app lives in a read-only, per-machine folder (Program Files, /opt), so
nothing is ever written beside the executable. Every folder here is per user and is
created on first use.

Setting LINESIDE_HOME moves everything under one folder (a portable install on a USB
stick, a shared service account, tests). Without it the platform's usual places are
used (platformdirs):

- Windows: data and logs in %LOCALAPPDATA%\\Lineside, projects in Documents\\Lineside
- Linux: data in ~/.local/share/Lineside, logs in ~/.local/state/Lineside/log,
  settings in ~/.config/Lineside, projects in ~/Documents/Lineside
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from logging.handlers import RotatingFileHandler
from pathlib import Path

import platformdirs

from app.core.errors import LinesideError

APP_NAME = "Lineside"
HOME_ENV = "LINESIDE_HOME"

LOG_MAX_BYTES = 2 * 1024 * 1024
LOG_BACKUPS = 4  # the live file plus four rotated ones: at most 10 MB per process name
LOG_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def home_override() -> Path | None:
    """The folder named by LINESIDE_HOME, or None when it is unset or empty."""
    value = os.environ.get(HOME_ENV, "").strip()
    if not value:
        return None
    return Path(value).expanduser().resolve()


def _ensure(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        hint = f" (set {HOME_ENV} to a writable folder)" if home_override() is None else f" (check {HOME_ENV})"
        raise LinesideError(f"Cannot create the folder {folder}: {exc.strerror or exc}{hint}.") from exc
    return folder


def data_dir() -> Path:
    """Per-user application data (demo project, caches)."""
    home = home_override()
    if home is not None:
        return _ensure(home)
    return _ensure(platformdirs.user_data_path(APP_NAME, appauthor=False, roaming=False))


def projects_dir() -> Path:
    """The default place offered for new projects.

    Documents, not the hidden data folder: inspectors copy projects to a USB stick or a
    share, and need to find them in the file manager.
    """
    home = home_override()
    if home is not None:
        return _ensure(home / "projects")
    return _ensure(platformdirs.user_documents_path() / APP_NAME)


def demo_project_dir() -> Path:
    """Where the generated demo project lives (regenerated when missing)."""
    return data_dir() / "demo-project"


def log_dir() -> Path:
    home = home_override()
    if home is not None:
        return _ensure(home / "logs")
    return _ensure(platformdirs.user_log_path(APP_NAME, appauthor=False))


def settings_dir() -> Path:
    home = home_override()
    if home is not None:
        return _ensure(home / "settings")
    return _ensure(platformdirs.user_config_path(APP_NAME, appauthor=False, roaming=False))


def _existing_handler(logger: logging.Logger, path: Path) -> RotatingFileHandler | None:
    for handler in logger.handlers:
        if isinstance(handler, RotatingFileHandler) and Path(handler.baseFilename) == path:
            return handler
    return None


def setup_logging(name: str = "lineside", level: int = logging.INFO) -> Path:
    """Send the root logger to a rotating file `<log_dir>/<name>.log`; return its path.

    Each process passes its own name (the app "lineside", the trainer child
    "lineside-trainer"): two processes rotating one file collide on Windows, where an
    open file cannot be renamed. Calling it twice adds no second handler. When the log
    folder cannot be written (a locked-down PC), logs go to the temp folder instead:
    a missing log must never stop the line.
    """
    root = logging.getLogger()
    try:
        folder = log_dir()
    except LinesideError:
        folder = Path(tempfile.gettempdir()) / "lineside-logs"
        folder.mkdir(parents=True, exist_ok=True)
    path = (folder / f"{name}.log").resolve()
    if _existing_handler(root, path) is None:
        handler = RotatingFileHandler(path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
    frozen = " (frozen)" if getattr(sys, "frozen", False) else ""
    logging.getLogger(name).info("logging to %s, python %s%s", path, sys.version.split()[0], frozen)
    return path
