"""Chapter 11's search harness: a real Optuna study replayed from stored runs, so that
pruners can be compared on exactly the same trials (the book's study, its search space,
its trial configurations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import optuna

from ..config import RunConfig


#: The search space of the book's study: name -> ``(low, high, log scale)`` for a float,
#: or a list of choices.
SPACE = {"lr": (0.004, 0.04, True), "weight_decay": (0.2, 2.5, False), "r": [0.4, 0.5, 0.6, 0.7, 0.8]}


def trial_config(trial: optuna.Trial, base: RunConfig, space: dict = SPACE, first_seed: int = 100) -> RunConfig:
    """The run a trial asks for: ``base`` with each parameter of ``space`` suggested
    (floats rounded to 3 significant digits) and the initialisation seed
    ``first_seed + trial.number``. The data split is ``base``'s for every trial: a search
    tunes on one dataset."""
    params = {}
    for name, dist in space.items():
        if isinstance(dist, list):
            params[name] = trial.suggest_categorical(name, dist)
        else:
            lo, hi, log = dist
            params[name] = float(f"{trial.suggest_float(name, lo, hi, log=log):.3g}")
    return base.replace(**params, seed=first_seed + trial.number)


def sample_configs(base: RunConfig, n_trials: int, seed: int = 0, space: dict = SPACE,
                   first_seed: int = 100) -> list[RunConfig]:
    """The configs of ``n_trials`` trials of a study with ``RandomSampler(seed)``, in
    trial order: the same whatever the pruner, since a random sampler ignores results."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    configs = []
    for _ in range(n_trials):
        trial = study.ask()
        configs.append(trial_config(trial, base, space, first_seed))
        study.tell(trial, 0.0)
    return configs


@dataclass(frozen=True)
class SearchResult:
    """One study of :func:`replay_search`, per trial in trial order (``(n_trials,)``):
    ``steps``: optimisation steps trained (the budget unless pruned); ``pruned``;
    ``value``: the final validation accuracy, NaN for pruned trials; ``budget``: the
    steps of an unpruned trial."""

    steps: np.ndarray
    pruned: np.ndarray
    value: np.ndarray
    budget: int

    @property
    def compute(self) -> float:
        """Steps trained as a fraction of training every trial to the budget."""
        return float(self.steps.sum() / (len(self.steps) * self.budget))

    def best_so_far(self) -> tuple[np.ndarray, np.ndarray]:
        """``(compute, best)``, ``(n_trials,)`` each: the search's compute (fraction of the
        full search) after each trial, and the best final validation accuracy found so
        far (NaN until a trial completes)."""
        compute = np.cumsum(self.steps) / (len(self.steps) * self.budget)
        best = np.fmax.accumulate(np.where(self.pruned, np.nan, self.value))
        return compute, best


