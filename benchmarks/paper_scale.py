"""The authors' recipe at a few sizes and learning rates: the scale ladder of
``book/paper_scale.md``.

The recipe is the `paper` profile's (openai/grok's post-LN transformer, arch ``grok``;
AdamW, weight decay 1, warm-up 10 steps, full batch, r = 0.5); the ladder varies the
prime ``p``, the width and the learning rate, and reports the phase times with the
authors' thresholds (t2: training accuracy >= 99%, t4: validation accuracy >= 99%), the
final validation accuracy and the seconds per step on this machine. Runs go through
the run store (``GROKBOOK_HOME``), so an interrupted ladder resumes where it stopped
and a finished one prints its table at once.

    python benchmarks/paper_scale.py                # the CPU ladder
    python benchmarks/paper_scale.py --full         # the paper's full setting only (p 97, width 128, lr 1e-3, 10k steps)
    python benchmarks/paper_scale.py --threads 1    # as the recorded figures were measured
    python benchmarks/paper_scale.py --pilot grok   # the sweep chapters' small model: outcomes on a grid

    python benchmarks/paper_scale.py --pilot-sweep  # the pilot that set the sweep chapters' grid

``--pilot ARCH`` trains a one-block, width-32 model at p 23 (post-LN for ``grok``, no
LayerNorm for ``book``) for 3000 steps on a 27-run grid (r 0.3, 0.5, 0.8 x lr 1e-3, 3e-3,
1e-2 x weight decay 0.3, 1, 3) and counts the outcomes (:func:`grokbook.phases.outcome`,
t4 >= 10 t2 for "groks"). ``--pilot-sweep`` does the same for the book's model at p 31 on
the 48-run grid (r 0.3, 0.5, 0.7 x lr 0.01, 0.02, 0.03, 0.05 x weight decay 0.5, 1, 2, 3)
from which the spectral and prediction chapters' grid was set (seed 0 only).
"""

from __future__ import annotations

import argparse
import datetime
import platform

import torch

from grokbook import RunConfig, RunStore
from grokbook.phases import OUTCOMES, outcome, run_phase_times
from grokbook.sweeping import grid, sweep

#: The authors' recipe (see ``book/profiles/paper.yml``).
RECIPE = RunConfig(arch="grok", task="add", p=97, r=0.5, n_layers=2, d_model=128, n_heads=4,
                   lr=1e-3, weight_decay=1.0, batch_size=0, steps=10_000)
#: ``(p, width, steps)``: the ladder's sizes, each at every learning rate of ``LRS``.
SIZES = [(23, 32, 10_000), (47, 64, 6_000)]
LRS = [1e-3, 3e-3, 1e-2]


def row(run, device: str) -> str:
    c = run.config
    times = run_phase_times(run, leave=0.05, reach=0.99)
    t2, t4 = times.t2, times.t4
    ratio = f"{t4 / max(t2, 1):.1f}" if t2 is not None and t4 is not None else "-"
    per_step = run.wall_time_s / max(len(run.metrics["train_loss"]), 1)
    fmt = lambda t: "-" if t is None else str(t)
    return (f"| {c.p} | {c.d_model} | {c.lr:g} | {c.lr * c.weight_decay:g} | {c.steps} | {fmt(t2)} | "
            f"{fmt(t4)} | {ratio} | {run.val_acc[-1]:.3f} | {per_step * 1000:.0f} | {device} |")


def pilot(arch: str, p: int, rs: list[float], lrs: list[float], wds: list[float]) -> None:
    base = RunConfig(arch=arch, p=p, n_layers=1, d_model=32, steps=3000, layer_norm=arch == "grok")
    configs = [c for r in rs for c in grid(base.replace(r=r), lr=lrs, weight_decay=wds)]
    runs = sweep(configs, progress=False)
    print(f"| r | lr | wd | t2 | t4 | outcome | final val acc |  ({arch}, {datetime.date.today()})")
    counts = dict.fromkeys(OUTCOMES, 0)
    for run in runs:
        c, times = run.config, run_phase_times(run, leave=0.05, reach=0.99)
        label = outcome(times, diverged=run.diverged_at is not None)
        counts[label] += 1
        print(f"| {c.r} | {c.lr:g} | {c.weight_decay:g} | {times.t2} | {times.t4} | {label} | {run.val_acc[-1]:.2f} |")
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="only the paper's full setting")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--pilot", choices=["book", "grok"], help="a one-block model at p 23 on a 27-run grid")
    ap.add_argument("--pilot-sweep", action="store_true", help="the pilot of the sweep chapters' grid")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.pilot:
        return pilot(args.pilot, 23, [0.3, 0.5, 0.8], [1e-3, 3e-3, 1e-2], [0.3, 1.0, 3.0])
    if args.pilot_sweep:
        return pilot("book", 31, [0.3, 0.5, 0.7], [0.01, 0.02, 0.03, 0.05], [0.5, 1.0, 2.0, 3.0])
    store = RunStore(checkpoint_every_s=120)
    if args.full:
        configs = [RECIPE]
    else:
        configs = [c for p, width, steps in SIZES
                   for c in grid(RECIPE.replace(p=p, d_model=width, steps=steps), lr=LRS)]
    device = f"{platform.processor() or platform.machine()} cpu, {torch.get_num_threads()} thread(s)"
    print(f"# {datetime.date.today()}, torch {torch.__version__}, {device}, store {store}")
    print("| p | width | lr | lr*wd | steps | t2 | t4 | t4/t2 | final val acc | ms/step | device |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for config in configs:  # one at a time: the per-step time is then a single run's
        print(row(store.get_or_train(config, progress=False), device), flush=True)


if __name__ == "__main__":  # the sweep of --pilot may start worker processes
    main()
