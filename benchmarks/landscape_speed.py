"""Landscape and Hessian speed on this machine.

1. Extreme Hessian eigenvalues (lambda_min, lambda_max) of the paper's model (p 97,
   width 128, 2 layers) at one checkpoint, on the full training set (4704 examples):
   wall time (target <= 60 s on the CPU), the number of Hessian-vector products and
   the time of one, at the default tolerance and at the Hessian chapter's.
2. A 1-D slice of 21 points (train and validation loss and accuracy) of chapter 1's
   model: vmap over points, ``slice_1d``'s default (``method="auto"``) and the
   one-point-at-a-time reference loop, as ratios against the loop.

    python benchmarks/landscape_speed.py [--steps 200] [--device cpu|cuda] [--tol 1e-4 1e-3]

The two models are trained (``--steps`` steps) through the run store, so only the
first call pays for the training.
"""

import argparse
import time

import torch

import grokbook.hessian as hessian
from grokbook import RunConfig
from grokbook.landscape import filter_normalize, flat_params, random_direction, slice_1d, slice_1d_loop
from grokbook.store import RunStore
from all import record


def counting_hvp(counter: list[int]):
    """``hessian.make_hvp``, counting the products each operator computes in ``counter``."""
    make = hessian.make_hvp

    def make_counting(*args, **kwargs):
        apply = make(*args, **kwargs)

        def counted(v):
            counter[0] += 1
            return apply(v)
        return counted
    return make_counting


def best_of(fn, repeats: int = 3) -> float:
    """Smallest wall time of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200, help="training steps before the checkpoint")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tol", type=float, nargs="+", default=[1e-4, 1e-3],
                    help="Lanczos tolerances to time (default: the function's and the chapter's)")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    paper = RunConfig(p=97, r=0.5, n_layers=2, d_model=128, lr=1e-3, layer_norm=True, steps=args.steps)
    store = RunStore(device=args.device)  # the runs are trained once and then read from the store
    run = store.get_or_train(paper, progress=False)
    model, data = run.model_at(paper.steps).to(args.device), run.dataset()
    x, y = data.train_x.to(args.device), data.train_y.to(args.device)
    n = run.snapshots.shape[1]
    hvp = hessian.make_hvp(model, x, y)
    v = torch.randn(n, device=args.device)
    hvp(v)  # the first product allocates
    one_hvp = best_of(lambda: hvp(v))
    del hvp
    print(f"paper model after {paper.steps} steps, {n:,} parameters, {len(y)} examples, "
          f"{args.device}: one HVP {one_hvp:.2f} s (best of 3)")
    counter = [0]
    hessian.make_hvp = counting_hvp(counter)
    for tol in args.tol:
        counter[0] = 0
        start = time.perf_counter()
        lmin, lmax = hessian.extreme_eigenvalues(model, x, y, tol=tol)
        eig = time.perf_counter() - start
        print(f"  extreme eigenvalues, tol {tol:g}: {eig:.1f} s, {counter[0]} HVPs "
              f"(lambda_min {lmin:.6g}, lambda_max {lmax:.6g}; target <= 60 s)")

    ch1 = RunConfig(p=47, r=0.5, n_layers=2, d_model=64, layer_norm=False, lr=3e-3, steps=args.steps)
    run = store.get_or_train(ch1, progress=False)
    model, data = run.model_at(ch1.steps), run.dataset()
    theta = flat_params(model)
    d = filter_normalize(random_direction(model, seed=0), model)
    alphas = torch.linspace(-1, 1, 21)
    batches = {"train": (data.train_x, data.train_y), "val": (data.val_x, data.val_y)}
    ways = {"vmap (chunk 8)": lambda: slice_1d(model, theta, d, alphas, batches, method="vmap"),
            "default (auto)": lambda: slice_1d(model, theta, d, alphas, batches),
            "reference loop": lambda: slice_1d_loop(model, theta, d, alphas, batches)}
    times = {k: float("inf") for k in ways}
    for _ in range(5):  # interleaved, so that a busy moment does not favour one way
        for k, fn in ways.items():
            times[k] = min(times[k], best_of(fn, repeats=1))
    loop = times["reference loop"]
    print(f"1-D slice, 21 points, chapter-1 model ({len(data.train_y)} + {len(data.val_y)} examples), "
          "best of 5: " + ", ".join(f"{k} {t:.2f} s (loop / it {loop / t:.2f})" for k, t in times.items()))
    for k in ("vmap (chunk 8)", "default (auto)"):
        record("landscape", f"1-D slice, {k}", loop / times[k], "reference loop's time / its time (>1: faster)")


if __name__ == "__main__":
    main()
