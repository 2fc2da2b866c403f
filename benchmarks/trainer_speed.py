"""Training speed of grokbook's trainer against a plain PyTorch loop, as ratios.

The plain loop is how public grokking repositories train: the same model (same class,
same size, same data), ``torch.optim.AdamW`` with a ``LambdaLR`` warm-up, ``loss.item()``
logged every step, and the validation set evaluated once per epoch. grokbook's trainer
records its eight per-step metrics (loss, accuracy, gradient norm, two weight norms,
three cosines) and evaluates validation on its own schedule (``core.validation_schedule``
with the spacing that keeps its estimated cost within 10% of the training steps, then
every 1% of the step; the steps where validation accuracy first reaches each level are
placed exactly by replaying the crossing run, which this figure includes).
The peer column is the same loop computing what danielmamay/grokking's model computes: every
position in every block and the read-out at every position, of which the loss takes the
last (grokbook's model computes the last block and the read-out at the answer position
only); it validates once per epoch, as that repository does. The target of issue 21 is
grokbook with its validation at least as fast as the peer with its own.
A third column, the plain loop with no validation at all,
is the bare cost of the training steps; it is compared with grokbook's trainer with
its validation switched off (only the final weights validated), which isolates the
cost of the trainer and its per-step metrics. Validation on the 1% schedule is front-
loaded (with full batches every step up to step 100), so over the short runs timed
here it weighs more than over a full run.

Each side trains the same number of steps from the same initialisation, timed end to
end; the figures are steps per second and the ratio grokbook / plain (>1: faster).

    python benchmarks/trainer_speed.py [--steps-scale 1.0] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
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


def full_sequence(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The book model's logits computed the peer's way: every block at every position,
    the read-out at every position, the last position's logits returned ``(N, C)``."""
    h = model.embed(x) + model.pos[: x.shape[1]]
    for block in model.blocks:
        h = block(h)
    return model.unembed(model.ln_f(h))[:, -1]


