"""`lineside audit`, `lineside people`, `lineside golden`, `lineside report`: what a
quality manager asks before a model decides about parts.

Also gives `lineside deploy` its `--user` and `--override-reason` options (this module
registers after app.cli.models and extends its deploy command): deploying needs an
engineer once a project has people, and the check itself is in the core
(app/core/people.py), so no front end can skip it.

Who is acting: `--user NAME` (or LINESIDE_USER); the PIN comes from a prompt, or from
LINESIDE_PIN for scripts. A new person's PIN (people add / pin): a prompt asked twice,
or LINESIDE_NEW_PIN (LINESIDE_PIN when nobody needs to sign in, e.g. the first engineer).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.core.project import Project

USER_ENV, PIN_ENV, NEW_PIN_ENV = "LINESIDE_USER", "LINESIDE_PIN", "LINESIDE_NEW_PIN"
BROKEN_EXIT = 3


def add_user_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", metavar="NAME", default=None,
                        help=f"who is doing this (needed once the project has people; default ${USER_ENV}); "
                             f"the PIN is asked for, or taken from ${PIN_ENV}")


def register(subparsers: argparse._SubParsersAction) -> None:
    audit = subparsers.add_parser("audit", help="list the project's audit trail, or check it was not tampered with")
    audit.add_argument("project", help="project folder")
    audit.add_argument("--verify", action="store_true", help="check the hash chain; exit 3 naming the first broken entry")
    audit.add_argument("--limit", type=int, default=None, metavar="N", help="only the newest N entries")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    audit.set_defaults(handler=run_audit)

    ppl = subparsers.add_parser("people", help="who may do what: engineers and operators, each with a PIN")
    ppl.add_argument("project", help="project folder")
    add_user_argument(ppl)
    psub = ppl.add_subparsers(dest="people_command", metavar="ACTION", required=True)
    add = psub.add_parser("add", help="add a person (the first engineer switches roles on)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["engineer", "operator"])
    psub.add_parser("list", help="list the people and their roles")
    role = psub.add_parser("role", help="change a person's role")
    role.add_argument("name")
    role.add_argument("role", choices=["engineer", "operator"])
    remove = psub.add_parser("remove", help="take a person's access away (the audit trail keeps their name)")
    remove.add_argument("name")
    pin = psub.add_parser("pin", help="set a new PIN for a person")
    pin.add_argument("name")
    ppl.set_defaults(handler=run_people)

    gold = subparsers.add_parser("golden", help="the golden set: trusted parts every deploy is checked on")
    gold.add_argument("project", help="project folder")
    add_user_argument(gold)
    gsub = gold.add_subparsers(dest="golden_command", metavar="ACTION", required=True)
    gadd = gsub.add_parser("add", help="make labeled images (not in the training split) golden")
    gadd.add_argument("image_ids", nargs="+", type=int, metavar="IMAGE_ID")
    grem = gsub.add_parser("remove", help="take images out of the golden set")
    grem.add_argument("image_ids", nargs="+", type=int, metavar="IMAGE_ID")
    prop = gsub.add_parser("propose", help="pick a balanced golden set of N parts (OK and each defect class)")
    prop.add_argument("n", type=int)
    prop.add_argument("--dry-run", action="store_true", help="only show the proposal")
    gsub.add_parser("list", help="list the golden parts")
    check = gsub.add_parser("check", help="run the deploy gate for a version without deploying")
    check.add_argument("version")
    gold.set_defaults(handler=run_golden)

    rep = subparsers.add_parser("report", help="the model report (HTML; PDF needs the app's Qt)")
    rep.add_argument("project", help="project folder")
    rep.add_argument("version", help="model version, e.g. v3")
    rep.add_argument("--html", metavar="OUT.html", help="write the report as HTML")
    rep.add_argument("--pdf", metavar="OUT.pdf", help="write the report as PDF")
    rep.set_defaults(handler=run_report)

    deploy = subparsers.choices.get("deploy")
    if deploy is not None:  # registered by app.cli.models
        add_user_argument(deploy)
        deploy.add_argument("--override-reason", metavar="TEXT", default=None,
                            help="deploy although the golden-set gate refuses (an engineer; the reason is audited)")
        deploy.set_defaults(handler=run_deploy)


# -- who is acting ------------------------------------------------------------------------


def read_pin(prompt: str, env: str = PIN_ENV) -> str:
    pin = os.environ.get(env)
    if pin is not None:
        return pin
    from app.core.errors import LinesideError

    if not sys.stdin.isatty():
        raise LinesideError(f"A PIN is needed: run this in a terminal, or set {env} for a script.")
    return getpass.getpass(prompt)


def actor_from_args(project: "Project", args: argparse.Namespace):
    """The signed-in person (PIN checked, audited) when the project has roles; else the
    --user name as given (or None)."""
    from app.core import people

    name = getattr(args, "user", None) or os.environ.get(USER_ENV)
    if not people.roles_enabled(project):
        return name or None
    if not name:
        return None  # the core says what is needed
    return people.sign_in(project, name, read_pin(f"PIN for {name}: "))


def _new_pin(name: str, signed_in: bool) -> str:
    pin = os.environ.get(NEW_PIN_ENV) or (None if signed_in else os.environ.get(PIN_ENV))
    if pin is not None:
        return pin
    from app.core.errors import LinesideError

    if not sys.stdin.isatty():
        raise LinesideError(f"A PIN for {name} is needed: run this in a terminal, or set {NEW_PIN_ENV}.")
    first = getpass.getpass(f"new PIN for {name}: ")
    if getpass.getpass("the same PIN again: ") != first:
        raise LinesideError("The two PINs differ; nothing was changed.")
    return first


# -- handlers -----------------------------------------------------------------------------


def run_audit(args: argparse.Namespace) -> int:
    from app.core import audit
    from app.core.project import Project

    with Project.open(args.project) as project:
        if args.verify:
            result = audit.verify(project)
            if not result.intact:
                bar = "!" * 72
                print(f"{bar}\n{result.describe()}\nThe trail of {project.path} cannot be trusted from entry "
                      f"{result.broken_id} on. Keep a copy of project.db as it is and report it.\n{bar}",
                      file=sys.stderr)
                return BROKEN_EXIT
        entries = audit.entries(project, limit=args.limit)
    for entry in entries:
        if args.json:
            print(json.dumps({"id": entry.id, "at": entry.at, "actor": entry.actor, "action": entry.action,
                              "what": entry.what, "hash": entry.hash}))
        else:
            when = entry.when.astimezone().strftime("%Y-%m-%d %H:%M:%S")
            print(f"{entry.id:>6}  {when}  {entry.actor or '-':<14} {entry.action:<22} "
                  f"{json.dumps(entry.what, sort_keys=True)}")
    if args.verify:
        print(result.describe())
    elif not entries:
        print("the audit trail is empty")
    return 0


def run_people(args: argparse.Namespace) -> int:
    from app.core import people
    from app.core.project import Project

    with Project.open(args.project) as project:
        if args.people_command == "list":
            everyone = people.people(project)
            print(people.roles_mark(project))
            for person in everyone:
                print(f"{person.name:<24} {person.role}")
            return 0
        actor = actor_from_args(project, args)
        if args.people_command == "add":
            person = people.add_person(project, args.name, args.role,
                                       _new_pin(args.name, signed_in=people.roles_enabled(project)), actor)
            print(f"added {person.name} as {person.role}")
            if person.is_engineer and len([p for p in people.people(project) if p.is_engineer]) == 1:
                print("roles are now enforced in this project: deploying needs an engineer (--user NAME)")
        elif args.people_command == "role":
            person = people.set_role(project, args.name, args.role, actor)
            print(f"{person.name} is now {person.role}")
        elif args.people_command == "remove":
            people.remove_person(project, args.name, actor)
            print(f"{args.name} can no longer sign in")
        elif args.people_command == "pin":
            people.set_pin(project, args.name, _new_pin(args.name, signed_in=True), actor)
            print(f"new PIN set for {args.name}")
    return 0


def _print_gate(gate: dict, quiet_when_empty: bool = False) -> None:
    if not gate["n_golden"] and quiet_when_empty:
        return  # a project without a golden set deploys as it always did
    if gate.get("note"):
        print(f"golden set: {gate['note']}")
    if not gate["n_golden"]:
        return
    line = (f"golden set ({gate['n_golden']} parts: {gate['n_ok']} OK, {gate['n_defect']} defective): "
            f"{gate['candidate']} misses {gate['candidate_missed']}, rejects {gate['candidate_false_rejects']} OK")
    if gate.get("production"):
        line += (f"; {gate['production']} misses {gate['production_missed']}, "
                 f"rejects {gate['production_false_rejects']} OK")
    print(line)
    for reason in gate["reasons"]:
        print(f"  gate: {gate['candidate']} {reason}")
    if gate.get("override"):
        print(f"  overridden by {gate['override']['by'] or 'the single user'}: {gate['override']['reason']}")


def run_golden(args: argparse.Namespace) -> int:
    from app.core import golden
    from app.core.project import Project

    with Project.open(args.project) as project:
        command = args.golden_command
        if command == "list":
            parts = golden.golden_parts(project)
            for record, label in parts:
                print(f"{record.id:>6}  {label.verdict:<16} {record.filename}")
            print(f"{len(parts)} golden parts")
            return 0
        if command == "check":
            gate = golden.run_gate(project, project.model(args.version))
            _print_gate(gate)
            print("gate: passes" if gate["passed"] else "gate: REFUSES")
            return 0 if gate["passed"] else 1
        if command == "propose":
            ids = golden.propose(project, args.n)
            if not ids:
                print("no labeled parts outside the training split to propose")
                return 0
            if args.dry_run:
                for image_id in ids:
                    label = project.label(image_id)
                    print(f"{image_id:>6}  {label.verdict if label else '-'}")
                print(f"{len(ids)} parts proposed (nothing changed: --dry-run)")
                return 0
        else:
            ids = args.image_ids
        actor = actor_from_args(project, args)
        if command == "remove":
            removed = golden.unmark_golden(project, ids, actor)
            print(f"{len(removed)} parts taken out of the golden set")
        else:
            added = golden.mark_golden(project, ids, actor)
            counts: dict[str, int] = {}
            for image_id in added:
                verdict = project.label(image_id).verdict
                counts[verdict] = counts.get(verdict, 0) + 1
            detail = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
            print(f"{len(added)} parts added to the golden set" + (f" ({detail})" if detail else ""))
    return 0


def run_deploy(args: argparse.Namespace) -> int:
    from app.core.project import Project

    with Project.open(args.project) as project:
        before = project.production_model()
        actor = actor_from_args(project, args)
        deployed = project.deploy(args.version, actor=actor, override_reason=args.override_reason)
    gate = deployed.report.get("deploy_gate")
    if before is not None and before.version == deployed.version:
        print(f"{deployed.version} was already in production")
        return 0
    if gate:
        _print_gate(gate, quiet_when_empty=True)
    if before is not None:
        print(f"{deployed.version} is now in production; {before.version} was retired")
    else:
        print(f"{deployed.version} is now in production")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from app.core.errors import LinesideError
    from app.core.project import Project
    from app.core.report import build_report

    if not args.html and not args.pdf:
        raise LinesideError("Say where to write the report: --html OUT.html and/or --pdf OUT.pdf.")
    with Project.open(args.project) as project:
        html = build_report(project, args.version)
    if args.html:
        from app.core.atomic import write_text

        write_text(Path(args.html), html)
        print(f"wrote {args.html}")
    if args.pdf:
        try:
            from app.ui.models.report_pdf import html_to_pdf  # Qt: the station and workstation apps have it
        except ImportError as exc:
            raise LinesideError(f"A PDF needs Qt (PySide6), which this installation lacks ({exc}); "
                                "write --html and print it from a browser.") from exc
        pages = html_to_pdf(html, Path(args.pdf))
        print(f"wrote {args.pdf} ({pages} pages)")
    return 0
