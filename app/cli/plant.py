"""`lineside new --db`, `lineside migrate-schema`, `lineside copy --to-db`: plant stores.

A plant store keeps a project's database on a PostgreSQL server (docs/adr/0009); the
folder keeps the images and models. psycopg is imported only by these handlers and
when such a project is opened.
"""

from __future__ import annotations

import argparse
import functools
import sys

URL_HELP = ("PostgreSQL URL, postgresql+psycopg://USER@HOST[:PORT]/DATABASE, without a password "
            "(PGPASSWORD or the user's pgpass file supplies it)")


def register(subparsers: argparse._SubParsersAction) -> None:
    # `new` itself lives in app.cli.data; a plant store is one more option of it, and
    # the plain handler still serves every project without --db.
    new = subparsers.choices.get("new")
    if new is not None:
        new.add_argument("--db", metavar="URL", help=f"keep the database on a PostgreSQL server: {URL_HELP}")
        new.set_defaults(handler=functools.partial(run_new, plain=new.get_default("handler")))

    migrate = subparsers.add_parser(
        "migrate-schema", help="upgrade a project's database to this Lineside's schema",
        description="Upgrade the project's database (project.db or the plant database) to the schema this "
        "Lineside uses, in one transaction. A plant store is upgraded only by this command: stop the "
        "stations that use it first. (A project.db is also upgraded when it is opened.)",
    )
    migrate.add_argument("project", help="project folder")
    migrate.set_defaults(handler=run_migrate_schema)

    copy = subparsers.add_parser(
        "copy", help="copy a project into a plant store (a new folder and a PostgreSQL database)",
        description="Copy every table row (ids kept), image, mask and model of PROJECT into the new folder "
        "DEST, whose database is the empty PostgreSQL database URL. The source is only read. Row counts "
        "and image hashes are checked and printed; a copy that fails leaves nothing behind.",
    )
    copy.add_argument("project", help="project folder to copy (project.db or a plant store)")
    copy.add_argument("--to-db", required=True, metavar="URL", help=URL_HELP)
    copy.add_argument("dest", help="new or empty folder for the copy")
    copy.set_defaults(handler=run_copy)


def run_new(args: argparse.Namespace, plain) -> int:
    if args.db is None:
        return plain(args)
    from app.core.project import Project

    with Project.create(args.project, name=args.name, database=args.db) as project:
        print(f"created project '{project.name}' in {project.path}; its database is {project.database_url}")
    return 0


def run_migrate_schema(args: argparse.Namespace) -> int:
    from app.core.project import Project

    before, after = Project.migrate_schema(args.project)
    if before == after:
        print(f"{args.project}: the database is at schema {after} already; nothing to do")
    else:
        print(f"{args.project}: the database was upgraded from schema {before} to {after}")
    return 0


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def run_copy(args: argparse.Namespace) -> int:
    from app.core.plant_copy import copy_to_server

    report = copy_to_server(args.project, args.to_db, args.dest, progress=lambda line: print(f"  {line}"))
    print(f"copied {args.project} to {report.dest}; its database is {report.database}")
    print("rows (the same in both databases): " + ", ".join(f"{t} {n}" for t, n in report.rows.items()))
    print(f"files: {report.files} ({_megabytes(report.bytes)}), each read back and compared")
    print(f"image hashes: {report.images_ok} of {report.images_checked} match; "
          f"mask hashes: {report.masks_ok} of {report.masks_checked} match")
    for warning in report.warnings:
        print(f"lineside: WARNING {warning}", file=sys.stderr)
    return 0
