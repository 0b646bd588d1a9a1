"""File and folder names that are not valid UTF-8 (a USB stick from an old camera PC).

On Linux such names reach Python as str with lone surrogates; storing them in SQLite or
printing them used to raise UnicodeEncodeError and lose the whole import batch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from app.core.importer import import_folder
from app.core.project import OK, Project
from tests.hostile.helpers import make_project, run_cli_process, snapshot
from tests.store_fixtures import encoded, part_image, write_image

pytestmark = pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="needs a file system that takes any bytes")


def _source_with_bad_names(root: Path) -> Path:
    """good/ with two ordinary files and b'x\\xfe.png'; a class folder b'scr\\xfftch'."""
    source = root / "src"
    write_image(source / "good" / "a.png", part_image(51))
    write_image(source / "good" / "b.png", part_image(52))
    good = os.fsencode(source / "good")
    with open(os.path.join(good, b"x\xfe.png"), "wb") as fh:
        fh.write(encoded(part_image(53)))
    bad_folder = os.path.join(os.fsencode(source), b"scr\xfftch")
    os.mkdir(bad_folder)
    with open(os.path.join(bad_folder, b"s.png"), "wb") as fh:
        fh.write(encoded(part_image(54, defect=True)))
    return source


def test_import_stores_a_non_utf8_file_name_and_the_rest_of_the_batch(tmp_path: Path):
    project_dir = make_project(tmp_path, deploy=False)
    before = snapshot(project_dir)
    source = _source_with_bad_names(tmp_path)

    with Project.open(project_dir) as project:
        report = import_folder(project, source)
        names = {r.filename for r in project.images()}
        counts = project.label_counts()

    # The file with the odd name is stored, readable as \xfe; its neighbours too.
    assert report.added == 3 and report.labeled == 3
    assert {"a.png", "b.png", "x\\xfe.png"} <= names
    assert counts[OK] == before["label_counts"][OK] + 3
    # The folder whose name cannot be a class name is named (printably) and skipped.
    assert report.skipped == [(str(source / "scr\\xfftch"), report.skipped[0][1])]
    assert "not valid text (UTF-8)" in report.skipped[0][1] and "rename the folder" in report.skipped[0][1]
    after = snapshot(project_dir)
    assert set(before["images"]) <= set(after["images"])  # nothing saved before was touched
    assert all(after["labels"][sha] == verdict for sha, verdict in before["labels"].items())


def test_cli_import_prints_odd_names_without_a_traceback(tmp_path: Path):
    project_dir = make_project(tmp_path, deploy=False)
    before = snapshot(project_dir)
    source = _source_with_bad_names(tmp_path)

    result = run_cli_process("import", project_dir, source)

    out, err = result.stdout.decode("utf-8"), result.stderr.decode("utf-8")
    assert result.returncode == 0, err
    assert "Traceback" not in err and err == ""
    assert "skipped " + str(source / "scr\\xfftch") + ": the folder name is not valid text (UTF-8)" in out
    assert "imported 3 new images (0 duplicates, 1 skipped)" in out
    after = snapshot(project_dir)
    assert len(after["images"]) == len(before["images"]) + 3
    assert set(before["images"]) <= set(after["images"])
