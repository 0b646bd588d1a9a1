"""The trainer's progress protocol: one JSON object per line, defined once.

`lineside train --progress json` writes these events; the desktop app reads them (and
the tests' stand-in trainer imitates them). Each kind lists the keys it must carry and
the ones it may carry: a reader may rely on the first, must cope without the second,
and no event may carry anything else. `problems(event)` says what is wrong with one.
"""

from __future__ import annotations

EVENTS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # kind: (required keys, optional keys), "event" itself not counted
    "start": (frozenset({"device", "n_train", "n_val", "classes", "epochs"}),
              frozenset({"shortfalls", "mode", "mode_reason", "false_reject_target", "tiling"})),
    "progress": (frozenset({"phase", "step", "steps", "eta_s"}),
                 frozenset({"epoch", "epochs", "loss", "elapsed_s"})),
    # val_catch_rate: caught at 1 % false reject on the validation parts, the training's own yardstick;
    # val_patch_auroc: how well the heatmap points at the painted defects (None without masks)
    "epoch": (frozenset({"epoch", "epochs", "train_loss", "val_loss", "val_auroc", "val_catch_rate", "eta_s"}),
              frozenset({"elapsed_s", "val_patch_auroc"})),
    "done": (frozenset({"version", "elapsed_s", "device", "metrics"}),
             frozenset({"mode", "mode_reason", "operating_point", "production", "baseline", "shortfalls",
                        "changes", "curve_follows"})),
    # after "done": the learning curve, measured once the model was handed over, is in the
    # report of *version* (note: why it is not, when it is not)
    "curve": (frozenset({"version", "elapsed_s"}), frozenset({"learning_curve_s", "note"})),
    "cancelled": (frozenset(), frozenset()),
    "error": (frozenset({"message"}), frozenset()),
}
PHASES = frozenset({"prepare", "cache", "train", "curve", "features", "coreset", "oof", "export", "evaluate"})


def problems(event: object) -> list[str]:
    """What makes *event* break the protocol (empty when it is fine)."""
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        return ["not an event object with an 'event' name"]
    kind = event["event"]
    if kind not in EVENTS:
        return [f"unknown event kind {kind!r}"]
    required, optional = EVENTS[kind]
    keys = set(event) - {"event"}
    found = [f"{kind}: missing {key!r}" for key in sorted(required - keys)]
    found += [f"{kind}: unexpected {key!r}" for key in sorted(keys - required - optional)]
    if kind == "progress" and event.get("phase") not in PHASES:
        found.append(f"progress: unknown phase {event.get('phase')!r}")
    return found
