"""The project store on real SQLite files and real images."""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
import threading
from datetime import timezone
from pathlib import Path

import numpy as np
import pytest

from app.core import db
from app.core.errors import BadImageError, DiskFullError, LinesideError, ModelFileError, NotAProjectError
from app.core.project import OK, Project
from tests.onnx_fixtures import write_model
from tests.store_fixtures import defect_mask, encoded, part_image


@pytest.fixture
def project(tmp_path: Path):
    with Project.create(tmp_path / "proj", name="Line 3") as proj:
        yield proj


def add(project: Project, seed: int, verdict: str | None = None, **kw):
    record, _ = project.add_image_bytes(encoded(part_image(seed)), f"part{seed}.png", **kw)
    if verdict is not None:
        project.set_label(record.id, verdict)
    return record


# -- create / open -------------------------------------------------------------------


def test_create_then_open_keeps_name_and_pragmas(tmp_path: Path):
    Project.create(tmp_path / "p", name="Stamping").close()
    assert Project.is_project(tmp_path / "p")
    with Project.open(tmp_path / "p") as proj:
        assert proj.name == "Stamping"
        assert proj.images_dir == tmp_path / "p" / "images" and proj.images_dir.is_dir()
        with proj._read() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.scalar(db.schema_version.select()) == db.SCHEMA_VERSION


def test_create_refuses_existing_project_and_non_empty_folder(tmp_path: Path):
    Project.create(tmp_path / "p").close()
    with pytest.raises(LinesideError, match="already a Lineside project"):
        Project.create(tmp_path / "p")
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("x")
    with pytest.raises(LinesideError, match="not empty"):
        Project.create(tmp_path / "stuff")
    assert (tmp_path / "stuff" / "notes.txt").read_text() == "x"


def test_open_missing_or_plain_folder_is_not_a_project(tmp_path: Path):
    with pytest.raises(NotAProjectError, match=r"missing is not a Lineside project"):
        Project.open(tmp_path / "missing")
    with pytest.raises(NotAProjectError, match=r"no project\.db"):
        Project.open(tmp_path)
    assert not Project.is_project(tmp_path)


def test_open_corrupt_database_gives_clear_error(tmp_path: Path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "project.db").write_bytes(b"this is not an SQLite database " * 200)
    with pytest.raises(LinesideError, match=r"project\.db is damaged"):
        Project.open(folder)


def test_open_database_of_another_program_is_refused(tmp_path: Path):
    folder = tmp_path / "other"
    folder.mkdir()
    with sqlite3.connect(folder / "project.db") as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(LinesideError, match="not a Lineside project database"):
        Project.open(folder)


# -- images --------------------------------------------------------------------------


def test_images_are_content_addressed_and_byte_identical(project: Project, tmp_path: Path):
    data = encoded(part_image(1), ".jpg")
    source = tmp_path / "Part One.JPG"
    source.write_bytes(data)
    record, new = project.add_image_file(source, tags={"camera": "cam-2", "lighting": "ring"})
    assert new
    assert record.path == project.path / "images" / record.sha256[:2] / f"{record.sha256}.jpg"
    assert record.path.read_bytes() == data
    assert (record.filename, record.source, record.width, record.height) == ("Part One.JPG", "import", 64, 48)
    assert record.tags == {"camera": "cam-2", "lighting": "ring"}
    assert record.captured_at.tzinfo == timezone.utc

    again, new_again = project.add_image_bytes(data, "copy.jpg", source="camera")
    assert not new_again and again == record
    assert len(project.images()) == 1
    assert project.find_image(record.sha256) == record
    assert project.find_image("0" * 64) is None
    assert project.load_image(record.id).shape == (48, 64, 3)


def test_camera_frame_is_stored_losslessly(project: Project):
    frame = part_image(7)
    record, new = project.add_image_array(frame)
    assert new and record.source == "camera" and record.path.suffix == ".png"
    assert np.array_equal(project.load_image(record.id), frame)


