"""`lineside train` and `lineside demo`: the trainer, run headless.

torch is imported inside the handlers only: a station edition without the training
extra still lists these commands and answers with a clear message.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

from app.core.errors import LinesideError

EXIT_CANCELLED = 3


def register(sub) -> None:
    p = sub.add_parser("train", help="fine-tune a new candidate model on the project's labeled images")
    p.add_argument("project", type=Path)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--epochs", type=int, default=None, help="at most this many passes (early stopping may stop sooner)")
    p.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="stop before an epoch that would not finish within this time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", choices=["text", "json"], default="text",
                   help="json: one JSON object per line on stdout, for the desktop app")
    p.set_defaults(handler=run_train)

    d = sub.add_parser("demo", help="generate a demo project of synthetic parts, train it and inspect a fresh batch")
    d.add_argument("directory", type=Path, nargs="?", default=None)
    d.add_argument("--epochs", type=int, default=None)
    d.add_argument("--prepare-only", action="store_true", help="build the demo project, do not inspect")
    d.set_defaults(handler=run_demo)


def _import_trainer():
    try:
        from training import pipeline
    except ImportError as exc:
        raise LinesideError(
            "Training is not installed in this edition of Lineside (the station edition only inspects). "
            "Train on a workstation and copy the project, or install the 'train' extra.") from exc
    return pipeline


def _text_event(event: dict) -> None:
    kind = event.get("event")
    if kind == "start":
        print(f"training on {event['device']}: {event['n_train']} train / {event['n_val']} validation images, "
              f"classes {', '.join(event['classes'])}", flush=True)
        for line in event.get("shortfalls", []):
            print(f"  note: {line}", flush=True)
    elif kind == "epoch":
        print(f"epoch {event['epoch']:>3}/{event['epochs']}  loss {event['train_loss']:.4f}  "
              f"val loss {event['val_loss']:.4f}  val AUROC {event['val_auroc']:.4f}  "
              f"catch@1%FR {event['val_catch_rate']:.3f}  eta {event['eta_s']:.0f}s", flush=True)
    elif kind == "progress" and event.get("phase") in ("cache", "export", "evaluate") and event.get("step") in (0, event.get("steps")):
        print(f"{event['phase']}...", flush=True)
    elif kind == "done":
        m = event["metrics"]
        print(f"new candidate {event['version']} in {event['elapsed_s']:.0f}s on {event['device']}: "
              f"AUROC {m['auroc']:.4f}, catch {m['catch_rate']:.1%} at {m['false_reject_rate']:.1%} false reject "
              f"(threshold {m['threshold']:.4f}, validation split)", flush=True)
        prod = event.get("production")
        if prod and "catch_rate" in prod:
            print(f"production {prod['version']} on the same images: catch {prod['catch_rate']:.1%} "
                  f"at {prod['false_reject_rate']:.1%} false reject", flush=True)
        print(f"deploy it with: lineside deploy PROJECT {event['version']}", flush=True)


def _json_event(event: dict) -> None:
    print(json.dumps(event, default=float), flush=True)


def run_train(args) -> int:
    emit = _json_event if args.progress == "json" else _text_event
    cancel = threading.Event()

    def on_signal(signum, frame):  # checked every batch; the loop unwinds cleanly
        cancel.set()

    signal.signal(signal.SIGTERM, on_signal)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, on_signal)
    try:
        pipeline = _import_trainer()
        from training.loop import Cancelled

        try:
            pipeline.train_project(args.project, epochs=args.epochs, time_budget_s=args.time_budget,
                                   device=args.device, seed=args.seed, on_event=emit, should_stop=cancel.is_set)
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

