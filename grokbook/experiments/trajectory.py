"""Chapter 6 (the trajectory lives in a plane): planarity against its nulls, under either
snapshot schedule, and the chapter's verdict, as functions of measured values.

A run keeps ``n_snapshots`` weight snapshots, half on a geometric grid (dense early) and
half evenly spaced (:func:`grokbook.trainer.snapshot_schedule`). Trajectory PCA as usually
done takes evenly spaced checkpoints; the dense early half weighs the first steps, where
the weights move fastest, far more. :func:`evenly_spaced` picks the evenly spaced half
from the stored snapshots (no retraining), so planarity can be measured under both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .verdicts import Verdict, from_interval, not_testable, outcomes_untestable

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
    untestable = outcomes_untestable(leaky, not_grokking, runs="'grokking' runs")
    if untestable is not None:
        return untestable
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


#: Where the offline pool's rows live, relative to the repository.
POOL_FILE = Path(__file__).resolve().parents[2] / "data" / "pool" / "trajectory_p47.csv"

#: The pool's settings: walks of each null per run, and the thresholds of t4.
POOL_SETTINGS = dict(n_walks=5, leave=0.2, reach=0.99)

#: The columns of a row of :func:`measure_planarity` (one run under one schedule).
COLUMNS = ("config", "seed", "t4", "schedule", "snapshots", "planarity", "isotropic walk", "isotropic walk sd",
           "drift walk", "drift walk sd", "shuffled steps", "shuffled steps sd")


def measure_planarity(run: Any, times: Any, n_walks: int) -> list[dict[str, Any]]:
    """:func:`planarity_row` of a run's trajectory under both schedules (``schedule``:
    ``"stored"``, every snapshot; ``"even"``, :func:`evenly_spaced`), as rows with
    :data:`COLUMNS`."""
    from .records import step_code

    x = run.snapshots.astype(np.float64)
    even = evenly_spaced(run.snapshot_steps, run.config.steps, run.config.n_snapshots)
    rows = []
    for schedule, pick in (("stored", np.arange(len(x))), ("even", even)):
        row = planarity_row(x[pick], n_walks)
        rows.append(dict(config=run.config.hash(), seed=run.config.seed, t4=step_code(times.t4), schedule=schedule,
                         snapshots=len(pick), **{k: row[k] for k in COLUMNS[5:]}))
    return rows


def planarity_excess(rows: Sequence[dict[str, Any]], schedule: str) -> dict[int, float]:
    """Per seed that generalizes (``t4 >= 0``): its planarity minus its drift walks' mean
    under ``schedule`` (a share of the variance; > 0: more planar than a walk with the
    same steps and the same drift)."""
    return {int(r["seed"]): float(r["planarity"]) - float(r["drift walk"]) for r in rows
            if r["schedule"] == schedule and int(r["t4"]) >= 0}


def control_difference(grokking: Sequence[dict[str, Any]], controls: Sequence[dict[str, Any]],
                       schedule: str) -> dict[int, float]:
    """Per seed with a row in both: the grokking run's planarity excess over its drift
    walks minus its matched control's (the same seed: initialisation and split; the
    control never generalizes, so it is not filtered on ``t4`` as
    :func:`planarity_excess` is), under ``schedule`` (shares of the variance). The
    grokking run is left out where it does not generalize."""
    def excess(rows: Sequence[dict[str, Any]]) -> dict[int, float]:
        return {int(r["seed"]): float(r["planarity"]) - float(r["drift walk"]) for r in rows
                if r["schedule"] == schedule}

    g = planarity_excess(grokking, schedule)
    c = excess(controls)
    return {s: g[s] - c[s] for s in sorted(set(g) & set(c))}


def control_reading(difference: tuple[float, float, float], n_seeds: int) -> str:
    """The matched controls' reading from ``(mean, low, high)`` over seeds of
    :func:`control_difference`: the planarity beyond the drift sets the grokking runs
    apart from their controls when the interval excludes 0 (above: more planar; below:
    less), not when it holds 0; fewer than 2 pairs say nothing. A reading beside the
    registered verdict, which it does not change."""
    if n_seeds < 2:
        return f"not measurable: {n_seeds} pair(s) of a grokking run and its control"
    est, lo, hi = difference
    what = (f"grokking run minus its matched control, planarity beyond the drift walk: {100 * est:+.1f} "
            f"[{100 * lo:+.1f}, {100 * hi:+.1f}] points over {n_seeds} seeds")
    if lo > 0:
        return f"{what}: the grokking runs are more planar than their controls"
    if hi < 0:
        return f"{what}: the grokking runs are less planar than their controls"
    return f"{what}: no difference resolved, so the planarity (or its lack) belongs to this training, not to grokking"


def plane_verdict(excess: tuple[float, float, float], planarity: tuple[float, float, float], n_seeds: int,
                  planar: float = PLANAR) -> Verdict:
    """The second test's verdict from ``(mean, low, high)`` over seeds of
    :func:`planarity_excess` and of the planarity itself: reproduced when the excess's
    interval lies above 0 and the planarity's above ``planar``; partly when only the
    first holds; otherwise the excess's own word (undecided, reversed). Not testable with
    fewer than 2 seeds."""
    if n_seeds < 2:
        return not_testable(f"{n_seeds} fresh seed(s) that generalize: need 2")
    first = from_interval(*excess, 0.0, what="planarity minus the drift walk's (mean over seeds)")
    second = from_interval(*planarity, planar, what="planarity (mean over seeds)")
    if first.word != "reproduced":
        return Verdict(first.word, f"{first.reason}; {second.reason}")
    return Verdict("reproduced" if second.word == "reproduced" else "partly reproduced",
                   f"{first.reason}; {second.reason}")


def write_pool(rows: Sequence[dict[str, Any]], path: Path = POOL_FILE) -> Path:
    """``rows`` (:data:`COLUMNS`) as the CSV file ``path``, atomically."""
    from .records import write_csv

    return write_csv(rows, COLUMNS, path)


def read_pool(path: Path = POOL_FILE) -> list[dict[str, Any]]:
    """The pool's rows, or ``[]`` when the file is absent."""
    from .records import read_csv

    types = {k: float for k in COLUMNS[5:]}
    types.update(seed=int, t4=int, snapshots=int)
    return read_csv(path, COLUMNS, types)


