"""The LU mechanism of Omnigrok (Liu, Michaud and Tegmark 2023): pure helpers.

Plotted against the weight norm ``w``, the final training loss of runs constrained to
the sphere ``||theta|| = w`` is L-shaped and the final test loss U-shaped; the bottom
of the U, ``w_c``, is the norm of the generalizing solutions. Nothing here trains: the
constrained runs are ordinary :class:`~grokbook.config.RunConfig` runs with
``fixed_norm`` set, trained through :meth:`~grokbook.store.RunStore.get_or_train`.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np

from .config import RunConfig
from .phases import PhaseTimes, is_grokking


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


# --- shapes of the curves, the sweep across seeds, the runs along the norm axis -------


def l_shaped(loss: Sequence[float], drop: float = 0.1, tol: float = 0.05) -> bool:
    """Whether a loss against increasing norm, ``(n,)`` (NaNs not allowed), is an L: it
    ends at most ``drop`` times where it starts (``loss[-1] <= drop * loss[0]``) and never
    rises by more than ``tol`` times its range between consecutive norms (flat or falling
    from the smallest norm to the largest). A U fails (it rises again); so does a flat line."""
    y = np.asarray(loss, dtype=np.float64)
    if y.ndim != 1 or len(y) < 3 or not np.all(np.isfinite(y)):
        return False
    span = float(y.max() - y.min())
    return bool(y[-1] <= drop * y[0] and np.all(np.diff(y) <= tol * span))


def u_shaped(loss: Sequence[float], rise: float = 2.0) -> bool:
    """Whether a loss against increasing norm, ``(n,)``, is a U: its minimum lies strictly
    inside (neither at the smallest nor the largest norm) and both ends are at least
    ``rise`` times the minimum. An L fails (its minimum is at the last norm, or the last
    norm is not ``rise`` times higher); NaNs fail."""
    y = np.asarray(loss, dtype=np.float64)
    if y.ndim != 1 or len(y) < 3 or not np.all(np.isfinite(y)):
        return False
    k = int(np.argmin(y))
    return bool(0 < k < len(y) - 1 and y[0] >= rise * y[k] and y[-1] >= rise * y[k])


def lu_curves_by_seed(runs: Sequence) -> dict[int, LUCurves]:
    """The fixed-norm runs of a sweep replicated over seeds, grouped by
    ``config.seed``: ``{seed: LUCurves}`` (each sorted by norm), seeds in increasing order."""
    groups: dict[int, list] = {}
    for run in runs:
        groups.setdefault(int(run.config.seed), []).append(run)
    return {s: lu_curves(groups[s]) for s in sorted(groups)}


@dataclass(frozen=True)
class Band:
    """A curve over seeds at common norms: ``norms``, ``median``, ``lo`` (min) and ``hi``
    (max), each ``(n,)``; ``values`` ``(n_seeds, n)`` the curves themselves."""

    norms: np.ndarray
    median: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    values: np.ndarray


def band(curves: Sequence[LUCurves], field: str) -> Band:
    """Median, min and max over seeds of ``field`` (``train_loss``, ``test_loss``,
    ``train_acc`` or ``test_acc``) of curves measured at the same norms. NaNs (diverged
    runs) are ignored where another seed has a value."""
    if not curves:
        raise ValueError("no curves")
    norms = curves[0].norms
    if any(c.norms.shape != norms.shape or not np.allclose(c.norms, norms) for c in curves):
        raise ValueError("the curves are not measured at the same norms")
    v = np.stack([np.asarray(getattr(c, field), dtype=np.float64) for c in curves])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column stays NaN, silently
        return Band(norms.copy(), np.nanmedian(v, axis=0), np.nanmin(v, axis=0), np.nanmax(v, axis=0), v)


def value_at(steps: Sequence[int], values: Sequence[float], t: Optional[int]) -> float:
    """``values`` at the first of ``steps`` (increasing) at or after step ``t``; the last
    value if ``t`` is past the end; NaN if ``t`` is None (never reached)."""
    if t is None:
        return float("nan")
    s, v = np.asarray(steps), np.asarray(values, dtype=np.float64)
    return float(v[min(int(np.searchsorted(s, t)), len(v) - 1)])


@dataclass(frozen=True)
class NormPath:
    """One run read against its seed's ``w_c`` (norms in the units of ``||theta||``,
    steps in optimisation steps).

    ``t2``: training accuracy reaches ``reach``; ``t_gen``: validation accuracy reaches
    the target (None: never); ``norm_init``, ``norm_t2``, ``norm_gen`` (NaN if never),
    ``norm_end``, ``norm_min``, ``norm_max``; ``val_at_t2`` the validation accuracy at
    ``t2`` (a fraction); ``w_c`` the bottom of the seed's U."""

    w_c: float
    t2: Optional[int]
    t_gen: Optional[int]
    norm_init: float
    norm_t2: float
    norm_gen: float
    norm_end: float
    norm_min: float
    norm_max: float
    val_at_t2: float

    @property
    def delay(self) -> Optional[int]:
        """``t_gen - t2`` in steps (negative: validation first), None if either is never."""
        return delay(self.t2, self.t_gen)

    def generalizes_near_w_c(self, factor: float = 1.25) -> bool:
        """The LU account of this run's generalization: it reaches the validation target,
        at a norm within ``factor`` of ``w_c`` (``w_c / factor <= norm <= factor w_c``)."""
        return bool(self.t_gen is not None and w_c_ratio_ok(self.norm_gen, self.w_c, factor))

    def memorizes_above_w_c(self, factor: float = 1.25) -> bool:
        """It fits the training set (``t2`` reached) at a norm above ``factor w_c``: the
        large-norm start that the LU account of grokking needs."""
        return bool(self.t2 is not None and self.norm_t2 > factor * self.w_c)


