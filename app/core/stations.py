"""Plant stations and the model each line runs (schema v5: `stations`, `line_models`).

A station (`lineside run PROJECT --station NAME --line LINE`) registers itself, then
writes a heartbeat every HEARTBEAT_S seconds: what it runs (model version and the hash
of the file it loaded), its state, its parts and FAIL verdicts today and the results
still waiting in its outbox. Nothing else writes a station's row. The plant view and the
roll-out read these rows; a station whose heartbeat is older than OFFLINE_AFTER_S is
shown offline.

Which model a line runs: a row in `line_models` for that line (an engineer deployed a
version to that line only), else the row for DEFAULT_LINE (written by every project-wide
deploy, app/core/project_models.py), else the production model (a project deployed
before schema v5, whose hash is then read from the file). The hash is what a station
checks its copy against before it loads it.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from app.core import audit, db
from app.core.errors import LinesideError

HEARTBEAT_S = 2.0
OFFLINE_AFTER_S = 10.0  # about five missed heartbeats
DEFAULT_LINE = ""  # the line_models row every line follows unless it has its own
NAME_MAX = 200
STATES = ("starting", "running", "stopped", "error")


@dataclass(frozen=True)
class LineTarget:
    """The model a line should run."""

    line: str
    version: str
    sha256: str
    pinned: bool  # deployed to this line only (not the project's production model)
    deployed_at: datetime | None
    deployed_by: str


@dataclass(frozen=True)
class StationStatus:
    """One station as its last heartbeat left it."""

    name: str
    line: str
    host: str
    state: str
    model_version: str | None
    model_sha: str | None
    started_at: datetime
    last_seen: datetime
    day: str | None
    parts_today: int
    fails_today: int
    buffered: int
    drift: str | None
    message: str | None
    online: bool

    @property
    def shown_state(self) -> str:
        """What the plant view says: offline (no heartbeat), drift, or the station's own state."""
        if not self.online and self.state != "stopped":
            return "offline"
        if self.drift and self.state == "running":
            return "drift warning"
        return self.state

    @property
    def yield_today(self) -> float | None:
        if not self.parts_today:
            return None
        return (self.parts_today - self.fails_today) / self.parts_today


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _check_name(kind: str, value: str, allow_empty: bool = False) -> str:
    value = (value or "").strip()
    if (not value and not allow_empty) or len(value) > NAME_MAX:
        raise LinesideError(f"A {kind} name must be 1 to {NAME_MAX} characters, not {value!r}.")
    return value


def default_station_name() -> str:
    return socket.gethostname() or "station"


# -- the station's side ----------------------------------------------------------------


def register(project, name: str, line: str, host: str | None = None) -> None:
    """Add or update *name*'s row (a station that moved to another line says so here)."""
    name, line = _check_name("station", name), _check_name("line", line)
    now = _now()
    values = {"line": line, "host": (host if host is not None else socket.gethostname())[:NAME_MAX],
              "state": "starting", "started_at": now, "last_seen": now}  # fmt: skip
    table = db.stations
    with project._write() as conn:
        if conn.scalar(sa.select(sa.func.count()).where(table.c.name == name)):
            conn.execute(table.update().where(table.c.name == name).values(**values, message=None))
        else:
            conn.execute(table.insert().values(name=name, parts_today=0, fails_today=0, buffered=0, **values))


def heartbeat(project, name: str, *, state: str, model_version: str | None = None, model_sha: str | None = None,
              day: str | None = None, parts_today: int = 0, fails_today: int = 0, buffered: int = 0,
              drift: str | None = None, message: str | None = None) -> None:
    """The station's current state; LinesideError when the store cannot be reached."""
    if state not in STATES:
        raise ValueError(f"state must be one of {STATES}, not {state!r}")
    table = db.stations
    with project._write(lock=False) as conn:
        done = conn.execute(table.update().where(table.c.name == name).values(
            state=state, model_version=model_version, model_sha=model_sha, last_seen=_now(), day=day,
            parts_today=int(parts_today), fails_today=int(fails_today), buffered=int(buffered),
            drift=drift, message=message)).rowcount  # fmt: skip
    if not done:
        raise LinesideError(f"Station {name!r} is not registered in this project (register it first).")


_sha_cache: dict[tuple, str] = {}
_sha_lock = threading.Lock()


def _file_sha(path: Path) -> str:
    """SHA-256 of a model file, remembered per (path, size, mtime) so a poll costs a stat."""
    from app.core.runtime import file_sha256

    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _sha_lock:
        if key in _sha_cache:
            return _sha_cache[key]
    digest = file_sha256(path)
    with _sha_lock:
        _sha_cache[key] = digest
    return digest


