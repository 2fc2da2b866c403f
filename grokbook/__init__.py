"""grokbook: the library behind the book *Predicting grokking long before it happens*.

Only :class:`RunConfig` is imported eagerly; the names that need torch load on first
use, so that ``grokbook --help`` and ``grokbook chapters`` start without it.
"""

from importlib import import_module
from typing import Any

from .config import RunConfig

_LAZY = {"Run": ".run", "RunStore": ".store", "train": ".store", "grid": ".sweeping", "sweep": ".sweeping"}

__all__ = ["RunConfig", "Run", "RunStore", "grid", "sweep", "train"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
