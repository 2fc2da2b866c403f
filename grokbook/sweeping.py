"""Sweeps: grids of run configurations trained through the run store.

Every run of a sweep goes through the store (:meth:`RunStore.get_or_train_ensemble`),
so a finished run is never trained twice: a sweep stopped half-way resumes where it stopped, and chapters
that sweep overlapping grids share their runs. A run whose loss becomes NaN or infinite
is stored as diverged (``Run.diverged_at``) and the sweep goes on.

Executors:

* ``None`` (default): on this machine. Runs that differ only in learning rate, weight
  decay and seed (equal :func:`~grokbook.trainer.stack_key`) are trained together as an
  ensemble (:mod:`grokbook.ensemble`), the faster path (``benchmarks/sweep_speed.py``),
  in groups of at most ``ensemble_size``; a run comes out the same alone or in any
  ensemble. On a CPU with several cores, a sweep of several
  groups and at least :data:`PARALLEL_MIN_WORK` model-steps spreads the groups over
  one single-threaded process per core (small models use one core far better than
  two threads; below that size, starting the processes costs more than it saves).
  Unless the environment
  variable ``GROKBOOK_SCHEDULER`` names a Dask scheduler (``grokbook run CHAPTER
  --scheduler ADDRESS`` sets it), in which case the sweep goes there;
* an ``int`` ``n``: ``n`` local worker processes;
* a ``dask.distributed.Client`` (or a scheduler address string): the cluster's
  workers. They must see the same store directory (a shared file system), given by
  ``store`` or ``$GROKBOOK_HOME``; e.g. with dask-jobqueue on SLURM::

      from dask_jobqueue import SLURMCluster
      from dask.distributed import Client
      cluster = SLURMCluster(cores=4, memory="16GB", walltime="02:00:00")
      cluster.scale(jobs=8)
      runs = grokbook.sweep(configs, executor=Client(cluster))

Local worker processes run the main script's top-level code when they start, so a script
must call ``sweep`` under ``if __name__ == "__main__":``; without it the sweep warns and
trains in its own process. Workers exit when the sweep's process dies, even when killed.

With the environment variable ``GROKBOOK_PROGRESS`` set (``grokbook run`` sets it), a
sweep, and :meth:`RunStore.get_or_train`, first say which runs are in the store and which
are to train, and about how long training takes on this machine (from timing a few
steps); then, while training, how far it is. The notices go to stderr, or are appended
to the file that the variable names (an absolute path).
"""

from __future__ import annotations

import ast
import itertools
import os
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from . import settings
from .config import RunConfig
from .trainer import Run, stack_key
from .progress import (LISTED, PROGRESS_EVERY_S, Progress, _cost, announce, describe, estimate_s,  # noqa: F401
                       progress_wanted)
from .store import RunStore


def grid(base: RunConfig, **axes: Sequence[Any]) -> list[RunConfig]:
    """Every combination of the values in ``axes`` applied to ``base``, in row-major
    order of the keyword arguments: ``grid(base, lr=[1e-3, 1e-4], seed=[0, 1])``."""
    names = list(axes)
    return [base.replace(**dict(zip(names, values))) for values in itertools.product(*axes.values())]


def replicates(configs: Iterable[RunConfig], seeds: Sequence[int]) -> list[RunConfig]:
    """Each config once per seed, the seed setting both the initialisation and the
    train/validation split (``seed`` and ``data_seed``), config-major: ``c0 s0, c0 s1,
    ..., c1 s0, ...``."""
    return [c.replace(seed=s, data_seed=s) for c in configs for s in seeds]


#: Model-steps below which a sweep stays in this process (starting a worker process
#: and importing torch takes seconds).
PARALLEL_MIN_WORK = 20_000


def _train_group(config_dicts: list[dict[str, Any]], root: str, threads: int = 0, device: str = "") -> None:
    """Worker side: train (or find) one group of stackable runs in the store at
    ``root`` for ``device`` (the sweeping process's kind, so that it finds the runs),
    with ``threads`` torch threads (0: torch's default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    _train_groups([[RunConfig.from_dict(d) for d in config_dicts]], RunStore(root, device=device or None))


def _train_groups(groups: list[list[RunConfig]], store: RunStore, bar=None) -> None:
    """Train (or find) each group of stackable runs as one ensemble and store its runs."""
    for group in groups:
        store.get_or_train_ensemble(group)
        if bar is not None:
            bar.update(len(group))


def _exit_with_parent() -> None:
    """Worker initializer: a daemon thread that ends this process as soon as its parent
    dies (else a killed sweep leaves its workers training, then idle, for ever). It waits
    on the parent's sentinel, which multiprocessing makes ready when the parent exits."""
    import multiprocessing
    import threading
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="grokbook-parent-watch", daemon=True).start()


