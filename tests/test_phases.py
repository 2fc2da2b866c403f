import numpy as np
import pytest

from scipy.stats import spearmanr

from grokbook.phases import PhaseTimes, censored_spearman, first_crossing, is_grokking, phase_bands, phase_times


def sigmoid_curve(steps, centre, width=5.0, low=0.0):
    return low + (1 - low) / (1 + np.exp(-(steps - centre) / width))


def test_phase_times_of_known_sigmoids():
    steps = np.arange(2000)
    train = sigmoid_curve(steps, 100)
    val = sigmoid_curve(steps, 1500, width=20)
    t = phase_times(steps, train, val, leave=0.1, reach=0.99)
    # closed form: sigmoid >= q at centre + width * log(q / (1 - q)), rounded up to a step
    q = lambda c, w, th: int(np.ceil(c + w * np.log(th / (1 - th))))
    assert t == PhaseTimes(q(100, 5, 0.1), q(100, 5, 0.99), q(1500, 20, 0.1), q(1500, 20, 0.99))


def test_never_reached_is_none_and_val_steps():
    steps = np.arange(100)
    t = phase_times(steps, np.full(100, 0.5), np.zeros(10), val_steps=np.arange(0, 100, 10))
    assert t == PhaseTimes(0, None, None, None)


def test_thresholds_are_validated():
    with pytest.raises(ValueError, match="leave"):
        phase_times([0, 1], [0, 1], [0, 1], leave=0.99, reach=0.5)
    with pytest.raises(ValueError, match="differ in shape"):
        first_crossing([0, 1, 2], [0.0, 1.0], 0.5)


def test_bands_and_label():
    t = PhaseTimes(10, 50, 400, 1000)
    assert phase_bands(t, 2000) == [("confusion", 0, 10), ("memorization", 50, 400),
                                    ("comprehension", 400, 1000), ("generalization", 1000, 2000)]
    assert is_grokking(t, min_ratio=5) and not is_grokking(t, min_ratio=25)
    unfinished = PhaseTimes(10, 50, 400, None)
    assert phase_bands(unfinished, 2000)[-1] == ("comprehension", 400, 2000)
    assert not is_grokking(unfinished)


# --- the power law t(r) = a r^-gamma + b --------------------------------------------------

from grokbook.phases import PowerLawFit, fit_power_law, power_law  # noqa: E402

R_GRID = np.array([0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])


def synthetic(a, gamma, b, seeds=4, noise=0.1, rng=0, grid=R_GRID):
    """Times a r^-gamma + b with multiplicative log-normal noise, ``seeds`` per r."""
    rng = np.random.default_rng(rng)
    r = np.repeat(grid, seeds)
    return r, power_law(r, a, gamma, b) * np.exp(noise * rng.standard_normal(len(r)))


def test_power_law_closed_form():
    assert power_law(0.5, 3.0, 2.0, 1.0) == pytest.approx(3.0 * 4 + 1)
    assert power_law(1.0, 3.0, 7.7, -1.0) == pytest.approx(2.0)


def test_noise_free_data_is_recovered_exactly():
    r = np.repeat(R_GRID, 2)
    t = power_law(r, 40.0, 3.0, 200.0)
    fit = fit_power_law(r, t, n_boot=20)
    assert isinstance(fit, PowerLawFit)
    assert (fit.a, fit.gamma, fit.b) == pytest.approx((40.0, 3.0, 200.0), rel=1e-5)
    # every bootstrap resample of exact data is exact data: the interval collapses on the truth
    assert fit.gamma_ci == pytest.approx((3.0, 3.0), rel=1e-4)
    assert fit.n_censored == 0 and len(fit.r_excluded) == 0 and fit.n_failed == 0
    assert not fit.at_bound
    np.testing.assert_allclose(fit.predict(R_GRID), power_law(R_GRID, 40.0, 3.0, 200.0), rtol=1e-5)


def test_pure_power_law_matches_loglog_regression():
    """b = 0: the exponent is the slope of a straight line in log-log (numpy polyfit),
    an independent oracle; with noise both estimators agree closely."""
    r, t = synthetic(100.0, 2.0, 0.0, noise=0.0)
    slope, _ = np.polyfit(np.log(r), np.log(t), 1)
    fit = fit_power_law(r, t, n_boot=0)
    assert fit.gamma == pytest.approx(-slope, rel=1e-5)
    assert fit.b == pytest.approx(0.0, abs=1e-3)


