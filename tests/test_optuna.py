"""GrokkingPruner in real Optuna studies (diverged, never-fitting, undeterminable and
sparsely reported trials, budgets shorter than the window), and replay_search against
pruners whose decisions are known in advance."""

import warnings

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from grokbook import sweep  # noqa: E402
from grokbook.curves_io import on_unit_steps  # noqa: E402
from grokbook.experiments.search import SearchResult, replay_search, sample_configs  # noqa: E402
from grokbook.pruning import GrokkingPruner  # noqa: E402
from grokbook.predict import GrokPredictor  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
WINDOW = 30


@pytest.fixture
def level_predictor() -> GrokPredictor:
    """A predictor that calls a curve positive when its late loss is low."""
    rng = np.random.default_rng(0)
    levels = rng.uniform(-2, 1, 80)
    X = np.c_[levels + 0.01 * rng.normal(size=80)]
    return GrokPredictor.fit(X, levels < -0.5, ("log_loss_level",), WINDOW, "taper:0.02", recall=0.9)


def _curve(level: float, steps: int = 80) -> np.ndarray:
    """A loss that starts ten times higher for 3 steps (so it fits) and then stays at
    ``10 ** level``: the predictor's only feature, the late level, is ``level``."""
    return np.r_[np.full(3, 10.0 ** (level + 1)), np.full(steps - 3, 10.0 ** level)]


def _run(pruner, curve_of, n_trials: int = 1, every: int = 1):
    """An in-memory study whose trial ``i`` reports ``curve_of(trial)`` every ``every``
    steps; returns the study and, per trial, the last step it reported."""
    last = {}

    def objective(trial):
        curve = curve_of(trial)
        for step in range(0, len(curve), every):
            trial.report(float(curve[step]), step)
            last[trial.number] = step
            if trial.should_prune():
                raise optuna.TrialPruned()
        return 0.0

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1), pruner=pruner)
    study.optimize(objective, n_trials=n_trials)
    return study, last


def test_pruner_prunes_exactly_the_trials_the_predictor_rejects(level_predictor):
    reported = {}

    def objective(trial):
        curve = _curve(trial.suggest_float("level", -2, 1))
        for step, loss in enumerate(curve):
            trial.report(float(loss), step)
            reported[trial.number] = step
            if trial.should_prune():
                raise optuna.TrialPruned()
        return 0.0

    pruner = GrokkingPruner(level_predictor)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1), pruner=pruner)
    study.optimize(objective, n_trials=30)
    for trial in study.trials:
        keep = bool(level_predictor.predict(_curve(trial.params["level"]))[0])
        assert (trial.state == optuna.trial.TrialState.PRUNED) == (not keep)
        assert reported[trial.number] == (79 if keep else WINDOW - 1)  # decided once the window is in
    states = {t.state for t in study.trials}
    assert states == {optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE}


def test_pruner_threshold(level_predictor):
    assert GrokkingPruner(level_predictor, threshold=0.0).threshold == 0.0
    with pytest.raises(ValueError, match="probability"):
        GrokkingPruner(level_predictor, threshold=1.5)


def test_pruner_interpolates_losses_reported_every_n_steps(level_predictor):
    every = 3
    study, last = _run(GrokkingPruner(level_predictor), lambda t: _curve(t.suggest_float("level", -2, 1)),
                       n_trials=20, every=every)
    for trial in study.trials:
        steps = np.arange(0, 80, every)
        on_steps, first, _ = on_unit_steps(steps, _curve(trial.params["level"])[steps])
        assert first == 0 and len(on_steps) == 79
        keep = bool(level_predictor.predict(on_steps[:WINDOW])[0])
        assert (trial.state == optuna.trial.TrialState.PRUNED) == (not keep)
        # judged at the first report at or past the window's last step (29): step 30
        assert last[trial.number] == (78 if keep else 30)
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE}


def test_pruner_prunes_a_diverged_trial_at_the_report_of_its_nan(level_predictor):
    for bad in (float("nan"), float("inf")):
        curve = _curve(-1.5)  # a curve the predictor would keep
        curve[7] = bad
        pruner = GrokkingPruner(level_predictor)
        study, last = _run(pruner, lambda t: curve)
        assert study.trials[0].state == optuna.trial.TrialState.PRUNED and last[0] == 7
        assert pruner.assessment(study.trials[0]).verdict == "diverged"
    # a NaN after the window of a trial that was kept does not prune it
    curve = _curve(-1.5)
    curve[WINDOW + 5] = float("nan")
    study, last = _run(GrokkingPruner(level_predictor), lambda t: curve)
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE and last[0] == 79


def test_pruner_prunes_a_trial_that_never_fits_at_the_end_of_its_window(level_predictor):
    flat = np.full(80, 10.0 ** -1.5)  # the level the predictor keeps, but the loss never falls
    assert level_predictor.predict(flat)[0]
    pruner = GrokkingPruner(level_predictor)
    study, last = _run(pruner, lambda t: flat)
    assert study.trials[0].state == optuna.trial.TrialState.PRUNED and last[0] == WINDOW - 1
    assert pruner.assessment(study.trials[0]).verdict == "never fits"


