"""Reading training-loss curves from the files researchers have, for ``grokbook predict``.

:func:`read_curves` takes one path and returns its curves, each a :class:`Curve`: one
training loss per optimisation step, named ``FILE:COLUMN`` (or ``FILE:TAG``) so that two
files with a column of the same name give two curves. It reads:

* **CSV** (``.csv``, ``.txt``; comma-separated, a header row or none). A step column
  (:data:`STEP_COLUMNS`, e.g. ``step``, ``Step``, ``global_step``, ``_step``, ``epoch``)
  orders and spaces the values and is never scored; time columns (:data:`TIME_COLUMNS`,
  e.g. ``Wall time``, ``_runtime``, ``_timestamp``) are never scored either. Of the
  other columns, those naming a training loss are scored (see :func:`loss_names`); a
  file where no column names a loss has every column scored. This covers
  TensorBoard's CSV export (``Wall time,Step,Value``: one curve named after the file),
  W&B's chart export (``Step``, ``RUN - train/loss``, and its ``__MIN``/``__MAX``
  companions, which are skipped) and ``grokbook export``'s ``HASH.steps.csv`` (``step``
  and the per-step metrics: only ``train_loss`` is scored).
* **NPY**: ``(steps,)`` or ``(steps, curves)``.
* **JSON**: a list of losses, a list of lists, or an object of name to list.
* **TensorBoard event files** (``events.out.tfevents.*``, or a directory holding them,
  one run per directory that holds some), read with the ``tensorboard`` package
  (``pip install grokbook[tensorboard]``). The scalar tag scored is ``tag``, else the
  one tag naming a training loss; more than one is an error that names them.

Values logged at steps that are not consecutive (every ``N`` steps, or with gaps) are
put on unit steps by linear interpolation between the logged values
(:func:`on_unit_steps`); the curve's ``note`` says so. Errors are :class:`CurveError`,
whose message names the file and the problem.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

#: Column names (compared lower-case) of a step counter, in order of preference: the
#: first present spaces the values, all are left unscored.
STEP_COLUMNS = ("step", "global_step", "_step", "iteration", "epoch")
#: Column names (compared lower-case) of a clock: never scored.
TIME_COLUMNS = ("wall time", "wall_time", "walltime", "_runtime", "_timestamp", "time", "timestamp",
                "relative time (process)")
#: Suffixes of the min/max band W&B exports beside each plotted column: never scored.
COMPANION_SUFFIXES = ("__MIN", "__MAX")
#: Words that mark a loss as measured on held-out data, not the training loss.
HELD_OUT_WORDS = ("val", "valid", "test", "eval", "dev")
#: The prefix of TensorBoard's event file names.
EVENT_PREFIX = "events.out.tfevents."


class CurveError(ValueError):
    """A file, column or tag from which no curve can be read; the message names it."""


@dataclass(frozen=True)
class Curve:
    """One training-loss curve as read.

    ``name``: ``FILE:COLUMN``, ``FILE:TAG``, ``FILE:KEY`` or ``FILE`` (one curve in the
    file); ``loss``: ``(T,)`` float64, one loss per optimisation step, ``loss[0]`` at
    ``first_step`` (the first step logged; the predictor's window starts there);
    ``note``: how the values were placed on steps when that was not one value per
    consecutive step ("" otherwise)."""

    name: str
    loss: np.ndarray
    first_step: int = 0
    note: str = ""


def read_curves(path, tag: Optional[str] = None) -> list[Curve]:
    """The curves in ``path`` (a file, or a directory of TensorBoard event files), in file
    order. ``tag``: the column (CSV) or scalar tag (event files) to score instead of
    the ones naming a training loss; a W&B column ``RUN - TAG`` matches ``TAG``.

    Raises CurveError naming the file and the problem: unreadable, unknown format, not
    numbers, no curve in it, no or several candidate tags, or the ``tensorboard``
    package missing for event files."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise CurveError(f"cannot read {path}: no such file or directory")
    try:
        if path.is_dir() or path.name.startswith(EVENT_PREFIX):
            curves = _read_events(path, tag)
        elif suffix == ".npy":
            curves = _read_npy(path)
        elif suffix == ".json":
            curves = _read_json(path)
        elif suffix in (".csv", ".txt"):
            curves = _read_csv(path, tag)
        else:
            raise CurveError(f"{path}: unknown format {suffix!r}; give a .csv, .npy or .json file, a TensorBoard "
                             f"event file ({EVENT_PREFIX}*) or a directory holding them")
    except CurveError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as err:  # json errors are ValueErrors
        raise CurveError(f"cannot read {path}: {err}") from None
    if not curves:
        raise CurveError(f"{path}: no curves in it")
    return curves


def on_unit_steps(steps, values) -> tuple[np.ndarray, int, str]:
    """``(loss, first_step, note)``: ``values`` logged at ``steps`` (``(n,)`` each, integer
    steps in any order) as one value per step from the first step logged to the last,
    ``(last - first + 1,)``. A step logged twice keeps its later value (a resumed run
    logs again from its checkpoint); the steps between logged ones are filled by linear
    interpolation, and ``note`` then says how the values were spaced ("" when every
    step was logged). A non-finite value stays non-finite and spreads to the
    interpolated steps next to it. Raises ValueError on non-integer steps or on none."""
    steps = np.asarray(steps, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if steps.shape != values.shape or steps.ndim != 1:
        raise ValueError(f"steps {steps.shape} and values {values.shape} must be 1-D of one length")
    if len(steps) == 0:
        raise ValueError("no values logged")
    if not np.all(np.isfinite(steps)) or np.any(steps != np.round(steps)):
        bad = steps[~np.isfinite(steps) | (steps != np.round(steps))][0]
        raise ValueError(f"steps must be whole numbers, got {bad:g}")
    # the later of repeated steps: reverse, take each step's first occurrence, sort
    uniq, first_in_reversed = np.unique(steps[::-1], return_index=True)
    kept = values[::-1][first_in_reversed]
    first, last = int(uniq[0]), int(uniq[-1])
    grid = np.arange(first, last + 1)
    if len(uniq) == len(grid):
        loss = kept
        note = ""
    else:
        loss = np.interp(grid, uniq, kept)
        gaps = np.diff(uniq).astype(int)
        spacing = (f"every {gaps[0]} steps" if np.all(gaps == gaps[0])
                   else f"{gaps.min()} to {gaps.max()} steps apart")
        note = (f"{len(uniq)} values logged {spacing}, interpolated linearly onto each step "
                f"(the spectral features of an interpolated curve lack its fast oscillations)")
    if len(uniq) < len(steps):
        note = (note + "; " if note else "") + f"{len(steps) - len(uniq)} repeated steps kept their last value"
    return np.asarray(loss, dtype=np.float64), first, note


def loss_names(names: Sequence[str], tag: Optional[str] = None) -> list[str]:
    """The names among ``names`` (columns or tags) that hold a training loss: ``tag`` if
    given (a name equal to it, or W&B's ``RUN - TAG``); else those containing "loss"
    and "train"; else those containing "loss" and no held-out word
    (:data:`HELD_OUT_WORDS`, e.g. ``loss`` but not ``val_loss``). Case-insensitive.
    Empty when none does."""
    if tag is not None:
        return [n for n in names if n == tag or n.endswith(f" - {tag}")]
    lower = {n: n.lower() for n in names}
    train = [n for n in names if "loss" in lower[n] and "train" in lower[n]]
    if train:
        return train
    return [n for n in names if "loss" in lower[n]
            and not any(w in _words(lower[n]) for w in HELD_OUT_WORDS)]


def _words(name: str) -> set[str]:
    """The words of a metric name, split at anything not a letter: ``val_loss`` ->
    ``{"val", "loss"}``."""
    return set("".join(c if c.isalpha() else " " for c in name).split())


# ---------------------------------------------------------------------------------------
# One reader per format
# ---------------------------------------------------------------------------------------

def _read_npy(path: Path) -> list[Curve]:
    arr = np.load(path, allow_pickle=False)
    if arr.ndim == 1:
        return [Curve(str(path), arr.astype(np.float64))]
    if arr.ndim == 2:
        return [Curve(f"{path}[:, {j}]", arr[:, j].astype(np.float64)) for j in range(arr.shape[1])]
    raise CurveError(f"{path}: an array of shape {arr.shape}; expected (steps,) or (steps, curves)")


def _read_json(path: Path) -> list[Curve]:
    data = json.loads(path.read_text())
    if isinstance(data, dict):
        return [Curve(f"{path}:{k}", _numbers(v, f"{path}: {k}")) for k, v in data.items()]
    if isinstance(data, list) and data and all(isinstance(v, list) for v in data):
        return [Curve(f"{path}[{i}]", _numbers(v, f"{path}: curve {i}")) for i, v in enumerate(data)]
    return [Curve(str(path), _numbers(data, str(path)))]


def _numbers(values, where: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise CurveError(f"{where}: not a list of numbers") from None
    if arr.ndim != 1:
        raise CurveError(f"{where}: expected one loss per step, got shape {arr.shape}")
    return arr


def _float(cell: str) -> Optional[float]:
    """A CSV cell as a number (``nan``, ``inf`` included), None if it is not one."""
    try:
        return float(cell)
    except ValueError:
        return None


def _role(column: str) -> str:
    """``"step"``, ``"time"``, ``"companion"`` or ``"value"``: what a CSV column holds. A
    W&B column ``RUN - NAME`` is judged by its ``NAME``."""
    if column.endswith(COMPANION_SUFFIXES):
        return "companion"
    name = column.rsplit(" - ", 1)[-1].strip().lower()
    if name in STEP_COLUMNS:
        return "step"
    if name in TIME_COLUMNS:
        return "time"
    return "value"


def _read_csv(path: Path, tag: Optional[str]) -> list[Curve]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [row for row in csv.reader(f) if any(cell.strip() for cell in row)]
    if not rows:
        return []
    width = max(len(row) for row in rows)
    rows = [[cell.strip() for cell in row] + [""] * (width - len(row)) for row in rows]
    if all(_float(cell) is None for cell in rows[0]):  # a header row
        header, rows = rows[0], rows[1:]
        if len(set(header)) < len(header):
            twice = sorted({c for c in header if header.count(c) > 1})
            raise CurveError(f"{path}: the header names a column twice ({', '.join(map(repr, twice))})")
    else:  # no header: every column is a curve, the row number its step
        return [_csv_curve(str(path) if width == 1 else f"{path}[{j}]", path, f"column {j}",
                           [row[j] for row in rows], None) for j in range(width)]
    roles = {c: _role(c) for c in header}
    step_cols = [c for c in header if roles[c] == "step"]
    step_col = min(step_cols, key=lambda c: STEP_COLUMNS.index(c.rsplit(" - ", 1)[-1].strip().lower()),
                   default=None)
    values = [c for c in header if roles[c] == "value"]
    scored = loss_names(values, tag)
    if tag is not None and not scored:
        raise CurveError(f"{path}: no column {tag!r}; its columns are {', '.join(map(repr, header))}")
    if not scored:
        if any("loss" in c.lower() for c in values):
            raise CurveError(f"{path}: no column holds a training loss (only held-out losses among "
                             f"{', '.join(map(repr, values))}); name the one to score with --tag")
        scored = values  # no column names a loss: plain curves, one per column
    tensorboard_export = {c.lower() for c in header} == {"wall time", "step", "value"}
    steps = None
    if step_col is not None:
        steps = [row[header.index(step_col)] for row in rows]
    curves = []
    for c in scored:
        name = str(path) if tensorboard_export else f"{path}:{c}"
        curves.append(_csv_curve(name, path, f"column {c!r}", [row[header.index(c)] for row in rows],
                                 (step_col, steps) if steps is not None else None))
    return curves


def _csv_curve(name: str, path: Path, where: str, cells: list[str], steps: Optional[tuple]) -> Curve:
    """One CSV column as a curve: empty cells are steps where it was not logged (W&B
    leaves them when runs or metrics are logged at different steps); the steps are the
    step column's (``(column name, cells)``), else the row numbers from 0."""
    at, vals = [], []
    for i, cell in enumerate(cells):
        if cell == "":
            continue
        v = _float(cell)
        if v is None:
            raise CurveError(f"{path}: {where}: not a list of numbers ({cell!r} in data row {i + 1})")
        if steps is None:
            s = float(i)
        else:
            step_cell = steps[1][i]
            if step_cell == "":
                continue  # a row without a step: W&B's summary rows, or a partial line
            s = _float(step_cell)
            if s is None or not math.isfinite(s) or s != round(s):
                raise CurveError(f"{path}: step column {steps[0]!r} holds {step_cell!r} in data row {i + 1}; "
                                 "steps must be whole numbers")
        at.append(s)
        vals.append(v)
    if not vals:
        raise CurveError(f"{path}: {where} holds no values")
    loss, first, note = on_unit_steps(at, vals)
    return Curve(name, loss, first, note)


def _read_events(path: Path, tag: Optional[str]) -> list[Curve]:
    """The chosen scalar of each run: ``path`` an event file, or a directory whose
    subdirectories (itself included) holding event files are one run each."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        raise CurveError(f"{path}: reading TensorBoard event files needs the tensorboard package: "
                         "pip install grokbook[tensorboard]") from None
    if path.is_dir():
        runs = sorted({f.parent for f in path.rglob(EVENT_PREFIX + "*") if f.is_file()})
        if not runs:
            raise CurveError(f"{path}: a directory with no TensorBoard event files ({EVENT_PREFIX}*) in it")
    else:
        runs = [path]
    curves = []
    for run in runs:
        acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "tensors": 0})  # 0: keep every value
        acc.Reload()
        series = _event_scalars(acc)
        if not series:
            raise CurveError(f"{run}: no scalars in its event files")
        chosen = loss_names(sorted(series), tag)
        if tag is not None and not chosen:
            raise CurveError(f"{run}: no scalar tag {tag!r}; its tags are {', '.join(map(repr, sorted(series)))}")
        if not chosen:
            raise CurveError(f"{run}: no scalar tag names a training loss; its tags are "
                             f"{', '.join(map(repr, sorted(series)))}; name one with --tag")
        if len(chosen) > 1:
            raise CurveError(f"{run}: several scalar tags could be the training loss ({', '.join(map(repr, chosen))}); "
                             "name one with --tag")
        steps, values = series[chosen[0]]
        loss, first, note = on_unit_steps(steps, values)
        curves.append(Curve(f"{run}:{chosen[0]}", loss, first, note))
    return curves


def _event_scalars(acc) -> dict[str, tuple[list[int], list[float]]]:
    """Tag -> ``(steps, values)`` of every scalar series an ``EventAccumulator`` loaded:
    the classic scalar summaries (``add_scalar``, ``tf.compat.v1``) and the 0-d tensor
    summaries that TF2's ``tf.summary.scalar`` and ``add_scalar(new_style=True)`` write."""
    from tensorboard.util import tensor_util

    tags = acc.Tags()
    out = {t: ([e.step for e in acc.Scalars(t)], [e.value for e in acc.Scalars(t)])
           for t in tags.get("scalars", [])}
    for t in tags.get("tensors", []):
        events = acc.Tensors(t)
        arrays = [tensor_util.make_ndarray(e.tensor_proto) for e in events]
        if t not in out and arrays and all(a.ndim == 0 and a.dtype.kind in "fiu" for a in arrays):
            out[t] = ([e.step for e in events], [float(a) for a in arrays])
    return out
