"""A full disk, injected: every write goes through app.core.atomic, which fsyncs before
it renames. On a full disk (ext4's delayed allocation, a quota, a share) the write
itself may still succeed into the cache and the fsync is what reports ENOSPC, so that
is where the fault is injected, after a number of successful files.

Each command must say the disk is full, what to do, and leave what was saved as it
was: no half-written file in place of a good one, no temp files, no rows pointing at
files that are not there.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from app.core import atomic
from app.core.errors import DiskFullError
from app.core.project import Project
from tests.hostile.helpers import make_project, run_cli, snapshot
from tests.store_fixtures import defect_mask, part_image, write_image


@pytest.fixture
def full_disk(monkeypatch):
    """Call with the number of fsyncs that still succeed; every later one is ENOSPC."""
    real_fsync = os.fsync
    state = {"left": None, "refused": 0}

    def fsync(fd):
        if state["left"] is not None:
            if state["left"] <= 0:
                state["refused"] += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            state["left"] -= 1
        return real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)

    def fill(after: int | None) -> dict:
        state["left"] = after
        return state

    return fill


def _no_temp_files(folder: Path) -> None:
    assert not [p for p in folder.rglob(".*.tmp")], "temp files left behind"


def _source(root: Path, n: int = 30) -> Path:
    for i in range(n):
        write_image(root / "src" / "good" / f"g{i:02d}.png", part_image(800 + i))
    return root / "src"


@pytest.mark.parametrize("after", [0, 9])
def test_import_on_a_full_disk_says_so_and_changes_nothing(tmp_path: Path, capsys, full_disk, after: int):
    project_dir = make_project(tmp_path)
    before = snapshot(project_dir)
    source = _source(tmp_path)
    state = full_disk(after)

    code, out, err = run_cli(capsys, "import", project_dir, source)

    assert state["refused"] >= 1
    assert code == 2 and "Traceback" not in err
    assert err.startswith("lineside: The disk is full while writing ") and "free some space and try again" in err
    full_disk(None)
    assert snapshot(project_dir) == before  # the batch in progress was not committed
    _no_temp_files(project_dir)
    code, out, err = run_cli(capsys, "import", project_dir, source)  # space freed: the retry works
    assert code == 0 and "imported 30 new images" in out
    assert len(snapshot(project_dir)["images"]) == len(before["images"]) + 30


def test_a_label_with_a_mask_on_a_full_disk_is_not_saved(tmp_path: Path, full_disk):
    project_dir = make_project(tmp_path, deploy=False)
    with Project.open(project_dir) as project:
        record = project.images()[0]
        history = project.label_history(record.id)
        full_disk(0)
        with pytest.raises(DiskFullError, match="The disk is full while writing .*free some space and try again"):
            project.set_label(record.id, "scratch", mask=defect_mask())
        full_disk(None)
        assert project.label_history(record.id) == history
        label = project.set_label(record.id, "scratch", mask=defect_mask())  # space freed
        assert label.mask_path.is_file()
    _no_temp_files(project_dir)


def test_model_export_onto_a_full_disk_keeps_the_old_file(tmp_path: Path, capsys, full_disk):
    project_dir = make_project(tmp_path)
    target = tmp_path / "line3.onnx"
    target.write_bytes(b"yesterday's model, still in use")
    full_disk(0)

    code, out, err = run_cli(capsys, "export", project_dir, target)

    assert code == 2 and out == "" and "Traceback" not in err
    assert f"The disk is full while writing {target}. Nothing was changed" in err
    assert target.read_bytes() == b"yesterday's model, still in use"
    _no_temp_files(tmp_path)


def test_data_export_onto_a_full_disk_says_so(tmp_path: Path, capsys, full_disk):
    project_dir = make_project(tmp_path, deploy=False)
    before = snapshot(project_dir)
    full_disk(3)

    code, out, err = run_cli(capsys, "export-data", project_dir, tmp_path / "out")

    assert code == 2 and "Traceback" not in err and "The disk is full while writing" in err
    assert snapshot(project_dir) == before
    _no_temp_files(tmp_path / "out")


def test_camera_frame_on_a_full_disk_is_not_recorded(tmp_path: Path, full_disk):
    project_dir = make_project(tmp_path, deploy=False)
    before = snapshot(project_dir)
    with Project.open(project_dir) as project:
        full_disk(0)
        with pytest.raises(DiskFullError):
            project.add_image_array(part_image(900))
        full_disk(None)
    assert snapshot(project_dir) == before
    _no_temp_files(project_dir)


def test_new_project_on_a_full_disk_says_so(tmp_path: Path, capsys, monkeypatch):
    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "mkdir", no_space)
    code, out, err = run_cli(capsys, "new", tmp_path / "line4")
    assert code == 2 and "Traceback" not in err
    assert err.strip() == f"lineside: The disk is full; cannot create {tmp_path / 'line4'}."

