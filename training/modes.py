"""Which kind of model a project gets, and whether its labels are enough for it.

- **supervised**: the fine-tuned patch classifier, learned from OK and defect labels.
- **good-only**: an anomaly model (training/anomaly.py) that learns what OK parts look
  like; for a new line with thousands of good parts and almost no defects.
- **combined**: both, the anomaly score added to the supervised one as extra evidence
  (training/combined.py).

`--mode auto` (the default) decides from the labels by the rule in `choose_mode`; when
that is supervised it also fits the anomaly model and keeps the combination only if it
catches more validation defects, and the anomaly model alone if that catches more than
both (measured, `training.combined.compare`). It says the
rule and the measurement in words: the CLI, the Train summary and the model report all
show that sentence.
"""

from __future__ import annotations

from app.core.errors import NotEnoughDataError

OK = "ok"
SUPERVISED, GOOD_ONLY, COMBINED = "supervised", "good-only", "combined"
MODES = ("auto", SUPERVISED, GOOD_ONLY, COMBINED)
MIN_OK = 10  # below this the false-reject threshold means nothing
MIN_PER_CLASS = 5  # below this a class cannot be both learned and validated
RECOMMENDED_PER_CLASS = 20
# A supervised model needs defects in training AND in validation: with the 80/20
# split, 10 labeled defects leave about 2 to validate on. Fewer, and the anomaly
# model (which needs no defect labels at all) is the honest choice.
MIN_DEFECTS_SUPERVISED = 10


def defect_count(counts: dict[str, int]) -> int:
    return sum(n for verdict, n in counts.items() if verdict not in (OK, "unlabeled"))


def choose_mode(counts: dict[str, int], requested: str = "auto") -> tuple[str, str]:
    """(mode, the reason in one sentence)."""
    n_ok, n_def = counts.get(OK, 0), defect_count(counts)
    if requested not in MODES:
        raise NotEnoughDataError(f"Unknown training mode '{requested}'; use one of {', '.join(MODES)}.")
    if requested != "auto":
        return requested, f"{requested} (asked for); {n_ok} OK and {n_def} defective labeled parts"
    if n_def >= MIN_DEFECTS_SUPERVISED:
        return SUPERVISED, (f"supervised: {n_def} labeled defective parts (auto picks supervised "
                            f"from {MIN_DEFECTS_SUPERVISED} on, adds the good-only anomaly score where that "
                            f"catches more validation defects, and keeps the anomaly model alone where that "
                            f"catches more than supervised alone and no fewer than both together)")
    return GOOD_ONLY, (f"good-only: {n_def} labeled defective parts, fewer than the "
                       f"{MIN_DEFECTS_SUPERVISED} a supervised model needs, so the model learns what "
                       f"the {n_ok} OK parts look like and flags what differs")


def check_supervised(counts: dict[str, int], class_names: list[str]) -> list[str]:
    """Raise NotEnoughDataError naming every class that is short; return soft shortfalls."""
    problems = []
    if counts.get(OK, 0) < MIN_OK:
        problems.append(f"ok: {counts.get(OK, 0)} labeled images, at least {MIN_OK} needed")
    if len(class_names) < 2:
        problems.append(f"no defect class has labeled images; at least {MIN_PER_CLASS} of one are needed "
                        "(or train with --mode good-only)")
    for name in class_names[1:]:
        if counts.get(name, 0) < MIN_PER_CLASS:
            problems.append(f"{name}: {counts.get(name, 0)} labeled images, at least {MIN_PER_CLASS} needed")
    if problems:
        raise NotEnoughDataError("Not enough labeled images to train. " + "; ".join(problems) + ".")
    return [f"{name}: {counts[name]} labeled images, {RECOMMENDED_PER_CLASS}+ recommended for a reliable catch rate"
            for name in class_names[1:] if counts[name] < RECOMMENDED_PER_CLASS]


MERGED_CLASS = "defect"


def merge_short_classes(counts: dict[str, int], class_names: list[str]) -> tuple[dict[str, int], list[str], dict, list]:
    """When `auto` picks supervised but a class has fewer than MIN_PER_CLASS labels, all
    defect classes train as one class, "defect": the part's verdict is learned from
    every labeled defect, and naming the class waits until each has enough.

    Returns (counts, class names, verdict mapping, notes); unchanged when no class is short.
    """
    short = [name for name in class_names[1:] if counts.get(name, 0) < MIN_PER_CLASS]
    if not short:
        return counts, class_names, {}, []
    mapping = {name: MERGED_CLASS for name in class_names[1:]}
    merged = {OK: counts.get(OK, 0), MERGED_CLASS: sum(counts.get(n, 0) for n in class_names[1:])}
    note = (f"{', '.join(f'{n}: {counts.get(n, 0)}' for n in short)} labeled images, fewer than "
            f"{MIN_PER_CLASS}: all defect classes are trained together as '{MERGED_CLASS}' (PASS/FAIL is "
            "learned from every defect; the class is named once each has 5)")
    return merged, [OK, MERGED_CLASS], mapping, [note]


def check_good_only(counts: dict[str, int]) -> list[str]:
    n_ok = counts.get(OK, 0)
    if n_ok < MIN_OK:
        raise NotEnoughDataError(
            f"Not enough labeled images to train. ok: {n_ok} labeled images, at least {MIN_OK} needed "
            "for a good-only model.")
    notes = []
    if n_ok < 100:
        notes.append(f"ok: {n_ok} labeled images; 100+ give a threshold that holds at 1 % false reject")
    if defect_count(counts) == 0:
        notes.append("no labeled defects: the catch rate cannot be measured until some are labeled")
    return notes
