"""Many runs at once: stacked parameters, ``torch.func`` and a functional AdamW.

Runs that differ only in learning rate, weight decay and seed share their data and
their architecture, so their parameters can be stacked into one ``(M, P)`` tensor and
trained together: one batched forward (``torch.vmap`` over ``functional_call``), one
backward, and an AdamW whose learning rate and weight decay are ``(M, 1)`` tensors.
Each row follows exactly the arithmetic of :func:`grokbook.train.fit` (in float64 the
two agree to 1e-10, ``tests/test_ensemble.py``) and records the same metrics,
validation and snapshots, so a run trained here is interchangeable with one trained
alone and is stored under the same key.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.func import functional_call

from .config import RunConfig
from .models import build_model
from .tasks import make_dataset
from .train import (METRICS, Run, TrainingInterrupted, TrainState, _batch_indices, _Interrupt, default_device,
                    loss_fn, snapshot_schedule, validation_schedule)

#: Fields in which the runs of one ensemble may differ.
VARYING = ("lr", "weight_decay", "seed")


def stackable(configs: Sequence[RunConfig]) -> bool:
    """True when ``configs`` can be trained as one ensemble: AdamW, and equal in every
    field but :data:`VARYING`."""
    if not configs or any(c.optimizer != "adamw" for c in configs):
        return False
    key = lambda c: c.replace(**{k: getattr(configs[0], k) for k in VARYING})
    return all(key(c) == key(configs[0]) for c in configs)


def ensemble_origin(configs: Sequence[RunConfig]) -> str:
    """The :attr:`TrainState.origin` of the checkpoints of the ensemble ``configs`` (in
    this order): a row resumes only inside the very ensemble that wrote it."""
    key = hashlib.sha256(" ".join(c.hash() for c in configs).encode()).hexdigest()[:16]
    return f"ensemble:{key}"


def _rows_cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine of two ``(M, P)`` tensors, ``(M,)``."""
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def fit_ensemble(configs: Sequence[RunConfig], device: Optional[torch.device | str] = None, *,
                 states: Optional[Sequence[TrainState]] = None,
                 checkpoint: Optional[Callable[[list[TrainState]], None]] = None,
                 checkpoint_every_s: float = 30.0, checkpoint_every_steps: int = 0) -> list[Run]:
    """Train ``configs`` (which must be :func:`stackable`) together; one :class:`Run` each.

    ``states``: one checkpoint per config, all of the same step, to resume from.
    ``checkpoint(rows)`` receives one :class:`TrainState` per config, on the schedule of
    :func:`grokbook.train.fit` (seconds, steps, SIGINT/SIGTERM)."""
    if not stackable(configs):
        raise ValueError("fit_ensemble needs AdamW configs that differ only in " + ", ".join(VARYING))
    dev = torch.device(device) if device is not None else default_device()
    c0, n_models = configs[0], len(configs)
    data = make_dataset(c0)
    x_tr, y_tr = data.train_x.to(dev), data.train_y.to(dev)
    x_va, y_va = data.val_x.to(dev), data.val_y.to(dev)
    models = [build_model(c, data.vocab_size, data.n_classes) for c in configs]
    w = torch.stack([torch.nn.utils.parameters_to_vector(m.parameters()) for m in models]).detach().to(dev)
    template = models[0].to(dev)
    layout = [(name, p.shape, p.numel()) for name, p in template.named_parameters()]
    if c0.fixed_norm:
        w.mul_(c0.fixed_norm / w.norm(dim=1, keepdim=True))
    offsets = np.cumsum([0] + [n for _, _, n in layout])
    out_slice = next(slice(offsets[i], offsets[i + 1]) for i, (name, _, _) in enumerate(layout)
                     if name == "unembed.weight")

    def forward(row: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        params = {name: row[offsets[i]:offsets[i + 1]].view(shape) for i, (name, shape, _) in enumerate(layout)}
        return functional_call(template, params, (x,))

    batched = torch.vmap(forward, in_dims=(0, None))
    batched_x = torch.vmap(forward, in_dims=(0, 0))
    per_model_loss = torch.vmap(lambda logits, y: loss_fn(c0, logits, y), in_dims=(0, None))
    per_model_loss_y = torch.vmap(lambda logits, y: loss_fn(c0, logits, y), in_dims=(0, 0))

    lr = torch.tensor([c.lr for c in configs], device=dev, dtype=w.dtype)[:, None]
    wd = torch.tensor([c.weight_decay for c in configs], device=dev, dtype=w.dtype)[:, None]
    b1, b2 = c0.betas
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    theta0, prev_delta = w.clone(), torch.zeros_like(w)
    steps = c0.steps
    metrics = torch.full((steps, n_models, len(METRICS)), float("nan"), device=dev, dtype=w.dtype)
    val: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    snaps: list[tuple[int, np.ndarray]] = []
    t0, wall0 = 0, 0.0
    if states is not None:
        stack = lambda get: torch.stack([get(s) for s in states]).to(dev)
        t0, wall0 = states[0].step, states[0].wall_time_s
        w, m, v = stack(lambda s: s.flat), stack(lambda s: s.opt["m"]), stack(lambda s: s.opt["v"])
        theta0, prev_delta = stack(lambda s: s.theta0), stack(lambda s: s.prev_delta)
        metrics[:t0] = torch.from_numpy(np.stack([s.metrics for s in states], axis=1)).to(dev)
        for k, (t, _, _) in enumerate(states[0].val):
            val.append((t, torch.tensor([s.val[k][1] for s in states], device=dev, dtype=w.dtype),
                        torch.tensor([s.val[k][2] for s in states], device=dev, dtype=w.dtype)))
        for k, (t, _) in enumerate(states[0].snapshots):
            snaps.append((t, np.stack([s.snapshots[k][1] for s in states])))
    theta0_norm = theta0.norm(dim=1)
    val_at = set(validation_schedule(steps).tolist())
    snap_at = set(snapshot_schedule(steps, c0.n_snapshots).tolist())
    origin = ensemble_origin(configs)
    start = last_ckpt = time.perf_counter()
    saved_at = -1

    def save(t_done: int) -> None:
        """Checkpoint every row at ``t_done`` completed iterations."""
        nonlocal last_ckpt, saved_at
        wall = wall0 + time.perf_counter() - start
        m_np = metrics[:t_done].cpu().numpy()
        vl = [(t, l.cpu().tolist(), a.cpu().tolist()) for t, l, a in val]
        checkpoint([TrainState(t_done, w[i].cpu().clone(), {"m": m[i].cpu().clone(), "v": v[i].cpu().clone()},
                               m_np[:, i], [(t, l[i], a[i]) for t, l, a in vl],
                               [(t, s[i]) for t, s in snaps], theta0[i].cpu().clone(),
                               prev_delta[i].cpu().clone(), wall, origin)
                    for i in range(n_models)])  # type: ignore[misc]
        last_ckpt, saved_at = time.perf_counter(), t_done

    def observe(t: int) -> None:
        if t in val_at:
            with torch.no_grad():
                logits = batched(w, x_va)
                val.append((t, per_model_loss(logits, y_va), (logits.argmax(-1) == y_va).to(w.dtype).mean(1)))
        if t in snap_at:
            snaps.append((t, w.detach().float().cpu().numpy().copy()))

    with _Interrupt() as interrupt:
        for t in range(t0, steps):
            observe(t)
            wg = w.detach().requires_grad_(True)
            idx = [_batch_indices(c, len(y_tr), t) for c in configs]
            if idx[0] is None:
                logits = batched(wg, x_tr)
                losses, yb = per_model_loss(logits, y_tr), y_tr
            else:
                ib = torch.stack(idx).to(dev)
                yb = y_tr[ib]
                logits = batched_x(wg, x_tr[ib])
                losses = per_model_loss_y(logits, yb)
            (g,) = torch.autograd.grad(losses.sum(), wg)
            with torch.no_grad():
                gnorm, wnorm = g.norm(dim=1), w.norm(dim=1)
                row = [losses, (logits.argmax(-1) == yb).to(w.dtype).mean(1), gnorm, wnorm,
                       w[:, out_slice].norm(dim=1), (w * theta0).sum(1) / (wnorm * theta0_norm)]
                if c0.grad_clip:
                    g.mul_((c0.grad_clip / (gnorm + 1e-6)).clamp(max=1.0)[:, None])
                prev = w.clone()
                lr_t = lr * min(1.0, (t + 1) / c0.warmup_steps) if c0.warmup_steps else lr
                w.mul_(1 - lr_t * wd)
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (v.sqrt() / math.sqrt(1 - b2 ** (t + 1))).add_(1e-8)
                w.sub_(lr_t / (1 - b1 ** (t + 1)) * (m / denom))
                if c0.fixed_norm:
                    w.mul_(c0.fixed_norm / w.norm(dim=1, keepdim=True))
                delta = w - prev
                row.append((prev * w).sum(1) / (wnorm * w.norm(dim=1)))
                row.append(_rows_cos(delta, prev_delta) if t else torch.full_like(wnorm, float("nan")))
                metrics[t] = torch.stack(row, dim=1)
                prev_delta = delta
            done = t + 1
            step_due = checkpoint_every_steps > 0 and done % checkpoint_every_steps == 0
            if checkpoint is not None and done < steps and (
                    step_due or time.perf_counter() - last_ckpt > checkpoint_every_s):
                save(done)
            if interrupt.hit and done < steps:  # also when the signal came during the checkpoint above
                if checkpoint is not None and saved_at != done:
                    save(done)
                kept = "checkpoint saved" if checkpoint is not None else "no checkpoint (no store)"
                raise TrainingInterrupted(f"ensemble training interrupted by {interrupt.hit} at step {done}; {kept}")
    observe(steps)
    wall = wall0 + time.perf_counter() - start

    m_np = metrics.cpu().numpy().astype(np.float64)
    v_steps = np.array([t for t, _, _ in val], dtype=np.int64)
    v_loss = torch.stack([l for _, l, _ in val]).cpu().numpy().astype(np.float64)
    v_acc = torch.stack([a for _, _, a in val]).cpu().numpy().astype(np.float64)
    runs = []
    for i, c in enumerate(configs):
        bad = np.flatnonzero(~np.isfinite(m_np[:, i, 0]))
        diverged = int(bad[0]) if len(bad) else None
        done = steps if diverged is None else diverged + 1
        keep = slice(None) if diverged is None else v_steps <= diverged
        snap_keep = [k for k, (s, _) in enumerate(snaps) if diverged is None or s <= diverged]
        runs.append(Run(
            config=c, metrics={name: m_np[:done, i, k] for k, name in enumerate(METRICS)},
            val_steps=v_steps[keep], val_loss=v_loss[keep, i], val_acc=v_acc[keep, i],
            snapshot_steps=np.array([snaps[k][0] for k in snap_keep], dtype=np.int64),
            snapshots=np.stack([snaps[k][1][i] for k in snap_keep]).astype(np.float32),
            diverged_at=diverged, wall_time_s=wall / n_models))
    return runs
