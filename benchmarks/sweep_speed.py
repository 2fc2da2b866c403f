"""Sweep throughput in model-steps per second: the ensemble (all runs stacked, one
batched step, what ``grokbook.sweep`` does by itself) against a loop of single runs
(grokbook's trainer, one run after the other), as a ratio from one run.

``--sweep default`` (the default) times the spectral chapter's own default sweep at
one train fraction: its learning rates x weight decays, read from the chapter's
parameters cell, so the benchmark follows the chapter. ``--sweep paper`` times the
paper's model (p 97, width 128, 2 layers) with ``--models`` learning rates.

    python benchmarks/sweep_speed.py [--sweep default|paper] [--models 32] [--steps 200] [--device cpu|cuda]
"""

import argparse
import time

import torch

from grokbook import RunConfig, grid
from grokbook.chapters import get_chapter
from grokbook.ensemble import fit_ensemble
from grokbook.train import fit


def default_sweep(steps: int) -> list[RunConfig]:
    """The spectral chapter's default grid at its second train fraction (r = 0.5)."""
    prm = {k: p.default for k, p in get_chapter("spectral").parameters.items()}
    base = RunConfig(task=prm["task"], p=prm["p"], n_layers=prm["n_layers"], d_model=prm["d_model"],
                     n_heads=prm["n_heads"], layer_norm=prm["layer_norm"], r=prm["rs"][1], steps=steps)
    return grid(base, lr=prm["lrs"], weight_decay=prm["weight_decays"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sweep", choices=("default", "paper"), default="default")
    ap.add_argument("--models", type=int, default=32, help="runs of the paper sweep")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    if args.sweep == "default":
        configs = default_sweep(args.steps)
    else:
        base = RunConfig(p=97, r=0.5, n_layers=2, d_model=128, layer_norm=True, steps=args.steps)
        configs = grid(base, lr=torch.logspace(-4, -2, args.models).tolist())
    fit_ensemble([c.replace(steps=3) for c in configs[:2]], device=args.device)  # warm-up
    start = time.perf_counter()
    fit_ensemble(configs, device=args.device)
    ens = time.perf_counter() - start
    start = time.perf_counter()
    for c in configs:
        fit(c, progress=False, device=args.device)
    loop = time.perf_counter() - start
    total = len(configs) * args.steps
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu, {torch.get_num_threads()} threads"
    print(f"device {name}; {args.sweep} sweep: {len(configs)} models x {args.steps} steps "
          f"(p {configs[0].p}, width {configs[0].d_model}, {configs[0].n_layers} layers)")
    print(f"ensemble {total / ens:.1f} model-steps/s, loop of single runs {total / loop:.1f} model-steps/s, "
          f"ratio {loop / ens:.2f}")


if __name__ == "__main__":
    main()
