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

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from .spectral import detrend, hjorth, paper_energy
from .transfer import TRANSFER, transfer_features

#: The paper's quantity: log10 of the raw energy of the window (:func:`paper_energy`).
PAPER = ("log_paper_energy",)
#: Spectral features: Hjorth parameters of the detrended early training loss, and the
#: activity of the window's second half alone (after the initial fall of the loss).
SPECTRAL = ("log_activity", "mobility", "complexity", "log_activity_late")
#: Plain baselines, no spectrum involved.
BASELINE = ("log_loss_level", "loss_slope", "norm_trend", "val_loss_trend")
FEATURES = PAPER + SPECTRAL + BASELINE
#: The features computed from the training loss alone (any trainer's curve).
LOSS_ONLY = PAPER + SPECTRAL + ("log_loss_level", "loss_slope")
#: The hyperparameter columns a predictor may also read
#: (:func:`grokbook.stats.hyperparameter_features`): log10 learning rate, log10 weight
#: decay (floored at :data:`grokbook.stats.WD_FLOOR`), train fraction, and the first two's
#: product.
HYPERPARAMETERS = ("log_lr", "log_wd", "r", "log_lr_x_log_wd")
#: Every feature a :class:`GrokPredictor` may be fitted on: those of
#: :func:`curve_features`, the scale-free set of :mod:`grokbook.transfer` and the
#: :data:`HYPERPARAMETERS`.
PREDICTOR_FEATURES = FEATURES + TRANSFER + HYPERPARAMETERS
#: Those a plain training-loss curve gives (with the hyperparameters where the user
#: gives them).
FROM_CURVE = LOSS_ONLY + TRANSFER + HYPERPARAMETERS


def early_features(run, n: int, method: str = "highpass:0.01") -> dict[str, float]:
    """The features of :data:`FEATURES` from the first ``n`` steps of ``run`` only
    (:func:`curve_features` of its training loss, weight norm and validation loss).

    Raises ValueError if the run has fewer than ``n`` finite steps (e.g. it diverged
    inside the window) or ``n < 20``.
    """
    loss = np.asarray(run.metrics["train_loss"], dtype=np.float64)[:n]
    if len(loss) < n or not np.all(np.isfinite(loss)):
        raise ValueError(f"run {run.config.hash()} has no {n} finite steps of training loss "
                         f"(diverged at {run.diverged_at})")
    return curve_features(loss, n, method, weight_norm=run.metrics["weight_norm"],
                          val_steps=run.val_steps, val_loss=run.val_loss)


def record_features(record, n: int, method: str = "highpass:0.01") -> dict[str, float]:
    """:func:`early_features` of an offline record (a row of
    :func:`grokbook.experiments.records.read_records`, or a dict of its ``run_record``):
    the same features from its early window, which must hold at least ``n`` steps
    (ValueError otherwise)."""
    if len(record["window"]) < n:
        raise ValueError(f"the record {record['hash']} keeps {len(record['window'])} early steps, fewer than {n}")
    return curve_features(np.asarray(record["window"], np.float64), n, method,
                          weight_norm=np.asarray(record["window_norm"], np.float64),
                          val_steps=np.asarray(record["window_val_steps"]),
                          val_loss=np.asarray(record["window_val_loss"], np.float64))