def test_noisy_recovery_and_bootstrap_interval():
    a, gamma, b = 20.0, 4.0, 300.0
    r, t = synthetic(a, gamma, b, seeds=5, noise=0.05, rng=1)
    fit = fit_power_law(r, t, n_boot=300, level=0.9, seed=0)
    assert fit.gamma == pytest.approx(gamma, rel=0.15)
    assert fit.gamma_ci[0] <= gamma <= fit.gamma_ci[1]
    assert fit.gamma_ci[0] < fit.gamma < fit.gamma_ci[1]
    lo, hi = fit.band(R_GRID)
    truth = power_law(R_GRID, a, gamma, b)
    assert np.all(lo <= hi) and np.mean((lo <= truth) & (truth <= hi)) >= 0.7


def test_bootstrap_coverage_over_replicate_data_sets():
    """Over 20 independent noisy data sets the 90% interval of gamma covers the truth in
    most of them (percentile bootstrap with 5 seeds per r is somewhat narrow, so the
    bar is 70%, not 90%)."""
    covered = 0
    for k in range(20):
        r, t = synthetic(20.0, 4.0, 300.0, seeds=5, noise=0.1, rng=100 + k)
        fit = fit_power_law(r, t, n_boot=100, seed=k)
        covered += fit.gamma_ci[0] <= 4.0 <= fit.gamma_ci[1]
    assert covered >= 14


