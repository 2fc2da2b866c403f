"""Scoring early predictors of grokking: censored concordance, stratified AUC, and the
hyperparameter-only baseline.

A run's outcome is a time to generalize, right-censored at its budget: a run that has
not generalized by the end of its budget may still do so later ("memorizes" means "not
yet"). :func:`concordance_index` (Harrell's C) scores a predictor against that time
with the censoring handled; :func:`stratified_auc` scores it within strata (e.g. runs
of one learning rate), so that a predictor that only tracks the stratifying
hyperparameter scores 0.5; :func:`hyperparameter_features` is the design matrix of the
model of the hyperparameters alone that an early signal must beat.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def concordance_index(score, time, event, strata=None) -> float:
    """Harrell's C of ``score`` (higher: expected to generalize *sooner*) against the
    censored time to generalize.

    ``score``, ``time``: ``(n,)`` floats; ``event``: ``(n,)`` booleans (True: generalized
    at ``time``; False: censored, not generalized by ``time``). A pair is comparable when
    the run with the smaller time generalized at it (or both have the same time and only
    one generalized, the censored one having lasted at least as long); it is concordant
    when that run has the higher score, and a tie in score counts one half. Pairs where
    both generalized at the same time are not comparable (as in lifelines). With
    ``strata`` (``(n,)`` ids) only pairs of one stratum count (e.g. seeds of one
    configuration). ValueError when no pair is comparable. O(n^2) memory: meant for up to
    a few thousand runs.
    """
    s, t = np.asarray(score, dtype=np.float64), np.asarray(time, dtype=np.float64)
    e = np.asarray(event, dtype=bool)
    if not (s.shape == t.shape == e.shape) or s.ndim != 1:
        raise ValueError(f"score {s.shape}, time {t.shape} and event {e.shape} must be 1-D of one length")
    if not (np.isfinite(s).all() and np.isfinite(t).all()):
        raise ValueError("score and time must be finite")
    # comparable (i, j): i generalized, and j lasted longer, or as long without generalizing
    comp = e[:, None] & ((t[:, None] < t[None, :]) | ((t[:, None] == t[None, :]) & ~e[None, :]))
    if strata is not None:
        g = np.asarray(strata)
        if g.shape != s.shape:
            raise ValueError(f"strata {g.shape} and score {s.shape} differ in shape")
        comp &= g[:, None] == g[None, :]
    n = comp.sum()
    if n == 0:
        raise ValueError("no comparable pair: concordance needs a run that generalized before another's time")
    wins = (s[:, None] > s[None, :])[comp].sum() + 0.5 * (s[:, None] == s[None, :])[comp].sum()
    return float(wins / n)


def stratified_auc(labels, scores, strata) -> float:
    """The AUC pooled within strata: over every (positive, negative) pair *of the same
    stratum*, the share where the positive scores higher (ties one half).

    ``labels``: ``(n,)`` booleans; ``scores``: ``(n,)``; ``strata``: ``(n,)`` ids. Strata
    with one class only contribute no pair. A score that depends on the runs only
    through their stratum scores 0.5. ValueError when no stratum has both classes.
    """
    y, s = np.asarray(labels, dtype=bool), np.asarray(scores, dtype=np.float64)
    g = np.asarray(strata)
    if not (y.shape == s.shape == g.shape) or y.ndim != 1:
        raise ValueError(f"labels {y.shape}, scores {s.shape} and strata {g.shape} must be 1-D of one length")
    wins = pairs = 0.0
    for k in np.unique(g):
        m = g == k
        pos, neg = s[m & y], s[m & ~y]
        if len(pos) and len(neg):
            wins += (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
            pairs += len(pos) * len(neg)
    if pairs == 0:
        raise ValueError("no stratum holds both classes")
    return float(wins / pairs)


def strata(*columns) -> np.ndarray:
    """One stratum id per run, ``(n,)`` strings, from ``columns`` (each ``(n,)``, e.g. the
    learning rate and the train fraction): runs share a stratum when they agree on all."""
    return np.array(["|".join(map(str, v)) for v in zip(*columns)])


#: Where the hyperparameter model floors a weight decay of 0 before its logarithm.
WD_FLOOR = 1e-3


def hyperparameter_features(lr: Sequence[float], weight_decay: Sequence[float], r: Sequence[float]) -> np.ndarray:
    """The hyperparameter-only design ``(n, 4)``: log10 lr, log10 weight decay (floored
    at :data:`WD_FLOOR`, so that 0 is allowed), the train fraction r, and the interaction
    log10 lr x log10 weight decay."""
    lr_, wd, r_ = (np.asarray(a, dtype=np.float64) for a in (lr, weight_decay, r))
    if not (lr_.shape == wd.shape == r_.shape) or lr_.ndim != 1:
        raise ValueError("lr, weight_decay and r must be 1-D of one length")
    if (lr_ <= 0).any() or (wd < 0).any():
        raise ValueError("learning rates must be > 0 and weight decays >= 0")
    a, b = np.log10(lr_), np.log10(np.maximum(wd, WD_FLOOR))
    return np.column_stack([a, b, r_, a * b])


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for a binomial proportion ``k / n`` (``0 <= k <= n``,
    ``n >= 1``) at ``level``: ``(low, high)`` in [0, 1]. Unlike the normal interval it
    stays inside [0, 1] and is not empty at k = 0 or k = n."""
    from scipy.stats import norm

    if not (isinstance(k, (int, np.integer)) and isinstance(n, (int, np.integer))) or not 0 <= k <= n or n < 1:
        raise ValueError(f"need whole numbers 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    z = norm.ppf(0.5 + level / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))
