"""The threshold the line gets: set on held-out OK scores, with a margin and honest intervals."""

from __future__ import annotations

from math import erf, sqrt

import numpy as np
import pytest

from app.core.errors import NotEnoughDataError
from app.core.operating_point import allowed_rejects, choose_threshold, operating_point


@pytest.mark.parametrize("n, target, k", [(143, 0.01, 0), (99, 0.01, 0), (199, 0.01, 1), (666, 0.01, 5),
                                          (1000, 0.05, 49)])
def test_allowed_rejects_keeps_the_expected_rate_within_the_target(n, target, k):
    assert allowed_rejects(n, target) == k
    assert (k + 1) / (n + 1) <= target + 1e-12
    if k + 2 <= n:  # one more allowed would break the target
        assert (k + 2) / (n + 1) > target


def test_threshold_sits_between_held_out_scores_with_a_margin_no_float_difference_crosses():
    rng = np.random.default_rng(1)
    ok = rng.uniform(0.0, 0.6, 400)
    threshold, k = choose_threshold(ok, 0.01)
    ranked = np.sort(ok)[::-1]
    assert ranked[k] < threshold <= ranked[k - 1] if k else ranked[0] < threshold
    assert np.sum(ok >= threshold) == k
    # Another runtime scores every part a little higher: the verdicts must not move.
    assert np.sum(ok + 3e-6 >= threshold) == k


def test_a_single_top_score_gets_a_margin_above_it():
    threshold, k = choose_threshold([0.1, 0.2, 0.9], 0.01)
    assert k == 0 and threshold > 0.9 + 1e-6


def test_scores_crowded_near_1_keep_a_margin_of_float32_steps():
    # A good-only model's top OK scores can tie near 1, where 1e-3 in logit is less than
    # one float32 step: a score one step higher in another runtime must still pass.
    ok = np.float32([0.2, 0.5, 0.9999997, 0.9999997])
    threshold, k = choose_threshold(ok, 0.01)
    assert k == 0 and threshold >= float(ok[-1]) + 3 * float(np.spacing(np.float32(ok[-1])))
    assert np.float32(ok[-1] + np.spacing(np.float32(ok[-1]))) < threshold


def test_a_held_out_defect_in_the_gap_pulls_the_threshold_down_to_catch_it():
    # One unusual OK part far above the rest: the threshold must stay above it (k = 0 at
    # 109 parts), but not by half of that wide top gap when a defect lies in between.
    ok = np.concatenate([np.linspace(0.01, 0.04, 108), [0.77]])
    alone, k = choose_threshold(ok, 0.01)
    assert k == 0 and alone > 0.96  # half the gap from 0.04 to 0.77, above 0.77
    threshold, k = choose_threshold(ok, 0.01, defect_scores=[0.2, 0.93, 0.99])
    assert k == 0 and 0.77 < threshold < 0.93  # halfway between the OK part and the defect
    z = np.log(threshold / (1 - threshold))
    assert z == pytest.approx(0.5 * (np.log(0.77 / 0.23) + np.log(0.93 / 0.07)))
    # With k > 0 a defect between the (k+1)-th and k-th OK scores moves it the same way;
    # the count of held-out OK parts above, and so the promise, stays.
    ok = np.linspace(0.0, 0.5, 300)
    plain, k = choose_threshold(ok, 0.01)
    pulled, k2 = choose_threshold(ok, 0.01, defect_scores=[ok[-3] + 0.0006])
    assert k == k2 == 2 and ok[-3] < pulled < ok[-3] + 0.0006 < plain
    assert np.sum(ok >= pulled) == np.sum(ok >= plain) == 2
    # Defects below the OK part that must pass, or far above, change nothing.
    assert choose_threshold(ok, 0.01, defect_scores=[0.1, 0.99])[0] == plain
    assert choose_threshold(ok, 0.01, defect_scores=[float("nan")])[0] == plain  # an invalid score places nothing


def test_delivered_false_reject_on_new_parts_falls_in_the_interval_most_of_the_time():
    # The promise on the data the line will see: new OK parts from the same distribution.
    rng = np.random.default_rng(7)
    inside, trials = 0, 300
    for _ in range(trials):
        # OK scores are sigmoid(N(0, 1)): the true rate of any threshold is known exactly.
        point = operating_point(1 / (1 + np.exp(-rng.normal(size=300))), [0.9], 0.01)
        z = np.log(point.threshold / (1 - point.threshold))
        true_rate = 0.5 * (1 - erf(z / sqrt(2)))
        lo, hi = point.false_reject_rate_ci
        inside += lo <= true_rate <= hi
    assert 0.9 <= inside / trials <= 0.99


def test_catch_interval_and_counts():
    point = operating_point(np.linspace(0, 0.5, 200), [0.1, 0.7, 0.8, 0.9], 0.01, source="test")
    assert point.n_ok_heldout == 200 and point.n_defect_heldout == 4
    assert point.catch_rate == 0.75
    lo, hi = point.catch_rate_ci
    assert lo < 0.75 < hi
    assert "catch 75.0%" in point.describe()


def test_no_ok_scores_or_nan_scores_are_refused():
    with pytest.raises(NotEnoughDataError):
        choose_threshold([], 0.01)
    with pytest.raises(NotEnoughDataError):
        choose_threshold([0.1, float("nan")], 0.01)


def test_a_threshold_near_0_or_1_is_shown_with_the_digits_that_place_it():
    from app.core.operating_point import threshold_text

    assert threshold_text(0.43571948) == "0.436"
    assert threshold_text(0.4357, 4) == "0.4357"
    # A good-only model's threshold crowds towards 1: "1.000" would hide where it is.
    assert threshold_text(0.9999983460331294) == "0.999998"
    assert threshold_text(0.9999983460331294, 4) == "0.999998"
    assert threshold_text(2.4e-7) == "0.0000002"
    assert threshold_text(1.0) == "1.000" and threshold_text(0.0) == "0.000"


def test_a_threshold_resting_on_one_ok_part_says_how_many_would_steady_it():
    from app.core.operating_point import allowed_rejects, single_part_note

    note = single_part_note(109, 0.01)  # kolektorsdd's validation OK parts
    assert "highest of the 109 held-out OK scores" in note and "199 or more" in note
    assert allowed_rejects(198, 0.01) == 0 and allowed_rejects(199, 0.01) == 1
    assert single_part_note(199, 0.01) is None and single_part_note(0, 0.01) is None
    assert "39 or more" in single_part_note(20, 0.05)


def test_the_parts_that_place_the_threshold_are_named_highest_first():
    from app.core.operating_point import highest_ok_parts, highest_ok_text

    parts = highest_ok_parts([11, 12, 13, 14], ["a.png", "b.png", "c.png", "d.png"], [0.2, 0.77, 0.01, 0.5],
                             threshold=0.6, limit=3)
    assert [p["image_id"] for p in parts] == [12, 14, 11]
    assert [p["rejected"] for p in parts] == [True, False, False]
    text = highest_ok_text(parts)
    assert text.startswith("Highest-scoring held-out OK parts: b.png (0.770), d.png (0.500), a.png (0.200).")
    assert highest_ok_text([]) is None

