"""Two programs on one project at once: two imports of the same folder, two deploys,
two trainings. Each must finish, and the project must come out as if they had run one
after the other: every image once, one label per image from the import, exactly one
production model, two distinct model versions.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from app.core.project import OK, Project
from tests.hostile.helpers import ROOT, file_sha, make_project, snapshot
from tests.onnx_fixtures import write_model
from tests.store_fixtures import part_image, write_image


def _start(*argv) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app", *map(str, argv)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _wait(process: subprocess.Popen, timeout: float = 180) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        process.kill()
    return process.returncode, out, err


def _integrity(project_dir: Path) -> str:
    with sqlite3.connect(project_dir / "project.db") as conn:
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
    conn.close()
    return result


def test_two_imports_of_the_same_folder_at_once(tmp_path: Path):
    source = tmp_path / "src"
    for i in range(60):
        write_image(source / "good" / f"g{i:02d}.png", part_image(500 + i))
    for i in range(30):
        write_image(source / "scratch" / f"s{i:02d}.png", part_image(600 + i, defect=True))
    project_dir = make_project(tmp_path, deploy=False)
    before = snapshot(project_dir)

    first, second = _start("import", project_dir, source), _start("import", project_dir, source)
    results = [_wait(first), _wait(second)]

    for code, out, err in results:
        assert code == 0 and err == "", err
    added = sorted(int(out.split("imported ")[1].split()[0]) for _, out, _ in results)
    assert sum(added) == 90  # each image was added by one of them; the other saw a duplicate
    after = snapshot(project_dir)
    assert len(after["images"]) == len(before["images"]) + 90
    assert len({sha for sha, *_ in after["images"]}) == len(after["images"])
    assert set(before["images"]) < set(after["images"])
    with Project.open(project_dir) as project:
        new = [r for r in project.images() if r.sha256 not in before["labels"]]
        histories = [project.label_history(r.id) for r in new]
    assert all(len(history) == 1 for history in histories)  # labeled once, not by both
    assert after["label_counts"][OK] == before["label_counts"][OK] + 60
    assert after["label_counts"]["scratch"] == before["label_counts"]["scratch"] + 30
    assert _integrity(project_dir) == "ok"


def test_two_deploys_at_once_leave_exactly_one_production_model(tmp_path: Path):
    project_dir = make_project(tmp_path)  # v1 in production
    with Project.open(project_dir) as project:
        for version in ("v2", "v3"):
            folder = project.models_dir / version
            write_model(folder / "model.onnx", version=version)
            project.register_model(version, folder, 0.5, {}, {})
    shas = {v: file_sha(project_dir / "models" / v / "model.onnx") for v in ("v1", "v2", "v3")}

    for a, b in (("v2", "v3"), ("v3", "v2"), ("v1", "v3")):
        results = [_wait(p) for p in (_start("deploy", project_dir, a), _start("deploy", project_dir, b))]
        assert all(code == 0 and "Traceback" not in err for code, _, err in results), results
        with Project.open(project_dir) as project:
            statuses = {m.version: m.status for m in project.models()}
        assert list(statuses.values()).count("production") == 1, statuses
        assert [v for v, s in statuses.items() if s == "production"][0] in (a, b)
    assert {v: file_sha(project_dir / "models" / v / "model.onnx") for v in shas} == shas
    assert _integrity(project_dir) == "ok"


def test_an_import_while_labels_are_set_keeps_both(tmp_path: Path):
    source = tmp_path / "src"
    for i in range(40):
        write_image(source / "good" / f"g{i:02d}.png", part_image(700 + i))
    project_dir = make_project(tmp_path, deploy=False)
    importer = _start("import", project_dir, source)
    rounds = 0
    with Project.open(project_dir) as project:
        records = project.images()
        while importer.poll() is None or rounds == 0:  # an inspector relabels all along the import
            for record in records:
                project.set_label(record.id, "dent" if rounds % 2 else "chip", author="anna")
            rounds += 1
    code, out, err = _wait(importer)
    assert code == 0 and err == "", err
    assert "imported 40 new images" in out
    with Project.open(project_dir) as project:
        last = "dent" if (rounds - 1) % 2 else "chip"
        assert all(project.label(r.id).verdict == last for r in records)
        assert all(len(project.label_history(r.id)) == 1 + rounds for r in records)  # every call kept
        assert project.label_counts()[OK] == 40
    assert _integrity(project_dir) == "ok"


@pytest.mark.slow
def test_two_trainings_at_once_make_two_versions(tmp_path: Path):
    from app.core.runtime import Inspector
    from tests.training_fixtures import make_tiny_project

    project_dir = make_tiny_project(tmp_path / "tiny")
    before = snapshot(project_dir)
    command = ("train", project_dir, "--epochs", "1", "--device", "cpu")
    results = [_wait(p, timeout=600) for p in (_start(*command), _start(*command))]

    for code, out, err in results:
        assert code == 0 and "Traceback" not in err, err
    made = sorted(out.split("new candidate ")[1].split()[0] for _, out, _ in results)
    assert made == ["v1", "v2"]
    with Project.open(project_dir) as project:
        models = {m.version: m for m in project.models()}
        assert sorted(models) == ["v1", "v2"] and {m.status for m in models.values()} == {"candidate"}
        assert models["v1"].path != models["v2"].path
        image = project.load_image(project.images()[0].id)
    for model in models.values():
        assert 0.0 <= Inspector(model.onnx_path).inspect(image).score <= 1.0
    assert not list((project_dir / "models").glob(".partial-*"))
    after = snapshot(project_dir)
    assert after["labels"] == before["labels"]
    # Training gives each labeled image its split, once; the images themselves are as they were.
    assert [(sha, name, data) for sha, name, _, data in after["images"]] == [
        (sha, name, data) for sha, name, _, data in before["images"]]  # fmt: skip
    assert {split for _, _, split, _ in after["images"]} <= {"train", "val"}
