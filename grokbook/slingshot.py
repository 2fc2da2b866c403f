"""Slingshot events (Thilak et al. 2022) from per-step series of a run.

A slingshot is a cycle in which the norm of the last layer's weights grows fast and
then plateaus, while the training loss and the gradient norm spike. All positions
returned here are indices into the input arrays (one sample per training step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np
from scipy.ndimage import median_filter


@dataclass(frozen=True)
class Slingshots:
    """Detected events, each an increasing int array of step indices.

    ``onsets``: steps where the last-layer norm starts a fast growth that then
    plateaus; ``loss_spikes`` / ``grad_spikes``: first steps of training-loss /
    gradient-norm spikes (empty when the series was not given)."""

    onsets: np.ndarray
    loss_spikes: np.ndarray
    grad_spikes: np.ndarray

    def after(self, step: int) -> "Slingshots":
        """The events at ``step`` or later (e.g. past an early transient)."""
        return Slingshots(*(x[x >= step] for x in (self.onsets, self.loss_spikes, self.grad_spikes)))


class Baseline(NamedTuple):
    """Mean and central 95% interval ``[low, high]`` of a shuffled statistic."""

    mean: float
    low: float
    high: float


def _series(x, name: str, positive: bool = False) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must have shape (steps,), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    if np.any(x <= 0 if positive else x < 0):
        raise ValueError(f"{name} must be {'positive' if positive else 'non-negative'}")
    return x


def _check_window(window: int) -> int:
    if int(window) != window or window < 2:
        raise ValueError(f"window must be an integer >= 2, got {window!r}")
    return int(window)


def _separate(events: np.ndarray, min_separation: int) -> np.ndarray:
    """Keep events at least ``min_separation`` steps after the previous kept one."""
    kept: list[int] = []
    for e in events:
        if not kept or e - kept[-1] >= min_separation:
            kept.append(int(e))
    return np.array(kept, dtype=np.int64)


def growth_rate(norm, window: int = 100) -> np.ndarray:
    """Relative growth rate of a positive series, ``d log(norm) / dt`` per step.

    ``norm``: ``(steps,)``. Centred difference over ``window`` steps (``h = window // 2``):
    ``rate[t] = (log norm[t+h] - log norm[t-h]) / (2h)``; NaN where it is undefined
    (the first and last ``h`` steps). A rate of ``1e-3`` is 0.1% growth per step.
    """
    log_norm = np.log(_series(norm, "norm", positive=True))
    h = _check_window(window) // 2
    rate = np.full(len(log_norm), np.nan)
    if len(log_norm) > 2 * h:
        rate[h:len(log_norm) - h] = (log_norm[2 * h:] - log_norm[:-2 * h]) / (2 * h)
    return rate


def find_onsets(norm, *, window: int = 100, growth_threshold: float = 1e-3,
                plateau_threshold: float = 2.5e-4, plateau_steps: Optional[int] = None,
                min_separation: Optional[int] = None) -> np.ndarray:
    """Steps where ``norm`` (``(steps,)``, positive) starts a fast growth that plateaus.

    With ``rate = growth_rate(norm, window)`` (per step):

    - a growth episode is a maximal run of steps with ``rate > growth_threshold``;
    - its onset is the first step of the run, around the episode's peak rate, where
      ``rate >= peak / 2`` (for a ramp of log-norm starting at ``s`` this is ``s``);
    - the episode counts only if a plateau follows it before the next episode starts:
      ``plateau_steps`` (default ``window``) consecutive steps with
      ``rate < plateau_threshold`` (a decline, e.g. under weight decay, counts);
      growth still under way at the end of the series is not an onset;
    - an onset closer than ``min_separation`` (default ``window``) steps to the
      previous one is dropped.
    """
    rate = growth_rate(norm, window)
    window = int(window)
    plateau_steps = window if plateau_steps is None else int(plateau_steps)
    min_separation = window if min_separation is None else int(min_separation)
    if not plateau_threshold <= growth_threshold:
        raise ValueError(f"need plateau_threshold ({plateau_threshold}) <= growth_threshold ({growth_threshold})")
    if plateau_steps < 1:
        raise ValueError(f"plateau_steps must be >= 1, got {plateau_steps}")
    with np.errstate(invalid="ignore"):  # NaN edges compare False
        above = rate > growth_threshold
        below = rate < plateau_threshold
    edges = np.diff(np.r_[0, above.astype(np.int8), 0])
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    # plateau_at[j]: steps j .. j+plateau_steps-1 are all below plateau_threshold
    run = np.r_[0, np.cumsum(below)]
    plateau_at = np.zeros(len(rate), dtype=bool)
    m = len(rate) - plateau_steps + 1
    if m > 0:
        plateau_at[:m] = run[plateau_steps:] - run[:m] == plateau_steps
    onsets = []
    for i, (a, b) in enumerate(zip(starts, ends)):
        stop = starts[i + 1] if i + 1 < len(starts) else len(rate)
        if not plateau_at[b:stop].any():
            continue
        peak = a + int(np.argmax(rate[a:b]))
        onset = peak
        while onset > 0 and rate[onset - 1] >= rate[peak] / 2:
            onset -= 1
        onsets.append(onset)
    return _separate(np.array(onsets, dtype=np.int64), min_separation)


def find_spikes(series, *, window: int = 100, spike_factor: float = 5.0,
                min_separation: Optional[int] = None) -> np.ndarray:
    """First steps of spikes in a non-negative series (``(steps,)``, e.g. loss or grad norm).

    A step is in a spike when ``series[t] > spike_factor * baseline[t]``, with the
    baseline a running median over ``window`` steps centred on ``t`` (edges padded
    with the end values). For a positive series this is the log-space test
    ``log x[t] - median(log x) > log(spike_factor)``: a spike is a jump by a factor,
    whatever the loss level. Returns the first step of each run of such steps,
    dropping one closer than ``min_separation`` (default ``window``) steps to the
    previous. A spike longer than about ``window / 2`` steps lifts its own baseline
    and is missed.
    """
    x = _series(series, "series")
    window = _check_window(window)
    if not spike_factor > 1:
        raise ValueError(f"spike_factor must be > 1, got {spike_factor}")
    min_separation = window if min_separation is None else int(min_separation)
    hit = x > spike_factor * median_filter(x, size=window, mode="nearest")
    starts = np.flatnonzero(hit & ~np.r_[False, hit[:-1]])
    return _separate(starts, min_separation)


def find_slingshots(last_layer_norm, train_loss=None, grad_norm=None, *, window: int = 100,
                    growth_threshold: float = 1e-3, plateau_threshold: float = 2.5e-4,
                    plateau_steps: Optional[int] = None, spike_factor: float = 5.0,
                    min_separation: Optional[int] = None) -> Slingshots:
    """Slingshot onsets from the last-layer norm and spikes of the loss and gradient norm.

    ``last_layer_norm``, ``train_loss``, ``grad_norm``: ``(steps,)`` per-step series
    (the last two optional). Onsets by :func:`find_onsets` (defaults: ``window=100``
    steps, growth above ``1e-3`` per step in ``d log||W|| / dt``, i.e. 0.1% per step,
    followed by a plateau below ``2.5e-4`` per step for ``window`` steps); spikes by
    :func:`find_spikes` (default: ``5x`` the running median over ``window`` steps).
    Events of one kind are at least ``min_separation`` (default ``window``) steps apart.
    """
    empty = np.array([], dtype=np.int64)
    spikes = dict(window=window, spike_factor=spike_factor, min_separation=min_separation)
    return Slingshots(
        onsets=find_onsets(last_layer_norm, window=window, growth_threshold=growth_threshold,
                           plateau_threshold=plateau_threshold, plateau_steps=plateau_steps,
                           min_separation=min_separation),
        loss_spikes=empty if train_loss is None else find_spikes(train_loss, **spikes),
        grad_spikes=empty if grad_norm is None else find_spikes(grad_norm, **spikes),
    )


def _aligned(sorted_onsets: np.ndarray, gain_steps: np.ndarray, k: int) -> float:
    last = np.searchsorted(sorted_onsets, gain_steps, side="right") - 1
    ok = last >= 0
    ok[ok] = gain_steps[ok] - sorted_onsets[last[ok]] <= k
    return float(ok.mean())


def onset_alignment(onsets, gain_steps, k: int) -> float:
    """Fraction of ``gain_steps`` within ``k`` steps after an onset.

    ``onsets``, ``gain_steps``: 1-D step indices. A gain at ``g`` is aligned when some
    onset ``o`` has ``0 <= g - o <= k``. NaN when ``gain_steps`` is empty.
    """
    onsets, gains = np.sort(np.asarray(onsets, dtype=np.int64).ravel()), np.asarray(gain_steps, dtype=np.int64).ravel()
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if len(gains) == 0:
        return float("nan")
    return _aligned(onsets, gains, k)


def shuffled_baseline(onsets, gain_steps, k: int, n_steps: int, n_shuffles: int = 1000,
                      seed: int = 0, start: int = 0) -> Baseline:
    """:func:`onset_alignment` with the onsets placed at random: the chance level.

    Each shuffle draws ``len(onsets)`` onsets independently and uniformly from the
    integers ``start .. n_steps - 1`` (with replacement; ``start``: the first step where
    the real onsets were looked for). For ``m`` onsets and a gain at
    ``g`` with ``k <= g < n_steps`` the expected fraction is ``1 - (1 - (k+1)/n_steps)^m``.
    Returns the mean over ``n_shuffles`` shuffles and the 2.5 / 97.5 percentiles.
    """
    gains = np.asarray(gain_steps, dtype=np.int64).ravel()
    m = np.asarray(onsets).size
    if not 0 <= start < n_steps or n_shuffles < 1:
        raise ValueError(f"need 0 <= start < n_steps and n_shuffles >= 1, got {start}, {n_steps}, {n_shuffles}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if len(gains) == 0:
        return Baseline(float("nan"), float("nan"), float("nan"))
    return _summary(_shuffled(np.random.default_rng(seed), m, gains, k, start, n_steps, n_shuffles))


def _shuffled(rng: np.random.Generator, m: int, gains: np.ndarray, k: int, start: int, n_steps: int,
              n_shuffles: int) -> np.ndarray:
    """The aligned fraction of ``gains`` for each of ``n_shuffles`` draws of ``m``
    onsets uniform over ``start .. n_steps - 1``: ``(n_shuffles,)``."""
    draws = np.sort(rng.integers(start, n_steps, size=(n_shuffles, m)), axis=1)
    return np.array([_aligned(row, gains, k) for row in draws])


def _summary(fractions: np.ndarray) -> Baseline:
    """Mean and 2.5 / 97.5 percentiles of shuffled fractions."""
    low, high = np.percentile(fractions, [2.5, 97.5])
    return Baseline(float(fractions.mean()), float(low), float(high))


class LazyStretches(NamedTuple):
    """``fraction``: share of the steps after ``skip`` that are lazy; ``departures``:
    ``(n,)`` steps, each the first non-lazy step after a lazy one."""

    fraction: float
    departures: np.ndarray


def lazy_departures(cos_update, threshold: float = 0.9, skip: int = 0, merge: int = 50) -> LazyStretches:
    """The lazy regime of a run and its departures.

    ``cos_update``: ``(T,)``, the cosine between step ``t``'s update and the previous one
    (the trainer's ``cos_update``; NaN, as at ``t = 0``, counts as lazy). Step ``t`` is
    lazy when ``cos_update[t] >= threshold``; a departure is a non-lazy step that follows
    a lazy one. Steps before ``skip`` are left out; a departure less than ``merge`` steps
    after the previous kept one is merged into it.
    """
    c = np.nan_to_num(np.asarray(cos_update, dtype=np.float64).ravel(), nan=1.0)[skip:]
    if skip < 0 or merge < 0:
        raise ValueError(f"skip and merge must be >= 0, got {skip}, {merge}")
    lazy = c >= threshold
    kept: list[int] = []
    for d in np.flatnonzero(~lazy[1:] & lazy[:-1]) + 1 + skip:
        if not kept or d - kept[-1] >= merge:
            kept.append(int(d))
    return LazyStretches(float(lazy.mean()) if len(lazy) else float("nan"), np.array(kept, dtype=np.int64))


def near_events(events, steps, k: int, n_steps: int, n_shuffles: int = 1000,
                seed: int = 0, start: int = 0) -> tuple[float, Baseline]:
    """Fraction of ``steps`` with an event at most ``k`` steps before or after, and its
    chance level with as many events placed at random in ``start .. n_steps - 1``
    (:func:`shuffled_baseline`).
    ``events``, ``steps``: 1-D step indices; NaN when ``steps`` is empty."""
    # shifting the steps by +k turns the two-sided window into onset_alignment's [0, 2k]
    shifted = np.asarray(steps, dtype=np.int64).ravel() + k
    return (onset_alignment(events, shifted, 2 * k),
            shuffled_baseline(events, shifted, 2 * k, n_steps=n_steps, n_shuffles=n_shuffles, seed=seed,
                              start=start))


def transitions(gain_steps, gap: int) -> np.ndarray:
    """The first step of each transition: gains (sorted step indices) closer than ``gap``
    steps to the previous gain belong to the same transition, so successive points of
    one rise count once. Returns ``(n_transitions,)`` int64."""
    g = np.sort(np.asarray(gain_steps, dtype=np.int64).ravel())
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    if len(g) == 0:
        return g
    return g[np.concatenate([[True], np.diff(g) >= gap])]


class Pooled(NamedTuple):
    """Alignment pooled over runs: ``aligned`` of ``total`` steps follow an event, and
    the chance level of that fraction (:class:`Baseline`)."""

    aligned: int
    total: int
    chance: Baseline


def pooled_alignment(runs: list[tuple[np.ndarray, np.ndarray, int]], k: int, n_shuffles: int = 1000,
                     seed: int = 0, start: int = 0) -> Pooled:
    """:func:`onset_alignment` pooled over independent runs, with its chance level.

    ``runs``: ``(events, steps, n_steps)`` per run. A step is aligned when an event of
    its own run precedes it by at most ``k`` steps. Each shuffle places every run's
    events uniformly at random over its own ``start .. n_steps - 1`` (as
    :func:`shuffled_baseline`) and pools the aligned fraction; the chance level is the
    mean and the 2.5 / 97.5 percentiles of the pooled fractions (NaN when no run has a
    step).
    """
    if k < 0 or n_shuffles < 1:
        raise ValueError(f"need k >= 0 and n_shuffles >= 1, got {k}, {n_shuffles}")
    if any(not 0 <= start < n_steps for _, _, n_steps in runs):
        raise ValueError(f"every run needs 0 <= start < n_steps (start {start})")
    rng = np.random.default_rng(seed)
    aligned, total, counts = 0, 0, np.zeros(n_shuffles)
    for events, steps, n_steps in runs:
        steps = np.asarray(steps, dtype=np.int64).ravel()
        m = np.asarray(events).size
        if len(steps) == 0:
            continue
        total += len(steps)
        aligned += int(round(onset_alignment(events, steps, k) * len(steps)))
        counts += _shuffled(rng, m, steps, k, start, n_steps, n_shuffles) * len(steps)
    if total == 0:
        return Pooled(0, 0, Baseline(float("nan"), float("nan"), float("nan")))
    return Pooled(aligned, total, _summary(counts / total))


def circular_alignment(runs: list[tuple[np.ndarray, np.ndarray, int, int]], k: int, n_shuffles: int = 1000,
                       seed: int = 0) -> Pooled:
    """:func:`pooled_alignment` with a chance level that keeps each run's events where
    they cluster: ``runs``: ``(events, steps, lo, hi)`` per run, its events and steps
    restricted to ``lo .. hi - 1`` (for example from its t2 to its end). Each shuffle
    shifts every run's events circularly within its own range by a random shift (their
    spacing kept, their stretch kept) and pools the fraction of steps that follow an
    event by at most ``k`` steps; the chance level is the mean and 2.5 / 97.5
    percentiles of those pooled fractions."""
    if k < 0 or n_shuffles < 1:
        raise ValueError(f"need k >= 0 and n_shuffles >= 1, got {k}, {n_shuffles}")
    rng = np.random.default_rng(seed)
    aligned, total, counts = 0, 0, np.zeros(n_shuffles)
    for events, steps, lo, hi in runs:
        if not 0 <= lo < hi:
            raise ValueError(f"every run needs 0 <= lo < hi, got {lo}, {hi}")
        e = np.asarray(events, dtype=np.int64).ravel()
        e = e[(e >= lo) & (e < hi)]
        s = np.asarray(steps, dtype=np.int64).ravel()
        s = s[(s >= lo) & (s < hi)]
        if len(s) == 0:
            continue
        total += len(s)
        aligned += int(round(onset_alignment(e, s, k) * len(s)))
        shifts = rng.integers(0, hi - lo, size=n_shuffles)
        counts += np.array([_aligned(np.sort(lo + (e - lo + d) % (hi - lo)), s, k) for d in shifts]) * len(s)
    if total == 0:
        return Pooled(0, 0, Baseline(float("nan"), float("nan"), float("nan")))
    return Pooled(aligned, total, _summary(counts / total))


def validation_gains(val_steps, val_acc, threshold: float, skip: int = 0, new_high: bool = False) -> np.ndarray:
    """Steps at which the validation accuracy rose by at least ``threshold`` since the
    previous evaluation, at or after step ``skip``.

    ``val_steps``, ``val_acc``: ``(n,)``, the evaluations in order. With ``new_high``,
    only rises that also lift the accuracy ``threshold`` above its best earlier value
    count (so a recovery after a drop is not a gain). Returns ``(n_gains,)`` int64.
    """
    steps = np.asarray(val_steps, dtype=np.int64).ravel()
    acc = np.asarray(val_acc, dtype=np.float64).ravel()
    if steps.shape != acc.shape:
        raise ValueError(f"val_steps and val_acc differ in length: {steps.shape} and {acc.shape}")
    if len(acc) < 2:
        return np.zeros(0, dtype=np.int64)
    rise = np.diff(acc) >= threshold
    if new_high:
        rise &= acc[1:] >= np.maximum.accumulate(acc)[:-1] + threshold
    gains = steps[1:][rise]
    return gains[gains >= skip]