def curve_features(loss, n: int, method: str = "highpass:0.01", *, weight_norm=None, val_steps=None,
                   val_loss=None) -> dict[str, float]:
    """Features of the first ``n`` steps of a training-loss curve ``loss`` (``(T,)``,
    one loss per optimisation step from step 0, ``T >= n``; any trainer):

    - ``log_paper_energy``: log10 of the paper's energy, ``sum_{t < n} L(t)^2`` of the
      raw training loss (:func:`grokbook.spectral.paper_energy`, loss units squared);
    - ``log_activity``: log10 of the Hjorth activity (variance, loss units squared) of
      ``detrend(loss[:n], method)``; ``mobility`` (rad/step) and ``complexity`` (standard
      Hjorth, dimensionless) of the same signal (:func:`grokbook.spectral.hjorth`);
    - ``log_activity_late``: log10 activity of ``detrend(loss[n//2:n], method)``, the
      oscillations once the initial fall of the loss is over;
    - ``log_loss_level``: log10 of the mean training loss over the last tenth of the window;
    - ``loss_slope``: slope of log10 training loss against log10 step over the second
      half of the window (decades of loss per decade of steps; negative when falling).

    Only when given (they need more than the loss):

    - ``norm_trend``, from ``weight_norm`` (``(T,)``, per step): the relative change of the
      weight norm over the second half, ``|theta_{n-1}| / |theta_{n/2}| - 1``;
    - ``val_loss_trend``, from ``val_steps`` and ``val_loss`` (``(V,)`` each): the slope of
      log10 validation loss against log10 step over the validation points in the second
      half of the window.

    Raises ValueError if ``n < 20``, the curve is shorter than ``n`` or not finite there,
    or fewer than 2 validation points fall in ``[n/2, n)``.
    """
    if n < 20:
        raise ValueError(f"window n={n} is too short; need at least 20 steps")
    loss = np.asarray(loss, dtype=np.float64)
    if loss.ndim != 1:
        raise ValueError(f"a loss curve is 1-D (one loss per step), got shape {loss.shape}")
    if len(loss) < n:
        raise ValueError(f"the curve has {len(loss)} steps, fewer than the window of {n}")
    loss = loss[:n]
    bad = np.flatnonzero(~np.isfinite(loss))
    if len(bad):
        raise ValueError(f"the curve is not finite at step {bad[0]} (inside the window of {n})")
    h = hjorth(detrend(loss, method))
    late = hjorth(detrend(loss[n // 2:], method))
    half = np.arange(n // 2, n)
    out = {
        "log_paper_energy": float(np.log10(max(paper_energy(loss, n), 1e-300))),
        "log_activity": float(np.log10(max(h.activity, 1e-300))),
        "mobility": h.mobility,
        "complexity": h.complexity,
        "log_activity_late": float(np.log10(max(late.activity, 1e-300))),
        "log_loss_level": float(np.log10(max(loss[-max(n // 10, 1):].mean(), 1e-300))),
        "loss_slope": _loglog_slope(half, loss[half]),
    }
    if weight_norm is not None:
        norm = np.asarray(weight_norm, dtype=np.float64)
        if len(norm) < n:
            raise ValueError(f"weight_norm has {len(norm)} steps, fewer than the window of {n}")
        out["norm_trend"] = float(norm[n - 1] / norm[n // 2] - 1)
    if val_steps is not None and val_loss is not None:
        vs = np.asarray(val_steps)
        keep = (vs >= n // 2) & (vs < n)
        if keep.sum() < 2:
            raise ValueError(f"fewer than 2 validation points in steps [{n // 2}, {n})")
        out["val_loss_trend"] = _loglog_slope(vs[keep], np.asarray(val_loss, dtype=np.float64)[keep])
    return out


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
    for the runs with ``n`` finite steps, NaN rows elsewhere; ``ok`` marks the former.
    ``runs``: :class:`~grokbook.run.Run` objects, or a ``pandas.DataFrame`` of records
    (:mod:`grokbook.experiments.records`), whose early windows give the same features."""
    import pandas as pd

    if isinstance(runs, pd.DataFrame):
        features, items = record_features, [row for _, row in runs.iterrows()]
    else:
        features, items = early_features, list(runs)
    X = np.full((len(items), len(names)), np.nan)
    ok = np.zeros(len(items), dtype=bool)
    for i, item in enumerate(items):
        if pd.notna(item.diverged_at) and item.diverged_at < n:
            continue
        f = features(item, n, method)
        X[i] = [f[k] for k in names]
        ok[i] = True
    return X, ok


def generalized(run, threshold: float = 0.9) -> bool:
    """The label: the run ends (not diverged) with validation accuracy ``>= threshold``."""
    return run.diverged_at is None and float(run.val_acc[-1]) >= threshold


def config_id(run, ignore: Optional[Sequence[str]] = ("seed", "data_seed")) -> str:
    """An id shared by runs whose configs differ only in ``ignore`` (default: the
    initialisation seed and the split's seed, see :func:`grokbook.sweeping.replicates`).
    ``run``: a :class:`~grokbook.run.Run` or its :class:`~grokbook.RunConfig`."""
    config = getattr(run, "config", run)
    return config.replace(**{k: 0 for k in (ignore or ())}).hash()


# ---------------------------------------------------------------------------------------
# A fitted predictor for anyone's loss curves
# ---------------------------------------------------------------------------------------

#: The outcomes a :class:`GrokPredictor` of :func:`GrokPredictor.fit_runs` calls positive:
#: the run reaches 100% validation accuracy within its budget, late or not.
POSITIVE = ("groks", "generalizes")
_FORMAT = "grokbook.GrokPredictor/1"
#: Where the default predictor ships (package data): the scale-free set
#: (:data:`~grokbook.transfer.TRANSFER`) of the first 400 steps, fitted on every family of
#: the corpus of runs (``data/corpus/``, :func:`grokbook.experiments.leaderboard.fit_corpus`).
DEFAULT_PATH = Path(__file__).with_name("corpus_predictor.json")
#: Where the predictor that also reads the hyperparameters ships: the scale-free set and
#: the :data:`HYPERPARAMETERS`, fitted on the same corpus.
DEFAULT_HP_PATH = Path(__file__).with_name("corpus_predictor_hp.json")
#: Where the book sweep's predictor ships: :data:`LOSS_ONLY` of the first 200 steps,
#: fitted on chapter 9's sweep of the book's model alone (the default until the corpus).
BOOK_SWEEP_PATH = Path(__file__).with_name("book_sweep_predictor.json")


def _as_curves(curves) -> list[np.ndarray]:
    """One curve (1-D), a ``(n_curves, T)`` array, or a sequence of 1-D curves."""
    if isinstance(curves, np.ndarray) or (len(curves) and np.isscalar(curves[0])):
        arr = np.asarray(curves, dtype=np.float64)
        if arr.ndim == 1:
            return [arr]
        if arr.ndim == 2:
            return list(arr)
        raise ValueError(f"curves must be 1-D (one curve) or 2-D (n_curves, steps), got shape {arr.shape}")
    return [np.asarray(c, dtype=np.float64) for c in curves]


#: The verdicts of :meth:`GrokPredictor.assess`.
VERDICTS = ("yes", "no", "undetermined", "never fits", "diverged")
#: A curve "never fits" when the mean loss over the last :data:`FIT_CHECK_FRACTION` of
#: the window is at least this fraction of the mean over its first: the loss has not
#: fallen by a tenth (a flat curve, or a learning rate too small to move it from
#: ``log(p)``). None of the 420 runs of the book's sweep comes near it (their ratio at
#: window 200 is at most 0.39).
NEVER_FITS_RATIO = 0.9
#: The share of the window (its first and its last steps) whose means the fit check compares.
FIT_CHECK_FRACTION = 0.1
#: A feature more than this many standard deviations (of the fitted runs' values of it)
#: below their minimum or above their maximum makes a curve "undetermined": the model
#: would extrapolate.
RANGE_TOLERANCE_SD = 1.0


@dataclass(frozen=True)
class Assessment:
    """What :meth:`GrokPredictor.assess` says of one curve.

    ``verdict``: one of :data:`VERDICTS`: ``"yes"`` or ``"no"`` (the probability is at or
    above the predictor's threshold, or below it), ``"undetermined"`` (the predictor
    does not know: a feature outside the range it was fitted on, a feature not finite,
    or a loss that is not positive), ``"never fits"`` (the loss has not fallen in the
    window, see :data:`NEVER_FITS_RATIO`) or ``"diverged"`` (a NaN or inf in the
    window). ``probability``: the model's probability of the positive class for
    ``"yes"`` and ``"no"``, None otherwise. ``reason``: one sentence saying why.
    ``features``: the curve's features by name (empty when they were not computed;
    a feature may be NaN)."""

    verdict: str
    probability: Optional[float]
    reason: str
    features: dict = field(default_factory=dict)

    @property
    def scored(self) -> bool:
        """Whether the model scored the curve (verdict ``"yes"`` or ``"no"``)."""
        return self.verdict in ("yes", "no")


def _feature_stats(X: np.ndarray) -> dict[str, np.ndarray]:
    """``min``, ``max``, ``mean``, ``std`` (population) of each column of ``X`` (``(n, k)``)."""
    return {"min": X.min(axis=0), "max": X.max(axis=0), "mean": X.mean(axis=0), "std": X.std(axis=0)}


@dataclass(frozen=True, eq=False)
class GrokPredictor:
    """A standardized logistic regression on early-curve features, with its decision
    threshold, that scores plain training-loss curves.

    ``features``: names from :func:`curve_features` (``k`` of them); ``window``: the
    steps ``[0, window)`` they are computed on; ``detrend``: the detrending of the Hjorth
    features; ``mean``, ``scale``, ``coef``: ``(k,)`` each, and ``intercept``: the model,
    ``P(positive) = 1 / (1 + exp(-(((x - mean) / scale) . coef + intercept)))``;
    ``threshold``: the probability at or above which a curve is predicted positive, the
    ``1 - recall`` quantile of the training positives' probabilities; ``label``: what
    positive means; ``meta``: provenance; ``training``: the fitted table (``X`` ``(n, k)``,
    ``y`` ``(n,)``, and ``configs``, the run configs as dicts), kept so a fit can be
    checked and repeated; ``feature_stats``: ``min``, ``max``, ``mean``, ``std`` of each
    fitted feature (``(k,)`` each), from which :meth:`assess` tells a curve outside the
    fitted range (None: not known, no range check). Saved as JSON (:meth:`save`,
    :meth:`load`), never pickled.
    """

    features: tuple[str, ...]
    window: int
    detrend: str
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    threshold: float
    recall: float
    label: str
    meta: dict = field(default_factory=dict)
    training: Optional[dict] = None
    feature_stats: Optional[dict] = None

    @classmethod
    def fit(cls, X, y, features: Sequence[str], window: int, detrend: str, *, recall: float = 0.9,
            C: float = 1.0, label: str = "positive", meta: Optional[dict] = None,
            configs: Optional[Sequence[dict]] = None) -> "GrokPredictor":
        """Fit on features ``X`` (``(n, k)``, columns named by ``features``, computed on
        ``window`` steps with ``detrend``) and boolean labels ``y`` (``(n,)``), with
        scikit-learn's L2 logistic regression (inverse strength ``C``) on standardized
        columns. Raises ValueError on shapes that disagree, non-finite features, or a
        class with fewer than 2 runs."""
        from sklearn.linear_model import LogisticRegression

        X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=bool)
        features = tuple(features)
        if X.ndim != 2 or X.shape != (len(y), len(features)):
            raise ValueError(f"X {X.shape} must be (runs, features) = ({len(y)}, {len(features)})")
        if not np.all(np.isfinite(X)):
            raise ValueError("X holds non-finite features")
        if min(y.sum(), (~y).sum()) < 2:
            raise ValueError(f"need at least 2 runs of each class, got {int(y.sum())} positive "
                             f"and {int((~y).sum())} negative")
        if not 0 < recall <= 1:
            raise ValueError(f"recall must be in (0, 1], got {recall}")
        unknown = set(features) - set(PREDICTOR_FEATURES)
        if unknown:
            raise ValueError(f"unknown features {sorted(unknown)}; known: {PREDICTOR_FEATURES}")
        mean, scale = X.mean(axis=0), X.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        model = LogisticRegression(C=C).fit((X - mean) / scale, y)
        pred = cls(features, int(window), detrend, mean, scale, model.coef_[0].astype(np.float64),
                   float(model.intercept_[0]), 0.0, float(recall), label, dict(meta or {}, C=C),
                   {"X": X, "y": y, "configs": list(configs)} if configs is not None else {"X": X, "y": y},
                   _feature_stats(X))
        threshold = float(np.quantile(pred.proba_from_features(X[y]), 1 - recall))
        return dataclasses.replace(pred, threshold=threshold)

    @classmethod
    def fit_runs(cls, runs: Sequence, window: int = 200, features: Sequence[str] = LOSS_ONLY,
                 detrend: str = "taper:0.02", *, recall: float = 0.9, min_ratio: float = 5.0,
                 leave: float = 0.05, reach: float = 0.99, C: float = 1.0, meta: Optional[dict] = None
                 ) -> "GrokPredictor":
        """Fit on stored runs, labelled positive when their outcome
        (:func:`grokbook.phases.run_outcome` with ``min_ratio``, ``leave``, ``reach``) is in
        :data:`POSITIVE`. Runs that diverge inside the window are left out."""
        from .phases import run_outcome

        X, ok = feature_matrix(runs, window, features, detrend)
        kept = [run for run, k in zip(runs, ok) if k]
        y = np.array([run_outcome(run, min_ratio, leave, reach) in POSITIVE for run in kept])
        label = (f"reaches validation accuracy {reach:g} within its budget (outcome groks or generalizes, "
                 f"min_ratio {min_ratio:g})")
        return cls.fit(X[ok], y, features, window, detrend, recall=recall, C=C, label=label,
                       meta=dict(meta or {}, runs=len(kept), left_out=int((~ok).sum())),
                       configs=[run.config.to_dict() for run in kept])

    def proba_from_features(self, X: np.ndarray) -> np.ndarray:
        """``(n,)`` probabilities of features ``X`` (``(n, k)``, columns as ``features``)."""
        z = ((X - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def _check_loss_only(self) -> None:
        """Raise ValueError if this predictor needs more than the training loss (and the
        hyperparameters)."""
        missing = [f for f in self.features if f not in FROM_CURVE]
        if missing:
            raise ValueError(f"this predictor needs {missing}, which a loss curve alone does not give; "
                             "score stored runs with predict_runs")

    @property
    def needs_hyperparameters(self) -> bool:
        """Whether the model reads the :data:`HYPERPARAMETERS` (then :meth:`assess` and
        :meth:`predict_proba` need ``hyperparameters``)."""
        return any(f in HYPERPARAMETERS for f in self.features)

    def _hyper_rows(self, hyperparameters: Optional[dict], n: int) -> Optional[np.ndarray]:
        """``(n, 4)``: the :data:`HYPERPARAMETERS` columns of ``n`` curves from
        ``hyperparameters`` (``lr``, ``weight_decay``, ``r``: one number each for every
        curve, or ``n`` numbers); None when the model does not read them. ValueError when
        it does and they are missing, incomplete or out of range."""
        from .stats import hyperparameter_features

        if not self.needs_hyperparameters:
            return None
        keys = ("lr", "weight_decay", "r")
        if not hyperparameters or any(hyperparameters.get(k) is None for k in keys):
            raise ValueError("this predictor reads the hyperparameters: give lr, weight_decay and r (the learning "
                             "rate, the weight decay and the train fraction) for every curve")
        cols = []
        for k in keys:
            v = np.atleast_1d(np.asarray(hyperparameters[k], dtype=np.float64))
            if v.ndim != 1 or len(v) not in (1, n):
                raise ValueError(f"{k}: give one value or one per curve ({n}), got {len(v)}")
            cols.append(np.broadcast_to(v, (n,)))
        lr, wd, r = cols
        if not (np.isfinite(lr).all() and np.isfinite(wd).all() and np.isfinite(r).all()):
            raise ValueError("the hyperparameters must be finite numbers")
        if (r <= 0).any() or (r >= 1).any():
            raise ValueError(f"r, the train fraction, must lie in (0, 1), got {r.tolist()}")
        return hyperparameter_features(lr, wd, r)

    def _curve_row(self, curve: np.ndarray, hyper: Optional[np.ndarray]) -> dict[str, float]:
        """Every feature of the model for one curve's window (``(>= window,)``) and its
        hyperparameter row (``(4,)`` or None)."""
        out: dict[str, float] = {}
        if any(f in LOSS_ONLY for f in self.features):
            out.update(curve_features(curve, self.window, self.detrend))
        if any(f in TRANSFER for f in self.features):
            out.update(transfer_features(curve, self.window))
        if hyper is not None:
            out.update(zip(HYPERPARAMETERS, map(float, hyper)))
        return out

    def features_of(self, curves, hyperparameters: Optional[dict] = None) -> np.ndarray:
        """``(n_curves, k)``: the features of each training-loss curve (one curve ``(T,)``,
        ``(n_curves, T)``, or a sequence of curves of any lengths ``>= window``), with
        ``hyperparameters`` where the model reads them (see :meth:`_hyper_rows`). Only
        loss features can come from a plain curve; use :meth:`predict_runs` otherwise."""
        self._check_loss_only()
        curves = _as_curves(curves)
        hyper = self._hyper_rows(hyperparameters, len(curves))
        rows = []
        for i, curve in enumerate(curves):
            try:
                f = self._curve_row(curve, None if hyper is None else hyper[i])
            except ValueError as err:
                raise ValueError(f"curve {i}: {err}") from None
            rows.append([f[k] for k in self.features])
        return np.array(rows, dtype=np.float64).reshape(-1, len(self.features))

    def predict_proba(self, curves, hyperparameters: Optional[dict] = None) -> np.ndarray:
        """``(n_curves,)``: the probability that each curve's run is positive (see ``label``),
        from its first ``window`` steps only (and ``hyperparameters`` where the model reads
        them)."""
        return self.proba_from_features(self.features_of(curves, hyperparameters))

    def predict(self, curves, hyperparameters: Optional[dict] = None) -> np.ndarray:
        """``(n_curves,)`` booleans: probability at or above ``threshold``."""
        return self.predict_proba(curves, hyperparameters) >= self.threshold

    def assess(self, curves, hyperparameters: Optional[dict] = None) -> list[Assessment]:
        """One :class:`Assessment` per training-loss curve (one curve ``(T,)``,
        ``(n_curves, T)``, or a sequence of curves, ``T >= window``), from its first
        ``window`` steps only. The first rule that applies gives the verdict:

        1. a NaN or inf in the window: ``"diverged"``;
        2. a mean loss over the first :data:`FIT_CHECK_FRACTION` of the window that is not
           positive (e.g. all zeros): ``"undetermined"``; the fit check and the features'
           logarithms need a positive loss, as a cross-entropy is;
        3. a mean loss over the last :data:`FIT_CHECK_FRACTION` of the window at least
           :data:`NEVER_FITS_RATIO` times the mean over its first: ``"never fits"``;
        4. a feature that is not finite: ``"undetermined"``;
        5. a feature more than :data:`RANGE_TOLERANCE_SD` standard deviations of the fitted
           values beyond their minimum or maximum: ``"undetermined"``, the reason naming
           each such feature and how far. Without ``feature_stats`` (a predictor saved
           by an older grokbook, with no training table either) this check is skipped
           and the reason of the verdict says so;
        6. else ``"yes"`` if the probability is at or above ``threshold``, ``"no"`` below.

        A model that reads the :data:`HYPERPARAMETERS` needs ``hyperparameters``
        (``lr``, ``weight_decay``, ``r``: one value for every curve or one per curve); their
        columns go through the same range check (5).

        :meth:`predict_proba` and :meth:`predict` score every curve regardless. Raises
        ValueError, naming the curve by its index, for a curve shorter than ``window``
        or not 1-D, for a predictor that needs more than the loss, and for
        hyperparameters missing or out of range where the model reads them."""
        self._check_loss_only()
        curves = _as_curves(curves)
        hyper = self._hyper_rows(hyperparameters, len(curves))
        out = []
        for i, curve in enumerate(curves):
            if curve.ndim != 1:
                raise ValueError(f"curve {i}: a loss curve is 1-D (one loss per step), got shape {curve.shape}")
            if len(curve) < self.window:
                raise ValueError(f"curve {i}: the curve has {len(curve)} steps, fewer than the window of "
                                 f"{self.window}")
            out.append(self._assess_one(curve[:self.window], None if hyper is None else hyper[i]))
        return out

    def _assess_one(self, loss: np.ndarray, hyper: Optional[np.ndarray] = None) -> Assessment:
        """:meth:`assess` of one window ``(window,)``."""
        n = self.window
        bad = np.flatnonzero(~np.isfinite(loss))
        if len(bad):
            return Assessment("diverged", None, f"the loss is {loss[bad[0]]} at step {bad[0]}, inside the window "
                              f"of {n} steps")
        k = max(int(n * FIT_CHECK_FRACTION), 1)
        start, end = float(loss[:k].mean()), float(loss[-k:].mean())
        if not start > 0:
            return Assessment("undetermined", None, f"the loss is not positive at the start (mean {start:.4g} over "
                              f"steps 0 to {k - 1}); the fit check and the features need a positive training loss")
        with np.errstate(all="ignore"):  # a flat curve has no oscillation: 0/0 in its Hjorth mobility
            f = self._curve_row(loss, hyper)
        features = {name: float(f[name]) for name in self.features}
        if end >= NEVER_FITS_RATIO * start:
            return Assessment("never fits", None, f"the loss has not fallen: mean {end:.4g} over steps {n - k} to "
                              f"{n - 1} against {start:.4g} over steps 0 to {k - 1} (ratio {end / start:.2f}, "
                              f"never fits at {NEVER_FITS_RATIO} or more)", features)
        nonfinite = [name for name, v in features.items() if not math.isfinite(v)]
        if nonfinite and set(nonfinite) <= set(TRANSFER) - {"slope_late"}:
            return Assessment("undetermined", None, f"the loss does not fall by a factor 2 (0.3 decades) within the "
                              f"window of {n} steps, the fall the scale-free features take as the run's unit of time",
                              features)
        if nonfinite:
            return Assessment("undetermined", None, f"{', '.join(nonfinite)} not finite (is the curve constant "
                              "over part of the window?)", features)
        x = np.array([features[name] for name in self.features])
        if self.feature_stats is None:
            checked = ("; the feature ranges were not checked: this predictor holds no statistics of the "
                       "features it was fitted on (saved by an older grokbook without its training table)")
        else:
            outside = self._outside(x)
            if outside:
                return Assessment("undetermined", None, "outside the range the predictor was fitted on by more "
                                  f"than {RANGE_TOLERANCE_SD:g} sd: " + "; ".join(outside), features)
            checked = f"; every feature within the fitted range (tolerance {RANGE_TOLERANCE_SD:g} sd)"
        p = float(self.proba_from_features(x[None])[0])
        if not math.isfinite(p):
            return Assessment("undetermined", None, f"the model gives a probability of {p}", features)
        yes = p >= self.threshold
        return Assessment("yes" if yes else "no", p, f"P = {p:.3f} {'>=' if yes else '<'} threshold "
                          f"{self.threshold:.3f}{checked}", features)

    def _outside(self, x: np.ndarray) -> list[str]:
        """For features ``x`` (``(k,)``), one phrase per feature further than
        :data:`RANGE_TOLERANCE_SD` standard deviations outside the fitted ``[min, max]``,
        furthest first."""
        st = self.feature_stats
        lo, hi, sd = st["min"], st["max"], st["std"]
        below, above = lo - x, x - hi
        beyond = np.maximum(np.maximum(below, above), 0.0)
        far = beyond > RANGE_TOLERANCE_SD * sd
        phrases = []
        for j in sorted(np.flatnonzero(far), key=lambda j: -beyond[j] / sd[j] if sd[j] > 0 else -np.inf):
            name, side = self.features[j], ("below the smallest" if below[j] > 0 else "above the largest")
            edge = lo[j] if below[j] > 0 else hi[j]
            if sd[j] > 0:
                phrases.append(f"{name} = {x[j]:.4g} is {beyond[j] / sd[j]:.1f} sd ({sd[j]:.3g}) {side} "
                               f"fitted value {edge:.4g}")
            else:
                phrases.append(f"{name} = {x[j]:.4g}, while every fitted run had {edge:.4g}")
        return phrases

    def predict_runs(self, runs: Sequence) -> np.ndarray:
        """``(n_runs,)`` probabilities of stored runs (any of :data:`FEATURES`)."""
        X = np.array([[early_features(run, self.window, self.detrend)[k] for k in self.features] for run in runs])
        return self.proba_from_features(X.reshape(-1, len(self.features)))

    def to_json(self) -> dict:
        """A JSON-ready dict (numbers and lists only)."""
        out = {"format": _FORMAT, "features": list(self.features), "window": self.window,
               "detrend": self.detrend, "mean": self.mean.tolist(), "scale": self.scale.tolist(),
               "coef": self.coef.tolist(), "intercept": self.intercept, "threshold": self.threshold,
               "recall": self.recall, "label": self.label, "meta": self.meta}
        if self.training is not None:
            out["training"] = {"X": self.training["X"].tolist(), "y": self.training["y"].astype(int).tolist(),
                               **({"configs": self.training["configs"]} if "configs" in self.training else {})}
        if self.feature_stats is not None:
            out["feature_stats"] = {s: np.asarray(v).tolist() for s, v in self.feature_stats.items()}
        return out

    @classmethod
    def from_json(cls, d: dict) -> "GrokPredictor":
        """The inverse of :meth:`to_json`; ValueError naming what is missing or malformed.
        A file without ``feature_stats`` (saved before grokbook kept them) gets them from
        its training table if it has one, else none (then :meth:`assess` checks no range)."""
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise ValueError(f"not a grokbook predictor (expected format {_FORMAT!r})")
        try:
            features = tuple(str(f) for f in d["features"])
            k = len(features)
            arrays = {n: np.asarray(d[n], dtype=np.float64) for n in ("mean", "scale", "coef")}
            pred = cls(features, int(d["window"]), str(d["detrend"]), arrays["mean"], arrays["scale"],
                       arrays["coef"], float(d["intercept"]), float(d["threshold"]), float(d["recall"]),
                       str(d["label"]), dict(d.get("meta", {})))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"malformed predictor: {type(err).__name__}: {err}") from None
        bad = [n for n, a in arrays.items() if a.shape != (k,) or not np.all(np.isfinite(a))]
        if bad or not set(features) <= set(PREDICTOR_FEATURES) or not np.isfinite(pred.intercept):
            raise ValueError(f"malformed predictor: {bad or 'unknown features or intercept'}")
        if "training" in d:
            t = d["training"]
            training = {"X": np.asarray(t["X"], dtype=np.float64).reshape(-1, k),
                        "y": np.asarray(t["y"], dtype=bool)}
            if "configs" in t:
                training["configs"] = list(t["configs"])
            pred = dataclasses.replace(pred, training=training)
        if "feature_stats" in d:
            try:
                stats = {s: np.asarray(d["feature_stats"][s], dtype=np.float64) for s in ("min", "max", "mean", "std")}
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f"malformed predictor: feature_stats: {type(err).__name__}: {err}") from None
            if any(a.shape != (k,) or not np.all(np.isfinite(a)) for a in stats.values()) or np.any(stats["std"] < 0):
                raise ValueError(f"malformed predictor: feature_stats must hold min, max, mean and std, {k} finite "
                                 "numbers each")
            pred = dataclasses.replace(pred, feature_stats=stats)
        elif pred.training is not None and len(pred.training["X"]):
            pred = dataclasses.replace(pred, feature_stats=_feature_stats(pred.training["X"]))
        return pred

    def save(self, path) -> None:
        """Write as JSON, atomically."""
        import json
        import os
        import tempfile
        from pathlib import Path

        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_json(), f, indent=1)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path) -> "GrokPredictor":
        """Read a predictor saved by :meth:`save`; ValueError if the file is not one."""
        import json
        from pathlib import Path

        try:
            d = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read a predictor from {path}: {err}") from None
        return cls.from_json(d)

    @classmethod
    def default(cls, with_hyperparameters: bool = False) -> "GrokPredictor":
        """The predictor shipped with the package, fitted on every family of the corpus of
        runs: from the loss curve alone (``grokbook fit-predictor`` regenerates it), or
        with ``with_hyperparameters`` the one that also reads the learning rate, weight
        decay and train fraction (``grokbook fit-predictor --hyperparameters``). Chapter 12 scores both feature sets held out by family."""
        return cls.load(DEFAULT_HP_PATH if with_hyperparameters else DEFAULT_PATH)

    @classmethod
    def book_sweep(cls) -> "GrokPredictor":
        """The predictor fitted on chapter 9's sweep of the book's model alone:
        :meth:`fit_runs` on :func:`~grokbook.experiments.book_grid.book_sweep` with the
        defaults (``grokbook fit-predictor --book-sweep`` regenerates it). In family for
        that model (chapter 11's search prunes with it); off it, chapter 12 measures it
        near chance."""
        return cls.load(BOOK_SWEEP_PATH)