def w_c_ratio_ok(norm: float, w_c: float, factor: float) -> bool:
    """Whether ``norm`` lies within ``factor`` (> 1) of ``w_c``, on either side."""
    if not factor > 1:
        raise ValueError(f"factor must be > 1, got {factor}")
    return bool(np.isfinite(norm) and w_c / factor <= norm <= factor * w_c)


def norm_path(steps: Sequence[int], train_acc: Sequence[float], weight_norm: Sequence[float],
              val_steps: Sequence[int], val_acc: Sequence[float], w_c: float,
              reach: float = 0.99, target: float = 0.9) -> NormPath:
    """:class:`NormPath` of a run from its curves: ``steps``, ``train_acc`` and
    ``weight_norm`` ``(n,)`` per iteration, ``val_steps`` and ``val_acc`` ``(m,)``
    (accuracies as fractions); ``t2`` is the first step with ``train_acc >= reach`` and
    ``t_gen`` the first validation step with ``val_acc >= target``."""
    w = np.asarray(weight_norm, dtype=np.float64)
    t2 = time_to_cross(steps, train_acc, reach, from_above=False)
    tg = time_to_cross(val_steps, val_acc, target, from_above=False)
    return NormPath(float(w_c), t2, tg, float(w[0]), value_at(steps, w, t2), value_at(steps, w, tg),
                    float(w[-1]), float(w.min()), float(w.max()), value_at(val_steps, val_acc, t2))


def run_norm_path(run, w_c: float, reach: float = 0.99, target: float = 0.9) -> NormPath:
    """:func:`norm_path` of a :class:`~grokbook.run.Run` (its ``weight_norm`` metric)."""
    return norm_path(run.steps, run.metrics["train_acc"], run.metrics["weight_norm"], run.val_steps,
                     run.val_acc, w_c, reach=reach, target=target)


def grokking_like(t2: Optional[int], t_gen: Optional[int], val_at_t2: float, min_ratio: float = 5.0,
                  max_val_at_t2: float = 0.5) -> bool:
    """The chapter's test of a grokking-like gap: the training set is fitted (``t2``), the
    validation target is reached (``t_gen``) at least ``min_ratio`` times later
    (``t_gen >= min_ratio * max(t2, 1)``), and validation accuracy at ``t2`` is at most
    ``max_val_at_t2`` (validation had not risen with training)."""
    return bool(is_grokking(PhaseTimes(None, t2, None, t_gen), min_ratio) and val_at_t2 <= max_val_at_t2)


def run_config_of(values: dict) -> RunConfig:
    """The :class:`RunConfig` made of the entries of ``values`` (a chapter's parameter
    values) named as its fields, the others ignored: the run a chapter that builds its
    config field by field from its parameters (as chapter 1 does) trains."""
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{k: v for k, v in values.items() if k in fields})

