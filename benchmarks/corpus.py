"""The corpus of grokking runs (issue 34, part 1): families of runs trained through the run
store and kept as compact records, one Parquet file per family,
``data/corpus/<family>/<family>.parquet`` (:mod:`grokbook.experiments.records`).

Every family crosses its hyperparameters with two seeds, each setting both the
initialisation and the train/validation split (:func:`grokbook.sweeping.replicates`).
The book's model is ``grokbook.experiments.book_grid.BOOK_MODEL``: one block without LayerNorm, width
32, 4 heads, AdamW (betas 0.9 / 0.98), warm-up 10 steps, full batch, 2000 steps, p 31.
In the book's sweep the model groks, generalizes at once or memorizes, but none of its
420 runs fails to fit; so the other grids reach past it on both sides: weight decay 0
(memorizing) and learning rate x weight decay up to 0.15 (0.03 x 5; chapter 11's search,
to lr 0.04 and wd 2.5, had 3 of 80 trials that never fit), so that a family holds runs
that grok, memorize and never fit. The outcomes are not known before a family is
trained (none of these grids was piloted): read them off its file.

=================  ====  =========================================================  =========
family             runs  design (x seeds {0, 1})                                     core-h
=================  ====  =========================================================  =========
``book_p31``        420  the book's chapter-9 sweep, ``book_grid.book_sweep()``:     0.5-0.9
                         lr {.005 .0075 .01 .015 .02 .03} x wd {.25 .5 .75 1
                         1.25 1.5 2} x r {.4 .5 .6 .7 .8}; the chapter trains
                         it, this script records it from the store
``book_p23``        120  the book's model at p 23: lr {1e-3 3e-3 .01 .03} x          0.1-0.15
                         wd {0 .5 1 2 5} x r {.4 .6 .8}
``mlp_p31``         128  the MLP of chapters 8 and 10 (embeddings 32, 256 ReLU       0.23-0.38
                         units), 3000 steps: lr {1e-3 3e-3 .01 .03} x
                         wd {0 .3 1 3} x r {.3 .45 .6 .8}
``minibatch_p31``   144  the book's model at r .7 (673 training examples):          0.14-0.22
                         batch {64 128 256 512} x warm-up {0 100} x
                         lr {3e-3 .01 .03} x wd {0 1 5}
``sub_p31``         120  the book's model on a - b, the grid of ``book_p23``        0.15-0.25
``x2y2_p31``        120  the book's model on a^2 + b^2, the same grid               0.16-0.27
``budget_4k``       120  the book's model at 4000 steps: lr {3e-3 .01 .03} x         0.24-0.39
                         wd {0 .5 1 2 5} x r {.3 .4 .5 .6}
``grok_p47``         40  the bridge to the authors' model, built by                 6-11
                         ``benchmarks/bridge.py`` (one run a process); listed
                         here, never built by this script
=================  ====  =========================================================  =========

core-h: core-hours to train the family from nothing, as ``--dry-run`` estimates them with
:func:`grokbook.progress.estimate_s` (a few timed steps of each kind of run, validation
left out; ensembles of up to 16 runs, one thread a process: the sweep's default path;
``--workers N`` trains one run a process and costs more), the range of three dry runs on
the 2-core AMD EPYC (x86_64) where the corpus was started, with both cores busy with
other training: the timing of a few steps varies by up to 1.7x from one dry run to the
next there. For scale, the 420 runs of ``book_p31`` recorded 0.96 core-hours of training,
and the bridge takes about 13 minutes a run (8.7 core-hours for 40). Without the bridge
the families come to 1172 runs and about 1.5 to 2.5 core-hours (1.0 to 1.7 for the 752
runs not yet trained). ``data/corpus/README.md`` has a dry run's table with its date.

    GROKBOOK_HOME=STORE python benchmarks/corpus.py [--family NAME ...] [--workers N]
        [--threads 1] [--batch 48] [--limit N] [--dry-run] [--out data/corpus]

Runs go through the run store (``$GROKBOOK_HOME``): a run already stored loads instead of
training, an interrupted run resumes from its checkpoint. Resumable: the runs a family's
file already records are kept, the others are trained (or loaded) in batches of
``--batch`` and the file is rewritten after each batch (commit it as it grows). Each row
carries the ``command``, the ``date`` it was recorded (a run loaded from the store may
have been trained earlier), the ``machine``, the ``threads`` of this process and the
``torch_version``. A record is about 9 KB; the corpus stays under 20 MB.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from grokbook import RunConfig, RunStore, sweep
from grokbook.trainer import stack_key
from grokbook.experiments.records import read_records, run_record, write_records
from grokbook.experiments.book_grid import BOOK_MODEL, book_sweep
from grokbook.progress import estimate_s
from grokbook.sweeping import grid, replicates

ROOT = Path(__file__).resolve().parents[1]
#: Seeds of every family built here (each sets the initialisation and the split).
SEEDS = (0, 1)
#: Runs of an ensemble, as the sweep stacks them by default.
ENSEMBLE = 16
#: About this many bytes a record (book_p31 with the early window's accuracies, norms and validation points: 9.0 KB a run).
RECORD_BYTES = 9_000
#: The corpus must stay under this size (issue 34).
CORPUS_LIMIT_BYTES = 20_000_000
#: The book's model (chapter 9's sweep's base).
BOOK = RunConfig(**BOOK_MODEL)


@dataclass(frozen=True)
class Family:
    """A family of the corpus: its ``name``, a line saying ``what`` it is, its
    ``configs`` (a function, so that the table is cheap to build), for a family built by
    another script that ``script`` (listed, never built here), and the size of the
    ensembles it is trained in (for the estimate of its cost)."""

    name: str
    what: str
    configs: Callable[[], list[RunConfig]]
    script: str = ""
    ensemble: int = ENSEMBLE


def _grid(base: RunConfig, **axes: Sequence) -> list[RunConfig]:
    """``grid(base, **axes)`` with each configuration once per seed of :data:`SEEDS`."""
    return replicates(grid(base, **axes), SEEDS)


def _bridge_configs() -> list[RunConfig]:
    """The bridge's configurations, from ``benchmarks/bridge.py`` itself."""
    spec = importlib.util.spec_from_file_location("grokbook_bridge_script", Path(__file__).with_name("bridge.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.configs()


#: The grid of the families that vary the operation or the prime: learning rates, weight
#: decays and train fractions (with wd 0 the book's model memorizes; lr x wd of 0.1 and
#: more, e.g. 0.03 x 5, is past where chapter 11's trials stopped fitting).
LRS = (1e-3, 3e-3, 0.01, 0.03)
WDS = (0.0, 0.5, 1.0, 2.0, 5.0)
RS = (0.4, 0.6, 0.8)

FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("book_p31", "the book's chapter-9 sweep (book_sweep())", book_sweep),
    Family("book_p23", "the book's transformer at p 23",
           lambda: _grid(BOOK.replace(p=23), lr=LRS, weight_decay=WDS, r=RS)),
    Family("mlp_p31", "the MLP (embeddings 32, 256 ReLU units), 3000 steps",
           lambda: _grid(BOOK.replace(model="mlp", d_mlp=256, steps=3000), lr=LRS,
                         weight_decay=(0.0, 0.3, 1.0, 3.0), r=(0.3, 0.45, 0.6, 0.8))),
    Family("minibatch_p31", "the book's transformer, batch 64..512, warm-up 0 or 100, r 0.7",
           lambda: _grid(BOOK.replace(r=0.7), batch_size=(64, 128, 256, 512), warmup_steps=(0, 100),
                         lr=(3e-3, 0.01, 0.03), weight_decay=(0.0, 1.0, 5.0))),
    Family("sub_p31", "the book's transformer on a - b mod 31",
           lambda: _grid(BOOK.replace(task="sub"), lr=LRS, weight_decay=WDS, r=RS)),
    Family("x2y2_p31", "the book's transformer on a^2 + b^2 mod 31",
           lambda: _grid(BOOK.replace(task="x2+y2"), lr=LRS, weight_decay=WDS, r=RS)),
    Family("budget_4k", "the book's transformer at 4000 steps",
           lambda: _grid(BOOK.replace(steps=4000), lr=(3e-3, 0.01, 0.03), weight_decay=WDS,
                         r=(0.3, 0.4, 0.5, 0.6))),
    Family("grok_p47", "the bridge: the authors' model at p 47, 6000 steps", _bridge_configs,
           script="benchmarks/bridge.py", ensemble=1),  # the bridge trains one run a process
)}


