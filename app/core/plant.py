"""A plant store: the project database on a PostgreSQL server (docs/adr/0009).

The project folder keeps images, masks and models, and a small file, database.json,
that names the database by URL. The URL never holds a password: libpq (under psycopg)
finds it in PGPASSWORD or the user's pgpass file by itself, so nothing in the folder,
which gets copied, backed up and shared, can give the login away.

psycopg is imported only when a plant store is opened: a station on SQLite runs
without it.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from app.core import atomic, db
from app.core.errors import DiskFullError, LinesideError, ReadOnlyError, StoreBusyError

POINTER_NAME = "database.json"
POINTER_FORMAT = 1
DRIVER = "postgresql+psycopg"
_ACCEPTED_DRIVERS = ("postgresql", "postgres", DRIVER)
URL_FORM = "postgresql+psycopg://USER@HOST[:PORT]/DATABASE"
CONNECT_TIMEOUT_S = 10
# Writers take this transaction-level advisory lock first: one writer at a time, as
# SQLite's BEGIN IMMEDIATE gives, so the audit chain keeps one order across stations.
WRITE_LOCK_KEY = 0x4C494E45  # "LINE"
PASSWORD_HELP = (
    "Leave the password out of the URL and give it to PostgreSQL's client library the usual "
    "way: the PGPASSWORD environment variable, or the user's pgpass file (~/.pgpass on Linux, "
    "%APPDATA%\\postgresql\\pgpass.conf on Windows; one line HOST:PORT:DATABASE:USER:PASSWORD)."
)


class PasswordInUrlError(LinesideError):
    """A database URL with a password: refused, never stored."""


def _masked(text: str) -> str:
    """*text* with any password in it replaced by ***, fit for a message."""
    text = re.sub(r"(://[^/:@]*:)[^@/]*@", r"\1***@", text)
    return re.sub(r"(?i)(password=)[^&\s]*", r"\1***", text)


def parse_url(text: str) -> sa.URL:
    """The checked URL of a plant database (LinesideError saying what is wrong)."""
    try:
        url = sa.make_url((text or "").strip())
    except (sa_exc.ArgumentError, ValueError) as exc:
        raise LinesideError(f"'{_masked(text)}' is not a database URL; write it as {URL_FORM}.") from exc
    if url.drivername not in _ACCEPTED_DRIVERS:
        raise LinesideError(
            f"'{_masked(text)}' is not a PostgreSQL URL. A plant store runs on PostgreSQL: {URL_FORM}."
        )
    if url.password is not None or any(key.lower() == "password" for key in url.query):
        raise PasswordInUrlError(
            "The database URL holds a password. Lineside never writes a password into the project "
            f"folder. {PASSWORD_HELP}"
        )
    if not url.database:
        raise LinesideError(f"'{_masked(text)}' names no database; write it as {URL_FORM}.")
    return url.set(drivername=DRIVER)


class Location(str):
    """How messages name a plant database (the Store's "db_path"), with its URL."""

    url: sa.URL


def describe(url: sa.URL) -> Location:
    location = Location(f"the plant database {url.render_as_string(hide_password=True)}")
    location.url = url
    return location


def _where(url: sa.URL) -> str:
    host = url.host or "the local socket"
    return f"{host}:{url.port}" if url.port else host


# -- the file in the project folder ------------------------------------------------


def write_pointer(folder: Path, url: sa.URL) -> Path:
    if url.password is not None:  # parse_url refuses these; never write one, whoever calls
        raise PasswordInUrlError(f"Refusing to write a password into {folder}. {PASSWORD_HELP}")
    text = json.dumps({"format": POINTER_FORMAT, "database": url.render_as_string(hide_password=False)}, indent=2)
    path = folder / POINTER_NAME
    atomic.write_bytes(path, (text + "\n").encode())
    return path


def read_pointer(folder: Path) -> sa.URL:
    path = folder / POINTER_NAME
    hint = f'It should hold {{"format": {POINTER_FORMAT}, "database": "{URL_FORM}"}}.'
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LinesideError(f"{path} cannot be read ({exc.strerror or exc}).") from exc
    except ValueError as exc:
        raise LinesideError(f"{path} is damaged (not JSON). {hint}") from exc
    if not isinstance(content, dict) or not isinstance(content.get("database"), str):
        raise LinesideError(f"{path} is damaged (no database URL). {hint}")
    written_by = content.get("format", POINTER_FORMAT)
    if not isinstance(written_by, int) or written_by > POINTER_FORMAT:
        raise LinesideError(f"{path} was written by a newer Lineside. Update Lineside to open this project.")
    try:
        return parse_url(content["database"])
    except PasswordInUrlError as exc:
        raise PasswordInUrlError(f"{path} holds a password; remove it from the file. {PASSWORD_HELP}") from exc


# -- the engine --------------------------------------------------------------------


def _json_value(value):
    # PostgreSQL's json type has no NaN or Infinity (metrics can be NaN: no defects in a
    # split); they are stored as null, the one "no value" JSON has.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    return value


def _json_text(value) -> str:
    return json.dumps(_json_value(value), allow_nan=False)


def make_engine(url: sa.URL, read_only: bool = False) -> sa.Engine:
    """An engine on the plant database; writers are serialised by an advisory lock.

    read_only makes every transaction read-only on the server (reading another project,
    e.g. to import or copy from it, must never change it).
    """
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise LinesideError(
            "This Lineside has no PostgreSQL support (the psycopg package is missing), so it cannot "
            "open a plant store. Install it with: pip install 'lineside[plant]'."
        ) from exc
    connect_args: dict = {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "lineside"}
    if read_only:
        connect_args["options"] = "-c default_transaction_read_only=on"
    # pool_pre_ping: a server restarted overnight must not cost the first label of the shift.
    engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True, json_serializer=_json_text)

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        options = conn.get_execution_options()
        if options.get("lineside_write"):
            # Read at each write, like SQLite's busy timeout, so a wait ends the same way.
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(db.BUSY_TIMEOUT_S * 1000)}ms'")
            if options.get("lineside_plant_lock", True):
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")

    return engine


