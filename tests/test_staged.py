"""grokbook.staged and StagedGrokkingPruner: features by hand, the per-point fits against
scikit-learn, thresholds that keep the stated share of positives, JSON, and the pruner in
a real Optuna study on planted trials (pruned at the first point that says no, kept
otherwise; a NaN prunes at once; no validation reported: kept, with a warning)."""

import numpy as np
import optuna
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from grokbook.pruning import StagedGrokkingPruner, report_validation
from grokbook.staged import POINTS, STAGED_FEATURES, StagedPredictor, record_matrix, staged_features

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_staged_features_by_hand():
    t = np.arange(0, 1001)
    loss = 10.0 ** (-t / 100)                     # log10 loss falls 1 decade per 100 steps
    vs, va = [0, 100, 300, 500], [0.0, 0.1, 0.5, 0.4]
    x = staged_features(t, loss, vs, va, 400)
    assert x == pytest.approx([-4.0, -2.0, 0.5, 0.5 - 0.1, 0.5])   # val at 300; at or before 200: 0.1
    # a downsampled curve interpolates log10 loss linearly: exact for this curve
    assert staged_features(t[::50], loss[::50], vs, va, 425) == pytest.approx(
        [-4.25, -2.125, 0.5, 0.4, 0.5])
    with pytest.raises(ValueError, match="no validation"):
        staged_features(t, loss, [500], [0.3], 400)
    with pytest.raises(ValueError, match="reported from step"):
        staged_features(t[300:], loss[300:], vs, va, 400)


def planted(n=80, seed=0):
    """Runs whose outcome follows their validation accuracy at every point, with noise."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.5
    X = rng.normal(size=(n, len(POINTS), len(STAGED_FEATURES)))
    X[:, :, 2] += 1.5 * y[:, None]
    return X, y


def test_fit_is_one_logistic_regression_per_point_and_keeps_the_recall():
    X, y = planted()
    pred = StagedPredictor.fit(X, y, recall=0.9)
    for k in range(len(POINTS)):
        m, sd = X[:, k].mean(0), X[:, k].std(0)
        oracle = LogisticRegression().fit((X[:, k] - m) / sd, y)
        assert pred.coef[k] == pytest.approx(oracle.coef_[0], rel=1e-6)
        p = pred.proba(X[:, k], k)
        assert p == pytest.approx(oracle.predict_proba((X[:, k] - m) / sd)[:, 1], rel=1e-6)
        assert (p[y] >= pred.threshold[k]).mean() >= 0.9 and (p[y] >= pred.threshold[k]).mean() < 0.9 + 2 / y.sum()
    strict = pred.with_recall(X, y, 1.0)
    assert all((strict.proba(X[y, k], k) >= strict.threshold[k]).all() for k in range(len(POINTS)))
    with pytest.raises(ValueError, match="runs, points, features"):
        StagedPredictor.fit(X[:, :2], y)


def test_json_round_trip(tmp_path):
    X, y = planted()
    pred = StagedPredictor.fit(X, y)
    pred.save(tmp_path / "s.json")
    back = StagedPredictor.load(tmp_path / "s.json")
    assert back.points == pred.points and back.threshold == pytest.approx(pred.threshold)
    assert back.proba(X[:5, 1], 1) == pytest.approx(pred.proba(X[:5, 1], 1))
    (tmp_path / "bad.json").write_text('{"format": "grokbook.StagedPredictor/1", "points": [0.1]}')
    with pytest.raises(ValueError, match="malformed"):
        StagedPredictor.load(tmp_path / "bad.json")


def test_record_matrix_reads_each_record_at_its_own_budget():
    t = np.arange(0, 2001, 10)
    rec = dict(curve_steps=t, train_loss=10.0 ** (-t / 1000), val_steps=[0, 50, 150, 700], val_acc=[0, 0.2, 0.3, 0.9],
               steps=2000)
    M = record_matrix(pd.DataFrame([rec]))
    assert M.shape == (1, 4, 5)
    assert M[0, 0] == pytest.approx(staged_features(t, rec["train_loss"], rec["val_steps"], rec["val_acc"], 100))
    assert M[0, 2, 2:] == pytest.approx([0.3, 0.0, 0.3])   # at 20% (step 400): 150 both times
    assert M[0, 3, 2:] == pytest.approx([0.9, 0.6, 0.9])   # at 40% (step 800): at 700, against 150


def hand_predictor(threshold=0.5):
    """P(generalizes) rises with the validation accuracy alone: 0.5 at accuracy 0.5."""
    P, k = len(POINTS), len(STAGED_FEATURES)
    coef = np.zeros((P, k))
    coef[:, 2] = 10.0
    return StagedPredictor(POINTS, np.zeros((P, k)), np.ones((P, k)), coef, np.full(P, -5.0), np.full(P, threshold),
                           0.99, "positive")


def study_of(curves, pruner, val=True):
    """One trial per (loss, val_acc) curve pair, 100 steps each, reported every step,
    validation every 5 steps."""
    stopped = {}

    def objective(trial):
        loss, acc = curves[trial.number]
        for s in range(100):
            if val and s % 5 == 0:
                report_validation(trial, s, acc[s])
            trial.report(loss[s], s)
            if trial.should_prune():
                stopped[trial.number] = s
                raise optuna.TrialPruned()
        return float(acc[-1])

    study = optuna.create_study(direction="maximize", pruner=pruner)
    study.optimize(objective, n_trials=len(curves))
    return stopped


def test_the_pruner_stops_at_the_first_point_that_says_no():
    t = np.arange(100)
    loss = np.exp(-t / 30) + 0.01
    good = (loss, np.where(t >= 3, 0.9, 0.0))              # generalizes before the first point (step 5)
    late = (loss, np.where(t >= 12, 0.9, 0.0))             # generalizes between the points at 10 and 20
    never = (loss, np.zeros(100))
    bad = (np.where(t == 30, np.nan, loss), np.full(100, 0.9))
    stopped = study_of([good, late, never, bad], StagedGrokkingPruner(hand_predictor(), budget=100))
    # points at steps 5, 10, 20, 40: 'late' is at 0 by step 5, so it is pruned there
    assert stopped == {1: 5, 2: 5, 3: 30}
    stopped = study_of([late], StagedGrokkingPruner(hand_predictor(threshold=0.0), budget=100))
    assert stopped == {}


def test_a_trial_that_reports_no_validation_is_kept_with_a_warning():
    t = np.arange(100)
    with pytest.warns(UserWarning, match="undecided: no validation accuracy"):
        stopped = study_of([(np.exp(-t / 30) + 0.01, np.zeros(100))], StagedGrokkingPruner(hand_predictor(), 100),
                           val=False)
    assert stopped == {}
