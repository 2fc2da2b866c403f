"""Compact per-run records for offline results (the bridge to the authors' model, the
corpus of runs): one row per run, in Parquet files, one directory per family.

A record holds every :class:`~grokbook.RunConfig` field as a column (``betas`` as two),
the training loss, training accuracy and weight norm of every step of the early window
and its validation points (float32), the curves downsampled to about ``n_points``
steps, t1..t4 at :data:`~grokbook.experiments.thresholds.AUTHORS`, the outcome, the
censoring (``event``: generalized within the budget; ``time``: t4, else the last step
trained), the final accuracies and the divergence.
A finished family is one file (:func:`write_records`, about 9 KB a run); a family that
grows run by run writes a file per run (:func:`write_record`) and is merged by
:func:`compact` once complete.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..config import LATER_FIELDS, RunConfig
from ..phases import outcome
from ..store import _write_atomic
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
    """The record of ``run`` (a :class:`~grokbook.run.Run`) in ``family``; ``extra``
    columns (the command, the machine) are added as given."""
    c: RunConfig = run.config
    rec: dict[str, Any] = {"family": family, "hash": c.hash()}
    for name in c.to_dict():  # a later field at its default has no column (:data:`~grokbook.config.LATER_FIELDS`)
        v = getattr(c, name)
        if name == "betas":
            rec["beta1"], rec["beta2"] = float(v[0]), float(v[1])
        else:
            rec[name] = v
    loss = np.asarray(run.metrics["train_loss"], dtype=np.float64)
    acc = np.asarray(run.metrics["train_acc"], dtype=np.float64)
    rec["window"] = loss[:window].astype(np.float32)
    rec["window_acc"] = acc[:window].astype(np.float32)
    rec["window_norm"] = np.asarray(run.metrics["weight_norm"])[:window].astype(np.float32)
    early = np.asarray(run.val_steps) < window
    rec["window_val_steps"] = np.asarray(run.val_steps)[early].astype(np.int32)
    rec["window_val_loss"] = np.asarray(run.val_loss)[early].astype(np.float32)
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
    rec["outcome"] = outcome(times, thresholds.delay, run.diverged_at is not None)
    rec["event"] = times.t4 is not None
    rec["time"] = int(times.t4 if times.t4 is not None else len(loss))
    rec["final_train_acc"] = float(acc[-1]) if len(acc) else float("nan")
    rec["final_val_acc"] = float(run.val_acc[-1]) if len(run.val_acc) else float("nan")
    rec["diverged_at"] = run.diverged_at
    rec["steps_done"] = len(loss)
    rec["wall_time_s"] = float(run.wall_time_s)
    rec.update(extra)
    return rec


def _missing(value: Any) -> bool:
    """True for None and NaN (an absent cell of a frame)."""
    return value is None or (isinstance(value, (float, np.floating)) and np.isnan(value))


def row_config(record: Any) -> RunConfig:
    """The :class:`~grokbook.RunConfig` of a record (a row of :func:`read_records` or a
    dict of :func:`run_record`); ValueError when its fields do not hash to its ``hash``.
    A field of :data:`~grokbook.config.LATER_FIELDS` without a column, or empty (records
    of several families read together), takes its default."""
    values = {}
    for f in fields(RunConfig):
        if f.name == "betas":
            values["betas"] = (float(record["beta1"]), float(record["beta2"]))
        elif f.name in LATER_FIELDS and (f.name not in record or _missing(record[f.name])):
            values[f.name] = LATER_FIELDS[f.name]
        else:
            v = record[f.name]
            values[f.name] = v.item() if isinstance(v, np.generic) else v
    config = RunConfig(**values)
    if config.hash() != record["hash"]:
        raise ValueError(f"the record's fields hash to {config.hash()}, not to its hash {record['hash']}")
    return config


def _write_frame(path: Path, frame: Any) -> Path:
    """``frame`` as the Parquet file ``path``, atomically (the store's writer: a symlink
    in its place is replaced, never followed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False, compression="zstd")
    _write_atomic(path, buf.getvalue(), framed=False)
    return path


