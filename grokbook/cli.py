"""The ``grokbook`` command: list chapters, run one with new parameters, list the stored
runs, export the runs a chapter used, build the book.

Errors are one line on stderr and exit status 2; the run store's warnings (a corrupt run,
a store others can write to) are one line each, ``grokbook: warning: ...``, whether
this process or a chapter's kernel raised them."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from . import settings
from . import __version__
from . import notebooks
from .notebooks import ChapterError, book_root, find_chapters, get_chapter, run_chapter

if TYPE_CHECKING:
    from .run import Run
    from .store import RunStore


def _chapters(args: argparse.Namespace) -> int:
    chapters = [get_chapter(args.name)] if args.name else find_chapters().values()
    for ch in chapters:
        print(f"{ch.name}: {ch.title}  ({ch.path.relative_to(book_root())})")
        for p in ch.parameters.values():
            print(f"    {p.name:<18} {p.type.__name__:<6} default {p.default!r:<14} {p.help}")
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.device:  # the kernel and the sweep's workers inherit it
        settings.put(settings.DEVICE, args.device)
    if args.figures:  # kernels run in book/: an absolute path
        settings.put(settings.FIGURES, Path(args.figures))
    values = dict(args.param or [])
    if len(values) != len(args.param or []):
        raise ChapterError("a parameter is given twice with -p")
    out = run_chapter(args.chapter, values, profile=args.profile,
                      output=Path(args.output) if args.output else None, html=args.html,
                      log_output=args.verbose, scheduler=args.scheduler)
    print(f"wrote {out}" + (f" and {out.with_suffix('.html')}" if args.html else ""))
    figures = settings.figures()
    if figures:
        print(f"figures as PNG in {figures}")
    return 0


class InputError(ValueError):
    """A file or value the command cannot use; reported in one line, exit status 2."""


def _predict(args: argparse.Namespace) -> int:
    """Assess every curve of every file; exit 0 when each got a yes or no, 1 when some
    could not be scored (undetermined, never fits, diverged: all are still printed), 2
    (InputError) when a file, a curve's length or the model cannot be used at all."""
    from .curves_io import CurveError, read_curves
    from .predict import GrokPredictor

    given = {k: getattr(args, k) for k in ("lr", "weight_decay", "r")}
    if any(v is not None for v in given.values()) and any(v is None for v in given.values()):
        missing = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is None]
        raise InputError(f"give the hyperparameters together: {', '.join(missing)} missing (--lr, --weight-decay "
                         "and --r are read as one set)")
    hyper = given if given["lr"] is not None else None
    try:
        predictor = (GrokPredictor.load(args.model) if args.model
                     else GrokPredictor.default(with_hyperparameters=hyper is not None))
    except ValueError as err:
        raise InputError(str(err)) from None
    if hyper is not None and not predictor.needs_hyperparameters:
        print(f"grokbook: warning: the predictor {args.model} does not read hyperparameters; --lr, --weight-decay "
              "and --r are ignored", file=sys.stderr)
        hyper = None
    elif hyper is None and predictor.needs_hyperparameters:
        raise InputError(f"the predictor {args.model} reads the hyperparameters: give --lr, --weight-decay and --r")
    curves = []
    for name in args.curves:
        try:
            curves += read_curves(Path(name), tag=args.tag)
        except CurveError as err:
            raise InputError(str(err)) from None
    results = []
    for curve in curves:
        try:
            a = predictor.assess(curve.loss, hyper)[0]
        except ValueError as err:
            hint = ""
            if not args.model and hyper is None and "fewer than the window" in str(err):
                from .predict import BOOK_SWEEP_PATH

                hint = (f" (the book sweep's predictor reads 200 steps, fitted on one model only: "
                        f"--model {BOOK_SWEEP_PATH})")
            raise InputError(f"{curve.name}: {str(err).removeprefix('curve 0: ')}{hint}") from None
        notes = [curve.note] if curve.note else []
        if curve.first_step > 1:
            notes.append(f"the first step logged is {curve.first_step}: the window is steps {curve.first_step} to "
                         f"{curve.first_step + predictor.window - 1}, not the start of training")
        results.append({"curve": curve.name, "verdict": a.verdict, "reason": a.reason, "probability": a.probability,
                        "predicted": None if a.probability is None else a.probability >= predictor.threshold,
                        "features": a.features, "window": predictor.window, "threshold": predictor.threshold,
                        "first_step": curve.first_step, "note": "; ".join(notes)})
    unscored = [r["curve"] for r in results if r["verdict"] not in ("yes", "no")]
    if args.json:
        clean = lambda v: None if isinstance(v, float) and not math.isfinite(v) else v
        print(json.dumps([{k: ({f: clean(x) for f, x in v.items()} if isinstance(v, dict) else clean(v))
                           for k, v in r.items()} for r in results], indent=1, allow_nan=False))
        return 1 if unscored else 0
    print(f"P = probability that the run {predictor.label};\nfrom the first {predictor.window} steps of "
          f"each curve; predicted yes at P >= {predictor.threshold:.3f} (keeps {predictor.recall:.0%} of the "
          f"positives it was fitted on)")
    for r in results:
        if r["curve"] in unscored:
            print(f"{r['curve']}: not scored: {r['verdict']}")
        else:
            print(f"{r['curve']}: P = {r['probability']:.3f}  predicted {r['verdict']}")
        print(f"    {r['reason']}")
        if r["note"]:
            print(f"    read: {r['note']}")
        if r["features"]:
            print("    " + "  ".join(f"{k} {v:.4g}" for k, v in r["features"].items()))
    if unscored:
        print(f"{len(unscored)} of {len(results)} curves not scored (exit status 1)")
    return 1 if unscored else 0


