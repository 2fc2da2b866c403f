"""Another public trainer, for scoring transfer (chapter 12): danielmamay/grokking's
training loop and model, written here in our own words from what its published code does
(commit 3cec83d: ``grokking/model.py``, ``data.py``, ``training.py``), not copied. It is
deliberately **not** grokbook's training path (:mod:`grokbook.trainer`): its runs are
curves from a trainer nobody here has tuned, recorded in the corpus's schema
(:mod:`~grokbook.experiments.records`) by ``benchmarks/peer_curves.py`` under
``data/peer/``.

- The model: token and position embeddings (p + 2 tokens, 5 positions), ``n_layers``
  post-norm decoder blocks (``torch.nn.MultiheadAttention`` with a causal mask, then a
  residual and a LayerNorm; a 4x GELU MLP, then a residual and a LayerNorm), a final
  LayerNorm and a linear head; the logits of the last position.
- The data: every pair ``x op y =`` with its label, split at random into
  ``int(r * p^2)`` training and the rest validation pairs.
- The optimiser: AdamW (betas 0.9 / 0.98), a linear warm-up from 0.1 of the learning
  rate over 9 scheduler steps; shuffled minibatches of ``min(512, ceil(p^2 / 2))``, so a
  train fraction above 0.5 at p 31 gives two minibatches an epoch.
- Evaluation of the validation set at the end of an epoch, as the peer does, but at most
  once every :data:`EVAL_EVERY` steps (and at the last step): at p 31 an epoch is one or
  two steps, and validating at each would cost more than training. Evaluation does not
  touch the training, so this changes only the resolution of t1 and t4. The training
  loss and accuracy logged are those of each minibatch.

One departure: the peer's label for ``x+y`` at that commit is ``x + y`` without the
modulus (labels up to 2p - 2 against p + 2 output tokens); here it is ``(x + y) mod p``,
modular addition as everywhere else in the book.

**The grid** (:func:`configs`, fixed before any run): the peer's defaults (2 blocks, 4
heads, batch 512, learning rate 1e-3, weight decay 1) at p 31 and width 64 (its width
128 trains at under a third of the speed on a 2-core CPU), crossed with learning rates
{1e-3, 3e-3}, weight decays {0, 0.3, 1, 3} and train fractions {0.3, 0.5, 0.7}, two
seeds (each sets initialisation, split and shuffling), 2000 steps: 48 runs. The outcome
is the corpus's: generalizes (validation accuracy 99%, at an epoch's end) within the
budget, grokking when t4 >= 5 t2 (t2 from the minibatch training accuracy).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from ..phases import outcome, phase_times
from .records import N_POINTS, WINDOW, downsample_index
from .thresholds import AUTHORS

FAMILY = "peer_p31"
#: Where its records are kept (not in ``data/corpus/``: no predictor is fitted on them).
DATA = Path(__file__).resolve().parents[2] / "data" / "peer" / FAMILY
TRAINER = "danielmamay/grokking 3cec83d, rewritten (benchmarks/peer_curves.py)"
BASE = dict(task="add", p=31, n_layers=2, d_model=64, n_heads=4, batch_size=512, steps=2000)
LRS = (1e-3, 3e-3)
WEIGHT_DECAYS = (0.0, 0.3, 1.0, 3.0)
RS = (0.3, 0.5, 0.7)
SEEDS = (0, 1)
#: The fewest steps between two validations (at epochs' ends).
EVAL_EVERY = 10
#: Two runs of 60 steps at p 7 (the script's ``--tiny``, for its test).
TINY = dict(BASE, p=7, d_model=32, steps=60)


class PeerBlock(nn.Module):
    """A post-norm decoder block: causal self-attention, residual, LayerNorm; a 4x GELU
    MLP, residual, LayerNorm. Input and output ``(seq, batch, d)``."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads)
        self.attn_norm = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.mlp_norm = nn.LayerNorm(d)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n = h.shape[0]
        mask = torch.triu(torch.full((n, n), float("-inf")), diagonal=1)
        h = self.attn_norm(h + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0])
        return self.mlp_norm(h + self.mlp(h))