def write_record(directory: str | os.PathLike[str], record: dict[str, Any]) -> Path:
    """One run's record as ``directory/<hash>.parquet``: for a family that grows run by
    run (each file costs about 35 KB of Parquet metadata; :func:`compact` merges them)."""
    import pandas as pd

    return _write_frame(Path(directory) / f"{record['hash']}.parquet", pd.DataFrame([record]))


def write_records(directory: str | os.PathLike[str], records: list[dict[str, Any]], name: str) -> Path:
    """Many runs' records as one file ``directory/<name>.parquet`` (about 9 KB a run)."""
    import pandas as pd

    if not records:
        raise ValueError("no records to write")
    return _write_frame(Path(directory) / f"{name}.parquet", pd.DataFrame(records))


def compact(directory: str | os.PathLike[str], name: str) -> Path:
    """Every record of ``directory`` merged into ``<name>.parquet``; the other files
    removed once it is written."""
    d = Path(directory)
    frame = read_records(d)
    path = _write_frame(d / f"{name}.parquet", frame)
    for p in d.glob("*.parquet"):
        if p != path:
            p.unlink()
    return path


def read_records(directory: str | os.PathLike[str]) -> Any:
    """Every record of ``directory`` as one ``pandas.DataFrame`` (one row per run: a run
    recorded in two files counts once, from the first file by name), ordered by hash; an
    empty frame when there is none. Array columns hold numpy arrays; times never reached
    are missing (``pandas.NA``)."""
    import pandas as pd

    paths = sorted(Path(directory).glob("*.parquet"))
    if not paths:
        return pd.DataFrame()
    frames = [pd.read_parquet(p) for p in paths]
    with warnings.catch_warnings():  # a column all missing in one file (t4 of memorizing runs)
        warnings.simplefilter("ignore", FutureWarning)
        frame = pd.concat(frames, ignore_index=True)
    frame = frame.drop_duplicates("hash").sort_values("hash", ignore_index=True)
    for k in ("t1", "t2", "t3", "t4", "diverged_at"):
        if k in frame:
            frame[k] = frame[k].astype("Int64")
    return frame


def sweep_records(configs: Sequence[RunConfig], family: Optional[str] = None, *, window: int = WINDOW,
                  thresholds: Thresholds = AUTHORS, store: Any = None,
                  directory: Optional[str | os.PathLike[str]] = None) -> tuple[Any, str]:
    """The records of ``configs`` (a ``pandas.DataFrame``, one row per config in their
    order) and where they came from: ``"records"`` when ``family``'s committed records
    (:func:`corpus_dir`) hold every one of them with at least ``window`` early steps and
    their times are at ``thresholds`` (the records' are at :data:`AUTHORS`), else
    ``"trained"``: the runs trained (or loaded) through ``store`` by
    :func:`grokbook.sweep` and recorded here, at ``thresholds``. So a chapter at its
    default parameters reads the offline runs, and at any other parameters trains its own.
    ``directory``: the family's records elsewhere than :func:`corpus_dir`."""
    import pandas as pd

    from ..sweeping import sweep

    configs = list(configs)
    if not configs:
        raise ValueError("no configurations to record")
    wanted = [c.hash() for c in configs]
    if family is not None and thresholds == AUTHORS:
        frame = read_records(directory if directory is not None else corpus_dir(family))
        # "window_acc": records made before the early window kept more than its losses lack it
        if not frame.empty and "window_acc" in frame and set(wanted) <= set(frame.hash):
            frame = frame.set_index("hash", drop=False).loc[wanted].reset_index(drop=True)
            if all(len(w) >= window for w in frame.window):
                return frame, "records"
    runs = sweep(configs, store=store)
    return pd.DataFrame([run_record(r, family or "live", window=window, thresholds=thresholds) for r in runs]), "trained"


def live_config(frame: Any, configs: Sequence[RunConfig]) -> RunConfig:
    """The configuration :func:`live_check` re-trains for ``frame`` (records of
    ``configs``, in their order): the first of ``configs`` recorded as grokking, else the
    first. Chosen by rule, so every chapter reading the same records checks the same run
    (and the store trains it once)."""
    outcomes = dict(zip(frame.hash, frame.outcome))
    return next((c for c in configs if outcomes.get(c.hash()) == "groks"), list(configs)[0])


