"""How far a re-training follows its record (issues 32, 33): corpus records re-trained
here for their first ``--steps`` steps, the training loss compared step by step with the
record's window. On the machine that made the records the two are equal; on another,
whose kernels round differently, they agree to float rounding for the first steps and
depart later, as training amplifies a last-bit difference. Prints, per family: the runs,
the largest relative difference over the first ``records.START_STEPS`` steps, and the
first step at which it exceeds 1e-4 (minimum, median; ``--steps`` when never).

    python benchmarks/replay_divergence.py [--family book_p31 ...] [--steps 200] [--per-key 16] [--keys 12]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from grokbook.experiments.records import START_RTOL, START_STEPS, corpus_dir, read_records, row_config, start_losses
from grokbook.trainer import stack_key


def divergence(family: str, steps: int, per_key: int, keys: int) -> dict:
    """Re-train up to ``per_key`` runs of each of the first ``keys`` stacks of ``family``
    for ``steps`` steps; the start's largest relative difference and the first step
    above 1e-4, per run."""
    frame = read_records(corpus_dir(family))
    configs = [row_config(frame.iloc[i]) for i in range(len(frame))]
    groups: dict = {}
    for i, c in enumerate(configs):
        groups.setdefault(stack_key(c), []).append(i)
    chosen = [i for idx in list(groups.values())[:keys] for i in idx[:per_key]]
    start, first = [], []
    for i, live in zip(chosen, start_losses([configs[i] for i in chosen], steps)):
        rec = np.asarray(frame.iloc[i]["window"], np.float64)[:steps]
        rel = np.abs(live - rec) / np.maximum(np.abs(rec), 1e-12)
        start.append(rel[:START_STEPS].max())
        above = np.flatnonzero(rel > START_RTOL)
        first.append(int(above[0]) if len(above) else steps)
    return dict(family=family, date=str(frame.iloc[0]["date"]), runs=len(start), start=max(start),
                first_min=min(first), first_median=float(np.median(first)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", action="append", help="corpus families (default: book_p31 book_p31_seeds budget_4k)")
    ap.add_argument("--steps", type=int, default=200, help="steps re-trained (at most the records' 400)")
    ap.add_argument("--per-key", type=int, default=16, help="runs of each stack re-trained together")
    ap.add_argument("--keys", type=int, default=12, help="stacks (configurations that train together) per family")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"| family (recorded) | runs | largest difference, steps 0-{START_STEPS - 1} | first step above "
          f"{START_RTOL:g}: min / median ({args.steps}: never) |\n|---|---|---|---|")
    for family in args.family or ["book_p31", "book_p31_seeds", "budget_4k"]:
        d = divergence(family, args.steps, args.per_key, args.keys)
        print(f"| {d['family']} ({d['date']}) | {d['runs']} | {d['start']:.1e} | {d['first_min']} / "
              f"{d['first_median']:g} |", flush=True)


if __name__ == "__main__":
    main()
