"""`lineside import NEW OLDPROJECT`: importing another Lineside project folder.

Its images/ folder holds hash-named sub-folders, which used to be taken for defect
classes. A project source is now recognised (project.db), opened read-only, and its
images come over with their current labels, masks, splits and original names.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from app.core.project import OK, Project
from tests.hostile.helpers import file_sha, run_cli, snapshot
from tests.store_fixtures import defect_mask, encoded, part_image


def _old_project(root: Path) -> Path:
    path = root / "old"
    with Project.create(path, name="Press 2") as project:
        good, _ = project.add_image_bytes(encoded(part_image(1)), "good-part.png")
        bad, _ = project.add_image_bytes(encoded(part_image(2, defect=True)), "scratched.png")
        relabeled, _ = project.add_image_bytes(encoded(part_image(3)), "was-dent.png")
        project.add_image_bytes(encoded(part_image(4)), "not-labeled-yet.png")
        project.set_label(good.id, OK)
        project.set_label(bad.id, "scratch", mask=defect_mask())
        project.set_label(relabeled.id, "dent")
        project.set_label(relabeled.id, OK)  # the current label is what counts
        project.set_split(good.id, "val")
        project.set_split(bad.id, "train")
    return path


def _folder_state(folder: Path) -> dict[str, str]:
    # project.db-wal/-shm are SQLite's lock and index files, which any reader of a WAL
    # database may create (empty); the database and every image and mask must be untouched.
    return {str(p.relative_to(folder)): file_sha(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def test_import_of_a_project_copies_images_labels_masks_and_splits(tmp_path: Path, capsys):
    old = _old_project(tmp_path)
    old_files = _folder_state(old)
    old_snapshot = snapshot(old)
    new = tmp_path / "new"
    Project.create(new).close()

    code, out, err = run_cli(capsys, "import", new, old)

    assert code == 0 and err == ""
    assert "imported 4 new images (0 duplicates, 0 skipped) as lineside-project; 3 labeled, 1 with masks" in out
    with Project.open(new) as project:
        assert project.label_counts() == {OK: 2, "scratch": 1, "unlabeled": 1}
        assert not any(cls.name.startswith(tuple("0123456789abcdef")) for cls in project.classes())
        by_name = {r.filename: r for r in project.images()}
        assert set(by_name) == {"good-part.png", "scratched.png", "was-dent.png", "not-labeled-yet.png"}
        assert by_name["good-part.png"].split == "val" and by_name["scratched.png"].split == "train"
        scratch = project.label(by_name["scratched.png"].id)
        assert scratch.verdict == "scratch" and np.array_equal(project.load_mask(scratch), defect_mask())
        assert by_name["was-dent.png"].tags["import_project"] == "Press 2"
        assert {r.sha256 for r in by_name.values()} == {image[0] for image in old_snapshot["images"]}
    # The source project was only read.
    assert _folder_state(old) == old_files
    assert snapshot(old) == old_snapshot


def test_importing_a_project_into_itself_is_refused(tmp_path: Path, capsys):
    old = _old_project(tmp_path)
    before = snapshot(old)
    for source in (old, old / "images"):
        code, out, err = run_cli(capsys, "import", old, source)
        assert code == 2 and out == ""
        assert "is the project" in err and "Import from a folder outside the project" in err
    assert snapshot(old) == before


def test_a_project_on_read_only_media_can_be_imported(tmp_path: Path, capsys):
    """The source folder is made immutable with chattr +i (works as root, unlike chmod)."""
    old = _old_project(tmp_path)
    old_files = _folder_state(old)
    if subprocess.run(["chattr", "+i", str(old)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        new = tmp_path / "new"
        Project.create(new).close()
        code, out, err = run_cli(capsys, "import", new, old)
    finally:
        subprocess.run(["chattr", "-i", str(old)], check=True)
    assert code == 0 and err == "" and "imported 4 new images" in out
    assert _folder_state(old) == old_files
