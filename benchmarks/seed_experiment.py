"""The seed experiment of the prediction chapter, offline (issue 31, part 3): fresh seeds at
the configurations where the hyperparameters leave the outcome most open.

Its runs cost far more than the book build can spend (the first 140 about 12 minutes of
the 2-core CPU), so they are trained here and kept as one record per run in
``data/corpus/book_p31_seeds/book_p31_seeds.parquet``
(:mod:`grokbook.experiments.records`); the chapter reads them, assigns them to its arms,
checks that they are the runs its own sweep selects, and re-trains one of them live.
The design is the chapter's (``grokbook.experiments.central.seed_experiment_configs``),
with the chapter's default parameters read from its parameters cell.

    GROKBOOK_HOME=STORE python benchmarks/seed_experiment.py [--workers 2] [--batch 48]

The sweep's runs are read from the store (trained if missing). Resumable: the runs
already recorded are kept, the others are trained in batches of ``--batch`` and the file
is rewritten after each batch (commit it as it grows).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from pathlib import Path

import torch

from grokbook import sweep
from grokbook.notebooks import get_chapter
from grokbook.experiments import central
from grokbook.experiments.records import read_records, run_record, write_records
from grokbook.experiments.book_grid import book_sweep
from grokbook.predict import config_id

FAMILY = "book_p31_seeds"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each training process")
    ap.add_argument("--workers", type=int, default=2, help="training processes (0: this one)")
    ap.add_argument("--batch", type=int, default=48, help="runs trained between two writes of the file")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "data" / "corpus" / FAMILY))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    prm = {k: v.default for k, v in get_chapter("predict").parameters.items()}
    runs = sweep(book_sweep())
    data, idx = central.sweep_data(runs, window=prm["window"], leave=prm["leave"], reach=prm["reach"],
                                   min_ratio=prm["min_ratio"])
    reps = {config_id(runs[i]): runs[i].config for i in idx}
    arms = central.seed_experiment_configs(data, reps, k=prm["seed_configs"], seed_count=prm["seed_count"],
                                           fresh_seed=prm["fresh_seed"],
                                           fixed_split_configs=prm["fixed_split_configs"], n_folds=prm["n_folds"])
    command = ("python benchmarks/seed_experiment.py " + " ".join(sys.argv[1:])).strip()
    configs = list({c.hash(): c for cfgs in arms.values() for c in cfgs}.values())  # the arms share a run each
    old = read_records(args.out)
    records = [] if old.empty else [r for r in old.to_dict("records") if r["hash"] in {c.hash() for c in configs}]
    done = {r["hash"] for r in records}
    todo = [c for c in configs if c.hash() not in done]
    print(f"{len(configs)} runs in the design, {len(records)} recorded, {len(todo)} to train", flush=True)
    for start in range(0, len(todo), args.batch):
        batch = todo[start:start + args.batch]
        records += [run_record(run, FAMILY, command=command, date=datetime.date.today().isoformat(),
                               machine=f"{platform.machine()} {os.cpu_count()} cores", threads=args.threads,
                               torch_version=torch.__version__)
                    for run in sweep(batch, executor=args.workers or None, progress=False)]
        print(f"{len(records)} of {len(configs)} runs recorded in {write_records(args.out, records, FAMILY)}",
              flush=True)

if __name__ == "__main__":
    main()
