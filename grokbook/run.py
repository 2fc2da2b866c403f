"""A run's record: :class:`Run` (what a finished run is: per-step metrics, validation,
snapshots) and :class:`TrainState` (a checkpoint), with :data:`METRICS`, the per-step
metric names. The trainer (:mod:`grokbook.trainer`) makes them; the store
(:mod:`grokbook.store`) keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from .config import RunConfig
from .models import build_model
from .tasks import Dataset, make_dataset

#: Per-step metric names, in the column order of the on-device metric buffer.
METRICS = (
    "train_loss",       # loss of theta_t on the (mini)batch
    "train_acc",        # accuracy of theta_t on the (mini)batch
    "grad_norm",        # ||g_t||, before clipping
    "weight_norm",      # ||theta_t||
    "last_layer_norm",  # Frobenius norm of the read-out weight at theta_t
    "cos_init",         # cos(theta_t, theta_0)
    "cos_consecutive",  # cos(theta_t, theta_{t+1})
    "cos_update",       # cos(theta_{t+1} - theta_t, theta_t - theta_{t-1}); NaN at t = 0
)


def check_writer(writer: Any) -> None:
    """TypeError unless ``writer`` is None or has a callable ``add_scalar`` (a TensorBoard
    writer, see :meth:`Run.write_scalars`): checked before training, so a wrong object
    costs no run."""
    if writer is not None and not callable(getattr(writer, "add_scalar", None)):
        raise TypeError(f"writer must have add_scalar(tag, value, global_step) (a TensorBoard SummaryWriter); "
                        f"got a {type(writer).__name__}")


def model_with(config: RunConfig, weights: np.ndarray) -> nn.Module:
    """The model of ``config`` with the flat ``weights`` ``(P,)`` (the layout of a
    snapshot, e.g. from :func:`grokbook.training.replay_weights`)."""
    data = make_dataset(config)
    model = build_model(config, data.vocab_size, data.n_classes)
    flat = torch.as_tensor(np.array(weights, dtype=np.float32))
    if flat.shape != (sum(q.numel() for q in model.parameters()),):
        raise ValueError(f"weights of shape {tuple(flat.shape)} do not fit this run's model")
    torch.nn.utils.vector_to_parameters(flat, model.parameters())
    return model


@dataclass
class Run:
    """A finished (or diverged) run.

    ``metrics[name]``: ``(steps_done,)`` float arrays (see :data:`METRICS`);
    ``val_steps``, ``val_loss``, ``val_acc``: ``(n_val,)``; ``snapshot_steps``:
    ``(n_snap,)``; ``snapshots``: ``(n_snap, n_params)`` float32 flat weights.
    ``diverged_at`` is the first iteration whose loss was NaN or infinite, else None.
    ``wall_time_s``: seconds of training (an ensemble's time divided among its runs).
    """

    config: RunConfig
    metrics: dict[str, np.ndarray]
    val_steps: np.ndarray
    val_loss: np.ndarray
    val_acc: np.ndarray
    snapshot_steps: np.ndarray
    snapshots: np.ndarray
    diverged_at: Optional[int] = None
    wall_time_s: float = 0.0

    @property
    def steps(self) -> np.ndarray:
        """Iteration indices of :attr:`metrics`, ``(steps_done,)``."""
        return np.arange(len(self.metrics["train_loss"]))

    def dataset(self) -> Dataset:
        return make_dataset(self.config)

    def model_at(self, step: int) -> nn.Module:
        """The model with the snapshot weights of ``step`` (which must be a snapshot step)."""
        idx = np.flatnonzero(self.snapshot_steps == step)
        if not len(idx):
            raise ValueError(f"no snapshot at step {step}; snapshots: {self.snapshot_steps.tolist()}")
        return self.model_with(self.snapshots[idx[0]])

    def model_with(self, weights: np.ndarray) -> nn.Module:
        """The run's model with the flat ``weights`` ``(P,)`` (the layout of a snapshot,
        e.g. from :func:`grokbook.training.replay_weights`)."""
        return model_with(self.config, weights)

    def to_frame(self, what: str = "steps") -> Any:
        """The run as a ``pandas.DataFrame``: ``"steps"``, one row per iteration (index
        ``step``, a column per :data:`METRICS` name); ``"validation"``, one row per
        validation step (``val_loss``, ``val_acc``); ``"snapshots"``, one row per
        snapshot step and one column per flat parameter (``w0``, ``w1``, ...)."""
        import pandas as pd

        if what == "steps":
            return pd.DataFrame(self.metrics, index=pd.Index(self.steps, name="step"))
        if what == "validation":
            return pd.DataFrame({"val_loss": self.val_loss, "val_acc": self.val_acc},
                                index=pd.Index(self.val_steps, name="step"))
        if what == "snapshots":
            return pd.DataFrame(self.snapshots, index=pd.Index(self.snapshot_steps, name="step"),
                                columns=[f"w{i}" for i in range(self.snapshots.shape[1])])
        raise ValueError(f"unknown frame {what!r}; expected 'steps', 'validation' or 'snapshots'")

    def write_scalars(self, writer: Any) -> int:
        """Write the run to a TensorBoard ``writer`` (any object with
        ``add_scalar(tag, value, global_step)``: ``torch.utils.tensorboard.SummaryWriter``,
        tensorboardX's): each per-step metric ``metrics[name][t]`` as tag ``train/<name>``
        (``train/train_loss``, ``train/grad_norm``, ... see :data:`METRICS`) at step ``t``,
        and ``val_loss``/``val_acc`` as ``val/loss``/``val/acc`` at :attr:`val_steps`.
        Values are written as they are (a NaN stays NaN: ``cos_update`` at step 0, a
        diverged run's loss). The writer is flushed if it has ``flush()``; closing it is
        the caller's. Cost: ``SummaryWriter`` takes about 0.1 ms a scalar, so a
        100,000-step run (800,000 scalars) takes a minute or two to write. Returns the number of scalars written, ``len(METRICS) * steps_done +
        2 * n_val``. TypeError if ``writer`` has no callable ``add_scalar``."""
        if writer is None:
            raise TypeError("write_scalars needs a writer with add_scalar(tag, value, global_step), got None")
        check_writer(writer)
        n = 0
        for name, values in self.metrics.items():
            for step, value in enumerate(np.asarray(values, dtype=float).tolist()):
                writer.add_scalar(f"train/{name}", value, step)
            n += len(values)
        for tag, values in (("val/loss", self.val_loss), ("val/acc", self.val_acc)):
            for step, value in zip(np.asarray(self.val_steps).tolist(), np.asarray(values, dtype=float).tolist()):
                writer.add_scalar(tag, value, int(step))
            n += len(values)
        if callable(getattr(writer, "flush", None)):
            writer.flush()
        return n

    def nearest_snapshot(self, step: float) -> int:
        """The snapshot step closest to ``step``."""
        return int(self.snapshot_steps[np.argmin(np.abs(self.snapshot_steps - step))])


@dataclass
class TrainState:
    """One run's state after ``step`` iterations: everything needed to continue it
    exactly (a checkpoint). Tensors are ``(n_params,)`` on the CPU; ``metrics`` is
    ``(step, len(METRICS))``; ``val`` rows are ``(step, loss, acc)``;
    ``at_validation`` is ``(step, weights, opt)`` at the last scheduled validation, from
    which a crossing found at the next one is placed (None: not kept)."""

    step: int
    flat: torch.Tensor
    opt: dict[str, torch.Tensor]
    metrics: np.ndarray
    val: list[tuple[int, float, float]]
    snapshots: list[tuple[int, np.ndarray]]
    theta0: torch.Tensor
    prev_delta: torch.Tensor
    wall_time_s: float = 0.0
    at_validation: Optional[tuple[int, torch.Tensor, dict[str, torch.Tensor]]] = None
