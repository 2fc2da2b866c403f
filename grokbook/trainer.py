"""The training core: M runs stacked as rows, one optimisation step for all of them.

A single run is the core with ``M = 1``; an ensemble (:mod:`grokbook.ensemble`) stacks
runs that share data and architecture (equal :func:`stack_key`) and differ in learning
rate, weight decay and seed. The parameters of the M models are one ``(M, P)`` tensor;
the forward pass is ``torch.vmap`` over ``functional_call`` of one template model; the
optimiser (AdamW, Adam with L2, SGD with momentum and L2, as ``torch.optim`` computes
them) works row by row with ``(M, 1)`` learning rates and weight decays; every per-step
metric is a row-wise reduction computed on the device without a host synchronisation.
Rows never mix, so on the CPU a run comes out bit-identical whether it was trained alone
or in an ensemble of any size, with any number of threads (``tests/test_ensemble.py``).

Conventions: iteration ``t`` (``0 <= t < steps``) evaluates the loss at the weights
``theta_t`` and updates them to ``theta_{t+1}``. ``Run.metrics[name][t]`` belongs to
iteration ``t``; validation and snapshots are taken of ``theta_t`` at the listed steps,
step ``steps`` being the final weights. A run whose loss becomes NaN or infinite at
iteration ``d`` keeps its metrics up to ``d`` and its validation and snapshots up to
step ``d``; the others train on.
"""

from __future__ import annotations

import functools
import math
import signal
import threading
import time
from typing import Any, Callable, Collection, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from . import settings
from .config import RunConfig
from .experiments.thresholds import crossing_levels
from .models import build_model, last_layer
from .run import METRICS, Run, TrainState
from .tasks import make_dataset

#: Validation accuracies whose first step the core places exactly (see :class:`Core`).
VALIDATION_LEVELS = crossing_levels()

#: Fields in which the runs stacked in one core may differ.
VARYING = ("lr", "weight_decay", "seed")


def stack_key(config: RunConfig) -> RunConfig:
    """``config`` with the :data:`VARYING` fields at their defaults: runs with equal
    keys can be trained together."""
    default = RunConfig()
    return config.replace(**{k: getattr(default, k) for k in VARYING})


#: Validation may cost at most this share of a run's training steps, as estimated by
#: :func:`validation_cost` (the estimate is close at train fractions near 0.5 and
#: overstates the cost below; ``benchmarks/trainer_speed.py`` measures the share).
VALIDATION_BUDGET = 0.10


def validation_cost(config: RunConfig, n_train: int, n_val: int) -> float:
    """One validation's cost in training steps, estimated from sizes: a forward pass over
    the ``n_val`` validation examples against a forward and a backward pass (about three
    forwards) over one batch of ``batch_size`` (or all ``n_train``) examples."""
    b = config.batch_size if config.batch_size and config.batch_size < n_train else n_train
    return n_val / (3 * max(b, 1))