def pool_rows(pool: Sequence[dict[str, Any]], configs: Sequence[Any]) -> Optional[list[dict[str, Any]]]:
    """The pool's rows of ``configs``, or None unless every one of them is there."""
    from .records import rows_of

    return rows_of(pool, configs)


# --- The talk's three pictures of the memorizing stretch (issue 32) -------------------

#: The talk's question: before grokking, does the model oscillate around a minimum,
#: cross a flat region, or go around an obstacle? Each picture's signature is
#: :func:`picture_of`.
PICTURES = ("oscillating around a minimum", "crossing a flat region", "going around an obstacle")

#: The signatures' thresholds, fixed before the numbers: ``straight``, the straightness
#: that separates a path that gets somewhere from one that circles; ``high``, the barrier
#: (nats) that counts as an obstacle; ``n_points`` on the chord.
PICTURE_SETTINGS = dict(straight=0.5, high=0.5, n_points=21)

#: The columns of a row of :func:`measure_picture` (one run's memorizing stretch).
PICTURE_COLUMNS = ("config", "seed", "t2", "t4", "step_a", "step_b", "snapshots", "straightness", "turning",
                   "chord barrier", "path barrier")

#: Where the offline pool's picture rows live, relative to the repository.
PICTURE_POOL_FILE = POOL_FILE.with_name("pictures_p47.csv")


