"""Curvature of the training loss: Hessian-vector products, extreme eigenvalues, trace
and spectral density.

Every function takes a model, a batch ``inputs`` (e.g. ``(N, 4)`` int64 tokens) with its
``targets`` (``(N,)``), and an optional ``loss_fn(logits, targets) -> scalar`` (default
cross-entropy on ``logits = model(inputs)``; pass e.g.
``functools.partial(grokbook.train.loss_fn, config)`` for the loss a run trained on).
The Hessian is that of the loss with respect to *all* of ``model.parameters()``,
flattened in that order into ``P`` coordinates; eigenvalues are in loss units per
squared parameter unit. Products are exact (double backward), in the model's dtype and
on its device; nothing here changes the model.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import LinearOperator, eigsh
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_hvp(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
             loss_fn: Optional[LossFn] = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function ``v (P,) -> H v (P,)`` for the Hessian ``H`` of the loss at the
    model's current weights.

    The forward pass and the first backward pass (with ``create_graph=True``) run once
    here; each call is then one more backward pass through the retained graph, which is
    what iterative solvers calling it hundreds of times want. Memory: the graph of one
    forward and backward pass on the whole batch is held as long as the function is.
    """
    params = list(model.parameters())
    loss = (loss_fn or F.cross_entropy)(model(inputs), targets)
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True,
                                materialize_grads=True)
    flat_grad = torch.cat([g.reshape(-1) for g in grads])
    ref = params[0]

    def apply(vector: torch.Tensor) -> torch.Tensor:
        v = vector.to(device=ref.device, dtype=ref.dtype).reshape(flat_grad.shape)
        # Vector-Jacobian product of the gradient: v^T H = (H v)^T as H is symmetric.
        hv = torch.autograd.grad(flat_grad, params, grad_outputs=v, retain_graph=True,
                                 allow_unused=True, materialize_grads=True)
        return torch.cat([h.reshape(-1) for h in hv]).detach()

    return apply


def hvp(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, vector: torch.Tensor,
        loss_fn: Optional[LossFn] = None) -> torch.Tensor:
    """Hessian-vector product ``H v``, ``(P,)``, for one vector ``v`` of shape ``(P,)``
    (ordered as ``model.parameters()``), by double backward. For many products at the
    same weights use :func:`make_hvp`, which does the first backward pass only once."""
    return make_hvp(model, inputs, targets, loss_fn)(vector)


def _operator(matvec: Callable[[torch.Tensor], torch.Tensor], n: int) -> LinearOperator:
    """The HVP as a float64 scipy ``LinearOperator`` of shape ``(n, n)``."""
    def mv(v: np.ndarray) -> np.ndarray:
        return matvec(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64).ravel())
                      ).cpu().double().numpy()
    return LinearOperator((n, n), matvec=mv, dtype=np.float64)


def extreme_eigenvalues(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                        loss_fn: Optional[LossFn] = None, *, tol: float = 1e-4,
                        maxiter: Optional[int] = None, seed: int = 0) -> tuple[float, float]:
    """The signed extremes ``(lambda_min, lambda_max)`` of the Hessian spectrum.

    Both come from implicitly restarted Lanczos (``scipy.sparse.linalg.eigsh``, k = 1,
    which = ``'LA'``) on the HVP operator, started from a ``seed``-ed Gaussian vector so
    that results repeat. ``lambda_max`` is the largest eigenvalue of ``H``;
    ``lambda_min = lambda_max - mu`` with ``mu`` the largest eigenvalue of the shifted
    operator ``lambda_max I - H`` (positive semi-definite).

    Why the shift rather than ``which='SA'`` on ``H``: the Krylov spaces are the same,
    but ARPACK's stopping test is relative to the eigenvalue sought, and the
    ``lambda_min`` of a trained network is tiny next to ``lambda_max``; ``'SA'`` then
    asks for a tiny *absolute* residual and often runs into ``maxiter``. On the shifted
    operator the test is relative to ``lambda_max - lambda_min``, the scale of the
    spectrum. So ``lambda_max`` is accurate to about ``tol * |lambda_max|`` and
    ``lambda_min`` to about ``tol * (lambda_max - lambda_min)``, absolutely: a
    ``lambda_min`` smaller than that is "zero" at this ``tol``.
    """
    matvec = make_hvp(model, inputs, targets, loss_fn)
    n = sum(p.numel() for p in model.parameters())
    v0 = np.random.default_rng(seed).standard_normal(n)
    op = _operator(matvec, n)
    lmax = float(eigsh(op, k=1, which="LA", tol=tol, maxiter=maxiter, v0=v0,
                       return_eigenvectors=False)[0])
    shifted = LinearOperator((n, n), matvec=lambda v: lmax * np.ravel(v) - op.matvec(v),
                             dtype=np.float64)
    mu = float(eigsh(shifted, k=1, which="LA", tol=tol, maxiter=maxiter, v0=v0,
                     return_eigenvectors=False)[0])
    return lmax - mu, lmax


def condition_ratio(lmin: float, lmax: float) -> float:
    """The paper's signed "condition number" ``lambda_min / lambda_max`` (dimensionless).

    Near 0 when the landscape is flat in some direction, negative when it has a
    direction of negative curvature. Not a condition number in the usual sense, which
    is meaningless for an indefinite Hessian; see :func:`kappa_plus`.
    """
    return lmin / lmax


