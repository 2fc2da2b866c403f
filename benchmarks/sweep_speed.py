"""Sweep throughput in model-steps per second against a loop of single runs
(grokbook's trainer, one run after the other, default threads), as ratios from one run:

* ``sweep``: ``grokbook.sweep`` as it runs by itself (into a fresh store): ensembles,
  spread over one process per core on a multi-core CPU when the sweep is big enough;
* ``ensemble``: every group stacked and trained in this process (``fit_ensemble``).

``--sweep default`` (the default) times the spectral chapter's own default sweep
(learning rates x weight decays x train fractions, read from the chapter's parameters
cell, so the benchmark follows the chapter) with ``--steps`` steps per run.
``--sweep paper`` times the paper's model (p 97, width 128, 2 layers) with
``--models`` learning rates (one group, so ``sweep`` is the in-process ensemble).

    python benchmarks/sweep_speed.py [--sweep default|paper] [--models 32] [--steps 500] [--repeats 3] [--device cpu|cuda]
"""

import argparse
import os
import statistics
import tempfile
import time

import torch

from grokbook import RunConfig, RunStore, grid, sweep
from grokbook.chapters import get_chapter
from grokbook.ensemble import fit_ensemble
from grokbook.sweeping import _ensemble_groups
from grokbook.training import fit


def default_sweep(steps: int) -> list[RunConfig]:
    """The spectral chapter's default grid, ``steps`` steps per run."""
    prm = {k: p.default for k, p in get_chapter("spectral").parameters.items()}
    base = RunConfig(task=prm["task"], p=prm["p"], n_layers=prm["n_layers"], d_model=prm["d_model"],
                     n_heads=prm["n_heads"], layer_norm=prm["layer_norm"], steps=steps)
    return [c for r in prm["rs"] for c in grid(base.replace(r=r), lr=prm["lrs"], weight_decay=prm["weight_decays"])]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sweep", choices=("default", "paper"), default="default")
    ap.add_argument("--models", type=int, default=32, help="runs of the paper sweep")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats of the three timings")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    if args.sweep == "default":
        configs = default_sweep(args.steps)
    else:
        base = RunConfig(p=97, r=0.5, n_layers=2, d_model=128, layer_norm=True, steps=args.steps)
        configs = grid(base, lr=torch.logspace(-4, -2, args.models).tolist())
    fit_ensemble([c.replace(steps=3) for c in configs[:2]], device=args.device)  # warm-up
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else \
        f"cpu, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    print(f"device {name}; {args.sweep} sweep: {len(configs)} models x {args.steps} steps "
          f"(p {configs[0].p}, width {configs[0].d_model}, {configs[0].n_layers} layers)")
    total = len(configs) * args.steps
    ratios: dict[str, list[float]] = {"sweep": [], "ensemble": []}
    # The three are interleaved and repeated: on a shared VM a single timing of the loop
    # has varied by 1.5x between back-to-back runs.
    for rep in range(args.repeats):
        times = {}
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            sweep(configs, store=RunStore(tmp), progress=False)
            times["sweep"] = time.perf_counter() - start
        start = time.perf_counter()
        for group in _ensemble_groups(configs, 16):
            fit_ensemble(group, device=args.device)
        times["ensemble"] = time.perf_counter() - start
        start = time.perf_counter()
        for c in configs:
            fit(c, progress=False, device=args.device)
        times["loop"] = time.perf_counter() - start
        for k in ratios:
            ratios[k].append(times["loop"] / times[k])
        print(f"repeat {rep + 1}: " + ", ".join(f"{k} {total / t:.1f}" for k, t in times.items())
              + " model-steps/s; ratio to the loop: " + ", ".join(f"{k} {r[-1]:.2f}" for k, r in ratios.items()),
              flush=True)
    print("median ratio to the loop: " + ", ".join(
        f"{'in-process ' if k == 'ensemble' else ''}{k} {statistics.median(r):.2f} (range {min(r):.2f}-{max(r):.2f})"
        for k, r in ratios.items()))


if __name__ == "__main__":
    main()
