"""Early sharpness of the corpus's runs (issue 34, part 3): the extremes of the Hessian of
the training loss at the end of the early window, for the leaderboard.

A corpus record keeps curves, not weights, so the weights at the window's end come from
replaying the run (:func:`grokbook.training.replay_weights`: training is deterministic on
the CPU). The window keeps the losses of steps ``0 .. WINDOW - 1``, each taken at the
weights before that step's update, so the window ends at the weights of step
:data:`STEP` (``WINDOW - 1``); the replay is checked against the record at that step by
the weight norm the record keeps (:func:`norm_agreement`). The Hessian is that of the
loss on **every** training example (not the step's minibatch), in float64, its extremes
from :func:`grokbook.hessian.extreme_eigenvalues` at :data:`TOL`.

``benchmarks/early_sharpness.py`` measures every record offline into one CSV per family,
``data/sharpness/<family>.csv`` (:func:`write_family`, :func:`read_sharpness`); the
leaderboard's feature ``log_lambda_max`` (:func:`with_sharpness`) reads them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .records import WINDOW, read_csv, write_csv

#: The step whose weights end the early window: the last whose loss the window keeps.
STEP = WINDOW - 1

#: The Lanczos tolerance of the extremes, as a fraction of the spectrum's width.
TOL = 1e-3

#: Where the offline measurements live: one CSV per corpus family.
DIR = Path(__file__).resolve().parents[2] / "data" / "sharpness"

#: The columns of a family's file: the run (``family``, ``hash``), where it was measured
#: (``step``, ``examples``: the training examples of the Hessian), the extremes
#: (``lambda_min``, ``lambda_max``; NaN where the Lanczos run did not converge), the
#: replay's check (``norm_rel_diff``, :func:`norm_agreement`), ``tol`` and the provenance.
COLUMNS = ("family", "hash", "step", "examples", "lambda_min", "lambda_max", "norm_rel_diff", "tol",
           "command", "date", "machine", "threads", "torch_version")
_TYPES = dict(step=int, examples=int, lambda_min=float, lambda_max=float, norm_rel_diff=float, tol=float,
              threads=int)

#: The largest relative difference of a replay's weight norm from its record's for the
#: replay to count as the recorded run (float32 rounding of the record: about 1e-7).
NORM_RTOL = 1e-4


def early_sharpness(config: Any, weights: np.ndarray, *, tol: float = TOL) -> tuple[float, float]:
    """``(lambda_min, lambda_max)`` (nats per squared weight unit) of the Hessian of the
    training loss of ``config`` over all its training examples, at the flat ``weights``
    ``(P,)``, in float64 (:func:`grokbook.experiments.hessian.eigenpair` with every
    example)."""
    from ..tasks import make_dataset
    from .hessian import eigenpair

    n = len(make_dataset(config).train_y)
    return eigenpair(config, np.asarray(weights), n, tol=tol, float64=True)


def _window_norms(record: Any, step: int) -> Optional[np.ndarray]:
    """The record's per-step weight norms of the window when they reach ``step``, else None
    (records made before the window's norms were kept, such as the bridge's)."""
    norm = record["window_norm"] if "window_norm" in record else None
    return None if norm is None or np.isscalar(norm) or len(norm) <= step else np.asarray(norm, np.float64)


def check_step(record: Any, step: int = STEP) -> int:
    """The step at which a replay to ``step`` is checked against ``record``: ``step``
    itself when the record keeps the window's weight norms (``window_norm``), else the
    last of its downsampled ``curve_steps`` at or before ``step`` (records made before
    the window's norms were kept, such as the bridge's)."""
    if _window_norms(record, step) is not None:
        return step
    steps = np.asarray(record["curve_steps"])
    before = steps[steps <= step]
    if not len(before):
        raise ValueError(f"the record {record['hash']} keeps no weight norm at or before step {step}")
    return int(before[-1])


def recorded_norm(record: Any, step: int) -> float:
    """The weight norm ``record`` keeps at ``step`` (from ``window_norm``, else from the
    downsampled curve); ValueError if it keeps none there."""
    norms = _window_norms(record, step)
    if norms is not None:
        return float(norms[step])
    hit = np.flatnonzero(np.asarray(record["curve_steps"]) == step)
    if not len(hit):
        raise ValueError(f"the record {record['hash']} keeps no weight norm at step {step}")
    return float(np.asarray(record["weight_norm"], np.float64)[hit[0]])


def norm_agreement(record: Any, weights: np.ndarray, step: int) -> float:
    """``| ||weights|| - n | / n`` with ``n`` the weight norm the ``record`` keeps at
    ``step`` (float32): how far a replay's weights ``(P,)`` at ``step`` lie from the run
    the record describes (0 up to float32 rounding for a faithful replay)."""
    want = recorded_norm(record, step)
    return abs(float(np.linalg.norm(np.asarray(weights, np.float64))) - want) / want


def measure(records: Any, *, step: int = STEP, tol: float = TOL, batch: int = 16,
            **extra: Any) -> Any:
    """Yield one row of :data:`COLUMNS` per record of ``records`` (a frame of
    :func:`~grokbook.experiments.records.read_records`), replaying the runs in stacks of
    at most ``batch`` (equal :func:`~grokbook.trainer.stack_key`) up to ``step``.
    ``extra``: the provenance columns. ``norm_rel_diff`` is the replay's
    :func:`norm_agreement` at :func:`check_step`: a run recorded by an earlier version
    of the trainer replays with other rounding, which grows over the window, and its
    measurement is that of a run of the same configuration and seeds, not of the
    recorded one (:func:`faithful`). A Lanczos run that does not converge gives NaN
    extremes."""
    from ..tasks import make_dataset
    from ..trainer import stack_key
    from ..training import replay_weights
    from .records import row_config

    groups: dict[Any, list[tuple[Any, Any]]] = {}
    for _, rec in records.iterrows():
        config = row_config(rec)
        groups.setdefault(stack_key(config), []).append((rec, config))
    for members in groups.values():
        for i in range(0, len(members), batch):
            chunk = members[i:i + batch]
            checks = [check_step(rec, step) for rec, _ in chunk]
            weights = replay_weights([c for _, c in chunk], [step, *checks])
            for (rec, config), w, at in zip(chunk, weights, checks):
                try:
                    lmin, lmax = early_sharpness(config, w[step], tol=tol)
                except RuntimeError:
                    lmin = lmax = float("nan")
                yield dict(family=rec["family"], hash=rec["hash"], step=step,
                           examples=len(make_dataset(config).train_y), lambda_min=lmin, lambda_max=lmax,
                           norm_rel_diff=norm_agreement(rec, w[at], at), tol=tol, **extra)


def faithful(rows: Any) -> np.ndarray:
    """``(n,)`` bool: the measurements (a frame of :func:`read_sharpness`) whose replay
    agrees with its record to :data:`NORM_RTOL`."""
    return rows["norm_rel_diff"].to_numpy(np.float64) <= NORM_RTOL


def family_path(family: str, directory: Optional[str | os.PathLike[str]] = None) -> Path:
    """The file of ``family``'s measurements."""
    return Path(DIR if directory is None else directory) / f"{family}.csv"


