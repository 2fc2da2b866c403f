"""The LU-mechanism helpers: w_c from U curves, fixed-norm runs, sweep configs."""

import numpy as np
import pytest
import torch

from grokbook import RunConfig
from grokbook.lu import (best_norm, delay, lu_curves, norm_grid, norm_sweep_configs,
                         parabola_vertex, time_to_cross)
from grokbook.training import fit

torch.set_num_threads(1)


def test_parabola_vertex_exact():
    x = np.array([-1.0, 0.5, 2.0])
    y = 3.0 * (x - 0.7) ** 2 + 1.0
    assert parabola_vertex(x, y) == pytest.approx(0.7, abs=1e-12)
    assert parabola_vertex([0, 1, 2], [0, 1, 2]) is None       # collinear
    assert parabola_vertex([0, 1, 2], [0, 1, 0]) is None       # maximum, no minimum


def test_best_norm_refines_a_parabola_in_log_norm():
    w_true = 23.0
    norms = norm_grid(5.0, 80.0, 9)
    loss = 0.4 + 1.7 * (np.log(norms) - np.log(w_true)) ** 2
    assert best_norm(norms, loss) == pytest.approx(w_true, rel=1e-9)
    coarse = best_norm(norms, loss, refine=False)
    assert coarse in norms and abs(np.log(coarse / w_true)) <= np.log(norms[1] / norms[0]) / 2


def test_best_norm_on_noisy_asymmetric_u():
    rng = np.random.default_rng(0)
    norms = np.geomspace(1, 100, 25)
    x = np.log(norms / 10.0)
    loss = np.where(x < 0, 2 * x**2, 0.5 * x**2) + 0.1 + 1e-4 * rng.standard_normal(25)
    w_c = best_norm(norms, loss)
    assert abs(np.log(w_c / 10.0)) < np.log(norms[1] / norms[0])


def test_best_norm_unsorted_nan_and_edges():
    norms = np.array([40.0, 10.0, 20.0, 5.0])
    loss = np.array([3.0, 1.0, np.nan, 2.0])
    assert best_norm(norms, loss) == pytest.approx(np.exp(np.clip(
        parabola_vertex(np.log([5, 10, 40]), [2, 1, 3]), np.log(5), np.log(40))))
    assert best_norm([1.0, 2.0, 4.0], [0.1, 0.5, 0.9]) == 1.0   # minimum at an end: no refinement
    with pytest.raises(ValueError):
        best_norm([1.0, 2.0], [np.nan, np.nan])
    with pytest.raises(ValueError):
        best_norm([1.0, 2.0], [1.0])


def test_norm_grid_and_sweep_configs():
    base = RunConfig(p=11, model="mlp", d_model=8, steps=10, weight_decay=1.0)
    norms = norm_grid(2.0, 32.0, 5)
    np.testing.assert_allclose(norms, [2, 4, 8, 16, 32])
    cfgs = norm_sweep_configs(base, norms, weight_decay=0.0)
    assert [c.fixed_norm for c in cfgs] == pytest.approx(list(norms))
    assert all(c.weight_decay == 0.0 for c in cfgs)
    assert all(c.replace(fixed_norm=0.0, weight_decay=1.0) == base for c in cfgs)
    assert len({c.hash() for c in cfgs}) == 5
    with pytest.raises(ValueError):
        norm_sweep_configs(base, [1.0, 0.0])
    with pytest.raises(ValueError):
        norm_grid(3.0, 2.0, 4)


def test_fixed_norm_run_holds_its_norm_and_lu_curves():
    base = RunConfig(p=7, r=0.6, model="mlp", n_layers=1, d_model=8, d_mlp=16, steps=30,
                     n_snapshots=3, lr=1e-2, weight_decay=0.0)
    runs = [fit(c, progress=False, device="cpu") for c in norm_sweep_configs(base, [9.0, 3.0])]
    for run in runs:
        w = run.config.fixed_norm
        np.testing.assert_allclose(run.metrics["weight_norm"], w, rtol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(run.snapshots.astype(np.float64), axis=1), w, rtol=1e-6)
    curves = lu_curves(runs)
    np.testing.assert_allclose(curves.norms, [3.0, 9.0])
    assert curves.test_loss[1] == runs[0].val_loss[-1]
    assert curves.train_loss[0] == runs[1].metrics["train_loss"][-1]
    with pytest.raises(ValueError):
        lu_curves([fit(base.replace(steps=2), progress=False, device="cpu")])


def test_time_helpers():
    steps, vals = np.array([0, 10, 20, 30]), np.array([1.0, 0.6, 0.3, 0.1])
    assert time_to_cross(steps, vals, 0.5) == 20
    assert time_to_cross(steps, vals, 0.0) is None
    assert time_to_cross(steps, 1 - vals, 0.65, from_above=False) == 20
    assert delay(10, 25) == 15 and delay(None, 3) is None and delay(3, None) is None
