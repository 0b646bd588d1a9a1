"""`lineside train` and `lineside demo`: the trainer, run headless.

torch is imported inside the handlers only: a station edition without the training
extra still lists these commands and answers with a clear message.
"""

from __future__ import annotations

import argparse
import math
import threading
from pathlib import Path

from app.cli.signals import SignalStop
from app.core.errors import LinesideError

EXIT_CANCELLED = 3
MAX_SEED = 2**32 - 1  # numpy's generators take seeds below 2**32


def register(sub) -> None:
    p = sub.add_parser("train", help="fine-tune a new candidate model on the project's labeled images")
    p.add_argument("project", type=Path)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--epochs", type=_epochs, default=None,
                   help="at most this many passes, 1 or more (early stopping may stop sooner)")
    p.add_argument("--time-budget", type=_seconds, default=None, metavar="SECONDS",
                   help="stop before an epoch that would not finish within this time (seconds, more than 0)")
    p.add_argument("--seed", type=_seed, default=0, help=f"random seed, 0 to {MAX_SEED} (default 0)")
    p.add_argument("--mode", choices=["auto", "supervised", "good-only", "combined"], default="auto",
                   help="auto (default) picks from the labels: supervised from 10 labeled defects on (plus the "
                        "anomaly score where that catches more validation defects, or the anomaly model alone where "
                        "that catches more than supervised and no fewer than both together), else good-only (learns "
                        "what OK parts look like); combined = supervised + anomaly score")
    p.add_argument("--false-reject-target", type=_rate, default=None, metavar="RATE",
                   help="share of OK parts the line may reject, e.g. 0.01 (default: the project's setting, else 0.01)")
    p.add_argument("--progress", choices=["text", "json"], default="text",
                   help="json: one JSON object per line on stdout, for the desktop app")
    p.set_defaults(handler=run_train)

    d = sub.add_parser("demo", help="generate a demo project of synthetic parts, train it and inspect a fresh batch")
    d.add_argument("directory", type=Path, nargs="?", default=None)
    d.add_argument("--epochs", type=_epochs, default=None, help="training passes for the demo model, 1 or more")
    d.add_argument("--prepare-only", action="store_true", help="build the demo project, do not inspect")
    d.set_defaults(handler=run_demo)


def _epochs(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: the number of epochs must be 1 or more")
    return value


def _seed(text: str) -> int:
    value = _integer(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{text}: the seed must be a whole number from 0 to {MAX_SEED}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    # float() accepts 'nan' and 'inf': a budget that never compares true would never stop.
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text}: the time budget must be a number of seconds above 0, e.g. 600")
    return value


def _rate(text: str) -> float:
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not (math.isfinite(value) and 0 < value < 0.5):
        raise argparse.ArgumentTypeError(f"{text}: a false-reject rate between 0 and 0.5 (e.g. 0.01 for 1 %)")
    return value


def _import_trainer():
    try:
        from training import pipeline
    except ImportError as exc:
        raise LinesideError(
            "Training is not installed in this edition of Lineside (the station edition only inspects). "
            "Train on a workstation and copy the project, or install the 'train' extra.") from exc
    return pipeline


def run_train(args) -> int:
    from app.cli.train_events import json_event, text_event

    emit = json_event if args.progress == "json" else text_event
    cancel = threading.Event()  # checked every batch; the loop unwinds cleanly
    with SignalStop(cancel):
        return _train(args, emit, cancel)


def _train(args, emit, cancel: threading.Event) -> int:
    try:
        pipeline = _import_trainer()
        from training.loop import Cancelled

        try:
            pipeline.train_project(args.project, epochs=args.epochs, time_budget_s=args.time_budget,
                                   device=args.device, seed=args.seed, mode=args.mode,
                                   false_reject_target=args.false_reject_target,
                                   on_event=emit, should_stop=cancel.is_set)
        except Cancelled:
            emit({"event": "cancelled"}) if args.progress == "json" else print("training cancelled; nothing was saved")
            return EXIT_CANCELLED
    except LinesideError as exc:
        if args.progress == "json":
            emit({"event": "error", "message": str(exc)})
        raise
    return 0


def run_demo(args) -> int:
    from app.cli.demo import run_demo_command

    return run_demo_command(args.directory, epochs=args.epochs, prepare_only=args.prepare_only)