def replay_search(runs: Sequence, pruner: optuna.pruners.BasePruner, report: str, base: RunConfig,
                  seed: int = 0, space: dict = SPACE, first_seed: int = 100) -> SearchResult:
    """Run a real Optuna study (``RandomSampler(seed)``, ``pruner``, maximizing final
    validation accuracy) whose objective trains by reading the stored ``runs`` of
    :func:`sample_configs` step by step: a run's first steps are the same whether it
    is stopped there or trained on (its warm-up and updates do not depend on the
    budget), so a pruned trial costs the steps it reported.

    ``report``: ``"train_loss"`` (every step, for :class:`GrokkingPruner`),
    ``"val_acc"`` (at the run's validation steps, as searches use Optuna's pruners) or
    ``"staged"`` (the training loss every step and the validation accuracy at the
    validation steps by :func:`~grokbook.pruning.report_validation`, for
    :class:`~grokbook.pruning.StagedGrokkingPruner`).
    Raises ValueError if a trial asks for a run not in ``runs``."""
    from ..pruning import report_validation

    if report not in ("train_loss", "val_acc", "staged"):
        raise ValueError(f"report must be 'train_loss', 'val_acc' or 'staged', got {report!r}")
    by_hash = {run.config.hash(): run for run in runs}
    n, budget = len(runs), base.steps
    steps, pruned, value = np.full(n, budget), np.zeros(n, dtype=bool), np.full(n, np.nan)

    def objective(trial: optuna.Trial) -> float:
        config = trial_config(trial, base, space, first_seed)
        run = by_hash.get(config.hash())
        if run is None:
            raise ValueError(f"trial {trial.number} asks for a run that was not given: {config}")
        if report == "val_acc":
            points = zip(np.asarray(run.val_steps).tolist(), np.asarray(run.val_acc, dtype=float).tolist())
        else:
            points = enumerate(np.asarray(run.metrics["train_loss"], dtype=float).tolist())
        evaluated = (dict(zip(np.asarray(run.val_steps).tolist(), np.asarray(run.val_acc, dtype=float).tolist()))
                     if report == "staged" else {})
        for step, v in points:
            if step in evaluated:
                report_validation(trial, step, evaluated[step])
            trial.report(v, step)
            if trial.should_prune():
                steps[trial.number], pruned[trial.number] = step + 1, True
                raise optuna.TrialPruned()
        value[trial.number] = float(run.val_acc[-1])
        return value[trial.number]

    # a fixed name: Hyperband assigns trials to brackets by a hash of the study's name
    study = optuna.create_study(study_name=f"grokbook-replay-{seed}", direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=seed), pruner=pruner)
    study.optimize(objective, n_trials=n, catch=())
    return SearchResult(steps, pruned, value, budget)


# ---------------------------------------------------------------------------------------
# The chapter's sentences and verdict
# ---------------------------------------------------------------------------------------

#: ``(estimate, low, high)``: a share and its 95% bootstrap interval over trials (NaN:
#: not measurable).
Share = Sequence[float]


def share_text(share: Share, missing: str = "not measurable") -> str:
    """``"84% [51%, 100%]"``; ``missing`` when the share could not be measured."""
    from .prose import estimate_text

    return estimate_text(*share, spec=".0%", missing=missing)


def pruner_sentence(name: str, kept: Share, compute: Share) -> str:
    """What one search did: the share of the grokking trials it trained to the end
    (``kept``) for its share of the unpruned search's compute (``compute``)."""
    spent = share_text(compute)
    if not np.isfinite(float(kept[0])):
        return f"{name} spends {spent} of the compute, with no grokking trial to keep or stop"
    return f"{name} keeps {share_text(kept)} of the grokkers for {spent} of the compute"


def search_verdict(kept: Share, compute: Share, goal_kept: float, goal_compute: float,
                   name: str = "the grokking pruner") -> str:
    """The chapter's goal for a pruner (``name``): keep at least ``goal_kept`` of the
    grokking trials for at most ``goal_compute`` of the compute (point estimates)."""
    k, c = float(kept[0]), float(compute[0])
    if not np.isfinite(k):
        return "not measurable: no trial grokked"
    if k >= goal_kept and c <= goal_compute:
        return f"goal met: {name} keeps {k:.0%} of the grokkers for {c:.0%} of the compute"
    return (f"goal not met: {name} keeps {k:.0%} of the grokkers (goal {goal_kept:.0%}) for "
            f"{c:.0%} of the compute (goal at most {goal_compute:.0%})")


def frontier(runs: Sequence, settings: dict, groks: np.ndarray, base: RunConfig, seed: int = 0,
             space: dict = SPACE, first_seed: int = 100) -> list[dict]:
    """Each of ``settings`` (a label to ``(pruner, report)``, e.g. one pruner at several
    values of its knob) replayed on the same trials (:func:`replay_search`): per label,
    ``compute`` (share of the unpruned search) and ``kept`` (share of the grokking trials,
    ``groks``: ``(n_trials,)`` booleans in the sampler's order, trained to the end; NaN
    without a grokking trial)."""
    groks = np.asarray(groks, bool)
    out = []
    for label, (pruner, report) in settings.items():
        res = replay_search(runs, pruner, report, base, seed, space, first_seed)
        kept = float((~res.pruned[groks]).mean()) if groks.any() else float("nan")
        out.append(dict(label=label, compute=res.compute, kept=kept))
    return out
