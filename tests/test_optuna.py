"""GrokkingPruner in real Optuna studies, and replay_search against pruners whose
decisions are known in advance."""

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from grokbook import sweep  # noqa: E402
from grokbook.optuna import GrokkingPruner, SearchResult, replay_search, sample_configs  # noqa: E402
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
    return np.full(steps, 10.0 ** level)


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


def test_pruner_threshold_and_gaps(level_predictor):
    assert GrokkingPruner(level_predictor, threshold=0.0).threshold == 0.0
    with pytest.raises(ValueError, match="probability"):
        GrokkingPruner(level_predictor, threshold=1.5)

    def every_other_step(trial):
        for step in range(0, 2 * WINDOW + 2, 2):
            trial.report(1.0, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return 0.0

    study = optuna.create_study(pruner=GrokkingPruner(level_predictor))
    with pytest.raises(ValueError, match="training loss at every step"):
        study.optimize(every_other_step, n_trials=1)


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
