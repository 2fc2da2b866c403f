"""Predicting, from the first ``n`` steps of a run, whether it will generalize.

The paper shows by eye that the early oscillations of the training loss look like the
final validation accuracy across a hyperparameter grid. This module turns that into a
measured predictor:

* :func:`early_features`: numbers computed from steps ``[0, n)`` of a run only. The
  spectral signature (the Hjorth parameters of the detrended training loss) and plain
  baselines (how low the loss is, how fast it falls, the weight-norm trend, the
  validation-loss trend).
* :func:`cross_validate`: a logistic regression on a set of those features, fitted and
  evaluated on disjoint configurations *and* seeds, giving one held-out score per run.
* :func:`roc_auc` and :func:`bootstrap_ci`: the area under the ROC curve of held-out
  scores, with a percentile interval from a bootstrap over configurations.
* :func:`search_cost`: the compute a hyperparameter search spends when it stops every
  run at ``n`` and continues only those predicted to generalize.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from .spectral import detrend, hjorth, paper_energy

#: The paper's quantity: log10 of the raw energy of the window (:func:`paper_energy`).
PAPER = ("log_paper_energy",)
#: Spectral features: Hjorth parameters of the detrended early training loss, and the
#: activity of the window's second half alone (after the initial fall of the loss).
SPECTRAL = ("log_activity", "mobility", "complexity", "log_activity_late")
#: Plain baselines, no spectrum involved.
BASELINE = ("log_loss_level", "loss_slope", "norm_trend", "val_loss_trend")
FEATURES = PAPER + SPECTRAL + BASELINE


def early_features(run, n: int, method: str = "highpass:0.01") -> dict[str, float]:
    """The features of :data:`FEATURES` from the first ``n`` steps of ``run`` only.

    - ``log_paper_energy``: log10 of the paper's energy, ``sum_{t < n} L(t)^2`` of the
      raw training loss (:func:`grokbook.spectral.paper_energy`, loss units squared);
    - ``log_activity``: log10 of the Hjorth activity (variance, loss units squared) of
      ``detrend(train_loss[:n], method)``; ``mobility`` (rad/step) and ``complexity`` (standard
      Hjorth, dimensionless) of the same signal (:func:`grokbook.spectral.hjorth`);
    - ``log_activity_late``: log10 activity of ``detrend(train_loss[n//2:n], method)``, the
      oscillations once the initial fall of the loss is over;
    - ``log_loss_level``: log10 of the mean training loss over the last tenth of the window;
    - ``loss_slope``: slope of log10 training loss against log10 step over the second
      half of the window (decades of loss per decade of steps; negative when falling);
    - ``norm_trend``: relative change of the weight norm over the second half,
      ``|theta_{n-1}| / |theta_{n/2}| - 1``;
    - ``val_loss_trend``: slope of log10 validation loss against log10 step over the
      validation points in the second half of the window.

    Raises ValueError if the run has fewer than ``n`` finite steps (e.g. it diverged
    inside the window) or ``n < 20``.
    """
    if n < 20:
        raise ValueError(f"window n={n} is too short; need at least 20 steps")
    loss = np.asarray(run.metrics["train_loss"], dtype=np.float64)[:n]
    if len(loss) < n or not np.all(np.isfinite(loss)):
        raise ValueError(f"run {run.config.hash()} has no {n} finite steps of training loss "
                         f"(diverged at {run.diverged_at})")
    h = hjorth(detrend(loss, method))
    late = hjorth(detrend(loss[n // 2:], method))
    half = np.arange(n // 2, n)
    norm = np.asarray(run.metrics["weight_norm"], dtype=np.float64)
    vs = np.asarray(run.val_steps)
    keep = (vs >= n // 2) & (vs < n)
    if keep.sum() < 2:
        raise ValueError(f"run has fewer than 2 validation points in steps [{n // 2}, {n})")
    return {
        "log_paper_energy": float(np.log10(max(paper_energy(loss, n), 1e-300))),
        "log_activity": float(np.log10(max(h.activity, 1e-300))),
        "mobility": h.mobility,
        "complexity": h.complexity,
        "log_activity_late": float(np.log10(max(late.activity, 1e-300))),
        "log_loss_level": float(np.log10(loss[-max(n // 10, 1):].mean())),
        "loss_slope": _loglog_slope(half, loss[half]),
        "norm_trend": float(norm[n - 1] / norm[n // 2] - 1),
        "val_loss_trend": _loglog_slope(vs[keep], np.asarray(run.val_loss)[keep]),
    }


def _loglog_slope(steps: np.ndarray, values: np.ndarray) -> float:
    """Least-squares slope of log10(values) against log10(steps) (floored at 1e-12)."""
    x = np.log10(np.maximum(steps, 1))
    y = np.log10(np.maximum(values, 1e-12))
    return float(np.polyfit(x, y, 1)[0])


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a
    random negative, ties counting one half (the Mann-Whitney U statistic over
    ``n_pos * n_neg``). ``labels``: ``(n,)`` booleans; ``scores``: ``(n,)``. Raises
    ValueError if either class is empty."""
    from scipy.stats import rankdata

    y, s = np.asarray(labels, dtype=bool), np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"labels {y.shape} and scores {s.shape} must be 1-D of one length")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"ROC AUC needs both classes; got {n_pos} positives and {n_neg} negatives")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def bootstrap_ci(statistic: Callable[..., float], *arrays, groups=None, n_boot: int = 1000,
                 level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """``(estimate, low, high)``: ``statistic(*arrays)`` and its percentile bootstrap
    interval at ``level``.

    ``arrays``: ``(n, ...)`` each, resampled together along axis 0. With ``groups``
    (``(n,)``, e.g. a configuration id) whole groups are resampled with replacement (a
    cluster bootstrap: the seeds of one configuration are not independent). Resamples on
    which the statistic fails (e.g. one class only for an AUC) or is NaN are skipped;
    raises ValueError if more than half fail.
    """
    arrays = tuple(np.asarray(a) for a in arrays)
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("all arrays must have the same length")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    ids = np.arange(n) if groups is None else np.asarray(groups)
    if len(ids) != n:
        raise ValueError(f"groups has length {len(ids)}, arrays {n}")
    uniq, inverse = np.unique(ids, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(uniq))]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        pick = np.concatenate([members[g] for g in rng.integers(0, len(uniq), len(uniq))])
        try:
            v = statistic(*(a[pick] for a in arrays))
        except ValueError:
            continue
        if np.isfinite(v):
            values.append(v)
    if len(values) < n_boot / 2:
        raise ValueError(f"the statistic failed on {n_boot - len(values)} of {n_boot} resamples")
    alpha = (1 - level) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return float(statistic(*arrays)), float(lo), float(hi)