def test_bad_image_is_refused_naming_the_file(project: Project, tmp_path: Path):
    with pytest.raises(BadImageError, match="broken.png"):
        project.add_image_bytes(b"not an image at all", "broken.png")
    with pytest.raises(BadImageError, match=r"empty.jpg.*0 bytes"):
        project.add_image_bytes(b"", "empty.jpg")
    with pytest.raises(BadImageError, match="gone.png"):
        project.add_image_file(tmp_path / "gone.png")
    assert project.images() == []
    assert not any(p.is_file() for p in project.images_dir.rglob("*"))


def test_tags_merge_and_remove(project: Project):
    record = add(project, 1, tags={"camera": "a", "batch": "17"})
    project.set_tags(record.id, {"batch": "18", "lighting": "dome"})
    project.set_tags(record.id, {"camera": None})
    assert project.image(record.id).tags == {"batch": "18", "lighting": "dome"}


def test_disk_full_while_storing_keeps_everything_saved(project: Project, monkeypatch):
    kept = add(project, 1, OK)
    before = kept.path.read_bytes()

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(DiskFullError, match="disk is full"):
        project.add_image_bytes(encoded(part_image(2)), "new.png")
    monkeypatch.undo()
    assert [r.id for r in project.images()] == [kept.id]
    assert kept.path.read_bytes() == before
    leftovers = [p for p in project.path.rglob("*.tmp")]
    assert leftovers == []
    assert project.label(kept.id).verdict == OK


