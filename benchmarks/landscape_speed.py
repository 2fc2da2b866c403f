"""Landscape and Hessian speed on this machine.

1. Extreme Hessian eigenvalues (lambda_min, lambda_max) of the paper's model (p 97,
   width 128, 2 layers) at one checkpoint, on the full training set (4705 examples):
   wall time (target <= 60 s on the CPU) and the time of one Hessian-vector product.
2. A 1-D slice of 21 points (train and validation loss and accuracy) of chapter 1's
   model, batched (``slice_1d``, vmap) against the one-point-at-a-time loop, as a ratio.

    python benchmarks/landscape_speed.py [--steps 200] [--device cpu|cuda]
"""

import argparse
import time

import torch

from grokbook import RunConfig
from grokbook.hessian import extreme_eigenvalues, make_hvp
from grokbook.landscape import filter_normalize, flat_params, random_direction, slice_1d, slice_1d_loop
from grokbook.train import fit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200, help="training steps before the checkpoint")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    paper = RunConfig(p=97, r=0.5, n_layers=2, d_model=128, lr=1e-3, layer_norm=True, steps=args.steps)
    run = fit(paper, progress=False, device=args.device)
    model, data = run.model_at(paper.steps).to(args.device), run.dataset()
    x, y = data.train_x.to(args.device), data.train_y.to(args.device)
    hvp = make_hvp(model, x, y)

    start = time.perf_counter()
    hvp(torch.randn(run.snapshots.shape[1], device=args.device))
    one_hvp = time.perf_counter() - start
    start = time.perf_counter()
    lmin, lmax = extreme_eigenvalues(model, x, y)
    eig = time.perf_counter() - start
    print(f"paper model after {paper.steps} steps, {run.snapshots.shape[1]:,} parameters, {len(y)} examples, "
          f"{args.device}: one HVP {one_hvp:.2f} s; extreme eigenvalues {eig:.1f} s "
          f"(lambda_min {lmin:.4g}, lambda_max {lmax:.4g}; target <= 60 s)")

    ch1 = RunConfig(p=47, r=0.5, n_layers=2, d_model=64, layer_norm=False, lr=3e-3, steps=args.steps)
    run = fit(ch1, progress=False, device=args.device)
    model, data = run.model_at(ch1.steps), run.dataset()
    theta = flat_params(model)
    d = filter_normalize(random_direction(model, seed=0), model)
    alphas = torch.linspace(-1, 1, 21)
    batches = {"train": (data.train_x, data.train_y), "val": (data.val_x, data.val_y)}
    start = time.perf_counter()
    slice_1d(model, theta, d, alphas, batches, method="vmap")
    batched = time.perf_counter() - start
    start = time.perf_counter()
    slice_1d_loop(model, theta, d, alphas, batches)
    loop = time.perf_counter() - start
    print(f"1-D slice, 21 points, chapter-1 model: batched {batched:.2f} s, loop {loop:.2f} s, "
          f"ratio loop / batched {loop / batched:.2f}")


if __name__ == "__main__":
    main()