def machine() -> str:
    """The machine in words: architecture, CPU model (Linux) and core count."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return " ".join(x for x in (platform.machine(), model or platform.processor(), f"{os.cpu_count()} cores") if x)


def _kind(c: RunConfig) -> RunConfig:
    """What sets the cost of a step of ``c`` apart from its ensemble's size and its
    train fraction: ``stack_key`` without the split."""
    return stack_key(c).replace(r=0.5, data_seed=0)


def _units(c: RunConfig) -> float:
    """A run's share of its kind's cost: steps x training examples of a full batch (the
    sweep's :func:`grokbook.progress._cost` of one run)."""
    return c.steps * c.r * c.p ** 2


def estimate_core_s(configs: Sequence[RunConfig], threads: int = 1, ensemble: int = ENSEMBLE) -> dict[str, float]:
    """About how many core-seconds each of ``configs`` (by hash) takes to train here in
    ensembles of up to ``ensemble`` stackable runs (the sweep's default path; 1: one run a
    process): :func:`estimate_s` (a few timed steps) of each kind of run (:func:`_kind`)
    separately, so that no kind is scaled from another (the sweep's scaling by ``r p^2``
    does not hold between batch sizes or models), shared among its runs by :func:`_units`."""
    by_key: dict[RunConfig, list[RunConfig]] = {}
    for c in {c.hash(): c for c in configs}.values():
        by_key.setdefault(stack_key(c), []).append(c)
    by_kind: dict[RunConfig, list[list[RunConfig]]] = {}
    for g in by_key.values():
        for i in range(0, len(g), ensemble):
            by_kind.setdefault(_kind(g[0]), []).append(g[i:i + ensemble])
    out: dict[str, float] = {}
    for groups in by_kind.values():
        total = estimate_s(groups, torch.device("cpu"), 1) * threads
        units = sum(_units(c) for g in groups for c in g)
        out.update((c.hash(), total * _units(c) / units) for g in groups for c in g)
    return out


def family_dir(out: Path, name: str) -> Path:
    return Path(out) / name


def recorded(out: Path, family: Family, configs: Sequence[RunConfig]) -> list[dict]:
    """The records of ``family``'s file(s) under ``out`` that belong to its design."""
    old = read_records(family_dir(out, family.name))
    hashes = {c.hash() for c in configs}
    return [] if old.empty else [r for r in old.to_dict("records") if r["hash"] in hashes]


def dry_run(names: Sequence[str], out: Path, store: RunStore, threads: int) -> list[dict]:
    """Print each family's design (runs, estimated core-hours, recorded, stored, to train,
    size) without training, and return the rows."""
    rows = []
    print(f"{'family':<15} {'runs':>5} {'recorded':>8} {'stored':>6} {'to train':>8} {'core-h':>7} "
          f"{'core-h left':>11} {'MB':>5}  design", flush=True)
    for name in names:
        fam = FAMILIES[name]
        configs = fam.configs()
        rec = recorded(out, fam, configs)
        done = {r["hash"] for r in rec}
        stored = [c in store for c in configs]
        todo = [c for c, s in zip(configs, stored) if not s and c.hash() not in done]
        cost = estimate_core_s(configs, threads, fam.ensemble)
        all_s, left_s = sum(cost.values()), sum(cost[c.hash()] for c in todo)
        row = dict(family=name, runs=len(configs), recorded=len(rec), stored=sum(stored), to_train=len(todo),
                   core_h=all_s / 3600, core_h_left=left_s / 3600, mb=len(configs) * RECORD_BYTES / 1e6,
                   what=fam.what + (f" (built by {fam.script})" if fam.script else ""))
        rows.append(row)
        print(f"{name:<15} {row['runs']:>5} {row['recorded']:>8} {row['stored']:>6} {row['to_train']:>8} "
              f"{row['core_h']:>7.2f} {row['core_h_left']:>11.2f} {row['mb']:>5.2f}  {row['what']}", flush=True)
    total = {k: sum(r[k] for r in rows) for k in ("runs", "recorded", "stored", "to_train", "core_h", "core_h_left",
                                                  "mb")}
    print(f"{'total':<15} {total['runs']:>5} {total['recorded']:>8} {total['stored']:>6} {total['to_train']:>8} "
          f"{total['core_h']:>7.2f} {total['core_h_left']:>11.2f} {total['mb']:>5.2f}", flush=True)
    on_disk = sum(p.stat().st_size for p in Path(out).rglob("*.parquet")) if Path(out).is_dir() else 0
    print(f"core-h: core-hours to train the family from nothing (core-h left: its runs neither recorded nor "
          f"stored), estimated on {machine()} by grokbook.progress.estimate_s, {threads} thread(s) a process, "
          f"in ensembles of up to {ENSEMBLE} runs (1 where the family's script trains one run a process)", flush=True)
    print(f"MB: the family's file at {RECORD_BYTES / 1000:.0f} KB a record; {on_disk / 1e6:.1f} MB of Parquet "
          f"under {out} now (the corpus stays under {CORPUS_LIMIT_BYTES / 1e6:.0f} MB)", flush=True)
    if total["mb"] * 1e6 > CORPUS_LIMIT_BYTES:
        print(f"warning: these families alone would take {total['mb']:.0f} MB", flush=True)
    return rows


def build(name: str, out: Path, store: RunStore, *, workers: int, threads: int, batch: int, limit: int,
          command: str, refresh: bool = False) -> int:
    """Record ``name``'s runs not yet in its file, training (or loading) them in batches
    of ``batch`` and rewriting the file after each; at most ``limit`` new runs (0: all).
    ``refresh``: record every run again (from the store where it is there), for a record
    format that gained columns. Returns how many were recorded."""
    fam = FAMILIES[name]
    if fam.script:
        print(f"{name}: built by {fam.script}, not by this script; skipped", flush=True)
        return 0
    configs = fam.configs()
    records = recorded(out, fam, configs)
    done = set() if refresh else {r["hash"] for r in records}
    todo = [c for c in configs if c.hash() not in done]
    if limit:
        todo = todo[:limit]
    print(f"{name}: {len(configs)} runs in the design, {len(records)} recorded, {len(todo)} to record "
          f"({sum(c in store for c in todo)} of them in the store)", flush=True)
    order = {c.hash(): i for i, c in enumerate(configs)}
    extra = dict(command=command, date=datetime.date.today().isoformat(), machine=machine(), threads=threads,
                 torch_version=torch.__version__)
    for start in range(0, len(todo), batch):
        runs = sweep(todo[start:start + batch], executor=workers or None, store=store, progress=False)
        new = {run.config.hash(): run_record(run, name, **extra) for run in runs}
        records = [r for r in records if r["hash"] not in new] + list(new.values())
        records.sort(key=lambda r: order[r["hash"]])
        path = write_records(family_dir(out, name), records, name)
        size = path.stat().st_size
        print(f"{name}: {len(records)} of {len(configs)} runs recorded in {path} ({size / 1e3:.0f} KB, "
              f"{size / len(records) / 1e3:.1f} KB a run)", flush=True)
        if size > 1.6 * RECORD_BYTES * len(records):
            print(f"warning: {path} takes {size / len(records) / 1e3:.1f} KB a run, more than the "
                  f"{RECORD_BYTES / 1000:.0f} KB the corpus's size is planned on", flush=True)
    return len(todo)


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", action="append", choices=sorted(FAMILIES), metavar="NAME",
                    help=f"a family to build (repeatable; default: all): {', '.join(FAMILIES)}")
    ap.add_argument("--workers", type=int, default=0,
                    help="training processes, one run each (0: the sweep's default, ensembles over the cores)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of this process")
    ap.add_argument("--batch", type=int, default=48, help="runs trained between two writes of a family's file")
    ap.add_argument("--limit", type=int, default=0, help="record at most this many new runs in all (0: all)")
    ap.add_argument("--refresh", action="store_true",
                    help="record the families' runs again (loaded from the store where they are there), after "
                         "the record format gained columns; each batch replaces its runs' old records")
    ap.add_argument("--dry-run", action="store_true",
                    help="print each family's design, estimated cost and state; train nothing")
    ap.add_argument("--out", default=str(ROOT / "data" / "corpus"), help="the corpus directory")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = list(dict.fromkeys(args.family or FAMILIES))
    store, out = RunStore(), Path(args.out)
    if args.dry_run:
        dry_run(names, out, store, args.threads)
        return
    command = ("python benchmarks/corpus.py " + " ".join(sys.argv[1:] if argv is None else argv)).strip()
    left = args.limit
    for name in names:
        n = build(name, out, store, workers=args.workers, threads=args.threads, batch=args.batch,
                  limit=left if args.limit else 0, command=command, refresh=args.refresh)
        if args.limit:
            left -= n
            if left <= 0:
                break


if __name__ == "__main__":
    main()
