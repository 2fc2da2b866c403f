"""The LU-mechanism helpers: w_c from U curves, fixed-norm runs, sweep configs."""

import numpy as np
import pytest
import torch

from grokbook import RunConfig
from grokbook.omnigrok import (LUCurves, band, best_norm, delay, grokking_like, l_shaped, lu_curves,
                         lu_curves_by_seed, norm_grid, norm_path, norm_sweep_configs,
                         parabola_vertex, run_config_of, time_to_cross, u_shaped, value_at, w_c_ratio_ok)
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


def test_l_and_u_shapes_tell_each_other_apart():
    w = np.geomspace(5, 80, 7)
    L = 3.0 / (1 + (w / 15.0) ** 6)                       # closed-form L: falls, then flat near 0
    U = 0.5 + (np.log(w) - np.log(25.0)) ** 2             # closed-form U around 25
    assert l_shaped(L) and not u_shaped(L)
    assert u_shaped(U) and not l_shaped(U)
    assert not l_shaped(np.ones(7)) and not u_shaped(np.ones(7))   # flat: neither
    assert not u_shaped(U[:4])                            # minimum at the last point: no U
    assert not u_shaped([2.0, 1.0, 1.5])                  # right end below twice the minimum
    assert u_shaped([2.0, 1.0, 1.5], rise=1.5)
    assert not l_shaped([3.0, 1.0, 1.2, 0.1])             # a rise of 0.2 > 5% of the range 2.9
    assert l_shaped([3.0, 1.0, 1.1, 0.1], tol=0.05)       # a rise of 0.1 <= 0.145
    assert not l_shaped([3.0, np.nan, 0.1]) and not u_shaped([3.0, np.nan, 3.0])


def _curves(norms, test_loss):
    n = len(norms)
    z = np.zeros(n)
    return LUCurves(np.asarray(norms, float), z, np.asarray(test_loss, float), z, z)


def test_band_is_median_min_max_over_seeds():
    a, b, c = _curves([1, 2], [1.0, 5.0]), _curves([1, 2], [3.0, np.nan]), _curves([1, 2], [2.0, 4.0])
    out = band([a, b, c], "test_loss")
    np.testing.assert_allclose(out.median, [2.0, 4.5])
    np.testing.assert_allclose(out.lo, [1.0, 4.0])
    np.testing.assert_allclose(out.hi, [3.0, 5.0])
    assert out.values.shape == (3, 2)
    with pytest.raises(ValueError):
        band([a, _curves([1, 3], [1.0, 2.0])], "test_loss")


def test_lu_curves_by_seed_groups_and_sorts():
    from types import SimpleNamespace

    def run(seed, w, loss):
        cfg = RunConfig(p=7, model="mlp", steps=3, fixed_norm=w, seed=seed)
        return SimpleNamespace(config=cfg, diverged_at=None, val_steps=np.array([0, 3]),
                               val_loss=np.array([9.0, loss]), val_acc=np.array([0.0, 0.5]),
                               metrics={"train_loss": np.array([1.0, 0.5, 0.2, 0.1]),
                                        "train_acc": np.array([0.0, 0.5, 1.0, 1.0])})
    out = lu_curves_by_seed([run(2, 8.0, 3.0), run(0, 4.0, 1.0), run(2, 2.0, 4.0), run(0, 2.0, 2.0)])
    assert list(out) == [0, 2]
    np.testing.assert_allclose(out[0].norms, [2.0, 4.0])
    np.testing.assert_allclose(out[2].test_loss, [4.0, 3.0])


def test_value_at_and_ratio():
    assert value_at([0, 10, 20], [1.0, 2.0, 3.0], 10) == 2.0
    assert value_at([0, 10, 20], [1.0, 2.0, 3.0], 11) == 3.0      # the first step at or after 11
    assert value_at([0, 10, 20], [1.0, 2.0, 3.0], 99) == 3.0
    assert np.isnan(value_at([0, 10], [1.0, 2.0], None))
    assert w_c_ratio_ok(12.0, 10.0, 1.25) and w_c_ratio_ok(8.0, 10.0, 1.25)
    assert not w_c_ratio_ok(12.6, 10.0, 1.25) and not w_c_ratio_ok(7.9, 10.0, 1.25)
    assert not w_c_ratio_ok(float("nan"), 10.0, 1.25)
    with pytest.raises(ValueError):
        w_c_ratio_ok(1.0, 1.0, 1.0)


def test_norm_path_on_a_hand_built_run():
    # the norm falls linearly from 40 to 10 over 31 steps; train fits at step 5, validation
    # reaches 0.9 at validation step 20: an LU grokker for w_c = 15
    steps = np.arange(31)
    norm = 40.0 - steps
    train = np.where(steps >= 5, 1.0, 0.0)
    vs = np.arange(0, 31, 5)
    val = np.array([0.0, 0.1, 0.2, 0.5, 0.95, 0.97, 0.98])
    p = norm_path(steps, train, norm, vs, val, w_c=15.0, reach=0.99, target=0.9)
    assert (p.t2, p.t_gen, p.delay) == (5, 20, 15)
    assert (p.norm_init, p.norm_t2, p.norm_gen, p.norm_end, p.norm_min, p.norm_max) == (40, 35, 20, 10, 10, 40)
    assert p.val_at_t2 == 0.1
    assert p.memorizes_above_w_c(1.25)                    # 35 > 18.75
    assert not p.generalizes_near_w_c(1.25)               # 20 > 18.75
    assert p.generalizes_near_w_c(1.4)                    # 20 <= 21
    never = norm_path(steps, train, norm, vs, np.zeros(7), w_c=15.0)
    assert never.t_gen is None and never.delay is None and np.isnan(never.norm_gen)
    assert not never.generalizes_near_w_c(10.0)


def test_grokking_like():
    assert grokking_like(100, 500, 0.3)                   # 5x later, validation low at t2
    assert not grokking_like(100, 499, 0.3)               # under 5x
    assert not grokking_like(100, 900, 0.6)               # validation already up at t2
    assert not grokking_like(100, None, 0.1) and not grokking_like(None, 900, 0.1)
    assert grokking_like(0, 5, 0.0)                       # t2 = 0 counts as 1
    assert grokking_like(100, 300, 0.5, min_ratio=3.0, max_val_at_t2=0.5)


def test_run_config_of_builds_chapter_ones_run():
    from grokbook.notebooks import get_chapter

    values = {k: prm.default for k, prm in get_chapter("grokking").parameters.items()}
    v = values
    expected = RunConfig(task=v["task"], p=v["p"], r=v["r"], n_layers=v["n_layers"], d_model=v["d_model"],
                         n_heads=v["n_heads"], arch=v["arch"], layer_norm=v["layer_norm"], lr=v["lr"],
                         weight_decay=v["weight_decay"], batch_size=v["batch_size"], steps=v["steps"])
    assert run_config_of(values) == expected              # as book/01_grokking.md builds it, before its seeds
    assert run_config_of({"p": 11, "leave": 0.2, "whatever": 1}) == RunConfig(p=11)
