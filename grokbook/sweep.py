"""Sweeps: grids of run configurations trained through the run store.

Every run of a sweep goes through :meth:`RunStore.get_or_train`, so a finished run is
never trained twice: a sweep stopped half-way resumes where it stopped, and chapters
that sweep overlapping grids share their runs. A run whose loss becomes NaN or infinite
is stored as diverged (``Run.diverged_at``) and the sweep goes on.

Executors:

* ``None`` (default): on this machine. Runs that differ only in learning rate, weight
  decay and seed are trained together as an ensemble (:mod:`grokbook.ensemble`), the
  faster path (``benchmarks/sweep_speed.py``), in groups of at most ``ensemble_size``;
  the others one after the other. On a CPU with several cores, a sweep of several
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
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Iterable, Optional, Sequence

from .config import RunConfig
from .store import RunStore
from .train import Run


def grid(base: RunConfig, **axes: Sequence[Any]) -> list[RunConfig]:
    """Every combination of the values in ``axes`` applied to ``base``, in row-major
    order of the keyword arguments: ``grid(base, lr=[1e-3, 1e-4], seed=[0, 1])``."""
    names = list(axes)
    return [base.replace(**dict(zip(names, values))) for values in itertools.product(*axes.values())]


#: Model-steps below which a sweep stays in this process (starting a worker process
#: and importing torch takes seconds).
PARALLEL_MIN_WORK = 20_000


def _train_group(config_dicts: list[dict[str, Any]], root: str, threads: int = 0) -> None:
    """Worker side: train (or find) one group of runs (an ensemble when they stack) in
    the store at ``root``, with ``threads`` torch threads (0: torch's default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    _train_groups([[RunConfig.from_dict(d) for d in config_dicts]], RunStore(root))


def _train_groups(groups: list[list[RunConfig]], store: RunStore, bar=None) -> None:
    """Train each group as an ensemble when it stacks, else run by run; store them."""
    from .ensemble import fit_ensemble, stackable

    for group in groups:
        if len(group) > 1 and stackable(group):
            for run in fit_ensemble(group):
                if run.config not in store:
                    store.save(run, note=" (ensemble)")
        else:
            for c in group:
                store.get_or_train(c, progress=False)
        if bar is not None:
            bar.update(len(group))


def _local_processes(groups: list[list[RunConfig]]) -> int:
    """How many worker processes the default executor uses for ``groups`` (1: none)."""
    import torch

    cores = os.cpu_count() or 1
    work = sum(len(g) * g[0].steps for g in groups)
    if torch.cuda.is_available() or cores < 2 or len(groups) < 2 or work < PARALLEL_MIN_WORK:
        return 1
    return min(cores, len(groups))


def _train_in_processes(groups: list[list[RunConfig]], n_proc: int, root: str, bar) -> None:
    """Train ``groups`` in ``n_proc`` worker processes that split the cores between them
    and store into ``root``; largest groups first (cost ~ runs x steps x examples), so
    that the last to finish is a small one."""
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // n_proc)
    ordered = sorted(groups, key=lambda g: -len(g) * g[0].steps * g[0].r * g[0].p ** 2)
    # spawn, not fork: a forked child of a process that already ran OpenMP (torch) can hang.
    with ProcessPoolExecutor(n_proc, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_train_group, [c.to_dict() for c in g], root, threads): len(g) for g in ordered}
        for f in as_completed(futures):
            f.result()
            bar.update(futures[f])


def _ensemble_groups(configs: list[RunConfig], size: int) -> list[list[RunConfig]]:
    """``configs`` partitioned into stackable groups of at most ``size``, in order."""
    from .ensemble import VARYING

    groups: dict[RunConfig, list[RunConfig]] = {}
    for c in configs:
        groups.setdefault(c.replace(**{k: getattr(RunConfig(), k) for k in VARYING}), []).append(c)
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
    todo = list({c.hash(): c for c in configs if c not in store}.values())
    if executor is None and os.environ.get("GROKBOOK_SCHEDULER"):
        executor = os.environ["GROKBOOK_SCHEDULER"]
    bar = tqdm(total=len(todo), desc=f"sweep of {len(configs)} runs", disable=None if progress is None else not progress)
    root = str(store.root)
    try:
        if executor is None or not todo:
            groups = _ensemble_groups(todo, ensemble_size)
            n_proc = _local_processes(groups)
            if n_proc == 1:
                _train_groups(groups, store, bar)
            else:
                _train_in_processes(groups, n_proc, root, bar)
        elif isinstance(executor, int):
            _train_in_processes([[c] for c in todo], executor, root, bar)
        else:
            from dask.distributed import Client, as_completed as dask_completed

            client = Client(executor) if isinstance(executor, str) else executor
            futures = client.map(_train_group, [[c.to_dict()] for c in todo], root=root, pure=False)
            for f in dask_completed(futures):
                f.result()
                bar.update()
    finally:
        bar.close()
    runs = [store.load(c) for c in configs]
    missing = [c for c, r in zip(configs, runs) if r is None]
    if missing:
        raise RuntimeError(f"{len(missing)} run(s) are not in {store} after the sweep, e.g. {missing[0]}: "
                           "do the workers share the store directory?")
    return runs  # type: ignore[return-value]
