"""grokbook: the library behind the book *Predicting grokking long before it happens*."""

from .config import RunConfig
from .store import RunStore
from .sweep import grid, sweep
from .train import Run, train

__all__ = ["RunConfig", "Run", "RunStore", "grid", "sweep", "train"]
__version__ = "0.1.0"
