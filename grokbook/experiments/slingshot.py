"""Chapter 3 (the slingshot mechanism): its registered tests, as pure functions of the
measured events, transitions and phase times (issue 33).

- :func:`alignment_row`: do validation transitions follow a kind of event more often
  than chance? Pooled over a group's seeds, against events placed uniformly over each run
  (the registered chance level) and shifted circularly within the stretch after ``t2``
  (where spikes and transitions both gather);
- :func:`alignment_text`: a group's rows in words, each kind above chance or not;
- :func:`without_weight_decay_verdict`: Adam without weight decay groks within the budget;
- :func:`controls_text` and :func:`clip_text`: the controls' slingshots and the one
  clipped run, described;
- :func:`adam_long_verdict`: Adam without weight decay at a budget that could show
  grokking (:data:`ADAM_LONG`), from offline rows.

Chapter 3's fair test of the counterfactual (suppressing the slingshots) is in
:mod:`grokbook.experiments.interventions`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .verdicts import MIN_SEEDS, Verdict

#: The kinds of event, as named in the chapter, and the field of
#: :func:`grokbook.slingshot.find_slingshots`'s result that holds them.
KINDS = (("onsets", "onsets"), ("loss spikes", "loss_spikes"), ("gradient-norm spikes", "grad_spikes"))


def alignment_row(runs: Sequence[tuple[Sequence[int], Sequence[int], Optional[int], int]], *, k: int,
                  n_shuffles: int, skip: int, seed: int = 0) -> dict[str, Any]:
    """One group and kind of event, its seeds pooled. ``runs``: per seed ``(events,
    transitions, t2, n_steps)`` (steps; ``t2`` None when never reached).

    Returns ``n_events``; ``transitions`` and ``aligned`` (transitions within ``k`` steps
    after an event), ``fraction``, ``chance`` and ``chance_high`` (mean and 97.5th
    percentile of the aligned fraction with each run's events placed uniformly after
    ``skip``, :func:`grokbook.slingshot.pooled_alignment`) and ``above chance``
    (``fraction > chance_high``); the same within each run's stretch from
    ``max(t2, skip)`` with its events shifted circularly (``after_t2``,
    ``aligned_after_t2``, ``chance_circ``, ``chance_circ_high``, ``above circular``;
    :func:`grokbook.slingshot.circular_alignment`). Fractions of no transitions are NaN
    and never above chance."""
    from ..slingshot import circular_alignment, pooled_alignment

    ev = [np.asarray(e, np.int64) for e, _, _, _ in runs]
    tr = [np.asarray(t, np.int64) for _, t, _, _ in runs]
    pooled = pooled_alignment([(e, t, n) for e, t, (_, _, _, n) in zip(ev, tr, runs)], k,
                              n_shuffles=n_shuffles, seed=seed, start=skip)
    circ = circular_alignment([(e, t, max(t2 or 0, skip), n) for e, t, (_, _, t2, n) in zip(ev, tr, runs)], k,
                              n_shuffles=n_shuffles, seed=seed)
    fraction = pooled.aligned / pooled.total if pooled.total else float("nan")
    after = circ.aligned / circ.total if circ.total else float("nan")
    return {"n_events": int(sum(len(e) for e in ev)), "transitions": int(pooled.total),
            "aligned": int(pooled.aligned), "fraction": fraction, "chance": float(pooled.chance.mean),
            "chance_high": float(pooled.chance.high), "above chance": bool(fraction > pooled.chance.high),
            "after_t2": int(circ.total), "aligned_after_t2": int(circ.aligned),
            "chance_circ": float(circ.chance.mean), "chance_circ_high": float(circ.chance.high),
            "above circular": bool(after > circ.chance.high)}


def alignment_text(group: str, rows: dict[str, dict[str, Any]], new_highs: dict[str, Any]) -> str:
    """The registered alignment test of ``group`` in words: for each of :data:`KINDS`
    (``rows[kind]``, an :func:`alignment_row`) its aligned transitions against chance,
    and the same counting only gains to a new high after loss spikes (``new_highs``)."""
    parts = []
    for kind, _ in KINDS:
        rw = rows[kind]
        if not rw["transitions"]:
            return f"{group}: no transitions to test"
        parts.append(f"{rw['aligned']}/{rw['transitions']} transitions after {kind} (chance "
                     f"{100 * rw['chance']:.0f}%, 97.5% up to {100 * rw['chance_high']:.0f}%): "
                     + ("above chance" if rw["above chance"] else "not above chance"))
    hi = new_highs
    parts.append(f"counting only gains to a new high, {hi['aligned']}/{hi['transitions']} transitions after loss spikes"
                 + ("" if not hi["transitions"] else " (above chance)" if hi["above chance"] else " (not above chance)"))
    return f"{group}: " + "; ".join(parts)


def circular_text(rows: dict[str, dict[str, Any]]) -> str:
    """The circular-shift test after ``t2`` for each of :data:`KINDS`, in words."""
    parts = []
    for kind, _ in KINDS:
        rw = rows[kind]
        parts.append(f"{rw['aligned_after_t2']}/{rw['after_t2']} transitions after {kind} (circular chance "
                     f"{100 * rw['chance_circ']:.0f}%, 97.5% up to {100 * rw['chance_circ_high']:.0f}%): "
                     + ("above chance" if rw["above circular"] else "not above chance") if rw["after_t2"] else
                     f"no transition after t2 to test against {kind}")
    return "; ".join(parts)


def without_weight_decay_verdict(n_grok: dict[str, int], n_gen: dict[str, int], n: int, steps: int,
                                 delay: float) -> Verdict:
    """"Adam without weight decay groks": reproduced when at least ``min(MIN_SEEDS, n)``
    of the ``n`` Adam seeds grok (``n_grok["Adam"]``: t4 at least ``delay`` times t2)
    within ``steps``; else not reproduced at this budget. ``n_gen``: how many
    generalized at all; the AdamW runs and the controls (keys ``"AdamW"``,
    ``"control"``) are reported beside."""
    for g in ("Adam", "AdamW", "control"):
        if not 0 <= n_grok[g] <= n or not 0 <= n_gen[g] <= n:
            raise ValueError(f"counts of {g} must be between 0 and {n}: {n_grok[g]}, {n_gen[g]}")
    reason = (f"{n_grok['Adam']}/{n} Adam runs without weight decay grok (t4 >= {delay:g} t2) within {steps} steps and "
              f"{n_gen['Adam']}/{n} generalize (AdamW: {n_grok['AdamW']}/{n} grok, controls: {n_grok['control']}/{n})")
    if n_grok["Adam"] >= min(MIN_SEEDS, n):
        return Verdict("reproduced", reason)
    return Verdict("not reproduced", reason + " at this budget")


def controls_text(n_spikes: int, n_onsets: int, n: int, n_gen: int) -> str:
    """The controls' slingshots in words: loss spikes and onsets over ``n`` runs, of
    which ``n_gen`` generalize; slingshots without generalization when there are
    events and no control generalizes."""
    return (f"the controls have {n_spikes} loss spikes and {n_onsets} onsets over {n} runs, and {n_gen}/{n} generalize"
            + (": slingshots come without generalization" if (n_spikes + n_onsets) and not n_gen else ""))


def clip_text(quantile: float, binds: float, spikes: tuple[int, int], t4: tuple[Optional[int], Optional[int]]) -> str:
    """The one clipped run against its unclipped twin: the clip's ``quantile`` and the
    share ``binds`` of steps where it binds, loss ``spikes`` and ``t4`` (unclipped,
    clipped; None: never reached)."""
    (na, nc), (ta, tc) = spikes, t4
    fmt = lambda t: "never" if t is None else str(int(t))
    if ta is None:
        effect = "not comparable (the unclipped run did not generalize)"
    elif tc is None:
        effect = "generalization prevented within the run"
    else:
        effect = "generalization slower but not prevented" if tc > ta else "generalization not slower"
    return (f"clipping at the {quantile:g} quantile binds at {100 * binds:.1f}% of the steps; loss spikes {na} -> {nc}, "
            f"t4 {fmt(ta)} -> {fmt(tc)}: " + ("fewer spikes" if nc < na else "not fewer spikes") + f", {effect} (one seed)")


#: "Adam without weight decay groks" at a budget that could show it (issue 33): chapter
#: 3's Adam runs (no weight decay) at a 3.3x larger learning rate, 5x the chapter's
#: steps, on fresh seeds, trained offline into :data:`ADAM_LONG_FILE`. A pilot at these
#: settings (seed 0, 4000 steps) reached 45% validation accuracy, rising.
ADAM_LONG = dict(lr=0.01, steps=20_000)
ADAM_LONG_SEEDS = (100, 101, 102)
ADAM_LONG_FILE = Path(__file__).resolve().parents[2] / "data" / "pool" / "adam_long_p47.csv"
ADAM_LONG_COLUMNS = ("config", "seed", "lr", "steps", "t2", "t4", "half_val", "final_val", "loss_spikes")


def measure_adam_long(run: Any, times: Any, *, skip: int = 100, window: int = 100,
                      spike_factor: float = 5.0) -> dict[str, Any]:
    """One long Adam run as a row of :data:`ADAM_LONG_COLUMNS` (times -1 for never;
    ``half_val``: the validation accuracy at the last evaluation at or before half the
    budget; loss spikes from ``max(t2, skip)`` on, as chapter 3 counts them)."""
    from .interventions import spike_count
    from .records import step_code

    c = run.config
    vs = np.asarray(run.val_steps)
    half = float(np.asarray(run.val_acc)[max(int(np.searchsorted(vs, c.steps // 2, side="right")) - 1, 0)])
    return dict(config=c.hash(), seed=c.seed, lr=float(c.lr), steps=int(c.steps), t2=step_code(times.t2),
                t4=step_code(times.t4), half_val=half, final_val=float(run.val_acc[-1]),
                loss_spikes=spike_count(run.metrics["train_loss"], max(times.t2 or 0, skip), window=window,
                                        spike_factor=spike_factor))


def write_adam_long(rows: Sequence[dict[str, Any]], path: Path = ADAM_LONG_FILE) -> Path:
    """``rows`` (:data:`ADAM_LONG_COLUMNS`) as the CSV file ``path``, atomically."""
    from .records import write_csv

    return write_csv(rows, ADAM_LONG_COLUMNS, path)


def read_adam_long(path: Path = ADAM_LONG_FILE) -> list[dict[str, Any]]:
    """The long Adam runs' rows, or ``[]`` when the file is absent."""
    from .records import read_csv

    return read_csv(path, ADAM_LONG_COLUMNS, dict(seed=int, lr=float, steps=int, t2=int, t4=int, half_val=float,
                                                  final_val=float, loss_spikes=int))


