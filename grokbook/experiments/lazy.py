"""Chapter 4 (lazy stretches and their departures): the registered tests' verdict lines,
and the talk's own quantity, the cosine between consecutive weights, tested against the
optimiser fed gradients without signal (issue 33).

The registered tests read the cosine between successive *updates* and the range of
``cos(theta_t, theta_0)``. The talk's quantity is ``cos(theta_t, theta_{t+1})``; its
turning ``1 - cos(theta_t, theta_{t+1})`` is what "the direction barely changes, except
at the slingshots" is about (:func:`weight_cosine_row`). The registered third test
(``cos(theta_t, theta_0)`` within a range of 0.1) cannot succeed under AdamW with
``lr * weight_decay * steps`` of order 10: decoupled decay alone shrinks the initial
weights by ``exp(-lr * wd * t)``, so the optimiser without signal leaves ``theta_0``'s
direction as far as the run does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .verdicts import Verdict, from_interval, not_testable

#: The registered tests, in the chapter's order.
REGISTERED_TESTS = ("1 lazier", "2 at spikes", "3 constant")

#: The smallest turning a float32 cosine resolves: ``1 - cos`` below it reads as 0.
FLOAT32_FLOOR = float(np.finfo(np.float32).eps) / 2


def registered_lines(passes: dict[str, dict[str, int]], counts: dict[str, int], constant_range: float,
                     need: int) -> list[str]:
    """The registered verdict, one line per test of :data:`REGISTERED_TESTS`, as
    registered. ``passes[group][test]``: how many runs of ``group`` (``"AdamW"``,
    ``"control"``, ``"Adam"``) pass it; ``counts[group]``: runs in the group; ``need``:
    grokking seeds on which a test must hold. A test is reproduced when at least
    ``need`` AdamW runs pass it, and tells grokking runs apart when fewer controls do."""
    whats = ("lazier than the optimiser without signal", "departures aligned with gradient-norm spikes above chance",
             f"cos(theta_t, theta_0) within a range of {constant_range}")
    lines = []
    for test, what in zip(REGISTERED_TESTS, whats):
        g_ok, c_ok = passes["AdamW"][test], passes["control"][test]
        word = "reproduced" if g_ok >= need else "not reproduced"
        specific = ("" if g_ok < need else "and fewer controls pass it: it tells grokking runs apart" if c_ok < g_ok
                    else "but the controls pass it as often: it does not tell grokking runs apart")
        held = {g: f"{passes[g][test]}/{counts[g]}" for g in ("AdamW", "control", "Adam")}
        lines.append(f"{what}: {held['AdamW']} grokking seeds, {held['control']} controls, "
                     f"{held['Adam']} Adam runs; {word}" + (f", {specific}" if specific else ""))
    return lines


def turning(cos_consecutive: Sequence[float]) -> np.ndarray:
    """``1 - cos(theta_t, theta_{t+1})`` ``(steps,)`` from a cosine series, each cosine
    first rounded to float32 (as the trainer stores it) and the result floored at
    :data:`FLOAT32_FLOOR`, so that a run and its null are read at one resolution."""
    c = np.asarray(cos_consecutive, np.float64).astype(np.float32).astype(np.float64)
    return np.maximum(1.0 - c, FLOAT32_FLOOR)


def circular_chance(events: Sequence[int], steps: Sequence[int], k: int, lo: int, hi: int) -> tuple[float, float]:
    """The chance level of the fraction of ``steps`` with an event at most ``k`` steps
    before or after, when the events are shifted circularly within ``lo .. hi - 1`` by
    every shift in turn (their spacing kept): ``(mean, 97.5th percentile)`` over the
    shifts. NaN when there are no steps or no events in the range."""
    e = np.asarray(events, np.int64)
    e = e[(e >= lo) & (e < hi)]
    s = np.asarray(steps, np.int64)
    n = hi - lo
    if len(e) == 0 or len(s) == 0 or n <= 0:
        return float("nan"), float("nan")
    shifted = lo + (e[None, :] - lo + np.arange(n)[:, None]) % n  # (n shifts, events)
    hit = (np.abs(shifted[:, None, :] - s[None, :, None]) <= k).any(axis=2)  # (shifts, steps)
    frac = hit.mean(axis=1)
    return float(frac.mean()), float(np.percentile(frac, 97.5))


def aligned_fraction(events: Sequence[int], steps: Sequence[int], k: int) -> float:
    """The fraction of ``steps`` with one of ``events`` at most ``k`` steps before or
    after (NaN without steps)."""
    e, s = np.asarray(events, np.int64), np.asarray(steps, np.int64)
    if len(s) == 0:
        return float("nan")
    return float(np.mean([bool(len(e)) and np.min(np.abs(e - x)) <= k for x in s]))


def weight_cosine_row(cos_consecutive: Sequence[float], null_cos_consecutive: Sequence[float],
                      grad_norm: Sequence[float], t2: Optional[int], *, skip: int, window: int,
                      spike_factor: float, k: int) -> dict[str, float]:
    """The talk's quantity on one run (``(steps,)`` series: its ``cos_consecutive`` and
    ``grad_norm``; ``null_cos_consecutive``: that of its optimiser without signal,
    :func:`grokbook.geometry.optimizer_noise_walk`), from ``start = max(t2, skip)`` on:

    - ``steadiness``: ``log10`` of the median :func:`turning` of the run over that of
      its null (< 0: the weights' direction changes less per step than under noise);
    - ``departures``: the spikes of the run's turning (:func:`grokbook.slingshot.find_spikes`,
      ``window``, ``spike_factor``) from ``start`` on; ``grad_spikes`` likewise of the
      gradient norm;
    - ``aligned``: the fraction of departures within ``k`` steps of a gradient-norm
      spike, ``chance`` and ``chance_high`` its :func:`circular_chance` (gradient spikes
      shifted within ``start .. steps - 1``), ``excess`` = ``aligned - chance``;
    - ``unresolved``: the share of the run's steps from ``start`` whose cosine is 1 in float32.

    Every value is NaN (counts 0) when ``start`` leaves fewer than two steps.
    """
    from ..slingshot import find_spikes

    run, null = turning(cos_consecutive), turning(null_cos_consecutive)
    g = np.asarray(grad_norm, np.float64)
    if not (len(run) == len(null) == len(g)):
        raise ValueError(f"the series must have one length, got {len(run)}, {len(null)}, {len(g)}")
    start = max(int(t2 or 0), int(skip))
    if start >= len(run) - 1:  # nothing left to measure: every value missing
        nan = float("nan")
        return dict(start=float(start), steadiness=nan, departures=0.0, grad_spikes=0.0, aligned=nan, chance=nan,
                    chance_high=nan, excess=nan, unresolved=nan)
    dep = find_spikes(run, window=window, spike_factor=spike_factor)
    dep = dep[dep >= start]
    gs = find_spikes(g, window=window, spike_factor=spike_factor)
    gs = gs[gs >= start]
    aligned = aligned_fraction(gs, dep, k)
    chance, high = circular_chance(gs, dep, k, start, len(run))
    return dict(start=float(start), steadiness=float(np.log10(np.median(run[start:]) / np.median(null[start:]))),
                departures=float(len(dep)), grad_spikes=float(len(gs)), aligned=aligned, chance=chance,
                chance_high=high, excess=aligned - chance,
                unresolved=float(np.mean(run[start:] <= FLOAT32_FLOOR)))


def weight_cosine_verdict(steadiness: tuple[float, float, float], excess: tuple[float, float, float],
                          n_seeds: int) -> Verdict:
    """The weight-cosine test from ``(mean, low, high)`` over seeds of
    :func:`weight_cosine_row`'s ``steadiness`` and ``excess``: reproduced when the
    first interval lies below 0 (steadier than the optimiser without signal) and the
    second above 0 (the turns fall on gradient-norm spikes beyond chance); partly when
    one holds; otherwise the first's own word. Not testable with fewer than 2 seeds."""
    if n_seeds < 2:
        return not_testable(f"{n_seeds} seed(s) that generalize: need 2")
    first = from_interval(*steadiness, 0.0, expected="below",
                          what="log10 median turning, run over the optimiser without signal")
    second = from_interval(*excess, 0.0, what="turns at gradient-norm spikes, fraction above chance")
    both = first.word == "reproduced", second.word == "reproduced"
    word = ("reproduced" if all(both) else "partly reproduced" if any(both)
            else first.word if first.word != "not testable" else second.word)
    return Verdict(word, f"{first.reason}; {second.reason}")


