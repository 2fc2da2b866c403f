"""The valley chapter's fresh seeds, offline (issue 32): the training-loss barrier on the
segment that leaves the memorizing phase and on one segment within each phase, for the
same fresh grokking runs as ``benchmarks/hessian_pool.py`` (chapter 1's configuration,
seeds 100-104).

Each run is read from the run store (``$GROKBOOK_HOME``; trained when absent), its
three segments placed at chapter 5's thresholds (:func:`grokbook.experiments.valleys.pair_steps`)
and measured on chapter 5's default number of points. The rows go to
``data/pool/valleys_p47.csv`` (rewritten atomically after each seed; a seed already
there is skipped), which chapter 5 reads.

    python benchmarks/valleys_pool.py [--seeds 100 101 102 103 104] [--threads 1]
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

from grokbook import RunStore
from grokbook.experiments import valleys as ev
from grokbook.experiments.thresholds import for_chapter
from grokbook.phases import run_phase_times

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hessian_pool import CONFIG, SEEDS  # noqa: E402  (the pool's one configuration and seeds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ev.POOL_FILE)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    th = for_chapter("05_valleys")
    if (th.leave, th.reach) != (ev.POOL_SETTINGS["leave"], ev.POOL_SETTINGS["reach"]):
        raise SystemExit(f"chapter 5's thresholds {th} are not the pool's {ev.POOL_SETTINGS}: update POOL_SETTINGS")
    store = RunStore()
    rows = ev.read_pool(args.out)
    for seed in args.seeds:
        config = CONFIG.replace(seed=seed)
        if any(r["config"] == config.hash() for r in rows):
            continue
        start = time.perf_counter()
        run = store.get_or_train(config)
        times = run_phase_times(run, leave=th.leave, reach=th.reach)
        moment = ev.moment_steps(run.snapshot_steps, times.t2, times.t4)[1]
        new = ev.measure_barriers(run, times, moment, ev.POOL_SETTINGS["n_points"])
        rows += new
        ev.write_pool(rows, args.out)
        print(f"seed {seed}: {times}, " + ", ".join(f"{r['pair']} {r['step_a']}-{r['step_b']}: {r['barrier']:.3g}"
                                                  for r in new) + f"; {time.perf_counter() - start:.0f} s", flush=True)
    print(f"{datetime.date.today().isoformat()} python benchmarks/valleys_pool.py {' '.join(sys.argv[1:])}; "
          f"{platform.machine()} {os.cpu_count()} cores, {args.threads} thread(s), torch {torch.__version__}")


if __name__ == "__main__":
    main()