def budget_estimate(row: dict[str, Any], reach: float) -> str:
    """The budget a long Adam run (a row of :data:`ADAM_LONG_COLUMNS`) would need to reach
    ``reach`` validation accuracy, extrapolating the rise of its second half linearly: a
    rough, exploratory figure (a run can plateau or collapse, and grokking is no straight
    line), ``"reached"`` when it got there, and no figure when it did not rise."""
    steps, half, final = int(row["steps"]), float(row["half_val"]), float(row["final_val"])
    if final >= reach:
        return f"seed {row['seed']}: reached {100 * reach:.0f}%"
    rate = (final - half) / (steps - steps // 2)
    what = f"seed {row['seed']}: {100 * half:.0f}% at step {steps // 2}, {100 * final:.0f}% at {steps}"
    if rate <= 0:
        return f"{what}: no rise over the second half, so no budget can be read off"
    need = steps + (reach - final) / rate
    return f"{what}: at that rate {100 * reach:.0f}% near step {need:,.0f} ({need / steps:.1f}x the budget)"


def adam_long_verdict(rows: Sequence[dict[str, Any]], delay: float) -> Verdict:
    """"Adam without weight decay groks" at the long budget: reproduced when at least
    ``min(MIN_SEEDS, n)`` of the ``n`` rows grok (t4 reached, at least ``delay`` times
    t2); else not reproduced at that budget. Not testable without rows."""
    from ..phases import PhaseTimes, is_grokking

    if not rows:
        return Verdict("not testable", "no long Adam runs")
    n = len(rows)
    t = lambda v: None if int(v) < 0 else int(v)
    grok = [is_grokking(PhaseTimes(None, t(r["t2"]), None, t(r["t4"])), delay) for r in rows]
    budget = {int(r["steps"]) for r in rows}
    text = (f"{sum(grok)}/{n} Adam runs without weight decay at lr {rows[0]['lr']:g} grok (t4 >= {delay:g} t2) "
            f"within {'/'.join(map(str, sorted(budget)))} steps (t4 "
            + ", ".join("never" if int(r["t4"]) < 0 else str(int(r["t4"])) for r in rows)
            + "; final validation " + ", ".join(f"{100 * r['final_val']:.0f}%" for r in rows) + ")")
    if sum(grok) >= min(MIN_SEEDS, n):
        return Verdict("reproduced", text)
    return Verdict("not reproduced", text + " at this budget")
