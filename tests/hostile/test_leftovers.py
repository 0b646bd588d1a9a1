"""What `kill -9` leaves behind is cleaned up when the project is next opened.

A training killed while assembling its version leaves `models/.partial-vN-PID/`; an
atomic write killed mid-way leaves `.<name>.<random>.tmp`. Both are removed on opening,
but only when stale (old enough, and for a partial folder its process gone), so a
training or import running right now in another process is left alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.core.project import LEFTOVER_AGE_S, Project
from tests.hostile.helpers import make_project, snapshot

pytestmark = pytest.mark.skipif(os.name == "nt", reason="process ids are checked on POSIX only")


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _age(path: Path, seconds: float) -> Path:
    """Make *path* (and what is in a folder) look *seconds* old."""
    then = time.time() - seconds
    for p in [*path.rglob("*"), path] if path.is_dir() else [path]:
        os.utime(p, (then, then))
    return path


def _partial(project_dir: Path, version: str, pid: int, age_s: float) -> Path:
    folder = project_dir / "models" / f".partial-{version}-{pid}"
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes(b"half a checkpoint")
    return _age(folder, age_s)


def _tmp_file(folder: Path, name: str, age_s: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".{name}.k3j9x_a1.tmp"
    path.write_bytes(b"half written")
    return _age(path, age_s)


def test_stale_leftovers_are_removed_and_live_ones_kept(tmp_path: Path):
    project_dir = make_project(tmp_path)
    before = snapshot(project_dir)
    old = LEFTOVER_AGE_S + 60
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        killed = _partial(project_dir, "v2", _dead_pid(), old)
        just_killed = _partial(project_dir, "v3", _dead_pid(), 5)  # may be another PC's live training
        training_now = _partial(project_dir, "v4", running.pid, old)
        stale_image_tmp = _tmp_file(project_dir / "images" / "ab", "ab12.png", old)
        stale_db_tmp = _tmp_file(project_dir, "settings.json", old)
        stale_model_tmp = _tmp_file(project_dir / "models" / "v1", "model.json", old)
        fresh_tmp = _tmp_file(project_dir / "masks" / "cd", "cd34.png", 5)  # an import writing now

        with Project.open(project_dir) as project:
            assert project.production_model().version == "v1"

        for gone in (killed, stale_image_tmp, stale_db_tmp, stale_model_tmp):
            assert not gone.exists(), gone
        for kept in (just_killed, training_now, fresh_tmp):
            assert kept.exists(), kept
        assert (training_now / "checkpoint.pt").read_bytes() == b"half a checkpoint"
    finally:
        running.kill()
        running.wait()
    assert snapshot(project_dir) == before  # images, labels, models: all as they were
    assert (project_dir / "models" / "v1" / "model.onnx").is_file()


def test_a_leftover_folder_does_not_take_a_version_number(tmp_path: Path):
    project_dir = make_project(tmp_path)
    _partial(project_dir, "v2", _dead_pid(), LEFTOVER_AGE_S + 60)
    with Project.open(project_dir) as project:
        assert project.next_version() == "v2"
        assert not list(project.models_dir.glob(".partial-*"))
