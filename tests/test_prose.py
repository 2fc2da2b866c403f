"""Numbers in prose (grokbook.experiments.prose)."""

import math

from grokbook.experiments.prose import at_step, estimate_text, number_text, per_seed, steps_text


def test_number_text():
    assert number_text(0.3141, ".2f") == "0.31"
    assert number_text(12, ",") == "12"
    for bad in (None, math.nan, math.inf):
        assert number_text(bad) == "not measurable"
    assert number_text(None, missing="never") == "never"


def test_estimate_text():
    assert estimate_text(0.31, -0.05, 0.6) == "+0.31 [-0.05, +0.60]"
    assert estimate_text(0.31, math.nan, math.nan) == "+0.31 (no interval)"
    assert estimate_text(math.nan, math.nan, math.nan, missing="too few runs") == "too few runs"
    assert estimate_text(0.5, 0.4, 0.6, spec=".1%") == "50.0% [40.0%, 60.0%]"


def test_at_step():
    assert at_step(150, 600) == "step 150" and at_step(None, 60) == "never within 60 steps"


def test_per_seed_and_steps_text():
    assert per_seed([8.94, None, math.nan]) == "8.9 / not reached / not reached"
    assert per_seed([0.5, 0.25], ".0f", unit="%", sep=", ") == "0%, 0%"
    assert per_seed([50.0, None], ".0f", unit="%") == "50% / not reached"
    assert steps_text(None, 60) == "never (within 60 steps)" and steps_text(12, 60) == "12"
    assert number_text(3.0, ".0f", unit="%") == "3%" and number_text(None, unit="%") == "not measurable"


def test_with_never_shows_missing_times_as_never():
    import pandas as pd

    from grokbook.experiments.prose import with_never

    frame = pd.DataFrame({"t2": [63, 31], "t4": [2795.0, float("nan")], "t4/t2": [44.4, None], "acc": [1.0, 0.031]})
    shown = with_never(frame, ["t2", "t4", "t4/t2"])
    assert shown["t4"].tolist() == ["2795", "never"] and shown["t4/t2"].tolist() == ["44.4", "never"]
    assert shown["t2"].tolist() == ["63", "31"] and shown["acc"].tolist() == [1.0, 0.031]
    assert frame["t4"].isna().tolist() == [False, True]  # a copy