def target(project, line: str) -> LineTarget | None:
    """The model *line* should run now; None when the project has none in production."""
    table = db.line_models
    with project._read() as conn:
        rows = {r["line"]: r for r in conn.execute(
            sa.select(table).where(table.c.line.in_([line, DEFAULT_LINE]))).mappings()}  # fmt: skip
    row = rows.get(line) or rows.get(DEFAULT_LINE)
    if row is not None:
        return LineTarget(line, row["model_version"], row["model_sha"], row["line"] == line and line != DEFAULT_LINE,
                          row["deployed_at"], row["deployed_by"])  # fmt: skip
    production = project.production_model()
    if production is None:
        return None
    if not production.onnx_path.is_file():
        raise LinesideError(f"{production.onnx_path} is missing: the share may be unreachable.")
    return LineTarget(line, production.version, _file_sha(production.onnx_path), False, None, "")


# -- the engineer's side ---------------------------------------------------------------


def record_line_model(conn: sa.Connection, line: str, version: str, sha256: str, by: str) -> None:
    """Upsert a line_models row inside the caller's write transaction."""
    table = db.line_models
    values = {"model_version": version, "model_sha": sha256, "deployed_at": _now(), "deployed_by": by or ""}
    if conn.scalar(sa.select(sa.func.count()).where(table.c.line == line)):
        conn.execute(table.update().where(table.c.line == line).values(**values))
    else:
        conn.execute(table.insert().values(line=line, **values))


def deploy_to_line(project, line: str, version: str, actor=None, override_reason: str | None = None) -> LineTarget:
    """Pin *line* to *version* (the other lines keep following production).

    The same checks as a project-wide deploy (app/core/project_models.py): the model
    must load and run, the caller must be allowed to deploy, the deploy gate judges it
    on the golden set. The switch is in the audit trail with the line's name.
    """
    from app.core import golden, people

    line = _check_name("line", line)
    model = project.model(version)
    if not model.onnx_path.is_file():
        raise LinesideError(f"{model.onnx_path} is missing; model {version} cannot go to line {line}.")
    project._check_model_runs(model)
    people.require(project, actor, "deploy")
    gate = golden.deploy_gate(project, model, actor, override_reason) if model.status != "production" else None
    sha = _file_sha(model.onnx_path)
    by = golden._name(None, actor) if actor is not None else ""
    with project._write() as conn:
        record_line_model(conn, line, version, sha, by)
        audit.append(conn, audit.DEPLOY, by or None, {
            "version": version, "line": line, "threshold": model.threshold,
            "gate": None if gate is None else {"passed": gate["passed"], "n_golden": gate["n_golden"],
                                               "overridden": bool(gate.get("override"))}})  # fmt: skip
    return target(project, line)


def follow_production(project, line: str, actor=None) -> None:
    """Unpin *line*: it runs the project's production model again."""
    from app.core import golden, people

    line = _check_name("line", line)
    people.require(project, actor, "deploy")
    by = golden._name(None, actor) if actor is not None else ""
    with project._write() as conn:
        conn.execute(db.line_models.delete().where(db.line_models.c.line == line))
        audit.append(conn, audit.DEPLOY, by or None, {"line": line, "follows": "production"})


# -- what the plant view reads ----------------------------------------------------------


def stations(project, line: str | None = None, now: datetime | None = None) -> list[StationStatus]:
    """Every station (or one line's), by line then name."""
    table = db.stations
    query = sa.select(table).order_by(table.c.line, table.c.name)
    if line is not None:
        query = query.where(table.c.line == line)
    now = now or _now()
    with project._read() as conn:
        rows = list(conn.execute(query).mappings())
    return [StationStatus(
        name=r["name"], line=r["line"], host=r["host"], state=r["state"], model_version=r["model_version"],
        model_sha=r["model_sha"], started_at=r["started_at"], last_seen=r["last_seen"], day=r["day"],
        parts_today=r["parts_today"], fails_today=r["fails_today"], buffered=r["buffered"], drift=r["drift"],
        message=r["message"], online=(now - r["last_seen"]).total_seconds() <= OFFLINE_AFTER_S,
    ) for r in rows]  # fmt: skip


@dataclass(frozen=True)
class RolloutRow:
    station: str
    line: str
    running: str | None
    wanted: str | None
    done: bool  # runs the wanted version, with the wanted file's hash
    online: bool


def rollout(project, line: str | None = None) -> list[RolloutRow]:
    """Per station: the version it runs against the one its line should run."""
    wanted: dict[str, LineTarget | None] = {}
    out = []
    for s in stations(project, line):
        if s.line not in wanted:
            wanted[s.line] = target(project, s.line)
        goal = wanted[s.line]
        done = goal is not None and s.model_version == goal.version and s.model_sha == goal.sha256
        out.append(RolloutRow(s.name, s.line, s.model_version, goal.version if goal else None, done, s.online))
    return out
