"""Censored concordance, stratified AUC and the hyperparameter design, against oracles:
lifelines, scipy's Kendall tau, brute-force pair counts, and planted signals."""

import itertools

import numpy as np
import pytest
from scipy.stats import kendalltau

from grokbook.predict import cross_validate, roc_auc
from grokbook.stats import concordance_index, hyperparameter_features, stratified_auc


def _pairs_c(s, t, e):
    """Brute force over ordered pairs, Harrell's definition written out."""
    win = n = 0.0
    for i, j in itertools.permutations(range(len(s)), 2):
        if e[i] and (t[i] < t[j] or (t[i] == t[j] and not e[j])):
            n += 1
            win += 1.0 if s[i] > s[j] else 0.5 if s[i] == s[j] else 0.0
    return win / n


@pytest.mark.parametrize("seed", range(5))
def test_concordance_against_lifelines_and_brute_force(seed):
    from lifelines.utils import concordance_index as lifelines_c

    rng = np.random.default_rng(seed)
    n = 40
    t = rng.integers(1, 12, n).astype(float)          # ties in time
    e = rng.random(n) < 0.6
    s = np.round(rng.normal(size=n), 1)               # ties in score
    ours = concordance_index(s, t, e)
    assert ours == pytest.approx(_pairs_c(s, t, e), abs=1e-12)
    # lifelines: a higher prediction means a longer survival, so it takes -score
    assert ours == pytest.approx(lifelines_c(t, -s, e), abs=1e-12)


def test_concordance_without_censoring_is_kendalls_tau():
    rng = np.random.default_rng(3)
    t, s = rng.permutation(30).astype(float), rng.normal(size=30)
    tau = kendalltau(-s, t).statistic
    assert concordance_index(s, t, np.ones(30, bool)) == pytest.approx((tau + 1) / 2, abs=1e-12)


def test_concordance_planted_and_censored():
    t = np.array([10, 20, 30, 40, 50.0])
    assert concordance_index(-t, t, np.ones(5, bool)) == 1.0   # sooner scored higher: perfect
    assert concordance_index(t, t, np.ones(5, bool)) == 0.0
    # censored runs at the budget 50 that never generalized: only event runs start pairs
    e = np.array([True, True, False, False, False])
    tt = np.array([10, 20, 50, 50, 50.0])
    assert concordance_index(np.array([5, 4, 1, 2, 3.0]), tt, e) == 1.0
    with pytest.raises(ValueError, match="no comparable pair"):
        concordance_index(np.zeros(3), np.full(3, 50.0), np.zeros(3, bool))
    with pytest.raises(ValueError, match="finite"):
        concordance_index(np.array([np.nan, 1]), np.array([1, 2.0]), np.array([True, True]))


def test_stratified_auc_brute_force_and_confounded_grid():
    rng = np.random.default_rng(0)
    n = 300
    lr = rng.choice([1e-3, 3e-3, 1e-2], n)
    # outcome depends on lr alone; the "energy" is lr plus noise unrelated to the outcome
    y = rng.random(n) < np.where(lr == 1e-3, 0.8, np.where(lr == 3e-3, 0.5, 0.2))
    energy = -np.log10(lr) + 0.01 * rng.normal(size=n)
    assert roc_auc(y, energy) > 0.7                   # pooled, it looks predictive
    within = stratified_auc(y, energy, lr)
    assert abs(within - 0.5) < 0.08                   # within strata it is not
    # brute force on the pairs of each stratum
    win = pairs = 0
    for i in range(n):
        for j in range(n):
            if lr[i] == lr[j] and y[i] and not y[j]:
                pairs += 1
                win += (energy[i] > energy[j]) + 0.5 * (energy[i] == energy[j])
    assert within == pytest.approx(win / pairs, abs=1e-12)
    # a signal planted within strata is found
    planted = energy + 2.0 * y
    assert stratified_auc(y, planted, lr) > 0.95
    with pytest.raises(ValueError, match="no stratum"):
        stratified_auc([True, False], [1.0, 0.0], [0, 1])


def test_energy_adds_nothing_to_the_hyperparameters_on_a_confounded_grid():
    """A confounded grid: the outcome depends on lr and wd; the energy is a function of
    lr only. Held out by configuration, hyperparameters + energy score no better than
    the hyperparameters alone, though the energy alone looks predictive."""
    rng = np.random.default_rng(1)
    lrs, wds, seeds = [1e-3, 2e-3, 5e-3, 1e-2], [0.0, 0.5, 1.0, 2.0], range(6)
    rows = [(lr, wd, s) for lr in lrs for wd in wds for s in seeds]
    lr, wd, seed = (np.array(c, dtype=float) for c in zip(*rows))
    logit = -4.0 * (np.log10(lr) + 2.5) + 0.5 * np.log10(np.maximum(wd, 1e-3)) + 1.0
    y = rng.random(len(lr)) < 1 / (1 + np.exp(-logit))
    energy = -np.log10(lr) + 0.02 * rng.normal(size=len(lr))
    hp = hyperparameter_features(lr, wd, np.full(len(lr), 0.5))
    configs = np.array([f"{a}-{b}" for a, b in zip(lr, wd)])
    auc = lambda X: roc_auc(y, cross_validate(X, y, configs, seed.astype(int)).score)
    a_hp, a_both, a_e = auc(hp), auc(np.column_stack([hp, energy])), auc(energy[:, None])
    assert a_e > 0.6 and a_hp > a_e
    assert abs(a_both - a_hp) < 0.03


def test_hyperparameter_features():
    X = hyperparameter_features([1e-3, 1e-2], [0.0, 1.0], [0.5, 0.3])
    np.testing.assert_allclose(X, [[-3, -3, 0.5, 9], [-2, 0, 0.3, 0]])
    with pytest.raises(ValueError, match="learning rates"):
        hyperparameter_features([0.0], [1.0], [0.5])


def test_stratified_concordance_counts_only_pairs_within_a_stratum():
    rng = np.random.default_rng(7)
    n = 30
    t, e, s = rng.integers(1, 9, n).astype(float), rng.random(n) < 0.7, rng.normal(size=n)
    g = rng.integers(0, 3, n)
    # oracle: brute force restricted to same-stratum pairs
    win = pairs = 0.0
    for i, j in itertools.permutations(range(n), 2):
        if g[i] == g[j] and e[i] and (t[i] < t[j] or (t[i] == t[j] and not e[j])):
            pairs += 1
            win += 1.0 if s[i] > s[j] else 0.5 if s[i] == s[j] else 0.0
    assert concordance_index(s, t, e, strata=g) == pytest.approx(win / pairs, abs=1e-12)
    # a score that is only the stratum's label orders nothing within strata
    assert concordance_index(g.astype(float), t, e, strata=g) == 0.5


@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (10, 10), (7, 24), (1, 1), (50, 200)])
@pytest.mark.parametrize("level", [0.9, 0.95])
def test_wilson_interval_is_scipys(k, n, level):
    from scipy.stats import binomtest

    from grokbook.stats import wilson_interval

    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    assert wilson_interval(k, n, level) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_wilson_interval_refuses_bad_counts():
    from grokbook.stats import wilson_interval

    for k, n in ((-1, 5), (6, 5), (0, 0), (1.5, 3)):
        with pytest.raises(ValueError):
            wilson_interval(k, n)
