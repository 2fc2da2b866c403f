import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from grokbook import RunConfig, train
from grokbook.models import build_model
from grokbook.tasks import make_dataset
import grokbook.trainer as core_module
from grokbook import phases
from grokbook.trainer import (METRICS, VALIDATION_BUDGET, scheduled_validations, snapshot_schedule, steps_per_epoch,
                           validation_cost, validation_schedule, validation_spacing)
from grokbook.training import fit, replay_weights


def reference_loop(cfg: RunConfig):
    """The oracle: a plain PyTorch loop with torch.optim and explicit flattening."""
    data = make_dataset(cfg)
    model = build_model(cfg, data.vocab_size, data.n_classes)
    params = list(model.parameters())
    kw = dict(lr=cfg.lr, weight_decay=cfg.weight_decay)
    opt = {"adamw": lambda: torch.optim.AdamW(params, betas=cfg.betas, eps=cfg.adam_eps, **kw),
           "adam": lambda: torch.optim.Adam(params, betas=cfg.betas, eps=cfg.adam_eps, **kw),
           "sgd": lambda: torch.optim.SGD(params, momentum=cfg.momentum, **kw)}[cfg.optimizer]()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: min(1.0, (t + 1) / cfg.warmup_steps))
    flat = lambda: torch.cat([p.detach().reshape(-1) for p in params]).double()
    theta0, rows, prev_delta, averages = flat(), [], None, None
    for t in range(cfg.steps):
        opt.zero_grad()
        idx = core_module.batch_indices(cfg, len(data.train_y), t)   # the trainer's order of examples
        x, y = (data.train_x, data.train_y) if idx is None else (data.train_x[idx], data.train_y[idx])
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        g = torch.cat([p.grad.reshape(-1) for p in params]).double()
        before, w_out = flat(), float(model.unembed.weight.detach().norm())
        if cfg.grokfast_lamb:  # Grokfast-EMA as Lee et al. publish it, parameter by parameter
            if averages is None:
                averages = [p.grad.detach().clone() for p in params]
            for a, p in zip(averages, params):
                a.mul_(cfg.grokfast_alpha).add_(p.grad.detach(), alpha=1 - cfg.grokfast_alpha)
                p.grad.add_(a, alpha=cfg.grokfast_lamb)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        after = flat()
        delta = after - before
        cos = lambda u, v: float(u @ v / (u.norm() * v.norm()))
        rows.append([float(loss.detach()), float((logits.argmax(-1) == y).double().mean()),
                     float(g.norm()), float(before.norm()), w_out,
                     cos(before, theta0), cos(before, after),
                     math.nan if prev_delta is None else cos(delta, prev_delta)])
        prev_delta = delta
    return np.array(rows), flat()


