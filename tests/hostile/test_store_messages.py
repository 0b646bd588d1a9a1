"""The store says what is wrong: read-only, busy, damaged are three different messages.

A read-only project and a database locked by another program both used to be reported
as "project.db is damaged ... restore from a backup", which sends a user to overwrite a
healthy project with an old backup.

How the conditions are made:
- read-only, real: `chattr +i` on project.db or on the project folder (root ignores
  permission bits, but not the immutable flag); chmod as a normal user. Skipped where
  neither is possible.
- read-only, injected (always runs): every connection gets `PRAGMA query_only=ON`, so
  SQLite itself answers "attempt to write a readonly database" through the real code.
- busy: a second sqlite3 connection holds `BEGIN EXCLUSIVE`, with the wait shortened.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from app.core import db
from tests.hostile.helpers import make_project, run_cli, snapshot
from tests.store_fixtures import part_image, write_image


def _new_images(root: Path) -> Path:
    source = root / "more"
    write_image(source / "good" / "n1.png", part_image(201))
    write_image(source / "good" / "n2.png", part_image(202))
    return source


@contextmanager
def _read_only(path: Path):
    """*path* (a file or folder) cannot be written while inside the block."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(stat.S_IMODE(mode) & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        try:
            yield
        finally:
            path.chmod(stat.S_IMODE(mode))
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root without chattr +i: cannot make a file read-only here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def _assert_read_only_message(code: int, out: str, err: str) -> None:
    assert code == 2 and "Traceback" not in err
    assert "read-only" in err and "permissions" in err
    assert "damaged" not in err and "Restore" not in err


def test_read_only_database_file_says_read_only(tmp_path: Path, capsys):
    project_dir = make_project(tmp_path)
    before = snapshot(project_dir)
    source = _new_images(tmp_path)
    with _read_only(project_dir / "project.db"):
        code, out, err = run_cli(capsys, "import", project_dir, source)
    _assert_read_only_message(code, out, err)
    assert "The project is read-only" in err and "The last change was not saved" in err
    assert snapshot(project_dir) == before


def test_read_only_project_folder_says_read_only(tmp_path: Path, capsys):
    project_dir = make_project(tmp_path)
    before = snapshot(project_dir)
    with _read_only(project_dir):
        code, out, err = run_cli(capsys, "deploy", project_dir, "v1")
    _assert_read_only_message(code, out, err)
    assert "The project folder is read-only" in err
    assert snapshot(project_dir) == before


def test_read_only_database_injected_says_read_only(tmp_path: Path, capsys, monkeypatch):
    project_dir = make_project(tmp_path)
    before = snapshot(project_dir)
    real_make_engine = db.make_engine

    def query_only_engine(*args, **kwargs):
        engine = real_make_engine(*args, **kwargs)
        db.sa.event.listen(engine, "connect", lambda conn, _rec: conn.execute("PRAGMA query_only=ON"))
        return engine

    monkeypatch.setattr(db, "make_engine", query_only_engine)
    code, out, err = run_cli(capsys, "import", project_dir, _new_images(tmp_path))
    _assert_read_only_message(code, out, err)
    monkeypatch.undo()
    assert snapshot(project_dir) == before


def test_database_locked_by_another_program_says_busy_and_retry_works(tmp_path: Path, capsys, monkeypatch):
    project_dir = make_project(tmp_path)
    before = snapshot(project_dir)
    source = _new_images(tmp_path)
    monkeypatch.setattr(db, "BUSY_TIMEOUT_S", 0.3)
    other = sqlite3.connect(project_dir / "project.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another program in the middle of a long write
    try:
        started = time.monotonic()
        code, out, err = run_cli(capsys, "import", project_dir, source)
        assert time.monotonic() - started < 20
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert code == 2 and "Traceback" not in err
    assert "busy: another program is writing" in err and "retry" in err
    assert "damaged" not in err and "Restore" not in err
    assert snapshot(project_dir) == before

    code, out, err = run_cli(capsys, "import", project_dir, source)  # the retry the message asks for
    assert code == 0 and "imported 2 new images" in out
    assert len(snapshot(project_dir)["images"]) == len(before["images"]) + 2


def test_a_damaged_database_is_still_called_damaged(tmp_path: Path, capsys):
    project_dir = make_project(tmp_path, deploy=False)
    (project_dir / "project.db").write_bytes(b"SQLite format 3\x00" + b"\x07" * 4000)
    code, out, err = run_cli(capsys, "models", project_dir)
    assert code == 2 and "damaged" in err and "read-only" not in err and "busy" not in err
