"""One training run: the training core (:mod:`grokbook.trainer`) with ``M = 1``, plus what
a single run adds: resuming from a checkpoint, checkpoints, interruption, a progress bar.

A run trained here is bit-identical on the CPU to the same configuration trained inside
an ensemble of any size, so the store keeps one run per configuration whoever trained it.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import torch

from .config import RunConfig
from .run import check_writer
from .trainer import Run, TrainState, train_core


def fit(config: RunConfig, *, state: Optional[TrainState] = None,
        checkpoint: Optional[Callable[[TrainState], None]] = None,
        checkpoint_every_s: float = 30.0, checkpoint_every_steps: int = 0,
        progress: Optional[bool] = None, device: Optional[torch.device | str] = None,
        writer: Any = None) -> Run:
    """Train ``config`` from scratch, or from ``state``, and return the :class:`Run`.

    ``checkpoint(state)`` is called after every ``checkpoint_every_s`` seconds of
    training, after every iteration count that is a multiple of
    ``checkpoint_every_steps`` (0: never), and on SIGINT or SIGTERM, after which
    :class:`~grokbook.trainer.TrainingInterrupted` is raised. ``progress``: a tqdm bar;
    None shows it only on a terminal. ``device``: CUDA when available by default.

    ``writer``: a TensorBoard writer (anything with ``add_scalar(tag, value,
    global_step)``, e.g. ``torch.utils.tensorboard.SummaryWriter``). The run's curves are
    written to it once the run is finished, not while it trains (the training loop is
    left as fast as without): every per-step metric as ``train/<name>`` at its step and
    validation as ``val/loss``, ``val/acc`` (:meth:`~grokbook.run.Run.write_scalars`).
    An interrupted run writes nothing. TypeError, before training, if ``writer`` has no
    ``add_scalar``.
    """
    from tqdm import tqdm

    check_writer(writer)

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
    if writer is not None:
        run.write_scalars(writer)
    return run


def replay_weights(configs: Sequence[RunConfig], at: Iterable[int], *,
                   device: Optional[torch.device | str] = None) -> list[dict[int, np.ndarray]]:
    """The weights of runs at chosen steps, by training them again.

    A run keeps its weights only at its snapshot steps; to look at it anywhere else
    (say at a loss spike found after training), ``configs`` (equal
    :func:`~grokbook.trainer.stack_key`, trained together) are replayed from scratch, and
    their flat weights ``(P,)`` (float32, the layout of ``Run.snapshots``) are kept
    after each step in ``at``. Training is deterministic on the CPU, so the replay
    passes through exactly the stored run's weights (a snapshot step in ``at`` gives the
    snapshot back). Returns one ``{step: weights}`` per config. Costs one training of
    the configs up to the last step in ``at``.
    """
    wanted = sorted({int(s) for s in at})
    if not wanted:
        return [{} for _ in configs]
    if wanted[0] < 0 or any(wanted[-1] > c.steps for c in configs):
        raise ValueError(f"steps to replay must lie in [0, steps], got {wanted[0]}..{wanted[-1]}")
    out: list[dict[int, np.ndarray]] = [{} for _ in configs]
    keep = set(wanted)

    def grab(rows: list[TrainState]) -> None:
        for i, state in enumerate(rows):
            out[i][state.step] = state.flat.numpy().astype(np.float32)

    # Nothing in a step depends on the step budget, so the replay stops at the last step
    # wanted; that step is not checkpointed, and is read from the replay's last snapshot,
    # step 0 from its first. Only the steps wanted are checkpointed (a checkpoint copies
    # the run's curves so far: one per step made the replay several times a training).
    last = max(wanted[-1], 1)
    runs = train_core([c.replace(steps=last) for c in configs], checkpoint=grab,
                      checkpoint_every_s=float("inf"), checkpoint_at=keep, device=device)
    for i, run in enumerate(runs):
        for step, k in ((0, 0), (last, -1)):
            if step in keep:
                out[i][step] = run.snapshots[k]
    return out