def test_censored_runs_as_lower_bounds():
    """True times above a budget are censored at it. As lower bounds the fit stays
    close to the truth and passes above every budget; replacing them by the budget as
    if observed (the naive way) flattens the curve and underestimates gamma."""
    a, gamma, b, budget = 5.0, 5.0, 100.0, 1500.0
    grid = np.array([0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    r, t_true = synthetic(a, gamma, b, seeds=3, noise=0.05, rng=3, grid=grid)
    cens = t_true > budget
    assert 3 <= cens.sum() < len(r)  # the test really has censored runs
    t = np.where(cens, budget, t_true)
    fit = fit_power_law(r, t, cens, n_boot=100)
    naive = fit_power_law(r, t, n_boot=0)
    assert fit.n_censored == cens.sum() and fit.censoring == "lower_bound"
    assert abs(fit.gamma - gamma) < abs(naive.gamma - gamma)
    assert naive.gamma < gamma
    assert fit.gamma == pytest.approx(gamma, rel=0.25)
    assert np.all(fit.predict(r[cens]) >= 0.95 * budget)


def test_censored_fractions_excluded_and_reported():
    r, t_true = synthetic(5.0, 5.0, 100.0, seeds=3, noise=0.05, rng=3,
                          grid=np.array([0.25, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9]))
    cens = t_true > 1500.0
    t = np.where(cens, 1500.0, t_true)
    fit = fit_power_law(r, t, cens, censoring="exclude_r", n_boot=0)
    excluded = np.unique(r[cens])
    np.testing.assert_array_equal(fit.r_excluded, excluded)
    assert fit.n_censored == 0 and not np.isin(fit.r_fit, excluded).any()
    # same as fitting the kept fractions alone
    keep = ~np.isin(r, excluded)
    alone = fit_power_law(r[keep], t[keep], n_boot=0)
    assert (fit.a, fit.gamma, fit.b) == pytest.approx((alone.a, alone.gamma, alone.b))


def test_bootstrap_is_reproducible():
    r, t = synthetic(20.0, 4.0, 300.0, rng=5)
    f1, f2 = fit_power_law(r, t, n_boot=50, seed=7), fit_power_law(r, t, n_boot=50, seed=7)
    np.testing.assert_array_equal(f1.boot, f2.boot)


@pytest.mark.parametrize("kwargs, match", [
    (dict(r=[0.5, 0.6, 0.7], t=[1.0, 2.0]), "one length"),
    (dict(r=[0.5, 0.6, 0.7], t=[3.0, 2.0, 1.0], censored=[True, False]), "one length"),
    (dict(r=[0.0, 0.6, 0.7], t=[3.0, 2.0, 1.0]), r"\(0, 1\]"),
    (dict(r=[0.5, 1.2, 0.7], t=[3.0, 2.0, 1.0]), r"\(0, 1\]"),
    (dict(r=[0.5, 0.6, 0.7], t=[3.0, np.nan, 1.0]), "budget"),
    (dict(r=[0.5, 0.6, 0.7], t=[3.0, -2.0, 1.0]), "> 0"),
    (dict(r=[0.5, 0.5, 0.7, 0.7], t=[3.0, 3.1, 1.0, 1.1]), ">= 3 distinct"),
    (dict(r=[0.5, 0.6, 0.7], t=[3.0, 2.0, 1.0], censored=[False, True, False]), ">= 3 distinct"),
    (dict(r=[0.5, 0.6, 0.7], t=[3.0, 2.0, 1.0], censoring="drop"), "censoring"),
    (dict(r=[0.5, 0.6, 0.7], t=[3.0, 2.0, 1.0], level=1.5), "level"),
    (dict(r=[0.5, 0.6, 0.7], t=[3.0, 2.0, 1.0], gamma_max=0.0), "gamma_max"),
])
def test_power_law_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_power_law(**kwargs)


def test_unidentified_exponent_is_flagged():
    """Three fractions, flat at two of them and a jump at the third: no power law with
    gamma < gamma_max fits, and the estimate sits on the bound, flagged."""
    fit = fit_power_law([0.6, 0.75, 0.9], [63.0, 33.0, 33.0], n_boot=0, gamma_max=20.0)
    assert fit.gamma >= 19.8 and fit.gamma_at_bound and fit.at_bound


def test_fit_running_into_zero_at_r1_is_flagged():
    """t = 100 (r^-2 - 1) exactly: the best curve has f(1) = a + b = 0, which the
    parameterisation only approaches; the fit is flagged at that bound, not on gamma. The
    same curve shifted up by 50 steps (f(1) = 50) is not flagged."""
    r = np.repeat([0.3, 0.4, 0.5, 0.6, 0.7, 0.8], 2)
    fit = fit_power_law(r, 100.0 * (r ** -2.0 - 1.0), n_boot=0)
    assert fit.a + fit.b < 0.01 * (100.0 * (0.8 ** -2.0 - 1.0))
    assert fit.f1_at_bound and fit.at_bound and not fit.gamma_at_bound
    shifted = fit_power_law(r, 100.0 * (r ** -2.0 - 1.0) + 50.0, n_boot=0)
    assert shifted.a + shifted.b == pytest.approx(50.0, rel=1e-3)
    assert not shifted.f1_at_bound and not shifted.at_bound


def test_exclusion_that_leaves_too_few_fractions_names_them():
    with pytest.raises(ValueError, match=r"excluded for censoring: \[0.3"):
        fit_power_law([0.3, 0.3, 0.5, 0.6], [9.0, 9.0, 3.0, 2.0], [True, False, False, False],
                      censoring="exclude_r")


def _curve(steps, rise_at):
    """Accuracy 0 before ``rise_at`` and 1 from it (never with None)."""
    return np.array([0.0 if rise_at is None or t < rise_at else 1.0 for t in steps])


@pytest.mark.parametrize("t2, t4, diverged, expected", [
    (50, 1000, False, "groks"),        # 20x delay
    (50, 500, False, "groks"),         # exactly 10x: the threshold is inclusive
    (50, 499, False, "generalizes"),   # just under 10x
    (50, 60, False, "generalizes"),
    (50, None, False, "memorizes"),
    (None, None, False, "never fits"),
    (None, 300, False, "generalizes"),  # validation first
    (50, 1000, True, "diverged"),
])
def test_outcome_of_constructed_runs(t2, t4, diverged, expected):
    from grokbook.phases import outcome

    steps = np.arange(2000)
    times = phase_times(steps, _curve(steps, t2), _curve(steps, t4))
    assert (times.t2, times.t4) == (t2, t4)
    assert outcome(times, min_ratio=10, diverged=diverged) == expected


def test_outcome_agrees_with_is_grokking_and_checks_its_ratio():
    from grokbook.phases import outcome

    for t2, t4 in [(10, 100), (10, 40), (10, None), (None, None), (0, 30)]:
        times = PhaseTimes(0, t2, 0, t4)
        assert (outcome(times, min_ratio=5) == "groks") == is_grokking(times, min_ratio=5)
    with pytest.raises(ValueError, match="min_ratio"):
        outcome(PhaseTimes(0, 1, 0, 2), min_ratio=0.5)


def test_run_outcome_uses_the_authors_thresholds():
    from types import SimpleNamespace

    from grokbook.phases import run_outcome

    steps = np.arange(1000)
    train = np.where(steps >= 40, 0.995, 0.5)  # reaches 99% at 40, never 100%
    val_steps = np.arange(0, 1000, 10)
    val = np.where(val_steps >= 600, 0.99, 0.04)  # 4%: not yet left chance at 5%
    run = SimpleNamespace(steps=steps, metrics={"train_acc": train}, val_steps=val_steps, val_acc=val,
                          diverged_at=None)
    assert run_outcome(run) == "groks"  # t2 = 40, t4 = 600 >= 10 t2
    assert run_outcome(run, min_ratio=20) == "generalizes"
    assert run_outcome(run, reach=1.0) == "never fits"


def test_fraction_table_medians_censoring_and_local_exponents():
    from grokbook.phases import fraction_table

    # t4 = 1000 r^-2 exactly at r = 0.2, 0.4, 0.8 (three runs each); at r = 0.1 two of three
    # runs are censored at the budget of 100000 steps
    r = np.repeat([0.1, 0.2, 0.4, 0.8], 3)
    t4 = 1000 * r ** -2.0
    t4[:2] = np.nan
    t2 = np.full(12, 50.0)
    t2[-1] = np.nan
    budget = np.full(12, 100_000)
    groks = ~np.isnan(t4)
    table = fraction_table(r, t2, t4, budget, groks)
    assert list(table.index) == [0.1, 0.2, 0.4, 0.8]
    assert table.loc[0.1, "median t4"] == 100_000 and table.loc[0.1, "median t4 is a lower bound"]
    assert table.loc[0.1, "generalized"] == "1/3" and table.loc[0.2, "grokked"] == "3/3"
    np.testing.assert_allclose(table["local gamma"].to_numpy()[1:3], [2.0, 2.0])
    # from the censored fraction the exponent is only bounded below; none from the largest
    assert table.loc[0.1, "local gamma is a lower bound"] and not table.loc[0.2, "local gamma is a lower bound"]
    assert np.isnan(table.loc[0.8, "local gamma"]) and table.loc[0.8, "median t2"] == 50.0
    with pytest.raises(ValueError, match="length"):
        fraction_table(r, t2[:-1], t4, budget, groks)


def test_censored_spearman_closed_forms():
    """Times falling with x and the censored runs at the smallest x: a perfect
    decreasing order, rho = -1 exactly, whatever value the censored entries hold."""
    x = [0.3, 0.3, 0.5, 0.6, 0.8]
    assert censored_spearman(x, [np.nan, 7.0, 300.0, 200.0, 100.0], [True, True, False, False, False]) == -1.0
    # a censored run at the largest x breaks the order: the same rho as its time set above all
    got = censored_spearman([0.3, 0.5, 0.9], [300.0, 100.0, np.nan], [False, False, True])
    assert got == pytest.approx(spearmanr([0.3, 0.5, 0.9], [2, 1, 3]).statistic)
    assert np.isnan(censored_spearman([0.5, 0.5], [1.0, 2.0], [False, False]))  # one distinct x


def test_censored_spearman_matches_scipy_with_ties():
    """Oracle: scipy's spearmanr on ranks written by hand, censored runs tied at the top."""
    rng = np.random.default_rng(3)
    x = np.repeat([0.4, 0.5, 0.6, 0.7], 3)
    t = rng.uniform(100, 1000, len(x))
    cens = np.zeros(len(x), bool)
    cens[[0, 1, 4]] = True
    ranks = np.empty(len(x))
    order = np.argsort(np.where(cens, np.inf, t))
    ranks[order] = np.arange(1, len(x) + 1, dtype=float)
    ranks[cens] = ranks[cens].mean()  # ties share their mean rank
    assert censored_spearman(x, t, cens) == pytest.approx(spearmanr(x, ranks).statistic, rel=1e-12)


def test_censored_spearman_bad_input():
    with pytest.raises(ValueError, match="one length"):
        censored_spearman([0.1, 0.2], [1.0], [False, False])
    with pytest.raises(ValueError, match="observed"):
        censored_spearman([0.1, 0.2], [np.nan, 1.0], [False, False])



@pytest.mark.parametrize("step, t3, t4, where", [
    (None, 10, 20, "never reached"), (5, 10, 20, "before t3"), (10, 10, 20, "between t3 and t4"),
    (20, 10, 20, "between t3 and t4"), (21, 10, 20, "after t4"), (15, 10, None, "after t3 (t4 never reached)"),
    (9, 10, None, "before t3"), (5, None, None, "without t3"), (30, None, 20, "after t4")])
def test_when_in_validation_every_branch_at_its_edges(step, t3, t4, where):
    from grokbook.phases import PhaseTimes, when_in_validation

    assert when_in_validation(step, PhaseTimes(1, 2, t3, t4)) == where
