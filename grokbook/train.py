"""One training run: the step loop, its per-step metrics, snapshots, checkpoints.

All parameters of the model live in one flat vector (each ``nn.Parameter`` is a view
into it) and so do their gradients. The optimisers are then a handful of vector
operations, and every per-step metric (norms, cosines) is a dot product on that
vector, computed on the device without a host synchronisation. This is why the
trainer, metrics included, is not slower than a plain ``torch.optim.AdamW`` loop
(``benchmarks/trainer_speed.py``).

Conventions: iteration ``t`` (``0 <= t < steps``) evaluates the loss at the weights
``theta_t`` and updates them to ``theta_{t+1}``. ``Run.metrics[name][t]`` belongs to
iteration ``t``; validation and snapshots are taken of ``theta_t`` at the listed steps,
step ``steps`` being the final weights.
"""

from __future__ import annotations

import functools
import math
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import RunConfig
from .models import build_model, last_layer
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


def validation_schedule(steps: int) -> np.ndarray:
    """Steps at which validation is measured: every step up to 100, then a spacing of
    at most 1% of the step, so that t3 and t4 are placed within 1%; plus ``steps``."""
    t = np.arange(steps + 1)
    return t[(t % np.maximum(1, t // 100) == 0) | (t == steps)]


def snapshot_schedule(steps: int, n: int) -> np.ndarray:
    """About ``n`` snapshot steps in ``[0, steps]``: half geometric (dense early), half
    evenly spaced, always including 0 and ``steps``."""
    geo = np.geomspace(1, steps, max(n // 2, 2))
    lin = np.linspace(0, steps, max(n - n // 2, 2))
    return np.unique(np.round(np.concatenate([[0], geo, lin])).astype(np.int64))


@dataclass
class Run:
    """A finished (or diverged) run.

    ``metrics[name]``: ``(steps_done,)`` float arrays (see :data:`METRICS`);
    ``val_steps``, ``val_loss``, ``val_acc``: ``(n_val,)``; ``snapshot_steps``:
    ``(n_snap,)``; ``snapshots``: ``(n_snap, n_params)`` float32 flat weights.
    ``diverged_at`` is the first iteration whose loss was NaN or infinite, else None.
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
        data = self.dataset()
        model = build_model(self.config, data.vocab_size, data.n_classes)
        torch.nn.utils.vector_to_parameters(torch.from_numpy(self.snapshots[idx[0]].copy()),
                                            model.parameters())
        return model

    def nearest_snapshot(self, step: float) -> int:
        """The snapshot step closest to ``step``."""
        return int(self.snapshot_steps[np.argmin(np.abs(self.snapshot_steps - step))])



@dataclass
class TrainState:
    """Everything needed to continue a run exactly where it stopped (a checkpoint)."""

    step: int
    flat: torch.Tensor
    opt: dict[str, torch.Tensor]
    metrics: np.ndarray                 # (step, len(METRICS))
    val: list[tuple[int, float, float]]  # (step, loss, acc)
    snapshots: list[tuple[int, np.ndarray]]
    theta0: torch.Tensor
    prev_delta: torch.Tensor
    wall_time_s: float = 0.0
    #: Which trainer wrote it: ``"single"`` (:func:`fit`) or ``"ensemble:<group key>"``
    #: (:func:`grokbook.ensemble.fit_ensemble`); a run resumes only from its own kind.
    origin: str = "single"

    def to_cpu(self) -> "TrainState":
        return TrainState(self.step, self.flat.cpu(), {k: v.cpu() for k, v in self.opt.items()},
                          self.metrics, list(self.val), list(self.snapshots), self.theta0.cpu(),
                          self.prev_delta.cpu(), self.wall_time_s, self.origin)


def flatten_parameters(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-home every parameter (and its gradient) as a view into one flat vector.

    Returns ``(flat, flat_grad)``, each ``(n_params,)``; backward accumulates in place
    into ``flat_grad`` as long as it is zeroed, not set to None, between steps.
    """
    params = list(model.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    grad = torch.zeros_like(flat)
    offset = 0
    for prm in params:
        n = prm.numel()
        prm.data = flat[offset:offset + n].view_as(prm)
        prm.grad = grad[offset:offset + n].view_as(prm)
        offset += n
    return flat, grad


def loss_fn(config: RunConfig, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy, or MSE against one-hot targets (Omnigrok), averaged over the batch."""
    if config.loss == "mse":
        return F.mse_loss(logits, F.one_hot(y, logits.shape[-1]).to(logits.dtype),
                          reduction="sum") / len(y)
    return F.cross_entropy(logits, y)


class FlatOptimizer:
    """AdamW, Adam (L2 weight decay) or SGD (momentum, L2) on a flat parameter vector,
    with linear warm-up. AdamW follows ``torch.optim.AdamW``'s arithmetic exactly."""

    def __init__(self, config: RunConfig, flat: torch.Tensor) -> None:
        self.c = config
        self.state = {"m": torch.zeros_like(flat)}
        if config.optimizer != "sgd":
            self.state["v"] = torch.zeros_like(flat)

    def lr_at(self, t: int) -> float:
        w = self.c.warmup_steps
        return self.c.lr * min(1.0, (t + 1) / w) if w else self.c.lr

    def step(self, t: int, flat: torch.Tensor, grad: torch.Tensor) -> None:
        c, lr, m = self.c, self.lr_at(t), self.state["m"]
        if c.optimizer == "sgd":
            if c.weight_decay:
                grad.add_(flat, alpha=c.weight_decay)
            m.mul_(c.momentum).add_(grad)
            flat.add_(m, alpha=-lr)
            return
        b1, b2 = c.betas
        v = self.state["v"]
        if c.optimizer == "adamw":
            flat.mul_(1 - lr * c.weight_decay)
        elif c.weight_decay:
            grad.add_(flat, alpha=c.weight_decay)
        m.lerp_(grad, 1 - b1)
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        n = t + 1
        denom = (v.sqrt() / math.sqrt(1 - b2**n)).add_(1e-8)
        flat.addcdiv_(m, denom, value=-lr / (1 - b1**n))


def _batch_indices(config: RunConfig, n_train: int, t: int) -> Optional[torch.Tensor]:
    """Indices of the minibatch of iteration ``t`` (None for full batch).

    A function of ``t`` alone (one seeded permutation per epoch), so a resumed run
    sees exactly the batches an uninterrupted one would."""
    b = config.batch_size
    if not b or b >= n_train:
        return None
    epoch, k = divmod(t, n_train // b)
    return _epoch_permutation(config.seed, epoch, n_train)[k * b:(k + 1) * b]


@functools.lru_cache(maxsize=2)
def _epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by SIGINT or SIGTERM at a consistent step (checkpointed when
    the run has a store)."""


class _Interrupt:
    """Turns SIGINT and SIGTERM into a flag checked between iterations, so that Ctrl-C
    or a scheduler's kill stops the run at a consistent state that can be checkpointed."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.hit: Optional[str] = None
        self.old: dict[int, Any] = {}

    def __enter__(self) -> "_Interrupt":
        if threading.current_thread() is threading.main_thread():
            self.old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        self.hit = signal.Signals(signum).name

    def __exit__(self, *_: Any) -> None:
        for s, old in self.old.items():
            signal.signal(s, old)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def evaluate(model: nn.Module, config: RunConfig, x: torch.Tensor, y: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, accuracy) of ``model`` on ``(x, y)``, as 0-d tensors on the device."""
    logits = model(x)
    return loss_fn(config, logits, y), (logits.argmax(-1) == y).to(logits.dtype).mean()


def fit(config: RunConfig, *, state: Optional[TrainState] = None,
        checkpoint: Optional[Callable[[TrainState], None]] = None,
        checkpoint_every_s: float = 30.0, checkpoint_every_steps: int = 0,
        progress: Optional[bool] = None, device: Optional[torch.device | str] = None) -> Run:
    """Train ``config`` from scratch, or from ``state``, and return the :class:`Run`.

    ``checkpoint(state)`` is called after every ``checkpoint_every_s`` seconds of
    training, after every iteration count that is a multiple of
    ``checkpoint_every_steps`` (0: never), and on SIGINT or SIGTERM, after which
    :class:`TrainingInterrupted` is raised. ``progress``: a tqdm bar; None shows it only
    on a terminal. ``device``: CUDA when available by default.
    """
    from tqdm import tqdm

    dev = torch.device(device) if device is not None else default_device()
    data = make_dataset(config)
    x_tr, y_tr = data.train_x.to(dev), data.train_y.to(dev)
    x_va, y_va = data.val_x.to(dev), data.val_y.to(dev)
    model = build_model(config, data.vocab_size, data.n_classes).to(dev)
    flat, grad = flatten_parameters(model)
    if config.fixed_norm:
        flat.mul_(config.fixed_norm / flat.norm())
    opt = FlatOptimizer(config, flat)
    w_out = last_layer(model)

    steps = config.steps
    metrics = torch.full((steps, len(METRICS)), float("nan"), device=dev)
    if state is None:
        t0, theta0, prev_delta = 0, flat.clone(), torch.zeros_like(flat)
        val: list[tuple[int, float, float]] = []
        snaps: list[tuple[int, np.ndarray]] = []
        wall0 = 0.0
    else:
        t0 = state.step
        flat.copy_(state.flat)
        for k, v in state.opt.items():
            opt.state[k].copy_(v)
        metrics[:t0] = torch.from_numpy(state.metrics).to(dev)
        theta0, prev_delta = state.theta0.to(dev), state.prev_delta.to(dev)
        val, snaps, wall0 = list(state.val), list(state.snapshots), state.wall_time_s
    theta0_norm = theta0.norm()
    val_at = set(validation_schedule(steps).tolist())
    snap_at = set(snapshot_schedule(steps, config.n_snapshots).tolist())
    pending_val: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    prev = torch.empty_like(flat)
    delta = torch.empty_like(flat)

    def observe(t: int) -> None:
        """Validation and snapshot of theta_t, if scheduled."""
        if t in val_at:
            model.eval()
            loss, acc = evaluate(model, config, x_va, y_va)
            model.train()
            pending_val.append((t, loss, acc))
        if t in snap_at:
            snaps.append((t, flat.detach().float().cpu().numpy().copy()))

    def flush_val() -> None:
        val.extend((t, float(l), float(a)) for t, l, a in pending_val)
        pending_val.clear()

    def make_state(t: int) -> TrainState:
        flush_val()
        return TrainState(t, flat.detach().clone(), {k: v.clone() for k, v in opt.state.items()},
                          metrics[:t].cpu().numpy(), list(val), list(snaps), theta0,
                          prev_delta.clone(), wall0 + time.perf_counter() - start).to_cpu()

    bar = tqdm(total=steps, initial=t0, disable=None if progress is None else not progress,
               desc=f"train {config.task} p={config.p} r={config.r}", leave=False)
    start = last_ckpt = time.perf_counter()
    update_every = max(1, steps // 100)
    checked = t0  # metric rows up to here are known to be finite
    saved_at = -1

    def save(t_done: int) -> None:
        nonlocal last_ckpt, saved_at
        checkpoint(make_state(t_done))  # type: ignore[misc]
        last_ckpt, saved_at = time.perf_counter(), t_done

    diverged_at = None
    with _Interrupt() as interrupt:
        for t in range(t0, steps):
            observe(t)
            idx = _batch_indices(config, len(y_tr), t)
            xb, yb = (x_tr, y_tr) if idx is None else (x_tr[idx.to(dev)], y_tr[idx.to(dev)])
            grad.zero_()
            logits = model(xb)
            loss = loss_fn(config, logits, yb)
            loss.backward()
            gnorm = grad.norm()
            wnorm = flat.norm()
            row = [loss.detach(), (logits.detach().argmax(-1) == yb).to(logits.dtype).mean(), gnorm, wnorm,
                   w_out.detach().norm(), flat.dot(theta0) / (wnorm * theta0_norm)]
            if config.grad_clip:
                grad.mul_((config.grad_clip / (gnorm + 1e-6)).clamp(max=1.0))
            prev.copy_(flat)
            opt.step(t, flat, grad)
            if config.fixed_norm:
                flat.mul_(config.fixed_norm / flat.norm())
            torch.sub(flat, prev, out=delta)
            row.append(prev.dot(flat) / (wnorm * flat.norm()))
            row.append(delta.dot(prev_delta) / (delta.norm() * prev_delta.norm()) if t else
                       torch.tensor(float("nan"), device=dev))
            metrics[t] = torch.stack(row)
            prev_delta, delta = delta, prev_delta
            done = t + 1
            step_due = checkpoint_every_steps > 0 and done % checkpoint_every_steps == 0
            if done % update_every == 0 or done == steps or step_due or interrupt.hit:
                if not torch.isfinite(metrics[checked:done, 0]).all():
                    losses = metrics[:done, 0].cpu().numpy()
                    diverged_at = int(np.flatnonzero(~np.isfinite(losses))[0])
                    break
                checked = done
                bar.update(done - bar.n)
                bar.set_postfix(loss=f"{float(metrics[t, 0]):.3g}", refresh=False)
                if checkpoint is not None and done < steps and (
                        step_due or time.perf_counter() - last_ckpt > checkpoint_every_s):
                    save(done)
                if interrupt.hit and done < steps:  # also when the signal came during the checkpoint above
                    if checkpoint is not None and saved_at != done:
                        save(done)
                    bar.close()
                    kept = "checkpoint saved" if checkpoint is not None else "no checkpoint (no store)"
                    raise TrainingInterrupted(f"training interrupted by {interrupt.hit} at step {done}; {kept}")
        else:
            observe(steps)
    bar.close()
    flush_val()
    done = steps if diverged_at is None else diverged_at + 1
    m = metrics[:done].cpu().numpy().astype(np.float64)
    v = np.array(val, dtype=np.float64).reshape(-1, 3)
    return Run(
        config=config,
        metrics={name: m[:, k] for k, name in enumerate(METRICS)},
        val_steps=v[:, 0].astype(np.int64), val_loss=v[:, 1], val_acc=v[:, 2],
        snapshot_steps=np.array([s for s, _ in snaps], dtype=np.int64),
        snapshots=np.stack([w for _, w in snaps]).astype(np.float32),
        diverged_at=diverged_at,
        wall_time_s=wall0 + time.perf_counter() - start,
    )


def train(config: RunConfig, store: Any = None, **kwargs: Any) -> Run:
    """Train ``config``; with a :class:`~grokbook.store.RunStore`, fetch it from the
    store or train and store it (resuming from a checkpoint if one is there)."""
    if store is not None:
        return store.get_or_train(config, **kwargs)
    return fit(config, **kwargs)
