"""Chapter 5 (a valley of memorizing solutions): barriers on straight segments between
snapshots and the chapter's verdicts, as functions of measured values.

The registered test scores "escape" as a *barrier-free* segment from the memorizing
weights to the final ones, though breaking free from a basin implies a barrier on that
segment. The second test (issue 32) asks what the claim predicts instead: the segment
that leaves the memorizing phase crosses a higher barrier than segments that stay within
one phase, between two memorizing snapshots of the same run and between two generalized
ones (:func:`pair_steps`, :func:`barrier`, :func:`barrier_verdict`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .verdicts import Verdict, from_interval, not_testable, outcomes_untestable

#: The three segments of a run: leaving the memorizing phase, and one within each phase.
PAIRS = ("escape", "memorizing", "generalized")

#: Where the offline pool's rows live, relative to the repository.
POOL_FILE = Path(__file__).resolve().parents[2] / "data" / "pool" / "valleys_p47.csv"

#: How the pool was measured (``benchmarks/pool.py``): points on a segment, and
#: the thresholds of t2, t3 and t4.
POOL_SETTINGS = dict(n_points=21, leave=0.2, reach=0.99)

#: The columns of a row of :func:`measure_barriers` (one segment of one run).
COLUMNS = ("config", "seed", "t2", "t3", "t4", "pair", "step_a", "step_b", "distance", "loss_a", "loss_b",
           "barrier")


def barrier(alphas: Sequence[float], loss: Sequence[float]) -> float:
    """The loss barrier on a segment (nats): the largest excess of the loss ``(A,)`` at
    ``alphas`` ``(A,)`` (increasing, from one end to the other) over the straight line
    between its two ends' losses. 0 for a loss that is convex along the segment (the
    ends themselves give 0)."""
    a, f = np.asarray(alphas, np.float64), np.asarray(loss, np.float64)
    if a.shape != f.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"alphas and loss must be 1-D arrays of one length >= 2, got {a.shape} and {f.shape}")
    u = (a - a[0]) / (a[-1] - a[0])
    return float(max(0.0, np.max(f - ((1 - u) * f[0] + u * f[-1]))))


def pair_steps(snapshot_steps: Sequence[int], t2: Optional[int], t3: Optional[int], t4: Optional[int],
               moment: int) -> dict[str, Optional[tuple[int, int]]]:
    """The snapshot steps ``(a, b)`` of each segment of :data:`PAIRS`:

    - ``escape``: from ``moment`` (the registered snapshot between t2 and t4) to the last
      snapshot;
    - ``memorizing``: from the first snapshot at or after t2 to the last one before t3
      (training set fitted, validation not yet left chance);
    - ``generalized``: from the first snapshot at or after t4 to the last snapshot.

    None for a segment that does not exist (a phase time never reached, or fewer than
    two snapshots in the phase)."""
    s = np.asarray(snapshot_steps, dtype=np.int64)
    last = int(s[-1])

    def span(lo: Optional[int], hi: Optional[int], inclusive: bool) -> Optional[tuple[int, int]]:
        if lo is None or hi is None:
            return None
        inside = s[(s >= lo) & ((s <= hi) if inclusive else (s < hi))]
        return (int(inside[0]), int(inside[-1])) if len(inside) >= 2 else None

    return {"escape": (int(moment), last) if moment < last else None,
            "memorizing": span(t2, t3, inclusive=False),
            "generalized": span(t4, last, inclusive=True)}


def moment_steps(snapshot_steps: Sequence[int], t2: Optional[int], t4: Optional[int]) -> list[int]:
    """The snapshot steps of the chapter's three moments: before t2 (half of it), between
    t2 and t4 (their geometric mean) and after t4 (halfway to the end); 10% and 60% of the
    run stand in for a t2 or t4 never reached. Each is the nearest snapshot, kept below
    the last one (so that the update direction, to the next snapshot, exists)."""
    s = np.asarray(snapshot_steps, dtype=np.int64)
    end = int(s[-1])
    t2 = t2 if t2 is not None else 0.1 * end
    t4 = t4 if t4 is not None else 0.6 * end
    targets = [0.5 * t2, np.sqrt(max(t2, 1) * max(t4, 1)), 0.5 * (t4 + end)]
    return [int(s[min(int(np.argmin(np.abs(s - x))), len(s) - 2)]) for x in targets]


def segment(config: Any, wa: np.ndarray, wb: np.ndarray, n_points: int) -> dict[str, float]:
    """The training loss on the straight segment between the flat weights ``wa`` and
    ``wb`` ``(P,)`` of a run of ``config``, at ``n_points`` evenly spaced points
    (:func:`grokbook.landscape.slice_1d`): its ``barrier`` (:func:`barrier`, nats), the
    losses at its ends ``loss_a``, ``loss_b`` and its length ``distance``."""
    import torch

    from ..landscape import slice_1d
    from ..run import model_with
    from ..tasks import make_dataset

    data = make_dataset(config)
    alphas = torch.linspace(0, 1, n_points)
    wa, wb = np.asarray(wa, np.float32), np.asarray(wb, np.float32)
    loss = slice_1d(model_with(config, wa), torch.from_numpy(wa), torch.from_numpy(wb - wa), alphas,
                    {"train": (data.train_x, data.train_y)})["train"]["loss"]
    return dict(distance=float(np.linalg.norm(wb.astype(np.float64) - wa)), loss_a=float(loss[0]),
                loss_b=float(loss[-1]), barrier=barrier(alphas.numpy(), loss))


def measure_barriers(run: Any, times: Any, moment: int, n_points: int) -> list[dict[str, Any]]:
    """:func:`segment` of each segment of :func:`pair_steps` of ``run`` (its snapshots;
    ``times``: its phase times; ``moment``: the registered snapshot between t2 and t4),
    as rows with :data:`COLUMNS`."""
    from .records import step_code

    rows = []
    for name, pair in pair_steps(run.snapshot_steps, times.t2, times.t3, times.t4, moment).items():
        if pair is None:
            continue
        ia, ib = (int(np.flatnonzero(run.snapshot_steps == s)[0]) for s in pair)
        rows.append(dict(config=run.config.hash(), seed=run.config.seed, t2=step_code(times.t2),
                         t3=step_code(times.t3), t4=step_code(times.t4), pair=name, step_a=pair[0], step_b=pair[1],
                         **segment(run.config, run.snapshots[ia], run.snapshots[ib], n_points)))
    return rows


def barrier_excess(rows: Sequence[dict[str, Any]], against: Sequence[str] = PAIRS[1:]) -> dict[int, float]:
    """Per seed: the escape segment's barrier minus the larger of the within-phase
    barriers named in ``against`` (nats; by default both); NaN for a seed that lacks one
    of those segments."""
    out = {}
    for s in sorted({int(r["seed"]) for r in rows}):
        b = {r["pair"]: float(r["barrier"]) for r in rows if int(r["seed"]) == s}
        need = {"escape", *against}
        out[s] = b["escape"] - max(b[p] for p in against) if need <= set(b) else float("nan")
    return out


def barrier_verdict(excess: tuple[float, float, float], n_seeds: int) -> Verdict:
    """The second test's verdict from the ``(mean, low, high)`` over seeds of
    :func:`barrier_excess` (nats): reproduced when the interval lies above 0 (the segment
    that leaves the memorizing phase crosses a higher barrier than either segment within
    a phase), reversed below, undecided when it holds 0. Not testable with fewer than 2
    seeds that have all three segments."""
    if n_seeds < 2:
        return not_testable(f"{n_seeds} fresh seed(s) with all three segments: need 2")
    return from_interval(*excess, 0.0, what="escape barrier minus the larger within-phase barrier (nats, "
                                            "mean over seeds)")


def registered_verdict(counts: dict[str, tuple[int, int]], n: int, *, missing: Sequence[int] = (),
                       leaky: Sequence[int] = ()) -> Verdict:
    """The chapter's registered verdict, as registered. ``counts``: for ``valley``,
    ``flat`` and ``escape``, how many of the ``n`` grokking runs and of the ``n`` controls
    pass it between t2 and t4. A test counts as found only when every grokking run passes
    it and some control fails it; reproduced when all three are found, partly when some
    are. Not testable when a grokking run does not both memorize and generalize
    (``missing``) or a control generalizes (``leaky``, which wins)."""
    untestable = outcomes_untestable(leaky, missing, fail="do not both memorize and generalize")
    if untestable is not None:
        return untestable
    names = {"valley": "a valley around the memorizing weights",
             "flat": "a flat stretch of memorizing solutions",
             "escape": "a way out that keeps the training set fitted and generalizes"}
    parts, found = [], 0
    for col, name in names.items():
        g_k, c_k = counts[col]
        if g_k < n:
            parts.append(f"{name}: only {g_k} of {n} grokking runs ({c_k} of {n} controls)")
        elif c_k == n:
            parts.append(f"{name}: all grokking runs, but all controls too (not specific to grokking)")
        else:
            parts.append(f"{name}: all {n} grokking runs, {c_k} of {n} controls")
            found += 1
    word = "reproduced" if found == 3 else "partly reproduced" if found else "not reproduced"
    return Verdict(word, "; ".join(parts))


def write_pool(rows: Sequence[dict[str, Any]], path: Path = POOL_FILE) -> Path:
    """``rows`` (:data:`COLUMNS`) as the CSV file ``path``, atomically."""
    from .records import write_csv

    return write_csv(rows, COLUMNS, path)


def read_pool(path: Path = POOL_FILE) -> list[dict[str, Any]]:
    """The pool's rows, or ``[]`` when the file is absent."""
    from .records import read_csv

    conv = dict(seed=int, t2=int, t3=int, t4=int, step_a=int, step_b=int, distance=float, loss_a=float,
                loss_b=float, barrier=float)
    return read_csv(path, COLUMNS, conv)


