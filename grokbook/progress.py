"""Progress notices of training: which runs are in the store and which are to train, an
estimate of how long training takes here (from timing a few steps), and how far it is.

Shared by :mod:`grokbook.store` (one run) and :mod:`grokbook.sweeping` (many): with the
environment variable ``GROKBOOK_PROGRESS`` set (``grokbook run`` sets it) the notices
go to stderr, or are appended to the file that the variable names (an absolute path).
The store's warnings are appended to that file too (:func:`relay_warning`): ``grokbook
run`` copies it to the terminal while the kernel runs.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import time
from typing import Any, Optional, Sequence

from . import settings
from .config import RunConfig
from .trainer import stack_key

#: At most this many runs are listed one per line; more are summed up in one line.
LISTED = 12
#: Seconds between two progress notices during training (the last one always shows).
PROGRESS_EVERY_S = 5.0
#: Seconds spent timing training steps for the estimate (at least one step), and at most
#: this many steps per group timed.
TIMING_S, TIMED_STEPS = 1.5, 10


def progress_wanted() -> bool:
    """Whether ``$GROKBOOK_PROGRESS`` asks for notices (set, and not ``0``)."""
    return settings.progress() is not None


def _notice(line: str) -> None:
    """``line`` to where ``$GROKBOOK_PROGRESS`` says: the file it names (an absolute path)
    or stderr; nowhere when it is unset."""
    where = settings.progress()
    if where is not None:
        with open(where, "a") if where != "stderr" else contextlib.nullcontext(sys.stderr) as f:
            f.write(f"grokbook: {line}\n")


def warning_line(message: str) -> str:
    """A warning as the terminal shows it: ``grokbook: warning: <message on one line>``."""
    return f"grokbook: warning: {' '.join(str(message).split())}"


def relay_warning(message: str) -> None:
    """Append :func:`warning_line` of ``message`` to the file ``$GROKBOOK_PROGRESS``
    names, when it names one (an absolute path: ``grokbook run``'s kernel and the sweep
    workers it starts); else nothing: in a script, ``warnings`` shows the warning."""
    where = settings.progress()
    if where not in (None, "stderr"):
        with open(where, "a") as f:
            f.write(warning_line(message) + "\n")


def _duration(s: float) -> str:
    """``s`` seconds in words: 0.42 s, 12 s, 4 min, 2.5 h."""
    return f"{s:.2g} s" if s < 10 else f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 \
        else f"{s / 3600:.1f} h"


def describe(config: RunConfig) -> str:
    """The fields of ``config`` that differ from :class:`RunConfig`'s defaults, ``name=value``."""
    default = RunConfig()
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in vars(config).items()
                    if v != getattr(default, k)) or "the defaults"


def _cost(group: list[RunConfig]) -> float:
    """The rough cost of training ``group`` as one ensemble: runs x steps x examples."""
    c = group[0]
    return len(group) * c.steps * c.r * c.p ** 2