def _fit_predictor(args: argparse.Namespace) -> int:
    if args.hyperparameters and args.book_sweep:
        raise InputError("--hyperparameters fits on the corpus; the book sweep's predictor reads the loss only")
    default = ("book_sweep_predictor.json" if args.book_sweep else
               "corpus_predictor_hp.json" if args.hyperparameters else "corpus_predictor.json")
    out = Path(args.output or default)
    if not out.parent.is_dir():
        raise InputError(f"{out.parent} is not a directory")
    if args.book_sweep:
        from .experiments.book_grid import fit_default

        predictor = fit_default()
    else:
        from .experiments import leaderboard as lb
        from .predict import HYPERPARAMETERS
        from .transfer import TRANSFER

        try:
            frame = lb.read_corpus()
        except ValueError as err:
            raise InputError(str(err)) from None
        predictor = lb.fit_corpus(frame, TRANSFER + (HYPERPARAMETERS if args.hyperparameters else ()), lb.WINDOW)
    predictor.save(out)
    print(f"wrote {out}: {predictor.meta['runs']} runs, coefficients "
          + ", ".join(f"{k} {c:+.4f}" for k, c in zip(predictor.features, predictor.coef)))
    return 0


def _export_names(store: RunStore, what: str) -> list[str]:
    """The stored runs to export for ``what``: the runs chapter ``what`` used (as its
    record in the store lists them), else the one run whose name begins with ``what``."""
    from .store import CorruptFile

    stored = store.hashes()
    if what in find_chapters():
        try:
            record = store.chapter_runs(what)
            names = [str(r["hash"]) for r in record["runs"]] if record is not None else None
        except (CorruptFile, ValueError, KeyError, TypeError) as err:
            raise InputError(f"the record of chapter {what!r} in {store.root} cannot be read: {err}") from None
        if names is None:
            raise InputError(f"no record in {store.root} of the runs chapter {what!r} used: run `grokbook run "
                             f"{what}` first (it trains nothing if the book was built with this store)")
        if not names:
            raise InputError(f"chapter {what!r} used no stored run")
        gone = [h for h in names if h not in stored]
        if gone:
            raise InputError(f"{len(gone)} of the runs chapter {what!r} used are no longer in {store.root} (e.g. "
                             f"{gone[0]}): run `grokbook run {what}` again")
        return names
    names = [what] if what in stored else [h for h in stored if h.startswith(what)]
    if not names:
        raise InputError(f"{what!r} is neither a chapter ({', '.join(find_chapters())}) nor a run in {store.root}")
    if len(names) > 1:
        raise InputError(f"{what!r} is ambiguous: {len(names)} stored runs begin with it ({', '.join(names[:3])}"
                         f"{', ...' if len(names) > 3 else ''}); give more of the hash")
    return names