#: A live run agrees with its record when its early losses are within this relative
#: difference (float32 rounding; the trainer is bit-identical on one machine and torch)
#: and its outcome and final validation accuracy are the recorded ones.
LIVE_RTOL = 1e-5


def max_rel_diff(live: Sequence[float], recorded: Sequence[float]) -> float:
    """The largest ``|live - recorded| / |recorded|`` (the denominator at least 1e-12) over
    two curves of one length; infinite when their lengths differ."""
    a, b = np.asarray(live, np.float64), np.asarray(recorded, np.float64)
    if len(a) != len(b):
        return float("inf")
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


#: The steps at a run's start that a live re-training must reproduce to be the recorded
#: run. Training is chaotic: a last-bit difference in rounding (another CPU's kernels)
#: grows to a different trajectory within tens of steps, so a run recorded on one machine
#: is not reproduced bit for bit on another. Measured (session 21, the book's model at
#: p 31, records of one 2-core AMD EPYC re-trained on another,
#: ``benchmarks/replay_divergence.py``): the first step at which the training loss
#: differs by more than 1e-4 (relative) was step 14 or later over 238 runs (median 45-48),
#: while over the first 10 steps the largest difference was 2e-6; another seed or split
#: differs from the first step. So a run is identified by its first :data:`START_STEPS`
#: losses, to :data:`START_RTOL`.
START_STEPS = 10
START_RTOL = 1e-4

#: The reference starts of the offline pool's runs (``data/pool/starts.csv``: the first
#: :data:`START_STEPS` training losses of each configuration, by its hash), made by
#: ``benchmarks/pool.py --parts starts``.
STARTS_FILE = Path(__file__).resolve().parents[2] / "data" / "pool" / "starts.csv"
_START_COLUMNS = ("config", "step", "loss")


def start_losses(configs: Sequence[RunConfig], steps: int = START_STEPS) -> list[np.ndarray]:
    """The first ``steps`` training losses ``(steps,)`` (float64) of each of ``configs``,
    trained here (stacked where :func:`~grokbook.trainer.stack_key` allows; nothing in a
    step depends on the budget, so the start is the full run's)."""
    from ..trainer import stack_key, train_core

    out: dict[int, np.ndarray] = {}
    groups: dict[Any, list[int]] = {}
    for i, c in enumerate(configs):
        groups.setdefault(stack_key(c), []).append(i)
    for idx in groups.values():
        runs = train_core([configs[i].replace(steps=max(steps, 1)) for i in idx])
        for i, run in zip(idx, runs):
            out[i] = np.asarray(run.metrics["train_loss"], np.float64)[:steps]
    return [out[i] for i in range(len(configs))]


def write_starts(configs: Sequence[RunConfig], path: str | os.PathLike[str] = STARTS_FILE) -> Path:
    """The starts of ``configs`` (:func:`start_losses`), added to those already in
    ``path`` (a configuration there is measured again), one row a step."""
    have = {h: v for h, v in read_starts(path).items() if h not in {c.hash() for c in configs}}
    have.update({c.hash(): v for c, v in zip(configs, start_losses(configs))})
    rows = [dict(config=h, step=t, loss=repr(float(x))) for h in sorted(have) for t, x in enumerate(have[h])]
    return write_csv(rows, _START_COLUMNS, path)


