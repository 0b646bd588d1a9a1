"""`lineside inspect` and `lineside evaluate`: the line-side verdict from the command line.

This path runs on inspection stations that have no torch installed: only app.core,
ONNX Runtime and OpenCV are imported, and only inside the handlers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from app.core.errors import LinesideError, printable

if TYPE_CHECKING:
    import numpy as np

    from app.core.monitoring import DriftMonitor
    from app.core.project import Project
    from app.core.records import ModelVersion
    from app.core.runtime import Inspector


def __getattr__(name: str):
    # `from app.cli.inspect import HotFolder`: the hot folder is app.core.hotfolder's,
    # imported on use so that `lineside --help` does not load OpenCV.
    if name == "HotFolder":
        from app.core.hotfolder import HotFolder

        return HotFolder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _add_project_and_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("project", type=Path, help="the project folder")
    parser.add_argument("--model", metavar="VERSION", help="a model version instead of the production model")
    parser.add_argument("--threads", type=int, default=1, metavar="N", help="CPU threads for the model (default 1)")


def register(subparsers: argparse._SubParsersAction) -> None:
    inspect = subparsers.add_parser(
        "inspect",
        help="inspect part images with the production model",
        description="Inspect part images with the project's production model; one line per part. "
        "Exit status 0 when every file was inspected, 2 when any could not be read.",
    )
    _add_project_and_model(inspect)
    inspect.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="image files or folders (searched recursively)")
    inspect.add_argument("--watch", metavar="DIR", type=Path, help="inspect image files that appear in DIR until Ctrl+C")
    inspect.add_argument("--max-files", type=int, help=argparse.SUPPRESS)  # lets tests end --watch
    inspect.add_argument("--poll-interval", type=float, default=0.5, help=argparse.SUPPRESS)
    inspect.set_defaults(handler=run_inspect)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="measure a model on a labelled folder",
        description="Measure a model on a folder of labelled images (good/ for OK parts, one folder "
        "per defect class): catch rate and false rejects at the stored threshold with exact 95% "
        "confidence intervals, AUROC, per class; with defect masks (masks/<class>/<stem>.png, or "
        "MVTec AD's ground_truth/) also pixel AUROC and PRO of the heatmaps.",
    )
    _add_project_and_model(evaluate)
    evaluate.add_argument("source", type=Path, help="folder with one sub-folder per class")
    evaluate.add_argument("--json", action="store_true", help="print the full result as JSON")
    evaluate.set_defaults(handler=run_evaluate)


def _image_files(paths: list[Path]) -> list[Path]:
    from app.core.imageio import is_image_file

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p))
        else:
            files.append(path)  # a missing or odd file is reported when it is read
    return files


class _LineSession:
    """One inspection run: inspect, print, record, watch for drift."""

    def __init__(self, project: "Project", inspector: "Inspector", model: "ModelVersion") -> None:
        from app.core.monitoring import DriftMonitor

        self.project, self.inspector, self.model = project, inspector, model
        self.monitor: DriftMonitor = DriftMonitor(inspector.info.reference)
        self.counts = {"PASS": 0, "FAIL": 0, "ERROR": 0}
        self._drifting = False
        self._noted = False  # the range warning was given

    def read(self, path: Path) -> tuple[bytes, "np.ndarray"]:
        """The file's bytes and image; LinesideError (BadImageError) saying why not."""
        from app.core.imageio import decode_image, read_file

        data = read_file(path)
        notes: list[str] = []
        image = decode_image(data, str(path), notes)
        if notes and not self._noted:  # once per run: every part of a camera would repeat it
            self._noted = True
            print(f"lineside: WARNING {printable(path)} has {notes[0]}.", file=sys.stderr, flush=True)
        return data, image

    def inspect_file(self, path: Path) -> None:
        try:
            data, image = self.read(path)
        except LinesideError as exc:
            return self.error(path, exc)
        self.judge(path, data, image)

    def judge(self, path: Path, data: bytes, image: "np.ndarray") -> None:
        from app.core.monitoring import image_stats

        verdict = self.inspector.inspect(image)
        self.counts[verdict.label] += 1
        cls = verdict.defect_class or "-"
        # A file name that is not valid UTF-8 can be neither printed nor stored as it is.
        shown = printable(path)
        print(f"{verdict.label}  {cls}  score={verdict.score:.3f}  {verdict.latency_ms:.1f} ms  {shown}", flush=True)
        sha = hashlib.sha256(data).hexdigest()
        known = self.project.find_image(sha)
        self.project.record_inspection(
            model_version=self.model.version,
            verdict=verdict.label,
            score=verdict.score,
            defect_class=verdict.defect_class,
            latency_ms=verdict.latency_ms,
            source=shown,
            image_id=None if known is None else known.id,
            image_sha=sha,
        )
        self.monitor.update(image_stats(image), verdict.score)
        self._report_drift()

    def error(self, path: Path, exc: LinesideError) -> None:
        self._error(path, str(exc).removeprefix(f"{path}: "))

    def _error(self, path: Path, reason: str) -> None:
        self.counts["ERROR"] += 1
        print(f"ERROR {printable(path)}: {printable(reason)}", flush=True)

    def _report_drift(self) -> None:
        status = self.monitor.status()
        if status["drifting"] and not self._drifting:
            print(f"lineside: WARNING the line drifts from the training images: {'; '.join(status['reasons'])}. "
                  "Check lighting and focus, or label recent parts and retrain.", file=sys.stderr, flush=True)  # fmt: skip
        elif self._drifting and not status["drifting"]:
            print("lineside: the line is back within the training range.", file=sys.stderr, flush=True)
        self._drifting = status["drifting"]

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        c = self.counts
        parts = c["PASS"] + c["FAIL"]
        errors = f", {c['ERROR']} unreadable" if c["ERROR"] else ""
        return (
            f"{parts} part{'' if parts == 1 else 's'} inspected: {c['PASS']} PASS, {c['FAIL']} FAIL{errors} "
            f"(model {self.model.version})"
        )


