"""Chapter 2, the spectral energy of the early training loss: its verdict, as a pure
function of the measured rank correlations.
"""

from __future__ import annotations

import math
from typing import Sequence

from .prose import estimate_text

#: An estimate and its 95% interval: ``(estimate, low, high)``, NaN where not measurable.
Interval = Sequence[float]


def rho_call(rho: Interval, n_configs: int, n_seeds: int) -> str:
    """The verdict on one Spearman correlation of an early quantity against the final
    validation accuracy: reproduced when its interval is above 0, reversed when below,
    not reproduced when it holds 0, not measurable when the interval could not be
    computed."""
    est, lo, hi = (float(v) for v in rho)
    if not (math.isfinite(lo) and math.isfinite(hi) and math.isfinite(est)):
        return "not measurable on this sweep (too little variation for a rank correlation)"
    word = ("reproduced: it ranks runs like their final validation accuracy" if lo > 0 else
            "reversed: more energy goes with *lower* final validation accuracy" if hi < 0 else
            "not reproduced: no rank correlation distinguishable from zero")
    return (f"{word} (Spearman ρ = {est:+.2f}, 95% interval [{lo:+.2f}, {hi:+.2f}], over "
            f"{n_configs} configurations of {n_seeds} seeds)")


def memorizers_text(n_mem: int, whole: Interval, half: Interval, half_from: int) -> str:
    """The sentence on the runs that memorize within the window: ρ of the whole window
    and of the window from step ``half_from`` on, each with its interval."""
    if n_mem < 3:
        return (f"Only {n_mem} run{'s' if n_mem != 1 else ''} memorize{'s' if n_mem == 1 else ''} within the "
                "window: too few for a rank correlation among them.")
    return (f"Among the {n_mem} runs that memorize within the window, the activity of the whole window gives "
            f"ρ = {estimate_text(*whole)}; from step {half_from} on, after the initial fall, "
            f"ρ = {estimate_text(*half)}.")


def verdict_text(raw: Interval, detrended: Interval, same_sign: float, excl_zero: float, n_mem: int,
                 mem_whole: Interval, mem_half: Interval, n_configs: int, n_seeds: int) -> str:
    """The chapter's verdict: the paper's quantity (``raw``) and the book's detrended
    activity (``detrended``), each by :func:`rho_call`; the robustness over detrending
    choices (``same_sign``, ``excl_zero``: shares in [0, 1]); and, among the ``n_mem``
    runs that memorize, ρ of the paper's window and of its second half."""
    v = (f"with the paper's quantity, the raw energy, {rho_call(raw, n_configs, n_seeds)}; "
         f"with the book's detrended activity, {rho_call(detrended, n_configs, n_seeds)}")
    v += f"; the sign is the same for {same_sign:.0%} of the detrending choices and the interval excludes zero " \
         f"for {excl_zero:.0%}."
    if n_mem < 3:
        return v + (f" Only {n_mem} run{'s' if n_mem != 1 else ''} memorize{'s' if n_mem == 1 else ''}: "
                     "too few to rank among them")
    v += (f" Among the {n_mem} runs that memorize, the paper's window gives ρ = {estimate_text(*mem_whole)} and "
          f"the window's second half ρ = {estimate_text(*mem_half)}")
    lo, hi = float(mem_whole[1]), float(mem_whole[2])
    if math.isfinite(lo) and lo <= 0 <= hi:
        v += (": among the runs that memorize, the early energy does not rank the final validation accuracy "
              "distinguishably from zero")
    return v
