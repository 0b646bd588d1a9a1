"""The same picture with two different labels is a conflict, reported by name.

It used to be stored as whichever label came first, with only a "duplicates" count to
show for it. Now the image is stored once with no label from the import, and both paths
and both labels are listed; a label already in the project is never overwritten.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from app.core.importer import import_folder
from app.core.project import OK, Project
from tests.hostile.helpers import run_cli, snapshot
from tests.store_fixtures import part_image, write_image


def _source(root: Path) -> Path:
    source = root / "src"
    write_image(source / "good" / "a.png", part_image(1))
    write_image(source / "good" / "b.png", part_image(2))
    write_image(source / "scratch" / "c.png", part_image(3, defect=True))
    (source / "scratch" / "a-again.png").write_bytes((source / "good" / "a.png").read_bytes())
    shutil.copy(source / "good" / "a.png", source / "good" / "z-copy.png")  # same label: a plain duplicate
    return source


def test_same_bytes_under_two_labels_is_stored_once_unlabeled_and_reported(tmp_path: Path):
    source = _source(tmp_path)
    with Project.create(tmp_path / "p") as project:
        report = import_folder(project, source)
        by_name = {r.filename: r for r in project.images()}
        assert set(by_name) == {"a.png", "b.png", "c.png"}  # a.png stored once
        assert project.label(by_name["a.png"].id) is None  # no label from this import
        assert project.label_history(by_name["a.png"].id) == []  # not even one taken back
        assert project.label_counts() == {OK: 1, "scratch": 1, "unlabeled": 1}

    assert (report.added, report.duplicates, report.labeled) == (3, 2, 2)
    assert len(report.conflicts) == 1
    conflict = report.conflicts[0]
    assert sorted(conflict.sources) == sorted([
        (str(source / "good" / "a.png"), OK),
        (str(source / "good" / "z-copy.png"), OK),
        (str(source / "scratch" / "a-again.png"), "scratch"),
    ])  # fmt: skip
    assert conflict.project_label is None
    assert "the same image with different labels" in conflict.describe()


def test_cli_lists_the_conflict_with_both_paths_and_labels(tmp_path: Path, capsys):
    source = _source(tmp_path)
    project_dir = tmp_path / "p"
    Project.create(project_dir).close()
    code, out, err = run_cli(capsys, "import", project_dir, source)
    assert code == 0 and err == ""
    conflict_lines = [line for line in out.splitlines() if line.startswith("conflict: ")]
    assert len(conflict_lines) == 1
    line = conflict_lines[0]
    assert f"{source / 'good' / 'a.png'} says 'ok'" in line
    assert f"{source / 'scratch' / 'a-again.png'} says 'scratch'" in line
    assert "stored once without a label; label it by hand" in line
    assert out.strip().splitlines()[-1].endswith("; 1 label conflicts (listed above)")


def test_import_that_contradicts_the_project_keeps_the_projects_label(tmp_path: Path, capsys):
    source = _source(tmp_path)
    project_dir = tmp_path / "p"
    with Project.create(project_dir) as project:
        record, _ = project.add_image_file(source / "good" / "b.png")
        project.set_label(record.id, "dent", author="anna")  # an inspector decided: a dent
    shutil.copy(source / "good" / "b.png", source / "good" / "b2.png")
    before = snapshot(project_dir)

    code, out, err = run_cli(capsys, "import", project_dir, source)

    assert code == 0 and err == ""
    dent_lines = [line for line in out.splitlines() if "'dent'" in line]
    assert dent_lines == [  # one entry for the image, naming both copies
        f"conflict: {source / 'good' / 'b.png'} says 'ok' and {source / 'good' / 'b2.png'} says 'ok', "
        "but the project labels this image 'dent'; the project's label was kept. "
        "Relabel it by hand if the import is right."
    ]
    with Project.open(project_dir) as project:
        history = project.label_history(record.id)
        assert [(label.verdict, label.author) for label in history] == [("dent", "anna")]
    after = snapshot(project_dir)
    assert set(before["images"]) <= set(after["images"])
    assert after["labels"][record.sha256] == "dent"
