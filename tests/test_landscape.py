"""grokbook.landscape: directions, filter normalization, and batched slices against a
one-point-at-a-time loop and a closed form."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grokbook.config import RunConfig
from grokbook.landscape import (basin, direction_to, filter_normalize, flat_params, level_stretch,
                                random_direction, segment_escape,
                                slice_1d, slice_1d_loop, slice_2d, update_direction)
from grokbook.models import build_model
from grokbook.tasks import make_dataset

CONFIG = RunConfig(task="add", p=5, r=0.6, model="transformer", n_layers=2, d_model=8,
                   n_heads=2, d_mlp=16)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # tiny models: threads only oversubscribe a busy 2-core machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny():
    data = make_dataset(CONFIG)
    model = build_model(CONFIG, data.vocab_size, data.n_classes).double()
    batches = {"train": (data.train_x, data.train_y), "val": (data.val_x, data.val_y)}
    return model, batches


def assert_slices_close(a, b, shape):
    assert a.keys() == b.keys()
    for name in a:
        for key in ("loss", "acc"):
            assert a[name][key].shape == shape
            np.testing.assert_allclose(a[name][key], b[name][key], rtol=1e-6, atol=1e-12)


def test_directions_are_differences(tiny):
    model, _ = tiny
    theta = flat_params(model)
    other = theta + torch.linspace(-1, 1, theta.numel(), dtype=theta.dtype)
    assert torch.equal(direction_to(model, other), other - theta)
    assert torch.equal(update_direction(theta, other), other - theta)
    assert torch.equal(direction_to(other.numpy(), model), theta - other)  # numpy snapshot
    assert theta.numel() == sum(p.numel() for p in model.parameters())
    d = random_direction(model, seed=3)
    assert d.shape == theta.shape and d.dtype == theta.dtype
    assert torch.equal(d, random_direction(theta, seed=3))
    assert not torch.equal(d, random_direction(model, seed=4))


def test_filter_normalize_row_norms(tiny):
    model, _ = tiny
    weights = list(model.parameters())
    d = random_direction(model, seed=0)
    d[:weights[0].shape[1]] = 0.0  # a zero row (first embedding row) must stay zero
    sizes = [w.numel() for w in weights]
    outs = {mode: filter_normalize(d, model, one_d=mode).split(sizes)
            for mode in ("zero", "scale", "keep")}
    for i, (w, dp) in enumerate(zip(weights, d.split(sizes))):
        w = w.detach()
        if w.ndim >= 2:
            rows = outs["zero"][i].view(w.shape[0], -1).norm(dim=1)
            expect = w.view(w.shape[0], -1).norm(dim=1)
            if i == 0:
                assert rows[0] == 0
                rows, expect = rows[1:], expect[1:]
            torch.testing.assert_close(rows, expect, rtol=1e-12, atol=0)
            for mode in ("scale", "keep"):  # the option only concerns 1-D tensors
                assert torch.equal(outs[mode][i], outs["zero"][i])
        else:
            assert torch.count_nonzero(outs["zero"][i]) == 0
            assert torch.equal(outs["keep"][i], dp)
            torch.testing.assert_close(outs["scale"][i].norm(), w.norm(), rtol=1e-12, atol=0)
            if w.norm() > 0:  # (a zero weight, e.g. a fresh LayerNorm shift, gives zero)
                torch.testing.assert_close(outs["scale"][i] / outs["scale"][i].norm(),
                                           dp / dp.norm())
    # a parameter list works as well as the model; bad options are refused
    assert torch.equal(filter_normalize(d, weights), torch.cat(outs["zero"]))
    with pytest.raises(ValueError, match="one_d"):
        filter_normalize(d, model, one_d="bias")
    with pytest.raises(ValueError, match="entries"):
        filter_normalize(d[:-1], model)


def test_slice_1d_batched_equals_loop(tiny):
    model, batches = tiny
    theta = flat_params(model)
    d = filter_normalize(random_direction(model, seed=1), model)
    alphas = torch.linspace(-1, 1, 11, dtype=torch.float64)
    ref = slice_1d_loop(model, theta, d, alphas, batches)
    for method in ("vmap", "loop"):  # "vmap" raises rather than falls back
        got = slice_1d(model, theta, d, alphas, batches, method=method, chunk_size=4)
        assert_slices_close(got, ref, (11,))
    assert torch.equal(flat_params(model), theta)  # the template model is untouched
    # the slice goes through theta at alpha = 0
    with torch.no_grad():
        logits = model(batches["val"][0])
    assert ref["val"]["loss"][5] == pytest.approx(float(F.cross_entropy(logits, batches["val"][1])))


def test_slice_2d_equals_loop(tiny):
    model, batches = tiny
    theta = flat_params(model)
    d1 = filter_normalize(random_direction(model, seed=1), model)
    d2 = filter_normalize(random_direction(model, seed=2), model)
    alphas = torch.linspace(-1, 1, 5, dtype=torch.float64)
    betas = torch.tensor([-0.5, 0.0, 0.25, 1.0], dtype=torch.float64)
    got = slice_2d(model, theta, d1, d2, alphas, betas, batches, chunk_size=6, method="vmap")
    for j, beta in enumerate(betas):
        col = slice_1d_loop(model, theta + beta * d2, d1, alphas, batches)
        for name in batches:
            for key in ("loss", "acc"):
                assert got[name][key].shape == (5, 4)
                np.testing.assert_allclose(got[name][key][:, j], col[name][key], rtol=1e-6)


def test_linear_mse_slice_is_an_exact_parabola():
    torch.manual_seed(0)
    model = nn.Linear(6, 4).double()
    x = torch.randn(30, 6, dtype=torch.float64)
    y = torch.randint(0, 4, (30,))
    onehot = F.one_hot(y, 4).double()

    def mse(logits, target):
        return F.mse_loss(logits, F.one_hot(target, 4).to(logits.dtype))

    theta = flat_params(model)
    d = random_direction(model, seed=5)
    dw, db = d[:24].view(4, 6), d[24:]
    r0 = model(x).detach() - onehot  # residual at theta
    r1 = x @ dw.T + db               # the model is linear: f(theta + a d) = f(theta) + a f_d
    alphas = np.linspace(-3, 3, 13)
    exact = [float(((r0 + a * r1) ** 2).mean()) for a in alphas]
    exact_acc = [float(((model(x).detach() + a * r1).argmax(-1) == y).double().mean())
                 for a in alphas]
    got = slice_1d(model, theta, d, alphas, {"train": (x, y)}, loss_fn=mse)
    np.testing.assert_allclose(got["train"]["loss"], exact, rtol=1e-12)
    np.testing.assert_allclose(got["train"]["acc"], exact_acc)


class NoVmap(nn.Module):
    """Data-dependent control flow on a weight: torch.vmap refuses it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) if self.lin.weight.sum() > -1e9 else -self.lin(x)


