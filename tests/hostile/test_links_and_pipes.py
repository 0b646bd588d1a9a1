"""Import sources with links and special files: a link back up the tree (a loop), a
link to a file outside, a dangling link, a named pipe and a device named like images.

A loop used to bring every image in a second time under the link's name as a class
(so each became a label conflict); a pipe named .png made the import wait for ever.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.core.importer import import_folder, labeled_files
from app.core.project import OK, Project
from tests.hostile.helpers import ROOT, file_sha, make_project, run_cli, snapshot
from tests.store_fixtures import part_image, write_image

pytestmark = pytest.mark.skipif(os.name == "nt", reason="symlinks and pipes need POSIX here")


def _source(root: Path) -> Path:
    source = root / "src"
    write_image(source / "good" / "g1.png", part_image(301))
    write_image(source / "good" / "g2.png", part_image(302))
    write_image(source / "scratch" / "s1.png", part_image(303, defect=True))
    return source


def _import(project_dir: Path, source: Path):
    with Project.open(project_dir) as project:
        return import_folder(project, source)


def test_a_link_to_the_source_itself_is_not_followed(tmp_path: Path):
    source = _source(tmp_path)
    os.symlink(source, source / "again")  # a class folder "again" that is the whole source
    project_dir = make_project(tmp_path, deploy=False)
    before = snapshot(project_dir)

    report = _import(project_dir, source)

    assert (report.added, report.labeled, report.conflicts) == (3, 3, [])
    assert report.skipped == [(str(source / "again"), "a link back to a folder above it (a loop); not followed")]
    after = snapshot(project_dir)
    assert after["label_counts"][OK] == before["label_counts"][OK] + 2
    assert after["label_counts"]["scratch"] == before["label_counts"]["scratch"] + 1
    assert "again" not in after["label_counts"]


def test_a_link_to_a_folder_above_the_source_is_not_followed(tmp_path: Path):
    source = _source(tmp_path)
    os.symlink(tmp_path, source / "up")
    files, skipped = labeled_files(source)
    assert sorted(p.name for _, p in files) == ["g1.png", "g2.png", "s1.png"]
    assert [path for path, _ in skipped] == [str(source / "up")]


def test_a_loop_inside_a_class_folder_ends(tmp_path: Path, capsys):
    source = _source(tmp_path)
    os.symlink(source / "good", source / "good" / "loop")  # good/loop/loop/loop/...
    os.symlink("..", source / "scratch" / "parent")
    project_dir = make_project(tmp_path, deploy=False)
    before = snapshot(project_dir)

    code, out, err = run_cli(capsys, "import", project_dir, source)

    assert code == 0 and err == ""
    assert "imported 3 new images (0 duplicates, 0 skipped)" in out and "3 labeled" in out
    assert len(snapshot(project_dir)["images"]) == len(before["images"]) + 3


def test_inspect_of_a_folder_with_a_link_loop_ends(tmp_path: Path):
    project_dir = make_project(tmp_path)
    folder = tmp_path / "parts"
    write_image(folder / "a.png", part_image(310))
    os.symlink(folder, folder / "loop")
    done = subprocess.run([sys.executable, "-m", "app", "inspect", str(project_dir), str(folder)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [line.split()[-1] for line in done.stdout.splitlines()] == [str(folder / "a.png")]


def test_a_link_to_an_image_outside_is_copied_in(tmp_path: Path):
    source = _source(tmp_path)
    outside = tmp_path / "elsewhere" / "o1.png"
    write_image(outside, part_image(320))
    os.symlink(outside, source / "good" / "linked.png")
    project_dir = make_project(tmp_path, deploy=False)

    report = _import(project_dir, source)
    assert report.added == 4 and report.skipped == []
    outside.unlink()  # the stick is pulled: the project keeps its own copy
    with Project.open(project_dir) as project:
        (record,) = [r for r in project.images() if r.filename == "linked.png"]
        assert record.path.is_file() and not record.path.is_symlink()
        assert project.load_image(record.id).shape == (48, 64, 3)
        assert project.label(record.id).verdict == OK


def test_a_dangling_link_is_skipped_with_a_reason(tmp_path: Path):
    source = _source(tmp_path)
    os.symlink(tmp_path / "gone.png", source / "good" / "dangling.png")
    report = _import(make_project(tmp_path, deploy=False), source)
    assert report.added == 3
    assert report.skipped == [(str(source / "good" / "dangling.png"), "cannot be read (No such file or directory).")]


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "folder-named-png"])
def test_a_special_file_named_like_an_image_is_refused_not_read(tmp_path: Path, kind: str):
    source = _source(tmp_path)
    odd = source / "good" / "odd.png"
    if kind == "fifo":
        os.mkfifo(odd)  # reading it would wait for a writer for ever
    elif kind == "dev-zero":
        os.symlink("/dev/zero", odd)  # reading it would never end
    else:
        odd.mkdir()
        write_image(odd / "inside.png", part_image(330))
    project_dir = make_project(tmp_path, deploy=False)
    before = snapshot(project_dir)
    done = subprocess.run([sys.executable, "-m", "app", "import", str(project_dir), str(source)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    if kind == "folder-named-png":  # a folder is walked like any other
        assert "imported 4 new images (0 duplicates, 0 skipped)" in done.stdout
    else:
        assert f"skipped {odd}: not a regular file (a pipe, device or socket), not an image file." in done.stdout
        assert "imported 3 new images (0 duplicates, 1 skipped)" in done.stdout
    assert set(before["images"]) < set(snapshot(project_dir)["images"])


def test_inspect_refuses_a_pipe_instead_of_waiting(tmp_path: Path):
    project_dir = make_project(tmp_path)
    pipe = tmp_path / "camera.png"
    os.mkfifo(pipe)
    done = subprocess.run([sys.executable, "-m", "app", "inspect", str(project_dir), str(pipe)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stdout.startswith(f"ERROR {pipe}: not a regular file (a pipe, device or socket)")


def test_the_stored_copy_matches_the_link_target(tmp_path: Path):
    source = _source(tmp_path)
    outside = tmp_path / "elsewhere" / "o2.png"
    write_image(outside, part_image(340))
    os.symlink(outside, source / "scratch" / "linked.png")
    project_dir = make_project(tmp_path, deploy=False)
    _import(project_dir, source)
    with Project.open(project_dir) as project:
        (record,) = [r for r in project.images() if r.filename == "linked.png"]
        assert file_sha(record.path) == file_sha(outside)
