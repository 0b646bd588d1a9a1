"""A stand-in trainer that speaks the trainer's JSON-lines protocol.

It exercises the parts of the GUI the real trainer cannot reach on purpose: output
split mid-line, non-JSON noise, an error event, a hang that ignores SIGTERM, a cancel
timed into the learning curve after the model was handed over.
Usage: python fake_trainer.py MODE [STEP_DELAY_S]; MODE is ok, error, hang or crash.
"""

from __future__ import annotations

import json
import signal
import sys
import time


def emit(obj: dict, split: bool = False) -> None:
    text = json.dumps(obj) + "\n"
    if split:  # the reader must join partial lines
        half = len(text) // 2
        sys.stdout.write(text[:half])
        sys.stdout.flush()
        time.sleep(0.02)
        text = text[half:]
    sys.stdout.write(text)
    sys.stdout.flush()


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else "ok"
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.01
    stop = {"requested": False}
    if mode == "hang":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
    emit({"event": "start", "device": "cpu", "n_train": 12, "n_val": 4, "classes": ["ok", "scratch"], "epochs": 2})
    print("a warning from some library", file=sys.stderr, flush=True)
    print("not json at all", flush=True)
    if mode == "crash":
        print("Traceback: something broke", file=sys.stderr, flush=True)
        return 1
    for epoch in (1, 2):
        for step in range(1, 5):
            if stop["requested"]:
                emit({"event": "cancelled"})
                return 3
            emit({"event": "progress", "phase": "train", "epoch": epoch, "epochs": 2, "step": step, "steps": 4,
                  "loss": 1.0 / (epoch * step), "eta_s": 5.0, "elapsed_s": 1.0}, split=step == 2)
            time.sleep(delay)
        emit({"event": "epoch", "epoch": epoch, "epochs": 2, "train_loss": 0.5 / epoch, "val_loss": 0.6 / epoch,
              "val_auroc": 0.8 + 0.05 * epoch, "val_catch_rate": 0.7 + 0.1 * epoch, "eta_s": 2.0})
    if mode == "error":
        emit({"event": "error", "message": "scratch: 0 labeled images"})
        return 2
    emit({"event": "done", "version": "v9", "elapsed_s": 3.5, "device": "cpu", "curve_follows": True,
          "metrics": {"auroc": 0.9, "catch_rate": 0.9, "false_reject_rate": 0.05, "threshold": 0.5},
          "production": None, "shortfalls": ["crack: 3 labeled images, at least 5 needed"]})
    # As the real trainer: the model is saved at "done"; the learning curve follows, and a
    # cancel now skips only the curve (the run still ends well).
    for step in range(4):
        if stop["requested"]:
            emit({"event": "curve", "version": "v9", "elapsed_s": 4.0,
                  "note": "not measured: the retrain was cancelled after the model was saved"})
            return 0
        emit({"event": "progress", "phase": "curve", "step": step, "steps": 3, "eta_s": None})
        time.sleep(delay)
    emit({"event": "curve", "version": "v9", "elapsed_s": 4.5, "learning_curve_s": 1.0})
    return 0


if __name__ == "__main__":
    sys.exit(main())