# -- what went wrong, in words -----------------------------------------------------


def _login_help(url: sa.URL) -> str:
    user = url.username or "the user this program runs as"
    return (f"the server did not accept the login of {user}. Give the password through PGPASSWORD or "
            f"the user's pgpass file (never in the URL), or ask the database administrator for access")


def environment_error(exc: sa_exc.DBAPIError, where: str | Location, while_doing: str) -> LinesideError | None:
    """The message for a server error that is not a bug: the server unreachable, the
    login refused, no such database, busy, read-only, its disk full; None otherwise."""
    message = str(exc.orig)
    lowered = message.lower()
    state = getattr(exc.orig, "sqlstate", None) or ""
    url = getattr(where, "url", None)
    at = _where(url) if url is not None else "the server"
    if state == "55P03" or "lock timeout" in lowered:
        return StoreBusyError(
            f"The project is busy: another station is writing {where}. {while_doing}; nothing saved "
            "was lost. Wait for it to finish, then retry."
        )
    if state == "25006":
        return ReadOnlyError(f"{where} was opened read-only. {while_doing}.")
    if state == "42501":
        return ReadOnlyError(
            f"The database user may not change {where} ({message.strip()}). {while_doing}; nothing saved "
            "was lost. Ask the database administrator for write access."
        )
    if state == "53100":
        return DiskFullError(
            f"The disk of the database server is full ({where}). {while_doing}; everything before it is "
            "intact. Ask the database administrator to free space, then retry."
        )
    if "password" in lowered or "authentication failed" in lowered:
        return LinesideError(f"Cannot open {where}: {_login_help(url) if url else 'the login was refused'}. "
                             f"{while_doing}. (The server said: {_first_line(message)})")
    if "no pg_hba.conf entry" in lowered or ("role" in lowered and "does not exist" in lowered):
        return LinesideError(
            f"Cannot open {where}: the server does not let this user connect from this PC "
            f"({_first_line(message)}). {while_doing}. Ask the database administrator to create the user "
            "or to allow it in pg_hba.conf."
        )
    if "database" in lowered and "does not exist" in lowered:
        name = url.database if url is not None else "named in the URL"
        return LinesideError(
            f"Cannot open {where}: the database {name} does not exist on {at}. {while_doing}. Ask the "
            f"database administrator to create it (createdb -O USER {name}), or correct the URL."
        )
    if state.startswith("08") or state.startswith("57P") or any(word in lowered for word in (
            "connection refused", "failed to resolve host", "could not translate host", "timeout expired",
            "timed out", "no route to host", "unreachable", "connection failed", "server closed the connection",
            "terminating connection", "connection is closed", "connection is lost", "consuming input failed")):
        return LinesideError(
            f"Cannot reach the PostgreSQL server of {where} ({_first_line(message)}). {while_doing}; nothing "
            "saved was lost. Check that the server runs and that this PC may reach it (network, firewall, "
            "the server's listen_addresses and pg_hba.conf), then retry."
        )
    return None


def _first_line(message: str) -> str:
    return " ".join(message.strip().split("\n")[0].split())
