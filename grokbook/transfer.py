"""Early-curve features that do not depend on the trainer's scale (issue 34, part 2).

A predictor fitted on one trainer's curves meets curves from others: a loss in other
units or offset by a constant factor (label smoothing, a summed instead of a mean loss),
time running faster or slower (another learning rate, warm-up, a minibatch epoch of
several steps), and minibatch noise on every step. The features of
:func:`transfer_features` are built to move little under each of these, which
``tests/test_transfer.py`` measures with a stated tolerance each:

- **loss scale**: every feature is a difference of ``log10`` losses or a share of steps,
  so multiplying the loss by a constant leaves it unchanged (to rounding);
- **time**: steps are counted in units of the run's own first fall, ``t_a``, the first
  step at which the smoothed loss is :data:`FALL` decades below its start; a curve
  slowed down by a factor keeps its features (up to the discreteness of steps);
- **minibatch noise**: the curve is smoothed by a running median over
  :func:`smoothing_width` steps before anything is read from it.

All features are computed from the first ``n`` steps of one training-loss curve.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: The features of :func:`transfer_features`, in order.
TRANSFER = ("fall_4", "fall_16", "rise_max", "up_share", "slope_late")

#: The first fall that sets the run's own time unit ``t_a``, in decades of loss (a factor
#: 2): deep enough into the fall that a few steps of noise move ``t_a`` little.
FALL = 0.3

#: A rebound counts in ``up_share`` when the smoothed loss is this many decades above its
#: running minimum.
REBOUND = 0.05


def smoothing_width(n: int) -> int:
    """The running median's width for a window of ``n`` steps: odd, ``n // 40`` or 5 at
    least (11 for the 400 steps of the paper's window)."""
    w = max(5, n // 40)
    return w + 1 - w % 2


def smoothed_log(loss: Sequence[float], n: int) -> np.ndarray:
    """``(n,)``: ``log10`` of the first ``n`` losses after a running median of
    :func:`smoothing_width` steps (the window shrinks at the ends, centred where it
    can). ValueError if the curve is shorter than ``n``, not finite or not positive there."""
    x = np.asarray(loss, dtype=np.float64)
    if x.ndim != 1 or len(x) < n:
        raise ValueError(f"need a 1-D curve of at least {n} steps, got shape {x.shape}")
    x = x[:n]
    if not (np.all(np.isfinite(x)) and np.all(x > 0)):
        raise ValueError("the loss must be finite and positive in the window")
    h = smoothing_width(n) // 2
    out = np.empty(n)
    if n > 2 * h:  # the centred windows at once, the shrinking ones at the ends one by one
        out[h:n - h] = np.median(np.lib.stride_tricks.sliding_window_view(x, 2 * h + 1), axis=1)
    for t in [*range(min(h, n)), *range(max(h, n - h), n)]:
        out[t] = np.median(x[max(0, t - h):t + h + 1])
    return np.log10(out)


def start(n: int) -> int:
    """The step whose smoothed loss is the curve's start: the first one the running
    median of :func:`smoothing_width` steps covers on both sides (so that it scales with
    the window, as time does)."""
    return smoothing_width(n) // 2


def envelope(s: np.ndarray) -> np.ndarray:
    """``(n,)``: the running minimum of the smoothed log loss ``s`` from its start on
    (before it: the start's value), the lowest loss reached so far, which a rebound does
    not lift."""
    h = start(len(s))
    e = np.full(len(s), s[h])
    e[h:] = np.minimum.accumulate(s[h:])
    return e


def first_fall(s: np.ndarray, fall: float = FALL) -> float | None:
    """``t_a`` (steps, fractional): where the :func:`envelope` of the smoothed log loss
    ``s`` (``(n,)``) first reaches ``fall`` decades below its start ``s[start(n)]``,
    interpolated linearly between two steps; None if it never does."""
    h, e = start(len(s)), envelope(s)
    level = s[h] - fall
    hit = np.flatnonzero(e[h:] <= level)
    if not len(hit):
        return None
    t = int(hit[0]) + h
    return float(t - 1 + (e[t - 1] - level) / (e[t - 1] - e[t])) if t > h else float(t)


def transfer_features(loss: Sequence[float], n: int) -> dict[str, float]:
    """Scale-free features of the first ``n`` steps (``n >= 40``) of a training-loss
    curve, on its smoothed ``log10`` loss ``s`` (:func:`smoothed_log`) and the run's own
    time unit ``t_a`` (:func:`first_fall`):

    - ``fall_4``, ``fall_16``: decades fallen from the start (:func:`start`) by
      ``4 t_a`` and ``16 t_a`` along the :func:`envelope` ``e``, ``s[start] - e(k t_a)``
      (interpolated; read at the window's last step when ``k t_a`` lies beyond it);
    - ``rise_max``: the largest rebound after ``t_a``, ``max_t (s[t] - min_{u <= t} s[u])``
      in decades (the slingshots' mark);
    - ``up_share``: the share of the steps from ``t_a`` on whose ``s`` is more than
      :data:`REBOUND` decades above its running minimum;
    - ``slope_late``: the slope of ``s`` against ``log10`` of the step over the window's
      second half (decades of loss per decade of steps).

    A curve that never falls by :data:`FALL` decades has no time unit: every feature but
    ``slope_late`` is NaN (:func:`grokbook.predict`'s "never fits" verdict covers it).
    """
    if n < 40:
        raise ValueError(f"window n={n} is too short; need at least 40 steps")
    s = smoothed_log(loss, n)
    half = np.arange(n // 2, n)
    slope = float(np.polyfit(np.log10(half), s[half], 1)[0])
    ta = first_fall(s)
    if ta is None:
        nan = float("nan")
        return dict(fall_4=nan, fall_16=nan, rise_max=nan, up_share=nan, slope_late=slope)
    e = envelope(s)
    at = lambda k: float(np.interp(min(k * ta, n - 1), np.arange(n), e))
    after = s[int(np.ceil(ta)):]
    rise = after - np.minimum.accumulate(after)
    s0 = s[start(n)]
    return dict(fall_4=float(s0 - at(4)), fall_16=float(s0 - at(16)), rise_max=float(rise.max()),
                up_share=float(np.mean(rise > REBOUND)), slope_late=slope)