def plain_loop(cfg: RunConfig, device: torch.device, validate: bool, peer: bool = False) -> float:
    """Seconds for ``cfg.steps`` steps of the plain loop (``peer``: with the peer's
    full-sequence forward, :func:`full_sequence`)."""
    data = make_dataset(cfg)
    net = build_model(cfg, data.vocab_size, data.n_classes).to(device)
    model = (lambda inputs: full_sequence(net, inputs)) if peer else net
    params = list(net.parameters())
    x, y = data.train_x.to(device), data.train_y.to(device)
    vx, vy = data.val_x.to(device), data.val_y.to(device)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: min(1.0, (t + 1) / cfg.warmup_steps))
    n = len(y)
    bs = cfg.batch_size if cfg.batch_size and cfg.batch_size < n else n
    per_epoch = n // bs
    log = []
    start = time.perf_counter()
    for t in range(cfg.steps):
        k = t % per_epoch
        if k == 0:
            perm = torch.randperm(n, device=device) if bs < n else torch.arange(n, device=device)
        idx = perm[k * bs:(k + 1) * bs]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        sched.step()
        log.append(loss.item())
        if validate and k == per_epoch - 1:
            with torch.no_grad():
                out = model(vx)
                log.append((F.cross_entropy(out, vy).item(), (out.argmax(-1) == vy).float().mean().item()))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def grokbook_trainer(cfg: RunConfig, device: torch.device, validate: bool = True) -> float:
    """Seconds for ``cfg.steps`` steps of :func:`grokbook.training.fit`; without
    ``validate`` only the final weights are validated."""
    schedule = core_module.validation_schedule
    if not validate:
        core_module.validation_schedule = lambda steps, spacing=1: np.array([steps])
    try:
        start = time.perf_counter()
        fit(cfg, progress=False, device=device)
    finally:
        core_module.validation_schedule = schedule
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def validation_pass_s(cfg: RunConfig, device: torch.device) -> tuple[float, float, float]:
    """Seconds of one validation pass (loss and accuracy over the validation set, read
    back to the host), grokbook's (the core's, on its stacked row), the plain loop's and
    the peer's; best of 5."""
    core = core_module.Core([cfg], device)
    data = make_dataset(cfg)
    model = build_model(cfg, data.vocab_size, data.n_classes).to(device)

    def ours() -> None:
        with torch.no_grad():
            logits = core._logits(core.w, core.x_va)
            core._loss(logits, core.y_va).cpu(), core_module.accuracy(logits, core.y_va).cpu()

    def plain() -> None:
        with torch.no_grad():
            out = model(core.x_va)
            F.cross_entropy(out, core.y_va).item(), (out.argmax(-1) == core.y_va).float().mean().item()

    def peer() -> None:
        with torch.no_grad():
            out = full_sequence(model, core.x_va)
            F.cross_entropy(out, core.y_va).item(), (out.argmax(-1) == core.y_va).float().mean().item()

    times = []
    for fn in (ours, plain, peer):
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
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    base = {"cpu": (300, 40, 1000), "cuda": (2000, 2000, 2000)}[device.type]
    # (label, config, steps timed, steps of a full run)
    cases = [("paper model, batch 512", PAPER.replace(batch_size=512), base[0], 10_000),
             ("paper model, full batch", PAPER, base[1], 10_000),
             ("default profile (chapter 1)", DEFAULT, base[2], 4_000)]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device: {device.type} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'case':<30}{'steps':>6}{'grokbook+val':>13}{'peer+val':>9}{'ratio':>7}{'plain+val':>10}{'ratio':>7}"
          f"{'grokbook':>10}{'plain':>8}{'ratio':>7}{'full run':>10}{'vs peer':>8}{'vs plain':>9}")
    for label, cfg, steps, full in cases:
        cfg = cfg.replace(steps=max(20, int(steps * args.steps_scale)))
        fit(cfg.replace(steps=5), progress=False, device=device)  # warm-up (allocator, kernels)
        gv = cfg.steps / grokbook_trainer(cfg, device)
        pv = cfg.steps / plain_loop(cfg, device, validate=True)
        peer = cfg.steps / plain_loop(cfg, device, validate=True, peer=True)
        g = cfg.steps / grokbook_trainer(cfg, device, validate=False)
        p = cfg.steps / plain_loop(cfg, device, validate=False)
        p_peer = cfg.steps / plain_loop(cfg, device, validate=False, peer=True)
        # a full run, estimated: its steps at the rate without validation, plus its
        # validation passes (grokbook: its schedule; the plain loop: one per epoch)
        epoch = core_module.steps_per_epoch(cfg, len(make_dataset(cfg).train_y))
        val_g, val_p, val_peer = validation_pass_s(cfg, device)
        data = make_dataset(cfg)
        spacing = core_module.validation_spacing(
            full, core_module.validation_cost(cfg, len(data.train_y), len(data.val_y)))
        full_g = full / g + len(core_module.validation_schedule(full, spacing)) * val_g
        full_p = full / p + (full // epoch) * val_p
        full_peer = full / p_peer + (full // epoch) * val_peer
        print(f"{label:<30}{cfg.steps:>6}{gv:>13.2f}{peer:>9.2f}{gv / peer:>7.2f}{pv:>10.2f}{gv / pv:>7.2f}"
              f"{g:>10.2f}{p:>8.2f}{g / p:>7.2f}"
              f"{full:>10}{full_peer / full_g:>8.2f}{full_p / full_g:>9.2f}", flush=True)
        meaning = "grokbook / plain loop, steps per second (>1: faster)"
        record("trainer", f"{label}, first {cfg.steps} steps, with validation, against the peer's loop", gv / peer,
               "grokbook / the peer's loop (full-sequence model, validation once per epoch), steps per second")
        record("trainer", f"{label}, first {cfg.steps} steps, with validation", gv / pv, meaning)
        record("trainer", f"{label}, no validation", g / p, meaning)
        record("trainer", f"{label}, full run of {full} steps (estimated), with validation, against the peer's loop",
               full_peer / full_g, "grokbook / the peer's loop, steps per second")
        record("trainer", f"{label}, full run of {full} steps (estimated), with validation", full_p / full_g, meaning)
    print("figures: steps per second, with validation (each on its own schedule) and without; the full\n"
          "run's ratio is estimated from the rates without validation plus each side's validation passes\n"
          "(grokbook's schedule, the plain and peer loops' one per epoch) timed alone;\n"
          "ratios: grokbook / peer or plain loop (>1 means grokbook is faster)")


if __name__ == "__main__":
    main()
