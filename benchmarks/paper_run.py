"""The chapter-1 model at the paper's settings (p = 97, r = 0.5, width 128, AdamW lr 1e-4,
weight decay 1, full batch, 10k steps), with and without LayerNorm: phase times and the
final validation accuracy. GPU work: about a minute per run on an H100.

    python benchmarks/paper_run.py [--steps 10000] [--device cuda]
"""

import argparse
import time

import torch

from grokbook import RunConfig
from grokbook.phases import run_phase_times
from grokbook.training import fit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    for layer_norm in (True, False):
        cfg = RunConfig(p=97, r=0.5, n_layers=2, d_model=128, n_heads=4, lr=1e-4, weight_decay=1.0,
                        steps=args.steps, layer_norm=layer_norm)
        start = time.perf_counter()
        run = fit(cfg, progress=False, device=args.device)
        print(f"layer_norm={layer_norm}: {time.perf_counter() - start:.0f} s on {args.device}, "
              f"{run_phase_times(run, leave=0.2)}, final validation accuracy {run.val_acc[-1]:.3f}")


if __name__ == "__main__":
    main()
