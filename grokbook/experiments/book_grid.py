"""The book's shared seeded sweep: the configurations of chapters 2 and 9 (and of the
default predictor) at their default parameters.
"""

from __future__ import annotations

from typing import Any

from ..config import RunConfig
from ..predict import GrokPredictor
from ..sweeping import grid, replicates, sweep

#: The sweep of the spectral and predict chapters at their default parameters (the
#: chapter tests check that the two agree): the model, and the grid with its seeds.
BOOK_MODEL = dict(task="add", p=31, n_layers=1, d_model=32, n_heads=4, arch="book", layer_norm=False, steps=2000)
BOOK_GRID = dict(lr=(0.005, 0.0075, 0.01, 0.015, 0.02, 0.03), weight_decay=(0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0),
                 r=(0.4, 0.5, 0.6, 0.7, 0.8), seeds=(0, 1))


def book_sweep(**model: Any) -> list:
    """The configurations of the book's predictor sweep (:data:`BOOK_GRID` with each
    seed), for :data:`BOOK_MODEL` updated with ``model`` (e.g. ``p=47``)."""
    base = RunConfig(**{**BOOK_MODEL, **model})
    axes = {k: v for k, v in BOOK_GRID.items() if k != "seeds"}
    return replicates(grid(base, **axes), BOOK_GRID["seeds"])


def fit_default(store=None) -> GrokPredictor:
    """Fit the default predictor: the runs of :func:`book_sweep` (trained through the
    store if missing; about 20 minutes on a 2-core CPU) and :meth:`GrokPredictor.fit_runs`."""
    return GrokPredictor.fit_runs(sweep(book_sweep(), store=store),
                                  meta={"fitted_on": "grokbook.experiments.book_grid.book_sweep()",
                                        "command": "grokbook fit-predictor --book-sweep", "model": BOOK_MODEL})