def specificity_text(steadiness: Sequence[float], excess: Sequence[float], what: str = "the controls") -> str:
    """Whether control runs that never generalize (``steadiness`` and ``excess`` of
    :func:`weight_cosine_row`, one per run) behave as the claim says grokking runs do
    (steadier than the optimiser without signal, turns on gradient-norm spikes above
    chance): an exploratory reading beside the registered verdict, which it does not
    change. ``what`` names the controls."""
    st, ex = np.asarray(steadiness, np.float64), np.asarray(excess, np.float64)
    if st.shape != ex.shape:
        raise ValueError(f"steadiness {st.shape} and excess {ex.shape} must be one value per run each")
    n, k = len(st), int(((st < 0) & (ex > 0)).sum())
    if not n:
        return f"{what}: none to compare with"
    if k == n:
        return (f"{what}: all {n} are on the claim's side of both, so the weight cosine behaves as the claim says "
                f"in runs that grok and in runs that never do: it describes this optimiser's training, not grokking")
    return f"{what}: {k} of {n} are on the claim's side of both, so they do not all behave as the grokking runs do"


#: Where the fresh seeds' rows live (``benchmarks/pool.py --parts lazy``).
POOL_FILE = Path(__file__).resolve().parents[2] / "data" / "pool" / "lazy_p47.csv"

