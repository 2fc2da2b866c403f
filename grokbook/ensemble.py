"""Many runs at once: the training core (:mod:`grokbook.trainer`) with ``M > 1``.

Runs that differ only in learning rate, weight decay and seed (equal
:func:`~grokbook.trainer.stack_key`) share their data and architecture, so their
parameters are stacked into one ``(M, P)`` tensor and trained together: one batched
forward, one backward, one row-wise optimiser step. Each row comes out bit-identical on
the CPU to the run trained alone, so the store keeps it under the same key.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from .config import RunConfig
from .trainer import Run, TrainState, stack_key, train_core


def stackable(configs: Sequence[RunConfig]) -> bool:
    """True when ``configs`` can be trained as one ensemble: equal :func:`stack_key`."""
    return bool(configs) and all(stack_key(c) == stack_key(configs[0]) for c in configs)


def fit_ensemble(configs: Sequence[RunConfig], device: Optional[torch.device | str] = None, *,
                 states: Optional[Sequence[TrainState]] = None,
                 checkpoint: Optional[Callable[[list[TrainState]], None]] = None,
                 checkpoint_every_s: float = 30.0, checkpoint_every_steps: int = 0) -> list[Run]:
    """Train ``configs`` (which must be :func:`stackable`) together; one :class:`Run`
    each. ``states`` and ``checkpoint`` as in :func:`grokbook.trainer.train_core`."""
    if not stackable(configs):
        raise ValueError("fit_ensemble needs configs that differ only in lr, weight_decay and seed")
    return train_core(configs, states=states, checkpoint=checkpoint, checkpoint_every_s=checkpoint_every_s,
                      checkpoint_every_steps=checkpoint_every_steps, device=device)
