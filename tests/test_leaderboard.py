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


# --- the leaderboard's features and table ---------------------------------------------

def test_steps_to_level_by_hand():
    loss = np.array([2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.2])
    assert lb.steps_to_level(loss, 7) == pytest.approx(np.log10(5))     # first <= 0.1 at step 4
    assert lb.steps_to_level(loss, 4) == pytest.approx(np.log10(5))     # never in 4 steps: censored at n + 1
    assert lb.steps_to_level(loss, 7, level=1.0) == pytest.approx(np.log10(2))
    with pytest.raises(ValueError):
        lb.steps_to_level(loss, 8)


def record(seed=0, lr=1e-2, wd=1.0, r=0.5, outcome="groks", n=400, decay=0.01, norm_in_window=True):
    """A corpus record with a planted exponential loss and a linear weight norm."""
    t = np.arange(n)
    steps = np.unique(np.round(np.geomspace(1, 4000, 200)).astype(int) - 1)
    rec = dict(hash=f"h{seed}{lr}", family="f", seed=seed, data_seed=seed, lr=lr, weight_decay=wd, r=r, p=31,
               window=(3.0 * np.exp(-decay * t)).astype(np.float32), curve_steps=steps,
               weight_norm=10.0 + 0.01 * steps, outcome=outcome, time=1000.0, event=outcome == "groks")
    rec["window_norm"] = (10.0 + 0.01 * t) if norm_in_window else float("nan")
    return rec


def test_record_features_read_every_entry_and_the_hyperparameters():
    from grokbook.stats import hyperparameter_features

    f = lb.record_features(record(), 400)
    assert set(f) >= {x for xs in lb.ENTRIES.values() for x in xs}
    assert [f[k] for k in lb.HYPERPARAMETERS] == pytest.approx(hyperparameter_features([1e-2], [1.0], [0.5])[0])
    assert f["norm_trend"] == pytest.approx((10 + 3.99) / (10 + 2.0) - 1)
    # 3 exp(-0.01 t) <= 0.1 first at t = ceil(100 ln 30) = 341
    assert f["log_steps_to_level"] == pytest.approx(np.log10(342))


def test_a_record_without_its_window_norm_interpolates_the_downsampled_curve():
    a, b = (lb.record_features(record(norm_in_window=k), 400) for k in (True, False))
    assert b["norm_trend"] == pytest.approx(a["norm_trend"], rel=1e-9)   # the norm is linear: exact


def test_feature_table_groups_the_seeds_of_one_configuration():
    import pandas as pd

    frame = pd.DataFrame([record(seed=s, lr=lr) for lr in (1e-2, 3e-2) for s in (0, 1)])
    tab = lb.feature_table(frame, 400)
    assert tab["group"].nunique() == 2 and (tab.groupby("group").size() == 2).all()
    assert tab["positive"].all() and list(tab.index) == list(frame.index)


def planted_table(n_conf=15, seeds=2, flip=None):
    """A feature table of three families whose outcome follows fall_4 (every other
    feature noise); fall_4's sign flips in family ``flip``."""
    import pandas as pd

    rng = np.random.default_rng(1)
    names = sorted({x for xs in lb.ENTRIES.values() for x in xs} | {"log_paper_energy"})
    rows = []
    for f in ("a", "b", "c"):
        for c in range(n_conf):
            for s in range(seeds):
                row = {k: rng.normal() for k in names}
                y = row["fall_4"] * (-1 if f == flip else 1) > 0
                rows.append(dict(row, family=f, group=f"{f}{c}{s}", positive=y, outcome="groks" if y else "memorizes",
                                 time=100.0 if y else 1000.0, event=y))
    return pd.DataFrame(rows)


def test_score_entries_on_planted_families():
    tab = planted_table()
    rows = lb.score_entries(tab, {"fall": ("fall_4",), "noise": ("rise_max",)}, raw=("fall_4",), n_boot=100)
    by = {(r["entry"], r["family"]): r for r in rows}
    for f in "abc":
        assert by["fall", f]["auc"][0] > 0.95 and by["fall", f]["brier"] < by["fall", f]["brier_base"]
        assert by["fall", f]["concordance"][0] > 0.95      # the positives generalize first
        assert by["+ fall_4", f]["auc"][0] == 1.0 and by["- fall_4", f]["auc"][0] == 0.0
        assert np.isnan(by["+ fall_4", f]["brier"])        # a raw score is no probability
        assert 0.2 < by["noise", f]["auc"][0] < 0.8
    flipped = {(r["entry"], r["family"]): r for r in lb.score_entries(planted_table(flip="c"), {"fall": ("fall_4",)},
                                                                       raw=(), n_boot=100)}
    assert flipped["fall", "c"]["auc"][2] < 0.2