class PeerTransformer(nn.Module):
    """Embeddings of ``p + 2`` tokens and 5 positions, the blocks, a LayerNorm and the
    head; ``forward((batch, 4) tokens)`` gives the last position's ``(batch, p + 2)``
    logits."""

    def __init__(self, p: int, n_layers: int, d: int, heads: int) -> None:
        super().__init__()
        self.tokens, self.positions = nn.Embedding(p + 2, d), nn.Embedding(5, d)
        self.blocks = nn.Sequential(*[PeerBlock(d, heads) for _ in range(n_layers)])
        self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, p + 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.tokens(x) + self.positions(torch.arange(x.shape[1]))[None]
        return self.out(self.blocks(h.transpose(0, 1)))[-1]


def configs(base: dict = BASE) -> list[dict]:
    """The grid, seed-major (every configuration of seed 0 first)."""
    return [dict(base, lr=lr, weight_decay=wd, r=r, seed=s)
            for s in SEEDS for lr in LRS for wd in WEIGHT_DECAYS for r in RS]


def config_hash(cfg: dict) -> str:
    """16 hex digits of the SHA-256 of the configuration's sorted JSON."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def train(cfg: dict) -> dict:
    """Train one configuration (a dict of :func:`configs`) with the peer's loop, on one
    CPU thread or what torch is set to; its record in the corpus's schema (the columns
    :func:`grokbook.experiments.leaderboard.feature_table` reads: ``window`` ``(min(400,
    steps),)`` losses, downsampled curves, t1..t4 at the authors' thresholds, the outcome
    and the censored time). The first ``k`` steps do not depend on ``cfg["steps"]``."""
    p, steps, seed = cfg["p"], cfg["steps"], cfg["seed"]
    torch.manual_seed(seed)
    x, y = torch.cartesian_prod(torch.arange(p), torch.arange(p)).T
    inputs = torch.stack([x, torch.full_like(x, p + 1), y, torch.full_like(x, p)], dim=1)  # x op y =
    labels = (x + y) % p
    split = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_train = int(cfg["r"] * len(labels))
    tr, va = split[:n_train], split[n_train:]
    batch = min(cfg["batch_size"], math.ceil(len(labels) / 2))
    model = PeerTransformer(p, cfg["n_layers"], cfg["d_model"], cfg["n_heads"])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], betas=(0.9, 0.98), weight_decay=cfg["weight_decay"])
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=9)
    shuffle = torch.Generator().manual_seed(seed + 1)
    loss_fn = nn.CrossEntropyLoss()
    losses, accs, norms, val_steps, val_acc, val_loss = [], [], [], [], [], []
    start = time.perf_counter()
    while len(losses) < steps:
        order = tr[torch.randperm(n_train, generator=shuffle)]
        for k in range(0, n_train, batch):
            idx = order[k:k + batch]
            logits = model(inputs[idx])
            loss = loss_fn(logits, labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            warm.step()
            losses.append(loss.item())
            accs.append((logits.argmax(-1) == labels[idx]).float().mean().item())
            with torch.no_grad():
                norms.append(torch.linalg.vector_norm(torch.cat([w.reshape(-1) for w in model.parameters()])).item())
            if len(losses) == steps:
                break
        if len(losses) < steps and val_steps and len(losses) - val_steps[-1] < EVAL_EVERY:
            continue
        with torch.no_grad():  # at an epoch's end, as the peer evaluates
            logits = model(inputs[va])
            val_steps.append(len(losses))
            val_acc.append((logits.argmax(-1) == labels[va]).float().mean().item())
            val_loss.append(loss_fn(logits, labels[va]).item())
    loss, acc, norm = map(np.asarray, (losses, accs, norms))
    times = phase_times(np.arange(steps), acc, val_acc, val_steps=val_steps,  # index i: after i updates
                        leave=AUTHORS.leave, reach=AUTHORS.reach)
    diverged = not np.isfinite(loss).all()
    i, j = downsample_index(steps, N_POINTS), downsample_index(len(val_steps), N_POINTS)
    rec = {"family": FAMILY if cfg["p"] == BASE["p"] else "peer_tiny", "hash": config_hash(cfg), **cfg,
           "data_seed": cfg["seed"], "trainer": TRAINER,
           "window": loss[:WINDOW].astype(np.float32), "window_acc": acc[:WINDOW].astype(np.float32),
           "window_norm": norm[:WINDOW].astype(np.float32),
           "curve_steps": i.astype(np.int32), "train_loss": loss[i].astype(np.float32),
           "train_acc": acc[i].astype(np.float32), "weight_norm": norm[i].astype(np.float32),
           "val_steps": np.asarray(val_steps, np.int32)[j], "val_acc": np.asarray(val_acc, np.float32)[j],
           "val_loss": np.asarray(val_loss, np.float32)[j]}
    for k in ("t1", "t2", "t3", "t4"):
        rec[k] = getattr(times, k)
    rec["outcome"] = outcome(times, AUTHORS.delay, diverged)
    rec["event"] = times.t4 is not None
    rec["time"] = int(times.t4 if times.t4 is not None else steps)
    rec["final_train_acc"], rec["final_val_acc"] = float(acc[-1]), float(val_acc[-1])
    rec["steps_done"], rec["wall_time_s"] = steps, time.perf_counter() - start
    return rec


#: The record columns that make a configuration of :func:`configs`.
CONFIG_KEYS = tuple(BASE) + ("lr", "weight_decay", "r", "seed")


def record_config(record) -> dict:
    """The configuration of a record (a row of ``read_records`` or a dict of :func:`train`);
    ValueError when it does not hash to the record's ``hash``."""
    cfg = {k: (record[k].item() if isinstance(record[k], np.generic) else record[k]) for k in CONFIG_KEYS}
    if config_hash(cfg) != record["hash"]:
        raise ValueError(f"the record's configuration hashes to {config_hash(cfg)}, not to its hash {record['hash']}")
    return cfg


