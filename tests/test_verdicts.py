"""The shared verdict rules and the thresholds object, branch by branch on hand-built
values (no training)."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from grokbook.experiments import thresholds as th
from grokbook.experiments.verdicts import (MIN_SEEDS, WORDS, Verdict, from_interval, not_testable,
                                           seed_interval, seeds_against_controls, share)


# --- seeds against controls -------------------------------------------------------------

@pytest.mark.parametrize("runs, controls, n, word", [
    (3, 0, 3, "reproduced"),
    (2, 1, 3, "reproduced"),          # exactly MIN_SEEDS runs, fewer controls
    (1, 0, 3, "not reproduced"),      # one seed short of MIN_SEEDS
    (0, 0, 3, "not reproduced"),
    (2, 2, 3, "not specific"),        # controls as often
    (2, 3, 3, "not specific"),        # controls more often
    (1, 0, 1, "reproduced"),          # one seed: min(MIN_SEEDS, 1) = 1
    (0, 0, 0, "not testable"),
])
def test_seeds_against_controls_every_branch(runs, controls, n, word):
    assert seeds_against_controls(runs, controls, n).word == word


def test_seeds_against_controls_compares_shares_not_counts():
    # 3 of 6 runs against 2 of 2 controls: fewer controls, but a larger share
    assert seeds_against_controls(3, 2, 6, 2).word == "not specific"
    assert seeds_against_controls(3, 1, 6, 4).word == "reproduced"
    assert seeds_against_controls(3, 0, 3, 0).word == "not testable"


def test_the_seed_rule_is_two_seeds():
    # a mutation of MIN_SEEDS (to 1 or 3) flips one of these
    assert MIN_SEEDS == 2
    assert seeds_against_controls(1, 0, 5).word == "not reproduced"
    assert seeds_against_controls(2, 0, 5).word == "reproduced"
    assert seeds_against_controls(2, 0, 5, min_seeds=3).word == "not reproduced"


def test_seeds_against_controls_reason_and_bad_counts():
    v = seeds_against_controls(2, 1, 3, what="seeds")
    assert str(v) == "reproduced: 2/3 seeds, 1/3 controls"
    with pytest.raises(ValueError, match="runs_hold = 4"):
        seeds_against_controls(4, 0, 3)
    with pytest.raises(ValueError, match="controls_hold = -1"):
        seeds_against_controls(1, -1, 3)


# --- share --------------------------------------------------------------------------------

def test_share_every_branch():
    assert share([True, True], ["a", "b"]).word == "reproduced"
    v = share([True, False], ["a", "b"])
    assert v.word == "partly reproduced" and v.reason == "found: a; not found: b"
    assert share([False, False], ["a", "b"]).word == "not reproduced"
    assert share([], []).word == "not testable"
    with pytest.raises(ValueError, match="2 results for 1 parts"):
        share([True, False], ["a"])


# --- from an interval -------------------------------------------------------------------

@pytest.mark.parametrize("est, lo, hi, expected, word", [
    (0.7, 0.6, 0.8, "above", "reproduced"),
    (0.3, 0.2, 0.4, "above", "reversed"),
    (0.5, 0.4, 0.6, "above", "undecided"),
    (0.55, 0.5, 0.6, "above", "undecided"),   # touching the null is not excluding it
    (0.3, 0.2, 0.4, "below", "reproduced"),
    (0.7, 0.6, 0.8, "below", "reversed"),
    (0.3, 0.2, 0.4, "either", "reproduced"),
    (0.7, 0.6, 0.8, "either", "reproduced"),
    (0.5, 0.45, 0.55, "either", "undecided"),
    (float("nan"), 0.1, 0.2, "above", "not testable"),
])
def test_from_interval_every_branch(est, lo, hi, expected, word):
    assert from_interval(est, lo, hi, 0.5, expected=expected).word == word


def test_from_interval_refuses_bad_input():
    with pytest.raises(ValueError, match="low <= estimate <= high"):
        from_interval(0.9, 0.6, 0.8, 0.5)
    with pytest.raises(ValueError, match="expected must be"):
        from_interval(0.7, 0.6, 0.8, 0.5, expected="up")


def test_verdict_words():
    assert not_testable("x") == Verdict("not testable", "x")
    assert Verdict("reproduced", "").holds and not Verdict("partly reproduced", "").holds
    assert set(WORDS) >= {"reproduced", "not reproduced", "not testable"}
    with pytest.raises(ValueError, match="unknown verdict"):
        Verdict("sort of", "")


# --- thresholds ---------------------------------------------------------------------------

def test_the_authors_thresholds():
    # a mutation of any of the authors' values fails here
    a = th.AUTHORS
    assert (a.leave, a.reach, a.delay, a.final) == (0.05, 0.99, 5.0, 0.99)


def test_registered_departures():
    assert th.for_chapter("09_predict") is th.AUTHORS
    assert th.for_chapter("11_search") is th.AUTHORS
    for ch in ("01_grokking", "03_slingshot", "04_lazy", "05_valleys", "06_trajectory", "07_hessian",
               "10_data_fraction"):
        assert th.for_chapter(ch) == th.AUTHORS.replace(leave=0.2)
    assert th.for_chapter("02_spectral") == th.AUTHORS.replace(final=0.9)
    assert th.for_chapter("08_lu") == th.AUTHORS.replace(leave=0.2, final=0.9)
    rows = {r["chapter"]: r for r in th.table()}
    assert list(rows) == list(th.CHAPTERS)
    assert rows["08_lu"]["departs"] == "leave, final" and rows["08_lu"]["reason"]
    assert rows["09_predict"]["departs"] == "" and rows["09_predict"]["reason"] == ""
    with pytest.raises(ValueError, match="unknown chapter"):
        th.for_chapter("12_nothing")


def test_thresholds_refuse_impossible_values():
    for bad in (dict(leave=0.99, reach=0.5), dict(reach=1.5), dict(final=0), dict(delay=0.5)):
        with pytest.raises(ValueError, match="thresholds need"):
            th.Thresholds(**bad)


def _run(train_acc, val_steps, val_acc, diverged_at=None):
    return SimpleNamespace(steps=np.arange(len(train_acc)), metrics={"train_acc": np.asarray(train_acc, float)},
                           val_steps=np.asarray(val_steps), val_acc=np.asarray(val_acc, float),
                           diverged_at=diverged_at)


def test_times_and_outcome_at_the_thresholds():
    # training: 0.04 until step 2, 0.06 at 2, 0.99 from step 4; validation 0.1 at 20, 0.995 at 30
    train = [0.0, 0.04, 0.06, 0.5, 0.99, 1.0] + [1.0] * 40
    run = _run(train, [0, 10, 20, 30, 40], [0.0, 0.04, 0.1, 0.995, 1.0])
    t = th.AUTHORS.times(run)
    assert (t.t1, t.t2, t.t3, t.t4) == (2, 4, 20, 30)
    assert th.AUTHORS.outcome(run) == "groks"                      # 30 >= 5 * 4
    assert th.AUTHORS.replace(delay=8).outcome(run) == "generalizes"  # 30 < 8 * 4
    assert th.AUTHORS.replace(leave=0.2).times(run).t3 == 30
    assert th.AUTHORS.outcome(_run(train, [0, 10], [0.0, 0.0], diverged_at=7)) == "diverged"
    assert th.AUTHORS.generalized(0.99) and not th.AUTHORS.generalized(0.98)
    assert th.for_chapter("02_spectral").generalized(0.9)


def test_chance_note():
    assert "3.2%" in th.AUTHORS.chance_note(31)      # 5% < 2 x 1/31
    assert th.AUTHORS.chance_note(97) is None         # 5% >= 2 x 1/97
    assert th.AUTHORS.replace(leave=0.2).chance_note(31) is None
    with pytest.raises(ValueError):
        th.AUTHORS.chance_note(0)


def test_the_introduction_states_every_chapters_thresholds():
    from pathlib import Path
    intro = (Path(__file__).resolve().parents[1] / "book" / "intro.md").read_text()
    assert th.markdown_table() in intro


#: Chapter parameters that hold a threshold, and the field of the thresholds object each is.
THRESHOLD_PARAMETERS = {"leave": "leave", "reach": "reach", "min_ratio": "delay", "threshold": "final",
                        "val_target": "final"}


def test_every_chapter_takes_its_thresholds_from_the_one_object():
    """A chapter's threshold parameters default to its registered thresholds, and no code
    cell writes a threshold as a literal."""
    import re

    from grokbook.notebooks import find_chapters

    chapters = find_chapters()
    assert {c.path.stem for c in chapters.values()} == set(th.CHAPTERS)
    for chapter in chapters.values():
        registered = th.for_chapter(chapter.path.stem)
        for name, field in THRESHOLD_PARAMETERS.items():
            if name in chapter.parameters:
                assert chapter.parameters[name].default == getattr(registered, field), (chapter.name, name)
        text = chapter.path.read_text()
        cells = re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", text, re.S)
        code = "\n".join(c for c in cells if ":tags: [parameters]" not in c)
        literal = re.findall(r"(?:leave|reach|min_ratio)\s*=\s*[0-9.]+|>=\s*0\.9\d*\b", code)
        assert not literal, (chapter.name, literal)


def test_seed_interval_brackets_the_mean_and_ignores_nan():
    mean, lo, hi = seed_interval([1.0, 2.0, 3.0, float("nan"), 4.0])
    assert mean == pytest.approx(2.5) and 1.0 <= lo < mean < hi <= 4.0
    assert seed_interval([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    assert all(math.isnan(v) for v in seed_interval([1.0, float("nan")]))


def test_outcomes_untestable_names_the_seeds_and_lets_the_controls_win():
    from grokbook.experiments.verdicts import outcomes_untestable

    assert outcomes_untestable([], []) is None
    v = outcomes_untestable([], [3], fail="do not both memorize and generalize")
    assert v.word == "not testable" and v.reason == ("the grokking runs of seeds [3] do not both memorize and "
                                                     "generalize with these parameters")
    v = outcomes_untestable([1], [3])
    assert v.reason == "the controls of seeds [1] generalize within the budget (lower control_r)"
