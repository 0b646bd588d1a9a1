"""The project database: schema, connection settings, schema versions, short transactions.

SQLAlchemy Core rather than raw sqlite3 so the same schema runs on SQLite (one PC) and
on a plant's PostgreSQL server (docs/adr/0002, docs/adr/0009; the server side is in
app/core/plant.py). Every table is defined once, here. A new database is created from
these definitions and stamped with SCHEMA_VERSION; an older one is brought up to date
by the Alembic revisions in app/core/migrations, inside the same transaction as the
version stamp, so a failed upgrade leaves the old database as it was.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from app.core.errors import DiskFullError, LinesideError, ReadOnlyError, StoreBusyError

SCHEMA_VERSION = 5
# How long a write waits for another program (a second Lineside, a backup tool) to
# release the database before giving up with StoreBusyError.
BUSY_TIMEOUT_S = 30.0


class UTCDateTime(sa.TypeDecorator):
    """Stores UTC, returns timezone-aware UTC datetimes (SQLite keeps no offset)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        # A naive datetime is taken as local time, the way Python's astimezone reads it.
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


metadata = sa.MetaData()

schema_version = sa.Table("schema_version", metadata, sa.Column("version", sa.Integer, nullable=False))

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.JSON),
)

images = sa.Table(
    "images",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("path", sa.String(500), nullable=False),  # relative to the project folder
    sa.Column("filename", sa.String(500), nullable=False),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("captured_at", UTCDateTime, nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    # NULL | train | val | test | golden (never trained on: app/core/golden.py). SQLite
    # ignores the length, so version-2 files hold "golden" without a migration.
    sa.Column("split", sa.String(10)),
)

image_tags = sa.Table(
    "image_tags",
    metadata,
    sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id"), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.String(1000), nullable=False),
)

classes = sa.Table(
    "classes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("color", sa.String(7), nullable=False),
    sa.Column("shortcut", sa.Integer),  # keyboard key 1-9
)

# Append-only: a new label is a new row, so history and undo never rewrite anything.
labels = sa.Table(
    "labels",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id"), nullable=False),
    sa.Column("verdict", sa.String(200)),  # 'ok', a class name, or NULL = cleared
    sa.Column("mask_path", sa.String(500)),
    sa.Column("author", sa.String(200), nullable=False, default=""),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("undoes", sa.Integer),  # id of the label row this row reverted
    sa.Index("ix_labels_image", "image_id", "id"),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version", sa.String(50), nullable=False, unique=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("folder", sa.String(500), nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("report", sa.JSON, nullable=False),
    sa.CheckConstraint("status IN ('candidate', 'production', 'retired')", name="ck_model_status"),
)

inspections = sa.Table(
    "inspections",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("model_version", sa.String(50)),
    sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id")),
    sa.Column("image_sha", sa.String(64)),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("verdict", sa.String(4), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("defect_class", sa.String(200)),
    sa.Column("latency_ms", sa.Float, nullable=False),
    # A plant station (app/core/stations.py) names itself and gives every result an id of
    # its own, so a result sent twice after a lost connection is stored once.
    sa.Column("station", sa.String(200)),
    sa.Column("result_uid", sa.String(64)),
    sa.CheckConstraint("verdict IN ('PASS', 'FAIL')", name="ck_inspection_verdict"),
    sa.Index("ix_inspections_at", "at"),
    sa.Index("ix_inspections_result_uid", "result_uid", unique=True),
    sa.Index("ix_inspections_station_at", "station", "at"),
)


# Who may do what (app/core/people.py). The PIN is kept only as its scrypt hash, with a
# salt of its own per person; nothing here can give the PIN back.
people = sa.Table(
    "people",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("name_key", sa.String(200), nullable=False, unique=True),  # casefolded name
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("pin_hash", sa.String(128), nullable=False),
    sa.Column("salt", sa.String(64), nullable=False),
    sa.Column("kdf", sa.String(100), nullable=False),  # e.g. "scrypt:n=16384,r=8,p=1"
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.CheckConstraint("role IN ('engineer', 'operator')", name="ck_people_role"),
)

# Append-only, hash-chained (app/core/audit.py): each row carries the SHA-256 of the
# previous row's canonical form, so an edited, inserted or deleted row breaks the chain.
# `at` and `what` are stored as the exact text that was hashed.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", sa.String(40), nullable=False),  # ISO 8601 UTC
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(50), nullable=False),
    sa.Column("what", sa.Text, nullable=False),  # canonical JSON
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)
# A plain UPDATE or DELETE (on PostgreSQL also TRUNCATE) is refused by the database
# itself; someone who drops these triggers to edit a row is still caught by the hash
# chain. Revision 0003 in app/core/migrations creates the same triggers on an upgrade.
for _event in ("UPDATE", "DELETE"):
    sa.event.listen(audit_log, "after_create", sa.DDL(
        f"CREATE TRIGGER audit_log_no_{_event.lower()} BEFORE {_event} ON audit_log "
        f"BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
    ).execute_if(dialect="sqlite"))
