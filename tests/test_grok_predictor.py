"""GrokPredictor and curve_features against independent oracles: closed-form features
of known curves, scikit-learn's own pipeline, and the book's sweep re-trained."""

import dataclasses
import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from grokbook import RunConfig, sweep
from grokbook.notebooks import get_chapter
from grokbook.phases import run_outcome
from grokbook.experiments.book_grid import BOOK_GRID, BOOK_MODEL, book_sweep
from grokbook.predict import (LOSS_ONLY, POSITIVE, GrokPredictor,
                              curve_features, early_features)


def test_curve_features_of_known_curves():
    step = np.arange(400, dtype=float)
    loss = np.maximum(step, 1) ** -0.5  # a power law of the step (step 0 outside the fitted half)
    f = curve_features(loss, 400, "taper:0.02")
    assert f["loss_slope"] == pytest.approx(-0.5, abs=1e-9)  # a power law's log-log slope
    assert f["log_paper_energy"] == pytest.approx(np.log10(1 + np.sum(1 / step[1:])), rel=1e-12)
    assert f["log_loss_level"] == pytest.approx(np.log10(np.mean(step[-40:] ** -0.5)), rel=1e-12)
    flat = curve_features(np.full(100, 2.0), 100)
    assert flat["log_paper_energy"] == pytest.approx(np.log10(400.0))
    assert flat["loss_slope"] == pytest.approx(0.0, abs=1e-12)
    assert set(f) == set(LOSS_ONLY)  # nothing that needs more than the loss


def test_curve_features_uses_only_the_window():
    rng = np.random.default_rng(0)
    curve = rng.random(300) + 1
    longer = np.concatenate([curve[:200], np.full(500, np.nan)])
    assert curve_features(curve, 200) == curve_features(longer, 200)


@pytest.mark.parametrize("curve, message", [
    (np.ones(150), "has 150 steps, fewer than the window of 200"),
    (np.r_[np.ones(50), np.nan, np.ones(200)], "not finite at step 50"),
    (np.ones((2, 300)), "1-D"),
])
def test_curve_features_errors_name_the_problem(curve, message):
    with pytest.raises(ValueError, match=message):
        curve_features(curve, 200)


def test_early_features_of_a_run_are_its_curve_features(tiny):
    run = sweep([tiny.replace(steps=60)])[0]
    f = early_features(run, 40, "taper:0.02")
    g = curve_features(run.metrics["train_loss"], 40, "taper:0.02")
    assert {k: f[k] for k in g} == g
    assert {"norm_trend", "val_loss_trend"} <= set(f)


def _synthetic(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)) * [1.0, 5.0, 0.1] + [0.0, 3.0, -1.0]
    s = X @ [1.0, -0.3, 8.0] + rng.normal(size=n)
    return X, s > -9.5


def test_fit_matches_sklearn_pipeline_and_keeps_its_recall():
    X, y = _synthetic()
    names = ("log_loss_level", "loss_slope", "mobility")
    pred = GrokPredictor.fit(X, y, names, window=50, detrend="taper:0.02", recall=0.9)
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=1.0)).fit(X, y)
    X_new = _synthetic(40, seed=1)[0]
    assert pred.proba_from_features(X_new) == pytest.approx(ref.predict_proba(X_new)[:, 1], abs=1e-10)
    kept = (pred.proba_from_features(X[y]) >= pred.threshold).mean()
    assert 0.9 <= kept <= 0.9 + 2 / y.sum()


def test_fit_refuses_bad_input():
    X, y = _synthetic()
    with pytest.raises(ValueError, match="must be"):
        GrokPredictor.fit(X[:, :2], y, ("log_loss_level", "loss_slope", "mobility"), 50, "taper:0.02")
    with pytest.raises(ValueError, match="unknown features"):
        GrokPredictor.fit(X, y, ("a", "b", "c"), 50, "taper:0.02")
    with pytest.raises(ValueError, match="2 runs of each class"):
        GrokPredictor.fit(X, np.ones(len(y), bool), ("log_loss_level", "loss_slope", "mobility"), 50, "linear")


