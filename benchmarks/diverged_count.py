"""How much a sweep could save by stopping diverged runs (issue 36): the runs of the
given run stores and of the committed corpus records that diverged, and the row-steps
trained after their divergence.

    python benchmarks/diverged_count.py [STORE ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

from grokbook import RunStore
from grokbook.experiments.records import read_records


def main() -> None:
    runs = diverged = after = steps = 0
    for home in sys.argv[1:]:
        store = RunStore(home)
        for h in store.hashes():
            run = store.load_hash(h, snapshots=False)
            if run is None:
                continue
            runs, steps = runs + 1, steps + run.config.steps
            if run.diverged_at is not None:
                diverged, after = diverged + 1, after + run.config.steps - run.diverged_at
    print(f"stores: {runs} runs, {diverged} diverged, {after} of {steps} row-steps after divergence")
    corpus = Path(__file__).resolve().parents[1] / "data" / "corpus"
    for d in sorted(p for p in corpus.iterdir() if p.is_dir()):
        frame = read_records(d)
        print(f"{d.name}: {len(frame)} records, {int((frame.outcome == 'diverged').sum())} diverged")


if __name__ == "__main__":
    main()