def test_database_full_raises_disk_full_and_keeps_earlier_rows(project: Project):
    kept = add(project, 1, OK)
    with project._write() as conn:  # single-threaded: the pool hands back this connection
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
        conn.exec_driver_sql(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(DiskFullError, match=r"project\.db"):
        for i in range(50):
            project.set_setting(f"big{i}", "x" * 20000)
    with project._write() as conn:
        conn.exec_driver_sql("PRAGMA max_page_count = 1000000")
    assert project.label(kept.id).verdict == OK and [r.id for r in project.images()] == [kept.id]


# -- classes and labels --------------------------------------------------------------


def test_classes_get_distinct_colours_and_keys(project: Project):
    a = project.add_class("scratch")
    b = project.add_class("dent", color="#00FF00")
    assert project.add_class("Scratch") == a  # idempotent, any case
    assert (a.key, b.key) == (1, 2) and a.color != b.color and b.color == "#00ff00"
    for bad in ("", "ok", "OK", "good", "masks", "a/b", "..x"):
        with pytest.raises(LinesideError):
            project.add_class(bad)
    for i in range(10):
        project.add_class(f"c{i}")
    classes = project.classes()
    assert [c.key for c in classes][:9] == list(range(1, 10)) and classes[-1].key is None
    assert len({c.color for c in classes}) == len(classes)


def test_labels_with_mask_history_and_undo(project: Project):
    record = add(project, 3)
    assert project.label(record.id) is None
    mask = defect_mask()
    first = project.set_label(record.id, "scratch", mask=mask, author="anna")
    assert first.verdict == "scratch" and first.author == "anna" and first.mask_path.is_file()
    assert np.array_equal(project.load_mask(first), mask)
    assert project.classes()[0].name == "scratch"  # auto-added

    ok = project.set_label(record.id, "OK", mask=mask)  # mask ignored for OK
    assert ok.verdict == OK and ok.mask_path is None
    project.set_label(record.id, None)
    assert project.label(record.id) is None

    restored = project.undo_label(record.id)
    assert restored.verdict == OK
    restored = project.undo_label(record.id)
    assert restored.verdict == "scratch" and np.array_equal(project.load_mask(restored), mask)
    assert project.undo_label(record.id) is None  # back to "never labeled"
    assert project.undo_label(record.id) is None  # nothing left to undo: no new row
    history = project.label_history(record.id)
    assert [h.verdict for h in history] == ["scratch", OK, None, OK, "scratch", None]
    assert history[0].created_at <= history[-1].created_at


def test_mask_of_wrong_size_is_refused(project: Project):
    record = add(project, 4)
    with pytest.raises(LinesideError, match="48"):
        project.set_label(record.id, "dent", mask=np.ones((10, 10), np.uint8))
    assert project.label_history(record.id) == []


def test_label_queries_follow_the_current_label(project: Project):
    a, b, c, d = (add(project, i) for i in range(4))
    project.set_label(a.id, OK)
    project.set_label(b.id, "dent")
    project.set_label(c.id, "dent")
    project.set_label(c.id, None)  # cleared counts as unlabeled
    assert [r.id for r in project.images(verdict=OK)] == [a.id]
    assert [r.id for r in project.images(verdict="dent")] == [b.id]
    assert [r.id for r in project.images(unlabeled=True)] == [c.id, d.id]
    assert [(r.id, lab.verdict) for r, lab in project.labeled()] == [(a.id, OK), (b.id, "dent")]
    assert project.label_counts() == {OK: 1, "dent": 1, "unlabeled": 2}


# -- splits --------------------------------------------------------------------------


def _val_share(project: Project, verdict: str) -> float:
    splits = [r.split for r in project.images(verdict=verdict)]
    return splits.count("val") / len(splits)


def test_splits_are_stratified_and_never_move(project: Project):
    for i in range(50):
        add(project, i, OK)
    for i in range(50, 60):
        add(project, i, "dent")
    add(project, 99)  # unlabeled: gets no split
    first = project.assign_splits(0.2)
    assert first["train"] + first["val"] == 60
    counts = {OK: _val_share(project, OK), "dent": _val_share(project, "dent")}
    assert abs(counts[OK] - 0.2) <= 0.05 and abs(counts["dent"] - 0.2) <= 0.1
    assert project.images(unlabeled=True)[0].split is None
    before = {r.id: r.split for r in project.images() if r.split}

    for i in range(100, 130):
        add(project, i, OK)
    project.set_split(project.images(verdict=OK)[0].id, "test")
    before[project.images(verdict=OK)[0].id] = "test"
    new_counts = project.assign_splits(0.2)
    assert new_counts["train"] + new_counts["val"] == 30
    after = {r.id: r.split for r in project.images()}
    assert all(after[i] == s for i, s in before.items())
    assert abs(_val_share(project, OK) - 0.2) <= 0.05
    assert project.assign_splits(0.2) == {"train": 0, "val": 0}
    with pytest.raises(LinesideError, match="Unknown split"):
        project.set_split(1, "holdout")


def test_held_out_splits_are_not_counted_for_training(project: Project):
    """Test and golden parts keep their labels but are not what a training learns from:
    neither in the counts that choose the mode nor in the data fingerprint."""
    for i in range(4):
        add(project, i, OK)
    dent = add(project, 10, "dent")
    add(project, 11)  # unlabeled
    fingerprint = project.labeled_fingerprint()
    project.set_split(dent.id, "test")
    assert project.label_counts() == {OK: 4, "dent": 1, "unlabeled": 1}
    assert project.label_counts(for_training=True) == {OK: 4, "unlabeled": 1}
    assert project.labeled_fingerprint() != fingerprint  # the dent left the training data
    project.set_split(dent.id, "golden")
    assert project.label_counts(for_training=True) == {OK: 4, "unlabeled": 1}
    held = project.labeled_fingerprint()
    project.set_label(dent.id, "scratch")  # relabeling a held-out part changes nothing trained on
    assert project.labeled_fingerprint() == held


def test_splits_do_not_depend_on_import_order(tmp_path: Path):
    seeds = list(range(30))
    results = []
    for name, order in (("a", seeds), ("b", seeds[::-1])):
        with Project.create(tmp_path / name) as proj:
            for seed in order:
                add(proj, seed, "dent" if seed % 3 == 0 else OK)
            proj.assign_splits(0.25)
            results.append({r.sha256: r.split for r in proj.images()})
    assert results[0] == results[1]
    assert set(results[0].values()) == {"train", "val"}


# -- models and inspections ----------------------------------------------------------


def _model_folder(project: Project, version: str) -> Path:
    folder = project.models_dir / version
    folder.mkdir(parents=True)
    # A real (tiny) model: deploy runs it before putting it into production.
    write_model(folder / "model.onnx", version=version)
    return folder


def test_model_register_deploy_retire(project: Project):
    assert project.next_version() == "v1" and project.production_model() is None
    v1 = project.register_model("v1", _model_folder(project, "v1"), 0.4, {"auroc": 0.97}, {"n_train": 12})
    assert (v1.status, v1.threshold, v1.metrics, v1.report) == ("candidate", 0.4, {"auroc": 0.97}, {"n_train": 12})
    assert v1.path == project.models_dir / "v1" and v1.created_at.tzinfo == timezone.utc
    with pytest.raises(LinesideError, match="already registered"):
        project.register_model("v1", project.models_dir / "v1", 0.4, {}, {})
    (project.models_dir / "v2").mkdir()  # an interrupted training: the number stays used
    with pytest.raises(ModelFileError, match="no model.onnx"):
        project.register_model("v2", project.models_dir / "v2", 0.5, {}, {})
    assert project.next_version() == "v3"
    project.register_model("v3", _model_folder(project, "v3"), 0.5, {}, {})
    (project.models_dir / "v3" / "model.onnx").rename(project.models_dir / "v3" / "moved.onnx")
    with pytest.raises(ModelFileError, match="model.onnx is missing"):
        project.deploy("v3")
    (project.models_dir / "v3" / "moved.onnx").rename(project.models_dir / "v3" / "model.onnx")

    assert project.deploy("v1").status == "production"
    assert project.deploy("v3").status == "production"
    assert [(m.version, m.status) for m in project.models()] == [("v3", "production"), ("v1", "retired")]
    assert project.production_model().version == "v3"
    project.retire("v3")
    assert project.production_model() is None
    with pytest.raises(LinesideError, match=r"'v9'.*v1, v3"):
        project.model("v9")
    with pytest.raises(LinesideError, match="v9"):
        project.deploy("v9")


def test_model_paths_survive_moving_the_project(tmp_path: Path):
    with Project.create(tmp_path / "here") as proj:
        proj.register_model("v1", _model_folder(proj, "v1"), 0.5, {}, {})
        record = add(proj, 1, "dent")
    (tmp_path / "here").rename(tmp_path / "there")
    with Project.open(tmp_path / "there") as moved:
        assert moved.model("v1").path == tmp_path / "there" / "models" / "v1"
        assert moved.image(record.id).path.read_bytes() == encoded(part_image(1))


def test_inspections_from_worker_threads(project: Project):
    record = add(project, 1)

    def worker(n: int) -> None:
        for i in range(25):
            project.record_inspection("v1", "FAIL" if i % 5 == 0 else "PASS", i / 25, None, 4.5, f"cam{n}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for i in range(10):  # the GUI thread keeps working meanwhile
        project.set_setting("last_view", {"page": i})
        project.images()
    for t in threads:
        t.join()
    last = project.record_inspection("v2", "FAIL", 0.9, "dent", 12.0, "hotfolder", record.id, record.sha256)
    rows = project.inspections()
    assert len(rows) == 101 and rows[0]["id"] == last
    assert rows[0] | {"at": None} == {
        "id": last, "at": None, "model_version": "v2", "image_id": record.id, "image_sha": record.sha256,
        "source": "hotfolder", "verdict": "FAIL", "score": 0.9, "defect_class": "dent", "latency_ms": 12.0,
        "station": None, "result_uid": None,
    }  # fmt: skip
    assert rows[0]["at"].tzinfo == timezone.utc
    assert len(project.inspections(limit=5)) == 5
    assert sum(r["verdict"] == "FAIL" for r in project.inspections(model_version="v1")) == 20
    assert project.get_setting("last_view") == {"page": 9} and project.get_setting("nope", 3) == 3


# -- migrations ----------------------------------------------------------------------

_V1_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (1);
CREATE TABLE settings (key VARCHAR(200) PRIMARY KEY, value JSON);
CREATE TABLE images (id INTEGER PRIMARY KEY, sha256 VARCHAR(64) NOT NULL UNIQUE, path VARCHAR(500) NOT NULL,
  filename VARCHAR(500) NOT NULL, source VARCHAR(100) NOT NULL, captured_at DATETIME NOT NULL,
  width INTEGER NOT NULL, height INTEGER NOT NULL);
CREATE TABLE image_tags (image_id INTEGER REFERENCES images(id), key VARCHAR(200), value VARCHAR(1000) NOT NULL,
  PRIMARY KEY (image_id, key));
CREATE TABLE classes (id INTEGER PRIMARY KEY, name VARCHAR(200) NOT NULL UNIQUE, color VARCHAR(7) NOT NULL,
  shortcut INTEGER);
CREATE TABLE labels (id INTEGER PRIMARY KEY, image_id INTEGER NOT NULL REFERENCES images(id),
  verdict VARCHAR(200), mask_path VARCHAR(500), author VARCHAR(200) NOT NULL, created_at DATETIME NOT NULL);
CREATE TABLE model_versions (id INTEGER PRIMARY KEY, version VARCHAR(50) NOT NULL UNIQUE,
  status VARCHAR(20) NOT NULL, created_at DATETIME NOT NULL, folder VARCHAR(500) NOT NULL,
  threshold FLOAT NOT NULL, metrics JSON NOT NULL, report JSON NOT NULL);
"""


def test_version_1_database_is_migrated_on_open(tmp_path: Path):
    folder = tmp_path / "old"
    data = encoded(part_image(5))
    sha = hashlib.sha256(data).hexdigest()
    (folder / "images" / sha[:2]).mkdir(parents=True)
    (folder / "images" / sha[:2] / f"{sha}.png").write_bytes(data)
    with sqlite3.connect(folder / "project.db") as conn:
        conn.executescript(_V1_SCHEMA)
        conn.execute(
            "INSERT INTO images VALUES (1, ?, ?, 'part.png', 'import', '2024-05-01 08:00:00.000000', 64, 48)",
            (sha, f"images/{sha[:2]}/{sha}.png"),
        )
        conn.execute("INSERT INTO classes VALUES (1, 'dent', '#e6194b', 1)")
        conn.execute("INSERT INTO labels VALUES (1, 1, 'ok', NULL, 'old', '2024-05-01 08:01:00.000000')")
        conn.execute("INSERT INTO labels VALUES (2, 1, 'dent', NULL, 'old', '2024-05-01 08:02:00.000000')")
        conn.execute("""INSERT INTO settings VALUES ('name', '"Old line"')""")
    conn.close()

    with Project.open(folder) as proj:
        with proj._read() as c:
            assert c.scalar(db.schema_version.select()) == db.SCHEMA_VERSION
        record = proj.image(1)
        assert record.split is None and record.captured_at.year == 2024 and record.captured_at.tzinfo
        assert proj.name == "Old line"
        assert proj.label(1).verdict == "dent"
        assert proj.undo_label(1).verdict == OK
        assert proj.assign_splits() == {"train": 1, "val": 0}
        assert proj.record_inspection(None, "PASS", 0.1, None, 3.0, "camera", 1, sha) == 1
    with Project.open(folder) as again:  # a migrated database opens as it is
        assert again.image(1).split == "train"


def test_database_from_a_newer_lineside_is_refused(tmp_path: Path):
    Project.create(tmp_path / "p").close()
    with sqlite3.connect(tmp_path / "p" / "project.db") as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    conn.close()
    with pytest.raises(LinesideError, match="newer Lineside"):
        Project.open(tmp_path / "p")


def test_atomic_writes_get_ordinary_file_permissions(tmp_path):
    """Files are written through mkstemp (owner-only); a copied project or an exported
    model must stay readable by the next user."""
    import os
    import stat

    from app.core.atomic import FILE_MODE, write_bytes

    target = tmp_path / "model.onnx"
    write_bytes(target, b"x")
    assert stat.S_IMODE(os.stat(target).st_mode) == FILE_MODE
    assert stat.S_IMODE(os.stat(target).st_mode) & stat.S_IRUSR
