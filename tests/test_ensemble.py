"""Ensembles and single runs share one training core: a configuration gives the same
run, bit for bit on the CPU, whoever trains it."""

import numpy as np
import pytest

from grokbook import RunConfig
from grokbook.trainer import METRICS, stack_key
from grokbook.ensemble import fit_ensemble, stackable
from grokbook.sweeping import _ensemble_groups, grid
from grokbook.training import fit


def assert_same_run(a, b):
    for name in METRICS:
        np.testing.assert_array_equal(a.metrics[name], b.metrics[name], err_msg=name)
    for attr in ("val_steps", "val_loss", "val_acc", "snapshot_steps", "snapshots", "diverged_at"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr), err_msg=attr)


@pytest.mark.parametrize("changes", [
    {}, {"batch_size": 16}, {"grad_clip": 0.5, "fixed_norm": 9.0},
    {"optimizer": "adam"}, {"optimizer": "sgd", "momentum": 0.9, "lr": 0.05},
])
def test_alone_in_an_ensemble_of_one_and_of_twelve_are_bit_identical(tiny, changes):
    base = tiny.replace(steps=60, **changes)
    config = base.replace(weight_decay=0.3)
    others = [c for c in grid(base, lr=[base.lr, 2 * base.lr], weight_decay=[0.0, 0.3, 1.0], seed=[0, 1])
              if c != config][:11]
    alone = fit(config, progress=False)
    (one,) = fit_ensemble([config])
    twelve = fit_ensemble(others[:5] + [config] + others[5:])[5]
    assert_same_run(alone, one)
    assert_same_run(alone, twelve)


def test_a_diverged_run_is_trimmed_by_one_rule_alone_and_in_an_ensemble(tiny):
    bad = tiny.replace(lr=1e7, weight_decay=0.0, steps=400, warmup_steps=0)
    alone = fit(bad, progress=False)
    together, good = fit_ensemble([bad, tiny.replace(steps=400, warmup_steps=0)])
    assert alone.diverged_at is not None and good.diverged_at is None
    assert_same_run(alone, together)
    d = alone.diverged_at
    assert len(alone.metrics["train_loss"]) == d + 1
    assert alone.val_steps.max() <= d and alone.snapshot_steps.max() <= d
    assert_same_run(good, fit(tiny.replace(steps=400, warmup_steps=0), progress=False))


def test_one_stack_key_for_stackable_and_the_sweep_groups():
    base = RunConfig(p=7, steps=5)
    assert stackable([base, base.replace(lr=1e-2, seed=3, weight_decay=0.1)])
    assert stackable([base.replace(optimizer="sgd"), base.replace(optimizer="sgd", lr=0.1)])
    assert not stackable([base, base.replace(r=0.3)])
    assert not stackable([base, base.replace(optimizer="sgd")])
    assert stack_key(base.replace(lr=0.5, seed=9)) == stack_key(base)
    configs = [base, base.replace(r=0.3), base.replace(seed=1), base.replace(r=0.3, lr=0.1)]
    groups = _ensemble_groups(configs, size=16)
    assert all(stackable(g) for g in groups) and sorted(len(g) for g in groups) == [2, 2]
    with pytest.raises(ValueError, match="differ only in"):
        fit_ensemble([base, base.replace(p=11)])


def test_the_thread_count_does_not_change_a_run(tmp_path):
    """Sweep workers train with one thread, chapters with torch's default: the run must
    not depend on it. The chapter-1 model, trained here with 1 thread and in a child
    process with 2."""
    import os
    import subprocess
    import sys

    from grokbook.store import RunStore

    config = RunConfig(p=47, r=0.5, n_layers=2, d_model=64, n_heads=4, layer_norm=False, lr=3e-3,
                       steps=30, n_snapshots=4)
    code = ("import sys, torch; torch.set_num_threads(2); from grokbook import RunConfig; "
            "from grokbook.store import RunStore; "
            f"RunStore(sys.argv[1]).get_or_train(RunConfig(**{config.to_dict()}), progress=False)")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert_same_run(RunStore(tmp_path).load(config), fit(config, progress=False))


def test_runs_of_another_kind_of_device_are_kept_apart(tmp_path, tiny):
    from grokbook.store import RunStore

    cpu = RunStore(tmp_path, device="cpu")
    cpu.get_or_train(tiny, progress=False)
    gpu = RunStore(tmp_path, device="cuda")  # never trains here: only its keys are used
    assert cpu.key(tiny) == tiny.hash() and gpu.key(tiny) == f"{tiny.hash()}-cuda"
    assert tiny in cpu and tiny not in gpu and gpu.load(tiny) is None
    assert list(cpu.configs()) == [tiny] and list(gpu.configs()) == []
