"""`lineside inspect --watch DIR` against cameras that do odd things.

- A camera that reuses file names (part.png over and over): each new version is a new
  part and is judged; it used to be judged once, the first time only.
- A camera that writes slowly (chunks over a second): the file is judged once it is
  complete; it used to be handed out half-written and reported unreadable for good.
- A file name that is not valid UTF-8: printed and logged readably; it used to stop the
  watcher with UnicodeEncodeError.

The watcher is app.core.hotfolder.HotFolder, the same one the desktop app uses; its
rules are tested first with a hand-driven clock, then the command end to end (as a
child process ended by --max-files, with a timeout).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.core.errors import LinesideError
from app.core.hotfolder import HotFolder
from app.core.project import Project
from tests.hostile.helpers import ROOT, make_project


def _png(value: int, size: tuple[int, int] = (48, 64), noise: bool = False) -> bytes:
    image = np.full((*size, 3), value, np.uint8)
    if noise:  # a file big enough to be written in visible chunks
        image = np.random.default_rng(value).integers(0, 256, (*size, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _touch_later(path: Path) -> None:
    """Give *path* a new mtime, as a later write would."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


# -- the hot folder's rules, with a hand-driven clock -----------------------------------

def test_a_reused_name_is_handed_out_again(tmp_path: Path):
    hot = HotFolder(tmp_path, stable_polls=1, clock=Clock())
    part = tmp_path / "part.png"
    part.write_bytes(_png(10))
    assert hot.poll() == [] and hot.poll() == [part]
    assert hot.poll() == []  # once per version
    part.write_bytes(_png(200))  # the camera writes the next part under the same name
    _touch_later(part)
    assert hot.poll() == [] and hot.poll() == [part]
    assert hot.poll() == []


def test_a_file_removed_and_written_again_is_new(tmp_path: Path):
    hot = HotFolder(tmp_path, stable_polls=1, clock=Clock())
    part = tmp_path / "part.png"
    part.write_bytes(_png(10))
    assert hot.poll() == [] and hot.poll() == [part]
    part.unlink()
    assert hot.poll() == []
    part.write_bytes(_png(10))  # same bytes, a new delivery
    assert hot.poll() == [] and hot.poll() == [part]


