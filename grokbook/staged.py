"""A predictor that decides at several points of a trial (issue 34, part 4).

:class:`~grokbook.predict.GrokPredictor` judges a run once, from the first steps of its
training loss. A search can afford to look again later: at a few fractions of the
budget (:data:`POINTS`: 5%, 10%, 20% and 40%) a :class:`StagedPredictor` reads what a
trial has reported by then, its training loss and its validation accuracy
(:func:`staged_features`), and gives the probability that the run generalizes within
its budget, one logistic regression per point, each with its own threshold: the
quantile of the fitted positives' probabilities that keeps ``recall`` of them at that
point. :class:`grokbook.pruning.StagedGrokkingPruner` prunes a trial at the first point
whose probability falls below its threshold.

It is fitted on offline records (:mod:`grokbook.experiments.records`), whose training
loss is downsampled (dense early) and whose validation accuracy is kept at every
evaluation step: :func:`staged_features` reads both the same way, interpolating the
logarithm of the training loss at the steps it needs. Saved as JSON, never pickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

#: The fractions of the budget at which a staged predictor decides.
POINTS = (0.05, 0.1, 0.2, 0.4)
#: The features at step ``s`` (:func:`staged_features`), in order.
STAGED_FEATURES = ("log_loss", "loss_change", "val_acc", "val_change", "val_best")
_FORMAT = "grokbook.StagedPredictor/1"


def staged_features(loss_steps: Sequence[float], loss: Sequence[float], val_steps: Sequence[float],
                    val_acc: Sequence[float], s: float) -> np.ndarray:
    """``(5,)``: what a trial has reported by step ``s``, as :data:`STAGED_FEATURES`:

    - ``log_loss``: log10 of the training loss at ``s`` and ``loss_change``: its change
      since ``s / 2`` (decades), both linearly interpolated in log10 between the reported
      ``loss_steps`` (``(n,)``, ascending) and ``loss`` (``(n,)``, positive);
    - ``val_acc``: the validation accuracy at the last evaluation at or before ``s``
      (``val_steps``, ``val_acc``: ``(m,)`` each, ascending steps), ``val_change``: its
      change since the last evaluation at or before ``s / 2`` (0 before any), and
      ``val_best``: the best so far.

    ValueError if the loss is not reported over ``[s / 2, s]`` or is not positive and
    finite, or if no evaluation is reported at or before ``s``."""
    t, x = np.asarray(loss_steps, np.float64), np.asarray(loss, np.float64)
    vs, va = np.asarray(val_steps, np.float64), np.asarray(val_acc, np.float64)
    if t.ndim != 1 or t.shape != x.shape or vs.ndim != 1 or vs.shape != va.shape:
        raise ValueError("loss_steps and loss, val_steps and val_acc must be 1-D pairs of one length each")
    if not len(t) or t[0] > s / 2 or t[-1] < s:
        raise ValueError(f"the training loss must be reported from step {s / 2:g} or before to step {s:g} or after")
    if not (np.all(np.isfinite(x)) and np.all(x > 0)):
        raise ValueError("the training loss must be finite and positive")
    seen = vs <= s
    if not seen.any():
        raise ValueError(f"no validation accuracy reported at or before step {s:g}")
    ll = np.interp([s, s / 2], t, np.log10(x))
    acc = va[seen]
    half = va[vs <= s / 2]
    return np.array([ll[0], ll[0] - ll[1], acc[-1], acc[-1] - (half[-1] if len(half) else 0.0), acc.max()])


@dataclass(frozen=True, eq=False)
class StagedPredictor:
    """One standardized logistic regression per point of :data:`POINTS` (or
    ``points``), on :data:`STAGED_FEATURES`.

    ``points``: fractions of the budget ``(P,)``; ``mean``, ``scale``, ``coef``: ``(P, 5)``;
    ``intercept``, ``threshold``: ``(P,)``; ``recall``: the share of the fitted positives
    each point's threshold keeps; ``label``: what positive means; ``meta``: provenance."""

    points: tuple[float, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    threshold: np.ndarray
    recall: float
    label: str
    meta: dict = field(default_factory=dict)

    @classmethod
    def fit(cls, X: np.ndarray, y: Sequence[bool], points: Sequence[float] = POINTS, *, recall: float = 0.99,
            C: float = 1.0, label: str = "positive", meta: Optional[dict] = None) -> "StagedPredictor":
        """Fit on ``X`` (``(n, P, 5)``: each run's features at each point) and outcomes
        ``y`` (``(n,)``). ValueError on shapes that disagree, non-finite features, a
        recall outside (0, 1] or a class with fewer than 2 runs."""
        from sklearn.linear_model import LogisticRegression

        X, y = np.asarray(X, np.float64), np.asarray(y, bool)
        points = tuple(float(p) for p in points)
        if X.ndim != 3 or X.shape != (len(y), len(points), len(STAGED_FEATURES)):
            raise ValueError(f"X {X.shape} must be (runs, points, features) = ({len(y)}, {len(points)}, "
                             f"{len(STAGED_FEATURES)})")
        if not np.all(np.isfinite(X)):
            raise ValueError("X holds non-finite features")
        if not 0 < recall <= 1:
            raise ValueError(f"recall must lie in (0, 1], got {recall}")
        if min(y.sum(), (~y).sum()) < 2:
            raise ValueError(f"need at least 2 runs of each class, got {int(y.sum())} and {int((~y).sum())}")
        mean, scale = X.mean(axis=0), X.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        coef, intercept, threshold = [], [], []
        for k in range(len(points)):
            model = LogisticRegression(C=C).fit((X[:, k] - mean[k]) / scale[k], y)
            coef.append(model.coef_[0]), intercept.append(model.intercept_[0])
            p = 1 / (1 + np.exp(-(((X[y, k] - mean[k]) / scale[k]) @ model.coef_[0] + model.intercept_[0])))
            threshold.append(np.quantile(p, 1 - recall, method="lower"))
        return cls(points, mean, scale, np.array(coef), np.array(intercept), np.array(threshold), float(recall),
                   label, dict(meta or {}, C=C, runs=len(y)))

    def with_recall(self, X: np.ndarray, y: Sequence[bool], recall: float) -> "StagedPredictor":
        """The same models with each point's threshold set to keep ``recall`` of the
        positives of ``X`` (``(n, P, 5)``) and ``y`` (the fitted runs)."""
        import dataclasses

        y = np.asarray(y, bool)
        th = [np.quantile(self.proba(np.asarray(X, np.float64)[y, k], k), 1 - recall, method="lower")
              for k in range(len(self.points))]
        return dataclasses.replace(self, threshold=np.array(th), recall=float(recall))

    def proba(self, x: np.ndarray, k: int) -> np.ndarray:
        """``(...)``: the probability of point ``k``'s model for features ``x``
        (``(..., 5)``)."""
        z = ((np.asarray(x, np.float64) - self.mean[k]) / self.scale[k]) @ self.coef[k] + self.intercept[k]
        return 1.0 / (1.0 + np.exp(-z))

    def decision_steps(self, budget: int) -> list[int]:
        """The step of each point for a trial of ``budget`` steps (``round(f * budget)``,
        at least 1)."""
        return [max(1, int(round(f * budget))) for f in self.points]

    def to_json(self) -> dict:
        return {"format": _FORMAT, "points": list(self.points), "features": list(STAGED_FEATURES),
                **{k: np.asarray(getattr(self, k)).tolist() for k in ("mean", "scale", "coef", "intercept", "threshold")},
                "recall": self.recall, "label": self.label, "meta": self.meta}

    @classmethod
    def from_json(cls, d: dict) -> "StagedPredictor":
        """The inverse of :meth:`to_json`; ValueError naming what is malformed."""
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise ValueError(f"not a grokbook staged predictor (expected format {_FORMAT!r})")
        try:
            points = tuple(float(p) for p in d["points"])
            arrays = {k: np.asarray(d[k], np.float64) for k in ("mean", "scale", "coef", "intercept", "threshold")}
            pred = cls(points, arrays["mean"], arrays["scale"], arrays["coef"], arrays["intercept"],
                       arrays["threshold"], float(d["recall"]), str(d["label"]), dict(d.get("meta", {})))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"malformed staged predictor: {type(err).__name__}: {err}") from None
        P, k = len(points), len(STAGED_FEATURES)
        shapes = {"mean": (P, k), "scale": (P, k), "coef": (P, k), "intercept": (P,), "threshold": (P,)}
        bad = [n for n, sh in shapes.items() if arrays[n].shape != sh or not np.all(np.isfinite(arrays[n]))]
        if bad or list(d.get("features", [])) != list(STAGED_FEATURES):
            raise ValueError(f"malformed staged predictor: {bad or 'features'}")
        return pred

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write as JSON, atomically."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_json(), f, indent=1)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "StagedPredictor":
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read a staged predictor from {path}: {err}") from None
        return cls.from_json(d)


def record_matrix(frame: Any, points: Sequence[float] = POINTS) -> np.ndarray:
    """``(n, P, 5)``: :func:`staged_features` of each record of ``frame`` (offline records,
    :mod:`grokbook.experiments.records`: the downsampled training loss at
    ``curve_steps``, validation accuracy at ``val_steps``) at each fraction of
    ``points`` of its own budget (``steps``)."""
    return np.array([[staged_features(r["curve_steps"], r["train_loss"], r["val_steps"], r["val_acc"], f * r["steps"])
                      for f in points] for _, r in frame.iterrows()])
