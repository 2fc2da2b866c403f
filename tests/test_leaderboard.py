"""grokbook.experiments.leaderboard: Brier and reliability by hand, and the
leave-one-family-out scores on planted families (a signal shared by every family is
found; one that flips sign in the held-out family is not)."""

from __future__ import annotations

import numpy as np
import pytest

from grokbook.experiments import leaderboard as lb


def test_brier_by_hand():
    assert lb.brier([0.0, 1.0, 0.5], [False, True, True]) == pytest.approx(0.25 / 3)
    assert lb.brier([0.3] * 10, [True] * 3 + [False] * 7) == pytest.approx(0.3 * 0.7)   # base rate q(1-q)
    with pytest.raises(ValueError):
        lb.brier([1.2], [True])


def test_reliability_bins_by_hand():
    p = [0.05, 0.1, 0.45, 0.5, 0.95, 1.0]
    y = [False, True, False, True, True, True]
    bins = lb.reliability(p, y, n_bins=2)
    assert [b["n"] for b in bins] == [3, 3]
    assert bins[0]["mean_p"] == pytest.approx(0.2) and bins[0]["observed"] == pytest.approx(1 / 3)
    assert bins[1]["mean_p"] == pytest.approx(0.8167, abs=1e-4) and bins[1]["observed"] == 1.0
    assert [b["lo"] for b in lb.reliability(p, y, n_bins=5)] == [0.0, 0.4, 0.8]   # empty bins left out


def planted(flip: str | None = None, n_conf=20, seeds=3):
    """Three families; the outcome is a logistic function of feature 0 (+1 per unit), the
    sign flipped in family ``flip``; feature 1 is noise."""
    rng = np.random.default_rng(0)
    X, y, fam, grp = [], [], [], []
    for f in ("a", "b", "c"):
        for c in range(n_conf):
            x0 = rng.normal()
            for s in range(seeds):
                x = np.array([x0 + 0.3 * rng.normal(), rng.normal()])
                z = 3 * x[0] * (-1 if f == flip else 1)
                X.append(x), y.append(rng.random() < 1 / (1 + np.exp(-z))), fam.append(f), grp.append(f"{f}{c}")
    return np.array(X), np.array(y), np.array(fam), np.array(grp)


def test_a_shared_signal_transfers_to_every_family():
    out = lb.family_holdout(*planted(), n_boot=200)
    for f, r in out.items():
        est, lo, hi = r["auc"]
        assert lo > 0.7 and r["brier"] < r["brier_base"], f
        assert r["n"] == 60 and len(r["p"]) == 60


def test_a_signal_that_flips_in_one_family_fails_there():
    out = lb.family_holdout(*planted(flip="c"), n_boot=200)
    assert out["c"]["auc"][2] < 0.3 and out["c"]["brier"] > out["c"]["brier_base"]


def test_bad_input():
    X, y, fam, grp = planted()
    with pytest.raises(ValueError, match="two families"):
        lb.family_holdout(X, y, np.full(len(y), "a"), grp)
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        lb.family_holdout(X, y, fam, grp)