def run_summary(run: "Run") -> dict[str, Any]:
    """What a run did, at the authors' thresholds (:data:`grokbook.experiments.thresholds.AUTHORS`:
    5% and 99%, groks at ``t4 >= 5 t2``): ``outcome`` (one of
    :data:`grokbook.phases.OUTCOMES`), ``t1``..``t4`` (steps; None when never reached),
    ``final_train_acc`` (the last step's training accuracy, on its batch: the training
    split when full batch) and ``final_val_acc`` (the last validation's), fractions."""
    from .experiments.thresholds import AUTHORS

    times = AUTHORS.times(run)
    train_acc, val_acc = run.metrics["train_acc"], run.val_acc
    return {"outcome": AUTHORS.outcome(run), "t1": times.t1, "t2": times.t2, "t3": times.t3, "t4": times.t4,
            "final_train_acc": float(train_acc[-1]) if len(train_acc) else None,
            "final_val_acc": float(val_acc[-1]) if len(val_acc) else None}


def _where(items: Sequence[str]) -> list[tuple[str, Any]]:
    """``--where KEY=VALUE`` filters as ``(field, value)``, the value typed as the
    RunConfig field stores it; :class:`InputError` for a key that is not a field or a
    value of the wrong type."""
    import ast

    from .config import FieldError, RunConfig, check_field

    fields = [f.name for f in dataclasses.fields(RunConfig)]
    kinds = {f.name: str(f.type) for f in dataclasses.fields(RunConfig)}
    filters = []
    for item in items:
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or key not in fields:
            raise InputError(f"--where {item!r}: {'no RunConfig field ' + repr(key) if sep else 'not KEY=VALUE'}; "
                             f"the fields are: {', '.join(fields)}")
        value: Any = raw
        if kinds[key] == "bool":
            words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
            value = words.get(raw.lower(), raw)
        elif kinds[key] != "str":
            try:
                value = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                pass
            if kinds[key] == "int" and isinstance(value, float) and value.is_integer():
                value = int(value)  # 1e3
        try:
            filters.append((key, check_field(key, value, bounds=False)))
        except FieldError:
            raise InputError(f"--where {item!r}: {raw!r} is not a value of {key} ({kinds[key]})") from None
    return filters


def _matches(config: Any, filters: list[tuple[str, Any]]) -> bool:
    """Whether ``config`` has every ``(field, value)`` of ``filters`` (floats to 1e-9)."""
    for key, want in filters:
        have = getattr(config, key)
        if isinstance(want, float):
            if not math.isclose(have, want, rel_tol=1e-9):
                return False
        elif isinstance(want, tuple):
            if len(have) != len(want) or not all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(have, want)):
                return False
        elif have != want:
            return False
    return True


