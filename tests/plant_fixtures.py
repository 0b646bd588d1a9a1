"""A throwaway PostgreSQL server for the plant-store tests.

Started once per test session from the installed PostgreSQL binaries (initdb, pg_ctl)
in a temporary folder, listening on 127.0.0.1 at a free port, and stopped at the end.
The tests that need it skip, saying why, where PostgreSQL or psycopg is not installed.
initdb refuses to run as root, so as root the server runs as the `postgres` (or
`nobody`) user through runuser.

`stoppable_postgres_server` is a server of one test's own, on a new cluster, which the
test may stop and start again (fault tests); `postgres_server` is shared and must stay up.

The superuser `lineside` logs in without a password (trust). The role `inspector`
needs one (scram-sha-256, password INSPECTOR_PASSWORD): the tests of the password
path log in as it.
"""

from __future__ import annotations

import glob
import itertools
import os
import re
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SUPERUSER = "lineside"
INSPECTOR = "inspector"
INSPECTOR_PASSWORD = "pg-secret-4711"
_names = itertools.count(1)


def _bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: the PATH, pg_config, or Debian's versioned folders."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
        if out and (Path(out) / "initdb").is_file():
            return Path(out)

    def major(path: str) -> int:
        match = re.search(r"postgresql/(\d+)/", path)
        return int(match.group(1)) if match else 0

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=major)
    return Path(candidates[-1]).parent if candidates else None


def _as_server_user() -> tuple[list[str], str | None] | None:
    """The command prefix that runs the server's programs as a user initdb accepts, and
    that user (None: the current one); None when there is none."""
    if os.name != "posix" or os.geteuid() != 0:
        return [], None
    import pwd

    runuser = shutil.which("runuser")
    if runuser is None:
        return None
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return [runuser, "-u", user, "--"], user
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    port: int
    base: Path

    def url(self, database: str, user: str = SUPERUSER, password: str | None = None) -> str:
        login = f"{user}:{password}" if password else user
        return f"postgresql+psycopg://{login}@127.0.0.1:{self.port}/{database}"

    def admin(self):
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres",
                               autocommit=True)

    def new_database(self, owner: str = SUPERUSER) -> str:
        """A new, empty database; its name."""
        name = f"lineside_test_{next(_names)}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        return name


def _run(argv: list[str], what: str, log: Path | None = None) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log is not None and log.is_file() else ""
        pytest.fail(f"PostgreSQL is installed but {what} failed ({' '.join(argv)}):\n"
                    f"{result.stdout}{result.stderr}{tail}")


def _server_tools() -> tuple[Path, list[str], str | None]:
    """(bin folder, command prefix, server user), or skip saying what is missing."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (no initdb/pg_ctl; on Debian: apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[dev]')")
    runner = _as_server_user()
    if runner is None:
        pytest.skip("running as root, and no runuser with a postgres or nobody user to run initdb as")
    return bin_dir, *runner


@contextmanager
def _cluster():
    """A new cluster, started; yields (server, pg_ctl command, server options, log)."""
    bin_dir, prefix, user = _server_tools()
    # A short path of its own (the socket path has a length limit) that the server user owns.
    base = Path(tempfile.mkdtemp(prefix="lineside-pg-"))
    if user is not None:
        shutil.chown(base, user)
    data, log = base / "data", base / "server.log"
    pg_ctl = [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data)]
    try:
        _run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
              "-E", "UTF8", "--locale=C", "--no-sync"], "initdb")
        # The first matching line wins: the inspector role alone must give a password.
        hba = data / "pg_hba.conf"
        hba.write_text(f"host all {INSPECTOR} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        port = _free_port()
        options = (f"-k {base} -c listen_addresses=127.0.0.1 -p {port} -c fsync=off "
                   "-c max_connections=60 -c shared_buffers=16MB")
        _run([*pg_ctl, "-l", str(log), "-w", "-t", "60", "-o", options, "start"], "starting the server", log)
        yield PostgresServer(port, base), pg_ctl, options, log
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*pg_ctl, "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    with _cluster() as (server, _pg_ctl, _options, _log):
        with server.admin() as conn:
            conn.execute(f"CREATE ROLE {INSPECTOR} LOGIN PASSWORD '{INSPECTOR_PASSWORD}'")
        yield server


@dataclass
class StoppablePostgresServer(PostgresServer):
    """A server of one test's own, which the test may stop and start again (fault tests)."""

    pg_ctl: list[str] = field(default_factory=list)
    options: str = ""
    log: Path | None = None

    def stop(self) -> None:
        """Stop it the way an administrator does: open connections are cut (-m fast)."""
        _run([*self.pg_ctl, "-m", "fast", "-w", "-t", "60", "stop"], "stopping the server", self.log)

    def start(self) -> None:
        _run([*self.pg_ctl, "-l", str(self.log), "-w", "-t", "60", "-o", self.options, "start"],
             "starting the server again", self.log)


@pytest.fixture
def stoppable_postgres_server():
    """A PostgreSQL server for this test alone (a new cluster: a few seconds to set up)."""
    with _cluster() as (server, pg_ctl, options, log):
        yield StoppablePostgresServer(server.port, server.base, pg_ctl=pg_ctl, options=options, log=log)


@pytest.fixture
def plant_url(postgres_server: PostgresServer) -> str:
    """The URL (no password) of a new, empty database on the test server."""
    return postgres_server.url(postgres_server.new_database())
