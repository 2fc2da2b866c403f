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

``--size p97`` is the slice at the paper's size for a lent GPU (issues 31 and 36): p 97,
width 128, 4000 steps, lr {1e-3, 3e-3} x weight decay {0, 0.5, 1, 2} x seeds {0, 1}
(16 runs, family ``grok_p97``), trained as one ensemble on the store's device
(``GROKBOOK_DEVICE=cuda``) with ``--ensemble 16``. ``benchmarks/gpu_check.sh`` runs it.
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
#: The slice at the paper's size, for a GPU: (family, base, learning rates, weight decays).
SIZES = {"p47": (FAMILY, BASE, LRS, WEIGHT_DECAYS),
         "p97": ("grok_p97", BASE.replace(p=97, d_model=128, steps=4000), (1e-3, 3e-3), (0.0, 0.5, 1.0, 2.0))}


def configs(size: str = "p47") -> list[RunConfig]:
    """The bridge grid at ``size`` (a key of :data:`SIZES`), seed-major (every
    configuration of seed 0 first)."""
    _, base, lrs, wds = SIZES[size]
    return [base.replace(lr=lr, weight_decay=wd, seed=s) for s in SEEDS for lr in lrs for wd in wds]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1,
                    help="train this many runs at once, one single-threaded process each (the sweep's executor)")
    ap.add_argument("--limit", type=int, default=0, help="stop after this many new runs (0: all)")
    ap.add_argument("--reverse", action="store_true",
                    help="take the grid from its end (a second process beside a first one meets it in the middle)")
    ap.add_argument("--size", choices=sorted(SIZES), default="p47",
                    help="p47: the CPU bridge; p97: the paper's size, for a GPU (16 runs)")
    ap.add_argument("--ensemble", type=int, default=0,
                    help="train this many runs stacked in this process, on the store's device (GROKBOOK_DEVICE); "
                    "0: one run at a time")
    ap.add_argument("--steps", type=int, default=0, help="override the runs' steps (a smoke test; 0: the size's own)")
    ap.add_argument("--out", help="where the records go (default data/corpus/<family>)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    family = SIZES[args.size][0]
    store = RunStore()
    out = Path(args.out or Path(__file__).resolve().parents[1] / "data" / "corpus" / family)
    command = "python benchmarks/bridge.py " + " ".join(sys.argv[1:])
    grid = [c.replace(steps=args.steps) if args.steps else c for c in configs(args.size)]
    todo = [c for c in grid[::-1 if args.reverse else 1] if not (out / f"{c.hash()}.parquet").exists()]
    if args.limit:
        todo = todo[:args.limit]
    step = max(args.workers, args.ensemble, 1)
    for k in range(0, len(todo), step):
        chunk = todo[k:k + step]
        # one run per process on the CPU: the authors' model gains nothing from stacking there (issue 36)
        if args.ensemble:
            runs = sweep(chunk, store=store, ensemble_size=args.ensemble, progress=False)
        elif args.workers > 1:
            runs = sweep(chunk, executor=args.workers, store=store, ensemble_size=1)
        else:
            runs = [store.get_or_train(c) for c in chunk]
        for c, run in zip(chunk, runs):
            rec = run_record(run, family, command=command.strip(), date=datetime.date.today().isoformat(),
                             machine=f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores".strip(),
                             threads=args.threads, workers=args.workers, device=store.device.type,
                             torch_version=torch.__version__)
            write_record(out, rec)
            print(f"{c.hash()} lr {c.lr:g} wd {c.weight_decay:g} seed {c.seed}: {rec['outcome']}, t2 {rec['t2']}, "
                  f"t4 {rec['t4']}, final val {rec['final_val_acc']:.3f}, {run.wall_time_s:.0f} s", flush=True)

if __name__ == "__main__":
    main()
