"""README.md's walk-through "Pruning an Optuna search with your own training loop" runs
as written: its code blocks (each preceded by ``<!-- pruner-walkthrough: NAME -->``) are
executed in one namespace, with fewer steps and trials; with the README's own model, and
with a stand-in model whose first trial diverges (NaN), which must be pruned at once."""

import math
import re
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^([ \t]*)<!-- pruner-walkthrough: (\w+) -->\n[ \t]*```python\n(.*?)^[ \t]*```", re.M | re.S)


def blocks() -> dict[str, str]:
    """The walk-through's code blocks by name, dedented (they sit inside a numbered list)."""
    found = {name: textwrap.dedent(code) for _, name, code in BLOCK.findall(README.read_text())}
    assert set(found) == {"model", "study", "predictor"}, f"README walk-through blocks: {sorted(found)}"
    return found


def smaller(code: str, steps: int, trials: int) -> str:
    """``code`` with its step budget and number of trials replaced (each must be there once)."""
    code, n_steps = re.subn(r"^STEPS = \d+$", f"STEPS = {steps}", code, flags=re.M)
    code, n_trials = re.subn(r"n_trials=\d+", f"n_trials={trials}", code)
    assert (n_steps, n_trials) == (1, 1), "the README's study block no longer sets STEPS and n_trials"
    return code


class StandIn:
    """A stand-in for ``make_model``/``train_step``/``validation_accuracy``: model ``i``
    (in the order built) reports the loss curve ``curves[i]`` (``(T,)``), one value a
    step; built models are kept in ``built``."""

    def __init__(self, curves):
        self.curves, self.built = curves, []

    def make_model(self, lr, weight_decay):
        model = {"curve": self.curves[len(self.built)], "step": 0}
        self.built.append(model)
        return model, None

    def train_step(self, model, optimizer):
        loss = float(model["curve"][model["step"]])
        model["step"] += 1
        return loss

    def validation_accuracy(self, model):
        return 1.0


def falling(steps, seed):
    """A training loss that falls from about 4.6 with noise, as cross-entropy does."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    return 4.6 * (1 + t / 20.0) ** -0.8 * np.exp(0.05 * rng.normal(size=steps))


def test_the_walkthrough_runs_with_its_own_model():
    ns: dict = {}
    code = blocks()
    exec(code["model"], ns)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 420 steps: the budget covers the window, no warning
        exec(smaller(code["study"], steps=420, trials=2), ns)
    study, pruner = ns["study"], ns["pruner"]
    assert len(study.trials) == 2
    for t in study.trials:
        assert t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        assert min(t.intermediate_values) == 0
        assert pruner.assessment(t) is not None  # the window was reported: the trial was judged
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert 0 <= t.value <= 1 and len(t.intermediate_values) == 420


def test_a_diverged_trial_is_pruned_at_its_nan_and_the_others_are_judged(tmp_path, monkeypatch):
    window, nan_at = 400, 37  # the default predictor's window
    diverging = falling(460, 0)
    diverging[nan_at:] = math.nan
    never_fits = np.full(460, 4.6)
    stand_in = StandIn([diverging, never_fits, falling(460, 1), falling(460, 2)])
    ns = {"make_model": stand_in.make_model, "train_step": stand_in.train_step,
          "validation_accuracy": stand_in.validation_accuracy}
    code = blocks()
    exec(smaller(code["study"], steps=460, trials=4), ns)
    study, pruner = ns["study"], ns["pruner"]
    assert pruner.predictor.window == window
    t0, t1 = study.trials[0], study.trials[1]
    assert t0.state == optuna.trial.TrialState.PRUNED
    assert max(t0.intermediate_values) == nan_at  # pruned at its NaN, before the window is full
    assert pruner.assessment(t0).verdict == "diverged"
    assert t1.state == optuna.trial.TrialState.PRUNED and max(t1.intermediate_values) == window - 1
    assert pruner.assessment(t1).verdict == "never fits"
    for t in study.trials[2:]:  # judged once the window was in: pruned there, or trained to the end
        last = max(t.intermediate_values)
        assert (t.state, last) in ((optuna.trial.TrialState.PRUNED, window - 1),
                                   (optuna.trial.TrialState.COMPLETE, 459))

    # step 7: a predictor fitted on "your" past curves, saved and loaded into the pruner
    own = 200  # the README fits its own predictor on 200 steps
    ns["losses"] = [falling(own, s) * (0.2 if s % 2 else 1.0) for s in range(12)]
    ns["generalized"] = np.array([s % 2 == 1 for s in range(12)])
    monkeypatch.chdir(tmp_path)
    exec(code["predictor"], ns)
    assert (tmp_path / "my_predictor.json").is_file()
    assert ns["pruner"].predictor.window == own and ns["pruner"].predictor.features == ns["LOSS_ONLY"]


def test_a_budget_shorter_than_the_window_is_warned_about():
    stand_in = StandIn([falling(100, 0)])
    ns = {"make_model": stand_in.make_model, "train_step": stand_in.train_step,
          "validation_accuracy": stand_in.validation_accuracy}
    with pytest.warns(UserWarning, match="shorter than the predictor's window of 400"):
        exec(smaller(blocks()["study"], steps=100, trials=1), ns)
    (t,) = ns["study"].trials
    assert t.state == optuna.trial.TrialState.COMPLETE and ns["pruner"].assessment(t) is None  # never judged