def live_check(record, steps: int = 100) -> dict:
    """Re-train the first ``steps`` steps of a record's configuration here and compare
    them with the record's early losses: ``{"config", "steps", "max_rel_diff"`` (the
    largest relative difference), ``"agrees"`` (within
    :data:`~grokbook.experiments.records.LIVE_RTOL`: bit for bit, up to float32),
    ``"start_rel_diff"`` and ``"same_start"}`` (over the first
    :data:`~grokbook.experiments.records.START_STEPS`, within ``START_RTOL``: the recorded
    run, whatever this machine's rounding does later). ValueError if the record keeps
    fewer than ``steps`` early steps."""
    from .records import LIVE_RTOL, START_RTOL, START_STEPS, max_rel_diff

    recorded = np.asarray(record["window"], np.float64)
    if not 0 < steps <= len(recorded):
        raise ValueError(f"steps must lie in [1, {len(recorded)}] (the record's window), got {steps}")
    cfg = record_config(record)
    live = np.asarray(train(dict(cfg, steps=steps))["window"], np.float64)
    diff = max_rel_diff(live, recorded[:steps])
    n = min(START_STEPS, steps)
    start = max_rel_diff(live[:n], recorded[:n])
    return {"config": cfg, "steps": steps, "max_rel_diff": diff, "agrees": diff <= LIVE_RTOL,
            "start_rel_diff": start, "same_start": start <= START_RTOL}


def live_check_text(check: Optional[dict]) -> str:
    """A sentence on :func:`live_check` for a chapter's prose (None: no run re-trained)."""
    from .records import START_STEPS

    if check is None:
        return "No run was re-trained (live_steps 0)."
    c, diff = check["config"], check["max_rel_diff"]
    what = (f"The first {check['steps']} steps of one of these runs (lr {c['lr']:g}, weight decay "
            f"{c['weight_decay']:g}, r {c['r']:g}, seed {c['seed']}) were re-trained in this execution: ")
    if check["agrees"]:
        return what + "they equal the record's " + ("bit for bit" if diff == 0 else f"within {diff:.0e} (relative)") + "."
    if check.get("same_start"):
        return (what + f"they start as the record's (the first {START_STEPS} within {check['start_rel_diff']:.0e}) "
                f"and depart later (up to {diff:.1e} apart, relative): this machine rounds differently from the one "
                f"that recorded them, and training amplifies a last-bit difference. The numbers here are the records'.")
    return (what + f"they differ from the record's from the start (up to {diff:.1e}, relative): this code or "
            "configuration is not the record's. The numbers here are the records'.")
