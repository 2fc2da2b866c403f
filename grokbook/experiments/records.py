"""Compact per-run records for offline results (the bridge to the authors' model, the
corpus of runs): one row per run, written as one small Parquet file per run so that a
family grows by adding files, never by rewriting one.

A record holds every :class:`~grokbook.RunConfig` field as a column (``betas`` as two),
the training loss of every step of the early window (float32), the curves downsampled
to about ``n_points`` steps, t1..t4 at :data:`~grokbook.experiments.thresholds.AUTHORS`,
the outcome, the censoring (``event``: generalized within the budget;
``time``: t4, else the last step trained), the final accuracies and the divergence.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from ..config import RunConfig
from .thresholds import AUTHORS, Thresholds

#: The early window of the training loss kept at every step.
WINDOW = 400
#: About this many points of each downsampled curve.
N_POINTS = 200


def downsample_index(n: int, n_points: int = N_POINTS) -> np.ndarray:
    """About ``n_points`` indices into ``n`` samples, geometric (dense early) and
    including the first and the last, ascending and distinct."""
    if n <= n_points:
        return np.arange(n)
    idx = np.unique(np.round(np.geomspace(1, n, n_points)).astype(np.int64) - 1)
    return np.union1d([0], idx)


def run_record(run: Any, family: str, *, window: int = WINDOW, n_points: int = N_POINTS,
               thresholds: Thresholds = AUTHORS, **extra: Any) -> dict[str, Any]:
    """The record of ``run`` (a :class:`~grokbook.core.Run`) in ``family``; ``extra``
    columns (the command, the machine) are added as given."""
    c: RunConfig = run.config
    rec: dict[str, Any] = {"family": family, "hash": c.hash()}
    for f in fields(RunConfig):
        v = getattr(c, f.name)
        if f.name == "betas":
            rec["beta1"], rec["beta2"] = float(v[0]), float(v[1])
        else:
            rec[f.name] = v
    loss = np.asarray(run.metrics["train_loss"], dtype=np.float64)
    acc = np.asarray(run.metrics["train_acc"], dtype=np.float64)
    rec["window"] = loss[:window].astype(np.float32)
    i = downsample_index(len(loss), n_points)
    rec["curve_steps"], rec["train_loss"] = i.astype(np.int32), loss[i].astype(np.float32)
    rec["train_acc"], rec["weight_norm"] = acc[i].astype(np.float32), \
        np.asarray(run.metrics["weight_norm"])[i].astype(np.float32)
    j = downsample_index(len(run.val_steps), n_points)
    rec["val_steps"] = np.asarray(run.val_steps)[j].astype(np.int32)
    rec["val_acc"] = np.asarray(run.val_acc)[j].astype(np.float32)
    rec["val_loss"] = np.asarray(run.val_loss)[j].astype(np.float32)
    times = thresholds.times(run)
    for k in ("t1", "t2", "t3", "t4"):
        rec[k] = getattr(times, k)
    rec["outcome"] = thresholds.outcome(run)
    rec["event"] = times.t4 is not None
    rec["time"] = int(times.t4 if times.t4 is not None else len(loss))
    rec["final_train_acc"] = float(acc[-1]) if len(acc) else float("nan")
    rec["final_val_acc"] = float(run.val_acc[-1]) if len(run.val_acc) else float("nan")
    rec["diverged_at"] = run.diverged_at
    rec["steps_done"] = len(loss)
    rec["wall_time_s"] = float(run.wall_time_s)
    rec.update(extra)
    return rec


def write_record(directory: str | os.PathLike[str], record: dict[str, Any]) -> Path:
    """``record`` as ``directory/<hash>.parquet``, atomically (a temporary file, then a
    rename; a symlink in its place is replaced, never followed)."""
    import pandas as pd

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{record['hash']}.parquet"
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".parquet")
    os.close(fd)
    try:
        pd.DataFrame([record]).to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_records(directory: str | os.PathLike[str]) -> Any:
    """Every record of ``directory`` as one ``pandas.DataFrame`` (one row per run,
    ordered by hash); an empty frame when there is none. Array columns hold numpy arrays;
    missing times (never reached) are None."""
    import pandas as pd

    paths = sorted(Path(directory).glob("*.parquet"))
    if not paths:
        return pd.DataFrame()
    frame = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    for k in ("t1", "t2", "t3", "t4", "diverged_at"):
        if k in frame:
            frame[k] = frame[k].astype("Int64")
    return frame


def corpus_dir(family: str) -> Path:
    """The directory of ``family``'s records in this repository (``data/corpus/<family>``;
    present where grokbook is installed from a clone, as the README's commands do)."""
    return Path(__file__).resolve().parents[2] / "data" / "corpus" / family
