"""Chapter 11's sentences and verdict (grokbook.experiments.search), on hand-built shares."""

import math

from grokbook.experiments.search import pruner_sentence, search_verdict, share_text

NAN3 = (math.nan,) * 3


def test_share_text():
    assert share_text((0.84, 0.51, 1.0)) == "84% [51%, 100%]"
    assert share_text(NAN3) == "not measurable"


def test_pruner_sentence():
    assert pruner_sentence("the median pruner", (0.5, 0.2, 0.8), (0.84, 0.51, 1.0)) == (
        "the median pruner keeps 50% [20%, 80%] of the grokkers for 84% [51%, 100%] of the compute")
    none = pruner_sentence("Hyperband", NAN3, (0.76, 0.6, 0.9))
    assert "no grokking trial" in none and "nan" not in none.lower() and "n/a" not in none


def test_search_verdict_branches_and_edges():
    assert search_verdict(NAN3, (0.5, 0.4, 0.6), 0.9, 0.35) == "not measurable: no trial grokked"
    assert search_verdict((0.9, 0.8, 1.0), (0.35, 0.3, 0.4), 0.9, 0.35).startswith("goal met")  # both at the edge
    assert search_verdict((0.89, 0.8, 1.0), (0.35, 0.3, 0.4), 0.9, 0.35).startswith("goal not met")
    assert search_verdict((0.9, 0.8, 1.0), (0.36, 0.3, 0.4), 0.9, 0.35).startswith("goal not met")
