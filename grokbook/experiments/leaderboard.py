"""Scoring early predictors held out by family (issue 34, parts 2 and 3).

A predictor that is to work on a trainer it has never seen is validated the same way:
fitted on every family of the corpus but one, scored on the family left out
(:func:`family_holdout`), with a cluster-bootstrap interval over that family's
configurations, and calibrated as well as ranked: the Brier score against the base
rate's (:func:`brier`) and a reliability curve (:func:`reliability`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def brier(p: Sequence[float], y: Sequence[bool]) -> float:
    """The Brier score, the mean of ``(p - y)^2`` over ``(n,)`` probabilities ``p`` and
    outcomes ``y``: 0 is perfect, ``q (1 - q)`` is a constant forecast at the base
    rate ``q``."""
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    if p.shape != y.shape or p.ndim != 1 or not len(p):
        raise ValueError(f"p {p.shape} and y {y.shape} must be non-empty 1-D of one length")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("probabilities must lie in [0, 1]")
    return float(np.mean((p - y) ** 2))


def reliability(p: Sequence[float], y: Sequence[bool], n_bins: int = 5) -> list[dict[str, float]]:
    """The reliability curve: the probabilities ``p`` cut into ``n_bins`` equal bins of
    [0, 1] (the last one closed), and for each bin holding runs: ``lo``, ``hi``, ``n``,
    ``mean_p`` (the mean forecast) and ``observed`` (the share of ``y`` true). A
    calibrated predictor has ``observed`` close to ``mean_p`` in every bin."""
    p, y = np.asarray(p, np.float64), np.asarray(y, bool)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    idx = np.minimum((p * n_bins).astype(int), n_bins - 1)
    out = []
    for b in range(n_bins):
        m = idx == b
        if m.any():
            out.append(dict(lo=b / n_bins, hi=(b + 1) / n_bins, n=int(m.sum()), mean_p=float(p[m].mean()),
                            observed=float(y[m].mean())))
    return out


def family_holdout(X: np.ndarray, y: Sequence[bool], families: Sequence[str], groups: Sequence[Any], *,
                   C: float = 1.0, n_boot: int = 1000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Leave one family out: for each family, a standardized L2 logistic regression
    (inverse strength ``C``) fitted on the runs of every other family (``X`` ``(n, k)``
    features, ``y`` ``(n,)`` outcomes) scores the family's runs. Per family: ``n``,
    ``n_pos``, ``p`` (``(n_family,)`` held-out probabilities), ``auc`` ``(estimate, low,
    high)`` with a 95% bootstrap interval over the family's ``groups`` (its
    configurations; NaN where one class is missing), ``brier`` and ``brier_base`` (a
    constant forecast at the training families' base rate).
    ValueError on shapes that disagree, non-finite features, or fewer than two families."""
    from sklearn.linear_model import LogisticRegression

    from ..predict import bootstrap_ci, roc_auc

    X, y = np.asarray(X, np.float64), np.asarray(y, bool)
    fam, grp = np.asarray(families), np.asarray(groups)
    if X.ndim != 2 or not (len(X) == len(y) == len(fam) == len(grp)):
        raise ValueError(f"X {X.shape}, y {y.shape}, families {fam.shape} and groups {grp.shape} must agree")
    if not np.all(np.isfinite(X)):
        raise ValueError("X holds non-finite features")
    names = sorted(set(fam.tolist()))
    if len(names) < 2:
        raise ValueError(f"need at least two families, got {names}")
    out = {}
    for f in names:
        test, train = fam == f, fam != f
        mean, sd = X[train].mean(0), X[train].std(0)
        sd = np.where(sd > 0, sd, 1.0)
        if len(set(y[train].tolist())) < 2:
            raise ValueError(f"the families other than {f!r} hold one outcome only")
        model = LogisticRegression(C=C).fit((X[train] - mean) / sd, y[train])
        p = model.predict_proba((X[test] - mean) / sd)[:, 1]
        yt = y[test]
        nan3 = (float("nan"),) * 3
        auc = bootstrap_ci(roc_auc, yt, p, groups=grp[test], n_boot=n_boot, seed=seed) if 0 < yt.sum() < len(yt) \
            else nan3
        base = float(y[train].mean())
        out[f] = dict(n=int(test.sum()), n_pos=int(yt.sum()), p=p, auc=auc, brier=brier(p, yt),
                      brier_base=brier(np.full(len(yt), base), yt))
    return out
