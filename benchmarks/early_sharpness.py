"""Early sharpness of every corpus run (issue 34, part 3): lambda_max and lambda_min of the
Hessian of the training loss (every training example, float64) at the weights that end
the 400-step window (step 399), for the leaderboard's entry "early sharpness".

The records keep no weights, so each run is replayed from scratch to step 399 in stacks
of ``--batch`` (:func:`grokbook.training.replay_weights`; nothing is read from or written
to a run store) and checked against its record by the weight norm there
(:func:`grokbook.experiments.sharpness.norm_agreement`, at most 1e-4 relative). One CSV
per family, ``data/sharpness/<family>.csv``, rewritten after each stack: resumable (the
runs a file holds are kept), commit it as it grows. Each row carries the command, date,
machine, threads and torch version.

    python benchmarks/early_sharpness.py [--family NAME ...] [--threads 1] [--batch 16]
        [--limit N] [--out data/sharpness]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from grokbook.experiments import sharpness
from grokbook.experiments.leaderboard import FAMILIES
from grokbook.experiments.records import corpus_dir, read_records

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    """The machine in words: architecture, CPU model (Linux) and core count."""
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return " ".join(x for x in (platform.machine(), model or platform.processor(), f"{os.cpu_count()} cores") if x)


def build(family: str, out: Path, *, batch: int, limit: int, extra: dict) -> int:
    """Measure ``family``'s records not yet in its file (at most ``limit``, 0: all),
    rewriting the file after each stack. Returns how many were measured."""
    frame = read_records(corpus_dir(family))
    rows = sharpness.read_family(family, out)
    done = {r["hash"] for r in rows}
    todo = frame[~frame["hash"].isin(done)]
    if limit:
        todo = todo.iloc[:limit]
    print(f"{family}: {len(frame)} records, {len(rows)} measured, {len(todo)} to measure", flush=True)
    order = {h: i for i, h in enumerate(frame["hash"])}
    t0, n = time.time(), 0
    pending = []
    for row in sharpness.measure(todo, batch=batch, **extra):
        pending.append(row)
        n += 1
        if len(pending) >= batch or n == len(todo):
            rows = sorted(rows + pending, key=lambda r: order[r["hash"]])
            sharpness.write_family(rows, family, out)
            pending = []
            print(f"{family}: {len(rows)} of {len(frame)} measured ({time.time() - t0:.0f} s; last lambda_max "
                  f"{row['lambda_max']:.4g}, norm gap {row['norm_rel_diff']:.1e})", flush=True)
    return n


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", action="append", choices=list(FAMILIES), metavar="NAME",
                    help=f"a family to measure (repeatable; default: all): {', '.join(FAMILIES)}")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of this process")
    ap.add_argument("--batch", type=int, default=16, help="runs replayed together, and between two writes")
    ap.add_argument("--limit", type=int, default=0, help="measure at most this many new runs a family (0: all)")
    ap.add_argument("--out", default=str(sharpness.DIR), help="the directory of the families' files")
    args = ap.parse_args(argv)
    if args.batch < 1 or args.threads < 1 or args.limit < 0:
        ap.error("--batch and --threads must be at least 1, --limit at least 0")
    torch.set_num_threads(args.threads)
    command = ("python benchmarks/early_sharpness.py " + " ".join(sys.argv[1:] if argv is None else argv)).strip()
    extra = dict(command=command, date=datetime.date.today().isoformat(), machine=machine(), threads=args.threads,
                 torch_version=torch.__version__)
    for family in dict.fromkeys(args.family or FAMILIES):
        build(family, Path(args.out), batch=args.batch, limit=args.limit, extra=extra)


if __name__ == "__main__":
    main()