def test_auto_falls_back_to_loop_when_vmap_fails():
    torch.manual_seed(0)
    model = NoVmap().double()
    batches = {"b": (torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 2, (8,)))}
    theta, d = flat_params(model), random_direction(model, seed=0)
    alphas = torch.linspace(-1, 1, 5, dtype=torch.float64)
    with pytest.raises(RuntimeError):
        slice_1d(model, theta, d, alphas, batches, method="vmap")
    with pytest.warns(RuntimeWarning, match="vmap failed"):
        got = slice_1d(model, theta, d, alphas, batches)
    assert_slices_close(got, slice_1d_loop(model, theta, d, alphas, batches), (5,))


def test_auto_loops_on_cpu_over_large_batches():
    # Above VMAP_CPU_MAX_EXAMPLES examples "auto" does not try vmap on the CPU: the model
    # that vmap refuses gives no warning, and the loop's answer.
    from grokbook.landscape import VMAP_CPU_MAX_EXAMPLES

    torch.manual_seed(0)
    model = NoVmap().double()
    n = VMAP_CPU_MAX_EXAMPLES + 1
    batches = {"b": (torch.randn(n, 3, dtype=torch.float64), torch.randint(0, 2, (n,)))}
    theta, d = flat_params(model), random_direction(model, seed=0)
    alphas = torch.linspace(-1, 1, 5, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = slice_1d(model, theta, d, alphas, batches)
    assert_slices_close(got, slice_1d_loop(model, theta, d, alphas, batches), (5,))


def test_bad_arguments(tiny):
    model, batches = tiny
    theta = flat_params(model)
    with pytest.raises(ValueError, match="method"):
        slice_1d(model, theta, theta, [0.0], batches, method="fast")
    with pytest.raises(ValueError, match="entries"):
        slice_1d(model, theta[:-1], theta[:-1], [0.0], batches)


def test_basin_on_a_parabola_and_a_slope():
    a = np.linspace(-1, 1, 21)
    ok, rise = basin(a, 1 + 3 * a**2)
    assert ok and rise == pytest.approx(4.0)
    ok, rise = basin(a, np.exp(a))  # minimum at the left end, not at 0
    assert basin(np.linspace(-1, 1, 41, dtype=np.float32), 1 + np.linspace(-1, 1, 41) ** 2)[0]  # "0" is ~1e-8
    assert not ok and rise == pytest.approx(np.exp(-1))
    with pytest.raises(ValueError, match="contain 0"):
        basin(np.linspace(-1, 1, 20), np.ones(20))


def test_level_stretch_counts_only_the_run_through_zero():
    a = np.linspace(-1, 1, 41)  # step 0.05
    acc = np.where(np.abs(a) <= 0.3 + 1e-9, 1.0, 0.5)
    acc[0] = 1.0  # an isolated point far out does not join the stretch
    assert level_stretch(a, acc, 0.99) == pytest.approx(0.6)
    assert level_stretch(a, np.where(a == 0, 0.5, 1.0), 0.99) == 0.0


def test_segment_escape_on_hand_made_segments():
    a = np.linspace(0, 1, 11)
    good = {"train": {"loss": 0.01 + 0.02 * a * (1 - a), "acc": np.ones(11)},
            "val": {"loss": 3 - 2.9 * a, "acc": 0.1 + 0.9 * a}}
    out = segment_escape(good, reach=0.99, low_loss=0.1)
    assert out["stays_fit"] and out["generalizes"]
    assert out["train_loss_max"] == pytest.approx(0.015) and out["val_loss_ratio"] == pytest.approx(30)
    barrier = {**good, "train": {"loss": 0.01 + 12 * a * (1 - a), "acc": 1 - 0.8 * a * (1 - a)}}
    out = segment_escape(barrier, reach=0.99, low_loss=0.1)
    assert not out["stays_fit"] and out["train_acc_min"] == pytest.approx(0.8)
    flat_val = {**good, "val": {"loss": np.full(11, 2.0), "acc": np.full(11, 0.3)}}
    assert not segment_escape(flat_val, reach=0.99, low_loss=0.1)["generalizes"]