def kappa_plus(eigs: np.ndarray | list[float], threshold: float) -> float:
    """Condition number of the positive part of a spectrum: the largest eigenvalue over
    the smallest eigenvalue greater than ``threshold``.

    ``eigs``: any eigenvalues (e.g. the top-k, or :func:`slq_density` nodes).
    ``threshold`` must be positive and is absolute, in the eigenvalues' units; it is
    what makes the ratio meaningful, since near-zero eigenvalues (most of a network's
    spectrum) would send it to infinity, so state it beside every value reported
    (a common choice is a small fraction of ``lambda_max``, e.g. ``1e-3 * lambda_max``).
    Returns NaN when no eigenvalue exceeds ``threshold``.
    """
    if not threshold > 0:
        raise ValueError(f"kappa_plus threshold = {threshold!r} must be a positive number")
    e = np.asarray(eigs, dtype=np.float64).ravel()
    above = e[e > threshold]
    return float(above.max() / above.min()) if above.size else float("nan")


def _rademacher(n: int, generator: torch.Generator) -> torch.Tensor:
    """``(n,)`` float64 vector of independent +-1 entries."""
    return torch.randint(0, 2, (n,), generator=generator, dtype=torch.int64).double() * 2 - 1


def hutchinson_trace(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                     n_samples: int = 100, seed: int = 0, loss_fn: Optional[LossFn] = None
                     ) -> tuple[float, float]:
    """Hutchinson estimate of ``trace(H)``: the mean of ``z^T H z`` over ``n_samples``
    Rademacher probes ``z``, and its standard error (sample std / sqrt(n_samples)).

    Unbiased; the variance of one probe is ``2 * sum_{i != j} H_ij^2``.
    """
    if n_samples < 2:
        raise ValueError(f"n_samples = {n_samples} must be >= 2 to give a standard error")
    matvec = make_hvp(model, inputs, targets, loss_fn)
    n = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(seed)
    samples = np.empty(n_samples)
    for i in range(n_samples):
        z = _rademacher(n, gen)
        samples[i] = float(z @ matvec(z).cpu().double())
    return float(samples.mean()), float(samples.std(ddof=1) / np.sqrt(n_samples))


def _lanczos(matvec: Callable[[torch.Tensor], torch.Tensor], v0: torch.Tensor, n_steps: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """``n_steps`` Lanczos steps from ``v0`` with full reorthogonalization.

    Returns the tridiagonal's diagonal ``alpha`` ``(m,)`` and off-diagonal ``beta``
    ``(m - 1,)``; ``m < n_steps`` when the Krylov space is exhausted first. Memory:
    ``m`` float64 vectors of length P.
    """
    basis = [v0 / v0.norm()]
    alpha: list[float] = []
    beta: list[float] = []
    scale = 0.0  # largest |entry| of T so far, to tell a breakdown from a small beta
    for _ in range(n_steps):
        w = matvec(basis[-1]).double().to(v0.device)
        alpha.append(float(basis[-1] @ w))
        q = torch.stack(basis)
        for _ in range(2):  # Gram-Schmidt twice: once is not enough in floating point
            w = w - q.T @ (q @ w)
        b = float(w.norm())
        scale = max(scale, abs(alpha[-1]), b)
        if len(alpha) == n_steps or b <= 1e-10 * scale:
            break
        beta.append(b)
        basis.append(w / b)
    return np.array(alpha), np.array(beta)


def slq_density(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                n_probes: int = 10, n_steps: int = 80, seed: int = 0,
                loss_fn: Optional[LossFn] = None) -> tuple[np.ndarray, np.ndarray]:
    """Stochastic Lanczos quadrature of the Hessian's spectral density
    (Ghorbani, Krishnan and Xiao 2019).

    For each of ``n_probes`` unit probes ``v`` (Rademacher / sqrt(P)), ``n_steps``
    Lanczos steps give a tridiagonal ``T``; its eigenvalues (Ritz values) are the nodes
    and the squared first components of its eigenvectors the weights of a Gauss
    quadrature for ``v^T f(H) v``. Averaged over probes this estimates the density
    ``(1/P) sum_i delta(lambda - lambda_i)``.

    Returns ``(nodes, weights)``, each ``(M,)`` with ``M <= n_probes * n_steps``:
    nodes in eigenvalue units, weights summing to 1. Moments ``sum w * nodes^k`` for
    ``k <= 2 n_steps - 1`` estimate ``trace(H^k) / P`` without bias. Draw it with
    :func:`gaussian_smooth`.
    """
    matvec = make_hvp(model, inputs, targets, loss_fn)
    ref = next(model.parameters())
    n = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(seed)
    nodes, weights = [], []
    for _ in range(n_probes):
        a, b = _lanczos(matvec, _rademacher(n, gen).to(ref.device), n_steps)
        t = np.diag(a) + np.diag(b, 1) + np.diag(b, -1)
        theta, vecs = np.linalg.eigh(t)
        nodes.append(theta)
        weights.append(vecs[0] ** 2 / n_probes)
    return np.concatenate(nodes), np.concatenate(weights)


def gaussian_smooth(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray, sigma: float
                    ) -> np.ndarray:
    """The density ``sum_j w_j N(grid; node_j, sigma^2)`` on ``grid`` ``(G,)``.

    ``nodes``, ``weights``: ``(M,)`` from :func:`slq_density`; ``sigma`` in eigenvalue
    units. Returns ``(G,)``, per eigenvalue unit (it integrates to ``sum(weights)``).
    """
    if not sigma > 0:
        raise ValueError(f"sigma = {sigma!r} must be positive")
    g = np.asarray(grid, dtype=np.float64)[:, None]
    z = (g - np.asarray(nodes, dtype=np.float64)[None, :]) / sigma
    return (np.exp(-0.5 * z**2) / (sigma * np.sqrt(2 * np.pi))) @ np.asarray(weights, np.float64)
