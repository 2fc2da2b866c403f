"""A grokking-aware pruner for Optuna (``pip install grokbook[optuna]``).

Optuna's usual pruners judge a trial by its current validation score, which is what a
run that will grok does not show early. :class:`GrokkingPruner` judges it by the first
steps of its training loss instead, with a :class:`~grokbook.predict.GrokPredictor`::

    def objective(trial):
        ...
        for step in range(steps):
            loss = train_one_step()
            trial.report(loss, step)          # the training loss, every step from 0
            if trial.should_prune():
                raise optuna.TrialPruned()
        return validation_accuracy()

    study = optuna.create_study(direction="maximize", pruner=GrokkingPruner())

README.md's section "Pruning an Optuna search with your own training loop" (under
"Predicting grokking for your own runs") walks through it step by step: reporting every
step or every N steps, the window, diverged and never-fitting trials, the budget
warning, the threshold, and fitting a predictor on your own runs;
``tests/test_pruner_walkthrough.py`` runs its code.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Optional

import optuna

from .curves_io import on_unit_steps
from .predict import Assessment, GrokPredictor


class GrokkingPruner(optuna.pruners.BasePruner):
    """Prune, once a trial has reported ``predictor.window`` steps of training loss, the
    trials the predictor does not expect to generalize; never prune before (except a
    diverged trial), and never after a trial was kept.

    ``predictor``: default :meth:`GrokPredictor.default` (the scale-free features of 400
    steps, fitted on the corpus of runs; a predictor fitted on your own task's runs does
    better, as :meth:`GrokPredictor.book_sweep` does on the book's model); ``threshold``: the probability below which a trial
    is pruned, default the predictor's own (it keeps 90% of the positives it was fitted
    on); ``budget``: the steps a trial trains when it is not pruned, if known: a budget
    shorter than the window is warned about at once.

    The trial reports its training loss with ``trial.report(loss, step)``, at every step
    or every ``N`` steps (from step 0 or any first step). The window is the ``window``
    steps from the first step reported; once a report reaches its last step the curve
    is put on unit steps (linear interpolation between the reported values when they
    are ``N`` apart, :func:`grokbook.curves_io.on_unit_steps`: the oscillations faster
    than ``N`` steps are lost, so a predictor fitted on every step may call such a
    curve undetermined) and assessed (:meth:`GrokPredictor.assess`). Then the trial is

    * pruned if it diverged (a NaN or inf reported inside the window; pruned at that
      report, without waiting for the window to fill), or never fits (its loss has not
      fallen, see :data:`grokbook.predict.NEVER_FITS_RATIO`);
    * kept if the predictor cannot tell (verdict ``"undetermined"``: a feature far outside
      the range it was fitted on): pruning on an extrapolation could lose the best trial;
    * else pruned if its probability is below ``threshold``.

    It warns (once per pruner, :class:`UserWarning`) when trials end before the window
    is full, so that it never judges them: when ``budget < window``, or when a trial of
    the study completed having reported fewer than ``window`` steps.
    """

    def __init__(self, predictor: Optional[GrokPredictor] = None, threshold: Optional[float] = None,
                 budget: Optional[int] = None) -> None:
        self.predictor = predictor if predictor is not None else GrokPredictor.default()
        self.threshold = self.predictor.threshold if threshold is None else float(threshold)
        if not 0 <= self.threshold <= 1:
            raise ValueError(f"threshold must be a probability in [0, 1], got {self.threshold}")
        self._decided: dict[tuple, Assessment] = {}  # (study name, trial number, its start) -> assessment
        self._seen: set[tuple] = set()
        self._checked: set[tuple] = set()  # completed trials whose length was checked
        self._warned = False
        if budget is not None and budget < self.predictor.window:
            self._warn(f"the trial budget of {budget} steps is shorter than the predictor's window of "
                       f"{self.predictor.window}: GrokkingPruner will never judge a trial")

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(message, UserWarning, stacklevel=3)

    def assessment(self, trial: optuna.trial.FrozenTrial) -> Optional[Assessment]:
        """The predictor's :class:`~grokbook.predict.Assessment` of ``trial``'s window, or
        None while the window is not yet reported (and holds no NaN or inf)."""
        values = trial.intermediate_values
        if not values:
            return None
        n = self.predictor.window
        steps = sorted(values)
        first = steps[0]
        inside = [s for s in steps if s < first + n]
        bad = [s for s in inside if not math.isfinite(values[s])]
        if bad:
            return Assessment("diverged", None, f"trial {trial.number} reported a loss of {values[bad[0]]} at step "
                              f"{bad[0]}, inside the window of {n} steps from step {first}")
        if steps[-1] < first + n - 1:
            return None
        loss, _, _ = on_unit_steps(steps, [values[s] for s in steps])
        return self.predictor.assess(loss[:n])[0]

    def probability(self, trial: optuna.trial.FrozenTrial) -> Optional[float]:
        """The predictor's probability for ``trial``: None before its window is reported,
        or when the predictor does not score it (verdict other than yes or no)."""
        a = self.assessment(trial)
        return None if a is None else a.probability

    def prune(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> bool:
        key = (study.study_name, trial.number, trial.datetime_start)
        if key not in self._seen:  # a new trial: did an earlier one end before the window?
            self._seen.add(key)
            if not self._warned:
                self._check_finished(study)
        if key not in self._decided:
            a = self.assessment(trial)
            if a is None:
                return False
            self._decided[key] = a
        a = self._decided[key]
        if a.verdict in ("diverged", "never fits"):
            return True
        if a.verdict == "undetermined":
            return False
        return a.probability < self.threshold

    def _check_finished(self, study: optuna.study.Study) -> None:
        """Warn if a completed trial of ``study`` reported fewer steps than the window
        (each trial is looked at once)."""
        n = self.predictor.window
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            key = (study.study_name, t.number)
            if key in self._checked:
                continue
            self._checked.add(key)
            steps = t.intermediate_values
            span = max(steps) - min(steps) + 1 if steps else 0
            if span < n:
                self._warn(f"trial {t.number} completed after reporting {span} steps of training loss, fewer than "
                           f"the predictor's window of {n}: GrokkingPruner never judged it; train trials for at "
                           f"least {n} steps")
                return


#: The prefix of the user attributes that carry a trial's validation accuracy to a
#: :class:`StagedGrokkingPruner` (see :func:`report_validation`).
VAL_PREFIX = "val_acc:"


def report_validation(trial: optuna.Trial, step: int, accuracy: float) -> None:
    """Tell a :class:`StagedGrokkingPruner` the validation accuracy of ``trial`` at
    ``step`` (a user attribute ``val_acc:<step>``); report the training loss with
    ``trial.report(loss, step)`` as for :class:`GrokkingPruner`."""
    trial.set_user_attr(f"{VAL_PREFIX}{int(step)}", float(accuracy))


class StagedGrokkingPruner(optuna.pruners.BasePruner):
    """Prune a trial at the first decision point of ``predictor`` (a
    :class:`~grokbook.staged.StagedPredictor`: 5%, 10%, 20% and 40% of ``budget``) at
    which its probability of generalizing falls below that point's threshold; a trial
    that passes every point is never pruned.

    The trial reports its training loss at every step (or every ``N`` steps) with
    ``trial.report(loss, step)`` and its validation accuracy whenever it evaluates with
    :func:`report_validation`. At a point's step the features are read from what was
    reported by then (:func:`grokbook.staged.staged_features`). A trial that reports a
    NaN or inf loss is pruned at once (diverged). A point at which nothing of the
    validation accuracy has been reported is skipped, with one warning per pruner (the
    trial is kept: the predictor cannot decide)."""

    def __init__(self, predictor: Any, budget: int) -> None:
        if budget < 1:
            raise ValueError(f"budget must be a positive number of steps, got {budget}")
        self.predictor = predictor
        self.steps = predictor.decision_steps(budget)
        self._passed: dict[tuple, int] = {}  # (study, trial number, start) -> points passed
        self._pruned: set[tuple] = set()
        self._warned = False

    def prune(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> bool:
        from .staged import staged_features

        key = (study.study_name, trial.number, trial.datetime_start)
        if key in self._pruned:
            return True
        values = trial.intermediate_values
        if not values:
            return False
        last = next(reversed(values))  # the newest report, in O(1): called at every step
        if not math.isfinite(values[last]):
            self._pruned.add(key)
            return True
        done = self._passed.get(key, 0)
        if done >= len(self.steps) or last < self.steps[done]:
            return False
        steps = sorted(values)
        loss = [values[s] for s in steps]
        val = sorted((int(k[len(VAL_PREFIX):]), v) for k, v in trial.user_attrs.items() if k.startswith(VAL_PREFIX))
        while done < len(self.steps) and last >= self.steps[done]:
            s = self.steps[done]
            done += 1
            try:
                x = staged_features(steps, loss, [a for a, _ in val], [b for _, b in val], s)
            except ValueError as err:
                if not self._warned:
                    self._warned = True
                    warnings.warn(f"StagedGrokkingPruner kept trial {trial.number} at step {s} undecided: {err}",
                                  UserWarning, stacklevel=2)
                continue
            if self.predictor.proba(x, done - 1) < self.predictor.threshold[done - 1]:
                self._pruned.add(key)
                self._passed[key] = done
                return True
        self._passed[key] = done
        return False
