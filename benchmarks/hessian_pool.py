"""The Hessian chapter's fresh seeds, offline (issue 32): eigenvalue pairs at the loss
spikes, the quiet steps between them and the initial descent's steps at the spikes' loss,
for grokking runs of chapter 7's default configuration on seeds no chapter had used.

Each seed's run is trained through the run store (``$GROKBOOK_HOME``), its spikes found
after its t2 at three spike factors (3, 5 and 10: the chapter's 5 and the alternatives of
its specification table), up to 3 spikes each, and the Hessian's extreme eigenvalues
computed at every such step on the chapter's 256-example subset and on the whole
training set (:func:`grokbook.experiments.hessian.measure_steps`). The rows go to
``data/pool/hessian_p47.csv`` (rewritten atomically after each seed; a seed already
there is skipped, so the script resumes), which chapter 7 reads.

    python benchmarks/hessian_pool.py [--seeds 100 101 102 103 104] [--threads 1]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch

from grokbook import RunConfig, RunStore
from grokbook.experiments import hessian as eh
from grokbook.experiments.thresholds import for_chapter
from grokbook.phases import run_phase_times

#: Chapter 7's default configuration (its parameters cell; a test keeps them equal).
CONFIG = RunConfig(task="add", p=47, r=0.5, n_layers=2, d_model=64, n_heads=4, arch="book", layer_norm=False,
                   lr=0.003, weight_decay=1.0, batch_size=0, steps=4000)
SEEDS = (100, 101, 102, 103, 104)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=eh.POOL_FILE)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    th, s = for_chapter("07_hessian"), eh.POOL_SETTINGS
    if (th.leave, th.reach) != (s["leave"], s["reach"]):
        raise SystemExit(f"chapter 7's thresholds {th} are not the pool's {s}: update POOL_SETTINGS")
    store = RunStore()
    rows = eh.read_pool(args.out)
    for seed in args.seeds:
        config = CONFIG.replace(seed=seed)
        if any(r["config"] == config.hash() for r in rows):
            continue
        start = time.perf_counter()
        run = store.get_or_train(config)
        times = run_phase_times(run, leave=th.leave, reach=th.reach)
        new = eh.measure_steps([run], [times], window=s["window"], spike_factors=eh.POOL_FACTORS,
                               max_spikes=s["max_spikes"], examples=eh.POOL_EXAMPLES, tol=s["tol"],
                               float64=s["float64"], processes=1)
        rows += new
        eh.write_pool(rows, args.out)
        print(f"seed {seed}: {times}, {len(new)} rows, {time.perf_counter() - start:.0f} s", flush=True)
    print(f"{datetime.date.today().isoformat()} python benchmarks/hessian_pool.py {' '.join(sys.argv[1:])}; "
          f"{platform.machine()} {os.cpu_count()} cores, {args.threads} thread(s), torch {torch.__version__}")


if __name__ == "__main__":
    main()