def _open(args: argparse.Namespace) -> tuple["Project", "Inspector", "ModelVersion"]:
    from app.core.project import Project
    from app.core.runtime import load_inspector_for_project

    project = Project.open(args.project)
    try:
        inspector, model = load_inspector_for_project(project, args.model, threads=args.threads)
    except BaseException:
        project.close()
        raise
    return project, inspector, model


def _watch(session: _LineSession, folder: Path, interval: float, max_files: int | None) -> None:
    """Judge every new (or rewritten) image in *folder* once it is completely written.

    A file that does not decode is waited for while it changes (a slow writer); it is
    reported unreadable only once it has sat unchanged for the hot folder's settle time.
    """
    from app.core.hotfolder import HotFolder

    try:
        hot = HotFolder(folder)
    except LinesideError as exc:
        raise LinesideError(f"{printable(folder)}: the folder to watch does not exist.") from exc
    print(f"lineside: watching {printable(folder)} for new images (Ctrl+C to stop)", file=sys.stderr, flush=True)
    while max_files is None or session.done < max_files:
        try:
            ready = hot.poll()
        except OSError as exc:
            raise LinesideError(f"{printable(folder)}: the watched folder cannot be read "
                                f"({exc.strerror or exc}).") from exc
        for path in ready:
            try:
                data, image = session.read(path)
            except LinesideError as exc:
                if hot.unreadable(path):
                    session.error(path, exc)
            else:
                session.judge(path, data, image)
            if max_files is not None and session.done >= max_files:
                return
        time.sleep(interval)


def run_inspect(args: argparse.Namespace) -> int:
    if not args.paths and args.watch is None:
        raise LinesideError("nothing to inspect: give image files or folders, or --watch DIR.")
    project, inspector, model = _open(args)
    with project:
        session = _LineSession(project, inspector, model)
        inspector.warmup()  # the first part's latency should be the line's, not the allocator's
        try:
            for path in _image_files(args.paths):
                session.inspect_file(path)
            if args.watch is not None:
                _watch(session, args.watch, args.poll_interval, args.max_files)
        except KeyboardInterrupt:  # the way to end --watch; not an error
            pass
        print(session.summary(), file=sys.stderr)
    return 2 if session.counts["ERROR"] else 0


def run_evaluate(args: argparse.Namespace) -> int:
    from app.core.evaluation import evaluate_folder

    project, inspector, model = _open(args)
    with project:
        show_progress = sys.stderr.isatty() and not args.json

        def progress(done: int, total: int) -> None:
            if show_progress:
                print(f"\r{done}/{total} images", end="" if done < total else "\n", file=sys.stderr, flush=True)

        result = evaluate_folder(inspector, args.source, on_progress=progress)
    result["model_version"] = model.version
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_report(result))
    return 0


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _with_ci(rate: float | None, ci: list[float] | None, confidence: float | None) -> str:
    """'12.5% (95% CI 3.1-52.7%)'; the interval is left out where there is none."""
    if ci is None or confidence is None:
        return _pct(rate)
    return f"{_pct(rate)} ({confidence * 100:g}% CI {ci[0] * 100:.1f}-{ci[1] * 100:.1f}%)"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _headline(result: dict) -> list[str]:
    """The line's figures first: what the stored threshold does, with how sure we are;
    then what the model could do with a threshold picked on these very images."""
    conf = result.get("ci_confidence")
    caught = _with_ci(result["catch_rate"], result.get("catch_rate_ci"), conf)
    rejected = _with_ci(result["false_reject_rate"], result.get("false_reject_rate_ci"), conf)
    lines = [
        f"  at the stored threshold {result['threshold']:.3f}: caught {caught} of {result['n_defect']} defective, "
        f"false reject {rejected} of {result['n_ok']} OK",
        f"  AUROC                        {_score(result['auroc'])}",
        "  best case (threshold picked on these images): catch at 1% false reject "
        f"{_pct(result['catch_at_1pct_false_reject'])}",
    ]
    if result.get("pixel_auroc") is not None or result.get("pro") is not None:
        lines.append(
            f"  pixel AUROC                  {_score(result.get('pixel_auroc'))}  "
            f"PRO (to 30% FPR) {_score(result.get('pro'))}  ({_count(result.get('n_masks', 0), 'mask')})"
        )
    lines.append(f"  mode                         {result.get('mode', 'supervised')}")
    return lines


def format_report(result: dict) -> str:
    """The evaluate_folder result as a short text report for the terminal."""
    lines = [
        f"Model {result['model_version']} on {result['source']}: {result['n_images']} images "
        f"({result['n_ok']} OK, {result['n_defect']} defective)",
        *_headline(result),
        f"  latency per part             {result['latency_ms_p50']:.1f} ms (p95 {result['latency_ms_p95']:.1f} ms)",
        "  per class:",
    ]
    for cls, row in result["per_class"].items():
        verb = "rejected" if cls == "ok" else "caught"
        seen_as = ", ".join(f"{name} {n}" for name, n in sorted(row["classified_as"].items(), key=lambda kv: -kv[1]))
        lines.append(f"    {cls:<14} n={row['n']:<5} {verb:<8} {_pct(row['caught']):>8}   seen as: {seen_as}")
    for skipped in result["skipped"]:
        lines.append(f"  skipped {skipped['path']}: {skipped['reason']}")
    return "\n".join(lines)
