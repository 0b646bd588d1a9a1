"""A Lineside project: one folder holding the database, the images, masks and models.

The database is project.db (SQLite) in the folder, or, for a plant store, a PostgreSQL
database the folder's database.json names (app/core/plant.py); everything else is the
same. The folder can be copied to another PC: every path in the database is relative to it.
Images are stored content-addressed (`images/<2 hex>/<sha256><suffix>`) with their
original bytes, so the same picture is never stored twice and what was imported is what
gets trained on. Labels, classes and splits live in project_labels; model versions and
the inspection log in project_models.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from app.core import atomic, db, plant
from app.core.errors import BadImageError, DiskFullError, LinesideError, NotAProjectError, ReadOnlyError, printable
from app.core.imageio import IMAGE_SUFFIXES, decode_image, encode_png, read_file, read_image, to_bgr8
from app.core.project_labels import HELD_OUT_SPLITS, LabelStoreMixin, current_labels
from app.core.project_models import ModelStoreMixin
from app.core.records import OK, DefectClass, ImageRecord, Label, ModelVersion, PreparedImage

__all__ = ["HELD_OUT_SPLITS", "OK", "DefectClass", "ImageRecord", "Label", "ModelVersion", "PreparedImage", "Project"]

DB_NAME = "project.db"
# "golden": parts set aside to judge every candidate before deploy, never trained on (app/core/golden.py).
SPLITS = ("train", "val", "test", "golden")
# What a killed process leaves behind: a training's hidden version folder (named with
# the trainer's pid) and the temp files of atomic writes. Removed when a project is
# opened, once old enough that no live writer can still be filling them: a project
# folder on a share may be written from another PC, whose pids mean nothing here.
LEFTOVER_AGE_S = 10 * 60
ORPHAN_AGE_S = 24 * 60 * 60  # past this even a folder whose pid looks alive is stale
_PARTIAL = re.compile(r"^\.partial-v\d+-(\d+)$")

# Leading bytes of the formats OpenCV reads, for bytes that come without a usable name.
_MAGIC_SUFFIXES = (
    (b"\x89PNG", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"BM", ".bmp"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
    (b"RIFF", ".webp"),
)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _stored_suffix(filename: str, data: bytes) -> str:
    suffix = Path(filename).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return suffix
    for magic, guessed in _MAGIC_SUFFIXES:
        if data.startswith(magic):
            return guessed
    return ".img"


def read_source_file(path: Path) -> tuple[bytes, datetime]:
    """The bytes of an image file to import, and when it was taken (BadImageError if unreadable)."""
    data = read_file(path)  # a pipe or device among the files is refused, not read for ever
    try:
        # The file's time is closer to when the part was photographed than now is.
        captured_at = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
    except OSError as exc:
        raise BadImageError(f"{path}: cannot be read ({exc.strerror or exc}).") from exc
    return data, captured_at


def _open_server_engine(folder: Path, read_only: bool) -> tuple[sa.Engine, str]:
    """The engine of a plant store, its schema checked but never upgraded: many stations
    share it, so it is upgraded once, on purpose, with migrate-schema."""
    url = plant.read_pointer(folder)
    where = plant.describe(url)
    engine = plant.make_engine(url, read_only=read_only)
    try:
        db.prepare_schema(engine, where, create=False, read_only=read_only, upgrade=False)
    except db.SchemaUpgradeNeeded as exc:
        raise db.SchemaUpgradeNeeded(
            f"{where} holds schema {exc.found}; this Lineside uses schema {db.SCHEMA_VERSION}. Upgrade it "
            f"once, with the stations that use it stopped: lineside migrate-schema {folder}", exc.found
        ) from None
    return engine, where


def _check_new_folder(path: Path) -> None:
    if Project.is_project(path):
        raise LinesideError(f"{path} is already a Lineside project; open it instead.")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise LinesideError(
            f"{path} already exists and is not empty; choose a new or empty folder for the project."
        )


def _make_folders(path: Path) -> list[Path]:
    """Create the project folder and its sub-folders; returns those that were new."""
    made = []
    try:
        for folder in (path, path / "images", path / "masks", path / "models"):
            if not folder.is_dir():
                folder.mkdir(parents=True, exist_ok=True)
                made.append(folder)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"The disk is full; cannot create {path}.") from exc
        raise LinesideError(f"Cannot create the project folder {path} ({exc.strerror or exc}).") from exc
    return made


def _unmake_folders(made: list[Path]) -> None:
    """Undo _make_folders after a failed create: only what it made, only if still empty."""
    for folder in reversed(made):
        try:
            folder.rmdir()
        except OSError:
            pass


def _open_engine(db_path: Path, read_only: bool) -> sa.Engine:
    engine = db.make_engine(db_path, read_only=read_only)
    try:
        db.prepare_schema(engine, db_path, create=False, read_only=read_only)
    except ReadOnlyError:
        if not read_only:
            raise
        # Read-only media: SQLite cannot create project.db-shm there. Read it as a
        # file nobody changes (nobody can write to that folder anyway).
        engine = db.make_engine(db_path, read_only=True, immutable=True)
        db.prepare_schema(engine, db_path, create=False, read_only=True)
    return engine


def _entries(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def _age(path: Path, now: float) -> float:
    """Seconds since *path* (or, for a folder, anything directly in it) last changed."""
    try:
        inside = _entries(path) if path.is_dir() else []
        times = [path.stat().st_mtime] + [p.stat().st_mtime for p in inside]
    except OSError:
        return 0.0  # vanished or unreadable while looking: leave it alone
    return now - max(times)


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":
        return True  # os.kill would terminate it there; rely on the age alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists but belongs to someone else
    return True


def _partial_is_stale(folder: Path, now: float) -> bool:
    age = _age(folder, now)
    pid = int(_PARTIAL.match(folder.name).group(1))
    if pid == os.getpid():
        return False  # this very process is training into it
    return age > ORPHAN_AGE_S or (age > LEFTOVER_AGE_S and not _pid_alive(pid))


def _remove(path: Path) -> bool:
    try:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    except OSError:
        return False
    return True


class Project(db.Store, LabelStoreMixin, ModelStoreMixin):
    """The project store. Every public method is its own short transaction."""

    def __init__(self, path: Path, engine: sa.Engine, where: str | None = None) -> None:
        # *where* names a plant database in messages; None: project.db in the folder.
        super().__init__(engine, where or path / DB_NAME)
        self.path = path
        url = getattr(where, "url", None)
        self.database_url: str | None = None if url is None else url.render_as_string(hide_password=True)
        self.images_dir = path / "images"
        self.masks_dir = path / "masks"
        self.models_dir = path / "models"

    # -- opening and closing -------------------------------------------------------

    @staticmethod
    def is_project(path: Path | str) -> bool:
        return (Path(path) / DB_NAME).is_file() or (Path(path) / plant.POINTER_NAME).is_file()

    @staticmethod
    def is_plant_store(path: Path | str) -> bool:
        """The project's database is on a PostgreSQL server (database.json names it)."""
        return (Path(path) / plant.POINTER_NAME).is_file()

    @classmethod
    def create(cls, path: Path | str, name: str | None = None, database: str | None = None) -> "Project":
        """Create a project folder; *database*, a PostgreSQL URL without a password, puts
        its database on that (empty) server database instead of project.db."""
        path = Path(path).expanduser().absolute()
        url = plant.parse_url(database) if database is not None else None  # before anything is made
        _check_new_folder(path)
        made = _make_folders(path)
        if url is None:
            engine = db.make_engine(path / DB_NAME)
            db.prepare_schema(engine, path / DB_NAME, create=True)
            project = cls(path, engine)
        else:
            where = plant.describe(url)
            try:
                # The file first: if the schema then fails, both go and nothing is left half-made.
                plant.write_pointer(path, url)
                engine = plant.make_engine(url)
                db.prepare_schema(engine, where, create=True)
            except BaseException:
                if (path / plant.POINTER_NAME).is_file():
                    (path / plant.POINTER_NAME).unlink()
                _unmake_folders(made)
                raise
            project = cls(path, engine, where)
        project.name = name or path.name
        return project

    @classmethod
    def migrate_schema(cls, path: Path | str) -> tuple[int, int]:
        """Bring the project's database up to this release's schema; returns (before, after).

        SQLite projects are upgraded on opening anyway; a plant store only by this.
        """
        path = Path(path).expanduser().absolute()
        if cls.is_plant_store(path):
            url = plant.read_pointer(path)
            where = plant.describe(url)
            engine = plant.make_engine(url)
        else:
            cls._check_openable(path)
            where = path / DB_NAME
            engine = db.make_engine(where)
        try:
            found = db.prepare_schema(engine, where, create=False, upgrade=True)
        finally:
            engine.dispose()
        return int(found), db.SCHEMA_VERSION

    @classmethod
    def open(cls, path: Path | str, read_only: bool = False) -> "Project":
        """Open a project; read_only (for reading another project, e.g. to import from
        it) changes nothing in it, and every write raises."""
        path = Path(path).expanduser().absolute()
        if cls.is_plant_store(path):
            if (path / DB_NAME).exists():
                raise LinesideError(
                    f"{path} holds both {DB_NAME} and {plant.POINTER_NAME}, so it is unclear which database is "
                    f"the project's. Move the one that is not aside."
                )
            project = cls(path, *_open_server_engine(path, read_only))
        else:
            cls._check_openable(path)
            project = cls(path, _open_engine(path / DB_NAME, read_only))
        if not read_only:
            project.remove_leftovers()
        return project

    @classmethod
    def _check_openable(cls, path: Path) -> None:
        """NotAProjectError or LinesideError unless *path* holds a project.db to open."""
        if not cls.is_project(path):
            reason = "the folder does not exist" if not path.exists() else f"no {DB_NAME}"
            raise NotAProjectError(
                f"{path} is not a Lineside project ({reason}). Choose the project folder, "
                "or create a new project with 'lineside new'."
            )
        if (path / DB_NAME).stat().st_size == 0:
            # SQLite would take an empty file for a new database and write into it.
            raise LinesideError(
                f"{path / DB_NAME} is empty (0 bytes): the project database was lost (a disk error, or a "
                "copy that did not finish). Nothing was changed. Restore the project folder from a backup."
            )

    def close(self) -> None:
        self._close_engine()

    # -- leftovers of killed processes ---------------------------------------------

    def remove_leftovers(self, now: float | None = None) -> list[Path]:
        """Remove stale `models/.partial-vN-PID` folders and `.*.tmp` files; returns them.

        Never fails: a read-only project or a file in use just stays where it is.
        """
        now = time.time() if now is None else now
        removed = [p for p in self._partial_folders() if _partial_is_stale(p, now) and _remove(p)]
        removed += [p for p in self._temp_files() if _age(p, now) > LEFTOVER_AGE_S and _remove(p)]
        return removed

    def _partial_folders(self) -> list[Path]:
        return [p for p in _entries(self.models_dir) if _PARTIAL.match(p.name) and p.is_dir()]

    def _temp_files(self) -> list[Path]:
        # Atomic writes put `.<name>.<random>.tmp` beside their target: the project
        # folder itself, images/<xx>/, masks/<xx>/ and models/<version>/.
        folders = [self.path]
        for parent in (self.images_dir, self.masks_dir, self.models_dir):
            folders += [p for p in _entries(parent) if p.is_dir() and not _PARTIAL.match(p.name)]
        return [p for folder in folders for p in _entries(folder)
                if p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file()]  # fmt: skip

    def __enter__(self) -> "Project":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Project({str(self.path)!r})"

    # -- settings ------------------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        with self._read() as conn:
            row = conn.execute(sa.select(db.settings.c.value).where(db.settings.c.key == key)).first()
        return default if row is None else row[0]

    def set_setting(self, key: str, value: Any) -> None:
        with self._write() as conn:
            conn.execute(sa.delete(db.settings).where(db.settings.c.key == key))
            conn.execute(db.settings.insert().values(key=key, value=value))

    @property
    def name(self) -> str:
        return str(self.get_setting("name", self.path.name))

    @name.setter
    def name(self, value: str) -> None:
        self.set_setting("name", value)

    # -- images --------------------------------------------------------------------

    def add_image_bytes(
        self,
        data: bytes,
        filename: str,
        source: str = "import",
        tags: dict | None = None,
        captured_at: datetime | None = None,
    ) -> tuple[ImageRecord, bool]:
        """Store encoded image bytes as they are; returns (record, newly stored)."""
        existing = self.find_image(hashlib.sha256(data).hexdigest())
        if existing is not None:
            return existing, False
        return self.add_prepared_image(self.prepare_image(data, filename), source, tags, captured_at)

    def prepare_image(self, data: bytes, filename: str, notes: list[str] | None = None) -> PreparedImage:
        """Check the bytes decode (BadImageError naming *filename*) and store the file.

        Touches no database, so a bulk import can prepare many images on worker
        threads and record them with add_prepared_image in one transaction. *notes*
        gets imageio.range_note's remark on the pixel values, if any.
        """
        image = decode_image(data, filename, notes)
        sha = hashlib.sha256(data).hexdigest()
        rel = f"images/{sha[:2]}/{sha}{_stored_suffix(filename, data)}"
        # The file is complete on disk before any row points at it.
        if not (self.path / rel).is_file():
            atomic.write_bytes(self.path / rel, data)
        # A name that is not valid UTF-8 cannot go into SQLite as it is: keep it readable.
        name = printable(Path(filename).name)
        return PreparedImage(sha, rel, name, int(image.shape[1]), int(image.shape[0]))

    def add_prepared_image(
        self,
        prepared: PreparedImage,
        source: str = "import",
        tags: dict | None = None,
        captured_at: datetime | None = None,
    ) -> tuple[ImageRecord, bool]:
        with self._write() as conn:
            # Checked under the write lock: another thread may have recorded it.
            existing = self.find_image(prepared.sha256)
            if existing is not None:
                return existing, False
            image_id = conn.execute(
                db.images.insert().values(
                    sha256=prepared.sha256,
                    path=prepared.rel_path,
                    filename=prepared.filename,
                    source=source,
                    captured_at=captured_at or _now(),
                    width=prepared.width,
                    height=prepared.height,
                )
            ).inserted_primary_key[0]
            if tags:
                self._upsert_tags(conn, image_id, tags)
            return self.image(image_id), True

    def add_image_file(
        self, path: Path | str, source: str = "import", tags: dict | None = None
    ) -> tuple[ImageRecord, bool]:
        data, captured_at = read_source_file(Path(path))
        return self.add_image_bytes(data, Path(path).name, source, tags, captured_at)

    def add_image_array(
        self, image: np.ndarray, source: str = "camera", tags: dict | None = None
    ) -> tuple[ImageRecord, bool]:
        """Store a camera frame losslessly as PNG (16-bit and gray frames stay as they are)."""
        if image.dtype not in (np.uint8, np.uint16):
            image = to_bgr8(image)
        at = _now()
        return self.add_image_bytes(encode_png(image), f"{source}-{at:%Y%m%d-%H%M%S-%f}.png", source, tags, at)

    def _image_query(self) -> sa.Select:
        return sa.select(db.images).order_by(db.images.c.id)

    def _records(self, conn: sa.Connection, query: sa.Select) -> list[ImageRecord]:
        rows = conn.execute(query).mappings().all()
        if not rows:
            return []
        ids = sa.select(query.subquery().c.id)
        tags: dict[int, dict[str, str]] = {}
        for image_id, key, value in conn.execute(
            sa.select(db.image_tags.c.image_id, db.image_tags.c.key, db.image_tags.c.value).where(
                db.image_tags.c.image_id.in_(ids)
            )
        ):
            tags.setdefault(image_id, {})[key] = value
        return [
            ImageRecord(
                id=row["id"],
                sha256=row["sha256"],
                path=self.path / row["path"],
                filename=row["filename"],
                source=row["source"],
                captured_at=row["captured_at"],
                width=row["width"],
                height=row["height"],
                tags=tags.get(row["id"], {}),
                split=row["split"],
            )
            for row in rows
        ]

    def image(self, image_id: int) -> ImageRecord:
        with self._read() as conn:
            found = self._records(conn, self._image_query().where(db.images.c.id == image_id))
        if not found:
            raise LinesideError(f"There is no image {image_id} in the project {self.path}.")
        return found[0]

    def find_image(self, sha256: str) -> ImageRecord | None:
        with self._read() as conn:
            found = self._records(conn, self._image_query().where(db.images.c.sha256 == sha256.lower()))
        return found[0] if found else None

    def images(
        self, verdict: str | None = None, unlabeled: bool = False, split: str | None = None
    ) -> list[ImageRecord]:
        """Images ordered by id; *verdict* and *unlabeled* look at the current label."""
        query = self._image_query()
        if verdict is not None or unlabeled:
            current = current_labels()
            query = query.outerjoin(current, current.c.image_id == db.images.c.id)
            if verdict is not None:
                query = query.where(current.c.verdict == self._normal_verdict(verdict))
            if unlabeled:
                query = query.where(current.c.verdict.is_(None))
        if split is not None:
            query = query.where(db.images.c.split == split)
        with self._read() as conn:
            return self._records(conn, query)

    def load_image(self, image_id: int) -> np.ndarray:
        return read_image(self.image(image_id).path)

    def set_tags(self, image_id: int, tags: dict[str, str]) -> None:
        """Set the given tags, keeping the others; a value of None removes that tag."""
        self.image(image_id)
        with self._write() as conn:
            self._upsert_tags(conn, image_id, tags)

    @staticmethod
    def _upsert_tags(conn: sa.Connection, image_id: int, tags: dict) -> None:
        table = db.image_tags
        for key, value in tags.items():
            conn.execute(sa.delete(table).where(table.c.image_id == image_id, table.c.key == printable(key)))
            if value is not None:
                conn.execute(table.insert().values(image_id=image_id, key=printable(key), value=printable(value)))

    # -- splits --------------------------------------------------------------------

    def set_split(self, image_id: int, split: str | None) -> None:
        if split not in (None, *SPLITS):
            raise LinesideError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)} or none.")
        self.image(image_id)
        with self._write() as conn:
            conn.execute(db.images.update().where(db.images.c.id == image_id).values(split=split))

    def assign_splits(self, val_fraction: float = 0.2,
                      val_fraction_for: dict[str, float] | None = None) -> dict[str, int]:
        """Give labeled images without a split one, stratified per verdict and stable.

        Walking each class in sha256 order (not import order) means the same images get
        the same splits on any PC, and images added later never move earlier ones.
        *val_fraction_for* sets another fraction for some verdicts (the trainer holds
        out more OK parts when it has plenty: they are what the threshold is set on).
        """
        fractions = dict(val_fraction_for or {})
        for value in [val_fraction, *fractions.values()]:
            if not 0.0 <= value < 1.0:
                raise ValueError(f"val_fraction must be in [0, 1), not {value}")
        counts = {"train": 0, "val": 0}
        with self._write() as conn:
            current = current_labels()
            rows = conn.execute(
                sa.select(db.images.c.id, db.images.c.split, current.c.verdict)
                .join(current, current.c.image_id == db.images.c.id)
                .where(current.c.verdict.is_not(None))
                .order_by(db.images.c.sha256)
            ).all()
            per_class: dict[str, dict[str, int]] = {}
            for _, split, verdict in rows:
                if split in ("train", "val"):
                    tally = per_class.setdefault(verdict, {"train": 0, "val": 0})
                    tally[split] += 1
            for image_id, split, verdict in rows:
                if split is not None:
                    continue
                tally = per_class.setdefault(verdict, {"train": 0, "val": 0})
                assigned = tally["train"] + tally["val"]
                fraction = fractions.get(verdict, val_fraction)
                chosen = "val" if assigned and tally["val"] / assigned < fraction else "train"
                tally[chosen] += 1
                counts[chosen] += 1
                conn.execute(db.images.update().where(db.images.c.id == image_id).values(split=chosen))
        return counts
