"""Compare every glued value of a chapter before and after a change, on the same run store
(issue 37: a chapter moved into the experiments layer keeps its glued values).

A chapter's glued values are what its prose prints (``{glue:text}`` roles) and its glued
figures. This script executes the chapter (``grokbook.notebooks.run_chapter``) once with
the library and chapter of a git revision (a temporary worktree, put first on
``PYTHONPATH``) and once with the working tree, both on ``$GROKBOOK_HOME``, and compares:
text values must be equal as printed; figures are compared by the SHA-256 of their PNG
(reported, since a figure can move by a pixel without any number changing).

    python benchmarks/glued_values.py data_fraction --rev HEAD [--profile smoke] [--volatile sweep_s] [-p NAME VALUE ...]
    python benchmarks/glued_values.py data_fraction --dump OUT.json [--profile smoke]

Exit status 1 when a text value differs or a key is missing on one side.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def glued(notebook: dict) -> dict[str, str]:
    """``{name: value}`` of every glued output of an executed notebook: the ``text/plain``
    of a value, ``png:<sha256>`` of a figure."""
    out = {}
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if not name:
                continue
            data = output.get("data", {})
            if "image/png" in data:
                out[name] = "png:" + hashlib.sha256(data["image/png"].encode()).hexdigest()[:16]
            else:
                out[name] = data.get("application/papermill.record/text/plain", data.get("text/plain", ""))
    return out


def dump(chapter: str, profile: str | None, values: dict[str, str], path: Path) -> None:
    """Execute ``chapter`` with the ``grokbook`` importable here and write its glued values
    to ``path`` (JSON)."""
    import grokbook
    from grokbook.notebooks import run_chapter

    with tempfile.TemporaryDirectory() as tmp:
        nb = run_chapter(chapter, values, profile=profile, output=Path(tmp) / f"{chapter}.ipynb")
        path.write_text(json.dumps({"grokbook": str(Path(grokbook.__file__).parent),
                                    "values": glued(json.loads(nb.read_text()))}, indent=1, sort_keys=True))


def compare(before: dict[str, str], after: dict[str, str], volatile: tuple[str, ...] = ()) -> int:
    """Print the differences; the number of text values that differ or are missing,
    those named in ``volatile`` (timings) excepted when both sides have them."""
    bad = 0
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a == b:
            continue
        figure = (a or b or "").startswith("png:")
        timing = key in volatile and a is not None and b is not None
        bad += (not figure and not timing) or a is None or b is None
        print(f"{'figure' if figure else 'timing' if timing else 'value '} {key}: {a!r} -> {b!r}")
    n_fig = sum(v.startswith("png:") for v in after.values())
    print(f"{len(after)} glued values ({n_fig} figures): {bad} text value(s) differ or are missing")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("chapter")
    ap.add_argument("--rev", help="compare the chapter at this git revision with the working tree")
    ap.add_argument("--dump", type=Path, help="only write this tree's glued values to this JSON file")
    ap.add_argument("--profile")
    ap.add_argument("--volatile", action="append", default=[], metavar="NAME",
                    help="a glued value that measures time (may differ; reported, not counted)")
    ap.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    args = ap.parse_args()
    values = dict(args.p)
    if args.dump:
        dump(args.chapter, args.profile, values, args.dump)
        return 0
    if not args.rev:
        ap.error("give --rev REV (compare) or --dump FILE")
    with tempfile.TemporaryDirectory() as tmp:
        tree, files = Path(tmp) / "before", {}
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.rev],
                       check=True, capture_output=True)
        try:
            extra = [x for k, v in values.items() for x in ("-p", k, v)]
            profile = ["--profile", args.profile] if args.profile else []
            for side, where in (("before", tree), ("after", ROOT)):
                files[side] = Path(tmp) / f"{side}.json"
                env = dict(os.environ, PYTHONPATH=str(where))
                subprocess.run([sys.executable, str(Path(__file__).resolve()), args.chapter, "--dump",
                                str(files[side]), *profile, *extra], check=True, env=env, cwd=where)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
        before, after = (json.loads(files[s].read_text()) for s in ("before", "after"))
        for side, d in (("before", before), ("after", after)):
            print(f"{side}: grokbook from {d['grokbook']}")
        return 1 if compare(before["values"], after["values"], tuple(args.volatile)) else 0


if __name__ == "__main__":
    sys.exit(main())