def stretch(snapshot_steps: Sequence[int], picked: Sequence[int], t2: Optional[int],
            t4: Optional[int]) -> Optional[np.ndarray]:
    """Indices ``(k,)`` among ``picked`` (indices into ``snapshot_steps``, increasing) of
    the snapshots from ``t2`` to ``t4`` inclusive (to the last snapshot when ``t4`` is
    None: a run that never generalizes memorizes to the end); None when ``t2`` is None
    or fewer than 3 snapshots (2 steps) lie there."""
    if t2 is None:
        return None
    s = np.asarray(snapshot_steps, dtype=np.int64)[np.asarray(picked, dtype=np.int64)]
    hi = s[-1] if t4 is None else t4
    inside = np.asarray(picked, dtype=np.int64)[(s >= t2) & (s <= hi)]
    return inside if len(inside) >= 3 else None


def path_shape(x: np.ndarray) -> dict[str, float]:
    """The shape of a path ``x`` ``(n, P)`` (n >= 3 points): ``straightness``, the
    distance between its ends over its length (1: a straight line, about
    ``1/sqrt(n-1)`` for an isotropic walk, 0: back where it started), and ``turning``,
    the mean cosine between consecutive steps (1: straight on, < 0: reversals dominate,
    as in an oscillation across a minimum)."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or len(x) < 3:
        raise ValueError(f"a path needs an (n, P) array with n >= 3, got shape {x.shape}")
    d = np.diff(x, axis=0)
    norms = np.linalg.norm(d, axis=1)
    if np.any(norms == 0):
        raise ValueError("a path with a zero step has no turning angle there")
    cos = np.sum(d[1:] * d[:-1], axis=1) / (norms[1:] * norms[:-1])
    return dict(straightness=float(np.linalg.norm(x[-1] - x[0]) / norms.sum()), turning=float(cos.mean()))


def path_barrier(x: np.ndarray, loss: Sequence[float]) -> float:
    """The barrier along the path itself (nats): :func:`grokbook.experiments.valleys.barrier`
    of the loss ``(n,)`` at the points ``x`` ``(n, P)``, placed by their arc length."""
    from .valleys import barrier

    x = np.asarray(x, np.float64)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(x, axis=0), axis=1))])
    return barrier(arc, loss)


def picture_of(straightness: float, turning: float, chord_barrier: float, path_barrier: float, *,
               straight: float = PICTURE_SETTINGS["straight"], high: float = PICTURE_SETTINGS["high"]) -> str:
    """Which of :data:`PICTURES` a stretch's measurements show, or ``"none"``:

    - *oscillating around a minimum*: reversals dominate (``turning`` < 0) and the path
      gets nowhere (``straightness`` < ``straight``);
    - *crossing a flat region*: the path goes on (``turning`` > 0, ``straightness`` >=
      ``straight``) and the straight chord between its ends is itself low
      (``chord_barrier`` < ``high``): nothing in the way;
    - *going around an obstacle*: the path goes on (``turning`` > 0) while the chord
      climbs (``chord_barrier`` >= ``high``) and the path does not (``path_barrier`` <
      ``high``).
    """
    if turning < 0 and straightness < straight:
        return PICTURES[0]
    if turning > 0 and chord_barrier < high and straightness >= straight:
        return PICTURES[1]
    if turning > 0 and chord_barrier >= high and path_barrier < high:
        return PICTURES[2]
    return "none"


def training_losses(config: Any, weights: np.ndarray) -> np.ndarray:
    """The loss ``(k,)`` (nats) on the whole training set of a run of ``config`` at each
    of the flat weights ``weights`` ``(k, P)``."""
    import torch

    from ..landscape import slice_1d
    from ..run import model_with
    from ..tasks import make_dataset

    data = make_dataset(config)
    w = np.asarray(weights, np.float32)
    model = model_with(config, w[0])  # slice_1d evaluates at the weights it is given, not the model's own
    batch = {"train": (data.train_x, data.train_y)}
    zero = torch.zeros(w.shape[1])
    return np.array([slice_1d(model, torch.from_numpy(x), zero, torch.zeros(1), batch)["train"]["loss"][0]
                     for x in w], np.float64)


def measure_picture(run: Any, times: Any, n_points: int = PICTURE_SETTINGS["n_points"]) -> Optional[dict[str, Any]]:
    """The memorizing stretch of ``run`` (:func:`stretch` of its evenly spaced snapshots,
    t2 to t4 of ``times``) as a row with :data:`PICTURE_COLUMNS`: :func:`path_shape`, the
    barrier of the training loss on the straight chord between the stretch's ends
    (:func:`grokbook.experiments.valleys.segment`, ``n_points``) and along the path
    (:func:`path_barrier` of :func:`training_losses` at the snapshots). None when the
    stretch has fewer than 3 snapshots."""
    from .records import step_code
    from .valleys import segment

    even = evenly_spaced(run.snapshot_steps, run.config.steps, run.config.n_snapshots)
    idx = stretch(run.snapshot_steps, even, times.t2, times.t4)
    if idx is None:
        return None
    x = run.snapshots[idx].astype(np.float64)
    steps = run.snapshot_steps[idx]
    loss = training_losses(run.config, x)
    chord = segment(run.config, run.snapshots[idx[0]], run.snapshots[idx[-1]], n_points)
    return dict(config=run.config.hash(), seed=run.config.seed, t2=step_code(times.t2), t4=step_code(times.t4),
                step_a=int(steps[0]), step_b=int(steps[-1]), snapshots=len(idx), **path_shape(x),
                **{"chord barrier": chord["barrier"], "path barrier": path_barrier(x, loss)})


def picture_specificity(shown: Optional[str], control_pictures: Sequence[Optional[str]]) -> str:
    """Whether the picture the fresh grokking runs show (``shown``, of
    :func:`pictures_shown`; None for no one picture) sets grokking apart: the controls'
    pictures (``control_pictures``, :func:`picture_of` of each control run) show it in at
    least half of them ("a picture of this training, not of grokking") or in fewer ("it
    sets grokking apart"; an exploratory reading of the registered controls, not a
    registered verdict)."""
    if shown is None:
        return "with no one picture shown, there is nothing to be specific"
    k, n = list(control_pictures).count(shown), len(control_pictures)
    if not n:
        return "no control run to compare with"
    if 2 * k >= n:
        return f"the controls, which never generalize, show it too ({k} of {n}): it is a picture of this training, not of grokking"
    return f"the controls show it in {k} of {n}: it sets grokking apart"


def pictures_shown(rows: Sequence[dict[str, Any]], *, straight: float = PICTURE_SETTINGS["straight"],
                   high: float = PICTURE_SETTINGS["high"], share: float = 0.8) -> tuple[Optional[str], str]:
    """Which picture the stretches ``rows`` (:data:`PICTURE_COLUMNS`) show: ``(picture,
    counts)``, the picture of :func:`picture_of` that at least ``share`` of them have, or
    None (mixed, none, or fewer than 2 rows), and the counts as text. Descriptive, not a
    verdict: the talk asks which picture holds and does not register one."""
    if len(rows) < 2:
        return None, f"{len(rows)} stretch(es) measured: need 2"
    names = [picture_of(r["straightness"], r["turning"], r["chord barrier"], r["path barrier"], straight=straight,
                        high=high) for r in rows]
    counts = {p: names.count(p) for p in (*PICTURES, "none")}
    text = ", ".join(f"{p}: {k}" for p, k in counts.items() if k) + f" (of {len(rows)})"
    best = max(counts, key=lambda p: counts[p])
    return (best if counts[best] >= share * len(rows) and best != "none" else None), text


def write_pictures(rows: Sequence[dict[str, Any]], path: Path = PICTURE_POOL_FILE) -> Path:
    """``rows`` (:data:`PICTURE_COLUMNS`) as the CSV file ``path``, atomically."""
    from .records import write_csv

    return write_csv(rows, PICTURE_COLUMNS, path)


def read_pictures(path: Path = PICTURE_POOL_FILE) -> list[dict[str, Any]]:
    """The pool's picture rows, or ``[]`` when the file is absent."""
    from .records import read_csv

    types = {k: float for k in PICTURE_COLUMNS[7:]}
    types.update(seed=int, t2=int, t4=int, step_a=int, step_b=int, snapshots=int)
    return read_csv(path, PICTURE_COLUMNS, types)
