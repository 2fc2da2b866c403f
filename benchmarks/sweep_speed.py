"""Sweep throughput in model-steps per second, as ratios from one run.

* ``sweep``: ``grokbook.sweep`` as it runs by itself (into a fresh store): ensembles,
  spread over one process per core on a multi-core CPU when the sweep is big enough;
* ``ensemble``: every group stacked and trained in this process (``fit_ensemble``);
* ``loop``: a loop of single runs through the trainer (default threads);
* ``baseline``, with ``--baseline REF``: ``grokbook.sweep`` of the same configurations
  with the package as it was at the git commit ``REF`` (exported to a temporary
  directory and run in a child process), so that a speed-up is measured against the
  earlier code on the same machine in the same minutes.

The timings are interleaved and repeated: on a shared VM a single timing has varied by
1.5x between back-to-back runs.

``--sweep default`` (the default) times the spectral chapter's own default sweep
(learning rates x weight decays x train fractions, read from the chapter's parameters
cell, so the benchmark follows the chapter) with ``--steps`` steps per run.
``--sweep paper`` times the paper's model (p 97, width 128, 2 layers) with
``--models`` learning rates (one group, so ``sweep`` is the in-process ensemble).

    python benchmarks/sweep_speed.py [--sweep default|paper] [--models 32] [--steps 500]
        [--repeats 3] [--device cpu|cuda] [--baseline REF] [--skip loop,ensemble] [--fractions 0.4,0.8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import torch

from grokbook import RunConfig, RunStore, grid, sweep
from grokbook.notebooks import get_chapter
from grokbook.ensemble import fit_ensemble
from grokbook.sweeping import _ensemble_groups
from grokbook.training import fit
from all import record

ROOT = Path(__file__).resolve().parent.parent
#: The child that times the baseline: reads the configurations from a JSON file, prints
#: seconds. Everything under the main guard: the sweep's worker processes import it.
CHILD = ("import json, sys, tempfile, time\n"
         "from grokbook import RunConfig, RunStore, sweep\n"
         "if __name__ == '__main__':\n"
         "    configs = [RunConfig.from_dict(d) for d in json.load(open(sys.argv[1]))]\n"
         "    with tempfile.TemporaryDirectory() as tmp:\n"
         "        start = time.perf_counter(); sweep(configs, store=RunStore(tmp), progress=False)\n"
         "        print(time.perf_counter() - start)\n")


def default_sweep(steps: int, rs: Sequence[float] = ()) -> list[RunConfig]:
    """The spectral chapter's default grid (one seed), ``steps`` steps per run; only the
    train fractions ``rs`` when given."""
    prm = {k: p.default for k, p in get_chapter("spectral").parameters.items()}
    prm["rs"] = [r for r in prm["rs"] if not rs or r in rs]
    base = RunConfig(task=prm["task"], p=prm["p"], n_layers=prm["n_layers"], d_model=prm["d_model"],
                     n_heads=prm["n_heads"], layer_norm=prm["layer_norm"], steps=steps)
    return [c for r in prm["rs"] for c in grid(base.replace(r=r), lr=prm["lrs"], weight_decay=prm["weight_decays"])]


def export(ref: str, into: str) -> str:
    """The ``grokbook`` package at git commit ``ref``, written under ``into``; the path
    to put on ``PYTHONPATH``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "grokbook"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    return into


def time_baseline(path: str, configs: list[RunConfig], device: str) -> float:
    """Seconds of ``sweep(configs)`` with the package at ``path``, in a child process
    (a script file, so that its sweep may start worker processes)."""
    script, listing = Path(path) / "time_sweep.py", Path(path) / "configs.json"
    script.write_text(CHILD)
    listing.write_text(json.dumps([c.to_dict() for c in configs]))
    env = {**os.environ, "PYTHONPATH": path, "GROKBOOK_DEVICE": device}
    out = subprocess.run([sys.executable, str(script), str(listing)], capture_output=True, text=True,
                         env=env, cwd=path)
    if out.returncode:
        raise RuntimeError(f"the baseline's sweep failed:\n{out.stderr}")
    return float(out.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sweep", choices=("default", "paper"), default="default")
    ap.add_argument("--models", type=int, default=32, help="runs of the paper sweep")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats of the timings")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--baseline", default="", help="a git commit to time grokbook.sweep against")
    ap.add_argument("--skip", default="", help="comma-separated timings not to take: loop, ensemble")
    ap.add_argument("--fractions", default="", help="comma-separated train fractions of the default sweep "
                    "to keep (default: all)")
    args = ap.parse_args()
    if args.sweep == "default":
        configs = default_sweep(args.steps, [float(r) for r in args.fractions.split(",") if r])
    else:
        base = RunConfig(p=97, r=0.5, n_layers=2, d_model=128, layer_norm=True, steps=args.steps)
        configs = grid(base, lr=torch.logspace(-4, -2, args.models).tolist())
    fit_ensemble([c.replace(steps=3) for c in configs[:2]], device=args.device)  # warm-up
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else \
        f"cpu, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    print(f"device {name}; {args.sweep} sweep: {len(configs)} models x {args.steps} steps "
          f"(p {configs[0].p}, width {configs[0].d_model}, {configs[0].n_layers} layers)")
    total = len(configs) * args.steps
    skip = {s for s in args.skip.split(",") if s}
    with tempfile.TemporaryDirectory() as base_dir:
        base_path = export(args.baseline, base_dir) if args.baseline else ""
        rates: dict[str, list[float]] = {}
        for rep in range(args.repeats):
            times = {}
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                sweep(configs, store=RunStore(tmp), progress=False)
                times["sweep"] = time.perf_counter() - start
            if base_path:
                times["baseline"] = time_baseline(base_path, configs, args.device)
            if "ensemble" not in skip:
                start = time.perf_counter()
                for group in _ensemble_groups(configs, 16):
                    fit_ensemble(group, device=args.device)
                times["ensemble"] = time.perf_counter() - start
            if "loop" not in skip:
                start = time.perf_counter()
                for c in configs:
                    fit(c, progress=False, device=args.device)
                times["loop"] = time.perf_counter() - start
            for k, t in times.items():
                rates.setdefault(k, []).append(total / t)
            print(f"repeat {rep + 1}: " + ", ".join(f"{k} {total / t:.1f}" for k, t in times.items())
                  + " model-steps/s", flush=True)
    print("model-steps/s, median of the repeats: "
          + ", ".join(f"{k} {statistics.median(r):.1f}" for k, r in rates.items()))
    for ref in ("baseline", "loop"):
        if ref in rates:
            ratios = {k: [a / b for a, b in zip(r, rates[ref])] for k, r in rates.items() if k != ref}
            print(f"ratio to the {ref} (per repeat, then the median): " + "; ".join(
                f"{k} {', '.join(f'{x:.2f}' for x in r)} -> {statistics.median(r):.2f}" for k, r in ratios.items()))
            for k, r in ratios.items():
                if ref == "loop" or k == "sweep":
                    record("sweep", f"{args.sweep} sweep, {k} / {ref}", statistics.median(r),
                           f"model-steps per second, median of {args.repeats} (>1: faster)")


if __name__ == "__main__":
    main()
