"""The four phases of learning (Liu et al. 2022) and the times that separate them.

t1: train accuracy leaves chance; t2: train accuracy reaches (about) 100%;
t3: validation accuracy leaves chance; t4: validation accuracy reaches (about) 100%.
Every threshold is an explicit parameter; a time never reached is None.
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
    """:func:`phase_times` of a :class:`~grokbook.train.Run`."""
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
