"""Every environment variable grokbook reads, in one place.

``GROKBOOK_HOME``
    the run store's directory (default: the platform's user cache directory); a
    relative path is taken from the current directory
``GROKBOOK_DEVICE``
    ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` for training (default: CUDA, then MPS, then
    the CPU, whichever is available first)
``GROKBOOK_FIGURES``
    a directory: every chapter figure is also written there as PNG
``GROKBOOK_SHOW_FIGURES``
    set: a figure is shown where it is made (``grokbook run``, whose executed notebook
    has no book to place it)
``GROKBOOK_PROGRESS``
    set and not ``0``: training notices on stderr, or appended to the file it names when
    it is an absolute path (``grokbook run`` sets it for its kernel and the sweep's
    workers)
``GROKBOOK_SCHEDULER``
    a dask scheduler address: sweeps train there
``GROKBOOK_RUNS_LOG``
    a file: every run the store hands out is appended to it as a JSON line (``grokbook
    run`` learns which runs a chapter used)

The ``grokbook`` command sets some of them for the kernels and worker processes it
starts, which inherit the environment. Values are read when asked for, never cached.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Optional

HOME = "GROKBOOK_HOME"
DEVICE = "GROKBOOK_DEVICE"
FIGURES = "GROKBOOK_FIGURES"
SHOW_FIGURES = "GROKBOOK_SHOW_FIGURES"
PROGRESS = "GROKBOOK_PROGRESS"
SCHEDULER = "GROKBOOK_SCHEDULER"
RUNS_LOG = "GROKBOOK_RUNS_LOG"

#: every variable above, with its one-line meaning (``grokbook --help`` prints them)
VARIABLES = {
    HOME: "the run store's directory (default: the user cache directory)",
    DEVICE: "cpu, cuda, cuda:N or mps for training (default: the first available of cuda, mps, cpu)",
    FIGURES: "a directory where every chapter figure is also written as PNG",
    SHOW_FIGURES: "set: show each figure where it is made (grokbook run)",
    PROGRESS: "set and not 0: training notices on stderr, or appended to the absolute path it names",
    SCHEDULER: "a dask scheduler address for the sweeps",
    RUNS_LOG: "a file to which every run the store hands out is appended as a JSON line",
}


def _get(name: str) -> str:
    return os.environ.get(name, "").strip()


def home() -> Optional[Path]:
    """``$GROKBOOK_HOME`` as an absolute path, or None when unset."""
    value = _get(HOME)
    return Path(value).expanduser().absolute() if value else None


def device() -> str:
    """``$GROKBOOK_DEVICE``, or ``""`` when unset (choose the best available)."""
    return _get(DEVICE)


def figures() -> Optional[Path]:
    """``$GROKBOOK_FIGURES`` as an absolute path, or None when unset."""
    value = _get(FIGURES)
    return Path(value).expanduser().absolute() if value else None


def show_figures() -> bool:
    """Whether ``$GROKBOOK_SHOW_FIGURES`` is set (to anything but ``""`` or ``0``)."""
    return _get(SHOW_FIGURES) not in ("", "0")


def progress() -> Optional[str]:
    """Where training notices go: ``"stderr"``, an absolute file path, or None (nowhere),
    from ``$GROKBOOK_PROGRESS``."""
    value = _get(PROGRESS)
    if value in ("", "0"):
        return None
    return value if os.path.isabs(value) else "stderr"


def scheduler() -> Optional[str]:
    """``$GROKBOOK_SCHEDULER``, or None when unset."""
    return _get(SCHEDULER) or None


def runs_log() -> Optional[str]:
    """``$GROKBOOK_RUNS_LOG``, or None when unset."""
    return _get(RUNS_LOG) or None


def put(name: str, value: Optional[str | os.PathLike]) -> None:
    """Set variable ``name`` (one of :data:`VARIABLES`) for this process and the processes
    it starts; None removes it. A path is stored absolute (kernels run in ``book/``)."""
    if name not in VARIABLES:
        raise KeyError(f"{name} is not one of grokbook's environment variables: {', '.join(VARIABLES)}")
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = str(Path(value).expanduser().absolute()) if isinstance(value, Path) else str(value)


@contextlib.contextmanager
def overriding(**values: Optional[str]) -> Iterator[None]:
    """Set the variables given by name (``overriding(GROKBOOK_DEVICE="cpu")``; None: leave
    as is) for the duration of the block, then restore them."""
    unknown = set(values) - set(VARIABLES)
    if unknown:
        raise KeyError(f"not grokbook environment variables: {', '.join(sorted(unknown))}")
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