def read_starts(path: str | os.PathLike[str] = STARTS_FILE) -> dict[str, np.ndarray]:
    """``{config hash: (START_STEPS,) losses}`` of :func:`write_starts`' file (``{}`` when
    it is absent)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for r in read_csv(path, _START_COLUMNS, dict(step=int, loss=float)):
        out.setdefault(r["config"], []).append((r["step"], r["loss"]))
    return {h: np.array([x for _, x in sorted(v)]) for h, v in out.items()}


def start_check(config: RunConfig, recorded: Optional[Sequence[float]]) -> dict[str, Any]:
    """Whether ``config`` trained here starts as its record did: its first
    :data:`START_STEPS` training losses against ``recorded`` (the record's, at least that
    many). Returns ``config``, ``max_rel_diff`` (:func:`max_rel_diff`; NaN when there is
    no reference), ``agrees`` (at most :data:`START_RTOL`: the same configuration, data,
    initialisation and update rule) and ``exact`` (equal to float32 rounding: this machine
    also rounds as the recording one did)."""
    if recorded is None or len(recorded) < START_STEPS:
        return dict(config=config, max_rel_diff=float("nan"), agrees=False, exact=False)
    (live,) = start_losses([config])
    diff = max_rel_diff(live, np.asarray(recorded, np.float64)[:START_STEPS])
    return dict(config=config, max_rel_diff=diff, agrees=bool(diff <= START_RTOL), exact=bool(diff <= 1e-7))


def pool_start_check(config: RunConfig, path: str | os.PathLike[str] = STARTS_FILE) -> dict[str, Any]:
    """:func:`start_check` of ``config`` against its reference start in the offline pool's
    starts file (:func:`read_starts`; no reference when the file lacks it)."""
    return start_check(config, read_starts(path).get(config.hash()))


def start_check_text(check: dict[str, Any]) -> str:
    """A sentence on :func:`start_check` for a chapter's prose."""
    c = check["config"]
    who = f"seed {c.seed} (config {c.hash()})"
    if not np.isfinite(check["max_rel_diff"]):
        return f"{who} has no recorded start to check against."
    if check["agrees"]:
        within = "exactly" if check["max_rel_diff"] == 0 else f"to {check['max_rel_diff']:.0e} (relative; {START_RTOL:.0e} allowed)"
        return (f"{who} re-trained here starts as recorded: its first {START_STEPS} training losses equal the "
                f"recorded start {within}.")
    return (f"{who} re-trained here does NOT start as recorded: its first {START_STEPS} training losses differ "
            f"from the record's by up to {check['max_rel_diff']:.1e} (relative; {START_RTOL:.0e} allowed), so "
            f"this code or configuration is not the record's.")


def replay_note(equal: bool, what: str, difference: str) -> str:
    """A sentence on a measurement replayed in the build against its record, for a seed
    whose start agrees (:func:`start_check`): ``what`` was measured again (e.g. "its
    memorizing segment's barrier") and, where it is not equal, ``difference`` says how far
    apart (in words)."""
    if equal:
        return f"Replayed here, {what}: equal to the record's (this machine rounds as the recording one did)."
    return (f"Replayed here, {what}: not equal to the record's ({difference}). This machine rounds differently "
            f"from the recording one and training amplifies a last-bit difference within tens of steps, so the "
            f"numbers below are the records'.")


def live_check(frame: Any, config: RunConfig, store: Any = None) -> dict[str, Any]:
    """Re-train ``config`` through ``store`` and compare it with its row of ``frame``:
    ``{"config", "max_rel_diff"`` (largest relative difference over the recorded early
    losses), ``"start_rel_diff"`` (over the first :data:`START_STEPS` of them),
    ``"live_final", "recorded_final"`` (final validation accuracies), ``"live_outcome",
    "recorded_outcome", "same_start"`` (the start within :data:`START_RTOL`: the recorded
    run, up to the rounding of this machine), ``"agrees"`` (bit for bit: the whole window
    within :data:`LIVE_RTOL`, the same final accuracy and outcome), ``"trained"}``
    (False when the store already held the run, which then was loaded, not trained
    here). ValueError when ``frame`` holds no record of ``config``."""
    from ..store import RunStore
    from ..sweeping import sweep

    rows = frame[frame.hash == config.hash()]
    if rows.empty:
        raise ValueError(f"no record of {config.hash()} to check a live run against")
    rec = rows.iloc[0]
    store = store or RunStore()
    trained = config not in store
    (run,) = sweep([config], store=store)
    live = run_record(run, "live", window=len(rec.window))
    diff = max_rel_diff(live["window"], rec.window)
    start = max_rel_diff(live["window"][:START_STEPS], rec.window[:START_STEPS])
    same_final = bool(np.isclose(live["final_val_acc"], rec.final_val_acc, rtol=0, atol=1e-6))
    return {"config": config, "max_rel_diff": diff, "start_rel_diff": start, "live_final": live["final_val_acc"],
            "recorded_final": float(rec.final_val_acc), "live_outcome": live["outcome"],
            "recorded_outcome": rec.outcome, "same_start": bool(start <= START_RTOL),
            "agrees": bool(diff <= LIVE_RTOL and same_final and live["outcome"] == rec.outcome), "trained": trained}


