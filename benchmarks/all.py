"""Every CPU benchmark at a reduced size, then one table of their ratios: what
``make benchmark`` runs (under 10 minutes on a 2-core CPU; the full-size figures in
RESULTS.md come from running each script with its defaults).

Each benchmark runs in its own process with ``GROKBOOK_BENCH_TABLE`` naming a file to
which it appends its ratios (``benchmark<TAB>case<TAB>ratio<TAB>meaning`` lines, see
:func:`record`), and into a fresh run store, so nothing is read from an earlier run.

    python benchmarks/all.py [--baseline REF]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def record(benchmark: str, case: str, ratio: float, meaning: str) -> None:
    """Append one ratio to the table file named by ``$GROKBOOK_BENCH_TABLE`` (if set)."""
    path = os.environ.get("GROKBOOK_BENCH_TABLE")
    if path:
        with open(path, "a") as f:
            f.write(f"{benchmark}\t{case}\t{ratio:.3f}\t{meaning}\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", default="", help="a git commit for the sweep benchmark to time against")
    args = ap.parse_args()
    runs = [["trainer_speed.py", "--steps-scale", "0.5", "--repeats", "2"],
            ["sweep_speed.py", "--steps", "100", "--repeats", "1"]
            + (["--baseline", args.baseline] if args.baseline else []),
            ["landscape_speed.py", "--steps", "50", "--tol", "1e-3"],
            ["two_cores.py", "--steps", "300", "--runs", "2", "--repeats", "1"]]
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "table.tsv"
        env = {**os.environ, "GROKBOOK_BENCH_TABLE": str(table), "GROKBOOK_HOME": str(Path(tmp) / "store")}
        for cmd in runs:
            print(f"$ python benchmarks/{' '.join(cmd)}", flush=True)
            start = time.perf_counter()
            subprocess.run([sys.executable, str(HERE / cmd[0]), *cmd[1:]], env=env, check=True)
            print(f"({time.perf_counter() - start:.0f} s)\n", flush=True)
        rows = [line.split("\t") for line in table.read_text().splitlines()]
    width = max(len(f"{b}: {c}") for b, c, _, _ in rows)
    print(f"{'benchmark: case':<{width}}  ratio  meaning")
    for b, c, ratio, meaning in rows:
        print(f"{f'{b}: {c}':<{width}}  {float(ratio):5.2f}  {meaning}")


if __name__ == "__main__":
    main()
