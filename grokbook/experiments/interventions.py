"""Chapter 3 (the slingshot mechanism): does grokking survive when the slingshots are
suppressed? (issue 33)

The registered test clips one Adam run, which generalized in neither arm. The
counterfactual the claim "grokking is absent without slingshots" makes is tested on the
fresh seeds of chapter 1's AdamW configuration, which grok: each free run is repeated
under each intervention of :func:`arm_configs` (its global gradient norm clipped at a
quantile of its own gradient norms after the first steps, :func:`clip_level`; Adam's
epsilon raised to its typical gradient coordinate, :func:`eps_level`; the Grokfast
low-pass filter, :data:`GROKFAST`), and the test asks first whether the intervention
suppressed the loss spikes (:func:`measure`), then whether the runs still fit their
training set, and then whether grokking went with the spikes (:func:`suppression_verdict`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .verdicts import Verdict, not_testable

#: The clips: quantiles of the free run's gradient norms after ``skip``.
QUANTILES = (0.5, 0.9)

#: The Adam arm's epsilon is the free run's median gradient norm after ``skip`` over
#: ``sqrt(n_params)``, its typical gradient coordinate: where a coordinate's gradient
#: falls below it, as after the fit, Adam's normalisation no longer amplifies it (the
#: larger epsilon with which Thilak et al. suppress the slingshots).
EPS_QUANTILE = 0.5

#: The Grokfast arm (Lee et al. 2024, Grokfast-EMA): the values they give for the
#: modular-arithmetic transformer.
GROKFAST = dict(grokfast_alpha=0.98, grokfast_lamb=2.0)

#: The interventions' arm names, after the free runs' ``"free"``.
ARMS = tuple(f"clip q{q:g}" for q in QUANTILES) + ("adam eps", "grokfast")

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


def eps_level(median_norm: float, n_params: int) -> float:
    """The Adam arm's epsilon: ``median_norm`` (the free run's gradient norm at
    :data:`EPS_QUANTILE` after ``skip``, :func:`clip_level`) over ``sqrt(n_params)``."""
    if not (median_norm > 0 and n_params > 0):
        raise ValueError(f"need a positive gradient norm and parameter count, got {median_norm} and {n_params}")
    return float(median_norm) / math.sqrt(n_params)


def gradient_levels(grad_norm: Sequence[float], skip: int) -> dict[float, float]:
    """The free run's gradient-norm quantiles :func:`arm_configs` needs, ``{q: level}``
    for ``q`` in :data:`QUANTILES` and :data:`EPS_QUANTILE`."""
    return {q: clip_level(grad_norm, skip, q) for q in sorted({*QUANTILES, EPS_QUANTILE})}


def n_params(config: Any) -> int:
    """The number of weights of ``config``'s model."""
    from ..models import build_model
    from ..tasks import make_dataset

    data = make_dataset(config)
    return sum(p.numel() for p in build_model(config, data.vocab_size, data.n_classes).parameters())


def arm_configs(free: Any, levels: dict[float, float]) -> list[tuple[str, Any]]:
    """``(arm, config)`` for each of :data:`ARMS`: the free run's config ``free`` with the
    intervention, given its gradient-norm quantiles ``levels`` (:func:`gradient_levels`)."""
    missing = {*QUANTILES, EPS_QUANTILE} - set(levels)
    if missing:
        raise ValueError(f"levels lack the quantiles {sorted(missing)}")
    clips = [(arm_name(q), free.replace(grad_clip=levels[q])) for q in QUANTILES]
    return clips + [("adam eps", free.replace(adam_eps=eps_level(levels[EPS_QUANTILE], n_params(free)))),
                    ("grokfast", free.replace(**GROKFAST))]


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
    """Over the seeds of ``arm``: ``n``, ``n_fit`` (t2 reached), ``n_grok`` (t4 reached), ``wilson`` (95% interval
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
    return dict(n=len(mine), n_fit=sum(int(r["t2"]) >= 0 for r in mine), n_grok=n_grok,
                wilson=wilson_interval(n_grok, len(mine)),
                spikes=float(np.mean([r["loss_spikes"] for r in mine])),
                binds=float(np.mean([r["binds"] for r in mine])), t4_ratio=ratio)


def effect_text(free: dict[str, Any], arm: dict[str, Any], *, n_boot: int = 2000) -> str:
    """An intervention's effect on grokking, from two :func:`arm_summary` results, whatever
    its verdict: the share of its seeds that grok within the budget with its 95% Wilson
    interval against the free runs', and ``log10`` of t4 over the free run's, the mean over
    the seeds that grok in both with a 95% bootstrap interval over seeds
    (:func:`~grokbook.experiments.verdicts.seed_interval`)."""
    from .prose import estimate_text
    from .verdicts import seed_interval

    def share(s: dict[str, Any]) -> str:
        lo, hi = s["wilson"]
        return f"{s['n_grok']} of {s['n']} ({lo:.2f}-{hi:.2f})"

    ratios = list(arm["t4_ratio"].values())
    return (f"P(grok) {share(arm)} against {share(free)} free; log10 t4 over free "
            f"{estimate_text(*seed_interval(ratios, n_boot=n_boot))} over {len(ratios)} seeds that grok in both")


def suppression_verdict(free: dict[str, Any], arm: dict[str, Any], *, name: str = "the intervention") -> Verdict:
    """"Grokking is absent without slingshots", from two :func:`arm_summary` results:

    - not testable unless ``arm`` suppressed the slingshots (its mean loss spikes per
      run at most half the free runs', which must have some) and the free runs grok;
    - not testable when fewer than half of the arm's seeds fit their training set (t2):
      an intervention that stops the fit removes grokking's first phase, not only the
      slingshots;
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
    if 2 * arm["n_fit"] < arm["n"]:
        return not_testable(f"{spikes}, but only {arm['n_fit']} of {arm['n']} seeds fit their training set")
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