def live_check_text(check: dict[str, Any], source: str) -> str:
    """A sentence on :func:`live_check` for a chapter's prose; where the records were not
    read (``source`` ``"trained"``) the runs are this execution's own."""
    if source != "records":
        return "This execution trained its own runs (its parameters are not the recorded design's)."
    c = check["config"]
    what = (f"One of them (lr {c.lr:g}, weight decay {c.weight_decay:g}, r {c.r:g}, seed {c.seed}) was "
            + ("re-trained in this execution" if check["trained"] else
               "loaded from the run store (an earlier execution trained it; an empty store re-trains it)"))
    if check["agrees"]:
        same = "bit for bit" if check["max_rel_diff"] == 0 else f"within {check['max_rel_diff']:.0e} (relative)"
        return (f"{what}: its early training losses equal the record's {same}, its final validation accuracy "
                f"({check['live_final']:.3f}) and outcome ({check['live_outcome']}) are the recorded ones.")
    ends = (f"final validation accuracy {check['live_final']:.3f} against {check['recorded_final']:.3f}, "
            f"outcome {check['live_outcome']} against {check['recorded_outcome']}")
    if check.get("same_start"):
        return (f"{what}: it starts as the recorded run (its first {START_STEPS} losses within "
                f"{check['start_rel_diff']:.0e}) and then departs from it (early losses up to "
                f"{check['max_rel_diff']:.1e} apart; {ends}): this machine rounds differently from the one that "
                f"recorded it, and training amplifies a last-bit difference within tens of steps. The numbers "
                f"below are the records'.")
    return (f"{what} and does not match its record: its first {START_STEPS} losses already differ by up to "
            f"{check['start_rel_diff']:.1e} (relative; {ends}), so this code or configuration is not the "
            f"record's. The numbers below are the records'.")


def rows_of(table: Sequence[dict[str, Any]], configs: Sequence[RunConfig]) -> Optional[list[dict[str, Any]]]:
    """The rows of a measurement table (each with a ``config`` hash) that belong to
    ``configs``, or None unless every one of them has a row (then a chapter measures
    them itself)."""
    want = {c.hash() for c in configs}
    got = [r for r in table if r["config"] in want]
    return got if {r["config"] for r in got} == want else None


def step_code(t: Optional[int]) -> int:
    """A phase time as a table stores it: the step, or -1 for never."""
    return -1 if t is None else int(t)


def write_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str], path: str | os.PathLike[str]) -> Path:
    """``rows`` (exactly ``columns``) as the CSV file ``path``, atomically (the store's
    writer: a symlink in its place is replaced, never followed): the measurement tables of
    the offline pool (``data/pool/``)."""
    import csv

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="raise")
    w.writeheader()
    w.writerows(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, buf.getvalue().encode(), framed=False)
    return path


def read_csv(path: str | os.PathLike[str], columns: Sequence[str], types: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a CSV file of :func:`write_csv` (``[]`` when it is absent), each column
    converted by ``types[name]`` (``str`` when not named). ValueError, naming them, when
    the file lacks some of ``columns``."""
    import csv

    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = set(columns) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path} lacks the columns {sorted(missing)}")
        return [{k: types.get(k, str)(r[k]) for k in columns} for r in reader]


def corpus_dir(family: str) -> Path:
    """The directory of ``family``'s records in this repository (``data/corpus/<family>``;
    present where grokbook is installed from a clone, as the README's commands do)."""
    return Path(__file__).resolve().parents[2] / "data" / "corpus" / family