def pool_rows(pool: Sequence[dict[str, Any]], configs: Sequence[Any]) -> Optional[list[dict[str, Any]]]:
    """The pool's rows of ``configs``, or None unless every one of them is there."""
    from .records import rows_of

    return rows_of(pool, configs)


def agrees(recorded: dict[str, Any], measured: dict[str, Any], rtol: float = 1e-9) -> bool:
    """Whether a re-measured row equals its record: same steps, barrier and end losses
    within ``rtol`` (relative; 1e-12 nats absolute)."""
    return (recorded["step_a"] == measured["step_a"] and recorded["step_b"] == measured["step_b"]
            and all(math.isclose(recorded[k], measured[k], rel_tol=rtol, abs_tol=1e-12)
                    for k in ("barrier", "loss_a", "loss_b", "distance")))


# --- The time x alpha slice map, and the talk's r 0.30 against r 0.85 (issue 32) --------

#: Where the offline maps of other train fractions live (``benchmarks/pool.py --parts maps``).
MAP_FILE = POOL_FILE.with_name("valleys_maps_p47.csv")

#: The talk's contrast: slices at a train fraction that memorizes long and one that
#: generalizes soon (seed 0, the chapter's map settings).
MAP_FRACTIONS = (0.30, 0.85)
MAP_SETTINGS = dict(n_alphas=11, alpha_max=0.5, direction_seed=0, leave=0.2, reach=0.99)

