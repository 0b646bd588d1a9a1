"""What the plant view shows, the same in `lineside plant` and in the app's Plant view.

One read of the stations (app/core/stations.py) and of the model each of their lines
should run, and the few texts both front ends print alike: "v3 → v4 rolling out",
"12 s ago", "Line A: v4 on 3 of 4 stations".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from app.core import db, stations
from app.core.errors import LinesideError
from app.core.stations import LineTarget, StationStatus

JOIN_HINT = "lineside run PROJECT --station NAME --line LINE --source camera:0"
SINGLE_PC_HINT = ("This project's database is project.db on this PC: a plant of stations shares one project "
                  "on PostgreSQL (lineside copy PROJECT --to-db URL DEST, docs/adr/0009).")


@dataclass(frozen=True)
class StationRow:
    """A station beside what its line should run."""

    status: StationStatus
    wanted: LineTarget | None
    seconds_since_seen: float

    @property
    def done(self) -> bool:
        """It runs the wanted version, loaded from the file with the deployed hash."""
        wanted, status = self.wanted, self.status
        return wanted is not None and status.model_version == wanted.version and status.model_sha == wanted.sha256

    def model_text(self) -> str:
        running = self.status.model_version
        if self.wanted is None or self.done:
            return running or "-"
        if running == self.wanted.version:  # the same name, another file: it must load the deployed one
            return f"{running} (other file) → {self.wanted.version} rolling out"
        return f"{running or 'none'} → {self.wanted.version} rolling out"

    def yield_text(self) -> str:
        value = self.status.yield_today
        return "-" if value is None else f"{value:.1%}"

    def note(self) -> str:
        """The drift warning and the last problem the station reported, if any."""
        return " · ".join(text for text in (self.status.drift, self.status.message) if text)


@dataclass(frozen=True)
class LineRollout:
    """How far a line is with the model it should run."""

    line: str
    target: LineTarget | None
    done: int
    total: int
    problem: str | None = None  # why its target could not be read (e.g. the share is unreachable)

    @property
    def follows(self) -> str:
        return "pinned" if self.target is not None and self.target.pinned else "production"

    def summary(self) -> str:
        if self.problem:
            return f"{self.line}: {self.problem}"
        if self.target is None:
            return f"{self.line}: no model in production yet"
        noun = "station" if self.total == 1 else "stations"
        return f"{self.line}: {self.target.version} on {self.done} of {self.total} {noun}"


@dataclass(frozen=True)
class PlantOverview:
    rows: list[StationRow]
    lines: list[LineRollout]  # the stations' lines, and lines pinned to a version
    production: LineTarget | None  # what a line without a pin of its own runs
    production_problem: str | None = None


def quoted(word) -> str:
    """A command-line word to copy, in double quotes if it has a space: the one quoting a
    Windows prompt and a Linux shell both understand."""
    return f'"{word}"' if " " in str(word) else str(word)


def join_hint(project_path) -> str:
    """The command a station joins the project with."""
    return JOIN_HINT.replace("PROJECT", quoted(project_path))


def ago(seconds: float) -> str:
    """"12 s ago", "5 min ago", "3 h ago", "2 days ago" (a clock ahead of ours: "just now")."""
    if seconds < 1:
        return "just now"
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600:.0f} h ago"
    return f"{seconds // 86400:.0f} days ago"


def _pinned_lines(project) -> list[str]:
    table = db.line_models
    with project._read() as conn:
        return list(conn.scalars(sa.select(table.c.line).where(table.c.line != stations.DEFAULT_LINE)))


def _target(project, line: str) -> tuple[LineTarget | None, str | None]:
    try:
        return stations.target(project, line), None
    except LinesideError as exc:  # one line's missing model file must not hide the whole plant
        return None, str(exc)


def read(project, line: str | None = None, now: datetime | None = None) -> PlantOverview:
    """Every station (or one line's) with its line's target, and the roll-out per line."""
    now = now or stations._now()
    statuses = stations.stations(project, line, now=now)
    names = {s.line for s in statuses} | {n for n in _pinned_lines(project) if line is None or n == line}
    targets = {name: _target(project, name) for name in sorted(names)}
    rows = [StationRow(s, targets[s.line][0], (now - s.last_seen).total_seconds()) for s in statuses]
    lines = []
    for name, (goal, problem) in targets.items():
        mine = [r for r in rows if r.status.line == name]
        lines.append(LineRollout(name, goal, sum(r.done for r in mine), len(mine), problem))
    production, problem = _target(project, stations.DEFAULT_LINE)
    return PlantOverview(rows, lines, production, problem)
