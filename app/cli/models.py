"""`lineside models`, `lineside deploy`, `lineside export`: trained model versions."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from app.core.operating_point import threshold_text

if TYPE_CHECKING:
    from app.core.project import Project
    from app.core.records import ModelVersion

# (metrics key, column title, shown as a percentage)
METRIC_COLUMNS = (("auroc", "AUROC", False), ("catch_rate", "catch rate", True), ("false_reject_rate", "false rejects", True))


def register(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser("models", help="list the trained model versions of a project")
    models.add_argument("project", help="project folder")
    models.set_defaults(handler=run_models)

    deploy = subparsers.add_parser("deploy", help="put a model version into production")
    deploy.add_argument("project", help="project folder")
    # Optional only for `--line LINE --follow-production` (app/cli/plant_view.py), which names none.
    deploy.add_argument("version", nargs="?", help="model version, e.g. v3")
    deploy.set_defaults(handler=run_deploy)

    export = subparsers.add_parser("export", help="copy a model's ONNX file out of the project")
    export.add_argument("project", help="project folder")
    export.add_argument("out", help="ONNX file to write, e.g. line3.onnx")
    export.add_argument("--model", metavar="VERSION", help="version to export (default: production, else newest)")
    export.set_defaults(handler=run_export)


def _metric(metrics: dict, key: str, percent: bool) -> str:
    value = metrics.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-" if value is None else str(value)
    return f"{value:.1%}" if percent else f"{value:.3f}"


def _row(model: "ModelVersion") -> list[str]:
    n_train = model.report.get("n_train")
    return [
        model.version,
        model.status,
        model.created_at.astimezone().strftime("%Y-%m-%d %H:%M"),
        threshold_text(model.threshold),
        *(_metric(model.metrics, key, percent) for key, _, percent in METRIC_COLUMNS),
        "-" if n_train is None else str(n_train),
    ]


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [header, *rows])


def run_models(args: argparse.Namespace) -> int:
    from app.core.project import Project

    with Project.open(args.project) as project:
        models = project.models()
    if not models:
        print("no trained models yet")
        return 0
    header = ["version", "status", "created", "threshold", *(title for _, title, _ in METRIC_COLUMNS), "train images"]
    print(format_table(header, [_row(m) for m in models]))
    return 0


def run_deploy(args: argparse.Namespace) -> int:
    from app.core.errors import LinesideError
    from app.core.project import Project

    if args.version is None:
        raise LinesideError("Say which version to deploy, e.g. lineside deploy PROJECT v3.")
    with Project.open(args.project) as project:
        before = project.production_model()
        deployed = project.deploy(args.version)
    if before is not None and before.version == deployed.version:
        print(f"{deployed.version} was already in production")
    elif before is not None:
        print(f"{deployed.version} is now in production; {before.version} was retired")
    else:
        print(f"{deployed.version} is now in production")
    return 0


def _model_to_export(project: "Project", version: str | None) -> "ModelVersion":
    from app.core.errors import LinesideError

    if version:
        return project.model(version)
    chosen = project.production_model() or next(iter(project.models()), None)
    if chosen is None:
        raise LinesideError(f"The project {project.path} has no trained models to export; train one first.")
    return chosen


def run_export(args: argparse.Namespace) -> int:
    from app.core.atomic import copy_file
    from app.core.errors import LinesideError, ModelFileError
    from app.core.project import Project

    with Project.open(args.project) as project:
        model = _model_to_export(project, args.model)
    source = model.onnx_path
    if not source.is_file():
        raise ModelFileError(f"{source} is missing; model {model.version} cannot be exported.")
    try:
        copy_file(source, args.out)
    except OSError as exc:  # a full disk arrives as DiskFullError, the old file intact
        raise LinesideError(f"{args.out}: cannot be written ({exc.strerror or exc}).") from exc
    print(f"exported model {model.version} ({model.status}) to {args.out}")
    return 0
