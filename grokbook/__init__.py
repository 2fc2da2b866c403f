"""grokbook: the library behind the book *Predicting grokking long before it happens*."""

from .config import RunConfig
from .train import Run, train

__all__ = ["RunConfig", "Run", "train"]
__version__ = "0.1.0"
