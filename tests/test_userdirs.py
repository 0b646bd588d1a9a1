"""Per-user folders and the rotating log."""

from __future__ import annotations

import errno
import logging
import os
import stat
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path

import platformdirs
import pytest

from app.core import userdirs
from app.core.errors import LinesideError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    base = tmp_path / "lineside-home"
    monkeypatch.setenv(userdirs.HOME_ENV, str(base))
    return base


@pytest.fixture
def clean_root_logger():
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    yield root
    for handler in root.handlers:
        if handler not in before:
            handler.close()
    root.handlers[:] = before
    root.setLevel(level)


def test_home_override_puts_every_folder_under_it_and_creates_them(home: Path) -> None:
    folders = {
        "data": userdirs.data_dir(),
        "projects": userdirs.projects_dir(),
        "logs": userdirs.log_dir(),
        "settings": userdirs.settings_dir(),
    }
    assert folders["data"] == home
    assert folders["projects"] == home / "projects"
    assert folders["logs"] == home / "logs"
    assert folders["settings"] == home / "settings"
    for folder in folders.values():
        assert folder.is_dir()
    assert userdirs.demo_project_dir() == home / "demo-project"


def test_relative_and_tilde_home_are_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(userdirs.HOME_ENV, "portable")
    assert userdirs.data_dir() == tmp_path / "portable"
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setenv("USERPROFILE", str(tmp_path / "user"))
    monkeypatch.setenv(userdirs.HOME_ENV, "~/lineside")
    assert userdirs.data_dir() == (tmp_path / "user" / "lineside").resolve()


def test_without_override_the_platform_folders_are_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(userdirs.HOME_ENV, "  ")  # blank counts as unset
    # Point the platform's per-user folders at a temp dir so nothing real is created.
    monkeypatch.setattr(platformdirs, "user_data_path", lambda *a, **k: tmp_path / "data" / "Lineside")
    monkeypatch.setattr(platformdirs, "user_log_path", lambda *a, **k: tmp_path / "state" / "Lineside" / "log")
    monkeypatch.setattr(platformdirs, "user_config_path", lambda *a, **k: tmp_path / "config" / "Lineside")
    monkeypatch.setattr(platformdirs, "user_documents_path", lambda: tmp_path / "Documents")
    assert userdirs.data_dir() == tmp_path / "data" / "Lineside"
    assert userdirs.projects_dir() == tmp_path / "Documents" / "Lineside"
    assert userdirs.log_dir() == tmp_path / "state" / "Lineside" / "log"
    assert userdirs.settings_dir() == tmp_path / "config" / "Lineside"
    assert userdirs.demo_project_dir() == tmp_path / "data" / "Lineside" / "demo-project"
    assert (tmp_path / "Documents" / "Lineside").is_dir()


def test_real_platform_names_carry_the_app_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only computes the paths (platformdirs does not create them); nothing is written.
    monkeypatch.delenv(userdirs.HOME_ENV, raising=False)
    assert platformdirs.user_data_path(userdirs.APP_NAME, appauthor=False).name == "Lineside"


def test_folders_are_outside_the_install_folder(home: Path) -> None:
    install_folder = Path(userdirs.__file__).resolve().parents[2]
    for folder in (userdirs.data_dir(), userdirs.log_dir(), userdirs.settings_dir(), userdirs.projects_dir()):
        assert install_folder not in folder.parents


@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX permissions")
def test_unwritable_home_raises_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    # The folder really is read-only by its mode bits...
    assert stat.S_IMODE(locked.stat().st_mode) == stat.S_IRUSR | stat.S_IXUSR
    if os.geteuid() == 0:
        # ...but root writes through mode bits, so the kernel's answer to anyone else
        # (EACCES) is given to mkdir below the locked folder here.
        real_mkdir = os.mkdir

        def refused_below_locked(path, *args, **kwargs):
            if Path(path).is_relative_to(locked):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(os, "mkdir", refused_below_locked)
    try:
        monkeypatch.setenv(userdirs.HOME_ENV, str(locked / "home"))
        with pytest.raises(LinesideError, match="Cannot create the folder .*locked.*Permission denied"):
            userdirs.data_dir()
        assert not (locked / "home").exists()
    finally:
        locked.chmod(stat.S_IRWXU)


def test_a_file_where_the_folder_should_be_raises_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Works as root too: mkdir cannot create a folder below a regular file.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv(userdirs.HOME_ENV, str(blocker))
    with pytest.raises(LinesideError, match="not-a-folder"):
        userdirs.log_dir()


def test_setup_logging_writes_and_rotates(home: Path, clean_root_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(userdirs, "LOG_MAX_BYTES", 2000)
    path = userdirs.setup_logging("lineside")
    assert path == (home / "logs" / "lineside.log").resolve()
    logger = logging.getLogger("app.test")
    for i in range(200):
        logger.info("message number %d with some padding to fill the file", i)
    for handler in clean_root_logger.handlers:
        handler.flush()
    text = path.read_text(encoding="utf-8")
    assert "message number 199" in text
    rotated = sorted(p.name for p in path.parent.glob("lineside.log.*"))
    assert rotated == [f"lineside.log.{i}" for i in range(1, userdirs.LOG_BACKUPS + 1)]
    assert all(p.stat().st_size <= 2200 for p in path.parent.glob("lineside.log*"))


def test_setup_logging_twice_adds_one_handler(home: Path, clean_root_logger: logging.Logger) -> None:
    first = userdirs.setup_logging("lineside")
    second = userdirs.setup_logging("lineside")
    assert first == second
    mine = [h for h in clean_root_logger.handlers if isinstance(h, RotatingFileHandler) and Path(h.baseFilename) == first]
    assert len(mine) == 1
    trainer = userdirs.setup_logging("lineside-trainer")
    assert trainer.name == "lineside-trainer.log"
    logging.getLogger("training").warning("from the trainer")
    for handler in clean_root_logger.handlers:
        handler.flush()
    assert "from the trainer" in trainer.read_text(encoding="utf-8")


def test_setup_logging_falls_back_to_temp_when_log_folder_is_blocked(
    tmp_path: Path, clean_root_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "blocked"
    blocker.write_text("x")
    monkeypatch.setenv(userdirs.HOME_ENV, str(blocker))
    monkeypatch.setattr(userdirs.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    path = userdirs.setup_logging("lineside")
    assert path == (tmp_path / "tmp" / "lineside-logs" / "lineside.log").resolve()
    logging.getLogger("app").info("still logged")
    for handler in clean_root_logger.handlers:
        handler.flush()
    assert "still logged" in path.read_text(encoding="utf-8")