def write_family(rows: Sequence[dict[str, Any]], family: str,
                 directory: Optional[str | os.PathLike[str]] = None) -> Path:
    """``rows`` (of :func:`measure`, all of ``family``) as its file, atomically."""
    if any(r["family"] != family for r in rows):
        raise ValueError(f"rows of other families than {family!r}")
    return write_csv(rows, COLUMNS, family_path(family, directory))


def read_family(family: str, directory: Optional[str | os.PathLike[str]] = None) -> list[dict[str, Any]]:
    """The rows of ``family``'s file (``[]`` when it has none)."""
    return read_csv(family_path(family, directory), COLUMNS, _TYPES)


def read_sharpness(families: Sequence[str], directory: Optional[str | os.PathLike[str]] = None) -> Any:
    """One frame of the measurements of ``families`` (those with a file), indexed by nothing
    in particular; ValueError on a hash measured twice."""
    import pandas as pd

    rows = [r for f in families for r in read_family(f, directory)]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    dup = frame["hash"][frame["hash"].duplicated()]
    if len(dup):
        raise ValueError(f"runs measured twice: {sorted(set(dup))[:5]}")
    return frame


def log_lambda_max(lmax: float) -> float:
    """``log10(lambda_max)``, NaN where ``lambda_max`` is not positive or not finite (no
    scale to take the log of)."""
    return math.log10(lmax) if math.isfinite(lmax) and lmax > 0 else float("nan")


