"""The trainer's events as terminal output: one line per event (`lineside train`,
`lineside demo`) or one JSON object per line (`--progress json`, for the desktop app)."""

from __future__ import annotations

import json

from app.core.operating_point import highest_ok_text, single_part_note, threshold_text


def text_event(event: dict) -> None:
    kind = event.get("event")
    if kind == "start":
        split = (f"{event['n_train']} train / {event['n_val']} validation images" if event.get("mode") != "good-only"
                 else f"{event['n_train']} images (every OK part in the bank, each also scored out-of-fold "
                      "for the threshold; labeled defects held out)")
        print(f"training on {event['device']}: {split}, classes {', '.join(event['classes'])}", flush=True)
        if event.get("mode_reason"):
            print(f"mode: {event['mode_reason']}", flush=True)
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
        auroc = f"AUROC {m['auroc']:.4f}" if m.get("auroc") is not None else "AUROC not measurable (no held-out defects)"
        print(f"new candidate {event['version']} ({event.get('mode', 'supervised')}) in {event['elapsed_s']:.0f}s "
              f"on {event['device']}", flush=True)
        if event.get("mode_reason"):
            print(f"  mode: {event['mode_reason']}", flush=True)
        print(f"  at the stored threshold {threshold_text(m['threshold'], 4)}: {event.get('operating_point', '')}",
              flush=True)
        print(f"  {auroc}", flush=True)
        if (note := single_part_note(m.get("n_ok_heldout") or 0, m.get("false_reject_target") or 0.01)):
            print(f"  note: {note}", flush=True)
        if (highest := highest_ok_text(m.get("highest_ok_parts") or [])):
            print(f"  {highest}", flush=True)
        prod = event.get("production")
        if prod and "catch_rate" in prod:
            print(f"production {prod['version']} on the same images: catch {prod['catch_rate']:.1%} "
                  f"at {prod['false_reject_rate']:.1%} false reject", flush=True)
        print(f"deploy it with: lineside deploy PROJECT {event['version']}", flush=True)
    elif kind == "progress" and event.get("phase") == "curve" and event.get("step") == 0:
        print("measuring what less data would have given (the model above is already saved)...", flush=True)
    elif kind == "curve":
        version = event["version"]
        if event.get("learning_curve_s") is not None:
            print(f"learning curve of {version}: measured in {event['learning_curve_s']:.0f}s; "
                  f"`lineside report PROJECT {version}` shows it", flush=True)
        else:
            print(f"learning curve of {version}: {event.get('note') or 'not measured'}", flush=True)


def json_event(event: dict) -> None:
    print(json.dumps(event, default=float), flush=True)
