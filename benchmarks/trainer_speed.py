"""Training speed of grokbook's trainer against the peer's training loop, as ratios
(issues 21 and 36).

**The peer** is danielmamay/grokking, read at commit 9988f8d (``grokking/training.py``,
``grokking/data.py``, ``grokking/model.py``; the earlier 3cec83d validated once per
epoch). Its loop, written here in our own words by what it does (:func:`peer_loop`):

* the model computes every block at every position and the read-out at every position,
  of which the loss takes the last (:func:`full_sequence`, the book model's weights;
  grokbook's model computes the last block and the read-out at the answer position only);
* AdamW (betas 0.9 / 0.98) with a linear warm-up (``LinearLR``, factor 0.1 to 1 over 10
  updates), ``zero_grad(set_to_none=True)``; nothing read back per training step;
* the batch size is capped at half the training set (``min(batch_size, n_train // 2)``
  in its ``load_data``: batch 512 at p 31, r 0.5 trains at 240); the training tensors
  are sampled by a fresh permutation per epoch, in consecutive slices, the last slice of
  an epoch possibly short;
* after the update of loop index ``step`` (0-based) it evaluates when ``step`` is 1 or 10
  or a multiple of 100 (indices 0, 1, 10, 100, 200, ...): one forward over the whole
  training set and one over the validation set, loss and accuracy of each read back with
  ``.item()`` (its ``evaluate``, logged to wandb).

The cap applies to a batch size given; the full-batch cases (``batch_size`` 0, which the
peer's code cannot express: its largest batch is half the training set) train full
batch on both sides, so that both do the same work. Both sides train each case at the
(capped) batch size. ``--peer-schedule epoch`` swaps the peer's evaluation for the
earlier commit's (the validation set once per epoch, loss and accuracy read back every
step).

**grokbook** trains through :func:`grokbook.training.fit`: eight per-step metrics, and
validation on its own schedule (``trainer.scheduled_validations``: the spacing that
keeps its estimated cost within 10% of the training steps, in a minibatch run within 10%
of every stretch of it, then every 1% of the step;
the steps where validation accuracy first reaches each level placed exactly by
replaying the crossing run). Its spacing depends on the run's length, so "the first N
steps" is ambiguous: ``--grokbook-run full`` (the default) times the first N steps of a
run of the case's full length (``trainer.Core`` stepped as ``train_core`` steps it, with
that run's validation schedule: denser early than a short run's); ``--grokbook-run
timed`` times a whole run of N steps through ``fit`` (the figure recorded before
issue 36).

Figures, per case: grokbook and the peer's loop timed **interleaved** (grokbook, peer,
grokbook, peer, ...; ``--repeats``, default 3), steps per second end to end with each
side's validation, the ratio grokbook / peer per repeat and its median (>1: grokbook is
faster). The time each side spends validating is measured inside the same timing, so
each timing also gives its training-only rate; **a full run** is estimated per repeat
from those rates plus each side's validations over the full run, each validation timed
alone (best of 5): grokbook's on its schedule for the full run (the placements' replays
not counted: at most ``b - a`` one-row steps per level), the peer's at its indices 0, 1,
10 and every 100 (each one a forward over the training and the validation sets).
``--plain`` adds a third loop to each repeat: the peer's loop on grokbook's own model
(the answer position only), which isolates the cost of the trainer itself.

    python benchmarks/trainer_speed.py [--steps-scale 1.0] [--repeats 3] [--device cpu|cuda]
        [--grokbook-run full|timed] [--peer-schedule peer|epoch] [--plain] [--only TEXT]
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from grokbook import RunConfig
from grokbook.models import build_model
from grokbook.tasks import make_dataset
import grokbook.trainer as core_module
from grokbook.training import fit
from all import record

PAPER = RunConfig(p=97, r=0.5, n_layers=2, d_model=128, n_heads=4, lr=1e-4, weight_decay=1.0)
# chapter 1's default configuration
DEFAULT = RunConfig(p=47, r=0.5, n_layers=2, d_model=64, n_heads=4, layer_norm=False, lr=3e-3, weight_decay=1.0)
# the small-data minibatch case of issue 36 (the peer's defaults at p 31, width 64)
SMALL = RunConfig(p=31, r=0.5, n_layers=2, d_model=64, n_heads=4, lr=1e-3, weight_decay=1.0, batch_size=512)


def full_sequence(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The book model's logits computed the peer's way: every block at every position,
    the read-out at every position, the last position's logits returned ``(N, C)``."""
    h = model.embed(x) + model.pos[: x.shape[1]]
    for block in model.blocks:
        h = block(h)
    return model.unembed(model.ln_f(h))[:, -1]


