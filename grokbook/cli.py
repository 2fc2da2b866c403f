"""The ``grokbook`` command: list chapters, run one with new parameters, export the runs it
used, build the book."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from . import __version__
from .chapters import ChapterError, book_root, find_chapters, get_chapter, run_chapter

if TYPE_CHECKING:
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
        os.environ["GROKBOOK_DEVICE"] = args.device
    if args.figures:  # kernels run in book/: an absolute path
        os.environ["GROKBOOK_FIGURES"] = str(Path(args.figures).expanduser().absolute())
    values = dict(args.param or [])
    if len(values) != len(args.param or []):
        raise ChapterError("a parameter is given twice with -p")
    out = run_chapter(args.chapter, values, profile=args.profile,
                      output=Path(args.output) if args.output else None, html=args.html,
                      log_output=args.verbose, scheduler=args.scheduler)
    print(f"wrote {out}" + (f" and {out.with_suffix('.html')}" if args.html else ""))
    figures = os.environ.get("GROKBOOK_FIGURES")
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

    try:
        predictor = GrokPredictor.load(args.model) if args.model else GrokPredictor.default()
    except ValueError as err:
        raise InputError(str(err)) from None
    curves = []
    for name in args.curves:
        try:
            curves += read_curves(Path(name), tag=args.tag)
        except CurveError as err:
            raise InputError(str(err)) from None
    results = []
    for curve in curves:
        try:
            a = predictor.assess(curve.loss)[0]
        except ValueError as err:
            raise InputError(f"{curve.name}: {str(err).removeprefix('curve 0: ')}") from None
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
    from .predict import fit_default

    out = Path(args.output)
    if not out.parent.is_dir():
        raise InputError(f"{out.parent} is not a directory")
    predictor = fit_default()
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
        index.append({"hash": name, **run.config.to_dict()})
        for what in frames:  # DataFrame.to_csv or .to_parquet
            getattr(run.to_frame(what), f"to_{args.format}")(out / f"{name}.{what}.{args.format}")
    getattr(pd.DataFrame(index), f"to_{args.format}")(out / f"runs.{args.format}", index=False)
    print(f"wrote {len(names)} run{'s' * (len(names) > 1)} to {out}: runs.{args.format} (one row per run: hash "
          f"and config) and, per run, " + ", ".join(f"HASH.{w}.{args.format}" for w in frames))
    return 0


def _build(args: argparse.Namespace) -> int:
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(book_root()), "--warningiserror",
           "--keep-going"]
    if args.all:
        cmd.append("--all")
    return subprocess.run(cmd).returncode


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
    run.add_argument("--html", action="store_true", help="also write HTML next to it")
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
                         "fitted on the book's sweep)")
    predict.add_argument("--json", action="store_true", help="print the results as JSON")
    predict.set_defaults(func=_predict)
    fit = sub.add_parser("fit-predictor", help="regenerate the default predictor from the book's sweep "
                         "(trains the sweep's 420 runs if the store lacks them: about 20 min on 2 cores)")
    fit.add_argument("-o", "--output", default="default_predictor.json", help="where to write it")
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
    build = sub.add_parser("build", help="build the book (jupyter-book, warnings are errors)")
    build.add_argument("--all", action="store_true", help="rebuild every page")
    build.set_defaults(func=_build)
    args = parser.parse_args(argv)
    home = os.environ.get("GROKBOOK_HOME")
    if home:  # kernels run in book/: a relative store path means the caller's directory
        os.environ["GROKBOOK_HOME"] = str(Path(home).expanduser().absolute())
    try:
        return args.func(args)
    except (ChapterError, InputError) as err:
        print(f"grokbook: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = os.environ.get("GROKBOOK_HOME") or "the user cache directory"
        print(f"grokbook: interrupted. Finished runs and the checkpoints of runs in training are kept "
              f"in the run store ({where}); the same command resumes from them.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `grokbook chapters | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