def test_save_load_round_trip_and_malformed_files(tmp_path):
    X, y = _synthetic()
    pred = GrokPredictor.fit(X, y, ("log_loss_level", "loss_slope", "mobility"), 50, "taper:0.02",
                             configs=[{"i": i} for i in range(len(y))])
    path = tmp_path / "p.json"
    pred.save(path)
    back = GrokPredictor.load(path)
    assert back.proba_from_features(X) == pytest.approx(pred.proba_from_features(X), abs=0)
    assert back.threshold == pred.threshold and back.features == pred.features
    assert np.array_equal(back.training["y"], y) and back.training["configs"][3] == {"i": 3}
    d = json.loads(path.read_text())
    for broken, message in [({**d, "format": "x"}, "not a grokbook predictor"),
                            ({k: v for k, v in d.items() if k != "coef"}, "malformed"),
                            ({**d, "coef": d["coef"][:2]}, "malformed"),
                            ({**d, "scale": [float("nan")] * 3}, "malformed")]:
        path.write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=message):
            GrokPredictor.load(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read a predictor"):
        GrokPredictor.load(path)


def test_predict_proba_takes_one_curve_a_matrix_or_curves_of_any_length():
    pred = GrokPredictor.book_sweep()
    rng = np.random.default_rng(3)
    curves = np.exp(-np.linspace(0, 5, 300))[None] * (1 + 0.05 * rng.random((3, 300)))
    p = pred.predict_proba(curves)
    assert p.shape == (3,) and np.all((0 < p) & (p < 1))
    assert pred.predict_proba(curves[1]) == pytest.approx(p[1:2])
    assert pred.predict_proba([curves[0], curves[2, :250]]) == pytest.approx(p[[0, 2]])
    assert np.array_equal(pred.predict(curves), p >= pred.threshold)
    with pytest.raises(ValueError, match="curve 1: .*fewer than the window"):
        pred.predict_proba([curves[0], curves[1, :100]])


def test_book_sweep_is_the_chapters_default_sweep():
    for name in ("spectral", "predict"):
        params = {k: p.default for k, p in get_chapter(name).parameters.items()}
        for field in BOOK_MODEL:
            assert params[field] == BOOK_MODEL[field], (name, field)
        assert tuple(params["lrs"]) == BOOK_GRID["lr"] and tuple(params["weight_decays"]) == BOOK_GRID["weight_decay"]
        assert tuple(params["rs"]) == BOOK_GRID["r"] and tuple(params["seeds"]) == BOOK_GRID["seeds"]
    assert len({c.hash() for c in book_sweep()}) == 420


def test_the_book_sweep_predictor_is_regenerated_from_its_table_and_its_runs():
    pred = GrokPredictor.book_sweep()
    t = pred.training
    assert pred.meta["runs"] == len(t["y"]) == len(book_sweep())
    assert {RunConfig.from_dict(c).hash() for c in t["configs"]} == {c.hash() for c in book_sweep()}
    again = GrokPredictor.fit(t["X"], t["y"], pred.features, pred.window, pred.detrend, recall=pred.recall)
    assert again.coef == pytest.approx(pred.coef, abs=1e-8)
    assert again.intercept == pytest.approx(pred.intercept, abs=1e-8)
    assert again.threshold == pytest.approx(pred.threshold, abs=1e-8)
    # two runs of the table, one of each label, re-trained: the same features and labels
    configs = [RunConfig.from_dict(c) for c in t["configs"]]
    i = 0
    j = next(k for k, c in enumerate(configs) if t["y"][k] != t["y"][i] and c.r == configs[i].r
             and c.seed == configs[i].seed)
    runs = sweep([configs[i], configs[j]])
    for k, run in zip((i, j), runs):
        # Bit-identical on the CPU that made the table; on another CPU its kernels round
        # differently and 200 steps of training amplify that in the high-pass features
        # (an AMD EPYC: complexity 7.1 against 3.2), not in the raw energy of the window.
        f = early_features(run, pred.window, pred.detrend)
        if [f[n] for n in pred.features] != pytest.approx(t["X"][k], rel=1e-9, abs=1e-12):
            e = pred.features.index("log_paper_energy")
            assert f["log_paper_energy"] == pytest.approx(t["X"][k][e], abs=1e-3)
        assert (run_outcome(run, 5.0) in POSITIVE) == t["y"][k]


# ---------------------------------------------------------------------------------------
# assess: a predictor that says when it does not know
# ---------------------------------------------------------------------------------------

def _falling(start=3.4, fall=3.0, steps=300, seed=0):
    """A loss that falls from ``start`` by a factor ``e ** fall`` over ``steps``, with 5% noise."""
    rng = np.random.default_rng(seed)
    return start * np.exp(-np.linspace(0, fall, steps)) * (1 + 0.05 * rng.random(steps))


@pytest.mark.parametrize("curve", [np.full(300, 3.85),  # flat
                                   np.log(97) + 1e-3 * np.random.default_rng(1).standard_normal(300)],  # lr 1e-5
                         ids=["flat 3.85", "near log(97), like lr 1e-5"])
def test_a_curve_whose_loss_has_not_fallen_never_fits(curve):
    pred = GrokPredictor.book_sweep()
    a = pred.assess(curve)[0]
    assert a.verdict == "never fits" and a.probability is None and not a.scored
    assert "ratio 1.00" in a.reason and "never fits at 0.9" in a.reason
    assert np.isfinite(pred.predict_proba(curve)[0])  # predict_proba still scores it, as before


def test_the_never_fits_rule_is_the_named_ratio():
    from grokbook.predict import FIT_CHECK_FRACTION, NEVER_FITS_RATIO

    pred = dataclasses.replace(GrokPredictor.book_sweep(), feature_stats=None)
    n, k = pred.window, int(pred.window * FIT_CHECK_FRACTION)
    for ratio, never in [(NEVER_FITS_RATIO + 0.01, True), (NEVER_FITS_RATIO - 0.01, False)]:
        curve = np.r_[np.linspace(2.0, 2.0 * ratio, n - k), np.full(k + 100, 2.0 * ratio)]
        curve[:k] = 2.0  # first tenth at 2.0, last tenth at 2.0 * ratio
        assert (pred.assess(curve)[0].verdict == "never fits") == never, ratio


def test_zeros_are_undetermined_not_nan():
    a = GrokPredictor.book_sweep().assess(np.zeros(300))[0]
    assert a.verdict == "undetermined" and a.probability is None
    assert "not positive" in a.reason and "nan" not in a.reason.lower()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_nan_or_inf_in_the_window_is_diverged(bad):
    pred = GrokPredictor.book_sweep()
    curve = _falling()
    curve[57] = bad
    a = pred.assess(curve)[0]
    assert a.verdict == "diverged" and a.probability is None and "at step 57" in a.reason
    later = _falling()
    later[pred.window + 5] = bad  # after the window: not seen
    assert pred.assess(later)[0].verdict != "diverged"


def test_a_feature_far_outside_the_fitted_range_is_undetermined_and_named():
    pred = GrokPredictor.book_sweep()
    lo, hi = pred.feature_stats["min"], pred.feature_stats["max"]
    j = pred.features.index("log_paper_energy")
    a = pred.assess(_falling(start=np.log(97), fall=1.0))[0]  # a vocabulary of 97: a higher loss than any fitted run
    x = a.features["log_paper_energy"]
    assert x > hi[j] + pred.feature_stats["std"][j]
    assert a.verdict == "undetermined" and a.probability is None
    assert "log_paper_energy" in a.reason and "sd" in a.reason and "above the largest fitted value" in a.reason
    assert f"{hi[j]:.4g}" in a.reason
    # widen the fitted range around this curve: then it is scored, as predict_proba scores it
    wide = dataclasses.replace(pred, feature_stats={**pred.feature_stats, "min": np.minimum(lo, x - 1),
                                                    "max": np.maximum(hi, x + 1)})
    b = wide.assess(_falling(start=np.log(97), fall=1.0))[0]
    assert b.verdict in ("yes", "no") and "within the fitted range" in b.reason
    assert b.probability == pytest.approx(pred.predict_proba(_falling(start=np.log(97), fall=1.0))[0], abs=0)
    assert b.verdict == ("yes" if b.probability >= pred.threshold else "no")


def test_assess_without_feature_stats_scores_and_says_the_range_was_not_checked():
    pred = dataclasses.replace(GrokPredictor.book_sweep(), feature_stats=None)
    a = pred.assess(_falling(start=np.log(97), fall=1.0))[0]
    assert a.verdict in ("yes", "no") and "ranges were not checked" in a.reason
    with pytest.raises(ValueError, match="curve 1: the curve has 100 steps, fewer than the window"):
        pred.assess([_falling(), _falling()[:100]])


def test_feature_stats_are_fitted_saved_and_read_and_old_files_still_load(tmp_path):
    X, y = _synthetic()
    names = ("log_loss_level", "loss_slope", "mobility")
    pred = GrokPredictor.fit(X, y, names, 50, "taper:0.02")
    assert pred.feature_stats["min"] == pytest.approx(X.min(0)) and pred.feature_stats["max"] == pytest.approx(X.max(0))
    assert pred.feature_stats["std"] == pytest.approx(X.std(0))
    pred.save(tmp_path / "p.json")
    d = json.loads((tmp_path / "p.json").read_text())
    assert set(d["feature_stats"]) == {"min", "max", "mean", "std"}
    back = GrokPredictor.load(tmp_path / "p.json")
    for s in ("min", "max", "mean", "std"):
        assert np.array_equal(back.feature_stats[s], pred.feature_stats[s])
    # an older file: no feature_stats, but a training table (they are computed from it) ...
    old = {k: v for k, v in d.items() if k != "feature_stats"}
    from_table = GrokPredictor.from_json(old)
    assert from_table.feature_stats["max"] == pytest.approx(X.max(0), abs=0)
    # ... or neither: it loads, and assess checks no range
    bare = GrokPredictor.from_json({k: v for k, v in old.items() if k != "training"})
    assert bare.feature_stats is None
    with pytest.raises(ValueError, match="malformed predictor: feature_stats"):
        GrokPredictor.from_json({**d, "feature_stats": {**d["feature_stats"], "std": [1.0]}})
