"""Schema versions of the project database as Alembic revisions, SQLite and PostgreSQL alike.

Revision "000N" *is* schema version N: each revision also sets the `schema_version`
table, the one record every Lineside release reads (releases before Alembic know only
that table). Before an upgrade the database is stamped with the revision of the number
it holds, so a project from any release starts from the right step.

Run programmatically on a connection the caller has already opened a write transaction
on (app/core/db.py): Alembic then commits nothing itself, and the upgrade and its version
stamps commit together or not at all. There is no alembic.ini; this folder is the script
location. Alembic is imported only when a database has to be upgraded.

A schema change is a new file in versions/ (revision "000N", down_revision the one
before, its tables as they stand at that version, ending with
`UPDATE schema_version SET version = N`), the same change to the tables in db.py, and
db.SCHEMA_VERSION raised to N. tests/test_plant_store.py checks that the revisions
build the very schema db.py defines, on both databases.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from app.core.errors import LinesideError

FOLDER = Path(__file__).resolve().parent
# Alembic's own bookkeeping table and its one column, as Alembic defines them.
VERSION_TABLE = "alembic_version"


def revision_for(version: int) -> str:
    return f"{version:04d}"


def _version_table() -> sa.Table:
    return sa.Table(VERSION_TABLE, sa.MetaData(), sa.Column("version_num", sa.String(32), nullable=False),
                    sa.PrimaryKeyConstraint("version_num", name=f"{VERSION_TABLE}_pkc"))


def stamp_created(conn: sa.Connection, version: int) -> None:
    """Record *version*'s revision in a database just created from today's tables.

    Written directly, not through Alembic's script directory, so that creating a project
    needs no revision files (a frozen station build carries none of them).
    """
    table = _version_table()
    table.create(conn)
    conn.execute(table.insert().values(version_num=revision_for(version)))


def unknown_revisions(conn: sa.Connection, known_up_to: int) -> list[str]:
    """Revisions recorded in the database that this release does not have."""
    known = {revision_for(n) for n in range(1, known_up_to + 1)}
    found = conn.scalars(sa.select(_version_table().c.version_num)).all()
    return [revision for revision in found if revision not in known]


def _config(conn: sa.Connection):
    from alembic.config import Config

    if not (FOLDER / "env.py").is_file() or not (FOLDER / "versions").is_dir():
        raise LinesideError(
            f"This Lineside build lacks its schema migrations ({FOLDER} holds no env.py and versions/), "
            "so it cannot upgrade an older project. Upgrade the project with a complete installation "
            "('lineside migrate-schema PROJECT'), then open it here."
        )
    config = Config()
    config.set_main_option("script_location", str(FOLDER).replace("%", "%%"))  # ConfigParser syntax
    config.attributes["connection"] = conn
    return config


def upgrade(conn: sa.Connection, found: int | None, target: int) -> None:
    """Upgrade the database on *conn* from schema *found* (None: an empty database) to
    *target*, inside the caller's transaction."""
    from alembic import command

    config = _config(conn)
    if found is not None:
        # schema_version is what every release keeps; Alembic's stamp follows from it.
        command.stamp(config, revision_for(found), purge=True)
    command.upgrade(config, revision_for(target))


def head() -> str:
    """The newest revision in versions/ (tests check it matches db.SCHEMA_VERSION)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(FOLDER)).get_current_head()