#: How the pool was measured: the chapter's defaults.
POOL_SETTINGS = dict(skip=100, window=100, spike_factor=5.0, k=50, walk_seed=0, leave=0.2, reach=0.99)

#: The columns of a pool row: one run (``group``: ``"grokking"`` or ``"control"``, the
#: matched control without weight decay of :data:`grokbook.experiments.hessian.MATCHED_CHANGE`).
COLUMNS = ("config", "seed", "group", "t2", "t4", "start", "steadiness", "departures", "grad_spikes", "aligned",
           "chance", "chance_high", "excess", "unresolved")


def measure(run: Any, times: Any, group: str, settings: dict[str, Any] = POOL_SETTINGS) -> dict[str, Any]:
    """:func:`weight_cosine_row` of ``run`` (its noise walk: the run's own theta_0,
    steps, learning rate, weight decay, betas, optimiser and warm-up, seed
    ``walk_seed``) as a row with :data:`COLUMNS`."""
    from ..geometry import optimizer_noise_walk
    from .records import step_code

    c = run.config
    walk = optimizer_noise_walk(run.snapshots[0], c.steps, lr=c.lr, weight_decay=c.weight_decay, betas=c.betas,
                                optimizer=c.optimizer, warmup_steps=c.warmup_steps, seed=settings["walk_seed"])
    row = weight_cosine_row(run.metrics["cos_consecutive"], walk.cos_consecutive, run.metrics["grad_norm"], times.t2,
                            skip=settings["skip"], window=settings["window"], spike_factor=settings["spike_factor"],
                            k=settings["k"])
    return dict(config=c.hash(), seed=c.seed, group=group, t2=step_code(times.t2), t4=step_code(times.t4), **row)


def write_pool(rows: Sequence[dict[str, Any]], path: Path = POOL_FILE) -> Path:
    """``rows`` (:data:`COLUMNS`) as the CSV file ``path``, atomically."""
    from .records import write_csv

    return write_csv(rows, COLUMNS, path)


def read_pool(path: Path = POOL_FILE) -> list[dict[str, Any]]:
    """The pool's rows, or ``[]`` when the file is absent."""
    from .records import read_csv

    types = {k: float for k in COLUMNS[5:]}
    types.update(seed=int, t2=int, t4=int)
    return read_csv(path, COLUMNS, types)
