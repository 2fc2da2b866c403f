"""The book's verdict rules, as pure functions of measured values.

A verdict is a :class:`Verdict`: one of :data:`WORDS` and the measured reason. The
rules every chapter shares:

- :func:`seeds_against_controls`: a claim holds on enough seeds of the runs that
  should show it and on fewer of the matched controls that should not;
- :func:`share`: a claim checked piece by piece, reproduced when every piece holds,
  partly when some do;
- :func:`from_interval`: a decision from an interval against a null value (an AUC
  against 0.5, a difference against 0);
- :func:`not_testable`: the inputs cannot decide (too few seeds, nothing measured);
- :func:`seed_interval`: the mean of per-seed effects with a bootstrap interval over
  seeds, the input of :func:`from_interval` where seeds are the independent units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: The verdict words, in the order the book reports them.
WORDS = ("reproduced", "partly reproduced", "not reproduced", "reversed", "not specific",
         "undecided", "not testable")

#: On how many seeds a claim must hold (at most the number of seeds there are).
MIN_SEEDS = 2


@dataclass(frozen=True)
class Verdict:
    """``word`` (one of :data:`WORDS`) and ``reason``, the measured values that decided it."""

    word: str
    reason: str

    def __post_init__(self) -> None:
        if self.word not in WORDS:
            raise ValueError(f"unknown verdict {self.word!r}; expected one of {', '.join(WORDS)}")

    def __str__(self) -> str:
        return f"{self.word}: {self.reason}" if self.reason else self.word

    @property
    def holds(self) -> bool:
        """Whether the claim was reproduced (fully)."""
        return self.word == "reproduced"


def not_testable(reason: str) -> Verdict:
    """The inputs cannot decide: ``reason`` says why."""
    return Verdict("not testable", reason)


def _count(name: str, k: int, n: int) -> None:
    if not (isinstance(k, (int,)) or float(k).is_integer()) or not 0 <= k <= n:
        raise ValueError(f"{name} = {k} must be a whole number between 0 and {n}")


def outcomes_untestable(leaky: Sequence[int], missing: Sequence[int], *, runs: str = "grokking runs",
                        fail: str = "do not generalize") -> "Verdict | None":
    """"Not testable" when a matched control generalized within the budget (``leaky``,
    its seeds; this wins) or a run under test did not do what the claim is about
    (``missing``, its seeds; ``runs`` names them, ``fail`` says what they did not do);
    None when neither (the chapter's own rules decide)."""
    if leaky:
        return not_testable(f"the controls of seeds {list(leaky)} generalize within the budget (lower control_r)")
    if missing:
        return not_testable(f"the {runs} of seeds {list(missing)} {fail} with these parameters")
    return None


def seeds_against_controls(runs_hold: int, controls_hold: int, n_runs: int,
                           n_controls: int | None = None, *, what: str = "runs",
                           min_seeds: int = MIN_SEEDS) -> Verdict:
    """The claim holds on ``runs_hold`` of ``n_runs`` seeds of the runs and on
    ``controls_hold`` of ``n_controls`` (default ``n_runs``) matched controls.

    - reproduced: it holds on at least ``min(min_seeds, n_runs)`` runs and on a smaller
      share of the controls;
    - not specific: it holds on enough runs, and on at least as large a share of the
      controls (it does not tell the runs apart);
    - not reproduced: it holds on fewer than ``min(min_seeds, n_runs)`` runs;
    - not testable: no runs, or no controls.
    """
    n_controls = n_runs if n_controls is None else n_controls
    if n_runs < 1 or n_controls < 1:
        return not_testable(f"{n_runs} runs and {n_controls} controls: nothing to compare")
    _count("runs_hold", runs_hold, n_runs)
    _count("controls_hold", controls_hold, n_controls)
    need = min(min_seeds, n_runs)
    counts = f"{runs_hold}/{n_runs} {what}, {controls_hold}/{n_controls} controls"
    if runs_hold < need:
        return Verdict("not reproduced", f"{counts} (needs {need} {what})")
    if controls_hold / n_controls >= runs_hold / n_runs:
        return Verdict("not specific", f"{counts}: the controls show it as often")
    return Verdict("reproduced", counts)


def share(found: Sequence[bool], names: Sequence[str]) -> Verdict:
    """A claim in parts: reproduced when every part was ``found``, partly when some
    were, not reproduced when none was. ``names`` label the parts in the reason."""
    found, names = list(found), list(names)
    if len(found) != len(names):
        raise ValueError(f"{len(found)} results for {len(names)} parts")
    if not found:
        return not_testable("no part of the claim was measured")
    hit = [n for n, f in zip(names, found) if f]
    miss = [n for n, f in zip(names, found) if not f]
    reason = "; ".join(p for p in (("found: " + ", ".join(hit)) if hit else "",
                                   ("not found: " + ", ".join(miss)) if miss else "") if p)
    word = "reproduced" if not miss else "partly reproduced" if hit else "not reproduced"
    return Verdict(word, reason)


def from_interval(estimate: float, low: float, high: float, null: float, *,
                  expected: str = "above", what: str = "the estimate") -> Verdict:
    """A decision from an interval ``[low, high]`` around ``estimate`` against the
    ``null`` value (0.5 for an AUC, 0 for a difference).

    With ``expected="above"`` (the claim predicts values above the null): reproduced
    when ``low > null``, reversed when ``high < null``, undecided when the interval
    holds the null. ``"below"`` mirrors it; ``"either"`` reproduces on either side.
    Not testable when any of the three is NaN."""
    if expected not in ("above", "below", "either"):
        raise ValueError(f"expected must be 'above', 'below' or 'either', got {expected!r}")
    vals = (estimate, low, high, null)
    if any(math.isnan(float(v)) for v in vals):
        return not_testable(f"{what} could not be measured")
    if low > high or not low <= estimate <= high:
        raise ValueError(f"need low <= estimate <= high, got {low}, {estimate}, {high}")
    text = f"{what} {estimate:.3g} [{low:.3g}, {high:.3g}] against {null:g}"
    above, below = low > null, high < null
    if not (above or below):
        return Verdict("undecided", text + ": the interval holds it")
    if expected == "either" or (above and expected == "above") or (below and expected == "below"):
        return Verdict("reproduced", text)
    return Verdict("reversed", text + ": on the other side")


def seed_interval(values: Sequence[float], *, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """``(mean, low, high)`` of per-seed values, with a 95% percentile bootstrap interval
    over seeds (the seeds are the independent units). NaN values (a seed without spikes)
    are left out; all NaN when fewer than two remain."""
    from ..predict import bootstrap_ci

    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return (float("nan"),) * 3
    return bootstrap_ci(np.mean, v, n_boot=n_boot, seed=seed)


def too_small(n_fit: int, n_runs: int, steps: int, *, fitted: str = "fits its training set") -> Verdict | None:
    """"Not testable" when none of the ``n_runs`` runs under test reached the event every
    test of the chapter is about (by default: fitting the training set, ``t2``) within its
    ``steps`` steps: the profile is too small to decide anything. None when at least one
    run did (the chapter's own rules decide)."""
    _count("n_fit", n_fit, n_runs)
    if n_runs >= 1 and n_fit == 0:
        return not_testable(f"none of the {n_runs} runs {fitted} within its {steps} steps: "
                            "this profile is too small to decide")
    return None


def scale_note(n_fit: int, n_runs: int, steps: int, *, fitted: str = "fits its training set") -> str:
    """The sentence a chapter shows at its top when :func:`too_small` holds (Markdown),
    else ``""``."""
    small = too_small(n_fit, n_runs, steps, fitted=fitted)
    if small is None:
        return ""
    return (f"**Too small to decide.** With these parameters none of the {n_runs} runs {fitted} "
            f"within its {steps} steps, so every verdict below is *not testable*; the figures "
            "show what the runs did.")
