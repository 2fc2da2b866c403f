"""The LU mechanism of Omnigrok (Liu, Michaud and Tegmark 2023): pure helpers.

Plotted against the weight norm ``w``, the final training loss of runs constrained to
the sphere ``||theta|| = w`` is L-shaped and the final test loss U-shaped; the bottom
of the U, ``w_c``, is the norm of the generalizing solutions. Nothing here trains: the
constrained runs are ordinary :class:`~grokbook.config.RunConfig` runs with
``fixed_norm`` set, trained through :meth:`~grokbook.store.RunStore.get_or_train`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np

from .config import RunConfig


def norm_grid(lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` norms spaced evenly in log between ``lo`` and ``hi`` (inclusive), ``(n,)``."""
    if not 0 < lo < hi or n < 2:
        raise ValueError(f"need 0 < lo ({lo}) < hi ({hi}) and n ({n}) >= 2")
    return np.geomspace(lo, hi, n)


def norm_sweep_configs(base: RunConfig, norms: Iterable[float], **changes) -> list[RunConfig]:
    """One config per norm: ``base`` with ``fixed_norm`` set to it (and ``changes``
    applied to every one, e.g. ``weight_decay=0.0``), in the order of ``norms``."""
    out = []
    for w in norms:
        w = float(w)
        if not w > 0:
            raise ValueError(f"a fixed norm must be positive, got {w}")
        out.append(base.replace(fixed_norm=w, **changes))
    return out


@dataclass(frozen=True)
class LUCurves:
    """Final losses and accuracies of a norm sweep, each ``(n,)``, sorted by ``norms``.

    ``train_loss`` is the loss of the last iteration's weights on the training set,
    ``test_loss`` and ``test_acc`` the validation loss and accuracy of the final weights.
    """

    norms: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    train_acc: np.ndarray
    test_acc: np.ndarray


def lu_curves(runs: Sequence) -> LUCurves:
    """:class:`LUCurves` of fixed-norm runs (``Run`` objects with ``config.fixed_norm``
    > 0). A diverged run (no final validation) contributes NaNs."""
    rows = []
    for run in runs:
        w = run.config.fixed_norm
        if not w > 0:
            raise ValueError(f"run {run.config.hash()} is not a fixed-norm run")
        finished = run.diverged_at is None and len(run.val_steps) and run.val_steps[-1] == run.config.steps
        nan = float("nan")
        rows.append((w, float(run.metrics["train_loss"][-1]) if finished else nan,
                     float(run.val_loss[-1]) if finished else nan,
                     float(run.metrics["train_acc"][-1]) if finished else nan,
                     float(run.val_acc[-1]) if finished else nan))
    a = np.array(sorted(rows), dtype=np.float64).reshape(-1, 5)
    return LUCurves(*(a[:, k] for k in range(5)))


def best_norm(norms: Sequence[float], test_loss: Sequence[float], refine: bool = True) -> float:
    """``w_c``: the norm of the smallest test loss (NaNs ignored).

    With ``refine``, and the minimum at an interior point, the vertex of the parabola
    through the three points around it in ``log(norm)`` (exact when the loss is a
    parabola in ``log w``), clipped to the neighbours' interval.
    """
    w, l = np.asarray(norms, dtype=np.float64), np.asarray(test_loss, dtype=np.float64)
    if w.shape != l.shape or w.ndim != 1:
        raise ValueError(f"norms {w.shape} and losses {l.shape} must be equal 1-d shapes")
    ok = np.isfinite(l) & (w > 0)
    if not ok.any():
        raise ValueError("no finite test loss")
    w, l = w[ok], l[ok]
    order = np.argsort(w)
    w, l = w[order], l[order]
    k = int(np.argmin(l))
    if not refine or k == 0 or k == len(w) - 1:
        return float(w[k])
    x, y = np.log(w[k - 1:k + 2]), l[k - 1:k + 2]
    vertex = parabola_vertex(x, y)
    if vertex is None:
        return float(w[k])
    return float(np.exp(np.clip(vertex, x[0], x[2])))


def parabola_vertex(x: Sequence[float], y: Sequence[float]) -> Optional[float]:
    """The x of the vertex of the parabola through three points ``(x_i, y_i)``; None if
    they are collinear or the parabola opens downward (no minimum)."""
    x0, x1, x2 = map(float, x)
    y0, y1, y2 = map(float, y)
    d1, d2 = (y1 - y0) / (x1 - x0), (y2 - y1) / (x2 - x1)
    a = (d2 - d1) / (x2 - x0)
    if not a > 0:
        return None
    # y = a x^2 + b x + c with slope of chord (x0, x1) = a (x0 + x1) + b.
    b = d1 - a * (x0 + x1)
    return -b / (2 * a)


def time_to_cross(steps: Sequence[float], values: Sequence[float], level: float,
                  from_above: bool = True) -> Optional[int]:
    """First step at which ``values`` falls to ``level`` or below (``from_above``), or
    rises to it or above; None if never."""
    s, v = np.asarray(steps), np.asarray(values)
    hit = np.flatnonzero(v <= level if from_above else v >= level)
    return int(s[hit[0]]) if len(hit) else None


def delay(t_a: Optional[int], t_b: Optional[int]) -> Optional[int]:
    """``t_b - t_a``, or None when either time was never reached."""
    return None if t_a is None or t_b is None else int(t_b - t_a)
