"""grokbook.hessian against a dense Hessian of tiny float64 models (P of a few hundred)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import grokbook.hessian as hessian
from grokbook.config import RunConfig
from grokbook.hessian import (between_steps, condition_ratio, extreme_eigenvalues, gaussian_smooth, hvp,
                              hutchinson_trace, kappa_plus, make_hvp, resolved_negative, slq_density)
from grokbook.models import build_model
from grokbook.tasks import make_dataset

CONFIGS = {
    "transformer": RunConfig(task="add", p=5, r=0.6, model="transformer", n_layers=1,
                             d_model=8, n_heads=2, d_mlp=16),
    "mlp": RunConfig(task="add", p=5, r=0.6, model="mlp", n_layers=1, d_model=4, d_mlp=8),
}


def mse(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(logits, F.one_hot(y, logits.shape[-1]).to(logits.dtype))


def setup(name: str, **changes):
    config = CONFIGS[name].replace(**changes)
    data = make_dataset(config)
    model = build_model(config, data.vocab_size, data.n_classes).double()
    return model, data.train_x, data.train_y


def dense_hessian(model, x, y, loss_fn=F.cross_entropy) -> torch.Tensor:
    """(P, P) Hessian of the loss over the flat parameter vector, independent of hvp."""
    named = list(model.named_parameters())
    sizes = [p.numel() for _, p in named]
    flat0 = torch.nn.utils.parameters_to_vector(model.parameters()).detach()

    def f(flat):
        ws = {n: t.view_as(p) for (n, p), t in zip(named, flat.split(sizes))}
        return loss_fn(functional_call(model, ws, (x,)), y)

    return torch.autograd.functional.hessian(f, flat0, vectorize=True)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny models gain nothing from threads, and on a busy 2-core machine the thread
    # pool oversubscribes: one HVP went from 27 ms to 200 ms.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@functools.lru_cache(maxsize=None)
def dense_case(name: str):
    model, x, y = setup(name)
    h = dense_hessian(model, x, y)
    return model, x, y, h, np.linalg.eigvalsh(h.numpy())


@pytest.fixture(params=["transformer", "mlp"])
def case(request, one_thread):
    return dense_case(request.param)[:4]


@pytest.fixture
def transformer_case(one_thread):
    return dense_case("transformer")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_hvp_equals_dense_hessian_times_v(case):
    model, x, y, h = case
    v = torch.randn(h.shape[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert rel_err(hvp(model, x, y, v), h @ v) < 1e-6
    # make_hvp reuses one graph for many products
    op = make_hvp(model, x, y)
    for k in range(3):
        e = torch.zeros(h.shape[0], dtype=torch.float64)
        e[k * 17] = 1.0
        assert rel_err(op(e), h[:, k * 17]) < 1e-6 or h[:, k * 17].norm() == 0


def test_hvp_custom_loss():
    model, x, y = setup("mlp")
    h = dense_hessian(model, x, y, mse)
    v = torch.randn(h.shape[0], generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert rel_err(hvp(model, x, y, v, loss_fn=mse), h @ v) < 1e-6


def test_hvp_matches_finite_difference_of_gradients_through_transformer():
    # two layers: the full-sequence path of block 0 and the last_only path of block 1
    model, x, y = setup("transformer", n_layers=2)
    flat = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    v = torch.randn(flat.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def grad_at(theta):
        torch.nn.utils.vector_to_parameters(theta, model.parameters())
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        return torch.cat([p.grad.reshape(-1) for p in model.parameters()])

    eps = 1e-5
    fd = (grad_at(flat + eps * v) - grad_at(flat - eps * v)) / (2 * eps)
    torch.nn.utils.vector_to_parameters(flat, model.parameters())
    assert rel_err(hvp(model, x, y, v), fd) < 1e-6


def test_extreme_eigenvalues_match_dense(transformer_case):
    model, x, y, _, eigs = transformer_case
    assert eigs[0] < 0 < eigs[-1]  # an indefinite Hessian: the signed lambda_min matters
    lmin, lmax = extreme_eigenvalues(model, x, y, tol=1e-10)
    assert abs(lmax - eigs[-1]) <= 1e-6 * abs(eigs[-1])
    assert abs(lmin - eigs[0]) <= 1e-6 * abs(eigs[0])
    assert condition_ratio(lmin, lmax) == pytest.approx(eigs[0] / eigs[-1], rel=1e-5)


def test_extreme_eigenvalues_default_tol_and_loss_fn():
    model, x, y = setup("mlp")
    eigs = np.linalg.eigvalsh(dense_hessian(model, x, y, mse).numpy())
    lmin, lmax = extreme_eigenvalues(model, x, y, loss_fn=mse)
    width = eigs[-1] - eigs[0]
    # documented accuracy at the default tol = 1e-3: 1e-3 * (lambda_max - lambda_min)
    assert abs(lmax - eigs[-1]) <= 1e-3 * width
    assert abs(lmin - eigs[0]) <= 1e-3 * width


def test_extreme_eigenvalues_stop_at_tol_before_exhausting_the_space(transformer_case, monkeypatch):
    # At a loose tol the Lanczos run stops early, and both extremes are still within
    # the documented tol * (lambda_max - lambda_min) of the dense ones.
    model, x, y, _, eigs = transformer_case
    make, calls = hessian.make_hvp, []

    def counting(*args, **kwargs):
        apply = make(*args, **kwargs)

        def counted(v):
            calls.append(1)
            return apply(v)
        return counted

    monkeypatch.setattr(hessian, "make_hvp", counting)
    counts = {}
    for tol in (1e-10, 1e-2):
        calls.clear()
        lmin, lmax = extreme_eigenvalues(model, x, y, tol=tol)
        counts[tol] = len(calls)
        width = eigs[-1] - eigs[0]
        assert abs(lmax - eigs[-1]) <= tol * width and abs(lmin - eigs[0]) <= tol * width
        assert eigs[0] - 1e-9 * width <= lmin and lmax <= eigs[-1] + 1e-9 * width  # Ritz values
    assert min(hessian.MIN_LANCZOS_STEPS, counts[1e-10]) <= counts[1e-2] < counts[1e-10]


def test_extreme_eigenvalues_bad_input_and_no_convergence():
    model, x, y = setup("mlp")
    with pytest.raises(ValueError, match="tol"):
        extreme_eigenvalues(model, x, y, tol=0.0)
    with pytest.raises(ValueError, match="maxiter"):
        extreme_eigenvalues(model, x, y, maxiter=0)
    with pytest.raises(RuntimeError, match="raise maxiter or tol"):
        extreme_eigenvalues(model, x, y, tol=1e-12, maxiter=3)


def test_kappa_plus():
    eigs = np.array([-2.0, -1e-6, 0.0, 1e-5, 0.5, 2.0, 10.0])
    assert kappa_plus(eigs, 0.1) == pytest.approx(20.0)
    assert kappa_plus(eigs, 1e-6) == pytest.approx(1e6)
    assert np.isnan(kappa_plus(eigs, 100.0))
    with pytest.raises(ValueError, match="threshold"):
        kappa_plus(eigs, 0.0)


def test_hutchinson_trace_within_standard_errors(transformer_case):
    model, x, y, h, _ = transformer_case
    n = 100
    mean, se = hutchinson_trace(model, x, y, n_samples=n, seed=0)
    off = h - torch.diag(torch.diag(h))
    true_se = float(torch.sqrt(2 * (off**2).sum() / n))  # Rademacher probe variance
    assert abs(mean - float(torch.trace(h))) < 4 * true_se
    assert 0.5 * true_se < se < 2 * true_se
    assert hutchinson_trace(model, x, y, n_samples=n, seed=0) == (mean, se)


def test_slq_density_weights_and_moments(transformer_case):
    model, x, y, h, eigs = transformer_case
    n_probes, n_steps = 10, 15
    nodes, weights = slq_density(model, x, y, n_probes=n_probes, n_steps=n_steps, seed=0)
    p = h.shape[0]
    assert nodes.shape == weights.shape and len(nodes) <= n_probes * n_steps
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert (weights >= 0).all()
    # Ritz values lie inside the spectrum
    span = eigs[-1] - eigs[0]
    assert nodes.min() >= eigs[0] - 1e-8 * span and nodes.max() <= eigs[-1] + 1e-8 * span
    # moments k = 1, 2 estimate trace(H^k) / P, with the Rademacher probe variance
    hk = h
    for _ in range(2):
        off = hk - torch.diag(torch.diag(hk))
        se = float(torch.sqrt(2 * (off**2).sum() / n_probes)) / p
        assert abs((weights * nodes ** (_ + 1)).sum() - float(torch.trace(hk)) / p) < 4 * se
        hk = hk @ h


def test_slq_exact_when_lanczos_exhausts_the_space():
    # With more steps than parameters Lanczos exhausts the Krylov space, so the Ritz
    # values carrying weight are exact eigenvalues of H.
    model, x, y = setup("mlp", d_model=2, n_heads=1, d_mlp=3)
    h = dense_hessian(model, x, y)
    eigs = np.linalg.eigvalsh(h.numpy())
    nodes, weights = slq_density(model, x, y, n_probes=1, n_steps=h.shape[0] + 5)
    big = weights > 1e-8
    # every well-weighted node is an eigenvalue of H
    gaps = np.abs(nodes[big][:, None] - eigs[None, :]).min(1)
    assert gaps.max() < 1e-6 * np.abs(eigs).max()


def test_gaussian_smooth_integrates_to_total_weight():
    nodes, weights = np.array([-1.0, 0.0, 2.0]), np.array([0.2, 0.5, 0.3])
    grid = np.linspace(-5, 7, 4001)
    dens = gaussian_smooth(nodes, weights, grid, sigma=0.1)
    assert np.trapezoid(dens, grid) == pytest.approx(1.0, rel=1e-6)
    assert dens[np.argmin(np.abs(grid))] == pytest.approx(0.5 / (0.1 * np.sqrt(2 * np.pi)),
                                                          rel=1e-3)


def test_resolved_negative_threshold():
    # width 1.0 + 0.01 = 1.01; threshold -3 * 1e-3 * width
    assert resolved_negative(-0.01, 1.0, tol=1e-3)
    assert not resolved_negative(-0.002, 1.0, tol=1e-3)  # within 3 tol-widths of zero
    assert resolved_negative(-0.002, 1.0, tol=1e-3, factor=1.0)
    assert not resolved_negative(0.1, 1.0, tol=1e-3)
    with pytest.raises(ValueError):
        resolved_negative(-1.0, 1.0, tol=0.0)


def test_between_steps_midpoints():
    np.testing.assert_array_equal(between_steps([100, 300, 311]), [200, 305])
    assert between_steps([50]).shape == (0,) and between_steps([]).shape == (0,)
    with pytest.raises(ValueError, match="increasing"):
        between_steps([300, 100])


class _Quadratic(torch.nn.Module):
    """A model whose "logits" are its own weights: with the loss 0.5 theta^T A theta the
    Hessian is A, whatever the inputs."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.randn(n, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.theta.expand(len(x), -1)


@pytest.mark.parametrize("lowest", [-3.0, 0.5])  # an indefinite and a positive definite Hessian
def test_extreme_eigenvalues_of_a_quadratic_with_a_known_hessian(lowest):
    rng = np.random.default_rng(7)
    eig = np.r_[lowest, np.linspace(1.0, 4.0, 38), 9.0]  # planted spectrum, 40 weights
    q, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    a = torch.from_numpy(q @ np.diag(eig) @ q.T)
    model = _Quadratic(40)

    def quadratic(logits, _y):
        theta = logits[0]
        return 0.5 * theta @ a @ theta

    x, y = torch.zeros(3, 1), torch.zeros(3, dtype=torch.long)
    lmin, lmax = extreme_eigenvalues(model, x, y, quadratic, tol=1e-8)
    assert lmin == pytest.approx(lowest, abs=1e-6) and lmax == pytest.approx(9.0, abs=1e-6)