def _runs(args: argparse.Namespace) -> int:
    """List the stored runs, one line each (or CSV): hash, outcome, t2, t4, size on
    disk and the config fields that differ from the defaults, filtered by ``--where``
    and ``--outcome``. Reads each run without its snapshots."""
    import csv

    from .config import RunConfig
    from .phases import OUTCOMES

    filters = _where(args.where or [])  # checked before torch is imported: a bad filter is refused at once
    outcome = " ".join(args.outcome.replace("-", " ").replace("_", " ").split()) if args.outcome else None
    if outcome is not None and outcome not in OUTCOMES:
        raise InputError(f"--outcome {args.outcome!r}: one of {', '.join(OUTCOMES)}")
    from .progress import describe
    from .store import RunStore

    store = RunStore()
    fields = [f.name for f in dataclasses.fields(RunConfig)]
    writer = csv.writer(sys.stdout) if args.csv else None
    if writer:
        writer.writerow(["hash", "outcome", "t1", "t2", "t3", "t4", "final_train_acc", "final_val_acc", "size_bytes",
                         *fields])
    else:
        print(f"{'hash':<16}  {'outcome':<11}  {'t2':>7}  {'t4':>7}  {'size':>8}  config (fields not at their default)")
    shown = total = 0
    names = store.hashes()
    for name in names:
        run = store.load_hash(name, snapshots=False)
        if run is None or not _matches(run.config, filters):
            continue
        summary = run_summary(run)
        if outcome is not None and summary["outcome"] != outcome:
            continue
        size = store.size_on_disk(name)
        shown, total = shown + 1, total + size
        if writer:
            writer.writerow([name, *("" if v is None else v for v in summary.values()), size,
                             *(json.dumps(list(run.config.betas)) if f == "betas" else getattr(run.config, f)
                               for f in fields)])
        else:
            t2, t4 = ("never" if t is None else t for t in (summary["t2"], summary["t4"]))
            print(f"{name:<16}  {summary['outcome']:<11}  {t2:>7}  {t4:>7}  {size / 2**20:>5.1f} MB  "
                  f"{describe(run.config)}")
    print(f"{shown} run{'s' * (shown != 1)} of {len(names)} in {store.root}"
          + (f", {total / 2**20:.0f} MB" if shown else ""), file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    import pandas as pd

    from .store import RunStore

    store = RunStore()
    names = _export_names(store, args.target)
    if args.format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise InputError("--format parquet needs pyarrow: pip install pyarrow") from None
    out = Path(args.output or f"{args.target}_runs")
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create the directory {out}: {err.strerror or err}") from None
    frames = ["steps", "validation"] + ["snapshots"] * args.snapshots
    index = []
    for name in names:
        run = store.load_hash(name)
        if run is None:
            raise InputError(f"the stored run {name} cannot be read")
        fields = {**dataclasses.asdict(run.config), "betas": list(run.config.betas)}  # every field, also at default
        index.append({"hash": name, **fields, **run_summary(run)})
        for what in frames:  # DataFrame.to_csv or .to_parquet
            getattr(run.to_frame(what), f"to_{args.format}")(out / f"{name}.{what}.{args.format}")
    table = pd.DataFrame(index).astype({f"t{i}": "Int64" for i in range(1, 5)})  # never reached: empty
    getattr(table, f"to_{args.format}")(out / f"runs.{args.format}", index=False)
    print(f"wrote {len(names)} run{'s' * (len(names) > 1)} to {out}: runs.{args.format} (one row per run: hash, "
          f"config, outcome, t1..t4, final accuracies) and, per run, "
          + ", ".join(f"HASH.{w}.{args.format}" for w in frames))
    return 0


def _build(args: argparse.Namespace) -> int:
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(book_root()), "--warningiserror",
           "--keep-going"]
    if args.all:
        cmd.append("--all")
    return subprocess.run(cmd).returncode


#: The loggers that still report on an interrupted chapter's kernel after Ctrl-C: nbclient
#: (through papermill's logger, or traitlets' by default) logs "Kernel died while waiting
#: for execute reply.", and asyncio "Task exception was never retrieved" with nbclient's
#: DeadKernelError when the interrupted cell's task is collected, at exit.
AFTER_INTERRUPT_LOGGERS = ("papermill", "traitlets", "asyncio")


