"""The detection results page judges each target as it was set: a share, or a count of misses."""

from benchmarks.detection_report import TARGETS, _catch_row


def test_a_count_target_is_judged_by_misses_and_shows_the_share_beside_it():
    target = TARGETS["kolektorsdd"]["supervised"]
    one_miss = _catch_row("supervised", {"n_defect": 17, "caught": 16, "catch_rate": 16 / 17}, target)
    assert one_miss[1] == "1 of 17 (94.1% caught)"
    assert one_miss[2].startswith("yes") and "share, >= 94.4%: no" in one_miss[2]
    two_misses = _catch_row("supervised", {"n_defect": 17, "caught": 15, "catch_rate": 15 / 17}, target)
    assert two_misses[2].startswith("**no**")
    none_missed = _catch_row("supervised", {"n_defect": 18, "caught": 18, "catch_rate": 1.0}, target)
    assert none_missed[2] == "yes (as a share, >= 94.4%: yes)"


def test_a_share_target_is_judged_as_before():
    row = _catch_row("supervised", {"n_defect": 118, "caught": 106, "catch_rate": 106 / 118},
                     TARGETS["magnetic-tile"]["supervised"])
    assert row == ["supervised: catch at stored threshold >= 97.0%", "89.8%", "**no**"]
