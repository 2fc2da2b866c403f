"""The ``grokbook`` command: list chapters, run one with new parameters, build the book."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

from . import __version__
from .chapters import ChapterError, book_root, find_chapters, get_chapter, run_chapter


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
    run.add_argument("--profile", help="a parameter set from book/profiles/ (e.g. smoke, paper)")
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
    build = sub.add_parser("build", help="build the book (jupyter-book, warnings are errors)")
    build.add_argument("--all", action="store_true", help="rebuild every page")
    build.set_defaults(func=_build)
    args = parser.parse_args(argv)
    home = os.environ.get("GROKBOOK_HOME")
    if home:  # kernels run in book/: a relative store path means the caller's directory
        os.environ["GROKBOOK_HOME"] = str(Path(home).expanduser().absolute())
    try:
        return args.func(args)
    except ChapterError as err:
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
