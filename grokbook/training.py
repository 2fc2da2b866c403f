"""One training run: the training core (:mod:`grokbook.core`) with ``M = 1``, plus what
a single run adds: resuming from a checkpoint, checkpoints, interruption, a progress bar.

A run trained here is bit-identical on the CPU to the same configuration trained inside
an ensemble of any size, so the store keeps one run per configuration whoever trained it.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from .config import RunConfig
from .core import Run, TrainState, train_core


def fit(config: RunConfig, *, state: Optional[TrainState] = None,
        checkpoint: Optional[Callable[[TrainState], None]] = None,
        checkpoint_every_s: float = 30.0, checkpoint_every_steps: int = 0,
        progress: Optional[bool] = None, device: Optional[torch.device | str] = None) -> Run:
    """Train ``config`` from scratch, or from ``state``, and return the :class:`Run`.

    ``checkpoint(state)`` is called after every ``checkpoint_every_s`` seconds of
    training, after every iteration count that is a multiple of
    ``checkpoint_every_steps`` (0: never), and on SIGINT or SIGTERM, after which
    :class:`~grokbook.core.TrainingInterrupted` is raised. ``progress``: a tqdm bar;
    None shows it only on a terminal. ``device``: CUDA when available by default.
    """
    from tqdm import tqdm

    bar = tqdm(total=config.steps, initial=state.step if state else 0, leave=False,
               disable=None if progress is None else not progress,
               desc=f"train {config.task} p={config.p} r={config.r}")

    def show(done: int, loss: float) -> None:
        bar.update(done - bar.n)
        bar.set_postfix(loss=f"{loss:.3g}", refresh=False)

    try:
        (run,) = train_core([config], states=[state] if state else None,
                            checkpoint=None if checkpoint is None else lambda rows: checkpoint(rows[0]),
                            checkpoint_every_s=checkpoint_every_s, checkpoint_every_steps=checkpoint_every_steps,
                            progress=show, device=device)
    finally:
        bar.close()
    return run
