"""Each chapter against the paper: the table of the parameters in which a chapter's
current values depart from the ``paper`` profile, with the reason for each
(``book/paper_deviations.yml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml

from ..notebooks import ChapterError, book_root, get_chapter, load_profile, short_value


def deviations(chapter: str, root: Optional[Path] = None) -> dict[str, str]:
    """Why ``chapter``'s defaults depart from the paper profile: its section of
    ``book/paper_deviations.yml`` (parameter to reason)."""
    path = (root or book_root()) / "book" / "paper_deviations.yml"
    data = yaml.safe_load(path.read_text()) or {}
    return {k: str(v) for k, v in (data.get(chapter) or {}).items()}


def _same_kind(value: Any, default: Any) -> bool:
    """Whether ``value`` could be a value of a parameter whose default is ``default``:
    numbers with numbers (bools only with bools), strings with strings, sequences with
    sequences; anything where the default is None."""
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float))
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def versus_paper(chapter: str, values: dict[str, Any], reasons: Optional[dict[str, str]] = None,
                 root: Optional[Path] = None) -> str:
    """The table "this chapter vs the paper" in Markdown, for the chapter's current
    ``values`` (a notebook passes its ``globals()``).

    One row per parameter that the ``paper`` profile sets for ``chapter`` and whose
    value here differs from the paper's: the value here, the paper's, and why. Where
    the chapter's default differs, the why is ``reasons[name]`` (by default the
    chapter's section of ``book/paper_deviations.yml``); where a value was set
    for this execution (a ``-p`` value or a profile), the row says so. A last line lists
    the parameters equal to the paper's.

    Raises :class:`ChapterError` when a default differs from the paper without a
    reason, or when ``reasons`` names a parameter the paper profile does not set.
    """
    ch = get_chapter(chapter, root)
    paper = load_profile("paper", ch, root)
    reasons = deviations(chapter, root) if reasons is None else reasons
    stray = sorted(set(reasons) - set(paper))
    if stray:
        raise ChapterError(f"chapter {chapter!r}: reasons given for {', '.join(stray)}, which the paper "
                           f"profile does not set")
    rows, same = [], []
    for name, theirs in paper.items():
        ours = values[name]
        default = ch.parameters[name].default
        if not _same_kind(ours, default):
            raise ChapterError(f"chapter {chapter!r}: {name} is {type(ours).__name__} {short_value(ours)} here, "
                               f"not a {type(default).__name__} like its default: the chapter's code rebound the "
                               f"parameter's name (a loop variable?)")
        if ours == theirs:
            same.append(name)
            continue
        if ours != ch.parameters[name].default:
            why = "set for this execution (not the chapter's default)"
        elif name in reasons:
            why = reasons[name]
        else:
            raise ChapterError(f"chapter {chapter!r}: its default {name} = {ours!r} differs from the "
                               f"paper's {theirs!r} and no reason is given")
        rows.append(f"| `{name}` | {short_value(ours)} | {short_value(theirs)} | {why} |")
    table = ["| parameter | this chapter | the paper | why |", "|---|---|---|---|", *rows] if rows else []
    tail = f"Equal to the paper's: {', '.join(f'`{n}`' for n in same)}." if same else ""
    return "\n".join(table + ([""] if table and tail else []) + ([tail] if tail else []))