#: The columns of a row of :func:`map_rows` (one point of one run's map).
MAP_COLUMNS = ("config", "seed", "r", "t2", "t3", "t4", "step", "alpha", "train_loss", "val_loss")


def slice_map(run: Any, alphas: Any, direction_seed: int) -> dict[str, np.ndarray]:
    """The time x alpha slice map of ``run``: at every snapshot ``theta_t``, the loss of
    ``theta_t + alpha * d_t`` for each of ``alphas`` ``(A,)``, with ``d_t`` the random
    direction of ``direction_seed`` filter-normalized at ``theta_t``
    (:func:`grokbook.landscape.random_direction`, :func:`~grokbook.landscape.filter_normalize`).
    Returns ``train`` and ``val``, each ``(n_snapshots, A)`` (nats)."""
    import torch

    from ..landscape import filter_normalize, random_direction, slice_1d

    data = run.dataset()
    batches = {"train": (data.train_x, data.train_y), "val": (data.val_x, data.val_y)}
    alphas = torch.as_tensor(alphas, dtype=torch.float32)
    maps: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    for i, step in enumerate(run.snapshot_steps):
        model = run.model_at(int(step))
        sl = slice_1d(model, torch.from_numpy(run.snapshots[i]),
                      filter_normalize(random_direction(model, direction_seed), model), alphas, batches)
        for name in maps:
            maps[name].append(np.asarray(sl[name]["loss"], np.float64))
    return {name: np.stack(v) for name, v in maps.items()}


def map_rows(run: Any, times: Any, alphas: Any, direction_seed: int) -> list[dict[str, Any]]:
    """:func:`slice_map` of ``run`` as rows with :data:`MAP_COLUMNS` (``times``: its
    phase times)."""
    from .records import step_code

    m = slice_map(run, alphas, direction_seed)
    a = np.asarray(alphas, np.float64)
    return [dict(config=run.config.hash(), seed=run.config.seed, r=float(run.config.r), t2=step_code(times.t2),
                 t3=step_code(times.t3), t4=step_code(times.t4), step=int(step), alpha=float(a[j]),
                 train_loss=float(m["train"][i, j]), val_loss=float(m["val"][i, j]))
            for i, step in enumerate(run.snapshot_steps) for j in range(len(a))]


def map_of_rows(rows: Sequence[dict[str, Any]], config_hash: str) -> dict[str, np.ndarray]:
    """The map of one run back from rows of :func:`map_rows`: ``steps`` ``(n,)``,
    ``alphas`` ``(A,)``, ``train`` and ``val`` ``(n, A)``. ValueError when the rows of
    ``config_hash`` do not fill a steps x alphas grid."""
    mine = [r for r in rows if r["config"] == config_hash]
    steps = np.unique([int(r["step"]) for r in mine])
    alphas = np.unique([float(r["alpha"]) for r in mine])
    if len(mine) == 0 or len(mine) != len(steps) * len(alphas):
        raise ValueError(f"the rows of {config_hash} do not fill a steps x alphas grid ({len(mine)} rows)")
    out = {"steps": steps, "alphas": alphas}
    for name in ("train", "val"):
        grid = np.full((len(steps), len(alphas)), np.nan)
        for r in mine:
            grid[np.searchsorted(steps, int(r["step"])), np.searchsorted(alphas, float(r["alpha"]))] = r[name + "_loss"]
        out[name] = grid
    return out


def write_maps(rows: Sequence[dict[str, Any]], path: Path = MAP_FILE) -> Path:
    """``rows`` (:data:`MAP_COLUMNS`) as the CSV file ``path``, atomically."""
    from .records import write_csv

    return write_csv(rows, MAP_COLUMNS, path)


def read_maps(path: Path = MAP_FILE) -> list[dict[str, Any]]:
    """The offline maps' rows, or ``[]`` when the file is absent."""
    from .records import read_csv

    return read_csv(path, MAP_COLUMNS, dict(seed=int, r=float, t2=int, t3=int, t4=int, step=int, alpha=float,
                                            train_loss=float, val_loss=float))