@pytest.mark.parametrize("changes", [
    {}, {"optimizer": "adam", "weight_decay": 0.1}, {"optimizer": "sgd", "momentum": 0.9, "lr": 0.05},
    {"grad_clip": 0.5}, {"adam_eps": 1e-3}, {"optimizer": "adam", "adam_eps": 0.1},
    {"grokfast_alpha": 0.9, "grokfast_lamb": 2.0}, {"grokfast_lamb": 5.0, "grad_clip": 0.5},
    {"batch_size": 8}, {"batch_size": 8, "optimizer": "adam", "weight_decay": 0.1},
])
def test_trainer_matches_plain_torch_loop(tiny, changes, float64):
    # In float64 the flat optimiser and torch.optim agree to rounding: Adam's
    # normalisation would amplify float32 rounding in near-zero gradients.
    cfg = tiny.replace(**changes)
    run = fit(cfg, progress=False)
    ref, final = reference_loop(cfg)
    for k, name in enumerate(METRICS):
        np.testing.assert_allclose(run.metrics[name], ref[:, k], rtol=1e-9, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(run.snapshots[-1], final.float().numpy(), rtol=1e-6, atol=1e-7)
    assert run.snapshot_steps[-1] == cfg.steps


def test_deterministic_on_cpu(tiny):
    cfg = tiny.replace(batch_size=16)
    a, b = fit(cfg, progress=False), fit(cfg, progress=False)
    for name in METRICS:
        np.testing.assert_array_equal(a.metrics[name], b.metrics[name])
    np.testing.assert_array_equal(a.val_acc, b.val_acc)
    np.testing.assert_array_equal(a.snapshots, b.snapshots)
    assert not np.array_equal(a.metrics["train_loss"], fit(cfg.replace(seed=1), progress=False).metrics["train_loss"])


def test_minibatches_cover_each_epoch_once(tiny):
    from grokbook.trainer import batch_indices

    cfg = tiny.replace(batch_size=10)
    n = len(make_dataset(cfg).train_y)
    per_epoch = n // 10
    seen = torch.cat([batch_indices(cfg, n, t) for t in range(per_epoch)])
    assert len(set(seen.tolist())) == per_epoch * 10
    assert batch_indices(cfg.replace(batch_size=0), n, 3) is None


def test_validation_schedule_places_times_within_one_percent():
    s = validation_schedule(20000)
    assert s[0] == 0 and s[-1] == 20000 and (np.diff(s[:100]) == 1).all()
    gaps = np.diff(s)
    assert (gaps <= np.maximum(1, 0.01 * s[1:])).all()


def test_steps_per_epoch_counts_whole_batches_and_one_for_full_batch(tiny):
    assert steps_per_epoch(tiny.replace(batch_size=0), 60) == 1
    assert steps_per_epoch(tiny.replace(batch_size=60), 60) == 1
    assert steps_per_epoch(tiny.replace(batch_size=100), 60) == 1
    assert steps_per_epoch(tiny.replace(batch_size=16), 60) == 3


def test_validation_spacing_is_the_smallest_within_budget(tiny):
    # full batch at r 0.5 over 4000 steps: every step early, then every 1%, as always
    cost = validation_cost(tiny.replace(batch_size=0), 1104, 1105)
    assert cost == pytest.approx(1105 / 3312)
    assert validation_spacing(4000, cost) == 1
    np.testing.assert_array_equal(validation_schedule(4000, 1), validation_schedule(4000))
    # the paper's model with batch 512: a validation costs about 3 steps
    cost = validation_cost(tiny.replace(batch_size=512), 4704, 4705)
    for steps in (600, 20000):
        s = validation_spacing(steps, cost)
        assert cost * len(validation_schedule(steps, s)) <= VALIDATION_BUDGET * steps
        assert cost * len(validation_schedule(steps, s - 1)) > VALIDATION_BUDGET * steps
    gaps = np.diff(validation_schedule(20000, 40))
    assert (gaps[:99] == 40).all() and (gaps <= np.maximum(40, 0.01 * validation_schedule(20000, 40)[1:])).all()


def test_a_minibatch_run_validates_within_budget_over_every_stretch(tiny):
    # the case: p 31, r 0.5 (480 training, 481 validation examples), batch 240
    small = tiny.replace(batch_size=240)
    cost = validation_cost(small, 480, 481)
    for steps in (600, 3000, 20000):
        at = scheduled_validations(small.replace(steps=steps), 480, 481)
        n_before = np.searchsorted(at, np.arange(1, steps + 1), side="right")  # validations in [0, N]
        assert (cost * n_before <= VALIDATION_BUDGET * np.arange(1, steps + 1) + cost).all()
        assert at[0] == 0 and at[-1] == steps
    # the spacing of the whole run alone (as before) spent a quarter of a 3000-step run's first 600
    before = validation_schedule(3000, validation_spacing(3000, cost))
    assert cost * (before <= 600).sum() > 0.25 * 600
    # the paper's model at batch 512: a validation costs about 3 steps, so every 31 steps
    paper = tiny.replace(batch_size=512, steps=20000)
    assert np.diff(scheduled_validations(paper, 4704, 4705))[0] == 31
    # full-batch runs keep the schedule they always had
    for cfg, n_train, n_val in ((tiny.replace(batch_size=0, steps=4000), 480, 481),
                                (tiny.replace(batch_size=0, steps=2000), 384, 577),
                                (tiny.replace(batch_size=0, steps=2000), 192, 769)):
        cost = validation_cost(cfg, n_train, n_val)
        np.testing.assert_array_equal(scheduled_validations(cfg, n_train, n_val),
                                      validation_schedule(cfg.steps, validation_spacing(cfg.steps, cost)))


@pytest.mark.parametrize("changes", [{}, {"batch_size": 24}, {"grokfast_alpha": 0.9, "grokfast_lamb": 2.0}])
def test_levels_are_placed_at_the_step_per_step_validation_finds(monkeypatch, changes):
    """Oracle: the same runs validated at every step. Each placed crossing is a step at
    or above its level whose previous step is below it, with the oracle's values (the
    replay retraces the run); it is the oracle's first crossing unless the oracle's
    accuracy rose through the level and fell back before it."""
    cfg = RunConfig(p=17, r=0.8, n_layers=1, d_model=32, n_heads=2, steps=150, n_snapshots=4,
                    lr=1e-2, warmup_steps=5, weight_decay=1.0).replace(**changes)
    configs = [cfg.replace(seed=s) for s in range(6)]  # enough crossings between validations on any CPU
    monkeypatch.setattr(core_module, "validation_spacing", lambda steps, cost: 9)
    monkeypatch.setattr(core_module, "VALIDATION_BUDGET", 1.0)  # minibatch: no wider spacing than 9
    sparse = core_module.train_core(configs, device="cpu")
    monkeypatch.setattr(core_module, "validation_schedule", lambda steps, spacing=1: np.arange(steps + 1))
    dense = core_module.train_core(configs, device="cpu")
    scheduled = set(validation_schedule(150, 9).tolist())
    placed = exact = 0
    for s, d in zip(sparse, dense):
        np.testing.assert_array_equal(s.metrics["train_loss"], d.metrics["train_loss"])
        on = np.isin(d.val_steps, s.val_steps)
        np.testing.assert_array_equal(s.val_acc, d.val_acc[on])   # every recorded value is the oracle's
        np.testing.assert_array_equal(s.val_loss, d.val_loss[on])
        for level in core_module.VALIDATION_LEVELS:
            first = phases.first_crossing(s.val_steps, s.val_acc, level)
            if first is None:
                assert phases.first_crossing(d.val_steps, d.val_acc, level) is None or \
                    not (d.val_acc[np.isin(d.val_steps, list(scheduled))] >= level).any()
                continue
            assert d.val_acc[first] >= level and (first == 0 or d.val_acc[first - 1] < level)
            placed += first not in scheduled
            oracle = phases.first_crossing(d.val_steps, d.val_acc, level)
            if oracle == first:
                exact += 1
            else:  # only where the accuracy rose through the level and fell back in between
                assert oracle < first and (d.val_acc[oracle:first] < level).any()
    assert placed >= 3 and exact >= 2   # the test exercised the placement


@pytest.mark.parametrize("changes", [{}, {"grokfast_alpha": 0.9, "grokfast_lamb": 2.0}])
def test_a_resumed_run_places_crossings_as_an_uninterrupted_one(monkeypatch, changes):
    cfg = RunConfig(p=17, r=0.8, n_layers=1, d_model=32, n_heads=2, steps=120, n_snapshots=4,
                    lr=1e-2, warmup_steps=5, weight_decay=1.0, **changes)
    monkeypatch.setattr(core_module, "validation_spacing", lambda steps, cost: 9)
    whole = core_module.train_core([cfg], device="cpu")[0]
    saved = []
    core = core_module.Core([cfg], "cpu")
    for t in range(50):
        core.step(t)
    saved = core.states(50, 0.0)
    from grokbook.store import _state_from_bytes, _state_to_bytes
    resumed = core_module.train_core([cfg], states=[_state_from_bytes(_state_to_bytes(saved[0]))],
                                     device="cpu")[0]
    assert set(saved[0].opt) == ({"m", "v", "ema"} if changes else {"m", "v"})
    np.testing.assert_array_equal(whole.metrics["train_loss"], resumed.metrics["train_loss"])
    np.testing.assert_array_equal(whole.val_steps, resumed.val_steps)
    np.testing.assert_array_equal(whole.val_acc, resumed.val_acc)
    assert len(whole.val_steps) > len(validation_schedule(120, 9))   # crossings were placed


def test_snapshot_schedule():
    s = snapshot_schedule(1000, 20)
    assert s[0] == 0 and s[-1] == 1000 and len(s) <= 21 and (np.diff(s) > 0).all()
    assert (s < 10).sum() >= 3  # dense early


def test_run_model_at_reproduces_snapshot(tiny):
    run = fit(tiny, progress=False)
    model = run.model_at(int(run.snapshot_steps[2]))
    flat = torch.nn.utils.parameters_to_vector(model.parameters()).detach().numpy()
    np.testing.assert_array_equal(flat, run.snapshots[2])
    with pytest.raises(ValueError, match="no snapshot at step"):
        run.model_at(-5)


def test_divergence_is_recorded(tiny):
    run = fit(tiny.replace(optimizer="sgd", lr=1e6, warmup_steps=0, steps=60), progress=False)
    assert run.diverged_at is not None and run.diverged_at < 60
    assert len(run.metrics["train_loss"]) == run.diverged_at + 1
    assert not np.isfinite(run.metrics["train_loss"][-1])


def test_train_with_store_uses_cache(tiny, tmp_path):
    from grokbook.store import RunStore

    store = RunStore(tmp_path)
    a = train(tiny, store=store, progress=False)
    b = train(tiny, store=store, progress=False)
    np.testing.assert_array_equal(a.metrics["train_loss"], b.metrics["train_loss"])
    assert len((tmp_path / "train.log").read_text().splitlines()) == 1


def test_fixed_norm_holds_throughout(tiny):
    run = fit(tiny.replace(fixed_norm=7.5, steps=30), progress=False)
    np.testing.assert_allclose(run.metrics["weight_norm"], 7.5, rtol=1e-6)
    norms = np.linalg.norm(run.snapshots.astype(np.float64), axis=1)
    np.testing.assert_allclose(norms, 7.5, rtol=1e-6)


def test_digits_mlp_with_mse_learns(tiny):
    cfg = RunConfig(task="digits", model="mlp", r=0.5, n_layers=2, d_mlp=64, loss="mse",
                    lr=1e-3, weight_decay=0.0, steps=60, n_snapshots=4)
    run = fit(cfg, progress=False)
    assert run.metrics["train_loss"][-1] < 0.5 * run.metrics["train_loss"][0]
    assert run.val_acc[-1] > 0.5  # ten classes: chance is 0.1


@pytest.mark.parametrize("n_layers, layer_norm", [(2, True), (1, True), (1, False), (3, False)])
def test_the_models_shortcuts_compute_the_plain_transformer_exactly(float64, n_layers, layer_norm):
    """The model's two shortcuts (the first block's projections computed once per
    (token, position) pair and gathered; only the last query in the final block)
    against a plain causal transformer written out independently: every token's
    projections, full attention at every position, then the answer read at the last one."""
    config = RunConfig(p=11, n_layers=n_layers, d_model=16, n_heads=2, layer_norm=layer_norm)
    model = build_model(config, 13, 11)
    x = make_dataset(config).train_x[:20]

    def reference(x):
        h = model.embed(x) + model.pos
        for block in model.blocks:
            z = block.ln1(h)
            n, t, d = z.shape
            q, k, v = block.attn.qkv(z).view(n, t, 3, 2, d // 2).unbind(2)
            q, k, v = (u.transpose(1, 2) for u in (q, k, v))
            s = (q @ k.transpose(-1, -2)) / math.sqrt(d // 2)
            s = s + torch.full((t, t), float("-inf")).triu(1)
            a = (F.softmax(s, -1) @ v).transpose(1, 2).reshape(n, t, d)
            h = h + block.attn.out(a)
            h = h + block.mlp(block.ln2(h))
        return model.unembed(model.ln_f(h[:, -1]))

    torch.testing.assert_close(model(x), reference(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batched_tables, batched_idx", [(False, False), (True, False), (True, True),
                                                          (False, True)])
def test_gather_is_rows_of_the_table_with_the_one_hot_gradient(float64, batched_tables, batched_idx):
    """``gather`` under ``torch.vmap`` over tables, indices or both (and alone), against
    the dense oracle, the product with a one-hot matrix: the rows, the gradient and a
    second-order product through it (the Hessian chapters' double backward)."""
    from grokbook.models import gather

    gen = torch.Generator().manual_seed(0)
    B, R, d, shape = 3, 7, 5, (6, 4)
    tables = torch.randn(B, R, d, generator=gen).requires_grad_(True)
    idx = torch.randint(0, R, (B, *shape), generator=gen)
    w = torch.randn(B, *shape, d, generator=gen)

    def loss(rows, w):
        return (rows ** 2 * w).sum()

    def ours(tables):
        tab_in, idx_in = tables if batched_tables else tables[0], idx if batched_idx else idx[0]
        if not (batched_tables or batched_idx):
            return loss(gather(tab_in, idx_in), w[0])[None], gather(tab_in, idx_in)[None]
        dims = (0 if batched_tables else None, 0 if batched_idx else None)
        f = lambda tab, i, w: (loss(gather(tab, i), w), gather(tab, i))
        return torch.vmap(f, in_dims=(*dims, 0))(tab_in, idx_in, w)

    def oracle(tables):
        n = B if batched_tables or batched_idx else 1
        rows = [(F.one_hot(idx[b if batched_idx else 0].flatten(), R).to(tables.dtype)
                 @ tables[b if batched_tables else 0]).view(*shape, d) for b in range(n)]
        return torch.stack([loss(r, w[b]) for b, r in enumerate(rows)]), torch.stack(rows)

    results = []
    for fn in (ours, oracle):
        out, rows = fn(tables)
        (grad,) = torch.autograd.grad(out.sum(), tables, create_graph=True)
        (hvp,) = torch.autograd.grad((grad * grad.detach()).sum(), tables)
        results.append((rows, out, grad, hvp))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert results[0][2].abs().sum() > 0 and results[0][3].abs().sum() > 0


def test_run_to_frame_holds_every_value(tiny):
    run = fit(tiny.replace(steps=12), progress=False)
    steps = run.to_frame()
    assert list(steps.columns) == list(METRICS) and steps.index.name == "step"
    assert steps.index.tolist() == list(range(12))
    for name in METRICS:
        np.testing.assert_array_equal(steps[name].to_numpy(), run.metrics[name])
    val = run.to_frame("validation")
    assert val.index.tolist() == run.val_steps.tolist()
    np.testing.assert_array_equal(val.val_acc.to_numpy(), run.val_acc)
    snaps = run.to_frame("snapshots")
    assert snaps.shape == run.snapshots.shape and snaps.columns[-1] == f"w{run.snapshots.shape[1] - 1}"
    np.testing.assert_array_equal(snaps.to_numpy(), run.snapshots)
    with pytest.raises(ValueError, match="unknown frame 'loss'"):
        run.to_frame("loss")


def test_grokbook_device_chooses_and_checks_the_device(monkeypatch):
    from grokbook.trainer import default_device

    monkeypatch.setenv("GROKBOOK_DEVICE", "cpu")
    assert default_device() == torch.device("cpu")
    monkeypatch.setenv("GROKBOOK_DEVICE", "tpu")
    with pytest.raises(ValueError, match="GROKBOOK_DEVICE='tpu' is not a device"):
        default_device()
    if not torch.cuda.is_available():
        monkeypatch.setenv("GROKBOOK_DEVICE", "cuda")
        with pytest.raises(ValueError, match="this machine has no cuda device"):
            default_device()
    monkeypatch.delenv("GROKBOOK_DEVICE")
    assert default_device().type == ("cuda" if torch.cuda.is_available() else
                                     "mps" if torch.backends.mps.is_available() else "cpu")


def test_replay_weights_passes_through_the_stored_snapshots():
    base = RunConfig(p=7, n_layers=1, d_model=8, n_heads=2, lr=0.01, steps=50, n_snapshots=8)
    configs = [base, base.replace(seed=1, weight_decay=0.3)]
    runs = [fit(c, progress=False) for c in configs]
    snap_steps = [int(s) for s in runs[0].snapshot_steps]
    between = [s + 1 for s in snap_steps[1:-1] if s + 1 not in snap_steps]
    at = snap_steps[:-1] + between  # not the last step: the replay stops early
    replayed = replay_weights(configs, at)
    for run, got in zip(runs, replayed):
        assert sorted(got) == sorted(set(at))
        for k, s in enumerate(run.snapshot_steps[:-1]):  # bit-identical, alone or stacked
            np.testing.assert_array_equal(got[int(s)], run.snapshots[k])
        for s in between:  # weights off the snapshot grid: between their neighbours, not on them
            assert got[s].dtype == np.float32 and not np.array_equal(got[s], got[s - 1])
    for run, got in zip(runs, replay_weights(configs, [50])):  # the last step, from the replay's run
        np.testing.assert_array_equal(got[50], run.snapshots[-1])
    model = runs[0].model_with(replayed[0][snap_steps[1]])  # the run's model on replayed weights
    for a, b in zip(model.parameters(), runs[0].model_at(snap_steps[1]).parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="do not fit"):
        runs[0].model_with(np.zeros(3))
    for run, got in zip(runs, replay_weights(configs, [0])):  # the initial weights alone
        assert sorted(got) == [0]
        np.testing.assert_array_equal(got[0], run.snapshots[0])
    assert replay_weights(configs, [])[0] == {}
    with pytest.raises(ValueError, match="steps to replay"):
        replay_weights(configs, [51])
