"""One figure style and the plotting helpers the chapters share. No computation of
results happens here: every function draws arrays it is given."""

from __future__ import annotations

import os

from typing import Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from . import settings
from .phases import PhaseTimes, phase_bands

PHASE_COLORS = {"confusion": "#bbbbbb", "memorization": "#f4a582",
                "comprehension": "#92c5de", "generalization": "#a6dba0"}
TRAIN, VAL = "#1b6ca8", "#d1495b"


def use_style() -> None:
    """The book's matplotlib style: seaborn's whitegrid, compact, readable."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 110, "figure.figsize": (7.5, 3.6),
                         "axes.spines.top": False, "axes.spines.right": False,
                         "legend.frameon": False})


def shade_phases(ax: Axes, times: PhaseTimes, end: int, labels: bool = True) -> None:
    """Shade the phase bands of ``times`` on ``ax`` (x in steps) and mark t1..t4."""
    for name, a, b in phase_bands(times, end):
        ax.axvspan(max(a, 1), b, color=PHASE_COLORS[name], alpha=0.25, lw=0,
                   label=name if labels else None)
    for k, t in enumerate((times.t1, times.t2, times.t3, times.t4), start=1):
        if t is not None:
            ax.axvline(max(t, 1), color="0.3", lw=0.8, ls=":")
            ax.annotate(f"$t_{k}$", (max(t, 1), 1.0), xycoords=("data", "axes fraction"),
                        xytext=(2, -12), textcoords="offset points", fontsize=9, color="0.2")


def accuracy_loss_panels(steps: np.ndarray, train_acc: np.ndarray, train_loss: np.ndarray,
                         val_steps: np.ndarray, val_acc: np.ndarray, val_loss: np.ndarray,
                         times: Optional[PhaseTimes] = None, title: str = "") -> plt.Figure:
    """Accuracy (left) and loss (right) of train and validation against steps on a
    log axis, with the phases shaded when ``times`` is given."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    s, vs = np.maximum(steps, 1), np.maximum(val_steps, 1)
    a1.plot(s, train_acc, color=TRAIN, lw=1.2, label="train")
    a1.plot(vs, val_acc, color=VAL, lw=1.2, label="validation")
    a1.set(xscale="log", xlabel="optimisation step", ylabel="accuracy", ylim=(-0.02, 1.02))
    a2.plot(s, train_loss, color=TRAIN, lw=1.2, label="train")
    a2.plot(vs, val_loss, color=VAL, lw=1.2, label="validation")
    a2.set(xscale="log", yscale="log", xlabel="optimisation step", ylabel="cross-entropy loss (nats)")
    if times is not None:
        end = int(max(steps[-1], val_steps[-1]))
        shade_phases(a1, times, end)
        shade_phases(a2, times, end, labels=False)
    a1.legend(loc="center left", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def embedding_pcs(ax: Axes, points: np.ndarray, title: str, labels: Optional[Sequence[int]] = None) -> None:
    """Scatter ``points`` ``(n, 2)`` (principal components of the embeddings of tokens
    0..n-1), coloured by token value on a cyclic colour map, with the token numbers."""
    n = len(points)
    labels = range(n) if labels is None else labels
    ax.scatter(points[:, 0], points[:, 1], c=np.arange(n), cmap="twilight", s=28, edgecolor="0.3", lw=0.4)
    if n <= 60:
        for k, (x, y) in zip(labels, points):
            ax.annotate(str(k), (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points", color="0.35")
    ax.set(title=title, xlabel="PC 1", ylabel="PC 2")
    ax.set_aspect("equal", adjustable="datalim")


def log_ticks(ax: Axes, axis: str = "y") -> None:
    """Major ticks of a log ``axis`` (``"x"`` or ``"y"``) at 1, 2 and 5 x 10^k, labelled
    as plain numbers (``0.05``, ``200``), no minor labels: readable also over a range
    shorter than a decade."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    a = ax.xaxis if axis == "x" else ax.yaxis
    a.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    a.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a.set_minor_formatter(NullFormatter())


def save_figure(fig: plt.Figure, name: str) -> None:
    """Also write ``fig`` as ``$GROKBOOK_FIGURES/<name>.png`` when that variable is set
    (to look at a chapter's figures outside the book)."""
    out = settings.figures()
    if out:
        os.makedirs(out, exist_ok=True)
        fig.savefig(os.path.join(out, f"{name}.png"), bbox_inches="tight")


def publish(fig: plt.Figure, name: str) -> None:
    """End a chapter's figure: write it as ``$GROKBOOK_FIGURES/<name>.png`` when that
    variable is set (:func:`save_figure`), glue it under ``name`` for the prose's
    ``{glue:figure}``, and close it. Names are unique across the book."""
    save_figure(fig, name)
    glue(name, fig, display=False)
    plt.close(fig)


def show_note(text: str) -> None:
    """Display ``text`` (Markdown) as the cell's output, as a note; nothing when it is
    empty (for example :func:`grokbook.experiments.verdicts.scale_note` when the runs
    could decide)."""
    if text:
        from IPython.display import Markdown, display

        display(Markdown(text))


def glue(name: str, value, display: bool = False):
    """``myst_nb.glue`` for the prose: numpy scalars become Python numbers first (their
    repr, ``np.float64(...)``, cannot be formatted by ``{glue:text}`name:.2f```). Under
    ``grokbook run`` (``$GROKBOOK_SHOW_FIGURES`` set) a figure is also shown where it is
    made, since the executed notebook has no book to place it."""
    from matplotlib.figure import Figure
    from myst_nb import glue as _glue

    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Figure) and settings.show_figures():
        display = True
    return _glue(name, value, display=display)