def _is_main_guard(test: ast.expr) -> bool:
    """Whether ``test`` is ``__name__ == "__main__"`` (either way round)."""
    return ast.unparse(test).replace("'", '"') in ('__name__ == "__main__"', '"__main__" == __name__')


def _unguarded_main() -> Optional[str]:
    """The main script's path if this call comes from its top-level code outside an
    ``if __name__ == "__main__":`` block, else None. A spawned worker process runs the
    main script's top-level code when it starts: there it would start a sweep of its own,
    which multiprocessing refuses, and the pool breaks (``BrokenProcessPool``)."""
    main = sys.modules.get("__main__")
    spec_name = getattr(getattr(main, "__spec__", None), "name", None) or ""
    if main is None or getattr(main, "__file__", None) is None or spec_name.endswith("__main__"):
        return None  # a worker does not run this main module (python -c, notebooks, python -m pkg)
    frame = sys._getframe()
    while frame is not None and not (frame.f_globals is vars(main) and frame.f_code.co_name == "<module>"):
        frame = frame.f_back
    if frame is None:
        return None
    try:
        tree = ast.parse(Path(frame.f_code.co_filename).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    line = frame.f_lineno
    for node in ast.walk(tree):
        if (isinstance(node, ast.If) and _is_main_guard(node.test)
                and node.body[0].lineno <= line <= (node.body[-1].end_lineno or line)):
            return None
    return frame.f_code.co_filename


def _processes_usable(n_proc: int) -> bool:
    """Whether worker processes can be started for this sweep; if not (a script without
    a main guard), warn that the sweep trains in this process, and how to fix it."""
    script = _unguarded_main()
    if script is not None:
        warnings.warn(f"{script} calls grokbook.sweep outside an `if __name__ == \"__main__\":` block, and worker "
                      f"processes run the script's top-level code when they start, so this sweep trains in this "
                      f"process instead of {n_proc}. To use {n_proc} processes, put the script's code under "
                      f"`if __name__ == \"__main__\":`.", RuntimeWarning, stacklevel=3)
    return script is None


def _local_processes(groups: list[list[RunConfig]]) -> int:
    """How many worker processes the default executor uses for ``groups`` (1: none)."""
    import torch

    cores = os.cpu_count() or 1
    work = sum(len(g) * g[0].steps for g in groups)
    if torch.cuda.is_available() or cores < 2 or len(groups) < 2 or work < PARALLEL_MIN_WORK:
        return 1
    return min(cores, len(groups))


def _train_in_processes(groups: list[list[RunConfig]], n_proc: int, store: RunStore, bar) -> None:
    """Train ``groups`` in ``n_proc`` worker processes that split the cores between them
    and store into ``store``; largest groups first (cost ~ runs x steps x examples), so
    that the last to finish is a small one."""
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // n_proc)
    ordered = sorted(groups, key=_cost, reverse=True)
    # spawn, not fork: a forked child of a process that already ran OpenMP (torch) can hang.
    # Workers exit when this process dies (even by SIGKILL), instead of training on as orphans.
    with ProcessPoolExecutor(n_proc, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_exit_with_parent) as pool:
        futures = {pool.submit(_train_group, [c.to_dict() for c in g], str(store.root), threads,
                               store.device.type): len(g) for g in ordered}
        for f in as_completed(futures):
            f.result()
            bar.update(futures[f])


def _ensemble_groups(configs: list[RunConfig], size: int) -> list[list[RunConfig]]:
    """``configs`` partitioned into stackable groups (equal :func:`stack_key`) of at
    most ``size``, in order."""
    groups: dict[RunConfig, list[RunConfig]] = {}
    for c in configs:
        groups.setdefault(stack_key(c), []).append(c)
    return [g[i:i + size] for g in groups.values() for i in range(0, len(g), size)]


def sweep(configs: Iterable[RunConfig], executor: Any = None, store: Optional[RunStore] = None,
          progress: Optional[bool] = None, ensemble_size: int = 16) -> list[Run]:
    """Train (or load) every config and return the runs, in the order given.

    ``executor``: None, a number of local processes, a ``dask.distributed.Client`` or a
    scheduler address (see the module docstring). ``progress``: a bar across runs (None:
    only on a terminal).
    """
    from tqdm import tqdm

    configs = list(configs)
    store = store or RunStore()
    # load, not `c in store`: a corrupt stored run is moved aside here (CorruptRunWarning)
    # and trained again by this sweep
    unique = {c.hash(): c for c in configs}
    found = {h: store.load(c) for h, c in unique.items()}
    todo = [c for h, c in unique.items() if found[h] is None]
    if executor is None:
        executor = settings.scheduler()
    local = executor is None or not todo
    n_proc: Optional[int]
    if local:
        groups = _ensemble_groups(todo, ensemble_size)
        n_proc = _local_processes(groups)
    else:  # one run at a time: to local worker processes, or to a Dask cluster (n_proc None)
        groups, n_proc = [[c] for c in todo], executor if isinstance(executor, int) else None
    in_process = n_proc is not None and ((local and n_proc == 1) or not _processes_usable(n_proc))
    announce(configs, groups, store, 1 if in_process else n_proc)
    bar = Progress(len(todo), len(groups), tqdm(total=len(todo), desc=f"sweep of {len(configs)} runs",
                                                disable=None if progress is None else not progress))
    try:
        if in_process:
            _train_groups(groups, store, bar)
        elif n_proc is not None:
            _train_in_processes(groups, n_proc, store, bar)
        else:
            from dask.distributed import Client, as_completed as dask_completed

            client = Client(executor) if isinstance(executor, str) else executor
            futures = client.map(_train_group, [[c.to_dict()] for c in todo], root=str(store.root),
                                 device=store.device.type, pure=False)
            for f in dask_completed(futures):
                f.result()
                bar.update()
    finally:
        bar.close()
    found.update((c.hash(), store.load(c)) for c in todo)
    runs = [found[c.hash()] for c in configs]
    missing = [c for c, r in zip(configs, runs) if r is None]
    if missing:
        raise RuntimeError(f"{len(missing)} run(s) are not in {store} after the sweep, e.g. {missing[0]}: "
                           "do the workers share the store directory?")
    return runs  # type: ignore[return-value]


def _replay_one(config_dict: dict[str, Any], at: list[int], threads: int) -> dict[int, Any]:
    """Worker side of :func:`replays`: one replay, with ``threads`` torch threads."""
    import torch

    from .training import replay_weights

    torch.set_num_threads(threads)
    return replay_weights([RunConfig.from_dict(config_dict)], at)[0]


def replays(configs: Sequence[RunConfig], at: Sequence[Iterable[int]],
            processes: Optional[int] = None) -> list[dict[int, Any]]:
    """:func:`grokbook.training.replay_weights` of each config at its own steps ``at[i]``
    (configs that cannot train together: other data splits, other models), spread over
    ``processes`` single-threaded worker processes (default: as a sweep would, one per
    core up to one per config, when the replays are large enough to pay for starting
    them). Returns one ``{step: flat weights (P,) float32}`` per config, in order; the
    weights are bit-identical to a replay in this process."""
    from .training import replay_weights

    configs, at = list(configs), [sorted({int(s) for s in steps}) for steps in at]
    if len(at) != len(configs):
        raise ValueError(f"{len(configs)} configs but {len(at)} lists of steps")
    groups = [[c.replace(steps=max(a, default=1) or 1)] for c, a in zip(configs, at)]
    n_proc = _local_processes(groups) if processes is None else processes
    if n_proc <= 1 or len(configs) < 2 or not _processes_usable(n_proc):
        return [replay_weights([c], a)[0] for c, a in zip(configs, at)]
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // n_proc)
    order = sorted(range(len(configs)), key=lambda i: -max(at[i], default=0))  # longest first
    with ProcessPoolExecutor(n_proc, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_exit_with_parent) as pool:
        futures = {i: pool.submit(_replay_one, configs[i].to_dict(), at[i], threads) for i in order}
        return [futures[i].result() for i in range(len(configs))]
