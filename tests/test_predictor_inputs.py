"""GrokPredictor on the scale-free features and the hyperparameters (issue 34, part 2):
its features equal grokbook.transfer's and grokbook.stats' own (the oracles), the
hyperparameters are required, checked and range-checked where the model reads them, and
a curve that does not fall far enough for the scale-free time unit is undetermined."""

import numpy as np
import pytest

from grokbook.predict import HYPERPARAMETERS, GrokPredictor
from grokbook.stats import hyperparameter_features
from grokbook.transfer import TRANSFER, transfer_features

WINDOW = 200


def curve(rate, noise=0.02, seed=0, n=300):
    """An exponential fall of ``rate`` per step to a floor, with multiplicative noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return (3.0 * np.exp(-rate * t) + 0.01) * np.exp(noise * rng.normal(size=n))


def fitted(features=TRANSFER + HYPERPARAMETERS):
    """A predictor fitted on planted runs: fast falls at a high learning rate generalize."""
    curves, hyper, y = [], [], []
    for i, rate in enumerate(np.linspace(0.01, 0.1, 30)):
        curves.append(curve(rate, seed=i))
        lr = 10 ** (-3 + 20 * rate)
        hyper.append((lr, 1.0, 0.5))
        y.append(rate > 0.05)
    proto = GrokPredictor(tuple(features), WINDOW, "taper:0.02", *(np.zeros(len(features)),) * 2,
                          np.zeros(len(features)), 0.0, 0.5, 0.9, "positive")
    lr, wd, r = map(np.array, zip(*hyper))
    X = proto.features_of(curves, dict(lr=lr, weight_decay=wd, r=r))
    return GrokPredictor.fit(X, np.array(y), features, WINDOW, "taper:0.02"), curves, (lr, wd, r)


def test_features_equal_the_transfer_and_hyperparameter_oracles():
    pred, curves, (lr, wd, r) = fitted()
    X = pred.features_of(curves[:3], dict(lr=lr[:3], weight_decay=wd[:3], r=r[:3]))
    for i in range(3):
        tf = transfer_features(curves[i], WINDOW)
        assert X[i, :len(TRANSFER)] == pytest.approx([tf[k] for k in TRANSFER], rel=1e-12)
        assert X[i, len(TRANSFER):] == pytest.approx(hyperparameter_features([lr[i]], [wd[i]], [r[i]])[0], rel=1e-12)
    # one value for every curve broadcasts
    one = pred.features_of(curves[:3], dict(lr=lr[0], weight_decay=1.0, r=0.5))
    assert one[:, len(TRANSFER)] == pytest.approx([np.log10(lr[0])] * 3)


def test_the_hyperparameters_are_required_and_checked_where_the_model_reads_them():
    pred, curves, _ = fitted()
    assert pred.needs_hyperparameters and not fitted(TRANSFER)[0].needs_hyperparameters
    with pytest.raises(ValueError, match="give lr, weight_decay and r"):
        pred.assess(curves[:1])
    with pytest.raises(ValueError, match="give lr, weight_decay and r"):
        pred.predict_proba(curves[:1], dict(lr=1e-3, r=0.5))
    with pytest.raises(ValueError, match="one value or one per curve"):
        pred.assess(curves[:3], dict(lr=[1e-3, 1e-3], weight_decay=1.0, r=0.5))
    with pytest.raises(ValueError, match="train fraction"):
        pred.assess(curves[:1], dict(lr=1e-3, weight_decay=1.0, r=1.5))
    with pytest.raises(ValueError, match="learning rates must be > 0"):
        pred.assess(curves[:1], dict(lr=-1.0, weight_decay=1.0, r=0.5))


def test_assess_scores_in_range_and_flags_hyperparameters_outside_it():
    pred, curves, (lr, wd, r) = fitted()
    a = pred.assess(curves[-1], dict(lr=lr[-1], weight_decay=1.0, r=0.5))[0]
    assert a.verdict == "yes" and a.probability > 0.5
    assert set(a.features) == set(TRANSFER + HYPERPARAMETERS)
    far = pred.assess(curves[-1], dict(lr=10.0, weight_decay=1.0, r=0.5))[0]
    assert far.verdict == "undetermined" and "log_lr" in far.reason


def test_a_curve_without_the_scale_free_time_unit_is_undetermined():
    pred = fitted(TRANSFER)[0]
    t = np.arange(300)
    shallow = 2.0 - 0.6 * t / 300          # falls 0.13 decades in the window: fits, no 0.3-decade fall
    a = pred.assess(shallow)[0]
    assert a.verdict == "undetermined" and "factor 2" in a.reason
    assert pred.assess(np.full(300, 2.0))[0].verdict == "never fits"


def test_a_predictor_on_the_new_features_round_trips_through_json(tmp_path):
    pred, curves, (lr, wd, r) = fitted()
    pred.save(tmp_path / "p.json")
    back = GrokPredictor.load(tmp_path / "p.json")
    h = dict(lr=lr[:4], weight_decay=wd[:4], r=r[:4])
    assert back.features == pred.features
    assert back.predict_proba(curves[:4], h) == pytest.approx(pred.predict_proba(curves[:4], h), rel=1e-12)
