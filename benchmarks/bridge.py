"""The bridge to the authors' model: their recipe on a sub-grid of their own heatmap grid,
at a size that groks on a 2-core CPU, as compact per-run records (issue 31, part 4; the
corpus's first family, ``grok_p47``).

The model and optimiser are the `paper` profile's (openai/grok's post-LN transformer,
arch ``grok``, 2 blocks, 4 heads; AdamW, betas 0.9 / 0.98, warm-up 10 steps, full batch,
r 0.5) at p 47, width 64 (where the recipe groks on this CPU: ``book/paper_scale.md``),
over learning rates 1e-3 .. 5e-3 and weight decays 0 .. 5 (0 included), two seeds (each
sets initialisation and split), 6000 steps: 40 runs. Seed 0 of every configuration runs
before seed 1, so an interrupted bridge covers the grid first.

Runs go through the run store (``$GROKBOOK_HOME``: an interrupted run resumes from its
checkpoint); each finished run is written as ``data/corpus/grok_p47/<hash>.parquet``
(:mod:`grokbook.experiments.records`), which is what the repository keeps. A run whose
record exists is skipped.

    python benchmarks/bridge.py [--threads 1] [--workers 2] [--limit N] [--out data/corpus/grok_p47]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from pathlib import Path

import torch

from grokbook import RunConfig, RunStore, sweep
from grokbook.experiments.records import run_record, write_record

FAMILY = "grok_p47"
BASE = RunConfig(arch="grok", task="add", p=47, r=0.5, n_layers=2, d_model=64, n_heads=4, layer_norm=True,
                 batch_size=0, warmup_steps=10, steps=6000)
LRS = (1e-3, 2e-3, 3e-3, 5e-3)
WEIGHT_DECAYS = (0.0, 0.5, 1.0, 2.0, 5.0)
SEEDS = (0, 1)


def configs() -> list[RunConfig]:
    """The bridge grid, seed-major (every configuration of seed 0 first)."""
    return [BASE.replace(lr=lr, weight_decay=wd, seed=s) for s in SEEDS for lr in LRS for wd in WEIGHT_DECAYS]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1,
                    help="train this many runs at once, one single-threaded process each (the sweep's executor)")
    ap.add_argument("--limit", type=int, default=0, help="stop after this many new runs (0: all)")
    ap.add_argument("--reverse", action="store_true",
                    help="take the grid from its end (a second process beside a first one meets it in the middle)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "data" / "corpus" / FAMILY))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    store, out = RunStore(), Path(args.out)
    command = "python benchmarks/bridge.py " + " ".join(sys.argv[1:])
    todo = [c for c in configs()[::-1 if args.reverse else 1] if not (out / f"{c.hash()}.parquet").exists()]
    if args.limit:
        todo = todo[:args.limit]
    step = max(args.workers, 1)
    for k in range(0, len(todo), step):
        chunk = todo[k:k + step]
        # one run per process: the authors' model gains nothing from stacking (issue 36)
        runs = (sweep(chunk, executor=args.workers, store=store, ensemble_size=1) if args.workers > 1
                else [store.get_or_train(c) for c in chunk])
        for c, run in zip(chunk, runs):
            rec = run_record(run, FAMILY, command=command.strip(), date=datetime.date.today().isoformat(),
                             machine=f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores".strip(),
                             threads=args.threads, workers=args.workers, torch_version=torch.__version__)
            write_record(out, rec)
            print(f"{c.hash()} lr {c.lr:g} wd {c.weight_decay:g} seed {c.seed}: {rec['outcome']}, t2 {rec['t2']}, "
                  f"t4 {rec['t4']}, final val {rec['final_val_acc']:.3f}, {run.wall_time_s:.0f} s", flush=True)

if __name__ == "__main__":
    main()