def with_sharpness(table: Any, frame: Any, sharpness: Any) -> Any:
    """``table`` (:func:`~grokbook.experiments.leaderboard.feature_table` of the records
    ``frame``, the same index) with the column ``log_lambda_max``
    (:func:`log_lambda_max` of each run's measurement in ``sharpness``, a frame of
    :func:`read_sharpness`; NaN for a run not measured)."""
    by_hash = dict(zip(sharpness["hash"], sharpness["lambda_max"].astype(float)))
    out = table.copy()
    out["log_lambda_max"] = [log_lambda_max(by_hash.get(h, float("nan"))) for h in frame.loc[table.index, "hash"]]
    return out


def coverage(frame: Any, sharpness: Any) -> dict[str, tuple[int, int]]:
    """Per family of ``frame``: ``(measured, runs)``, the runs with a finite
    ``lambda_max`` in ``sharpness`` and all its runs."""
    ok = {h for h, v in zip(sharpness["hash"], sharpness["lambda_max"].astype(float)) if math.isfinite(v)}
    return {f: (int(g["hash"].isin(ok).sum()), len(g)) for f, g in frame.groupby("family", sort=False)}


#: The live check's tolerance: a measurement repeated on the same weights agrees to
#: rounding (the replay and the Lanczos run are deterministic on the CPU).
LIVE_RTOL = 1e-6


def live_check(record: Any, recorded: dict[str, Any]) -> dict[str, Any]:
    """Re-measure one run's early sharpness in the build: replay ``record`` (a corpus
    record) to ``recorded["step"]`` and measure at ``recorded["tol"]``, against
    ``recorded`` (its row of :func:`read_family`). Returns ``hash``, ``family``,
    ``recorded`` and ``measured`` (lambda_max), ``rel_diff`` (their relative difference)
    and ``agrees`` (at most :data:`LIVE_RTOL`)."""
    import pandas as pd

    if record["hash"] != recorded["hash"]:
        raise ValueError(f"the record {record['hash']} and the measurement {recorded['hash']} are of different runs")
    (row,) = measure(pd.DataFrame([record]), step=int(recorded["step"]), tol=float(recorded["tol"]), batch=1)
    want, got = float(recorded["lambda_max"]), float(row["lambda_max"])
    diff = abs(got - want) / abs(want) if want else float("inf")
    return dict(hash=record["hash"], family=record["family"], recorded=want, measured=got, rel_diff=diff,
                agrees=bool(diff <= LIVE_RTOL))


def live_check_text(check: Optional[dict[str, Any]]) -> str:
    """One sentence on :func:`live_check`'s result (``None``: none was made)."""
    if check is None:
        return "No run was re-measured in this build."
    word = "agrees with" if check["agrees"] else "does NOT agree with"
    return (f"Re-measured in this build, the run {check['hash']} of {check['family']} gives lambda_max "
            f"{check['measured']:.6g} against {check['recorded']:.6g} recorded (relative difference "
            f"{check['rel_diff']:.1e}): the measurement {word} its record.")