def test_pruner_keeps_a_trial_the_predictor_cannot_judge(level_predictor):
    far = _curve(5.0)  # a late level of 1e5: far above the fitted levels (at most about 1)
    assert not level_predictor.predict(far)[0]  # scored anyway, it would be pruned
    pruner = GrokkingPruner(level_predictor)
    study, last = _run(pruner, lambda t: far)
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE and last[0] == 79
    a = pruner.assessment(study.trials[0])
    assert a.verdict == "undetermined" and "log_loss_level" in a.reason
    assert pruner.probability(study.trials[0]) is None


def test_pruner_warns_once_when_trials_are_shorter_than_its_window(level_predictor):
    with pytest.warns(UserWarning, match="budget of 10 steps is shorter than the predictor's window of 30"):
        GrokkingPruner(level_predictor, budget=10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        GrokkingPruner(level_predictor, budget=WINDOW)
        study, last = _run(GrokkingPruner(level_predictor), lambda t: _curve(-1.5, steps=10), n_trials=4)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(messages) == 1 and "trial 0 completed after reporting 10 steps" in messages[0]


class _PruneAt(optuna.pruners.BasePruner):
    """Prunes every odd-numbered trial once it has reported step ``at``."""

    def __init__(self, at: int):
        self.at = at

    def prune(self, study, trial):
        return trial.number % 2 == 1 and trial.last_step is not None and trial.last_step >= self.at


def test_replay_search_costs_the_steps_reported(tiny):
    base = tiny.replace(steps=60, data_seed=3)
    configs = sample_configs(base, 4, seed=5)
    assert configs == sample_configs(base, 4, seed=5)
    assert len({c.hash() for c in configs}) == 4 and [c.seed for c in configs] == [100, 101, 102, 103]
    runs = sweep(configs)
    full = replay_search(runs, optuna.pruners.NopPruner(), "val_acc", base, seed=5)
    assert full.compute == 1.0 and not full.pruned.any()
    assert full.value == pytest.approx([float(r.val_acc[-1]) for r in runs])
    cut = replay_search(runs, _PruneAt(10), "train_loss", base, seed=5)
    assert cut.pruned.tolist() == [False, True, False, True]
    assert cut.steps.tolist() == [60, 11, 60, 11]
    assert cut.compute == pytest.approx((60 + 11 + 60 + 11) / 240)
    compute, best = cut.best_so_far()
    assert compute == pytest.approx(np.cumsum([60, 11, 60, 11]) / 240)
    assert best[-1] == np.nanmax(cut.value[~cut.pruned])
    # Hyperband's brackets hash the study's name: replays must agree with each other
    hb = [replay_search(runs, optuna.pruners.HyperbandPruner(min_resource=5, max_resource=60), "val_acc", base,
                        seed=5) for _ in range(2)]
    assert hb[0].steps.tolist() == hb[1].steps.tolist()
    with pytest.raises(ValueError, match="not given"):
        replay_search([runs[1], *runs[1:]], optuna.pruners.NopPruner(), "val_acc", base, seed=5)  # trial 0's run is missing


def test_search_result_best_so_far_skips_pruned_trials():
    r = SearchResult(np.array([10, 2, 10]), np.array([False, True, False]), np.array([0.5, np.nan, 0.9]), 10)
    compute, best = r.best_so_far()
    assert compute.tolist() == pytest.approx([10 / 30, 12 / 30, 22 / 30])
    assert best.tolist() == [0.5, 0.5, 0.9]


def test_frontier_and_the_staged_replay_on_the_same_trials(tiny):
    from grokbook.experiments.search import frontier
    from grokbook.pruning import StagedGrokkingPruner
    from grokbook.staged import POINTS, STAGED_FEATURES, StagedPredictor

    base = tiny.replace(steps=60, data_seed=3)
    runs = sweep(sample_configs(base, 4, seed=5))
    groks = np.array([True, True, False, False])
    rows = frontier(runs, {"none": (optuna.pruners.NopPruner(), "val_acc"), "odd": (_PruneAt(10), "train_loss")},
                    groks, base, seed=5)
    assert rows[0] == dict(label="none", compute=1.0, kept=1.0)
    assert rows[1]["compute"] == pytest.approx(142 / 240) and rows[1]["kept"] == 0.5   # trial 1 groks, is pruned
    # a staged predictor that always says no prunes every trial at its first point (5% of 60: step 3)
    P, k = len(POINTS), len(STAGED_FEATURES)
    never = StagedPredictor(POINTS, np.zeros((P, k)), np.ones((P, k)), np.zeros((P, k)), np.full(P, -10.0),
                            np.full(P, 0.5), 0.99, "positive")
    res = replay_search(runs, StagedGrokkingPruner(never, 60), "staged", base, seed=5)
    assert res.pruned.all() and res.steps.tolist() == [4, 4, 4, 4]
    always = StagedPredictor(POINTS, np.zeros((P, k)), np.ones((P, k)), np.zeros((P, k)), np.full(P, 10.0),
                             np.full(P, 0.5), 0.99, "positive")
    assert not replay_search(runs, StagedGrokkingPruner(always, 60), "staged", base, seed=5).pruned.any()
