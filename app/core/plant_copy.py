"""Copy a project into a plant store: a new folder plus an empty PostgreSQL database.

Nothing is lost or changed on the way: every row of every table keeps its id (labels,
the audit chain and inspections point at ids), every file is copied and read back, the
row counts of both databases and the hash of every image and mask are compared, and
the source is only read. The rows go in one transaction, together with the schema: a
copy that fails leaves the server database empty and the new folder removed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from app.core import db, plant
from app.core.errors import LinesideError
from app.core.project import DB_NAME, Project, _check_new_folder, _make_folders

BATCH_ROWS = 2000
CHUNK_BYTES = 1 << 20
# The source's own database files: the copy has its database on the server.
_DATABASE_FILES = {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal", plant.POINTER_NAME}
# Everything but schema_version, which the new database gets from its own creation.
TABLES = [table for table in db.metadata.sorted_tables if table is not db.schema_version]


@dataclass
class CopyReport:
    dest: Path
    database: str
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows, the same on both sides
    files: int = 0
    bytes: int = 0
    images_checked: int = 0
    images_ok: int = 0  # whose file matches the SHA-256 in its row
    masks_checked: int = 0
    masks_ok: int = 0
    warnings: list[str] = field(default_factory=list)


def _project_files(folder: Path):
    """Relative paths of the files to copy: all but the database and crash leftovers."""
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        # A killed training's hidden version folder and atomic writes' temp files.
        dirs[:] = sorted(d for d in dirs if not d.startswith(".partial-"))
        for name in sorted(files):
            if (rel == Path(".") and name in _DATABASE_FILES) or (name.startswith(".") and name.endswith(".tmp")):
                continue
            yield rel / name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_verified(source: Path, dest: Path) -> tuple[str, int]:
    """Copy one file and read it back; its SHA-256 and size (LinesideError if they differ)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    with open(source, "rb") as src, open(dest, "wb") as dst:
        while chunk := src.read(CHUNK_BYTES):
            digest.update(chunk)
            dst.write(chunk)
            size += len(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    shutil.copystat(source, dest)
    if _sha256(dest) != digest.hexdigest():
        raise LinesideError(f"{dest} does not read back as it was written (a disk or network error). "
                            "Nothing was copied; check the destination and retry.")
    return digest.hexdigest(), size


def _copy_files(source: Path, dest: Path, report: CopyReport) -> dict[str, str]:
    """Copy every project file; relative path (posix) -> SHA-256."""
    hashes = {}
    for rel in _project_files(source):
        try:
            hashes[rel.as_posix()], size = _copy_verified(source / rel, dest / rel)
        except OSError as exc:
            raise LinesideError(f"Cannot copy {source / rel} to {dest / rel} ({exc.strerror or exc}). "
                                "Nothing was copied; fix that and retry.") from exc
        report.files += 1
        report.bytes += size
    return hashes


def _check_fits(table: sa.Table, rows: list[dict]) -> None:
    """PostgreSQL enforces what SQLite only declares: text lengths, and no NUL characters."""
    problems = []
    for column in table.columns:
        length = getattr(column.type, "length", None)
        for row in rows:
            value = row[column.key]
            if isinstance(value, str) and ((length and len(value) > length) or "\x00" in value):
                what = f"{len(value)} characters, at most {length} fit" if length and len(value) > length \
                    else "a NUL character"
                key = ", ".join(f"{pk.name} {row[pk.key]}" for pk in table.primary_key.columns)
                problems.append(f"{table.name}.{column.name} of the row with {key} ({what})")
    if problems:
        raise LinesideError("PostgreSQL cannot store these values, which SQLite accepted: " + "; ".join(
            problems[:5]) + ". Nothing was copied. Correct them in the source project, then copy again.")


def _copy_rows(src: sa.Connection, dst: sa.Connection, report: CopyReport, progress) -> None:
    for table in TABLES:
        count = 0
        query = sa.select(table).order_by(*table.primary_key.columns)
        result = src.execution_options(stream_results=True, yield_per=BATCH_ROWS).execute(query)
        for part in result.mappings().partitions(BATCH_ROWS):
            rows = [dict(row) for row in part]
            _check_fits(table, rows)
            dst.execute(table.insert(), rows)
            count += len(rows)
        report.rows[table.name] = count
        progress(f"{table.name}: {count} rows")


def _reset_sequences(conn: sa.Connection) -> None:
    # The rows came with their ids; the next id the server hands out must follow them.
    for table in TABLES:
        column = table.autoincrement_column
        if column is not None:
            following = sa.select(sa.func.coalesce(sa.func.max(column), 0) + 1).scalar_subquery()
            sequence = sa.func.pg_get_serial_sequence(table.name, column.name)
            conn.execute(sa.select(sa.func.setval(sequence, following, False)))


def _count(conn: sa.Connection, table: sa.Table) -> int:
    return int(conn.scalar(sa.select(sa.func.count()).select_from(table)))


def _check(src: sa.Connection, dst: sa.Connection, hashes: dict[str, str], report: CopyReport) -> None:
    """Counts on both sides, and every image and mask file against the hash it is named by."""
    for table in TABLES:
        there, here = _count(src, table), _count(dst, table)
        if here != there or here != report.rows[table.name]:
            raise LinesideError(f"The copy of table {table.name} has {here} rows, the source {there}. "
                                "Nothing was copied; retry (was the source being changed?).")
    for sha, rel in src.execute(sa.select(db.images.c.sha256, db.images.c.path)):
        found = hashes.get(rel)
        report.images_checked += 1
        report.images_ok += found == sha
        if found != sha:
            report.warnings.append(f"image {rel}: " + ("missing in the source project" if found is None
                                   else "the source file does not match its SHA-256 (damaged in the source)"))
    masks = src.execute(sa.select(db.labels.c.mask_path).where(db.labels.c.mask_path.is_not(None)).distinct())
    for (rel,) in masks:
        report.masks_checked += 1
        report.masks_ok += hashes.get(rel) == Path(rel).stem
        if hashes.get(rel) != Path(rel).stem:
            report.warnings.append(f"mask {rel}: missing or damaged in the source project")
    for version, folder in src.execute(sa.select(db.model_versions.c.version, db.model_versions.c.folder)):
        if Path(folder).is_absolute():
            report.warnings.append(f"model {version} lives outside the project ({folder}); it was not copied")
        elif f"{Path(folder).as_posix()}/model.onnx" not in hashes:
            report.warnings.append(f"model {version}: {folder}/model.onnx is missing in the source project")


def _discard(dest: Path, existed: bool) -> None:
    """Remove what a failed copy wrote (the folder was new or empty before)."""
    if not existed:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for child in dest.iterdir():
        shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)


