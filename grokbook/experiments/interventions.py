"""Chapter 3 (the slingshot mechanism): does grokking survive when the slingshots are
suppressed? (issue 33)

The registered test clips one Adam run, which generalized in neither arm. The
counterfactual the claim "grokking is absent without slingshots" makes is tested on the
fresh seeds of chapter 1's AdamW configuration, which grok: each free run is repeated
with its global gradient norm clipped at a quantile of its own gradient norms after the
first steps (:func:`clip_level`), and the test asks first whether the clip suppressed
the loss spikes (:func:`measure`) and then whether grokking went with them
(:func:`suppression_verdict`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .verdicts import Verdict, not_testable

#: The clips: quantiles of the free run's gradient norms after ``skip``.
QUANTILES = (0.5, 0.9)

#: Where the pool's rows live (``benchmarks/pool.py --parts slingshot``).
POOL_FILE = Path(__file__).resolve().parents[2] / "data" / "pool" / "slingshot_p47.csv"

#: How the pool was measured (chapter 3's defaults).
POOL_SETTINGS = dict(skip=100, window=100, spike_factor=5.0, leave=0.2, reach=0.99)

#: The columns of a row of :func:`measure` (one run; ``arm``: ``"free"`` or ``"clip q<quantile>"``).
COLUMNS = ("config", "seed", "arm", "grad_clip", "t2", "t4", "final_val", "loss_spikes", "grad_spikes", "binds")


def clip_level(grad_norm: Sequence[float], skip: int, q: float) -> float:
    """The ``q`` quantile of a run's gradient norms ``(steps,)`` from step ``skip`` on:
    the clip that binds on a share ``1 - q`` of the free run's steps."""
    g = np.asarray(grad_norm, np.float64)[int(skip):]
    if len(g) == 0 or not 0 < q < 1:
        raise ValueError(f"need steps after skip = {skip} and 0 < q < 1, got {len(g)} steps and q = {q}")
    return float(np.quantile(g, q))


def spike_count(series: Sequence[float], start: int, *, window: int, spike_factor: float) -> int:
    """How many spikes (:func:`grokbook.slingshot.find_spikes`) ``series`` ``(steps,)``
    has from step ``start`` on."""
    from ..slingshot import find_spikes

    return int(np.sum(find_spikes(series, window=window, spike_factor=spike_factor) >= start))


def measure(run: Any, times: Any, arm: str, settings: dict[str, Any] = POOL_SETTINGS) -> dict[str, Any]:
    """One run as a row with :data:`COLUMNS`: its loss spikes from ``max(t2, skip)`` on
    (the slingshots' mark on the loss) and its gradient-norm spikes from ``skip`` on,
    ``binds`` (the share of steps from ``skip`` whose gradient norm reached the clip; 0
    unclipped), its phase times and final validation accuracy."""
    from .records import step_code

    skip, w, f = settings["skip"], settings["window"], settings["spike_factor"]
    g = np.asarray(run.metrics["grad_norm"], np.float64)
    clip = float(run.config.grad_clip)
    return dict(config=run.config.hash(), seed=run.config.seed, arm=arm, grad_clip=clip, t2=step_code(times.t2),
                t4=step_code(times.t4), final_val=float(run.val_acc[-1]),
                loss_spikes=spike_count(run.metrics["train_loss"], max(times.t2 or 0, skip), window=w,
                                        spike_factor=f),
                grad_spikes=spike_count(g, skip, window=w, spike_factor=f),
                binds=float(np.mean(g[skip:] >= clip)) if clip else 0.0)


def arm_summary(rows: Sequence[dict[str, Any]], arm: str) -> dict[str, Any]:
    """Over the seeds of ``arm``: ``n``, ``n_grok`` (t4 reached), ``wilson`` (95% interval
    of the share that groks, :func:`grokbook.stats.wilson_interval`), ``spikes`` (mean
    loss spikes per run), ``binds`` (mean) and ``t4_ratio``: per seed that groks in both
    this arm and the free one, ``log10`` of its t4 over the free run's."""
    from ..stats import wilson_interval

    mine = [r for r in rows if r["arm"] == arm]
    free = {int(r["seed"]): r for r in rows if r["arm"] == "free"}
    if not mine:
        raise ValueError(f"no rows of arm {arm!r}")
    n_grok = sum(int(r["t4"]) >= 0 for r in mine)
    ratio = {int(r["seed"]): float(np.log10(int(r["t4"]) / int(free[int(r["seed"])]["t4"]))) for r in mine
             if int(r["t4"]) > 0 and int(r["seed"]) in free and int(free[int(r["seed"])]["t4"]) > 0}
    return dict(n=len(mine), n_grok=n_grok, wilson=wilson_interval(n_grok, len(mine)),
                spikes=float(np.mean([r["loss_spikes"] for r in mine])),
                binds=float(np.mean([r["binds"] for r in mine])), t4_ratio=ratio)


def suppression_verdict(free: dict[str, Any], arm: dict[str, Any], *, name: str = "the intervention") -> Verdict:
    """"Grokking is absent without slingshots", from two :func:`arm_summary` results:

    - not testable unless ``arm`` suppressed the slingshots (its mean loss spikes per
      run at most half the free runs', which must have some) and the free runs grok;
    - reproduced when at most 1 of the arm's seeds groks within the budget;
    - not reproduced when the lower end of its Wilson interval is above 0.5 (most still
      grok: the slingshots were not needed);
    - undecided otherwise.
    """
    spikes = f"{arm['spikes']:.1f} loss spikes per run after t2 against {free['spikes']:.1f} free"
    if free["n_grok"] == 0:
        return not_testable(f"no free run groks ({free['n']} seeds)")
    if not (free["spikes"] > 0 and arm["spikes"] <= 0.5 * free["spikes"]):
        return not_testable(f"{name} did not suppress the slingshots: {spikes}")
    lo, hi = arm["wilson"]
    text = (f"{spikes}; {arm['n_grok']} of {arm['n']} seeds grok within the budget "
            f"(95% interval {lo:.2f}-{hi:.2f}), {free['n_grok']} of {free['n']} free")
    if arm["n_grok"] <= 1:
        return Verdict("reproduced", text)
    if lo > 0.5:
        return Verdict("not reproduced", text + ": grokking survives without the slingshots")
    return Verdict("undecided", text)


def write_pool(rows: Sequence[dict[str, Any]], path: Path = POOL_FILE) -> Path:
    """``rows`` (:data:`COLUMNS`) as the CSV file ``path``, atomically."""
    from .records import write_csv

    return write_csv(rows, COLUMNS, path)


def read_pool(path: Path = POOL_FILE) -> list[dict[str, Any]]:
    """The pool's rows, or ``[]`` when the file is absent."""
    from .records import read_csv

    return read_csv(path, COLUMNS, dict(seed=int, grad_clip=float, t2=int, t4=int, final_val=float, loss_spikes=int,
                                        grad_spikes=int, binds=float))


def arm_name(q: Optional[float]) -> str:
    """The arm's name: ``"free"`` or ``"clip q0.9"``."""
    return "free" if q is None else f"clip q{q:g}"
