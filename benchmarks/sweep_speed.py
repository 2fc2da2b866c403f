"""Sweep throughput in model-steps per second: the ensemble (all runs stacked, one
batched step) against a loop of single runs (grokbook's trainer, one run after the
other), for a small grid, as a ratio from one run.

    python benchmarks/sweep_speed.py [--models 8] [--steps 200] [--device cpu|cuda] [--paper]
"""

import argparse
import time

import torch

from grokbook import RunConfig, grid
from grokbook.ensemble import fit_ensemble
from grokbook.train import fit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=8)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--paper", action="store_true", help="the paper's model (p 97, width 128) instead")
    args = ap.parse_args()
    base = (RunConfig(p=97, r=0.5, n_layers=2, d_model=128, lr=1e-4, layer_norm=True) if args.paper else
            RunConfig(p=47, r=0.5, n_layers=2, d_model=64, lr=3e-3, layer_norm=False))
    base = base.replace(steps=args.steps)
    lrs = torch.logspace(-4, -2, args.models).tolist()
    configs = grid(base, lr=lrs)
    fit_ensemble([c.replace(steps=3) for c in configs[:2]], device=args.device)  # warm-up
    start = time.perf_counter()
    fit_ensemble(configs, device=args.device)
    ens = time.perf_counter() - start
    start = time.perf_counter()
    for c in configs:
        fit(c, progress=False, device=args.device)
    loop = time.perf_counter() - start
    total = args.models * args.steps
    print(f"device {args.device}, {'paper' if args.paper else 'default'} model, {args.models} models x {args.steps} steps")
    print(f"ensemble {total / ens:.1f} model-steps/s, loop of single runs {total / loop:.1f} model-steps/s, "
          f"ratio {loop / ens:.2f}")


if __name__ == "__main__":
    main()