def _step_s(group: list[RunConfig], device: Any, budget_s: float) -> float:
    """Seconds per training step of ``group`` as one ensemble on ``device``: the median
    of up to :data:`TIMED_STEPS` steps (the first pays one-off costs) within ``budget_s``."""
    import torch

    from .trainer import Core

    with torch.random.fork_rng(devices=[]):  # building the models seeds torch
        core = Core(group, device)
    # a throwaway core: no validation or snapshots, which long runs take at ~1% of their steps
    core.val_at = core.snap_at = set()
    times: list[float] = []
    for t in range(min(core.steps, TIMED_STEPS)):
        start = time.perf_counter()
        core.step(t)
        float(core.w[0, 0])  # waits for the device
        times.append(time.perf_counter() - start)
        if sum(times) > budget_s:
            break
    return sorted(times)[len(times) // 2]


def estimate_s(groups: list[list[RunConfig]], device: Any, n_proc: int = 1) -> float:
    """About how many seconds training ``groups`` (ensembles) takes on ``device`` in
    ``n_proc`` processes splitting the cores: a few steps of the costliest group of each
    kind (equal :func:`stack_key`) are timed while :data:`TIMING_S` lasts; kinds not
    timed are scaled from the others by :func:`_cost`."""
    import torch

    rates: dict[RunConfig, float] = {}  # seconds per unit of _cost, by kind
    threads, start = torch.get_num_threads(), time.perf_counter()
    if n_proc > 1:  # each worker's share of the cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // n_proc))
    try:
        for g in sorted(groups, key=_cost, reverse=True):
            elapsed = time.perf_counter() - start
            if stack_key(g[0]) not in rates and (not rates or elapsed < TIMING_S):
                rates[stack_key(g[0])] = _step_s(g, device, TIMING_S - elapsed) * g[0].steps / _cost(g)
    finally:
        torch.set_num_threads(threads)
        gc.collect()  # a core is a reference cycle: free its memory on the device before training
    mean = sum(rates.values()) / max(len(rates), 1)
    return sum(rates.get(stack_key(g[0]), mean) * _cost(g) for g in groups) / n_proc


def announce(configs: Sequence[RunConfig], groups: list[list[RunConfig]], store: Any,
             n_proc: Optional[int] = 1) -> None:
    """With ``$GROKBOOK_PROGRESS``: which of ``configs`` are in the store and which are
    to train (those in ``groups``), a line each or one line for more than :data:`LISTED`;
    then about how long training takes here in ``n_proc`` processes (None: on a Dask
    cluster, not estimated). ``store``: the :class:`~grokbook.store.RunStore` that trains them."""
    if not progress_wanted():
        return
    unique = list({c.hash(): c for c in configs}.values())
    todo = {c.hash() for g in groups for c in g}
    if len(unique) > LISTED:
        ensembles = f" in {len(groups)} ensemble{'s' * (len(groups) > 1)}" if len(groups) < len(todo) else ""
        _notice(f"{len(unique)} runs: {len(unique) - len(todo)} in the store, {len(todo)} to train{ensembles}")
    else:
        for i, c in enumerate(unique, 1):
            where = "to train" if c.hash() in todo else "in the store"
            _notice(f"run {f'{i}/{len(unique)} ' if len(unique) > 1 else ''}{where}: {describe(c)}")
    if todo and n_proc:
        how = f"{store.device.type}{f', {n_proc} processes' if n_proc > 1 else ''}"
        _notice(f"training takes about {_duration(estimate_s(groups, store.device, n_proc))} here "
                f"({how}; from timing a few steps)")


class Progress:
    """Training of ``runs`` runs in ``groups`` groups: ``bar`` (a tqdm bar, if any)
    and, with ``$GROKBOOK_PROGRESS``, a notice at most every :data:`PROGRESS_EVERY_S`
    seconds and one at the end."""

    def __init__(self, runs: int, groups: int, bar: Any = None) -> None:
        self.runs, self.groups, self.bar = runs, groups, bar
        self.done_runs = self.done_groups = 0
        self.start = self.shown = time.perf_counter()

    def update(self, n: int = 1) -> None:
        """One more group trained, of ``n`` runs."""
        if self.bar is not None:
            self.bar.update(n)
        self.done_runs, self.done_groups = self.done_runs + n, self.done_groups + 1
        now = time.perf_counter()
        if self.done_runs < self.runs and now - self.shown < PROGRESS_EVERY_S:
            return
        self.shown, took = now, now - self.start
        if self.done_runs < self.runs:
            count = f"{self.done_runs}/{self.runs} runs"
            if self.groups < self.runs:
                count = f"{self.done_groups}/{self.groups} ensembles ({count})"
            _notice(f"trained {count}, about {_duration(took * (self.runs / self.done_runs - 1))} left")
        else:
            _notice(f"trained {self.runs} run{'s' * (self.runs > 1)} in {_duration(took)}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