_PG_APPEND_ONLY_FUNCTION = (
    "CREATE OR REPLACE FUNCTION lineside_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$"
)
_PG_APPEND_ONLY_TRIGGERS = tuple(
    f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log FOR EACH {each} "
    "EXECUTE FUNCTION lineside_audit_append_only()"
    for event, each in (("UPDATE", "ROW"), ("DELETE", "ROW"), ("TRUNCATE", "STATEMENT"))
)
for _statement in (_PG_APPEND_ONLY_FUNCTION, *_PG_APPEND_ONLY_TRIGGERS):
    sa.event.listen(audit_log, "after_create", sa.DDL(_statement).execute_if(dialect="postgresql"))


# The training queue (app/core/train_jobs.py): retrains asked for by anyone, run one at a
# time by a training server (`lineside worker`). Rows change state (queued -> running ->
# done | failed | cancelled); nothing here is evidence the way the audit trail is.
train_jobs = sa.Table(
    "train_jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("requested_by", sa.String(200), nullable=False),
    sa.Column("requested_at", UTCDateTime, nullable=False),
    sa.Column("options", sa.JSON, nullable=False),  # mode, epochs, false_reject_target, device, ...
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("worker", sa.String(200)),  # the worker that runs (or ran) it
    sa.Column("started_at", UTCDateTime),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("heartbeat_at", UTCDateTime),  # a running job's worker says it is alive
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),  # claims, for stale-job recovery
    sa.Column("result_version", sa.String(50)),
    sa.Column("error", sa.Text),
    sa.CheckConstraint("state IN ('queued', 'running', 'done', 'failed', 'cancelled')", name="ck_train_job_state"),
    sa.Index("ix_train_jobs_state", "state", "id"),
)

# A job's progress events (app/core/trainer_events.py's protocol), in the order written.
train_job_events = sa.Table(
    "train_job_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("train_jobs.id"), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("event", sa.JSON, nullable=False),
    sa.Index("ix_train_job_events_job", "job_id", "id"),
)


# Plant stations (app/core/stations.py). Each row is written by its station alone (its
# heartbeat: what it runs, its state, its counts today) and read by the plant view and the
# roll-out; a station whose heartbeat stops is shown offline, nothing else is inferred.
stations = sa.Table(
    "stations",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("line", sa.String(200), nullable=False),
    sa.Column("host", sa.String(200), nullable=False, default=""),
    sa.Column("state", sa.String(20), nullable=False),  # starting, running, stopped, error
    sa.Column("model_version", sa.String(50)),
    sa.Column("model_sha", sa.String(64)),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
    sa.Column("day", sa.String(10)),  # the station's local date the counts below belong to
    sa.Column("parts_today", sa.Integer, nullable=False, default=0),
    sa.Column("fails_today", sa.Integer, nullable=False, default=0),
    sa.Column("buffered", sa.Integer, nullable=False, default=0),  # results waiting in its outbox
    sa.Column("drift", sa.Text),  # the drift monitor's warning, NULL while the line looks like training
    sa.Column("message", sa.Text),  # the last problem it reported (model refused, store unreachable)
    sa.Index("ix_stations_line", "line"),
)

