"""Loss curves from another public trainer (issue 34, part 2): the grid of
:mod:`grokbook.experiments.peer` (danielmamay/grokking's loop and model, rewritten in our
own words) trained at p 31, one compact record per run in ``data/peer/peer_p31/``, in
the corpus's schema, which chapter 12 scores the shipped predictors on.

    python benchmarks/peer_curves.py [--threads 1] [--limit N] [--shard K/N] [--out data/peer/peer_p31] [--tiny]

``--shard K/N`` trains the runs whose place in the grid is K modulo N: N processes, one a
core, share the grid without training a run twice.

Resumable: a run whose record exists is skipped; each finished run is written as
``<out>/<hash>.parquet``, and the directory is merged into ``peer_p31.parquet`` once
the grid is complete. ``--tiny`` trains two runs of 60 steps at p 7 (the test).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import platform
import sys
from pathlib import Path

import torch

from grokbook.experiments.peer import DATA, FAMILY, TINY, config_hash, configs, train
from grokbook.experiments.records import compact, read_records, write_record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None, help="train at most N runs, then stop")
    ap.add_argument("--out", default=str(DATA))
    ap.add_argument("--tiny", action="store_true", help="two runs of 60 steps at p 7 (the test)")
    ap.add_argument("--shard", default="0/1", metavar="K/N", help="train only the runs whose place in the grid "
                    "is K modulo N (default 0/1: all)")
    args = ap.parse_args()
    k, n_shards = map(int, args.shard.split("/"))
    if not 0 <= k < n_shards:
        ap.error(f"--shard {args.shard}: K must be in 0 .. N-1")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    grid = configs(TINY)[:2] if args.tiny else configs()
    done = set(read_records(out)["hash"]) if out.is_dir() and any(out.glob("*.parquet")) else set()
    todo = [c for i, c in enumerate(grid) if config_hash(c) not in done and i % n_shards == k]
    recorded = sum(config_hash(c) in done for c in grid)
    print(f"{FAMILY}: {len(grid)} runs in the grid, {recorded} recorded, {len(todo)} to train"
          + (f" in shard {args.shard}" if n_shards > 1 else ""), flush=True)
    extra = dict(command="python benchmarks/peer_curves.py " + " ".join(sys.argv[1:]),
                 date=datetime.date.today().isoformat(), machine=f"{platform.machine()} {platform.processor()}".strip(),
                 threads=args.threads, torch=torch.__version__)
    for n, cfg in enumerate(itertools.islice(todo, args.limit), 1):
        rec = train(cfg)
        write_record(out, {**rec, **extra})
        print(f"{n}/{len(todo)}: lr {cfg['lr']:g} wd {cfg['weight_decay']:g} r {cfg['r']:g} seed {cfg['seed']}: "
              f"{rec['outcome']}, t4 {rec['t4']}, {rec['wall_time_s']:.0f} s", flush=True)
    if len(read_records(out)) == len(grid) and not args.tiny:
        compact(out, FAMILY)
        print(f"merged into {out / (FAMILY + '.parquet')}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