def test_a_half_written_file_is_retried_until_complete(tmp_path: Path):
    clock = Clock()
    hot = HotFolder(tmp_path, stable_polls=1, settle_s=3.0, clock=clock)
    data, part = _png(0, (80, 80), noise=True), tmp_path / "slow.png"
    part.write_bytes(data[: len(data) // 3])  # the writer stalls longer than the polls
    assert hot.poll() == [] and hot.poll() == [part]
    assert hot.unreadable(part) is False  # not final: it may still be being written
    clock.now += 1
    assert hot.poll() == [] and hot.poll() == []  # unchanged: not retried before it settles
    with open(part, "ab") as fh:
        fh.write(data[len(data) // 3 :])
    _touch_later(part)
    assert hot.poll() == [] and hot.poll() == [part]  # changed: handed out again
    assert hot.rejected == []


def test_a_file_that_stays_broken_is_given_up_once(tmp_path: Path):
    clock = Clock()
    hot = HotFolder(tmp_path, stable_polls=1, settle_s=3.0, clock=clock)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image, and it stays that way")
    assert hot.poll() == [] and hot.poll() == [broken]
    assert hot.unreadable(broken) is False
    clock.now += 3.5
    assert hot.poll() == [] and hot.poll() == [broken]  # settled: one last try
    assert hot.unreadable(broken) is True and hot.rejected == [broken]
    clock.now += 10
    assert [hot.poll() for _ in range(3)] == [[], [], []]  # not again, unless it changes


def test_files_there_before_are_left_alone_until_rewritten(tmp_path: Path):
    old = tmp_path / "old.png"
    old.write_bytes(_png(5))
    hot = HotFolder(tmp_path, stable_polls=1, clock=Clock())
    assert [hot.poll() for _ in range(3)] == [[], [], []]
    old.write_bytes(_png(6))
    _touch_later(old)
    assert hot.poll() == [] and hot.poll() == [old]


def test_a_missing_folder_is_a_clear_error(tmp_path: Path):
    with pytest.raises(LinesideError, match="the hot folder does not exist"):
        HotFolder(tmp_path / "nope")


# -- the command end to end -----------------------------------------------------------

def _watch(project_dir: Path, folder: Path, max_files: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "app", "inspect", str(project_dir), "--watch", str(folder),
               "--max-files", str(max_files), "--poll-interval", "0.05"]  # fmt: skip
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "LC_ALL": "C.UTF-8"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert b"watching" in process.stderr.readline()
    return process


def _finish(process: subprocess.Popen) -> tuple[list[str], str]:
    try:
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    return out.decode("utf-8").splitlines(), err.decode("utf-8")


def test_watch_judges_a_reused_file_name_again(tmp_path: Path):
    project_dir = make_project(tmp_path)
    folder = tmp_path / "hot"
    folder.mkdir()
    process = _watch(project_dir, folder, max_files=2)
    part = folder / "part.png"
    part.write_bytes(_png(250))  # bright: FAIL with the fixture model
    first = process.stdout.readline().decode("utf-8")  # wait until it was judged
    part.write_bytes(_png(10))  # the next part, same name: dark, PASS
    lines, err = _finish(process)

    assert first.startswith("FAIL") and first.rstrip().endswith(str(part))
    assert len(lines) == 1 and lines[0].startswith("PASS") and lines[0].endswith(str(part))
    assert process.returncode == 0 and "2 parts inspected: 1 PASS, 1 FAIL" in err
    with Project.open(project_dir) as project:
        assert [row["source"] for row in project.inspections()] == [str(part), str(part)]


def test_watch_judges_a_slowly_written_file_once_complete(tmp_path: Path):
    project_dir = make_project(tmp_path)
    folder = tmp_path / "hot"
    folder.mkdir()
    data = _png(0, (200, 200), noise=True)
    process = _watch(project_dir, folder, max_files=1)
    target = folder / "slow.png"
    chunks = np.array_split(np.frombuffer(data, np.uint8), 5)
    with open(target, "wb") as fh:
        for chunk in chunks:  # five chunks over about a second: stalls the polls see
            fh.write(chunk.tobytes())
            fh.flush()
            time.sleep(0.25)
    lines, err = _finish(process)

    assert process.returncode == 0, err
    assert len(lines) == 1 and lines[0].startswith(("PASS", "FAIL")) and lines[0].endswith(str(target))
    assert "ERROR" not in "\n".join(lines) and "unreadable" not in err
    assert "1 part inspected" in err


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="needs a file system that takes any bytes")
def test_watch_goes_on_after_a_file_name_that_is_not_utf8(tmp_path: Path):
    project_dir = make_project(tmp_path)
    folder = tmp_path / "hot"
    folder.mkdir()
    process = _watch(project_dir, folder, max_files=2)
    with open(os.path.join(os.fsencode(folder), b"cam\xfe01.png"), "wb") as fh:
        fh.write(_png(20))
    first = process.stdout.readline().decode("utf-8")
    (folder / "cam02.png").write_bytes(_png(30))
    lines, err = _finish(process)

    assert process.returncode == 0 and "Traceback" not in err, err
    assert first.startswith("PASS") and first.rstrip().endswith(str(folder / "cam\\xfe01.png"))
    assert len(lines) == 1 and lines[0].endswith(str(folder / "cam02.png"))
    with Project.open(project_dir) as project:
        sources = sorted(row["source"] for row in project.inspections())
    assert sources == sorted([str(folder / "cam\\xfe01.png"), str(folder / "cam02.png")])


def test_watch_reports_a_file_that_stays_broken_and_judges_it_once_fixed(tmp_path: Path):
    project_dir = make_project(tmp_path)
    folder = tmp_path / "hot"
    folder.mkdir()
    process = _watch(project_dir, folder, max_files=2)
    part = folder / "part.png"
    part.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)  # a camera that gave up half-way
    first = process.stdout.readline().decode("utf-8")  # after the settle time (3 s)
    part.write_bytes(_png(20))  # rewritten whole
    lines, err = _finish(process)

    assert first.startswith(f"ERROR {part}: not a readable image (the PNG file is cut short")
    assert len(lines) == 1 and lines[0].startswith("PASS") and lines[0].endswith(str(part))
    assert process.returncode == 2 and "1 part inspected: 1 PASS, 0 FAIL, 1 unreadable" in err


def test_watch_of_a_missing_folder_is_a_clear_error(tmp_path: Path):
    project_dir = make_project(tmp_path)
    done = subprocess.run([sys.executable, "-m", "app", "inspect", str(project_dir), "--watch", str(tmp_path / "nope")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"lineside: {tmp_path / 'nope'}: the folder to watch does not exist.")