def copy_to_server(source: Path | str, database: str, dest: Path | str, progress=lambda line: None) -> CopyReport:
    """Copy the project at *source* into a new folder *dest* whose database is the empty
    PostgreSQL database *database* (a URL without a password); returns what was checked."""
    url = plant.parse_url(database)
    where = plant.describe(url)
    dest = Path(dest).expanduser().absolute()
    _check_new_folder(dest)
    existed = dest.exists()
    report = CopyReport(dest, url.render_as_string(hide_password=True))
    with Project.open(source, read_only=True) as original:
        if original.path == dest or dest.is_relative_to(original.path):
            raise LinesideError(f"{dest} is inside the project it would copy; choose a folder outside it.")
        engine = plant.make_engine(url)
        try:
            with engine.connect().execution_options(lineside_write=True) as conn, conn.begin(), \
                    original.snapshot() as snapshot:
                db.create_schema(conn, where)
                _copy_rows(snapshot, conn, report, progress)
                _reset_sequences(conn)
                # After the rows: every file a copied row points at was written before it.
                _make_folders(dest)
                hashes = _copy_files(original.path, dest, report)
                progress(f"files: {report.files}")
                _check(snapshot, conn, hashes, report)
            plant.write_pointer(dest, url)
        except sa.exc.DBAPIError as exc:
            _discard(dest, existed)
            known = db.environment_error(exc, where, "Nothing was copied")
            raise (known or LinesideError(f"{where} refused the copy ({exc.orig}). Nothing was copied.")) from exc
        except BaseException:
            _discard(dest, existed)
            raise
        finally:
            engine.dispose()
    with Project.open(dest) as copy, copy.snapshot() as conn:  # it opens, and holds what was committed
        for table in TABLES:
            if _count(conn, table) != report.rows[table.name]:
                raise LinesideError(f"{dest}: table {table.name} lost rows after the commit; do not use this copy.")
    return report