def test_score_entries_leave_out_runs_with_a_missing_feature_and_score_given_probabilities():
    tab = planted_table()
    tab.loc[0, "fall_16"] = np.nan
    p = np.where(tab["positive"], 0.9, 0.1)
    rows = lb.score_entries(tab, {"fall": ("fall_4",)}, raw=(), scored={"given": p}, n_boot=50)
    by = {(r["entry"], r["family"]): r for r in rows}
    assert by["fall", "a"]["n"] == 30                   # fall_16 is read by no entry here: row 0 kept
    rows = lb.score_entries(tab, {"fall": ("fall_4", "fall_16")}, raw=(), scored={"given": p}, n_boot=50)
    by = {(r["entry"], r["family"]): r for r in rows}
    assert by["fall", "a"]["n"] == 29 and by["given", "a"]["n"] == 29
    assert by["given", "b"]["auc"][0] == 1.0 and by["given", "b"]["brier"] == pytest.approx(0.01)
    assert len(by["fall", "a"]["p"]) == len(by["fall", "a"]["y"]) == 29


def test_score_entries_on_chosen_families_equals_those_families_rows_and_an_outside_family_is_fitted_on_the_rest():
    from sklearn.linear_model import LogisticRegression

    tab = planted_table()
    full = {(r["entry"], r["family"]): r for r in lb.score_entries(tab, {"fall": ("fall_4",)}, n_boot=50)}
    (only,) = [r for r in lb.score_entries(tab, {"fall": ("fall_4",)}, raw=(), n_boot=50, families=["c"])]
    assert only["family"] == "c" and only["auc"] == full["fall", "c"]["auc"]
    assert np.array_equal(only["p"], full["fall", "c"]["p"])
    # family c scored by a standardized logistic regression fitted on a and b: by hand
    train, test = tab[tab.family != "c"], tab[tab.family == "c"]
    x = train[["fall_4"]].to_numpy()
    m, sd = x.mean(0), x.std(0)
    model = LogisticRegression(C=1.0).fit((x - m) / sd, train["positive"])
    assert only["p"] == pytest.approx(model.predict_proba((test[["fall_4"]].to_numpy() - m) / sd)[:, 1])
    with pytest.raises(ValueError, match="no scorable runs of the families \\['d'\\]"):
        lb.score_entries(tab, {"fall": ("fall_4",)}, n_boot=10, families=["d"])