def validation_schedule(steps: int, spacing: int = 1) -> np.ndarray:
    """Steps at which validation is measured: every ``spacing`` steps while that is at
    most 1% of the step, then a spacing of 1% of the step; plus ``steps``. The core
    places the steps where validation accuracy first reaches each of
    :data:`VALIDATION_LEVELS` exactly, between two of these (:class:`Core`)."""
    t = np.arange(steps + 1)
    return t[(t % np.maximum(spacing, t // 100) == 0) | (t == steps)]


def validation_spacing(steps: int, cost: float, budget: float = VALIDATION_BUDGET) -> int:
    """The smallest spacing whose :func:`validation_schedule` over ``steps`` costs at
    most ``budget`` of the training steps, each validation ``cost`` steps. 1 (every step
    early on, then every 1%) whenever that is within budget: full-batch runs at train
    fractions of about 0.4 and above keep the schedule they always had."""
    if cost * len(validation_schedule(steps, 1)) <= budget * steps:
        return 1
    lo, hi = 1, max(2, steps)  # cost(lo) over budget; cost(hi): at most 101 validations
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cost * len(validation_schedule(steps, mid)) <= budget * steps:
            hi = mid
        else:
            lo = mid
    return hi


def scheduled_validations(config: RunConfig, n_train: int, n_val: int) -> np.ndarray:
    """The steps at which a run of ``config`` validates, before the core places level
    crossings between them: :func:`validation_schedule` at the
    :func:`validation_spacing` of its :func:`validation_cost` over ``config.steps``.

    A minibatch run (batch smaller than the ``n_train`` training examples) also never
    validates more often than every ``ceil(cost / VALIDATION_BUDGET)`` steps, so that
    every stretch of it, its dense start included, spends at most about
    :data:`VALIDATION_BUDGET` of its time validating: one of its steps can cost less than
    a validation (0.67 steps at p 31, r 0.5, batch 240), and validating every step early
    made its first 600 steps a quarter validation. Full-batch runs, where a validation
    costs at most a third of a step at r >= 0.5, keep the schedule they always had (the
    stored runs and the committed records were made on it)."""
    cost = validation_cost(config, n_train, n_val)
    spacing = validation_spacing(config.steps, cost)
    if config.batch_size and config.batch_size < n_train:
        spacing = max(spacing, math.ceil(cost / VALIDATION_BUDGET))
    return validation_schedule(config.steps, spacing)


def snapshot_schedule(steps: int, n: int) -> np.ndarray:
    """About ``n`` snapshot steps in ``[0, steps]``: half geometric (dense early), half
    evenly spaced, always including 0 and ``steps``."""
    geo = np.geomspace(1, steps, max(n // 2, 2))
    lin = np.linspace(0, steps, max(n - n // 2, 2))
    return np.unique(np.round(np.concatenate([[0], geo, lin])).astype(np.int64))


def steps_per_epoch(config: RunConfig, n_train: int) -> int:
    """Iterations in one pass over the ``n_train`` training examples: 1 with full
    batches (``batch_size`` 0 or at least ``n_train``), else ``n_train // batch_size``
    (the remainder of each epoch's permutation is left out)."""
    b = config.batch_size
    return n_train // b if b and b < n_train else 1


def batch_indices(config: RunConfig, n_train: int, t: int) -> Optional[torch.Tensor]:
    """Indices ``(batch_size,)`` of the minibatch of iteration ``t`` (None for full batch).

    A function of ``t`` alone (one seeded permutation per epoch), so a resumed run
    sees exactly the batches an uninterrupted one would."""
    b = config.batch_size
    if not b or b >= n_train:
        return None
    epoch, k = divmod(t, steps_per_epoch(config, n_train))
    return _epoch_permutation(config.seed, epoch, n_train)[k * b:(k + 1) * b]


@functools.lru_cache(maxsize=64)
def _epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every target token: logits ``(N, C)`` with targets
    ``(N,)``, or ``(N, T, C)`` with ``(N, T)`` (arch ``grok``)."""
    return F.cross_entropy(logits.flatten(0, -2), y.flatten())


def loss_fn(config: RunConfig, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy, or MSE against one-hot targets (Omnigrok), averaged over the
    target tokens: ``logits`` ``(N, C)`` with ``y`` ``(N,)`` (arch ``book``: over the
    batch), or ``(N, T, C)`` with ``(N, T)`` (arch ``grok``: over all ``N * T``
    right-hand-side tokens, as openai/grok's ``F.cross_entropy(..., reduction="mean")``).
    MSE sums the squared errors over the classes of each token."""
    if config.loss == "mse":
        return F.mse_loss(logits, F.one_hot(y, logits.shape[-1]).to(logits.dtype),
                          reduction="sum") / y.numel()
    return cross_entropy(logits, y)


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-row accuracy ``(M,)`` of stacked logits ``(M, N, C)`` or ``(M, N, T, C)``
    against targets ``(N,)``/``(N, T)`` or ``(M, N)``/``(M, N, T)``: the fraction of
    the N examples whose every target token is the argmax (openai/grok's
    ``_accuracy``), in the logits' dtype."""
    correct = logits.argmax(-1) == y
    if correct.dim() > 2:
        correct = correct.flatten(2).all(2)
    return correct.to(logits.dtype).mean(1)


def default_device() -> torch.device:
    """``$GROKBOOK_DEVICE`` (``cpu``, ``cuda``, ``cuda:N`` or ``mps``) if set, else CUDA,
    then MPS, then the CPU, whichever is available first. ValueError for a device that
    is not one of those or not available here."""
    mps = getattr(torch.backends, "mps", None)
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": mps is not None and mps.is_available()}
    name = settings.device()
    if not name:
        return torch.device(next(kind for kind in ("cuda", "mps", "cpu") if available[kind]))
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in available:
        raise ValueError(f"GROKBOOK_DEVICE={name!r} is not a device; use cpu, cuda, cuda:N or mps")
    if not available[device.type]:
        raise ValueError(f"GROKBOOK_DEVICE={name!r}, but this machine has no {device.type} device")
    return device


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by SIGINT or SIGTERM at a consistent step (checkpointed when
    the run has a store)."""


class _Interrupt:
    """Turns SIGINT and SIGTERM into a flag checked between iterations, so that Ctrl-C
    or a scheduler's kill stops training at a consistent state that can be checkpointed."""

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


#: The stacked rows are zero-padded to a multiple of this many entries and reduced chunk
#: by chunk: torch splits one long reduction between threads (so its rounding depends
#: on the thread count) but never a chunk this short, so every norm and cosine, and
#: with them the run, is the same whatever the threads.
_CHUNK = 16384


def _rows_sum(x: torch.Tensor) -> torch.Tensor:
    """Row sums of an ``(M, P)`` tensor (``P`` a multiple of :data:`_CHUNK`), ``(M,)``."""
    return x.view(x.shape[0], -1, _CHUNK).sum(2).sum(1)


def _rows_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise dot product of two ``(M, P)`` tensors, ``(M,)``."""
    return _rows_sum(a * b)


def _rows_norm(a: torch.Tensor) -> torch.Tensor:
    """Row-wise Euclidean norm of an ``(M, P)`` tensor, ``(M,)``."""
    return _rows_dot(a, a).sqrt()


@functools.cache
def _keep_freed_memory() -> None:
    """Ask glibc's allocator to keep freed blocks of up to 32 MiB for reuse instead of
    returning them to the system. By default every buffer over 128 KiB is a fresh
    ``mmap``, so each step's activations page-fault in anew: measured on the spectral
    chapter's ensembles, 2.7x the page faults and twice the system time. A no-op where
    the C library is not glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 256 << 20)


def adam_update(t: int, w: torch.Tensor, m: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
                lr: torch.Tensor | float, decoupled_wd: torch.Tensor | float | None,
                betas: tuple[float, float], eps: float = 1e-8) -> None:
    """Iteration ``t``'s Adam update of ``w`` in place, with ``torch.optim``'s arithmetic
    (epsilon ``eps``): the moments ``m``, ``v`` (shaped as ``w``) take the gradient ``g``, and
    with ``decoupled_wd`` (AdamW) ``w`` first shrinks by ``1 - lr * decoupled_wd``; None
    for Adam, whose L2 decay is already in ``g``. ``lr`` and ``decoupled_wd`` are numbers
    or ``(M, 1)`` per-row tensors."""
    b1, b2 = betas
    if decoupled_wd is not None:
        w.mul_(1 - lr * decoupled_wd)
    m.lerp_(g, 1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    denom = (v.sqrt() / math.sqrt(1 - b2 ** (t + 1))).add_(eps)
    w.sub_(lr / (1 - b1 ** (t + 1)) * (m / denom))


class Core:
    """The stacked training state of ``configs`` (equal :func:`stack_key`), from
    scratch or from ``states`` (one per config, all of the same step).

    Validation runs on :func:`scheduled_validations` (its cost within
    :data:`VALIDATION_BUDGET`). When a row's validation accuracy first reaches one
    of :data:`VALIDATION_LEVELS` at a scheduled step ``b`` more than one step after the
    previous one ``a``, the row alone is replayed from its weights and optimiser state
    at ``a`` and the step is bisected: the row's validation record gains the first step
    at or above the level and the step before it. Rows never mix, so the replay retraces
    the row's own steps; the place is exact whenever the accuracy does not rise through
    the level and fall back between ``a`` and ``b``. The replay costs at most ``b - a``
    one-row steps and ``log2(b - a)`` validations per level.
    """

    def __init__(self, configs: Sequence[RunConfig], device: Optional[torch.device | str] = None,
                 states: Optional[Sequence[TrainState]] = None) -> None:
        if not configs or any(stack_key(c) != stack_key(configs[0]) for c in configs):
            raise ValueError("configs trained together must differ only in " + ", ".join(VARYING))
        self.configs = list(configs)
        c0, n = configs[0], len(configs)
        _keep_freed_memory()
        self.c0, self.dev = c0, torch.device(device) if device is not None else default_device()
        dev = self.dev
        data = make_dataset(c0)
        self.x_tr, self.y_tr = data.train_x.to(dev), data.train_y.to(dev)
        self.x_va, self.y_va = data.val_x.to(dev), data.val_y.to(dev)
        models = [build_model(c, data.vocab_size, data.n_classes) for c in configs]
        w = torch.stack([torch.nn.utils.parameters_to_vector(m.parameters()) for m in models]).detach().to(dev)
        self.n_params = w.shape[1]
        w = F.pad(w, (0, -self.n_params % _CHUNK))  # zeros that no update moves
        template = models[0].to(dev)
        layout = [(name, p.shape) for name, p in template.named_parameters()]
        sizes = [p.numel() for p in template.parameters()]
        offsets = np.cumsum([0] + sizes).tolist()
        out = next(i for i, p in enumerate(template.parameters()) if p is last_layer(template))
        self.out_slice = slice(offsets[out], offsets[out + 1])

        def forward(row: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            # one split, not a slice per parameter: a slice's backward writes a zero-filled
            # row of all P entries, a split's backward one concatenation
            chunks = row[:self.n_params].split(sizes)
            params = {name: c.view(shape) for (name, shape), c in zip(layout, chunks)}
            return functional_call(template, params, (x,))

        self._forward = forward  # one row's logits, unbatched
        loss = lambda logits, y: loss_fn(c0, logits, y)
        # full batch: vmap also for M = 1, because unbatched kernels round differently
        # (measured up to 7e-5 in the weights after 3 steps) and a run must not depend on
        # its company; minibatch rows go unbatched, one at a time (_gradient)
        self._logits = torch.vmap(forward, in_dims=(0, None))       # one batch for every row
        self._loss = torch.vmap(loss, in_dims=(0, None))

        if c0.fixed_norm:
            w.mul_(c0.fixed_norm / _rows_norm(w)[:, None])
        self.lr = torch.tensor([c.lr for c in configs], device=dev, dtype=w.dtype)[:, None]
        self.wd = torch.tensor([c.weight_decay for c in configs], device=dev, dtype=w.dtype)[:, None]
        self.l2 = c0.optimizer != "adamw" and any(c.weight_decay for c in configs)
        self.steps = c0.steps
        self.metrics = torch.full((self.steps, n, len(METRICS)), float("nan"), device=dev, dtype=w.dtype)
        self.val: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self.snaps: list[tuple[int, np.ndarray]] = []
        self.t0, self.wall0 = 0, 0.0
        # the optimiser's state, each (M, P): Adam's moments (SGD's momentum in "m") and,
        # with the Grokfast filter, the gradient's moving average "ema"
        self.w = w
        self.opt = {k: torch.zeros_like(w) for k in ("m", "v") + (("ema",) if c0.grokfast_lamb else ())}
        self.theta0, self.prev_delta = w.clone(), torch.zeros_like(w)
        self.val_at = set(scheduled_validations(c0, len(self.y_tr), len(self.y_va)).tolist())
        self.snap_at = set(snapshot_schedule(self.steps, c0.n_snapshots).tolist())
        self.levels = np.array(VALIDATION_LEVELS)
        self.found = np.zeros((n, len(self.levels)), dtype=bool)  # row i has reached level k
        self.extra: list[tuple[int, int, float, float]] = []      # placed (row, step, loss, acc)
        self.at_val: Optional[tuple[int, torch.Tensor, dict[str, torch.Tensor]]] = None
        if states is not None:
            self._resume(states)
        self.theta0_norm = _rows_norm(self.theta0)

    def _resume(self, states: Sequence[TrainState]) -> None:
        dev, dtype = self.dev, self.w.dtype
        pad = -self.n_params % _CHUNK
        stack = lambda get: F.pad(torch.stack([get(s) for s in states]).to(dev), (0, pad))
        self.t0, self.wall0 = states[0].step, max(s.wall_time_s for s in states)
        self.w, self.theta0, self.prev_delta = stack(lambda s: s.flat), stack(lambda s: s.theta0), \
            stack(lambda s: s.prev_delta)
        self.opt = {k: stack(lambda s, k=k: s.opt[k]) for k in self.opt}
        self.metrics[:self.t0] = torch.from_numpy(np.stack([s.metrics for s in states], axis=1)).to(dev)
        # scheduled validations are common to every row; placed crossings are the row's own
        base = [[v for v in s.val if v[0] in self.val_at] for s in states]
        for k, (t, _, _) in enumerate(base[0]):
            self.val.append((t, torch.tensor([b[k][1] for b in base], device=dev, dtype=dtype),
                             torch.tensor([b[k][2] for b in base], device=dev, dtype=dtype)))
        for i, s in enumerate(states):
            self.extra += [(i, t, loss, acc) for t, loss, acc in s.val if t not in self.val_at]
            accs = np.array([acc for _, _, acc in s.val], dtype=np.float64)
            self.found[i] = (accs[:, None] >= self.levels[None, :]).any(0) if len(accs) else False
        if all(s.at_validation is not None for s in states):
            self.at_val = (states[0].at_validation[0], stack(lambda s: s.at_validation[1]),
                           {k: stack(lambda s, k=k: s.at_validation[2][k]) for k in self.opt})
        for k, (t, _) in enumerate(states[0].snapshots):
            self.snaps.append((t, np.stack([s.snapshots[k][1] for s in states])))

    @torch.no_grad()
    def _validate(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Validation loss and accuracy ``(M,)`` of the stacked weights ``w`` ``(M, P)``."""
        logits = self._logits(w, self.x_va)
        return self._loss(logits, self.y_va), accuracy(logits, self.y_va)

    @torch.no_grad()
    def observe(self, t: int) -> None:
        """Validation and snapshot of theta_t, if scheduled; a level first reached since
        the previous validation is placed exactly (:meth:`_place`)."""
        if t in self.val_at:
            loss, acc = self._validate(self.w)
            new = (acc.cpu().numpy()[:, None] >= self.levels[None, :]) & ~self.found
            if new.any() and t:  # a diverged row's accuracy means nothing: nothing to place
                new &= (self.diverged(t) < 0)[:, None]
            if self.at_val is not None and t - self.at_val[0] > 1:
                for i, k in zip(*np.nonzero(new)):
                    self._place(int(i), float(self.levels[k]), t)
            self.found |= new
            self.val.append((t, loss, acc))
            if not self.found.all():  # the state a later crossing is replayed from
                self.at_val = (t, self.w.clone(), {k: x.clone() for k, x in self.opt.items()})
        if t in self.snap_at:
            self.snaps.append((t, self.w[:, :self.n_params].float().cpu().numpy().copy()))

    @torch.no_grad()
    def _place(self, i: int, level: float, b: int) -> None:
        """Row ``i`` is below ``level`` at the previous validation ``a`` and at or above
        it at ``b``: bisect ``(a, b]`` by replaying the row alone from ``a``, and record
        the first step at or above the level and the step before it."""
        a, wa, opt_a = self.at_val  # type: ignore[misc]
        lo, hi = a, b
        state = (wa[i:i + 1].clone(), {k: x[i:i + 1].clone() for k, x in opt_a.items()})
        lo_val = hi_val = None
        while hi - lo > 1:
            mid = (lo + hi) // 2
            w, opt = state[0].clone(), {k: x.clone() for k, x in state[1].items()}
            for t in range(lo, mid):
                self._advance(t, [i], w, opt)
            loss, acc = (x.item() for x in self._validate(w))
            if acc >= level:
                hi, hi_val = mid, (loss, acc)
            else:
                lo, lo_val, state = mid, (loss, acc), (w, opt)
        self.extra += [(i, t, *val) for t, val in ((lo, lo_val), (hi, hi_val)) if val is not None]

    def _gradient(self, w: torch.Tensor, configs: Sequence[RunConfig], t: int):
        """Iteration ``t``'s losses ``(M,)``, logits, targets and gradient ``(M, P)`` of
        the rows ``w`` of ``configs``.

        Full batch: every row through the vmapped forward on the one training set.
        Minibatch: one plain (unbatched) forward and backward per row on its own batch,
        which is faster for a run alone than the vmapped gather of a batch per row (1.2
        to 1.7x for the gradient at p 31, width 64, batch 240, one thread); rows never
        mix either way, so a run is the same alone or stacked. (Minibatch runs trained
        before this change, through the vmapped gather, differ from re-trained ones in
        rounding; no committed record holds one.)"""
        idx = [batch_indices(c, len(self.y_tr), t) for c in configs]
        with torch.enable_grad():  # also inside observe's replays
            if idx[0] is None:
                wg = w.detach().requires_grad_(True)
                logits, yb = self._logits(wg, self.x_tr), self.y_tr
                losses = self._loss(logits, yb)
                (g,) = torch.autograd.grad(losses.sum(), wg)
                return losses.detach(), logits.detach(), yb, g
            rows = []
            for i, ib in enumerate(idx):
                wi = w[i].detach().requires_grad_(True)
                ib = ib.to(self.dev)
                logits_i, yb_i = self._forward(wi, self.x_tr[ib]), self.y_tr[ib]
                loss_i = loss_fn(self.c0, logits_i, yb_i)
                (g_i,) = torch.autograd.grad(loss_i, wi)
                rows.append((loss_i.detach(), logits_i.detach(), yb_i, g_i))
        losses, logits, yb, g = (torch.stack(x) for x in zip(*rows))
        return losses, logits, yb, g

    @torch.no_grad()
    def _apply(self, t: int, g: torch.Tensor, gnorm: torch.Tensor, w: torch.Tensor, opt: dict[str, torch.Tensor],
               lr: torch.Tensor, wd: torch.Tensor) -> None:
        """Filter ``g`` (Grokfast), clip it (``gnorm``: its norms, recomputed after the
        filter), update ``w`` and its optimiser state ``opt`` in place, and put the weights
        back on their sphere for fixed-norm runs."""
        c0 = self.c0
        if c0.grokfast_lamb:
            ema = opt["ema"]
            if t == 0:
                ema.copy_(g)
            else:
                ema.lerp_(g, 1 - c0.grokfast_alpha)
            g.add_(ema, alpha=c0.grokfast_lamb)
            if c0.grad_clip:
                gnorm = _rows_norm(g)
        if c0.grad_clip:
            g.mul_((c0.grad_clip / (gnorm + 1e-6)).clamp(max=1.0)[:, None])
        self._update(t, g, w, opt["m"], opt["v"], lr, wd)
        if c0.fixed_norm:
            w.mul_(c0.fixed_norm / _rows_norm(w)[:, None])

    def _advance(self, t: int, rows: list[int], w: torch.Tensor, opt: dict[str, torch.Tensor]) -> None:
        """Iteration ``t`` for the ``rows`` whose weights are ``w`` and optimiser state
        ``opt`` (each ``(len(rows), P)``), in place, recording nothing: the step
        :meth:`step` takes."""
        _, _, _, g = self._gradient(w, [self.configs[i] for i in rows], t)
        with torch.no_grad():
            self._apply(t, g, _rows_norm(g), w, opt, self.lr[rows], self.wd[rows])

    def step(self, t: int) -> None:
        """Iteration ``t``: observe theta_t, one gradient and update for every row, the
        metric row ``metrics[t]``."""
        self.observe(t)
        w = self.w
        losses, logits, yb, g = self._gradient(w, self.configs, t)
        with torch.no_grad():
            gnorm, wnorm = _rows_norm(g), _rows_norm(w)
            row = [losses, accuracy(logits, yb), gnorm, wnorm,
                   w[:, self.out_slice].norm(dim=1), _rows_dot(w, self.theta0) / (wnorm * self.theta0_norm)]
            prev = w.clone()
            self._apply(t, g, gnorm, w, self.opt, self.lr, self.wd)
            delta = w - prev
            row.append(_rows_dot(prev, w) / (wnorm * _rows_norm(w)))
            row.append(_rows_dot(delta, self.prev_delta) / (_rows_norm(delta) * _rows_norm(self.prev_delta))
                       if t else torch.full_like(wnorm, float("nan")))
            self.metrics[t] = torch.stack(row, dim=1)
            self.prev_delta = delta

    def _update(self, t: int, g: torch.Tensor, w: torch.Tensor, m: torch.Tensor, v: torch.Tensor,
                lr: torch.Tensor, wd: torch.Tensor) -> None:
        """The optimiser's update of the rows ``w`` (moments ``m``, ``v``) in place:
        ``torch.optim``'s arithmetic with the warmed-up ``(M, 1)`` learning rates ``lr``
        and weight decays ``wd``."""
        c = self.c0
        lr = lr * min(1.0, (t + 1) / c.warmup_steps) if c.warmup_steps else lr
        if self.l2:  # Adam and SGD: L2 weight decay through the gradient (0 * w for rows without)
            g.add_(w * wd)
        if c.optimizer == "sgd":
            m.mul_(c.momentum).add_(g)
            w.sub_(lr * m)
            return
        adam_update(t, w, m, v, g, lr, wd if c.optimizer == "adamw" else None, c.betas, c.adam_eps)

    def diverged(self, upto: int) -> np.ndarray:
        """Per row, the first iteration before ``upto`` whose loss is not finite, or -1."""
        bad = ~torch.isfinite(self.metrics[:upto, :, 0])
        first = torch.where(bad.any(0), bad.to(torch.int8).argmax(0), -1)
        return first.cpu().numpy()

    def states(self, done: int, wall_s: float) -> list[TrainState]:
        """One :class:`TrainState` per row after ``done`` iterations."""
        metrics = self.metrics[:done].cpu().numpy()
        val = [(t, loss.cpu().tolist(), acc.cpu().tolist()) for t, loss, acc in self.val]
        row = lambda x, i: x[i, :self.n_params].cpu().clone()
        at = lambda i: None if self.at_val is None else (
            self.at_val[0], row(self.at_val[1], i), {k: row(x, i) for k, x in self.at_val[2].items()})
        return [TrainState(done, row(self.w, i), {k: row(x, i) for k, x in self.opt.items()},
                           metrics[:, i], self._row_val(i, [(t, loss[i], acc[i]) for t, loss, acc in val]),
                           [(t, s[i]) for t, s in self.snaps], row(self.theta0, i),
                           row(self.prev_delta, i), self.wall0 + wall_s, at(i))
                for i in range(len(self.configs))]

    def _row_val(self, i: int, base: list[tuple[int, float, float]]) -> list[tuple[int, float, float]]:
        """Row ``i``'s validation record: the scheduled ``base`` and its placed
        crossings, by step."""
        placed = {t: (t, loss, acc) for r, t, loss, acc in self.extra if r == i}
        placed.update({t: (t, loss, acc) for t, loss, acc in base})
        return [placed[t] for t in sorted(placed)]

    def runs(self, done: int, wall_s: float) -> list[Run]:
        """The :class:`Run` of every row after ``done`` iterations, each diverged row
        trimmed at its divergence."""
        m_np = self.metrics[:done].cpu().numpy().astype(np.float64)
        v_steps = np.array([t for t, _, _ in self.val], dtype=np.int64)
        v_loss = torch.stack([l for _, l, _ in self.val]).cpu().numpy().astype(np.float64)
        v_acc = torch.stack([a for _, _, a in self.val]).cpu().numpy().astype(np.float64)
        s_steps = np.array([t for t, _ in self.snaps], dtype=np.int64)
        runs = []
        for i, (c, d) in enumerate(zip(self.configs, self.diverged(done))):
            end = done if d < 0 else d + 1
            last = self.steps if d < 0 else d
            keep_v, keep_s = v_steps <= last, s_steps <= last
            val = self._row_val(i, list(zip(v_steps[keep_v].tolist(), v_loss[keep_v, i], v_acc[keep_v, i])))
            vs, vl, va = (np.array([x[j] for x in val if x[0] <= last], dtype=dt)
                          for j, dt in ((0, np.int64), (1, np.float64), (2, np.float64)))
            runs.append(Run(
                config=c, metrics={name: m_np[:end, i, k] for k, name in enumerate(METRICS)},
                val_steps=vs, val_loss=vl, val_acc=va,
                snapshot_steps=s_steps[keep_s],
                snapshots=np.stack([s[i] for (t, s), k in zip(self.snaps, keep_s) if k]).astype(np.float32),
                diverged_at=None if d < 0 else int(d),
                wall_time_s=(self.wall0 + wall_s) / len(self.configs)))
        return runs


def train_core(configs: Sequence[RunConfig], *, states: Optional[Sequence[TrainState]] = None,
               checkpoint: Optional[Callable[[list[TrainState]], None]] = None,
               checkpoint_every_s: float = 30.0, checkpoint_every_steps: int = 0,
               checkpoint_at: Collection[int] = (),
               progress: Optional[Callable[[int, float], None]] = None,
               device: Optional[torch.device | str] = None) -> list[Run]:
    """Train ``configs`` (equal :func:`stack_key`) together and return their runs.

    ``states``: one checkpoint per config, all of the same step, to resume from.
    ``checkpoint(rows)`` receives one :class:`TrainState` per config after every
    ``checkpoint_every_s`` seconds of training, after every iteration count that is a
    multiple of ``checkpoint_every_steps`` (0: never), after every iteration count in
    ``checkpoint_at``, and on SIGINT or SIGTERM, after which :class:`TrainingInterrupted`
    is raised. ``progress(done, loss)`` is called
    about a hundred times per run with the first row's latest loss. Training stops early
    once every row has diverged.
    """
    core = Core(configs, device, states)
    steps, checkpoint_at = core.steps, frozenset(checkpoint_at)
    start = last_ckpt = time.perf_counter()
    check_every = max(1, steps // 100)
    saved_at = -1

    def save(done: int) -> None:
        nonlocal last_ckpt, saved_at
        checkpoint(core.states(done, time.perf_counter() - start))  # type: ignore[misc]
        last_ckpt, saved_at = time.perf_counter(), done

    done = core.t0
    with _Interrupt() as interrupt:
        for t in range(core.t0, steps):
            core.step(t)
            done = t + 1
            step_due = (checkpoint_every_steps > 0 and done % checkpoint_every_steps == 0) or done in checkpoint_at
            if not (done % check_every == 0 or done == steps or step_due or interrupt.hit):
                continue  # the checks below synchronise with the device: not every step
            if (core.diverged(done) >= 0).all():
                break
            if progress is not None:
                progress(done, float(core.metrics[t, 0, 0]))
            if checkpoint is not None and done < steps and (
                    step_due or time.perf_counter() - last_ckpt > checkpoint_every_s):
                save(done)
            if interrupt.hit and done < steps:  # also when the signal came during the checkpoint above
                if checkpoint is not None and saved_at != done:
                    save(done)
                kept = "checkpoint saved" if checkpoint is not None else "no checkpoint (no store)"
                raise TrainingInterrupted(f"training interrupted by {interrupt.hit} at step {done}; {kept}")
        else:
            core.observe(steps)
    return core.runs(done, time.perf_counter() - start)
