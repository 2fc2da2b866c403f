"""Chapter 2's verdict (grokbook.experiments.spectral), every branch on hand-built values."""

import math

from grokbook.experiments.spectral import memorizers_text, rho_call, verdict_text

NAN = (math.nan, math.nan, math.nan)


def test_rho_call_branches():
    assert rho_call((0.4, 0.1, 0.6), 210, 2).startswith("reproduced")
    assert rho_call((-0.4, -0.6, -0.1), 210, 2).startswith("reversed")
    assert rho_call((0.1, -0.1, 0.3), 210, 2).startswith("not reproduced")
    assert rho_call((0.1, math.nan, math.nan), 210, 2).startswith("not measurable")
    # at the edge: an interval touching zero holds it
    assert rho_call((0.2, 0.0, 0.4), 210, 2).startswith("not reproduced")
    assert "over 210 configurations of 2 seeds" in rho_call((0.4, 0.1, 0.6), 210, 2)


def test_memorizers_text():
    assert memorizers_text(1, NAN, NAN, 15).startswith("Only 1 run memorizes")
    text = memorizers_text(40, (0.1, -0.1, 0.3), (0.2, 0.0, 0.4), 100)
    assert "Among the 40 runs" in text and "+0.10 [-0.10, +0.30]" in text and "from step 100 on" in text
    assert "nan" not in memorizers_text(40, NAN, NAN, 100).lower()


def test_verdict_text():
    v = verdict_text((-0.3, -0.4, -0.2), (0.3, 0.2, 0.4), 0.8, 0.5, 40, (0.1, -0.1, 0.3), NAN, 210, 2)
    assert v.startswith("with the paper's quantity, the raw energy, reversed")
    assert "detrended activity, reproduced" in v and "80% of the detrending" in v
    assert "does not rank" in v and "second half ρ = not measurable" in v
    small = verdict_text(NAN, NAN, 0.5, 0.0, 1, NAN, NAN, 3, 1)
    assert small.endswith("Only 1 run memorizes: too few to rank among them") and "nan" not in small.lower()