# The model each line runs. A line with no row here runs the project's production model;
# a row pins that line to a version (deployed to one line first). model_sha is the
# SHA-256 of model.onnx when it was deployed: a station loads only a file with that hash.
line_models = sa.Table(
    "line_models",
    metadata,
    sa.Column("line", sa.String(200), primary_key=True),
    sa.Column("model_version", sa.String(50), nullable=False),
    sa.Column("model_sha", sa.String(64), nullable=False),
    sa.Column("deployed_at", UTCDateTime, nullable=False),
    sa.Column("deployed_by", sa.String(200), nullable=False),
)


def make_engine(db_path: Path, read_only: bool = False, immutable: bool = False) -> Engine:
    """An engine whose every connection has foreign keys, WAL and full sync switched on.

    read_only opens the file with SQLite's mode=ro: reading another project (an import
    source) must never change it, not even by a migration. immutable (with read_only)
    is for read-only media, where SQLite cannot create its WAL index beside the file:
    nothing can be writing the database there either.
    """
    if read_only:
        flags = "mode=ro&immutable=1" if immutable else "mode=ro"
        url = sa.URL.create("sqlite", database=f"{db_path.absolute().as_uri()}?{flags}", query={"uri": "true"})
    else:
        url = sa.URL.create("sqlite", database=str(db_path))
    # check_same_thread=False: the GUI thread and the inspection worker share one
    # Project; each method takes its own pooled connection, writes are serialised.
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_S})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        # Take transaction control from the sqlite3 module (it would not wrap DDL, so
        # a migration could half-apply); BEGIN is issued in _on_begin instead.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if not read_only:  # switching the journal mode writes to the file
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A writer takes the write lock up front: a read transaction that later tries
        # to write can fail at once under WAL instead of waiting its turn.
        mode = "IMMEDIATE" if conn.get_execution_options().get("lineside_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _from_server(exc: sa_exc.DBAPIError) -> bool:
    """The error came from the PostgreSQL driver, not from SQLite."""
    return type(exc.orig).__module__.split(".")[0] == "psycopg"


def _is_disk_full(exc: sa_exc.DBAPIError) -> bool:
    return "disk is full" in str(exc.orig).lower()


def environment_error(exc: sa_exc.DBAPIError, db_path: Path | str, while_doing: str) -> LinesideError | None:
    """The error to show when the database failed because of its surroundings (full
    disk, no write permission, another program holding the lock; for a plant store also
    an unreachable server or a refused login), not because it is damaged; None when it
    is none of those. *while_doing* ends the first sentence, e.g. "The last change was
    not saved"."""
    if _from_server(exc):
        from app.core import plant

        return plant.environment_error(exc, db_path, while_doing)
    message = str(exc.orig).lower()
    if _is_disk_full(exc):
        return DiskFullError(
            f"The disk is full while writing {db_path}. {while_doing}; everything before it is intact. "
            "Free some space and try again."
        )
    if "readonly" in message or "read-only" in message:
        return ReadOnlyError(
            f"The project is read-only: {db_path} cannot be written. {while_doing}; nothing saved was lost. "
            "Check the permissions of the project folder and of project.db (or copy the project "
            "from read-only media to a writable folder) and try again."
        )
    if "locked" in message or "busy" in message:
        return StoreBusyError(
            f"The project is busy: another program is writing {db_path} (a second Lineside, a "
            f"backup or sync tool). {while_doing}; nothing saved was lost. Close the other "
            "program or wait for it, then retry."
        )
    if "unable to open" in message:
        return ReadOnlyError(
            f"The project folder is read-only: {db_path} cannot be opened for writing (SQLite needs to "
            "create project.db-wal and project.db-shm beside it). Nothing was changed. Check the "
            "permissions of the project folder (or copy the project from read-only media to a "
            "writable folder) and try again."
        )
    return None


def is_damaged(exc: sa_exc.DBAPIError) -> bool:
    """SQLite found the file itself damaged (not a database, a malformed page)."""
    if _from_server(exc):
        return False  # the server keeps its own files; what it reports is never a damaged project file
    message = str(exc.orig).lower()
    return "malformed" in message or "not a database" in message or "corrupt" in message


def _restore_hint(db_path: Path | str) -> str:
    if isinstance(db_path, Path):
        return "Restore the project folder from a backup."
    return "Restore the database from the server's backup."


class SchemaUpgradeNeeded(LinesideError):
    """The database is at an older schema and this open may not upgrade it."""

    def __init__(self, message: str, found: int) -> None:
        super().__init__(message)
        self.found = found


def _found_version(conn: Connection, db_path: Path | str, create: bool) -> int | None:
    """The database's schema version; None for a new, empty database (create=True only)."""
    from app.core import migrations

    inspector = sa.inspect(conn)
    if not inspector.has_table("schema_version"):
        if not create:
            raise LinesideError(
                f"{db_path} is not a Lineside project database (it has no schema version). "
                + _restore_hint(db_path)
            )
        if inspector.get_table_names():
            raise LinesideError(
                f"{db_path} already holds tables of another program. A new project needs a database "
                "of its own: create an empty one (createdb) and try again."
            )
        return None
    if create:
        raise LinesideError(
            f"{db_path} already holds a Lineside project. A new project needs an empty database of "
            "its own; to open the existing one, use the project folder that names it."
        )
    found = conn.scalar(sa.select(schema_version.c.version))
    if found is None:
        raise LinesideError(f"{db_path} is damaged (its schema version is missing).")
    # Releases before Alembic kept only schema_version; later ones keep Alembic's
    # revision too. A number or a revision this release does not know means newer.
    unknown = migrations.unknown_revisions(conn, SCHEMA_VERSION) if inspector.has_table(
        migrations.VERSION_TABLE) else []
    if found > SCHEMA_VERSION or unknown:
        which = f"schema {found}" + (f", revision {', '.join(unknown)}" if unknown else "")
        raise LinesideError(
            f"{db_path} was made by a newer Lineside ({which}; this one knows schema "
            f"{SCHEMA_VERSION}). Update Lineside to open it."
        )
    return found


def _bring_up_to_date(conn: Connection, found: int | None) -> None:
    from app.core import migrations

    if found is None:
        metadata.create_all(conn)
        conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
        migrations.stamp_created(conn, SCHEMA_VERSION)
    elif found < SCHEMA_VERSION:
        migrations.upgrade(conn, found, SCHEMA_VERSION)


def create_schema(conn: Connection, db_path: Path | str) -> None:
    """Create the current schema in the empty database of *conn*, inside its transaction."""
    _bring_up_to_date(conn, _found_version(conn, db_path, create=True))


def _outdated(db_path: Path | str, found: int, read_only: bool) -> SchemaUpgradeNeeded:
    if isinstance(db_path, Path) and read_only:
        return SchemaUpgradeNeeded(
            f"{db_path} was made by an older Lineside (schema {found}). Open that project "
            "in this Lineside once (it is upgraded on opening), then try again.", found
        )
    # A shared server is upgraded on purpose, once, not by whichever station opens it first.
    return SchemaUpgradeNeeded(
        f"{db_path} holds schema {found}; this Lineside uses schema {SCHEMA_VERSION}. Upgrade it once "
        "with 'lineside migrate-schema' on the project folder (stop the stations that use it "
        "first), then open it again.", found
    )


def prepare_schema(engine: Engine, db_path: Path | str, create: bool, read_only: bool = False,
                   upgrade: bool = True) -> int | None:
    """Create (create=True) or check and migrate the schema of the database at *db_path*
    (a file, or the description of a server database); returns the version found before
    (None for a new database).

    read_only or upgrade=False check the version only: a database that would need a
    migration is refused with SchemaUpgradeNeeded.
    """
    try:
        # Looked at in a read transaction first: opening an up-to-date project must not
        # wait for the write lock another program (a running import) may hold.
        with engine.connect() as conn, conn.begin():
            found = _found_version(conn, db_path, create)
        if found == SCHEMA_VERSION:
            return found
        if found is not None and (read_only or not upgrade):
            raise _outdated(db_path, found, read_only)
        with engine.connect().execution_options(lineside_write=True) as conn, conn.begin():
            # Asked again under the write lock: another process may have just done it.
            found = _found_version(conn, db_path, create)
            _bring_up_to_date(conn, found)
        return found
    except sa_exc.DBAPIError as exc:
        engine.dispose()
        known = environment_error(exc, db_path, "The project was not created" if create
                                  else "The project was not opened")
        if known is not None:
            raise known from exc
        if _from_server(exc):
            raise LinesideError(f"{db_path} refused the project ({exc.orig}). Nothing was changed.") from exc
        raise LinesideError(
            f"{db_path} is damaged or is not a Lineside project database ({exc.orig}). "
            + _restore_hint(db_path)
        ) from exc
    except BaseException:
        engine.dispose()
        raise


class Store:
    """Short transactions on a shared engine, safe to use from several threads.

    Each public method of the project runs in its own transaction; writes are
    serialised by a lock. `transaction()` lets one thread group many writes (a bulk
    import) into one commit: methods called inside it on that thread join it.
    """

    def __init__(self, engine: Engine, db_path: Path | str) -> None:
        self._engine = engine
        self._db_path = db_path
        self._write_lock = threading.RLock()
        self._local = threading.local()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        joined = getattr(self._local, "conn", None)
        if joined is not None:
            yield joined
            return
        try:
            with self._engine.connect() as conn:
                if self._engine.dialect.name == "postgresql":
                    # One snapshot for every statement of a read, as SQLite's read
                    # transaction gives: Project.labeled reads the images, then their
                    # labels, and a label cleared in between must not break a retrain.
                    # Read-only repeatable-read transactions never fail to serialise.
                    conn = conn.execution_options(isolation_level="REPEATABLE READ")
                yield conn
        except sa_exc.DatabaseError as exc:
            error = self._store_error(exc, "Nothing was read")
            if error is exc:
                raise
            raise error from exc

    def _store_error(self, exc: sa_exc.DatabaseError, while_doing: str) -> Exception:
        """What to raise for a failed statement: the surroundings (full, read-only,
        busy), a damaged file, or, when it is neither, the error itself (a bug)."""
        known = environment_error(exc, self._db_path, while_doing)
        if known is not None:
            return known
        if is_damaged(exc):
            # A page of the file is damaged (a disk error, a copy cut short): the parts
            # of the project that were read so far are fine, the rest cannot be trusted.
            return LinesideError(
                f"{self._db_path} is damaged ({exc.orig}). {while_doing}. Restore the project folder "
                "from a backup; until then nothing more can be saved in this project."
            )
        return exc

    @contextmanager
    def _write(self, lock: bool = True) -> Iterator[Connection]:
        """A write transaction. lock=False (PostgreSQL only) skips the plant-wide write lock:
        for rows that need no single order across stations (inspection results, a
        station's heartbeat), so stations do not queue behind each other or a labeler."""
        joined = getattr(self._local, "conn", None)
        if joined is not None:
            yield joined
            return
        with self._write_lock:
            try:
                options = {"lineside_write": True, "lineside_plant_lock": lock}
                with self._engine.connect().execution_options(**options) as conn:
                    self._local.conn = conn
                    try:
                        with conn.begin():
                            yield conn
                    finally:
                        self._local.conn = None
            except sa_exc.DatabaseError as exc:
                error = self._store_error(exc, "The last change was not saved")
                if error is exc:
                    raise
                raise error from exc

    def transaction(self):
        """Group the writes made on this thread inside the `with` block into one commit."""
        return self._write()

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A connection whose reads all see the database at one moment (a copy, a
        backup), while others go on writing: SQLite's read transaction under WAL gives
        that; PostgreSQL's default (read committed) does not, repeatable read does."""
        conn = self._engine.connect()
        try:
            if self._engine.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn
        except sa_exc.DatabaseError as exc:
            error = self._store_error(exc, "Nothing was read")
            if error is exc:
                raise
            raise error from exc
        finally:
            conn.close()

    def _close_engine(self) -> None:
        if self._engine.dialect.name != "sqlite":
            self._engine.dispose()  # a server keeps its own log; nothing to fold back
            return
        # Fold the WAL back into project.db so the folder can be copied as it is.
        # A raw connection: no BEGIN is wrapped around it (a checkpoint cannot run
        # inside a transaction).
        try:
            raw = self._engine.raw_connection()
            try:
                raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                raw.close()
        except (sa_exc.DBAPIError, sqlite3.Error):
            pass  # another process still has it open: the WAL stays, SQLite replays it
        self._engine.dispose()
