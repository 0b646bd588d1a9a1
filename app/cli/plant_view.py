"""`lineside plant` and `lineside deploy --line`: the stations of a plant and the model
each line runs.

    lineside plant PROJECT [--line LINE] [--json] [--watch SECONDS]
    lineside deploy PROJECT VERSION --line LINE [--user NAME] [--override-reason TEXT]
    lineside deploy PROJECT --line LINE --follow-production [--user NAME]

The plant view only reads: each station writes its own row (app/core/stations.py) and
the view sets it beside what its line should run (app/core/plant_overview.py).
`--line` is an option of `lineside deploy` (this module registers after app.cli.trust
and wraps its handler, as app.cli.trust wraps app.cli.models'): without it a deploy is
project-wide, as always.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time

COLUMNS = ("station", "line", "host", "model", "state", "last seen", "parts today", "yield today", "backlog",
           "drift / message")


def register(subparsers: argparse._SubParsersAction) -> None:
    plant = subparsers.add_parser(
        "plant", help="the plant's stations: line, model, state, parts and yield today",
        description="One line per station (what it runs against what its line should run, its state, "
        "when it was last heard from, parts and yield today, results waiting in its outbox, drift) and "
        "the roll-out of each line. Only reads the project.",
    )
    plant.add_argument("project", help="project folder")
    plant.add_argument("--line", metavar="LINE", help="only this line's stations")
    plant.add_argument("--json", action="store_true", help="the same as one JSON object")
    plant.add_argument("--watch", type=float, metavar="SECONDS",
                       help="show it again every SECONDS until Ctrl+C (with --json: one object per line)")
    plant.set_defaults(handler=run_plant)

    deploy = subparsers.choices.get("deploy")
    if deploy is not None:  # registered by app.cli.models, --user added by app.cli.trust
        deploy.add_argument("--line", metavar="LINE", default=None,
                            help="deploy to this line's stations only; the other lines keep their model")
        deploy.add_argument("--follow-production", action="store_true",
                            help="with --line and no VERSION: the line runs the production model again")
        deploy.set_defaults(handler=functools.partial(run_deploy, whole_project=deploy.get_default("handler")))


# -- lineside plant ------------------------------------------------------------------------


def _station_json(row) -> dict:
    s = row.status
    return {
        "station": s.name, "line": s.line, "host": s.host, "state": s.shown_state, "reported_state": s.state,
        "online": s.online, "model_version": s.model_version, "model_sha": s.model_sha,
        "wanted_version": row.wanted.version if row.wanted else None, "rolled_out": row.done,
        "last_seen": s.last_seen.isoformat(timespec="seconds"), "seconds_since_seen": round(row.seconds_since_seen, 1),
        "started_at": s.started_at.isoformat(timespec="seconds"), "day": s.day, "parts_today": s.parts_today,
        "fails_today": s.fails_today, "yield_today": s.yield_today, "backlog": s.buffered, "drift": s.drift,
        "message": s.message,
    }  # fmt: skip


def _line_json(line) -> dict:
    goal = line.target
    return {"line": line.line, "version": goal.version if goal else None, "sha256": goal.sha256 if goal else None,
            "follows": line.follows, "done": line.done, "total": line.total, "problem": line.problem}  # fmt: skip


def overview_json(project, overview) -> dict:
    production = overview.production
    return {"project": str(project.path), "database": project.database_url or "project.db",
            "stations": [_station_json(r) for r in overview.rows], "lines": [_line_json(x) for x in overview.lines],
            "production": production.version if production else None}  # fmt: skip


def _table(header, rows) -> str:
    from app.cli.models import format_table

    return format_table(list(header), [[str(cell) for cell in row] for row in rows])


def _no_stations_text(project, line: str | None) -> str:
    from app.core.plant_overview import SINGLE_PC_HINT, join_hint

    where = f"on line {line!r}" if line is not None else "in this project"
    text = [f"No station has reported {where} yet. A station joins when it runs with a name and its line:",
            f"  {join_hint(project.path)}"]
    if project.database_url is None:
        text.append(SINGLE_PC_HINT)
    return "\n".join(text)


def overview_text(project, overview, line: str | None) -> str:
    from app.core.plant_overview import ago

    parts = []
    if overview.rows:
        parts.append(_table(COLUMNS, [
            [r.status.name, r.status.line, r.status.host or "-", r.model_text(), r.status.shown_state,
             ago(r.seconds_since_seen), r.status.parts_today, r.yield_text(), r.status.buffered, r.note() or "-"]
            for r in overview.rows]))  # fmt: skip
    else:
        parts.append(_no_stations_text(project, line))
    if overview.lines:
        parts.append(_table(("line", "should run", "follows", "stations done"), [
            [x.line, x.target.version if x.target else "-", x.follows, f"{x.done}/{x.total}"]
            for x in overview.lines]))  # fmt: skip
        parts.extend(f"{x.line}: {x.problem}" for x in overview.lines if x.problem)
    if line is None:
        if overview.production_problem:
            parts.append(f"production: {overview.production_problem}")
        elif overview.production is not None:
            parts.append(f"lines without a pin of their own run the production model {overview.production.version}")
        else:
            parts.append("no model in production yet (lineside deploy PROJECT VERSION)")
    return "\n\n".join(parts)


def _show(project, args) -> None:
    from app.core import plant_overview

    overview = plant_overview.read(project, args.line)
    if args.json:
        print(json.dumps(overview_json(project, overview)), flush=True)
        return
    if args.watch and sys.stdout.isatty():
        print("\033[H\033[2J", end="")  # redraw in place, like watch(1)
    print(overview_text(project, overview, args.line), flush=True)


def run_plant(args: argparse.Namespace) -> int:
    from app.core.errors import LinesideError
    from app.core.project import Project

    if args.watch is not None and args.watch <= 0:
        raise LinesideError("--watch needs a number of seconds above 0, e.g. --watch 2.")
    with Project.open(args.project) as project:
        _show(project, args)
        if args.watch is None:
            return 0
        try:
            while True:
                time.sleep(args.watch)
                if not args.json:
                    print()
                _show(project, args)
        except KeyboardInterrupt:  # the way out of --watch, not an error
            return 0


# -- lineside deploy --line ------------------------------------------------------------------


def run_deploy(args: argparse.Namespace, whole_project) -> int:
    from app.core.errors import LinesideError

    if args.line is None:
        if args.follow_production:
            raise LinesideError("--follow-production needs --line LINE: the line that runs production again.")
        if args.version is None:
            raise LinesideError("Say which version to deploy, e.g. lineside deploy PROJECT v3.")
        return whole_project(args)
    if args.follow_production and args.version is not None:
        raise LinesideError(f"Either deploy {args.version} to line {args.line!r} or let it --follow-production, "
                            "not both.")
    if not args.follow_production and args.version is None:
        raise LinesideError(f"Say which version line {args.line!r} should run (lineside deploy PROJECT VERSION "
                            "--line LINE), or --follow-production.")
    return _deploy_to_line(args)


def _deploy_to_line(args: argparse.Namespace) -> int:
    from app.cli.trust import actor_from_args
    from app.core import plant_overview, stations
    from app.core.plant_overview import quoted
    from app.core.project import Project

    with Project.open(args.project) as project:
        actor = actor_from_args(project, args)
        if args.follow_production:
            stations.follow_production(project, args.line, actor)
            goal = stations.target(project, args.line)
            print(f"line {args.line} follows production again ({goal.version if goal else 'no model yet'})")
        else:
            gated = project.model(args.version).status != "production"  # production passed its gate already
            goal = stations.deploy_to_line(project, args.line, args.version, actor,
                                           getattr(args, "override_reason", None))
            gate = project.model(args.version).report.get("deploy_gate") or {}
            if gated and gate.get("n_golden"):
                override = gate.get("override")
                verdict = (f"refuses it; deployed anyway by {override['by'] or 'the single user'}, the reason audited"
                           if override else "passes it")
                print(f"golden set ({gate['n_golden']} parts): the deploy gate {verdict}")
            print(f"line {args.line} is pinned to {goal.version}: its stations load it, the other lines keep "
                  "their model")
        rollout = next((x for x in plant_overview.read(project, args.line).lines if x.line == args.line), None)
    done, total = (rollout.done, rollout.total) if rollout else (0, 0)
    print(f"{done} of {total} stations of line {args.line} run it now; "
          f"watch the roll-out: lineside plant {quoted(args.project)} --line {quoted(args.line)} --watch 2")
    return 0
