import numpy as np
import pytest

from grokbook.ensemble import fit_ensemble, stackable
from grokbook.sweep import grid
from grokbook.train import METRICS, fit


@pytest.mark.parametrize("changes, rtol", [
    ({}, 1e-10), ({"batch_size": 16}, 1e-10),
    # clipping and the fixed norm divide by norms that the two paths reduce in a
    # different order: 1e-16 differences, amplified by Adam over 100 steps
    ({"grad_clip": 0.5, "fixed_norm": 9.0}, 1e-8),
])
def test_ensemble_matches_single_runs_in_float64(tiny, float64, changes, rtol):
    configs = grid(tiny.replace(steps=100, **changes), lr=[1e-3, 3e-3], weight_decay=[0.0, 1.0], seed=[0, 1])[::2]
    runs = fit_ensemble(configs, device="cpu")
    for c, run in zip(configs, runs):
        alone = fit(c, progress=False, device="cpu")
        for name in METRICS:
            np.testing.assert_allclose(run.metrics[name], alone.metrics[name], rtol=rtol, atol=1e-12, err_msg=name)
        np.testing.assert_array_equal(run.val_steps, alone.val_steps)
        np.testing.assert_allclose(run.val_acc, alone.val_acc, atol=1e-12)
        np.testing.assert_allclose(run.val_loss, alone.val_loss, rtol=rtol)
        np.testing.assert_array_equal(run.snapshot_steps, alone.snapshot_steps)
        np.testing.assert_allclose(run.snapshots, alone.snapshots, rtol=1e-6, atol=1e-7)


def test_diverged_member_does_not_affect_the_others(tiny):
    configs = [tiny.replace(lr=1e7, weight_decay=0.0), tiny]
    bad, good = fit_ensemble(configs, device="cpu")
    assert bad.diverged_at is not None and good.diverged_at is None
    np.testing.assert_allclose(good.metrics["train_loss"], fit(tiny, progress=False).metrics["train_loss"],
                               rtol=1e-4)


def test_stackable():
    from grokbook import RunConfig

    base = RunConfig(p=7, steps=5)
    assert stackable([base, base.replace(lr=1e-2, seed=3)])
    assert not stackable([base, base.replace(r=0.3)])
    assert not stackable([base.replace(optimizer="sgd")])
    with pytest.raises(ValueError, match="differ only in"):
        fit_ensemble([base, base.replace(p=11)])
