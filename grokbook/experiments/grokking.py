"""Chapter 1, grokking and its four phases: its verdicts and the sentences its prose
prints, as pure functions of measured values.

Every sentence about a run is conditioned on what the run did: a time never reached
reads "never within N steps", a ratio of two times exists only when both do, and
"memorizing" or "as the run generalizes" is said only of a run that did so.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..phases import PhaseTimes
from .prose import at_step  # noqa: F401  (the chapter's name for it)
from .verdicts import Verdict, seeds_against_controls, too_small


def ratio_text(t4: Optional[int], t2: Optional[int]) -> str:
    """``"t4 / t2 = 12.3"``, or why it does not exist."""
    if t2 is None or t4 is None:
        return "no t4 / t2: " + ("the run never fits its training set" if t2 is None else "it never generalizes")
    return f"t4 / t2 = {t4 / max(t2, 1):.1f}"


def phase_paragraph(times: PhaseTimes, steps: int, reach: float, final_val: float, final_train: float,
                    val_steps: Sequence[int], val_loss: Sequence[float]) -> str:
    """The paragraph under the phase figure for one run trained ``steps`` steps:
    ``times`` its t1..t4 at accuracy ``reach``; ``final_val``, ``final_train`` its final
    accuracies (fractions); ``val_steps``, ``val_loss`` ``(n_val,)`` its validation loss.
    The memorization sentence is said only when the validation loss measurably rises
    (by more than 1%) between t2 and t3 (or the end), the fall "by orders of magnitude"
    only when it falls at least a hundredfold after its peak."""
    t2, t3, t4 = times.t2, times.t3, times.t4
    out = [f"Training accuracy reaches {reach:g} at t₂ = {t2} steps" if t2 is not None
           else f"Training accuracy never reaches {reach:g} within the run's {steps} steps"]
    leave = (f"validation accuracy leaves chance at t₃ = {t3}" if t3 is not None
             else "validation accuracy never leaves chance")
    if t4 is not None:
        later = f", {t4 / max(t2, 1):.1f} times later than t₂" if t2 is not None else ""
        out.append(f"; {leave} and reaches {reach:g} at t₄ = {t4} steps{later}.")
    else:
        out.append(f"; {leave} and never reaches {reach:g} within {steps} steps.")
    out.append(f" At the end of the run the validation accuracy is {100 * final_val:.1f}% "
               f"(training: {100 * final_train:.1f}%).")
    vs, vl = np.asarray(val_steps), np.asarray(val_loss, dtype=float)
    if t2 is not None and len(vs):
        at_t2 = vl[np.searchsorted(vs, t2, side="right") - 1] if vs[0] <= t2 else vl[0]
        window = vl[(vs >= t2) & (vs <= (t3 if t3 is not None else vs[-1]))]
        if len(window) and window.max() > 1.01 * at_t2:
            out.append(f" Between t₂ and {'t₃' if t3 is not None else 'the end'} the validation loss "
                       f"*rises*, from {at_t2:.2f} to {window.max():.2f}, while the training accuracy stays "
                       "at 100%: the network is memorizing.")
        peak = int(np.argmax(vl))
        if t4 is not None and vl[peak:].min() <= vl[peak] / 100:
            out.append(f" The validation loss then falls by orders of magnitude (from {vl[peak]:.2f} to "
                       f"{vl[peak:].min():.2g}), long after the training accuracy stopped moving.")
    return "".join(out)


def norm_paragraph(weight_norm: Sequence[float], readout_norm: Sequence[float], times: PhaseTimes) -> str:
    """The paragraph under the norm figure: ``weight_norm``, ``readout_norm``
    ``(steps,)`` the per-step l2 norms of all weights and of the read-out layer."""
    wn, ln = np.asarray(weight_norm, dtype=float), np.asarray(readout_norm, dtype=float)
    end = len(wn) - 1
    verb = "falls" if wn[-1] < wn[0] else "rises"
    at_t3 = (f" to {wn[min(times.t3, end)]:.1f} when the validation accuracy leaves chance (t₃) and"
             if times.t3 is not None else "")
    out = f"The total norm {verb} from {wn[0]:.1f} at initialisation{at_t3} to {wn[-1]:.1f} at the end."
    peak = int(np.argmax(ln))
    if ln[peak] > 1.05 * ln[0]:
        when = " while the network memorizes" if times.t2 is not None and peak >= times.t2 else ""
        out += (f" The read-out layer grows{when}, peaking at step {peak} at {ln[peak] / ln[0]:.2f} times "
                f"its initial norm, and ends at {ln[-1] / ln[peak]:.2f} of that peak")
        out += ", as the run generalizes." if times.t4 is not None else "; the run never generalizes."
    else:
        out += f" The read-out layer's norm never grows more than 5% above its initial {ln[0]:.2f}."
    return out


def grokking_verdict(groks_run: Sequence[bool], groks_control: Sequence[bool], ratios: Sequence[float],
                     fits_run: Sequence[bool], steps: int) -> Verdict:
    """Grokking (``t4 >= delay x t2``) on the seeds against the controls
    (:func:`~grokbook.experiments.verdicts.seeds_against_controls`), with the range of
    ``t4 / t2`` over the runs that grok (``ratios``); not testable when no run fits its
    training set (``fits_run``: t2 reached) within ``steps``."""
    small = too_small(sum(map(bool, fits_run)), len(fits_run), steps)
    if small is not None:
        return small
    v = seeds_against_controls(sum(map(bool, groks_run)), sum(map(bool, groks_control)), len(groks_run),
                               len(groks_control), what="runs grok")
    if len(ratios):
        return Verdict(v.word, f"{v.reason} (t4/t2 {min(ratios):.0f} to {max(ratios):.0f})")
    return v


def key_verdict(emerged_run: Sequence[bool], emerged_control: Sequence[bool], n_top: int, key_share: float,
                fits_run: Sequence[bool], steps: int) -> Verdict:
    """Key frequencies emerged (the strongest ``n_top`` hold at least ``key_share`` of the
    non-constant power at the end) on the seeds against the controls; not testable when
    no run fits its training set within ``steps``."""
    small = too_small(sum(map(bool, fits_run)), len(fits_run), steps)
    if small is not None:
        return small
    v = seeds_against_controls(sum(map(bool, emerged_run)), sum(map(bool, emerged_control)), len(emerged_run),
                               len(emerged_control), what="runs")
    return Verdict(v.word, f"the strongest {n_top} frequencies hold at least {key_share:g} of the power in "
                           f"{v.reason}")
