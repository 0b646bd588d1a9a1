"""A throwaway PostgreSQL server for the plant-store tests.

Started once per test session from the installed PostgreSQL binaries (initdb, pg_ctl)
in a temporary folder, listening on 127.0.0.1 at a free port, and stopped at the end.
The tests that need it skip, saying why, where PostgreSQL or psycopg is not installed.
initdb refuses to run as root, so as root the server runs as the `postgres` (or
`nobody`) user through runuser.

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
from dataclasses import dataclass
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


@pytest.fixture(scope="session")
def postgres_server():
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
    prefix, user = runner
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
        server = PostgresServer(port, base)
        with server.admin() as conn:
            conn.execute(f"CREATE ROLE {INSPECTOR} LOGIN PASSWORD '{INSPECTOR_PASSWORD}'")
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*pg_ctl, "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def plant_url(postgres_server: PostgresServer) -> str:
    """The URL (no password) of a new, empty database on the test server."""
    return postgres_server.url(postgres_server.new_database())
