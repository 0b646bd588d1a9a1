"""Which model a project gets, decided from its labels alone, and said in words."""

from __future__ import annotations

import pytest

from app.core.errors import NotEnoughDataError
from training.modes import GOOD_ONLY, SUPERVISED, check_supervised, choose_mode, merge_short_classes


@pytest.mark.parametrize("counts, mode", [
    ({"ok": 500}, GOOD_ONLY),
    ({"ok": 500, "scratch": 9}, GOOD_ONLY),
    ({"ok": 500, "scratch": 6, "dent": 4}, SUPERVISED),
    ({"ok": 20, "scratch": 40, "unlabeled": 900}, SUPERVISED),
])
def test_auto_picks_the_mode_from_the_number_of_labeled_defects(counts, mode):
    chosen, reason = choose_mode(counts)
    assert chosen == mode and reason.startswith(mode)


def test_an_explicit_mode_wins_and_says_so():
    assert choose_mode({"ok": 500, "scratch": 50}, "good-only") == (
        GOOD_ONLY, "good-only (asked for); 500 OK and 50 defective labeled parts")
    with pytest.raises(NotEnoughDataError):
        choose_mode({"ok": 5}, "sideways")


def test_short_classes_train_together_as_one_defect_class_in_auto_mode():
    counts = {"ok": 300, "blowhole": 3, "crack": 2, "fray": 5}
    merged, names, mapping, notes = merge_short_classes(counts, ["ok", "blowhole", "crack", "fray"])
    assert names == ["ok", "defect"] and merged == {"ok": 300, "defect": 10}
    assert mapping == {"blowhole": "defect", "crack": "defect", "fray": "defect"}
    assert "blowhole: 3" in notes[0] and "crack: 2" in notes[0]
    check_supervised(merged, names)  # enough now: no error
    with pytest.raises(NotEnoughDataError, match="blowhole: 3"):
        check_supervised(counts, ["ok", "blowhole", "crack", "fray"])  # --mode supervised stays strict


def test_classes_with_enough_labels_are_kept_apart():
    counts = {"ok": 300, "blowhole": 6, "crack": 8}
    assert merge_short_classes(counts, ["ok", "blowhole", "crack"]) == (counts, ["ok", "blowhole", "crack"], {}, [])
