"""Chapter 6 (the trajectory lives in a plane): planarity against its nulls, under either
snapshot schedule, and the chapter's verdict, as functions of measured values.

A run keeps ``n_snapshots`` weight snapshots, half on a geometric grid (dense early) and
half evenly spaced (:func:`grokbook.trainer.snapshot_schedule`). Trajectory PCA as usually
done takes evenly spaced checkpoints; the dense early half weighs the first steps, where
the weights move fastest, far more. :func:`evenly_spaced` picks the evenly spaced half
from the stored snapshots (no retraining), so planarity can be measured under both.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .verdicts import Verdict, not_testable

#: The paper's planarity: more than this share of the variance in two components.
PLANAR = 0.98


def evenly_spaced(snapshot_steps: Sequence[int], steps: int, n_snapshots: int) -> np.ndarray:
    """Indices ``(k,)`` of the snapshots that lie on the evenly spaced half of
    :func:`grokbook.trainer.snapshot_schedule` (``steps``, ``n_snapshots``): every
    ``steps / (k - 1)`` steps from 0 to ``steps``, rounded. ValueError when a step of
    that grid is not among ``snapshot_steps`` (another schedule)."""
    grid = np.unique(np.round(np.linspace(0, steps, max(n_snapshots - n_snapshots // 2, 2))).astype(np.int64))
    s = np.asarray(snapshot_steps, dtype=np.int64)
    idx = np.searchsorted(s, grid)
    if np.any(idx >= len(s)) or np.any(s[np.minimum(idx, len(s) - 1)] != grid):
        raise ValueError(f"the snapshots do not hold the evenly spaced steps {grid.tolist()}")
    return idx


def null_walks() -> dict[str, Callable[[np.ndarray, int], np.ndarray]]:
    """The chapter's three nulls, each ``f(snapshots (n, P), seed) -> (n, P)``: an
    isotropic random walk with the run's step norms, the drift walk and the shuffled
    steps (:mod:`grokbook.geometry`)."""
    from ..geometry import drift_walk, random_walk, shuffled_walk

    return {"isotropic walk": lambda x, s: random_walk(np.linalg.norm(np.diff(x, axis=0), axis=1),
                                                       x.shape[1], seed=s, start=x[0]),
            "drift walk": drift_walk, "shuffled steps": shuffled_walk}


def planarity_row(x: np.ndarray, n_walks: int, planar: float = PLANAR) -> dict[str, Any]:
    """The planarity of the trajectory ``x`` ``(n, P)`` and of its nulls: ``planarity``,
    each null's mean and ``<null> sd`` over ``n_walks`` walks (seeds 0..n_walks-1),
    ``planar`` (above ``planar``) and ``beats nulls`` (above the mean of both
    drift-keeping nulls by two of their standard deviations)."""
    from ..geometry import planarity

    x = np.asarray(x, dtype=np.float64)
    row: dict[str, Any] = {"planarity": planarity(x)}
    for name, f in null_walks().items():
        v = np.array([planarity(f(x, s)) for s in range(n_walks)])
        row[name], row[name + " sd"] = float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
    row["planar"] = bool(row["planarity"] > planar)
    row["beats nulls"] = bool(all(row["planarity"] > row[n] + 2 * row[n + " sd"]
                                  for n in ("drift walk", "shuffled steps")))
    return row


def registered_verdict(g_planar: int, g_beats: int, c_planar: int, c_beats: int, n: int, *,
                       not_grokking: Sequence[int] = (), leaky: Sequence[int] = (),
                       planar: float = PLANAR) -> Verdict:
    """The chapter's registered verdict, as registered, from counts over ``n`` seeds:
    grokking runs and controls that are planar (``*_planar``) and that beat the
    drift-keeping nulls (``*_beats``). Reproduced when every grokking run passes both and
    the controls do not pass both ("not specific" when they do: registered as
    "reproduced, but not specific to grokking"), partly when they pass one, not
    reproduced otherwise; not testable when a grokking run does not generalize
    (``not_grokking``) or a control does (``leaky``, which wins)."""
    if leaky:
        return not_testable(f"the controls of seeds {list(leaky)} generalize within the budget (lower control_r)")
    if not_grokking:
        return not_testable(f"the 'grokking' runs of seeds {list(not_grokking)} do not generalize with these "
                            "parameters")
    parts = []
    for label, gk, ck in ((f"more than {100 * planar:g}% in two components", g_planar, c_planar),
                          ("more planar than the drift-keeping nulls", g_beats, c_beats)):
        if gk == n and ck == n:
            parts.append(f"{label}: all grokking runs and all controls alike, so it is not specific to grokking")
        elif gk == n:
            parts.append(f"{label}: all {n} grokking runs, {ck} of {n} controls")
        else:
            parts.append(f"{label}: only {gk} of {n} grokking runs ({ck} of {n} controls)")
    specific = (g_planar == n and c_planar < n) or (g_beats == n and c_beats < n)
    if g_planar == n and g_beats == n:
        word = "reproduced" if specific else "not specific"
    else:
        word = "partly reproduced" if g_planar == n or g_beats == n else "not reproduced"
    return Verdict(word, "; ".join(parts))


def verdict_of_rows(rows: Sequence[dict[str, Any]], n: int, *, key: str = "", planar: float = PLANAR,
                    not_grokking: Sequence[int] = (), leaky: Sequence[int] = ()) -> Verdict:
    """:func:`registered_verdict` of rows of :func:`planarity_row` (each with a ``group``,
    ``"grokking"`` or ``"control"``), reading ``planarity<key>`` (planar: above
    ``planar``) and ``beats nulls<key>`` (``key``: a schedule's suffix)."""
    def count(g: str, passes: Callable[[dict[str, Any]], bool]) -> int:
        return sum(passes(r) for r in rows if r["group"] == g)

    is_planar = lambda r: bool(r["planarity" + key] > planar)  # noqa: E731
    beats = lambda r: bool(r["beats nulls" + key])  # noqa: E731
    return registered_verdict(count("grokking", is_planar), count("grokking", beats),
                              count("control", is_planar), count("control", beats), n,
                              not_grokking=not_grokking, leaky=leaky, planar=planar)
