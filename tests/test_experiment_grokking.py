"""Chapter 1's verdicts and sentences (grokbook.experiments.grokking), on hand-built values."""

import numpy as np
import pytest

from grokbook.experiments import grokking as g
from grokbook.experiments.verdicts import scale_note, too_small
from grokbook.phases import PhaseTimes

FORBIDDEN = ("nan", "n/a", "never steps", "None", "inf")


def clean(text):
    if "$" in text:  # glued as text ({glue:text}): TeX would show raw in the book
        return False
    low = f" {text} "
    return not any(f" {w}" in low or f"{w} " in low or f"{w}," in low or f"{w}." in low for w in FORBIDDEN)


def test_at_step_and_ratio_text():
    assert g.at_step(150, 600) == "step 150"
    assert g.at_step(None, 60) == "never within 60 steps"
    assert g.ratio_text(1200, 100) == "t4 / t2 = 12.0"
    assert "never fits" in g.ratio_text(None, None) and "never generalizes" in g.ratio_text(None, 100)


def _val(rise: bool, fall: bool):
    steps = np.arange(0, 1001, 50)
    loss = np.full(len(steps), 2.0)
    if rise:
        loss[(steps > 100) & (steps <= 400)] = 5.0
    if fall:
        loss[steps >= 800] = 0.01
    return steps, loss


def test_phase_paragraph_of_a_grokking_run():
    steps, loss = _val(rise=True, fall=True)
    text = g.phase_paragraph(PhaseTimes(10, 100, 400, 800), 1000, 0.99, 1.0, 1.0, steps, loss)
    assert "t₂ = 100 steps" in text and "t₄ = 800 steps, 8.0 times later" in text
    assert "memorizing" in text and "from 2.00 to 5.00" in text and "orders of magnitude" in text
    assert clean(text)


def test_phase_paragraph_says_only_what_the_run_did():
    steps, loss = _val(rise=False, fall=False)
    text = g.phase_paragraph(PhaseTimes(10, 100, 400, 800), 1000, 0.99, 1.0, 1.0, steps, loss)
    assert "memorizing" not in text and "orders of magnitude" not in text
    never = g.phase_paragraph(PhaseTimes(None, None, None, None), 60, 0.99, 0.16, 0.3, steps[:2], loss[:2])
    assert "never reaches 0.99 within the run's 60 steps" in never and "never leaves chance" in never
    assert "times later" not in never and "memorizing" not in never and clean(never)
    assert "16.0%" in never


def test_norm_paragraph():
    wn = np.linspace(14, 8, 1000)
    ln = np.concatenate([np.linspace(1, 3, 200), np.linspace(3, 1.5, 800)])
    text = g.norm_paragraph(wn, ln, PhaseTimes(5, 100, 300, 700))
    assert text.startswith("The total norm falls from 14.0") and "when the validation accuracy leaves chance" in text
    assert "grows while the network memorizes, peaking at step 199 at 3.00 times" in text
    assert text.endswith("as the run generalizes.")
    flat = g.norm_paragraph(np.full(60, 14.2), np.full(60, 1.0), PhaseTimes(None, None, None, None))
    assert "leaves chance" not in flat and "never grows" in flat and clean(flat)
    up = g.norm_paragraph(np.linspace(1, 2, 50), np.linspace(1, 2, 50), PhaseTimes(None, None, None, None))
    assert "rises" in up and up.endswith("the run never generalizes.")


def test_too_small_and_the_note():
    assert too_small(1, 3, 60) is None and scale_note(2, 3, 60) == ""
    v = too_small(0, 3, 60)
    assert v.word == "not testable" and "none of the 3 runs fits its training set within its 60 steps" in v.reason
    assert "Too small to decide" in scale_note(0, 3, 60)
    with pytest.raises(ValueError):
        too_small(4, 3, 60)


def test_grokking_verdict_branches():
    fits = [True, True, True]
    assert g.grokking_verdict([True, True, False], [False] * 3, [12.0, 30.0], fits, 4000).word == "reproduced"
    v = g.grokking_verdict([True, True, False], [False] * 3, [12.0, 30.0], fits, 4000)
    assert "2/3 runs grok, 0/3 controls" in v.reason and "t4/t2 12 to 30" in v.reason
    assert g.grokking_verdict([True, False, False], [False] * 3, [12.0], fits, 4000).word == "not reproduced"
    assert g.grokking_verdict([True, True, False], [True, True, False], [12.0, 9.0], fits, 4000).word == "not specific"
    small = g.grokking_verdict([False] * 3, [False] * 3, [], [False] * 3, 60)
    assert small.word == "not testable" and "60 steps" in small.reason


def test_key_verdict_branches():
    fits = [True, True]
    assert g.key_verdict([True, True], [False, False], 5, 0.5, fits, 100).word == "reproduced"
    assert g.key_verdict([True, True], [True, True], 5, 0.5, fits, 100).word == "not specific"
    assert g.key_verdict([False, True], [False, False], 5, 0.5, fits, 100).word == "not reproduced"
    assert g.key_verdict([False, False], [False, False], 5, 0.5, [False, False], 100).word == "not testable"