@dataclass(frozen=True)
class HeldOut:
    """Held-out predictions of :func:`cross_validate`, one per run (``(n,)`` each).

    ``score``: the classifier's probability of the positive class, from a model fitted
    without this run's configuration and seed; ``passed``: whether the score clears the
    threshold chosen on the training side to keep ``recall`` of its positives;
    ``evaluated``: False for runs no fold could evaluate (then ``score`` is NaN);
    ``fold``: the outer fold that held each run out."""

    score: np.ndarray
    passed: np.ndarray
    evaluated: np.ndarray
    fold: np.ndarray


def _config_folds(configs: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """The fold ``(n,)`` of every run: configurations dealt at random into ``n_folds``."""
    uniq = np.unique(configs)
    if len(uniq) < n_folds:
        raise ValueError(f"{len(uniq)} configurations cannot fill {n_folds} folds")
    fold_of = dict(zip(uniq, np.random.default_rng(seed).permutation(len(uniq)) % n_folds))
    return np.array([fold_of[c] for c in configs])


def _check_runs(X, labels, configs, seeds) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    configs, seeds = np.asarray(configs), np.asarray(seeds)
    n = len(y)
    if X.ndim != 2 or X.shape[0] != n or configs.shape != (n,) or seeds.shape != (n,):
        raise ValueError(f"X {X.shape}, labels {y.shape}, configs {configs.shape} and seeds "
                         f"{seeds.shape} must describe the same n runs")
    if not np.all(np.isfinite(X)):
        raise ValueError("X holds non-finite features")
    return X, y, configs, seeds


def _score_fold(X: np.ndarray, y: np.ndarray, seeds: np.ndarray, train: np.ndarray, test: np.ndarray,
                score: np.ndarray, passed: np.ndarray, recall: float) -> None:
    """Score the ``test`` runs (boolean masks) in place with models fitted on ``train``:
    for each seed ``s``, on the training runs with seeds ``!= s`` (all of them when
    there is one seed only). A one-class training side scores with its base rate."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    seed_values = np.unique(seeds)
    for s in seed_values:
        te = test & (seeds == s)
        tr = train & ((seeds != s) if len(seed_values) > 1 else True)
        if not te.any() or not tr.any():
            continue
        if y[tr].all() or not y[tr].any():
            score[te], passed[te] = float(y[tr].mean()), bool(y[tr].all())
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0))
        model.fit(X[tr], y[tr])
        score[te] = model.predict_proba(X[te])[:, 1]
        train_pos = model.predict_proba(X[tr][y[tr]])[:, 1]
        passed[te] = score[te] >= np.quantile(train_pos, 1 - recall)


def cross_validate(X, labels, configs, seeds, n_folds: int = 5, recall: float = 0.9,
                   seed: int = 0) -> HeldOut:
    """Out-of-fold scores of a standardized logistic regression on ``X``.

    ``X``: ``(n, k)`` features; ``labels``: ``(n,)`` booleans; ``configs``: ``(n,)``
    configuration ids (runs differing only in their seed share one); ``seeds``:
    ``(n,)``. The configurations are split into ``n_folds`` folds; for each fold and
    each seed ``s`` the model is fitted on the runs of the *other* folds with seeds
    ``!= s`` and scores the runs of the fold with seed ``s``, so no configuration and no
    seed is on both sides. With a single seed only configurations are held out. A
    training side with one class only scores its fold with that class's base rate.
    """
    X, y, configs, seeds = _check_runs(X, labels, configs, seeds)
    fold = _config_folds(configs, n_folds, seed)
    score, passed = np.full(len(y), np.nan), np.zeros(len(y), dtype=bool)
    for k in range(n_folds):
        _score_fold(X, y, seeds, fold != k, fold == k, score, passed, recall)
    return HeldOut(score, passed, np.isfinite(score), fold)


def _inner_auc(X, y, configs, seeds, n_folds: int, seed: int) -> float:
    """Cross-validated AUC of ``X`` on these runs alone, NaN if it cannot be measured."""
    try:
        held = cross_validate(X, y, configs, seeds, n_folds=n_folds, seed=seed)
        e = held.evaluated
        return roc_auc(y[e], held.score[e])
    except ValueError:
        return float("nan")


def nested_cross_validate(candidates: dict, labels, configs, seeds, n_folds: int = 5, inner_folds: int = 4,
                          recall: float = 0.9, seed: int = 0) -> tuple[HeldOut, list]:
    """:func:`cross_validate` with a choice among feature sets made inside each fold.

    ``candidates``: key (e.g. a window ``N`` or ``(N, detrending)``) to ``(n, k)``
    features. For each outer fold, every candidate is scored by an inner
    ``inner_folds``-fold :func:`cross_validate` on the *training* configurations only;
    the candidate with the highest inner AUC (the first on ties, NaN last) is fitted on
    them and scores the fold. The held-out runs never influence the choice that scores
    them. Returns the held-out scores and the key chosen for each outer fold.
    """
    if not candidates:
        raise ValueError("no candidate feature sets")
    keys = list(candidates)
    checked = {k: _check_runs(candidates[k], labels, configs, seeds)[0] for k in keys}
    _, y, configs, seeds = _check_runs(checked[keys[0]], labels, configs, seeds)
    fold = _config_folds(configs, n_folds, seed)
    score, passed = np.full(len(y), np.nan), np.zeros(len(y), dtype=bool)
    chosen = []
    for k in range(n_folds):
        tr = fold != k
        aucs = [_inner_auc(checked[key][tr], y[tr], configs[tr], seeds[tr], inner_folds, seed + 1)
                for key in keys]
        best = keys[int(np.argmax(np.nan_to_num(aucs, nan=-np.inf)))]
        chosen.append(best)
        _score_fold(checked[best], y, seeds, tr, fold == k, score, passed, recall)
    return HeldOut(score, passed, np.isfinite(score), fold), chosen


def search_cost(passed, n, steps: int) -> float:
    """The compute of a search that trains every run ``n`` steps and only the runs that
    ``passed`` (``(runs,)`` booleans) on to ``steps``, as a fraction of training every
    run to ``steps``: ``sum_i (n_i + passed_i (steps - n_i)) / (R steps)``. ``n``: one
    window for all runs, or ``(runs,)`` windows (e.g. each fold's chosen one)."""
    passed = np.asarray(passed, dtype=bool)
    n = np.broadcast_to(np.asarray(n, dtype=np.float64), passed.shape)
    if not np.all((0 < n) & (n <= steps)):
        raise ValueError(f"need 0 < n <= steps ({steps}), got n from {n.min():g} to {n.max():g}")
    return float((n + passed * (steps - n)).sum() / (len(passed) * steps))


def feature_matrix(runs: Sequence, n: int, names: Sequence[str] = FEATURES, method: str = "highpass:0.01"
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(X, ok)``: the ``(len(runs), len(names))`` features of :func:`early_features`
    for the runs with ``n`` finite steps, NaN rows elsewhere; ``ok`` marks the former."""
    X = np.full((len(runs), len(names)), np.nan)
    ok = np.zeros(len(runs), dtype=bool)
    for i, run in enumerate(runs):
        if run.diverged_at is not None and run.diverged_at < n:
            continue
        f = early_features(run, n, method)
        X[i] = [f[k] for k in names]
        ok[i] = True
    return X, ok


def generalized(run, threshold: float = 0.9) -> bool:
    """The label: the run ends (not diverged) with validation accuracy ``>= threshold``."""
    return run.diverged_at is None and float(run.val_acc[-1]) >= threshold


def config_id(run, ignore: Optional[Sequence[str]] = ("seed", "data_seed")) -> str:
    """An id shared by runs whose configs differ only in ``ignore`` (default: the
    initialisation seed and the split's seed, see :func:`grokbook.sweeping.replicates`)."""
    return run.config.replace(**{k: 0 for k in (ignore or ())}).hash()
