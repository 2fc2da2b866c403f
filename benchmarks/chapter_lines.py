"""Lines of code in each chapter's code cells, visible and hidden (issue 37's measure of
how thin the chapters are; the target for the whole book is at most 1,200).

    python benchmarks/chapter_lines.py

A cell is hidden when its tags include ``hide-input`` or ``remove-input``; the
parameters cell is counted apart. Blank lines are not counted.
"""

from __future__ import annotations

import re
from pathlib import Path

BOOK = Path(__file__).resolve().parents[1] / "book"
CELL = re.compile(r"```\{code-cell\}[^\n]*\n(.*?)```", re.S)


def count(path: Path) -> dict[str, int]:
    out = {"parameters": 0, "visible": 0, "hidden": 0, "cells": 0}
    for body in CELL.findall(path.read_text()):
        lines = body.splitlines()
        tags = next((ln for ln in lines if ln.startswith(":tags:")), "")
        code = [ln for ln in lines if ln.strip() and not ln.startswith(":")]
        kind = ("parameters" if "parameters" in tags else
                "hidden" if "hide-input" in tags or "remove-input" in tags else "visible")
        out[kind] += len(code)
        out["cells"] += 1
    return out


def main() -> None:
    rows = [(p.stem, count(p)) for p in sorted(BOOK.glob("[0-9][0-9]_*.md"))]
    print("| chapter | cells | parameters | visible | hidden | code (visible + hidden) |")
    print("|---|---|---|---|---|---|")
    tot = {"parameters": 0, "visible": 0, "hidden": 0, "cells": 0}
    for name, c in rows:
        print(f"| {name} | {c['cells']} | {c['parameters']} | {c['visible']} | {c['hidden']} | "
              f"{c['visible'] + c['hidden']} |")
        for k in tot:
            tot[k] += c[k]
    print(f"| **book** | {tot['cells']} | {tot['parameters']} | {tot['visible']} | {tot['hidden']} | "
          f"**{tot['visible'] + tot['hidden']}** |")


if __name__ == "__main__":
    main()
