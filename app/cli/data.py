"""`lineside new`, `lineside import`, `lineside export-data`: projects and their images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    new = subparsers.add_parser("new", help="create a new, empty project folder")
    new.add_argument("project", help="folder to create (new or empty)")
    new.add_argument("--name", help="name shown in the app (default: the folder name)")
    new.set_defaults(handler=run_new)

    imp = subparsers.add_parser(
        "import",
        help="import a folder of labeled images (class folders, MVTec AD layout, images with their masks "
        "beside them, or another project)",
        description="Import images into a project. Sub-folders are classes ('good', 'ok', 'pass', "
        "'normal' or 'defect-free', any case, hold good parts); optional masks in "
        "masks/<class>/<image stem>.png (or <stem>_mask.png, .bmp, .tif). The MVTec AD layout "
        "(train/good, test/<class>, ground_truth/) is recognised too, with MVTec LOCO's "
        "validation/good and mask folders and masks named as their images (VisA converted to that "
        "layout), its test images kept for evaluation and never trained on; so are images with their masks beside them "
        "(<stem>_GT.png, <stem>_label.bmp: a painted mask makes the part a 'defect', an empty one "
        "OK), and another Lineside project (its images come with their current labels, masks and "
        "splits). Files that cannot be read are listed and skipped; the rest is imported. The same "
        "image under two different labels is listed as a conflict and left unlabeled; labels "
        "already in the project are kept.",
    )
    imp.add_argument("project", help="project folder")
    imp.add_argument("source", help="folder to import")
    imp.set_defaults(handler=run_import)

    exp = subparsers.add_parser(
        "export-data", help="write the labeled images out as class folders (with masks)"
    )
    exp.add_argument("project", help="project folder")
    exp.add_argument("dest", help="new or empty folder to write to")
    exp.set_defaults(handler=run_export_data)


def run_new(args: argparse.Namespace) -> int:
    from app.core.project import Project

    with Project.create(args.project, name=args.name) as project:
        print(f"created project '{project.name}' in {project.path}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from app.core.importer import import_folder
    from app.core.project import HELD_OUT_SPLITS, Project

    with Project.open(args.project) as project:
        report = import_folder(project, args.source)
    for path, reason in report.skipped:
        print(f"skipped {path}: {reason}")
    for conflict in report.conflicts:
        print(f"conflict: {conflict.describe()}")
    for warning in report.warnings:
        print(f"lineside: WARNING {warning}", file=sys.stderr)
    conflicts = f"; {len(report.conflicts)} label conflicts (listed above)" if report.conflicts else ""
    print(
        f"imported {report.added} new images ({report.duplicates} duplicates, "
        f"{len(report.skipped)} skipped) as {report.layout}; "
        f"{report.labeled} labeled, {report.masks} with masks{conflicts}"
    )
    if report.held_out:
        print(f"{report.held_out} of them are in a held-out split ({', '.join(HELD_OUT_SPLITS)}): kept for "
              "evaluation, never trained on" + (f" (measure a model on them: lineside evaluate {args.project} "
                                                f"{Path(args.source) / 'test'})" if report.layout == "mvtec" else ""))
    return 0


def run_export_data(args: argparse.Namespace) -> int:
    from app.core.exporter import MASKS_FOLDER, export_data
    from app.core.project import Project

    with Project.open(args.project) as project:
        counts = export_data(project, args.dest)
    masks = counts.pop(MASKS_FOLDER)
    per_folder = ", ".join(f"{folder} {n}" for folder, n in sorted(counts.items()))
    print(f"exported {sum(counts.values())} images ({masks} masks) to {args.dest}" + (f": {per_folder}" if counts else ""))
    return 0