def _row(entry, family, auc, lo, hi, brier=0.2, base=0.25, n=10):
    return dict(entry=entry, family=family, n=n, n_pos=n // 2, auc=(auc, lo, hi), brier=brier, brier_base=base)


def test_with_hyperparameters_target_every_branch():
    rows = [_row("e", "a", 0.85, 0.7, 0.9), _row("e", "b", 0.81, 0.6, 0.9), _row("e", "c", *(float("nan"),) * 3)]
    assert lb.with_hyperparameters_target(rows, "e").startswith("met: AUC at least 0.80 on all 2")
    rows[1] = _row("e", "b", 0.79, 0.6, 0.9)
    text = lb.with_hyperparameters_target(rows, "e")
    assert text.startswith("not met") and "(b)" in text
    assert lb.with_hyperparameters_target(rows[2:], "e").startswith("not testable")
    with pytest.raises(ValueError, match="no rows"):
        lb.with_hyperparameters_target(rows, "other")


def test_loss_only_target_every_branch():
    six = [_row("e", f, 0.7, 0.55, 0.8) for f in "abcd"] + [_row("e", f, 0.6, 0.45, 0.7) for f in "ef"]
    assert lb.loss_only_target(six, "e").startswith("met: interval above 0.5 on 4 of 6 held-out families (needs 4")
    three_above = [_row("e", f, 0.7, 0.55, 0.8) for f in "abc"] + [_row("e", f, 0.6, 0.45, 0.7) for f in "def"]
    assert lb.loss_only_target(three_above, "e").startswith("not met")
    worse = [dict(r, brier=0.3) for r in six]              # ranks well, but no better than the base rate
    assert lb.loss_only_target(worse, "e").startswith("not met") and "Brier 0.300" in lb.loss_only_target(worse, "e")
    # pooled Brier weighs each family by its runs: 0.1 x 90 + 0.4 x 10 = 0.13 against 0.25
    pooled = [_row("e", "a", 0.7, 0.6, 0.8, brier=0.1, n=90), _row("e", "b", 0.7, 0.6, 0.8, brier=0.4, n=10)]
    assert "Brier 0.130" in lb.loss_only_target(pooled, "e")
    assert lb.loss_only_target([_row("e", "a", *(float("nan"),) * 3)], "e").startswith("not testable")


def test_fit_corpus_is_a_logistic_regression_on_the_finite_records():
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    recs = [record(seed=s, lr=lr, decay=d, outcome="groks" if d > 0.012 else "memorizes")
            for s in (0, 1) for lr in (1e-2, 3e-2) for d in (0.008, 0.01, 0.014, 0.018)]
    recs.append(record(seed=5, decay=0.0001))            # no 0.3-decade fall: left out
    frame = pd.DataFrame(recs).assign(family=["a"] * 8 + ["b"] * 8 + ["a"])
    pred = lb.fit_corpus(frame, ("fall_4", "log_lr"), 400)
    assert pred.meta["runs"] == 16 and pred.meta["left_out"] == 1 and pred.meta["families"] == {"a": 8, "b": 8}
    tab = lb.feature_table(frame.iloc[:16], 400)
    X = tab[["fall_4", "log_lr"]].to_numpy()
    mean, sd = X.mean(0), X.std(0)
    oracle = LogisticRegression(C=1.0).fit((X - mean) / sd, tab.positive)
    assert pred.coef == pytest.approx(oracle.coef_[0], rel=1e-6)
    assert pred.predict_proba(np.stack(tab.index.map(lambda i: frame.window[i])), dict(
        lr=frame.lr[:16], weight_decay=frame.weight_decay[:16], r=frame.r[:16])) == pytest.approx(
        oracle.predict_proba((X - mean) / sd)[:, 1], rel=1e-6)


def test_targets_can_leave_out_families_with_few_runs_of_a_class():
    rows = [_row("e", "a", 0.9, 0.7, 1.0), _row("e", "b", 0.6, 0.4, 0.8)]
    rows[1]["n_pos"] = 1
    rows[0]["n_pos"] = 5
    assert lb.with_hyperparameters_target(rows, "e").startswith("not met")
    assert lb.with_hyperparameters_target(rows, "e", min_class=5).startswith("met: AUC at least 0.80 on all 1")
    assert lb.loss_only_target(rows, "e", min_class=5).startswith("met: interval above 0.5 on 1 of 1")
    assert lb.loss_only_target(rows, "e", min_class=6).startswith("not testable")


def test_paired_gain_against_a_baseline():
    tab = planted_table()
    rows = lb.score_entries(tab, {"fall": ("fall_4",), "fall again": ("fall_4",), "noise": ("rise_max",)}, raw=(),
                            n_boot=50)
    same = lb.paired_gain(rows, "fall", "fall again", n_boot=100)
    assert all(v == (0.0, 0.0, 0.0) for v in same.values())
    better = lb.paired_gain(rows, "fall", "noise", n_boot=200)
    assert all(lo > 0.2 for _, lo, _ in better.values())
    with pytest.raises(ValueError, match="no rows"):
        lb.paired_gain(rows, "fall", "absent")


def test_gain_verdict_every_branch():
    assert lb.gain_verdict((0.05, 0.01, 0.1)) == "adds: +0.050 [+0.010, +0.100]"
    assert lb.gain_verdict((0.05, 0.0, 0.1)) == "does not add: +0.050 [+0.000, +0.100]"  # 0 is not above 0
    assert lb.gain_verdict((-0.044, -0.177, 0.073)) == "does not add: -0.044 [-0.177, +0.073]"
    assert lb.gain_verdict((float("nan"),) * 3) == "not testable: one outcome"
