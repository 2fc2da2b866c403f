"""The four phases of learning (Liu et al. 2022) and the times that separate them.

t1: train accuracy leaves chance; t2: train accuracy reaches (about) 100%;
t3: validation accuracy leaves chance; t4: validation accuracy reaches (about) 100%.
Every threshold is an explicit parameter; a time never reached is None.

The time to generalize against the train fraction r: :func:`fit_power_law` fits
``t4(r) = a r^(-gamma) + b`` with censored runs (not generalized within their budget)
handled explicitly, and a bootstrap over seeds for the uncertainty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np


@dataclass(frozen=True)
class PhaseTimes:
    """Steps t1..t4 (None where the threshold is never reached)."""

    t1: Optional[int]
    t2: Optional[int]
    t3: Optional[int]
    t4: Optional[int]


def when_in_validation(step: Optional[int], times: PhaseTimes) -> str:
    """Where ``step`` (an event's step, None: never happened) falls against a run's
    validation times: ``"never reached"``, ``"before t3"``, ``"between t3 and t4"``
    (t3 <= step <= t4), ``"after t3 (t4 never reached)"``, ``"after t4"``, or
    ``"without t3"`` (validation never left chance)."""
    if step is None:
        return "never reached"
    if times.t4 is not None and step > times.t4:
        return "after t4"
    if times.t3 is None:
        return "without t3"
    if step < times.t3:
        return "before t3"
    return "between t3 and t4" if times.t4 is not None else "after t3 (t4 never reached)"


def first_crossing(steps: Sequence[float], values: Sequence[float], threshold: float) -> Optional[int]:
    """The first step at which ``values >= threshold``, or None. ``steps`` and
    ``values`` are ``(n,)`` and aligned."""
    steps, values = np.asarray(steps), np.asarray(values)
    if steps.shape != values.shape:
        raise ValueError(f"steps {steps.shape} and values {values.shape} differ in shape")
    hit = np.flatnonzero(values >= threshold)
    return int(steps[hit[0]]) if len(hit) else None


def phase_times(steps: Sequence[int], train_acc: Sequence[float], val_acc: Sequence[float],
                *, val_steps: Optional[Sequence[int]] = None, leave: float = 0.1,
                reach: float = 0.99) -> PhaseTimes:
    """t1..t4 from accuracy curves.

    ``steps``/``train_acc``: ``(n,)``; ``val_acc``: ``(m,)`` at ``val_steps`` (default
    ``steps``). Accuracies are fractions in [0, 1]. A curve "leaves chance" at the first
    step where it is ``>= leave`` and "reaches 100%" at the first step where it is
    ``>= reach``.
    """
    if not 0 <= leave < reach <= 1:
        raise ValueError(f"need 0 <= leave ({leave}) < reach ({reach}) <= 1")
    vs = steps if val_steps is None else val_steps
    return PhaseTimes(first_crossing(steps, train_acc, leave), first_crossing(steps, train_acc, reach),
                      first_crossing(vs, val_acc, leave), first_crossing(vs, val_acc, reach))


def run_phase_times(run, **thresholds: float) -> PhaseTimes:
    """:func:`phase_times` of a :class:`~grokbook.run.Run`."""
    return phase_times(run.steps, run.metrics["train_acc"], run.val_acc,
                       val_steps=run.val_steps, **thresholds)


def phase_bands(times: PhaseTimes, end: int) -> list[tuple[str, int, int]]:
    """The phases as ``(name, start, stop)`` step intervals within ``[0, end]``:
    confusion [0, t1], memorization [t2, t3], comprehension [t3, t4] and
    generalization [t4, end]. A phase whose start is never reached is left out;
    one whose end is never reached runs to ``end``."""
    bands = []
    for name, a, b in (("confusion", 0, times.t1), ("memorization", times.t2, times.t3),
                       ("comprehension", times.t3, times.t4), ("generalization", times.t4, end)):
        if a is None:
            continue
        b = end if b is None else b
        if b > a:
            bands.append((name, int(a), int(min(b, end))))
    return bands


def is_grokking(times: PhaseTimes, min_ratio: float = 5.0) -> bool:
    """The grokking label: the run generalized (t4 reached) and ``t4 >= min_ratio * t2``."""
    return times.t2 is not None and times.t4 is not None and times.t4 >= min_ratio * max(times.t2, 1)


#: The outcomes of a run, by :func:`outcome`.
OUTCOMES = ("groks", "generalizes", "memorizes", "never fits", "diverged")


def outcome(times: PhaseTimes, min_ratio: float = 10.0, diverged: bool = False) -> str:
    """What a run did, one of :data:`OUTCOMES`:

    - ``"groks"``: validation reached 100% (t4) and ``t4 >= min_ratio * t2``: it
      generalized long after it fit its training set;
    - ``"generalizes"``: t4 reached sooner, ``t4 < min_ratio * t2`` (no delay worth
      the name, e.g. a large train fraction), also when validation reaches 100%
      before training does;
    - ``"memorizes"``: training accuracy reached 100% (t2) but validation never did;
    - ``"never fits"``: training accuracy never reached 100%;
    - ``"diverged"``: the loss became non-finite (``diverged``), whatever the times.

    The times are those of the run's budget, so "memorizes" means "not generalized
    within it" (right-censored)."""
    if min_ratio < 1:
        raise ValueError(f"min_ratio must be >= 1, got {min_ratio}")
    if diverged:
        return "diverged"
    if times.t2 is None:
        return "generalizes" if times.t4 is not None else "never fits"
    if times.t4 is None:
        return "memorizes"
    return "groks" if is_grokking(times, min_ratio) else "generalizes"


def run_outcome(run, min_ratio: float = 10.0, leave: float = 0.05, reach: float = 0.99) -> str:
    """:func:`outcome` of a :class:`~grokbook.run.Run` with the authors' thresholds by
    default (t2: training accuracy >= 99%, t4: validation accuracy >= 99%)."""
    return outcome(run_phase_times(run, leave=leave, reach=reach), min_ratio, run.diverged_at is not None)


# ---------------------------------------------------------------------------------------
# Time to generalize against the train fraction: t(r) = a r^(-gamma) + b
# ---------------------------------------------------------------------------------------

CENSORING = ("lower_bound", "exclude_r")


def power_law(r: np.ndarray | float, a: float, gamma: float, b: float) -> np.ndarray:
    """``a * r**(-gamma) + b`` (``r`` any shape, in (0, 1]; the result in steps)."""
    return a * np.asarray(r, dtype=float) ** (-gamma) + b


@dataclass(frozen=True)
class PowerLawFit:
    """A fit of ``t = a r^(-gamma) + b`` with bootstrap percentile intervals.

    ``a``, ``b`` in steps, ``gamma`` dimensionless; ``*_ci`` are ``(low, high)``
    percentile intervals at ``level`` from ``boot`` (``(n_ok, 3)`` rows ``a, gamma, b``
    of the bootstrap refits that succeeded; ``n_failed`` did not, e.g. a resample
    left fewer than three train fractions with an uncensored time).
    ``r_fit``: the distinct train fractions that entered the fit; ``r_excluded``: those
    left out because of censoring (only with ``censoring="exclude_r"``);
    ``n_censored``: censored runs among those that entered the fit (used as lower
    bounds with ``censoring="lower_bound"``, so 0 with ``"exclude_r"``).
    ``gamma_at_bound``: the point estimate of ``gamma`` lies within 1% of ``gamma_max``
    of a bound of its search range ``[0, gamma_max]``, i.e. the data do not pin it down (e.g. as few fractions as
    parameters, or a jump rather than a power law). ``f1_at_bound``: the fitted time at
    r = 1, ``a + b``, which the parameterisation keeps positive, is below 1% of the
    shortest time fitted: the fit runs into that bound (``b`` close to ``-a``), and its
    parameters are not identified either. :attr:`at_bound` is either flag.
    """

    a: float
    gamma: float
    b: float
    a_ci: tuple[float, float]
    gamma_ci: tuple[float, float]
    b_ci: tuple[float, float]
    level: float
    censoring: str
    r_fit: np.ndarray
    r_excluded: np.ndarray
    n_censored: int
    boot: np.ndarray
    n_failed: int
    gamma_at_bound: bool = False
    f1_at_bound: bool = False

    @property
    def at_bound(self) -> bool:
        """The point estimate sits on a bound of the parameterisation (``gamma`` or ``f(1)``)."""
        return self.gamma_at_bound or self.f1_at_bound

    def predict(self, r: np.ndarray | float) -> np.ndarray:
        """The fitted time (steps) at train fraction(s) ``r``."""
        return power_law(r, self.a, self.gamma, self.b)

    def band(self, r: np.ndarray, level: Optional[float] = None) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise percentile band ``(low, high)`` of the bootstrap curves at ``r``
        (``(n,)`` each), at ``level`` (default: the fit's)."""
        level = self.level if level is None else level
        r = np.asarray(r, dtype=float)
        curves = power_law(r[None, :], self.boot[:, :1], self.boot[:, 1:2], self.boot[:, 2:3])
        q = 100 * (1 - level) / 2
        return np.percentile(curves, q, axis=0), np.percentile(curves, 100 - q, axis=0)


def _least_squares_power_law(r: np.ndarray, t: np.ndarray, cens: np.ndarray,
                             start: tuple[float, float, float],
                             gamma_max: float = 50.0) -> Optional[np.ndarray]:
    """Best ``(a, gamma, b)`` from the initial guess ``start``, or None when the start is
    invalid or the solver does not converge.

    Residuals are in log time, ``log t - log f(r)``, so that a run of 50 steps and one of
    5000 weigh alike in relative terms. A censored entry (``t`` its budget, a lower
    bound) contributes ``max(0, log t - log f(r))``: nothing when the curve passes above
    its budget, the shortfall otherwise. The curve is parameterised as
    ``f(r) = a (r^-gamma - 1) + c`` with ``a = e^u > 0`` and ``c = e^v = f(1) > 0``, so it
    is positive on all of (0, 1]; then ``b = c - a``.
    """
    from scipy.optimize import least_squares

    lr, lt = np.log(r), np.log(t)

    def residuals(x: np.ndarray) -> np.ndarray:
        a, gamma, c = np.exp(x[0]), x[1], np.exp(x[2])
        with np.errstate(over="ignore", invalid="ignore"):
            f = a * np.expm1(-gamma * lr) + c
            res = lt - np.log(f)
        res = np.where(cens, np.maximum(res, 0.0), res)
        return np.nan_to_num(res, nan=1e6, posinf=1e6, neginf=-1e6)

    a0, g0, b0 = start
    c0 = a0 + b0
    if not (a0 > 0 and c0 > 0 and np.isfinite(g0)):
        return None
    x0 = np.array([np.log(a0), float(np.clip(g0, 0.0, gamma_max)), np.log(c0)])
    try:
        sol = least_squares(residuals, x0, bounds=([-np.inf, 0.0, -np.inf], [np.inf, gamma_max, np.inf]),
                            method="trf", x_scale=[1.0, 1.0, 1.0], max_nfev=2000)
    except ValueError:
        return None
    if not np.all(np.isfinite(sol.x)):
        return None
    a, gamma, c = np.exp(sol.x[0]), sol.x[1], np.exp(sol.x[2])
    return np.array([a, gamma, c - a])


def _loglog_start(r: np.ndarray, t: np.ndarray) -> tuple[float, float, float]:
    """``(a, gamma, 0)`` from a straight line through ``log t`` against ``log r``."""
    slope, intercept = np.polyfit(np.log(r), np.log(t), 1)
    return float(np.exp(intercept)), float(max(-slope, 0.0)), 0.0


def fit_power_law(r: Sequence[float], t: Sequence[float], censored: Optional[Sequence[bool]] = None, *,
                  censoring: str = "lower_bound", n_boot: int = 1000, level: float = 0.9,
                  seed: int = 0, gamma_max: float = 50.0) -> PowerLawFit:
    """Fit ``t = a r^(-gamma) + b`` to times ``t`` measured at train fractions ``r``,
    with bootstrap percentile intervals over the seeds.

    ``r``: ``(n,)`` train fractions in (0, 1], one entry per run; runs with equal ``r``
    are the seeds of that fraction. ``t``: ``(n,)`` times in steps, > 0. ``censored``:
    ``(n,)`` booleans, True for a run that did not reach its time within its budget; its
    ``t`` must then be that budget (the number of steps it ran), a lower bound on the
    unobserved time. Default: no run is censored.

    Censored runs are never dropped silently; ``censoring`` says what happens to them:

    * ``"lower_bound"`` (default): every run enters the fit, a censored one as a lower
      bound. The loss is least squares in log time; a censored run costs nothing when the
      curve passes above its budget, and its log shortfall otherwise (a one-sided
      residual). This uses what the censored runs do tell (that the time is longer than
      the budget) without inventing a value for them.
    * ``"exclude_r"``: every train fraction at which any seed is censored is left out,
      and listed in :attr:`PowerLawFit.r_excluded`. Simple and conservative: the fit
      then describes only the fractions where every seed generalized.

    Bootstrap: ``n_boot`` times, the seeds are resampled with replacement within each
    train fraction (a fraction keeps its number of seeds, censored runs included) and the
    fit is redone; ``level`` percentile intervals of ``a``, ``gamma`` and ``b`` come from
    the refits. ``seed`` seeds the resampling. Needs at least three distinct train
    fractions with at least one uncensored time (three parameters); ``ValueError``
    otherwise, and for inconsistent shapes or impossible values. ``gamma`` is searched in
    ``[0, gamma_max]``; a point estimate on that bound is flagged in
    :attr:`PowerLawFit.gamma_at_bound`, one whose ``f(1) = a + b`` runs to zero in
    :attr:`PowerLawFit.f1_at_bound`.

    With few seeds per fraction the percentile bootstrap is somewhat narrow (a resample
    of ``n`` seeds has on average ``(n - 1) / n`` of their variance): read the interval as
    a lower bound on the uncertainty.
    """
    r = np.asarray(r, dtype=float)
    t = np.asarray(t, dtype=float)
    cens = np.zeros(r.shape, bool) if censored is None else np.asarray(censored, dtype=bool)
    if r.ndim != 1 or r.shape != t.shape or r.shape != cens.shape:
        raise ValueError(f"r {r.shape}, t {t.shape} and censored {cens.shape} must be 1-D of one length")
    if not np.all(np.isfinite(r)) or np.any(r <= 0) or np.any(r > 1):
        raise ValueError(f"train fractions r must lie in (0, 1]; got {r[(r <= 0) | (r > 1) | ~np.isfinite(r)][:5]}")
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise ValueError("times t must be finite and > 0 (a censored run's t is its step budget, "
                         f"not NaN or None); got {t[~np.isfinite(t) | (t <= 0)][:5]}")
    if censoring not in CENSORING:
        raise ValueError(f"censoring = {censoring!r}: must be one of {', '.join(CENSORING)}")
    if not 0 < level < 1:
        raise ValueError(f"level = {level}: must lie in (0, 1)")
    if n_boot < 0:
        raise ValueError(f"n_boot = {n_boot}: must be >= 0")
    if not gamma_max > 0:
        raise ValueError(f"gamma_max = {gamma_max}: must be > 0")

    levels = np.unique(r)
    excluded = np.array([x for x in levels if cens[r == x].any()]) if censoring == "exclude_r" else np.array([])
    keep = ~np.isin(r, excluded)
    r, t, cens = r[keep], t[keep], cens[keep]

    def n_observed_fractions(rr: np.ndarray, cc: np.ndarray) -> int:
        return len(np.unique(rr[~cc]))

    if n_observed_fractions(r, cens) < 3:
        raise ValueError(f"need uncensored times at >= 3 distinct train fractions to fit 3 parameters; "
                         f"have {n_observed_fractions(r, cens)} (fractions excluded for censoring: "
                         f"{excluded.tolist()})")

    point = _least_squares_power_law(r, t, cens, _loglog_start(r[~cens], t[~cens]), gamma_max)
    if point is None:
        raise ValueError("the power-law fit did not converge")

    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(r == x) for x in np.unique(r)]
    boot, failed = [], 0
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        rb, tb, cb = r[idx], t[idx], cens[idx]
        if n_observed_fractions(rb, cb) < 3:
            failed += 1
            continue
        est = _least_squares_power_law(rb, tb, cb, tuple(point), gamma_max)
        if est is None:
            failed += 1
        else:
            boot.append(est)
    boot_arr = np.array(boot).reshape(-1, 3)
    q = 100 * (1 - level) / 2

    def ci(k: int) -> tuple[float, float]:
        if not len(boot_arr):
            return (float("nan"), float("nan"))
        lo, hi = np.percentile(boot_arr[:, k], [q, 100 - q])
        return (float(lo), float(hi))

    return PowerLawFit(float(point[0]), float(point[1]), float(point[2]), ci(0), ci(1), ci(2), level,
                       censoring, np.unique(r), excluded, int(cens.sum()), boot_arr, failed,
                       bool(min(point[1], gamma_max - point[1]) <= 0.01 * gamma_max),
                       bool(point[0] + point[2] < 0.01 * t.min()))


def fraction_table(r, t2, t4, budget, groks):
    """One row per train fraction: the table of a data-fraction sweep, as a
    ``pandas.DataFrame`` indexed by ``r`` (ascending).

    Per run, ``(n,)`` arrays: ``r`` the train fraction, ``t2`` and ``t4`` in steps (NaN
    where not reached: ``t4`` NaN marks a run censored at its ``budget``, the steps it
    ran), ``groks`` its label. Columns: ``median t2``; ``median t4`` with censored runs
    counted at their budget, and ``median t4 is a lower bound`` when censored runs make up
    at least half the fraction's runs (every run shares one budget, so censored times sort
    above every observed one); ``generalized`` and ``grokked`` as ``"k/n"``; ``local
    gamma``, ``-d log(median t4) / d log r`` to the next larger fraction (NaN for the
    largest, and where the next fraction's median is a lower bound), flagged ``local
    gamma is a lower bound`` where this fraction's median is one.
    """
    import pandas as pd

    r, t2, t4 = (np.asarray(x, dtype=np.float64).ravel() for x in (r, t2, t4))
    budget, groks = np.asarray(budget, dtype=np.float64).ravel(), np.asarray(groks, dtype=bool).ravel()
    if not (r.shape == t2.shape == t4.shape == budget.shape == groks.shape):
        raise ValueError(f"per-run arrays differ in length: {[x.shape for x in (r, t2, t4, budget, groks)]}")
    rows = []
    for r_value in np.unique(r):
        at = r == r_value
        censored = np.isnan(t4[at])
        n, n_cens = int(at.sum()), int(censored.sum())
        rows.append({"r": float(r_value), "median t2": float(np.nanmedian(t2[at])) if np.any(~np.isnan(t2[at])) else np.nan,
                     "median t4": float(np.median(np.where(censored, budget[at], t4[at]))),
                     "median t4 is a lower bound": n_cens > 0 and n_cens >= (n + 1) // 2,
                     "generalized": f"{n - n_cens}/{n}", "grokked": f"{int(groks[at].sum())}/{n}"})
    out = pd.DataFrame(rows).set_index("r")
    m, bound, rv = out["median t4"].to_numpy(), out["median t4 is a lower bound"].to_numpy(), out.index.to_numpy()
    local = np.full(len(out), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        local[:-1] = np.log(m[:-1] / m[1:]) / np.log(rv[1:] / rv[:-1])
    local[:-1][bound[1:]] = np.nan
    out["local gamma"] = local
    out["local gamma is a lower bound"] = bound & ~np.isnan(local)
    return out


def censored_spearman(x, t, censored) -> float:
    """Spearman's rank correlation of ``x`` and times ``t`` (``(n,)`` each) when some
    times are censored (``censored``, ``(n,)`` booleans: not reached within a budget that
    every run shares): a censored time ranks above every observed one, the censored
    runs tied among themselves, whatever value ``t`` holds for them (NaN allowed). NaN
    if fewer than two distinct ``x`` or if every time ties."""
    from scipy.stats import spearmanr

    x, t = np.asarray(x, dtype=np.float64).ravel(), np.asarray(t, dtype=np.float64).ravel()
    censored = np.asarray(censored, dtype=bool).ravel()
    if not (x.shape == t.shape == censored.shape):
        raise ValueError(f"x {x.shape}, t {t.shape} and censored {censored.shape} must have one length")
    if np.isnan(t[~censored]).any():
        raise ValueError("an observed (not censored) time is NaN")
    observed = t[~censored]
    top = (observed.max() if len(observed) else 0.0) + 1.0
    ranked = np.where(censored, top, t)
    if len(np.unique(x)) < 2 or len(np.unique(ranked)) < 2:
        return float("nan")
    return float(spearmanr(x, ranked).statistic)

