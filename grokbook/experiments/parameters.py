"""A chapter's parameters as one dataclass: the fields are the names of the chapter's
``parameters`` cell, with the same defaults, and the comment after each field is the
help text ``grokbook chapters NAME`` shows (a test keeps the two equal).

:class:`ChapterParameters` is the base: ``Params.of(globals())`` inside the notebook
collects the values papermill injected.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import tokenize
from typing import Any, Mapping, TypeVar

P = TypeVar("P", bound="ChapterParameters")


@dataclasses.dataclass(frozen=True)
class ChapterParameters:
    """Base of the chapters' parameter dataclasses."""

    @classmethod
    def of(cls: type[P], namespace: Mapping[str, Any]) -> P:
        """The parameters named by this dataclass's fields, taken from ``namespace`` (a
        notebook's ``globals()``); a missing name raises ``KeyError`` naming it."""
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in namespace]
        if missing:
            raise KeyError(f"{cls.__qualname__}: the namespace lacks {', '.join(missing)}")
        return cls(**{f.name: namespace[f.name] for f in dataclasses.fields(cls)})

    @classmethod
    def help(cls) -> dict[str, str]:
        """``{field: the comment after it in the class body}`` (empty string if none)."""
        return field_comments(cls)


def field_comments(cls: type) -> dict[str, str]:
    """The comment on the line of each dataclass field of ``cls`` (its own body only),
    ``{name: text}`` without the ``#``; fields without one map to ``""``."""
    names = [f.name for f in dataclasses.fields(cls)]
    source = inspect.getsource(cls)
    out: dict[str, str] = {}
    line_name: dict[int, str] = {}
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for i, tok in enumerate(tokens):
        # a field: NAME at the start of a logical line followed by ':' (annotation)
        if (tok.type == tokenize.NAME and tok.string in names and i + 1 < len(tokens)
                and tokens[i + 1].string == ":" and (i == 0 or tokens[i - 1].type in (tokenize.INDENT, tokenize.NEWLINE,
                                                                                      tokenize.NL, tokenize.DEDENT))):
            line_name[tok.start[0]] = tok.string
        elif tok.type == tokenize.COMMENT and tok.start[0] in line_name:
            out[line_name[tok.start[0]]] = tok.string.lstrip("#").strip()
    return {n: out.get(n, "") for n in names}