def peer_batch_size(cfg: RunConfig) -> int:
    """The batch size the peer trains ``cfg`` at: at most half the training set (0, full
    batch, stays 0)."""
    n_train = len(make_dataset(cfg).train_y)
    return min(cfg.batch_size, n_train // 2) if cfg.batch_size else 0


def peer_evaluations(steps: int) -> int:
    """How many times the peer evaluates in ``steps`` updates: after loop indices 1, 10
    and every multiple of 100 (0 included)."""
    return sum(1 for t in range(steps) if t in (1, 10) or t % 100 == 0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peer_loop(cfg: RunConfig, device: torch.device, schedule: str = "peer",
              whole: bool = True) -> tuple[float, float]:
    """Seconds for ``cfg.steps`` updates of the peer's loop, and the seconds of them
    spent evaluating. ``schedule``: ``peer`` (its evaluation at indices 0, 1, 10 and
    every 100, training and validation sets) or ``epoch`` (the earlier commit's: the
    validation set after each epoch, loss and accuracy read back every step).
    ``whole``: the peer's model (:func:`full_sequence`); else grokbook's own model."""
    data = make_dataset(cfg)
    net = build_model(cfg, data.vocab_size, data.n_classes).to(device)
    model: Callable[[torch.Tensor], torch.Tensor] = (lambda inputs: full_sequence(net, inputs)) if whole else net
    x, y = data.train_x.to(device), data.train_y.to(device)
    vx, vy = data.val_x.to(device), data.val_y.to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=10)
    n = len(y)
    bs = cfg.batch_size or n

    def evaluate(inputs: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
        net.eval()
        with torch.no_grad():
            out = model(inputs)
            return F.cross_entropy(out, labels).item(), (out.argmax(-1) == labels).float().mean().item()

    log: list = []
    val_s, at = 0.0, n
    start = time.perf_counter()
    for t in range(cfg.steps):
        if at >= n:
            perm, at = torch.randperm(n, device=device), 0
        idx = perm[at:at + bs]
        at += bs
        net.train()
        opt.zero_grad(set_to_none=True)
        out = model(x[idx])
        loss = F.cross_entropy(out, y[idx])
        loss.backward()
        opt.step()
        sched.step()
        if schedule == "epoch":
            log.append((loss.item(), (out.argmax(-1) == y[idx]).float().mean().item()))
        if (t in (1, 10) or t % 100 == 0) if schedule == "peer" else at >= n:
            _sync(device)
            v0 = time.perf_counter()
            log.append((evaluate(x, y), evaluate(vx, vy)) if schedule == "peer" else evaluate(vx, vy))
            val_s += time.perf_counter() - v0
    _sync(device)
    return time.perf_counter() - start, val_s


def grokbook_trainer(cfg: RunConfig, device: torch.device, full: int = 0) -> tuple[float, float]:
    """Seconds for ``cfg.steps`` steps of grokbook's trainer, and the seconds of them
    spent in its scheduled validations (``Core.observe`` at a validation step, the
    placements' replays included). ``full`` 0: a run of ``cfg.steps`` through
    :func:`grokbook.training.fit`; else the first ``cfg.steps`` steps of a run of
    ``full`` steps (its validation schedule), the core stepped as ``train_core`` steps it."""
    observe, spent = core_module.Core.observe, [0.0]

    def timed(self: core_module.Core, t: int) -> None:
        if t not in self.val_at:
            return observe(self, t)
        _sync(self.dev)
        v0 = time.perf_counter()
        observe(self, t)
        _sync(self.dev)
        spent[0] += time.perf_counter() - v0

    core_module.Core.observe = timed
    try:
        start = time.perf_counter()
        if not full:
            fit(cfg, progress=False, device=device)
        else:
            core = core_module.Core([cfg.replace(steps=full)], device)
            check_every = max(1, full // 100)
            for t in range(cfg.steps):
                core.step(t)
                if (t + 1) % check_every == 0:  # train_core's divergence check (a device sync)
                    core.diverged(t + 1)
        _sync(device)
        return time.perf_counter() - start, spent[0]
    finally:
        core_module.Core.observe = observe


def validation_pass_s(cfg: RunConfig, device: torch.device, schedule: str) -> tuple[float, float, float]:
    """Seconds of one validation, best of 5: grokbook's (the core's, on its stacked row:
    loss and accuracy over the validation set, read back to the host), the peer's (its
    ``evaluate`` of the training and the validation sets; the validation set alone with
    ``schedule`` ``epoch``) and the same on grokbook's own model."""
    core = core_module.Core([cfg], device)
    data = make_dataset(cfg)
    model = build_model(cfg, data.vocab_size, data.n_classes).to(device)
    sets = ([(core.x_tr, core.y_tr)] if schedule == "peer" else []) + [(core.x_va, core.y_va)]

    def ours() -> None:
        with torch.no_grad():
            logits = core._logits(core.w, core.x_va)
            core._loss(logits, core.y_va).cpu(), core_module.accuracy(logits, core.y_va).cpu()

    def loop(whole: bool) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                for x, y in sets:
                    out = full_sequence(model, x) if whole else model(x)
                    F.cross_entropy(out, y).item(), (out.argmax(-1) == y).float().mean().item()
        return run

    times = []
    for fn in (ours, loop(True), loop(False)):
        fn()
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        times.append(best)
    return times[0], times[1], times[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps-scale", type=float, default=1.0, help="multiply every case's steps")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats of the timings")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--grokbook-run", choices=("full", "timed"), default="full",
                    help="time grokbook over the first steps of a full-length run (its schedule), or a run "
                         "of the timed steps")
    ap.add_argument("--peer-schedule", choices=("peer", "epoch"), default="peer",
                    help="the peer's evaluation: at 9988f8d's indices 0, 1, 10, every 100; or once per epoch "
                         "(3cec83d)")
    ap.add_argument("--plain", action="store_true", help="also time the peer's loop on grokbook's own model")
    ap.add_argument("--only", metavar="TEXT", default="", help="time only the cases whose label contains TEXT "
                    "(for example 'batch 512': the two minibatch cases)")
    args = ap.parse_args()
    device = torch.device(args.device)
    sched = args.peer_schedule
    base = {"cpu": (600, 40, 600), "cuda": (2000, 2000, 2000)}[device.type]
    # (label, config, steps timed, steps of a full run)
    cases = [("paper model, batch 512", PAPER.replace(batch_size=512), base[0], 10_000),
             ("paper model, full batch", PAPER, base[1], 10_000),
             ("default profile (chapter 1)", DEFAULT, base[2], 4_000),
             ("p 31, 2 x 64, batch 512", SMALL, base[0], 3_000)]
    cases = [case for case in cases if args.only in case[0]]
    if not cases:
        raise SystemExit(f"no case's label contains {args.only!r}")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device: {device.type} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}; "
          f"grokbook: {'first steps of a full-length run' if args.grokbook_run == 'full' else 'a run of the timed steps'}; "
          f"peer's evaluation: {'indices 0, 1, 10, every 100 (9988f8d)' if sched == 'peer' else 'once per epoch (3cec83d)'}")
    summary = []
    for label, cfg, steps, full in cases:
        capped = peer_batch_size(cfg)
        if capped != cfg.batch_size:
            label = f"{label} ({capped} after the peer's cap)"
        cfg = cfg.replace(batch_size=capped, steps=max(20, int(steps * args.steps_scale)))
        n = cfg.steps
        first = f"first {n} steps" + (f" of a {full}-step run" if args.grokbook_run == "full" else f" (a {n}-step run)")
        print(f"\n{label}: {first}; steps per second with validation, training only, the ratio grokbook / loop",
              flush=True)
        fit(cfg.replace(steps=5), progress=False, device=device)  # warm-up (allocator, kernels)
        peer_loop(cfg.replace(steps=5), device, sched)
        val_g, val_peer, val_plain = validation_pass_s(cfg, device, sched)
        data = make_dataset(cfg)
        n_val_g = len(core_module.scheduled_validations(cfg.replace(steps=full), len(data.train_y), len(data.val_y)))
        epoch = math.ceil(len(data.train_y) / (cfg.batch_size or len(data.train_y)))
        n_val_peer = peer_evaluations(full) if sched == "peer" else full // epoch
        sides = {"peer": lambda c: peer_loop(c, device, sched)}
        if args.plain:
            sides["plain"] = lambda c: peer_loop(c, device, sched, whole=False)
        passes = {"peer": val_peer, "plain": val_plain}
        ratios: dict[str, list[float]] = {}
        for rep in range(args.repeats):
            tg, vg = grokbook_trainer(cfg, device, full if args.grokbook_run == "full" else 0)
            full_g = full * (tg - vg) / n + n_val_g * val_g
            line = f"  repeat {rep + 1}: grokbook {n / tg:.2f} ({n / (tg - vg):.2f})"
            for side, run in sides.items():
                tp, vp = run(cfg)
                full_p = full * (tp - vp) / n + n_val_peer * passes[side]
                ratios.setdefault(f"{side}, first", []).append(tp / tg)
                ratios.setdefault(f"{side}, full", []).append(full_p / full_g)
                line += (f", {side} {n / tp:.2f} ({n / (tp - vp):.2f}) ratio {tp / tg:.2f}, "
                         f"full run {full_p / full_g:.2f}")
            print(line, flush=True)
        med = {k: statistics.median(r) for k, r in ratios.items()}
        summary.append((label, n, full, med))
        for side in sides:
            what = ("the peer's loop (full-sequence model" if side == "peer"
                    else "the peer's loop on grokbook's own model (") + \
                   (", its evaluation at 0, 1, 10, every 100)" if sched == "peer" else ", validation once per epoch)")
            print(f"  grokbook / {side}: {', '.join(f'{x:.2f}' for x in ratios[f'{side}, first'])} -> "
                  f"median {med[f'{side}, first']:.2f}; full run of {full} (estimated): "
                  f"{', '.join(f'{x:.2f}' for x in ratios[f'{side}, full'])} -> median {med[f'{side}, full']:.2f}")
            meaning = (f"grokbook / {what}, both with validation, steps per second, "
                       f"median of {args.repeats} interleaved (>1: faster)")
            record("trainer", f"{label}, {first}, grokbook / {side} loop", med[f"{side}, first"], meaning)
            record("trainer", f"{label}, full run of {full} steps (estimated), grokbook / {side} loop",
                   med[f"{side}, full"], meaning)
        print(f"  validations over the full run: grokbook {n_val_g} x {val_g * 1e3:.1f} ms, "
              f"peer {n_val_peer} x {val_peer * 1e3:.1f} ms", flush=True)
    sides = [k.split(",")[0] for k in summary[0][3] if k.endswith("first")]
    w = max(len(label) for label, _, _, _ in summary) + 2
    print(f"\n{'case':<{w}}{'steps':>6}" + "".join(f"{'vs ' + s:>10}" for s in sides)
          + f"{'full run':>10}" + "".join(f"{'vs ' + s:>10}" for s in sides))
    for label, n, full, med in summary:
        print(f"{label:<{w}}{n:>6}" + "".join(f"{med[f'{s}, first']:>10.2f}" for s in sides)
              + f"{full:>10}" + "".join(f"{med[f'{s}, full']:>10.2f}" for s in sides))
    print("ratios: grokbook / loop, steps per second, each with its validation, median of the interleaved\n"
          "repeats (>1: grokbook is faster); the full run is estimated from each timing's training-only\n"
          "rate plus each side's validations over the full run, timed alone")


if __name__ == "__main__":
    main()
