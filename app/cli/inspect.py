"""`lineside inspect` and `lineside evaluate`: the line-side verdict from the command line.

This path runs on inspection stations that have no torch installed: only app.core,
ONNX Runtime and OpenCV are imported, and only inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from app.core.errors import LinesideError, printable
from app.core.operating_point import threshold_text

if TYPE_CHECKING:
    from app.core.line_session import PartResult
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
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for the model (default: what `lineside bench` chose for this project, else 1)")


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
        description="Measure a model on a folder of labelled images, read as `import` reads it (good/ "
        "for OK parts and one folder per defect class; an MVTec AD test folder; images with their "
        "masks beside them): catch rate and false rejects at the stored threshold with exact 95% "
        "confidence intervals, AUROC, per class; with defect masks (masks/<class>/<stem>.png, "
        "MVTec AD's ground_truth/, <stem>_GT.png) also pixel AUROC and PRO of the heatmaps. Warns "
        "when the folder holds parts the model was built from.",
    )
    _add_project_and_model(evaluate)
    evaluate.add_argument("source", type=Path, help="labelled folder (one sub-folder per class, or as import reads it)")
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


class _Printer:
    """`lineside inspect`'s output: a listener of the line session (app.core.line_session).

    One line per part on stdout, printed once the result is in the project (on_committed),
    in the order the parts were taken, an unreadable file's ERROR line in its place among
    them; drift and pixel-range warnings on stderr.
    """

    HEARS = ("on_state", "on_model", "on_result", "on_part_failed", "on_committed", "on_drift", "on_error")

    def __init__(self) -> None:
        self.counts = {"PASS": 0, "FAIL": 0, "ERROR": 0}
        self.model_version: str | None = None
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self._waiting: deque[list] = deque()  # [seq, text or None] in the order parts were taken
        self._drifting = False
        self._noted = False

    # -- the session's listener ---------------------------------------------------------

    def on_state(self, state: str) -> None:
        if state.startswith("connected"):
            self.connected.set()

    def on_model(self, version: str | None) -> None:
        self.model_version = version

    def on_result(self, result: "PartResult") -> None:
        with self._lock:
            self._waiting.append([result.seq, None])

    def on_part_failed(self, frames: list, message: str) -> None:
        frame = next((f for f in frames if f.error is not None), frames[0])
        path = frame.path if frame.path is not None else frame.source
        reason = frame.error if frame.error is not None else message
        with self._lock:
            self.counts["ERROR"] += 1
            self._waiting.append([None, f"ERROR {printable(path)}: {printable(reason)}"])
            self._flush()

    def on_committed(self, results: list["PartResult"]) -> None:
        texts = {r.seq: self._line(r) for r in results}
        with self._lock:
            for entry in self._waiting:
                if entry[0] in texts:
                    entry[1] = texts[entry[0]]
            for result in results:
                self.counts[result.label] += 1
            self._flush()

    def on_drift(self, status: dict) -> None:
        if status["drifting"] and not self._drifting:
            print(f"lineside: WARNING the line drifts from the training images: {'; '.join(status['reasons'])}. "
                  "Check lighting and focus, or label recent parts and retrain.", file=sys.stderr, flush=True)  # fmt: skip
        elif self._drifting and not status["drifting"]:
            print("lineside: the line is back within the training range.", file=sys.stderr, flush=True)
        self._drifting = status["drifting"]

    def on_error(self, code: int, message: str) -> None:
        from app.core.plc.signals import ErrorCode

        # A part that failed has its ERROR line; a model that cannot load is the command's error.
        if code not in (ErrorCode.INSPECTION_FAILED, ErrorCode.MODEL_NOT_AVAILABLE):
            print(f"lineside: WARNING {printable(message)}", file=sys.stderr, flush=True)

    def on_note(self, path: Path, note: str) -> None:
        if not self._noted:  # once per run: every part of a camera would repeat it
            self._noted = True
            print(f"lineside: WARNING {printable(path)} has {note}.", file=sys.stderr, flush=True)

    # -- output -------------------------------------------------------------------------

    @staticmethod
    def _line(result: "PartResult") -> str:
        verdict = result.verdicts[0]
        # A file name that is not valid UTF-8 can be neither printed nor stored as it is.
        return (f"{result.label}  {result.defect_class or '-'}  score={result.score:.3f}  "
                f"{verdict.latency_ms:.1f} ms  {result.source}")

    def _flush(self) -> None:
        while self._waiting and self._waiting[0][1] is not None:
            print(self._waiting.popleft()[1], flush=True)

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        c = self.counts
        parts = c["PASS"] + c["FAIL"]
        errors = f", {c['ERROR']} unreadable" if c["ERROR"] else ""
        return (
            f"{parts} part{'' if parts == 1 else 's'} inspected: {c['PASS']} PASS, {c['FAIL']} FAIL{errors} "
            f"(model {self.model_version})"
        )


def _run_session(project: "Project", source, printer: _Printer, args: argparse.Namespace,
                 max_parts: int | None, on_started=None) -> None:
    """Judge what *source* delivers with a line session until *max_parts* (or Ctrl+C)."""
    from app.core.line_session import CallbackListener, LineSession

    listener = CallbackListener(**{name: getattr(printer, name) for name in _Printer.HEARS})
    store_errors: list[str] = []
    watcher = CallbackListener(on_error=lambda code, message: store_errors.append(message))
    session = LineSession(project, [source], [listener, watcher], model=args.model, threads=args.threads,
                          max_parts=max_parts)
    session.start()  # LinesideError when the model cannot be loaded
    try:
        if on_started is not None:
            on_started()
        while not session.wait(0.2):
            pass
    finally:
        session.stop()  # every result judged is committed and printed
    judged = session.counters.parts
    if session.committed < judged:  # results that could not be saved (a damaged or full store)
        raise LinesideError(
            f"{judged - session.committed} of {judged} parts were judged but could not be saved: "
            f"{store_errors[-1] if store_errors else 'the project store refused them'}")


def run_inspect(args: argparse.Namespace) -> int:
    from app.core.hotfolder import HotFolderSource
    from app.core.line_sources import FileListSource
    from app.core.project import Project

    if not args.paths and args.watch is None:
        raise LinesideError("nothing to inspect: give image files or folders, or --watch DIR.")
    watch = args.watch
    if watch is not None and not watch.is_dir():
        raise LinesideError(f"{printable(watch)}: the folder to watch does not exist.")
    printer = _Printer()
    with Project.open(args.project) as project:
        try:
            files = _image_files(args.paths)
            if files:
                _run_session(project, FileListSource(files, on_note=printer.on_note), printer, args, len(files))
            left = None if args.max_files is None else args.max_files - printer.done
            if watch is not None and (left is None or left > 0):
                source = HotFolderSource(watch, poll_s=args.poll_interval, per_file=True, on_note=printer.on_note)

                def say_watching() -> None:  # once the folder is opened: files from now on are parts
                    printer.connected.wait(10)
                    print(f"lineside: watching {printable(watch)} for new images (Ctrl+C to stop)",
                          file=sys.stderr, flush=True)

                _run_session(project, source, printer, args, left, on_started=say_watching)
        except KeyboardInterrupt:  # the way to end --watch; not an error
            pass
        print(printer.summary(), file=sys.stderr)
    return 2 if printer.counts["ERROR"] else 0


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


def seen_warning(result: dict) -> str | None:
    """One sentence when some evaluated images are ones the model was built from."""
    seen = result.get("seen_in_training") or {}
    if not seen.get("n"):
        return None
    return (f"{seen['n']} of the {result['n_images']} images were in model {result['model_version']}'s training "
            f"set ({seen['train']} in its training split, {seen['val']} in its validation split, which chose its "
            "threshold, epoch or mode), e.g. "
            f"{seen['examples'][0]}: these figures may be better than the line gets on new parts. "
            "Evaluate on parts the model never saw.")


def run_evaluate(args: argparse.Namespace) -> int:
    from app.core.evaluation import evaluate_folder, training_set_of

    project, inspector, model = _open(args)
    with project:
        show_progress = sys.stderr.isatty() and not args.json

        def progress(done: int, total: int) -> None:
            if show_progress:
                print(f"\r{done}/{total} images", end="" if done < total else "\n", file=sys.stderr, flush=True)

        result = evaluate_folder(inspector, args.source, on_progress=progress,
                                 training_set=training_set_of(model.path))
    result["model_version"] = model.version
    warning = seen_warning(result)
    if warning:
        print(f"lineside: WARNING {warning}", file=sys.stderr)
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
        f"  at the stored threshold {threshold_text(result['threshold'])}: caught {caught} of {result['n_defect']} defective, "
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
    warning = seen_warning(result)
    lines = [
        f"Model {result['model_version']} on {result['source']}: {result['n_images']} images "
        f"({result['n_ok']} OK, {result['n_defect']} defective)",
        *_headline(result),
        *([f"  WARNING: {warning}"] if warning else []),
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
