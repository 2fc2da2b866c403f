"""The landscape chapters' pool of fresh seeds, offline (issue 32): grokking runs of
chapter 1's configuration on seeds no test of the book had used (100-104, each setting
the initialisation and the data split, as the chapters' seeds do), trained
through the run store (``$GROKBOOK_HOME``) and measured for each chapter that reads them:

- ``hessian`` (chapter 7, ``data/pool/hessian_p47.csv``): the loss spikes after t2 (spike
  factors 3, 5 and 10), the quiet steps between them and the initial descent's steps at
  the spikes' loss, and the extreme eigenvalues of the Hessian there, on the chapter's
  256-example subset and on the whole training set (the runs replayed to those steps);
- ``valleys`` (chapter 5, ``data/pool/valleys_p47.csv``): the training-loss barrier on
  the segment that leaves the memorizing phase and on one segment within each phase;
- ``trajectory`` (chapter 6, ``data/pool/trajectory_p47.csv``): planarity and its nulls
  under both snapshot schedules;
- ``pictures`` (chapter 6, ``data/pool/pictures_p47.csv``): the shape of the memorizing
  stretch (t2 to t4, evenly spaced snapshots) and the barriers on its chord and along it,
  the signatures of the talk's three pictures;
- ``controls`` (chapter 7, ``data/pool/hessian_matched_p47.csv`` and
  ``hessian_matched_spikes_p47.csv``): matched controls of the fresh seeds, the same
  configuration without weight decay (same initialisation, split and training examples),
  and the eigenvalues of both runs of a pair at the same snapshot steps, and at the
  control's own spikes (not part of the default ``--parts``);
- ``maps`` (chapter 5, ``data/pool/valleys_maps_p47.csv``): the time x alpha slice
  maps of one run (seed 0) at each of the talk's train fractions, r 0.30 and 0.85 (not
  part of the default ``--parts``);
- ``lazy`` (chapter 4, ``data/pool/lazy_p47.csv``): the talk's weight cosine
  ``cos(theta_t, theta_t+1)`` of each fresh grokking run and its matched control, against
  the optimiser fed gradients without signal (not part of the default ``--parts``);
- ``slingshot`` (chapter 3, ``data/pool/slingshot_p47.csv``): each fresh run and its
  repeats under each intervention (the gradient norm clipped at the 0.5 and 0.9 quantiles
  of its own gradient norms after step 100; Adam's epsilon at its typical gradient
  coordinate; the Grokfast filter): loss spikes, phase times, outcome (not part of the
  default ``--parts``);
- ``adam_long`` (chapter 3, ``data/pool/adam_long_p47.csv``): chapter 1's configuration
  with Adam and no weight decay at learning rate 1e-2 for 20,000 steps, on fresh seeds
  100-102 (not part of the default ``--parts``);
- ``lu`` (chapter 8, ``data/pool/lu_transformer_p47.csv``): chapter 1's transformer on
  its seeds 0-2, free, without weight decay (the control) and held at each fixed norm of
  ``lu.transformer_norms``: phase times, final losses, norms (not part of the default
  ``--parts``);
- ``digits`` (chapter 8, ``data/pool/lu_digits.csv``): the digits MLP with the large
  initialisation and its standard-init control on ``lu.DIGITS_SEEDS`` (not part of the
  default ``--parts``);
- ``registered`` (chapter 7, ``data/pool/hessian_registered_p47.csv``): not fresh seeds
  but the registered seeds 0-2, whose spike eigenvalues the chapter replays; recorded so
  that the build replays one of them (not part of the default ``--parts``);
- ``trajectory_controls`` (chapter 6, ``trajectory_p47.csv`` and ``pictures_p47.csv``):
  the fresh seeds' matched controls without weight decay (chapter 7's), their planarity
  and their stretch's picture (not part of the default ``--parts``);
- ``starts`` (every chapter that reads the pool, ``data/pool/starts.csv``): the first
  ``records.START_STEPS`` training losses of every configuration above, against which a
  chapter checks that a seed it re-trains is the recorded run
  (:func:`grokbook.experiments.records.start_check`; not part of the default ``--parts``).

Each file is rewritten atomically after each seed, and a seed already in it is skipped,
so the script resumes.

    python benchmarks/pool.py [--parts hessian valleys trajectory pictures] [--seeds 100 ...] [--threads 1]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch

from grokbook import RunConfig, RunStore
from grokbook.sweeping import replicates
from grokbook.experiments import hessian as eh, interventions as ei, lazy as el, lu as elu, trajectory as et, valleys as ev
from grokbook.experiments import slingshot as esl
from grokbook.experiments.thresholds import for_chapter
from grokbook.phases import run_phase_times

#: Chapter 1's default configuration, which chapters 5-7 share (a test keeps it equal
#: to their parameters cells).
CONFIG = RunConfig(task="add", p=47, r=0.5, n_layers=2, d_model=64, n_heads=4, arch="book", layer_norm=False,
                   lr=0.003, weight_decay=1.0, batch_size=0, steps=4000)
SEEDS = (100, 101, 102, 103, 104)


def thresholds(chapter: str, settings: dict):
    """``chapter``'s thresholds object, after checking that they are the ones ``settings``
    (a record's) were measured at."""
    th = for_chapter(chapter)
    if (th.leave, th.reach) != (settings["leave"], settings["reach"]):
        raise SystemExit(f"{chapter}'s thresholds {th} are not the record's {settings}")
    return th


def record_runs(store, th, rows: list, named, measure, save, label: str) -> None:
    """For each ``(name, config)`` of ``named`` without a row in ``rows``: train it (or
    load it) through ``store``, append ``measure(run, times, name)`` (a list of rows) to
    ``rows`` and ``save(rows)`` at once, so that an interrupted part resumes."""
    for name, config in named:
        if any(r["config"] == config.hash() for r in rows):
            continue
        start = time.perf_counter()
        run = store.get_or_train(config)
        times = run_phase_times(run, leave=th.leave, reach=th.reach)
        new = measure(run, times, name)
        rows += new
        save(rows)
        print(f"{label} {name} seed {config.seed}: {times}, {len(new)} rows, {time.perf_counter() - start:.0f} s",
              flush=True)


def measure_hessian(run, times):
    s = eh.POOL_SETTINGS
    return eh.measure_steps([run], [times], window=s["window"], spike_factors=eh.POOL_FACTORS,
                            max_spikes=s["max_spikes"], examples=eh.POOL_EXAMPLES, tol=s["tol"],
                            float64=s["float64"], processes=1)


def measure_valleys(run, times):
    moment = ev.moment_steps(run.snapshot_steps, times.t2, times.t4)[1]
    return ev.measure_barriers(run, times, moment, ev.POOL_SETTINGS["n_points"])


def measure_trajectory(run, times):
    return et.measure_planarity(run, times, et.POOL_SETTINGS["n_walks"])


def measure_pictures(run, times):
    row = et.measure_picture(run, times)
    return [] if row is None else [row]


def registered(store, out) -> None:
    """Chapter 7's registered seeds (0-2): its spike rows as the chapter computes them
    (the same subsets, replays and eigenvalues), recorded so that the build replays one
    seed live instead of all three."""
    s = eh.REGISTERED_SETTINGS
    th = thresholds("07_hessian", s)
    from grokbook.tasks import make_dataset

    configs = replicates([CONFIG], s["seeds"])
    controls = [c.replace(r=s["control_r"]) for c in configs]
    idx = eh.drawn_subsets([len(make_dataset(c).train_y) for c in configs + controls], s["n_hvp"])
    rows = []
    for k, config in enumerate(configs):
        start = time.perf_counter()
        run = store.get_or_train(config)
        t2 = run_phase_times(run, leave=th.leave, reach=th.reach).t2 or 0
        spikes, quiet = eh.spike_and_quiet_steps(run.metrics["train_loss"], t2, window=s["window"],
                                                 spike_factor=s["spike_factor"], max_spikes=s["max_spikes"])
        from grokbook.training import replay_weights

        weights = replay_weights([config], spikes + quiet)[0]
        rows += eh.spike_rows(run, spikes, quiet, weights, idx[k], tol=s["tol"], float64=s["float64"])
        eh.write_registered(rows, out / eh.REGISTERED_FILE.name)
        print(f"registered seed {config.seed}: spikes {spikes}, quiet {quiet}, {time.perf_counter() - start:.0f} s",
              flush=True)


def controls(store, out, seeds) -> None:
    """Chapter 7's matched controls: for each fresh seed, the grokking run and its control
    without weight decay (same initialisation, split and examples), the eigenvalues at the
    same snapshot steps (``hessian_matched_p47.csv``) and at the control's own spikes
    (``hessian_matched_spikes_p47.csv``, the pool's spike factors and examples)."""
    s, ps = eh.MATCHED_SETTINGS, eh.POOL_SETTINGS
    th = thresholds("07_hessian", s)
    paths = out / eh.MATCHED_FILE.name, out / eh.MATCHED_SPIKES_FILE.name
    pairs, spikes = eh.read_matched(paths[0]), eh.read_pool(paths[1])
    for config in replicates([CONFIG], seeds):
        control = config.replace(**eh.MATCHED_CHANGE)
        if any(r["config"] == control.hash() for r in pairs):
            continue
        start = time.perf_counter()
        runs = {"grokking": store.get_or_train(config), "control": store.get_or_train(control)}
        times = {g: run_phase_times(run, leave=th.leave, reach=th.reach) for g, run in runs.items()}
        new_spikes = eh.measure_steps([runs["control"]], [times["control"]], window=ps["window"],
                                      spike_factors=eh.POOL_FACTORS, max_spikes=ps["max_spikes"],
                                      examples=eh.POOL_EXAMPLES, tol=ps["tol"], float64=ps["float64"], processes=1)
        spikes = [r for r in spikes if r["config"] != control.hash()] + new_spikes  # an interrupted seed's rows go
        eh.write_pool(spikes, paths[1])
        new = eh.measure_matched(runs, times, n_snapshots=s["n_snapshots"], examples=s["examples"], tol=s["tol"],
                                 float64=s["float64"])
        pairs += new
        eh.write_matched(pairs, paths[0])  # last: a seed counts as done once its pairs are written
        print(f"controls seed {config.seed}: {times}, {len(new)} pair rows, {len(new_spikes)} spike rows, "
              f"{time.perf_counter() - start:.0f} s", flush=True)


def maps(store, out) -> None:
    """Chapter 5's time x alpha maps at the talk's train fractions (r 0.30 and 0.85, seed
    0 as the chapter's map), one run each (``valleys_maps_p47.csv``)."""
    s = ev.MAP_SETTINGS
    path = out / ev.MAP_FILE.name
    alphas = torch.linspace(-s["alpha_max"], s["alpha_max"], s["n_alphas"])
    named = [(f"r {c.r:g}", c) for c in replicates([CONFIG.replace(r=f) for f in ev.MAP_FRACTIONS], [0])]
    record_runs(store, thresholds("05_valleys", s), ev.read_maps(path), named,
                lambda run, times, _: ev.map_rows(run, times, alphas, s["direction_seed"]),
                lambda rows: ev.write_maps(rows, path), "maps")


def lazy(store, out, seeds) -> None:
    """Chapter 4's weight-cosine test on the fresh seeds: each grokking run and its matched
    control without weight decay (``lazy_p47.csv``)."""
    path = out / el.POOL_FILE.name
    named = [(g, c) for config in replicates([CONFIG], seeds)
             for g, c in (("grokking", config), ("control", config.replace(**eh.MATCHED_CHANGE)))]
    record_runs(store, thresholds("04_lazy", el.POOL_SETTINGS), el.read_pool(path), named,
                lambda run, times, group: [el.measure(run, times, group)],
                lambda rows: el.write_pool(rows, path), "lazy")


def recorded_levels(rows, config) -> dict | None:
    """The free run's gradient-norm quantiles as its recorded clipped repeats hold them
    (their ``grad_clip``), checked against their config hashes; None when not all are there."""
    mine = {r["arm"]: r for r in rows if r["seed"] == config.seed}
    qs = sorted({*ei.QUANTILES, ei.EPS_QUANTILE})
    if not all(ei.arm_name(q) in mine for q in qs):
        return None
    levels = {q: mine[ei.arm_name(q)]["grad_clip"] for q in qs}
    for q in qs:
        if config.replace(grad_clip=levels[q]).hash() != mine[ei.arm_name(q)]["config"]:
            raise SystemExit(f"seed {config.seed}: the recorded clip at q{q:g} is not this configuration's")
    return levels


def slingshot(store, out, seeds) -> None:
    """Chapter 3's counterfactual on the fresh seeds: each free run and the same run under
    each intervention of ``interventions.arm_configs`` (``slingshot_p47.csv``). The free
    run's gradient-norm quantiles are read from its recorded clipped repeats when they
    are there (the free run is not trained again), else measured on it."""
    s = ei.POOL_SETTINGS
    th = thresholds("03_slingshot", s)
    path = out / ei.POOL_FILE.name
    rows = ei.read_pool(path)
    for config in replicates([CONFIG], seeds):
        levels = recorded_levels(rows, config)
        if levels is None:
            levels = ei.gradient_levels(store.get_or_train(config).metrics["grad_norm"], s["skip"])
        arms = [(ei.arm_name(None), config)] + ei.arm_configs(config, levels)
        record_runs(store, th, rows, arms, lambda run, times, arm: [ei.measure(run, times, arm)],
                    lambda rows_: ei.write_pool(rows_, path), "slingshot")


#: Chapter 8's digits MLP at its defaults (a test keeps it equal to the chapter's
#: parameters cell): the large initialisation; the control is at init scale 1.
DIGITS = RunConfig(task="digits", r=0.2, model="mlp", n_layers=2, d_mlp=200, loss="mse", init_scale=8.0, lr=0.003,
                   weight_decay=0.1, warmup_steps=0, steps=4000, n_snapshots=4)


def adam_long(store, out) -> None:
    """Chapter 3's Adam without weight decay at a budget that could show grokking:
    ``slingshot.ADAM_LONG`` on ``slingshot.ADAM_LONG_SEEDS`` (``adam_long_p47.csv``)."""
    path = out / esl.ADAM_LONG_FILE.name
    adam = CONFIG.replace(optimizer="adam", weight_decay=0.0, **esl.ADAM_LONG)
    record_runs(store, thresholds("03_slingshot", ei.POOL_SETTINGS), esl.read_adam_long(path),
                [("adam", c) for c in replicates([adam], esl.ADAM_LONG_SEEDS)],
                lambda run, times, _: [esl.measure_adam_long(run, times)], lambda rows: esl.write_adam_long(rows, path),
                "adam_long")


def lu(store, out) -> None:
    """Chapter 8's elimination on chapter 1's transformer (seeds 0-2): each seed's free
    run, its control without weight decay and its fixed-norm runs
    (``lu_transformer_p47.csv``)."""
    path = out / elu.POOL_FILE.name
    record_runs(store, thresholds("08_lu", dict(leave=0.2, reach=elu.POOL_SETTINGS["reach"])), elu.read_pool(path),
                elu.transformer_configs(CONFIG, (0, 1, 2)), lambda run, times, arm: [elu.measure(run, arm)],
                lambda rows: elu.write_pool(rows, path), "lu")


def digits(store, out) -> None:
    """Chapter 8's digits induction on ``lu.DIGITS_SEEDS``: the large initialisation and
    its standard-init control (``lu_digits.csv``)."""
    path = out / elu.DIGITS_FILE.name
    named = [(arm, c) for c0 in replicates([DIGITS], elu.DIGITS_SEEDS)
             for arm, c in (("large init", c0), ("control", c0.replace(init_scale=1.0)))]
    s = elu.DIGITS_SETTINGS
    record_runs(store, thresholds("08_lu", dict(leave=s["leave"], reach=s["reach"])), elu.read_digits(path), named,
                lambda run, times, arm: [elu.measure_digits(run, arm)], lambda rows: elu.write_digits(rows, path),
                "digits")


def trajectory_controls(store, out, seeds) -> None:
    """Chapter 6's matched controls: each fresh seed without weight decay (chapter 7's
    controls, ``hessian.MATCHED_CHANGE``), its planarity under both schedules added to
    ``trajectory_p47.csv`` and its stretch's picture to ``pictures_p47.csv`` (rows by
    config hash; the chapter reads the grokking runs' and the controls' apart)."""
    th = thresholds("06_trajectory", et.POOL_SETTINGS)
    named = [("control", c.replace(**eh.MATCHED_CHANGE)) for c in replicates([CONFIG], seeds)]
    path, pic_path = out / et.POOL_FILE.name, out / et.PICTURE_POOL_FILE.name
    record_runs(store, th, et.read_pool(path), named, lambda run, times, _: measure_trajectory(run, times),
                lambda rows: et.write_pool(rows, path), "trajectory controls")
    record_runs(store, th, et.read_pictures(pic_path), named, lambda run, times, _: measure_pictures(run, times),
                lambda rows: et.write_pictures(rows, pic_path), "picture controls")


def starts(out) -> None:
    """The reference starts of every configuration of the pool (``starts.csv``): the
    fresh seeds, their controls, the maps, the interventions' arms (their clip levels
    read from the recorded rows), the long Adam runs, the LU and digits runs and the
    registered seeds. Ten steps each: seconds, no store."""
    from grokbook.experiments.records import write_starts

    fresh = replicates([CONFIG], SEEDS)
    configs = fresh + [c.replace(**eh.MATCHED_CHANGE) for c in fresh] + replicates([CONFIG], (0, 1, 2))
    configs += replicates([CONFIG.replace(r=f) for f in ev.MAP_FRACTIONS], [0])
    configs += replicates([CONFIG.replace(optimizer="adam", weight_decay=0.0, **esl.ADAM_LONG)], esl.ADAM_LONG_SEEDS)
    configs += [c for _, c in elu.transformer_configs(CONFIG, (0, 1, 2))]
    configs += [c for c0 in replicates([DIGITS], elu.DIGITS_SEEDS) for c in (c0, c0.replace(init_scale=1.0))]
    rows = ei.read_pool(out / ei.POOL_FILE.name)
    for config in fresh:
        levels = recorded_levels(rows, config)
        if levels is not None:
            configs += [c for _, c in ei.arm_configs(config, levels)]
    configs = list({c.hash(): c for c in configs}.values())
    path = write_starts(configs, out / "starts.csv")
    print(f"starts: {len(configs)} configurations in {path}", flush=True)


#: part -> (module (its POOL_SETTINGS), chapter, file, read, write, measure(run, times) -> rows)
PARTS = {"hessian": (eh, "07_hessian", eh.POOL_FILE, eh.read_pool, eh.write_pool, measure_hessian),
         "valleys": (ev, "05_valleys", ev.POOL_FILE, ev.read_pool, ev.write_pool, measure_valleys),
         "trajectory": (et, "06_trajectory", et.POOL_FILE, et.read_pool, et.write_pool, measure_trajectory),
         "pictures": (et, "06_trajectory", et.PICTURE_POOL_FILE, et.read_pictures, et.write_pictures,
                      measure_pictures)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", nargs="+", default=list(PARTS),
                    choices=list(PARTS) + ["registered", "controls", "maps", "lazy", "slingshot", "adam_long", "lu",
                                           "digits", "starts", "trajectory_controls"],  # the latter: `own` in the loop below
                    help="registered: chapter 7's registered seeds 0-2 (read from the store chapter 1 fills); "
                         "controls: chapter 7's matched controls (no weight decay) of the fresh seeds; "
                         "maps: chapter 5's slice maps at r 0.30 and 0.85; lazy: chapter 4's weight cosines "
                         "of the fresh seeds and their matched controls; slingshot: chapter 3's interventions "
                         "on the fresh seeds; adam_long: chapter 3's Adam without weight decay at 5x the steps; "
                         "lu: chapter 8's elimination on chapter 1's transformer; digits: "
                         "chapter 8's digits induction on more seeds; starts: the first training losses of every "
                         "configuration of the pool, the reference of the chapters' live checks")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=eh.POOL_FILE.parent, help="directory of the tables")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    store = RunStore()
    own = {"registered": lambda: registered(store, args.out), "slingshot": lambda: slingshot(store, args.out, args.seeds),
           "adam_long": lambda: adam_long(store, args.out), "lu": lambda: lu(store, args.out),
           "digits": lambda: digits(store, args.out), "lazy": lambda: lazy(store, args.out, args.seeds),
           "maps": lambda: maps(store, args.out), "controls": lambda: controls(store, args.out, args.seeds),
           "starts": lambda: starts(args.out),
           "trajectory_controls": lambda: trajectory_controls(store, args.out, args.seeds)}
    for part in args.parts:
        if part in own:
            own[part]()
            continue
        module, chapter, file, read, write, measure = PARTS[part]
        path = args.out / file.name
        record_runs(store, thresholds(chapter, module.POOL_SETTINGS), read(path),
                    [("fresh", c) for c in replicates([CONFIG], args.seeds)],
                    lambda run, times, _: measure(run, times), lambda rows: write(rows, path), part)
    print(f"{datetime.date.today().isoformat()} python benchmarks/pool.py {' '.join(sys.argv[1:])}; "
          f"{platform.machine()} {os.cpu_count()} cores, {args.threads} thread(s), torch {torch.__version__}")


if __name__ == "__main__":
    main()
