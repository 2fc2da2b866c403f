"""The censoring check of the central claim (issue 31, part 2): do the book sweep's
memorizing runs grok if they are given five times the budget?

The prediction chapter labels a run that has fit its training set but not generalized
by step 2000 as "memorizes", a right-censored time to generalize. This script draws
``--n`` of those runs (a seeded draw among every memorizing run of the 420-run sweep,
``grokbook.experiments.book_grid.book_sweep``), trains the same configurations for ``--factor`` x 2000
steps (the first 2000 steps are the same run: nothing in training depends on the budget),
and writes one record per run into ``data/corpus/book_p31_10k/``
(:mod:`grokbook.experiments.records`): the corpus family of the book's transformer at the
longer budget. It prints how many of them generalize, and grok, by the longer budget.

    GROKBOOK_HOME=STORE python benchmarks/censoring.py [--n 40] [--factor 5] [--seed 0] [--threads 1]

The sweep's 2000-step runs are read from the store (trained if missing: about 12
minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from grokbook import sweep
from grokbook.experiments.records import run_record, write_records
from grokbook.experiments.thresholds import AUTHORS
from grokbook.experiments.book_grid import book_sweep

FAMILY = "book_p31_10k"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--factor", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the runs train in this process)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "data" / "corpus" / FAMILY))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    configs = book_sweep()
    runs = sweep(configs)
    memorizing = [c for c, run in zip(configs, runs) if AUTHORS.outcome(run) == "memorizes"]
    pick = np.random.default_rng(args.seed).choice(len(memorizing), size=min(args.n, len(memorizing)), replace=False)
    chosen = [memorizing[i] for i in sorted(pick)]
    long = [c.replace(steps=c.steps * args.factor) for c in chosen]
    print(f"{len(memorizing)} of {len(configs)} sweep runs memorize at {configs[0].steps} steps; "
          f"training {len(long)} of them to {long[0].steps}", flush=True)
    long_runs = sweep(long)
    command = "python benchmarks/censoring.py " + " ".join(sys.argv[1:])
    records = [run_record(run, FAMILY, command=command.strip(), date=datetime.date.today().isoformat(),
                          machine=f"{platform.machine()} {os.cpu_count()} cores", threads=torch.get_num_threads(),
                          torch_version=torch.__version__, censoring_draw_seed=args.seed) for run in long_runs]
    write_records(args.out, records, FAMILY)
    outcomes = [rec["outcome"] for rec in records]
    counts = {k: outcomes.count(k) for k in sorted(set(outcomes))}
    print(f"by step {long[0].steps}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
