"""Exports never replace something that is not a file: a device, a pipe, a folder.

`lineside export P /dev/full` used to write a temp file into /dev and, as root, rename
it over the device node. Only a regular file (or a new name) is a valid target now.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from app.core import atomic
from app.core.errors import LinesideError
from tests.hostile.helpers import make_project, run_cli, snapshot

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")


def _targets(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "line.pipe"
    os.mkfifo(fifo)
    folder = tmp_path / "models-out"
    folder.mkdir()
    (folder / "keep.txt").write_text("kept")
    return {"fifo": fifo, "folder": folder}


@needs_fifo
@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_model_export_refuses_a_target_that_is_not_a_file(tmp_path: Path, capsys, kind: str):
    project_dir = make_project(tmp_path)
    before = snapshot(project_dir)
    target = _targets(tmp_path)[kind]

    code, out, err = run_cli(capsys, "export", project_dir, target)

    assert code == 2 and out == "" and "Traceback" not in err
    assert f"{target} already exists and is " in err and "it was left as it is" in err
    if kind == "fifo":
        assert stat.S_ISFIFO(target.stat().st_mode)
    else:
        assert (target / "keep.txt").read_text() == "kept"
    assert not list(target.parent.glob(".*.tmp"))
    assert snapshot(project_dir) == before


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_model_export_to_dev_full_leaves_the_device_alone(tmp_path: Path, capsys):
    project_dir = make_project(tmp_path)
    before = snapshot(project_dir)
    device_before = os.stat("/dev/full")
    dev_entries = set(os.listdir("/dev"))

    code, out, err = run_cli(capsys, "export", project_dir, "/dev/full")

    assert code == 2 and "/dev/full already exists and is not a regular file" in err
    after = os.stat("/dev/full")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == device_before.st_rdev
    assert set(os.listdir("/dev")) <= dev_entries  # no temp file left in /dev
    assert snapshot(project_dir) == before


@needs_fifo
@pytest.mark.parametrize("kind", ["fifo", "dev-null"])
def test_data_export_refuses_a_target_that_is_not_a_folder(tmp_path: Path, capsys, kind: str):
    if kind == "dev-null" and sys.platform == "win32":
        pytest.skip("no /dev/null")
    project_dir = make_project(tmp_path, deploy=False)
    before = snapshot(project_dir)
    target = _targets(tmp_path)["fifo"] if kind == "fifo" else Path("/dev/null")

    code, out, err = run_cli(capsys, "export-data", project_dir, target)

    assert code == 2 and out == "" and "Traceback" not in err
    assert f"{target} already exists and is not a folder" in err
    assert snapshot(project_dir) == before


@needs_fifo
def test_atomic_writes_refuse_a_pipe_or_folder(tmp_path: Path):
    for target in _targets(tmp_path).values():
        with pytest.raises(LinesideError, match="already exists and is"):
            atomic.write_bytes(target, b"data")
    assert not list(tmp_path.glob(".*.tmp"))
    regular = tmp_path / "plain.bin"
    atomic.write_bytes(regular, b"one")
    atomic.write_bytes(regular, b"two")  # replacing a regular file still works
    assert regular.read_bytes() == b"two"
