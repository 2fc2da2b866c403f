"""Curvature of the training loss: Hessian-vector products, extreme eigenvalues, trace
and spectral density.

Every function takes a model, a batch ``inputs`` (e.g. ``(N, 4)`` int64 tokens) with its
``targets`` (``(N,)``), and an optional ``loss_fn(logits, targets) -> scalar`` (default
:func:`grokbook.trainer.cross_entropy` on ``logits = model(inputs)``, any number of target tokens; pass e.g.
``functools.partial(grokbook.trainer.loss_fn, config)`` for the loss a run trained on).
The Hessian is that of the loss with respect to *all* of ``model.parameters()``,
flattened in that order into ``P`` coordinates; eigenvalues are in loss units per
squared parameter unit. Products are exact (double backward), in the model's dtype and
on its device; nothing here changes the model.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from torch import nn

from .trainer import cross_entropy

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
    loss = (loss_fn or cross_entropy)(model(inputs), targets)
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


# extreme_eigenvalues takes at least this many steps (ARPACK's default basis size): in
# the first few a Ritz value sitting on the large cluster of eigenvalues near zero can
# have a small residual before the smallest eigenvalue has shown up at all.
MIN_LANCZOS_STEPS = 20


def extreme_eigenvalues(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                        loss_fn: Optional[LossFn] = None, *, tol: float = 1e-3,
                        maxiter: Optional[int] = None, seed: int = 0) -> tuple[float, float]:
    """The signed extremes ``(lambda_min, lambda_max)`` of the Hessian spectrum.

    Both ends come from one Lanczos run on the HVP operator (full reorthogonalization,
    no restarts), started from a ``seed``-ed Gaussian vector so that results repeat: the
    smallest and largest Ritz values. The run stops once both Ritz values have a
    residual ``|beta_m s_m|`` (the norm of ``H y - theta y`` for the Ritz pair
    ``(theta, y)``) at most ``tol * (theta_max - theta_min)``, and after at least
    ``MIN_LANCZOS_STEPS`` steps. A symmetric matrix has an eigenvalue within the
    residual of every Ritz value, and Ritz values lie inside the spectrum, so the
    results satisfy ``lambda_min >= true lambda_min`` and ``lambda_max <= true
    lambda_max`` and each is within ``tol`` times the width of the spectrum of *an*
    eigenvalue (in practice of the extreme one, and several times closer: the error
    shrinks like the residual squared over the gap to the next eigenvalue).

    What no Krylov method can promise: an extreme eigenvalue that has not yet shown up.
    A negative eigenvalue within a few ``tol`` widths of the large cluster of
    eigenvalues near zero emerges slowly and can be missed: at the end of the Hessian
    chapter's grokking run an eigenvalue at -1.2e-3 of the width came out as about 0 at
    ``tol=1e-3`` (and to 4e-7 of the width at ``tol=1e-7``). So a ``lambda_min``
    smaller than a few ``tol * (lambda_max - lambda_min)`` in magnitude is "zero" at
    this ``tol``. ``seed`` draws another start vector.

    In float32 the products carry rounding errors relative to the magnitudes inside the
    network, not to ``H``: near a zero-loss minimum, where the Hessian itself is tiny,
    use a float64 model (``model.double()``). At the end of the Hessian chapter's
    control run float32 gave ``lambda_max`` 2.7e-4 and ``lambda_min`` -8.7e-5 where
    float64 gives 5.4e-4 and -5.1e-6.

    The default ``tol`` is 1e-3, looser than the 1e-4 this function had with ARPACK:
    ``lambda_min`` sits at the edge of a cluster of small negative eigenvalues and
    converges slowly. At a checkpoint of the paper's model (full training set) the run
    took 49 products at 1e-3 and 155 at 1e-4, and the two ``lambda_min`` differed by
    2.5e-4 of the spectrum's width, well inside the 1e-3 bound; pass ``tol=1e-4`` for
    the tighter guarantee.

    Why one run rather than scipy's ``eigsh`` (ARPACK) twice, ``'LA'`` on ``H`` then on
    ``lambda_max I - H`` as this function did before: ARPACK restarts from 20 vectors,
    so it throws away the Krylov space that the slowly converging ``lambda_min`` needs;
    on 400 examples of that checkpoint ARPACK took 21 products for ``lambda_max`` and
    391 for ``lambda_min`` at ``tol=1e-4``, and one unrestarted run reached the same
    residual for both in about 160. See ``benchmarks/RESULTS.md``.

    ``maxiter``: the most Lanczos steps (Hessian-vector products); default
    ``min(P, 300)``. Memory: one float64 vector of length P per step taken, at most
    ``maxiter`` of them (300 of the paper's 422k-parameter model: 1 GB). Raises
    ``RuntimeError`` if the tolerance is not met within ``maxiter`` steps.
    """
    if not tol > 0:
        raise ValueError(f"tol = {tol!r} must be positive")
    matvec = make_hvp(model, inputs, targets, loss_fn)
    n = sum(p.numel() for p in model.parameters())
    steps = min(n, maxiter if maxiter is not None else 300)
    if steps < 1:
        raise ValueError(f"maxiter = {maxiter!r} must be >= 1")
    ref = next(model.parameters())
    v0 = torch.from_numpy(np.random.default_rng(seed).standard_normal(n)).to(ref.device)
    found: dict[str, float] = {}

    def converged(alpha: np.ndarray, beta: np.ndarray, b: float) -> bool:
        theta, s = eigh_tridiagonal(alpha, beta) if len(beta) else (alpha, np.ones((1, 1)))
        res = np.abs(b * s[-1, [0, -1]])
        found.update(lmin=theta[0], lmax=theta[-1], res=res.max(),
                     width=theta[-1] - theta[0])
        return len(alpha) >= MIN_LANCZOS_STEPS and bool(res.max() <= tol * found["width"])

    _lanczos(matvec, v0, steps, converged)
    if not found["res"] <= tol * found["width"]:
        raise RuntimeError(
            f"extreme_eigenvalues: residual {found['res']:.3g} after {steps} Lanczos steps, "
            f"above tol * width = {tol * found['width']:.3g} (Ritz values "
            f"{found['lmin']:.6g}, {found['lmax']:.6g}); raise maxiter or tol")
    return float(found["lmin"]), float(found["lmax"])


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


def _lanczos(matvec: Callable[[torch.Tensor], torch.Tensor], v0: torch.Tensor, n_steps: int,
             stop: Optional[Callable[[np.ndarray, np.ndarray, float], bool]] = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """At most ``n_steps`` Lanczos steps from ``v0`` with full reorthogonalization.

    Returns the tridiagonal's diagonal ``alpha`` ``(m,)`` and off-diagonal ``beta``
    ``(m - 1,)``; ``m < n_steps`` when the Krylov space is exhausted first or when
    ``stop(alpha, beta, b)`` returns True: it is called after every step with the
    tridiagonal so far and ``b``, the norm of the next Lanczos vector before
    normalization (the last component of a Ritz vector times ``b`` is that Ritz pair's
    residual); ``b = 0`` on exhaustion, where the Ritz values are exact eigenvalues.
    Memory: ``m`` float64 vectors of length P (the basis grows by doubling, in one
    block, so that reorthogonalizing costs no copy of it per step).
    """
    q = v0.double().reshape(1, -1) / v0.double().norm()
    basis = q.new_empty((min(n_steps, 32), q.shape[1]))
    basis[0] = q[0]
    alpha: list[float] = []
    beta: list[float] = []
    scale = 0.0  # largest |entry| of T so far, to tell a breakdown from a small beta
    for m in range(1, n_steps + 1):
        w = matvec(basis[m - 1]).double().to(v0.device)
        alpha.append(float(basis[m - 1] @ w))
        q = basis[:m]
        for _ in range(2):  # Gram-Schmidt twice: once is not enough in floating point
            w = w - q.T @ (q @ w)
        b = float(w.norm())
        scale = max(scale, abs(alpha[-1]), b)
        exhausted = b <= 1e-10 * scale
        done = stop is not None and stop(np.array(alpha), np.array(beta), 0.0 if exhausted else b)
        if exhausted or done or m == n_steps:
            break
        beta.append(b)
        if m == len(basis):
            basis = torch.cat([basis, basis.new_empty((min(m, n_steps - m), basis.shape[1]))])
        basis[m] = w / b
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


def resolved_negative(lmin: float, lmax: float, tol: float, factor: float = 3.0) -> bool:
    """Whether a ``lambda_min`` from :func:`extreme_eigenvalues` at ``tol`` is negative
    beyond the solver's resolution: ``lambda_min < -factor * tol * (lambda_max -
    lambda_min)``. Closer to zero than a few ``tol`` widths it may be a zero eigenvalue
    not yet resolved (see :func:`extreme_eigenvalues`)."""
    if not (tol > 0 and factor > 0):
        raise ValueError(f"tol and factor must be positive, got {tol!r} and {factor!r}")
    return bool(lmin < -factor * tol * (lmax - lmin))


def between_steps(events: Sequence[int]) -> np.ndarray:
    """The step halfway between each event and the next, rounded down:
    ``(len(events) - 1,)`` int, for increasing ``events``. Where events are loss
    spikes, these are the quiet steps to compare them with."""
    e = np.asarray(events, dtype=np.int64)
    if e.ndim != 1 or np.any(np.diff(e) <= 0):
        raise ValueError("events must be increasing steps")
    return (e[:-1] + e[1:]) // 2
