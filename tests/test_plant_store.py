"""The project on PostgreSQL (a plant store), Alembic schema versions, and the copy from
a single-PC project, against a real throwaway server (tests/plant_fixtures.py)."""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.cli import main
from app.core import audit, db, migrations, plant
from app.core.project import OK, Project
from tests.plant_fixtures import INSPECTOR, INSPECTOR_PASSWORD, plant_url, postgres_server  # noqa: F401
from tests.store_fixtures import defect_mask, encoded, part_image, write_image
from tests.test_project_store import _V1_SCHEMA

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def class_folders(folder: Path) -> Path:
    for seed in range(4):
        write_image(folder / "good" / f"ok{seed}.png", part_image(seed))
    for seed in range(4, 6):
        write_image(folder / "scratch" / f"s{seed}.png", part_image(seed, defect=True))
        write_image(folder / "masks" / "scratch" / f"s{seed}.png", defect_mask())
    return folder


def files_under(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file (SQLite's -wal and -shm aside: a reader may leave them)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith("project.db-")}


def table_rows(project: Project) -> dict[str, list[dict]]:
    with project.snapshot() as conn:
        return {table.name: [dict(row) for row in conn.execute(
            sa.select(table).order_by(*table.primary_key.columns or table.columns)).mappings()]
            for table in db.metadata.sorted_tables}


# -- a project on PostgreSQL -----------------------------------------------------------


def test_plant_project_imports_labels_and_reopens_by_folder(plant_url: str, tmp_path: Path, capsys):
    folder = tmp_path / "line3"
    code, out, err = run(capsys, "new", folder, "--name", "Line 3", "--db", plant_url)
    assert code == 0 and plant_url in out, err
    assert sorted(p.name for p in folder.iterdir()) == ["database.json", "images", "masks", "models"]
    assert json.loads((folder / "database.json").read_text())["database"] == plant_url
    assert Project.is_project(folder) and Project.is_plant_store(folder)

    code, out, err = run(capsys, "import", folder, class_folders(tmp_path / "src"))
    assert code == 0 and "imported 6 new images" in out and "2 with masks" in out, out + err

    with Project.open(folder) as project:
        assert project.name == "Line 3" and project.database_url == plant_url
        assert project.label_counts() == {OK: 4, "scratch": 2, "unlabeled": 0}
        first = project.images()[0]
        project.set_label(first.id, "dent", mask=defect_mask(), author="ann")
        project.set_label(first.id, OK, author="bob")
        assert project.undo_label(first.id).verdict == "dent"
        history = project.label_history(first.id)
        assert [label.verdict for label in history] == [OK, "dent", OK, "dent"]
        assert all(label.created_at.tzinfo is not None for label in history)
        assert project.load_mask(history[-1]).max() == 255
        assert project.assign_splits()["train"] > 0
        inspection = project.record_inspection(None, "FAIL", 0.93, "dent", 4.5, "camera:0", first.id, first.sha256)
        # PostgreSQL's json has no NaN: a metric that is not a number is kept as null.
        project.set_setting("last_metrics", {"catch": math.nan, "false_reject": 0.01})
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with project.transaction() as conn:
                conn.execute(sa.delete(db.audit_log))

    with Project.open(folder) as again:  # by folder, as every command does
        assert [label.verdict for label in again.label_history(first.id)] == [OK, "dent", OK, "dent"]
        assert again.inspections(limit=1)[0]["id"] == inspection
        assert again.get_setting("last_metrics") == {"catch": None, "false_reject": 0.01}
        check = audit.verify(again)
        assert check.intact and check.n == 6 + 3
    code, out, _ = run(capsys, "audit", folder, "--verify")
    assert code == 0 and "intact" in out

    # Another project reads from the plant store read-only (the importer opens it so).
    assert run(capsys, "new", tmp_path / "pc")[0] == 0
    code, out, err = run(capsys, "import", tmp_path / "pc", folder)
    assert code == 0 and "imported 6 new images" in out, out + err


def test_two_stations_writing_at_once_keep_one_audit_chain(plant_url: str, tmp_path: Path):
    Project.create(tmp_path / "p", database=plant_url).close()
    stations = [Project.open(tmp_path / "p") for _ in range(2)]  # two engines, as two PCs
    try:
        records = [stations[0].add_image_bytes(encoded(part_image(seed)), f"{seed}.png")[0] for seed in range(6)]

        def label(station: Project, verdict: str) -> None:
            for record in records:
                station.set_label(record.id, verdict, author=verdict)

        threads = [threading.Thread(target=label, args=(s, v)) for s, v in zip(stations, (OK, "dent"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        result = audit.verify(stations[1])
        assert result.intact and result.n == 12
    finally:
        for station in stations:
            station.close()


def test_a_station_waiting_too_long_for_another_says_busy(plant_url: str, tmp_path: Path, monkeypatch):
    from app.core.errors import StoreBusyError

    Project.create(tmp_path / "p", database=plant_url).close()
    monkeypatch.setattr(db, "BUSY_TIMEOUT_S", 0.3)
    with Project.open(tmp_path / "p") as first, Project.open(tmp_path / "p") as second:
        record, _ = first.add_image_bytes(encoded(part_image(1)), "a.png")
        with first.transaction():  # a long import on the other station
            first.set_label(record.id, OK)
            with pytest.raises(StoreBusyError, match="busy: another station is writing"):
                second.set_label(record.id, "dent")
        assert second.set_label(record.id, "dent").verdict == "dent"  # the retry the message asks for
        assert [label.verdict for label in second.label_history(record.id)] == [OK, "dent"]


# -- schema versions -------------------------------------------------------------------


def _differences(engine: sa.Engine) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert context.get_current_revision() == migrations.revision_for(db.SCHEMA_VERSION)
        return compare_metadata(context, db.metadata)


def test_revisions_build_the_schema_the_tables_define(plant_url: str, tmp_path: Path):
    assert migrations.head() == migrations.revision_for(db.SCHEMA_VERSION)
    server = sa.create_engine(plant_url)
    local = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        for engine in (server, local):
            with engine.begin() as conn:
                migrations.upgrade(conn, None, db.SCHEMA_VERSION)
                assert conn.scalar(db.schema_version.select()) == db.SCHEMA_VERSION
        assert _differences(server) == []
        # SQLite enforces no VARCHAR length, so revision 0003 leaves the split column at 5 there.
        assert [d[0][:4] for d in _differences(local)] == [("modify_type", None, "images", "split")]
    finally:
        server.dispose()
        local.dispose()
    # A new project is stamped at the head revision without running them.
    with Project.create(tmp_path / "p") as project, project._read() as conn:
        assert conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == migrations.head()


def _v1_project(folder: Path) -> str:
    data = encoded(part_image(5))
    sha = hashlib.sha256(data).hexdigest()
    (folder / "images" / sha[:2]).mkdir(parents=True)
    (folder / "images" / sha[:2] / f"{sha}.png").write_bytes(data)
    with sqlite3.connect(folder / "project.db") as conn:
        conn.executescript(_V1_SCHEMA)
        conn.execute("INSERT INTO images VALUES (1, ?, ?, 'part.png', 'import', '2024-05-01 08:00:00.000000', 64, 48)",
                     (sha, f"images/{sha[:2]}/{sha}.png"))
        conn.execute("INSERT INTO labels VALUES (1, 1, 'ok', NULL, 'old', '2024-05-01 08:01:00.000000')")
        conn.execute("INSERT INTO labels VALUES (2, 1, 'dent', NULL, 'old', '2024-05-01 08:02:00.000000')")
        conn.execute("""INSERT INTO settings VALUES ('name', '"Old line"')""")
    conn.close()
    return sha


def test_migrate_schema_upgrades_a_version_1_project(tmp_path: Path, capsys):
    folder = tmp_path / "old"
    sha = _v1_project(folder)
    code, out, err = run(capsys, "migrate-schema", folder)
    assert code == 0 and f"upgraded from schema 1 to {db.SCHEMA_VERSION}" in out, err
    with Project.open(folder) as project:
        assert project.name == "Old line" and project.image(1).sha256 == sha
        assert [label.verdict for label in project.label_history(1)] == [OK, "dent"]
        assert project.undo_label(1).verdict == OK
        with project._read() as conn:
            assert conn.scalar(db.schema_version.select()) == db.SCHEMA_VERSION
            assert conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == migrations.head()
    code, out, _ = run(capsys, "migrate-schema", folder)
    assert code == 0 and "nothing to do" in out


def test_older_plant_database_is_refused_until_migrated(plant_url: str, tmp_path: Path, capsys):
    engine = sa.create_engine(plant_url)
    with engine.begin() as conn:  # what a version-2 Lineside would have made
        migrations.upgrade(conn, None, 2)
        conn.execute(sa.text("INSERT INTO images (sha256, path, filename, source, captured_at, width, height, split) "
                             "VALUES ('ab', 'images/ab/ab.png', 'a.png', 'import', now(), 8, 8, 'train')"))
        conn.execute(sa.text("INSERT INTO labels (image_id, verdict, author, created_at) VALUES (1, 'ok', 'x', now())"))
    engine.dispose()
    folder = tmp_path / "plant"
    for sub in ("images", "masks", "models"):
        (folder / sub).mkdir(parents=True)
    plant.write_pointer(folder, plant.parse_url(plant_url))

    code, out, err = run(capsys, "models", folder)
    assert code == 2 and "Traceback" not in err
    assert "holds schema 2" in err and f"lineside migrate-schema {folder}" in err

    code, out, err = run(capsys, "migrate-schema", folder)
    assert code == 0 and f"upgraded from schema 2 to {db.SCHEMA_VERSION}" in out, err
    with Project.open(folder) as project:
        assert project.image(1).split == "train" and project.label(1).verdict == OK
        project.set_split(1, "golden")  # the wider column of version 3
        project.set_label(1, "dent", author="eve")
        assert audit.verify(project).intact and audit.entries(project)[0].actor == "eve"


def test_newer_schema_gives_a_clear_message(plant_url: str, tmp_path: Path, capsys):
    Project.create(tmp_path / "p", database=plant_url).close()
    engine = sa.create_engine(plant_url)
    for statement in (f"UPDATE schema_version SET version = {db.SCHEMA_VERSION + 1}",
                      f"UPDATE schema_version SET version = {db.SCHEMA_VERSION}; "
                      "UPDATE alembic_version SET version_num = '0099'"):
        with engine.begin() as conn:
            conn.exec_driver_sql(statement)
        code, out, err = run(capsys, "models", tmp_path / "p")
        assert code == 2 and "newer Lineside" in err and "Update Lineside" in err and "Traceback" not in err
        code, out, err = run(capsys, "migrate-schema", tmp_path / "p")
        assert code == 2 and "newer Lineside" in err
    engine.dispose()


# -- copy into a plant store -------------------------------------------------------------


def _full_project(folder: Path) -> None:
    from app.core import people

    with Project.create(folder, name="Press 4") as project:
        records = [project.add_image_bytes(encoded(part_image(seed, defect=seed > 3)), f"p{seed}.png",
                                           tags={"lot": f"L{seed}"})[0] for seed in range(6)]
        for record in records[:4]:
            project.set_label(record.id, OK, author="ann")
        for record in records[4:]:
            project.set_label(record.id, "scratch", mask=defect_mask(), author="ann")
        project.set_label(records[0].id, "dent", author="bob")
        project.undo_label(records[0].id)
        project.assign_splits()
        people.add_person(project, "Carla", "engineer", "4711")
        model = folder / "models" / "v1"
        model.mkdir()
        (model / "model.onnx").write_bytes(b"not a real network: the store only registers the folder")
        (model / "model.json").write_text("{}")
        project.register_model("v1", model, 0.5, {"catch": 0.9, "auc": math.nan}, {"note": "x"})
        for i in range(5):
            project.record_inspection("v1", "PASS", 0.1 * i, None, 3.0, "sim", records[i].id, records[i].sha256)
    (folder / "kept").mkdir()
    (folder / "kept" / "fail-0001.png").write_bytes(encoded(part_image(9)))


def test_copy_to_db_keeps_every_row_and_file(plant_url: str, tmp_path: Path, capsys):
    source, dest = tmp_path / "pc", tmp_path / "plant"
    _full_project(source)
    before = files_under(source)
    with Project.open(source, read_only=True) as original:
        counts = {table: len(rows) for table, rows in table_rows(original).items()}
    code, out, err = run(capsys, "copy", source, "--to-db", plant_url, dest)
    assert code == 0 and "Traceback" not in err, err
    assert counts["labels"] == 8 and counts["inspections"] == 5 and counts["people"] == 1
    rows_line = next(line for line in out.splitlines() if line.startswith("rows"))
    assert all(f"{table} {n}" in rows_line for table, n in counts.items() if table != "schema_version")
    assert "image hashes: 6 of 6 match" in out and "mask hashes: 1 of 1 match" in out
    assert files_under(source) == before  # the source is only read

    copied = files_under(dest)
    assert copied.pop("database.json")
    assert copied == {k: v for k, v in before.items() if not k.startswith("project.db")}
    with Project.open(source, read_only=True) as original, Project.open(dest) as copy:
        source_rows, copy_rows = table_rows(original), table_rows(copy)
        # NaN is no JSON value on PostgreSQL: it arrives as null; everything else as it was.
        source_rows["model_versions"][0]["metrics"]["auc"] = None
        assert copy_rows == source_rows
        assert audit.verify(copy).head == audit.verify(original).head
        # New rows follow the copied ids (the server's sequences were moved on).
        label = copy.set_label(1, "dent", author="dan")
        assert label.id == len(source_rows["labels"]) + 1
        assert copy.record_inspection("v1", "FAIL", 0.9, "dent", 2.0, "sim") == 6
        assert audit.verify(copy).intact


def test_a_copy_that_fails_leaves_nothing_behind(postgres_server, plant_url: str, tmp_path: Path, capsys):
    source = tmp_path / "pc"
    with Project.create(source) as project:
        project.add_image_bytes(encoded(part_image(1)), "a.png")
    with sqlite3.connect(source / "project.db") as conn:  # SQLite keeps what PostgreSQL refuses
        conn.execute("UPDATE images SET filename = ?", ("x" * 600,))
    conn.close()
    code, out, err = run(capsys, "copy", source, "--to-db", plant_url, tmp_path / "plant")
    assert code == 2 and "PostgreSQL cannot store" in err and "images.filename" in err and "Traceback" not in err
    assert not (tmp_path / "plant").exists()
    engine = sa.create_engine(plant_url)
    with engine.connect() as conn:  # the schema went with the rows: the database is empty again
        assert sa.inspect(conn).get_table_names() == []
    engine.dispose()

    taken = postgres_server.url(postgres_server.new_database())
    Project.create(tmp_path / "other", database=taken).close()
    code, out, err = run(capsys, "copy", tmp_path / "other", "--to-db", taken, tmp_path / "plant")
    assert code == 2 and "already holds a Lineside project" in err
    assert not (tmp_path / "plant").exists()


# -- passwords and bad input -----------------------------------------------------------------


def test_no_password_is_written_to_the_project_folder(postgres_server, tmp_path: Path, capsys, monkeypatch):
    name = postgres_server.new_database(owner=INSPECTOR)
    with_password = postgres_server.url(name, INSPECTOR, INSPECTOR_PASSWORD)
    without = postgres_server.url(name, INSPECTOR)
    folder = tmp_path / "plant"
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))  # not the user's own file

    Project.create(tmp_path / "pc").close()
    for argv in (("new", folder, "--db", with_password),
                 ("copy", tmp_path / "pc", "--to-db", with_password, folder)):
        code, out, err = run(capsys, *argv)
        assert code == 2 and "PGPASSWORD" in err and "pgpass" in err
        assert INSPECTOR_PASSWORD not in out + err and not folder.exists()

    code, out, err = run(capsys, "new", folder, "--db", without)  # no password anywhere
    assert code == 2 and "did not accept the login" in err and "PGPASSWORD" in err and "Traceback" not in err
    assert not folder.exists()

    monkeypatch.setenv("PGPASSWORD", INSPECTOR_PASSWORD)
    code, out, err = run(capsys, "new", folder, "--db", without)
    assert code == 0, err
    code, out, err = run(capsys, "import", folder, class_folders(tmp_path / "src"))
    assert code == 0, err
    for path in folder.rglob("*"):
        assert not path.is_file() or INSPECTOR_PASSWORD.encode() not in path.read_bytes(), path

    monkeypatch.delenv("PGPASSWORD")
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{postgres_server.port}:{name}:{INSPECTOR}:{INSPECTOR_PASSWORD}\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    with Project.open(folder) as project:  # libpq found the password in the pgpass file
        assert project.label_counts()["scratch"] == 2

    (folder / "database.json").write_text(json.dumps({"format": 1, "database": with_password}))
    code, out, err = run(capsys, "models", folder)
    assert code == 2 and "holds a password" in err and "PGPASSWORD" in err
    assert INSPECTOR_PASSWORD not in err


def test_bad_urls_and_unreachable_servers_give_clear_messages(tmp_path: Path, capsys, monkeypatch):
    import socket

    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[dev]')")

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cases = {
        f"postgresql+psycopg://lineside@127.0.0.1:{port}/line3": "Cannot reach the PostgreSQL server",
        "mysql://lineside@db/line3": "not a PostgreSQL URL",
        "postgresql://lineside@db": "names no database",
        "not a url at all": "not a database URL",
    }
    for url, message in cases.items():
        code, out, err = run(capsys, "new", tmp_path / "p", "--db", url)
        assert code == 2 and message in err and "Traceback" not in err, err
        assert not (tmp_path / "p").exists()
    monkeypatch.setitem(sys.modules, "psycopg", None)  # a station without the plant extra
    code, out, err = run(capsys, "new", tmp_path / "p", "--db", f"postgresql://lineside@127.0.0.1:{port}/x")
    assert code == 2 and "pip install 'lineside[plant]'" in err


def test_a_sqlite_station_needs_neither_psycopg_nor_alembic(tmp_path: Path):
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from app.cli import main\n"
        f"assert main(['new', {str(tmp_path / 'p')!r}]) == 0\n"
        f"assert main(['models', {str(tmp_path / 'p')!r}]) == 0\n"
        "loaded = [m for m in ('alembic', 'psycopg') if sys.modules.get(m) is not None]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
