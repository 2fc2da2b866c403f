"""grokbook.predict against independent oracles: sklearn's ROC AUC, the analytic
standard error of a mean, closed-form slopes and Hjorth parameters of known signals."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from grokbook import RunConfig
from grokbook.predict import (FEATURES, bootstrap_ci, config_id, cross_validate, early_features, feature_matrix,
                              generalized, roc_auc, search_cost)
from grokbook.spectral import hjorth
from grokbook.trainer import Run


def test_roc_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.random(40) < 0.4
        y[:2] = [True, False]
        s = rng.integers(0, 5, 40).astype(float)  # many ties
        assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_roc_auc_extremes_and_errors():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="1-D of one length"):
        roc_auc([1, 0, 1], [0.1, 0.2])


def test_bootstrap_ci_of_a_mean_matches_the_standard_error():
    x = np.random.default_rng(1).normal(3.0, 2.0, 400)
    est, lo, hi = bootstrap_ci(np.mean, x, n_boot=2000)
    se = x.std(ddof=1) / np.sqrt(len(x))
    assert est == pytest.approx(x.mean())
    assert lo == pytest.approx(x.mean() - 1.96 * se, abs=0.25 * se)
    assert hi == pytest.approx(x.mean() + 1.96 * se, abs=0.25 * se)


def test_cluster_bootstrap_is_wider_for_correlated_groups():
    # 40 groups of 10 identical values: the effective sample size is 40, not 400.
    g = np.repeat(np.arange(40), 10)
    x = np.random.default_rng(2).normal(0, 1, 40)[g]
    _, lo_i, hi_i = bootstrap_ci(np.mean, x, n_boot=1000)
    _, lo_g, hi_g = bootstrap_ci(np.mean, x, groups=g, n_boot=1000)
    se_groups = x[::10].std(ddof=1) / np.sqrt(40)
    assert (hi_g - lo_g) == pytest.approx(2 * 1.96 * se_groups, rel=0.2)
    assert (hi_g - lo_g) > 2.5 * (hi_i - lo_i)


def test_bootstrap_ci_errors():
    with pytest.raises(ValueError, match="same length"):
        bootstrap_ci(np.mean, np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="failed"):
        bootstrap_ci(lambda x: float("nan"), np.ones(10), n_boot=50)


def _toy(n_configs=30, n_seeds=2, informative=True, seed=0):
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n_configs)
    configs = np.repeat(np.arange(n_configs), n_seeds)
    seeds = np.tile(np.arange(n_seeds), n_configs)
    x = signal[configs] + 0.3 * rng.normal(size=len(configs))
    y = (signal[configs] > 0) if informative else rng.random(len(configs)) < 0.5
    return np.c_[x, rng.normal(size=len(configs))], y, configs, seeds


def test_cross_validate_separates_an_informative_feature():
    X, y, configs, seeds = _toy()
    held = cross_validate(X, y, configs, seeds)
    assert held.evaluated.all()
    assert roc_auc(y, held.score) > 0.9
    # The threshold keeps about 90% of the positives.
    assert held.passed[y].mean() >= 0.75


def test_cross_validate_finds_nothing_in_noise():
    aucs = []
    for s in range(10):
        X, y, configs, seeds = _toy(informative=False, seed=s)
        aucs.append(roc_auc(y, cross_validate(X, y, configs, seeds).score))
    assert abs(np.mean(aucs) - 0.5) < 0.1


def test_cross_validate_never_fits_on_the_evaluated_config_or_seed(monkeypatch):
    X, y, configs, seeds = _toy(n_configs=40)
    from sklearn.pipeline import Pipeline

    fitted = []
    orig = Pipeline.fit

    def spy(self, Xt, yt, **kw):
        fitted.append(np.array(Xt))
        return orig(self, Xt, yt, **kw)

    monkeypatch.setattr(Pipeline, "fit", spy)
    held = cross_validate(X, y, configs, seeds, n_folds=5)
    assert held.evaluated.all() and len(fitted) == 5 * 2
    # Every fit saw 4/5 of the configs with one seed: 32 runs. Which runs they were is
    # recovered from the (continuous, all distinct) features; none was among the runs
    # that fit scored, i.e. no (config, seed) is on both sides.
    row_of = {tuple(np.round(r, 12)): i for i, r in enumerate(X)}
    fits = [np.array([row_of[tuple(np.round(r, 12))] for r in f]) for f in fitted]
    assert all(len(rows) == 32 and len(set(seeds[rows])) == 1 for rows in fits)
    # Each (held-out fold, seed) pair is scored by a fit that saw neither: over the
    # 10 fits, every config is unseen by exactly 2 (its fold, once per seed), and
    # every fit's unseen configs number 8.
    unseen = [set(configs) - set(configs[rows]) for rows in fits]
    assert all(len(u) == 8 for u in unseen)
    assert all(sum(c in u for u in unseen) == 2 for c in set(configs))


def test_nested_cross_validate_picks_the_informative_candidate():
    from grokbook.predict import nested_cross_validate

    X, y, configs, seeds = _toy(n_configs=40)
    noise = np.random.default_rng(5).normal(size=X.shape)
    held, chosen = nested_cross_validate({"noise": noise, "signal": X}, y, configs, seeds, n_folds=5)
    assert chosen == ["signal"] * 5
    assert held.evaluated.all() and roc_auc(y, held.score) > 0.9


def test_nested_selection_among_noise_is_not_optimistic():
    """Five pure-noise candidates: picking the best by its held-out AUC is biased up;
    choosing inside the folds is not (mean AUC over 12 data sets near 0.5)."""
    from grokbook.predict import nested_cross_validate

    nested, naive = [], []
    for s in range(12):
        _, y, configs, seeds = _toy(n_configs=30, informative=False, seed=s)
        rng = np.random.default_rng(100 + s)
        cands = {k: rng.normal(size=(len(y), 1)) for k in range(5)}
        held, _ = nested_cross_validate(cands, y, configs, seeds, n_folds=5)
        nested.append(roc_auc(y, held.score))
        naive.append(max(roc_auc(y, cross_validate(c, y, configs, seeds).score) for c in cands.values()))
    assert abs(np.mean(nested) - 0.5) < 0.06
    assert np.mean(naive) > np.mean(nested) + 0.04


def test_nested_choice_never_sees_the_fold_it_scores(monkeypatch):
    import grokbook.predict as predict

    X, y, configs, seeds = _toy(n_configs=25)
    seen = []
    orig = predict._inner_auc
    monkeypatch.setattr(predict, "_inner_auc", lambda X, y, c, s, k, seed: (seen.append(set(c)), orig(X, y, c, s, k, seed))[1])
    held, chosen = predict.nested_cross_validate({"a": X, "b": X[:, ::-1]}, y, configs, seeds, n_folds=5, seed=3)
    fold = predict._config_folds(configs, 5, 3)
    np.testing.assert_array_equal(held.fold, fold)
    assert len(seen) == 10 and len(chosen) == 5
    for k in range(5):
        held_out = set(configs[fold == k])
        assert all(not (c & held_out) and len(c) == 20 for c in seen[2 * k:2 * k + 2])


def test_cross_validate_errors():
    X, y, configs, seeds = _toy(n_configs=4)
    with pytest.raises(ValueError, match="cannot fill"):
        cross_validate(X, y, configs, seeds, n_folds=5)
    with pytest.raises(ValueError, match="same n runs"):
        cross_validate(X[:-1], y, configs, seeds, n_folds=2)
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        cross_validate(X, y, configs, seeds, n_folds=2)


def test_search_cost():
    assert search_cost([True, False, False, False], 100, 1000) == pytest.approx((4 * 100 + 900) / 4000)
    assert search_cost([True] * 3, 1000, 1000) == 1.0
    with pytest.raises(ValueError):
        search_cost([True], 0, 10)
    # a window per run: (100 + 900) + 200 + 50 over 3 runs of 1000
    assert search_cost([True, False, False], [100, 200, 50], 1000) == pytest.approx(1250 / 3000)
    with pytest.raises(ValueError, match="n <= steps"):
        search_cost([True, False], [10, 2000], 1000)


def _fake_run(loss, norm, val_steps, val_loss, val_acc=1.0, diverged_at=None, seed=0):
    steps = len(loss)
    metrics = {k: np.zeros(steps) for k in ("train_acc", "grad_norm", "last_layer_norm")}
    metrics.update(train_loss=np.asarray(loss, float), weight_norm=np.asarray(norm, float))
    return Run(config=RunConfig(seed=seed), metrics=metrics, val_steps=np.asarray(val_steps),
               val_loss=np.asarray(val_loss, float), val_acc=np.full(len(val_steps), val_acc),
               snapshot_steps=np.array([0]), snapshots=np.zeros((1, 3), np.float32),
               diverged_at=diverged_at, wall_time_s=0.0)


def test_early_features_on_signals_with_known_answers():
    n = 400
    t = np.arange(1000)
    # A slow swing (2 cycles per window, below the cut-off) plus a fast sinusoid (40
    # cycles, above it): the high-pass keeps exactly the fast one.
    wiggle = 0.01 * np.sin(2 * np.pi * 0.1 * t)
    loss = 1.0 + 0.5 * np.sin(2 * np.pi * 2 * t / n) + wiggle
    norm = 5.0 * (1 + 0.001 * t)
    vs = np.arange(0, 1000, 10)
    run = _fake_run(loss, norm, vs, 2.0 * np.maximum(vs, 1) ** 0.5)
    f = early_features(run, n, method="highpass:0.05")
    assert set(f) == set(FEATURES)
    h = hjorth(wiggle[:n])
    assert f["log_activity"] == pytest.approx(np.log10(h.activity), abs=1e-9)
    assert f["mobility"] == pytest.approx(h.mobility, rel=1e-9)
    assert f["complexity"] == pytest.approx(h.complexity, rel=1e-9)
    # 20 whole cycles of the fast sinusoid and one of the slow swing in the second half
    assert f["log_activity_late"] == pytest.approx(np.log10(hjorth(wiggle[200:400]).activity), abs=1e-9)
    assert f["norm_trend"] == pytest.approx((1 + 0.399) / (1 + 0.2) - 1, rel=1e-9)
    assert f["val_loss_trend"] == pytest.approx(0.5, abs=1e-9)
    assert f["log_loss_level"] == pytest.approx(np.log10(loss[360:400].mean()))
    # Whole cycles only, so the cross terms vanish: n (1 + 0.5^2 / 2 + 0.01^2 / 2).
    assert f["log_paper_energy"] == pytest.approx(np.log10(n * (1 + 0.125 + 0.00005)), abs=1e-12)
    # A power law t^-1 falls one decade per decade.
    power = _fake_run(10.0 / np.maximum(t, 1), norm, vs, np.ones(len(vs)))
    assert early_features(power, n)["loss_slope"] == pytest.approx(-1.0, abs=1e-9)


def test_early_features_refuses_a_diverged_window_and_feature_matrix_skips_it():
    t = np.arange(300)
    loss = 1.0 / (1 + t)
    bad = loss.copy()
    bad[100:] = np.nan
    good = _fake_run(loss, np.ones(300), np.arange(0, 300, 5), np.ones(60))
    diverged = _fake_run(bad[:101], np.ones(101), np.arange(0, 100, 5), np.ones(20), diverged_at=100)
    with pytest.raises(ValueError, match="no 200 finite steps"):
        early_features(diverged, 200)
    X, ok = feature_matrix([good, diverged], 200)
    assert ok.tolist() == [True, False]
    assert np.isfinite(X[0]).all() and np.isnan(X[1]).all()
    # diverged after the window: features are computed, the label is negative
    late = _fake_run(loss, np.ones(300), np.arange(0, 300, 5), np.ones(60), diverged_at=250)
    assert feature_matrix([late], 200)[1].tolist() == [True]
    assert not generalized(late) and generalized(good)
    with pytest.raises(ValueError, match="too short"):
        early_features(good, 10)


def test_config_id_ignores_only_the_seeds():
    a = _fake_run(np.ones(30), np.ones(30), [0, 10], [1, 1], seed=0)
    b = _fake_run(np.ones(30), np.ones(30), [0, 10], [1, 1], seed=5)
    assert config_id(a) == config_id(b)
    split = Run(**{**b.__dict__, "config": b.config.replace(data_seed=5)})
    assert config_id(split) == config_id(a)
    c = Run(**{**a.__dict__, "config": a.config.replace(lr=0.5)})
    assert config_id(c) != config_id(a)