def _silence_after_interrupt() -> None:
    """Send :data:`AFTER_INTERRUPT_LOGGERS` nowhere: the command is leaving with its one
    line (exit 130), and what they would add is that the kernel it stopped is gone."""
    import logging

    for name in AFTER_INTERRUPT_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [logging.NullHandler()]
        logger.propagate = False


def _one_line_warnings(previous: Any) -> Any:
    """A ``warnings.showwarning`` for the command: grokbook's own warnings (the
    store's) as one line on stderr, ``grokbook: warning: ...``, and not again when a
    chapter's kernel already relayed the same line; other warnings to ``previous``."""

    def show(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: Optional[str] = None) -> None:
        if not category.__module__.startswith("grokbook"):
            previous(message, category, filename, lineno, file, line)
            return
        text = f"grokbook: warning: {' '.join(str(message).split())}"  # progress.warning_line, without torch
        if text not in notebooks.RELAYED_WARNINGS:
            notebooks.RELAYED_WARNINGS.add(text)
            print(text, file=sys.stderr)

    return show


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="grokbook", description=__doc__)
    parser.add_argument("--version", action="version", version=f"grokbook {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    chapters = sub.add_parser("chapters", help="list the chapters and their parameters")
    chapters.add_argument("name", nargs="?", help="only this chapter")
    chapters.set_defaults(func=_chapters)
    run = sub.add_parser("run", help="execute a chapter with papermill")
    run.add_argument("chapter")
    run.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                     help="set a parameter (repeatable)")
    run.add_argument("--profile", help="a parameter set: a name from book/profiles/ (smoke, paper) or a .yml file")
    run.add_argument("-o", "--output", help="executed notebook (default CHAPTER.ipynb); replaced only if the "
                     "chapter succeeds, else the failed notebook is kept beside it as NAME.failed.ipynb")
    run.add_argument("--html", action="store_true", help="also write a standalone HTML page next to it, as "
                     "the book shows the chapter: hidden code left out, glued values in the prose")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="send the chapter's sweeps to this Dask scheduler (e.g. tcp://host:8786); "
                     "refused if it does not accept a connection within 3 s")
    run.add_argument("--figures", metavar="DIR",
                     help="also write every figure as PNG into DIR (sets GROKBOOK_FIGURES)")
    run.add_argument("--device", choices=["cpu", "cuda", "mps"],
                     help="where to train (sets GROKBOOK_DEVICE; default: CUDA, then MPS, then the CPU)")
    run.add_argument("-v", "--verbose", action="store_true", help="stream cell output")
    run.set_defaults(func=_run)
    predict = sub.add_parser("predict", help="predict from early training-loss curves whether runs will "
                             "generalize (grok or generalize at once)",
                             description="Assess each curve: yes or no (scored), or undetermined (outside what "
                             "the predictor was fitted on), never fits (the loss has not fallen), diverged (NaN or "
                             "inf in the window). Exit status 0 when every curve is scored, 1 when some are not "
                             "(all are printed), 2 when a file or the model cannot be used.")
    predict.add_argument("curves", nargs="+", metavar="CURVE",
                         help="a file of training losses: CSV (a curve per column; a step column such as step, Step "
                         "or _step orders them, time columns are skipped; TensorBoard and W&B CSV exports and "
                         "grokbook's HASH.steps.csv are recognised), NPY, JSON, or TensorBoard event files "
                         "(events.out.tfevents.* or a directory of them; pip install grokbook[tensorboard])")
    predict.add_argument("--tag", metavar="NAME", help="the scalar tag (event files) or column (CSV) to score; "
                         "default: the ones naming a training loss (containing 'loss' and 'train', else 'loss' "
                         "and no held-out word such as 'val')")
    predict.add_argument("--model", metavar="FILE", help="a predictor saved as JSON (default: the one shipped, "
                         "fitted on every family of the corpus of runs, data/corpus/)")
    predict.add_argument("--lr", type=float, metavar="LR", help="the runs' learning rate; with --weight-decay and "
                         "--r, scores with the predictor that also reads the hyperparameters (fitted on the corpus "
                         "of runs, data/corpus/)")
    predict.add_argument("--weight-decay", type=float, metavar="WD", help="the runs' weight decay (0 allowed)")
    predict.add_argument("--r", type=float, metavar="R", help="the runs' train fraction, in (0, 1)")
    predict.add_argument("--json", action="store_true", help="print the results as JSON")
    predict.set_defaults(func=_predict)
    fit = sub.add_parser("fit-predictor", help="regenerate a shipped predictor: by default the one from the "
                         "loss curve alone, fitted on every family of the corpus in data/corpus/ (nothing trained; "
                         "seconds)")
    fit.add_argument("--hyperparameters", action="store_true", help="the one that also reads the "
                     "hyperparameters (lr, weight decay, r), fitted on the same corpus")
    fit.add_argument("--book-sweep", action="store_true", help="instead: the book sweep's predictor (chapter 9's "
                     "sweep of the book's model; trains its 420 runs if the store lacks them: about 20 min on 2 "
                     "cores)")
    fit.add_argument("-o", "--output", help="where to write it (default corpus_predictor.json, "
                     "corpus_predictor_hp.json with --hyperparameters, book_sweep_predictor.json with --book-sweep)")
    fit.set_defaults(func=_fit_predictor)
    export = sub.add_parser("export", help="write stored runs as CSV or Parquet: those a chapter used when last "
                            "run by `grokbook run`, or one run by its hash")
    export.add_argument("target", metavar="RUN_OR_CHAPTER", help="a chapter, or a run's hash (or its first digits)")
    export.add_argument("--format", choices=["csv", "parquet"], default="csv",
                        help="file format (parquet needs pyarrow; default csv)")
    export.add_argument("-o", "--output", metavar="DIR", help="where to write (default ./RUN_OR_CHAPTER_runs/)")
    export.add_argument("--snapshots", action="store_true",
                        help="also write each run's weight snapshots (one column per parameter: large)")
    export.set_defaults(func=_export)
    runs = sub.add_parser("runs", help="list the stored runs: hash, outcome, t2, t4, size, config",
                          description="One line per stored run: its hash, outcome, t2 and t4 at the authors' "
                          "thresholds (99% training and validation accuracy; groks when t4 >= 5 t2), its size on "
                          "disk and the config fields that differ from RunConfig's defaults. A count on stderr.")
    runs.add_argument("--where", action="append", metavar="KEY=VALUE",
                      help="only runs whose RunConfig field KEY equals VALUE (repeatable; e.g. p=97, lr=1e-3)")
    runs.add_argument("--outcome", metavar="OUTCOME",
                      help="only runs with this outcome: groks, generalizes, memorizes, never-fits, diverged")
    runs.add_argument("--csv", action="store_true", help="CSV on stdout: the columns of export's runs.csv, "
                      "and size_bytes")
    runs.set_defaults(func=_runs)
    build = sub.add_parser("build", help="build the book (jupyter-book, warnings are errors)")
    build.add_argument("--all", action="store_true", help="rebuild every page")
    build.set_defaults(func=_build)
    args = parser.parse_args(argv)
    if settings.home():  # kernels run in book/: a relative store path means the caller's directory
        settings.put(settings.HOME, settings.home())
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(warnings.showwarning)
            return args.func(args)
    except (ChapterError, InputError) as err:
        print(f"grokbook: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _silence_after_interrupt()
        where = settings.home() or "the user cache directory"
        print(f"grokbook: interrupted. Finished runs and the checkpoints of runs in training are kept "
              f"in the run store ({where}); the same command resumes from them.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `grokbook chapters | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:  # the store's refusals; the store (torch) is imported only if used
        store = sys.modules.get("grokbook.store")
        if store is None or not isinstance(err, store.StoreError):
            raise
        print(f"grokbook: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
