"""Geometry of a training trajectory: cosine series, trajectory PCA and the random-walk
baseline with the same step sizes.

``snapshots`` is a ``(T, P)`` array: ``T`` flattened parameter vectors ``theta_t`` in
order (a CPU torch tensor is accepted too). Everything is computed in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np


def _snapshots(snapshots, min_rows: int) -> np.ndarray:
    if hasattr(snapshots, "detach"):  # torch.Tensor
        snapshots = snapshots.detach().cpu().numpy()
    x = np.asarray(snapshots, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"snapshots must have shape (T, P), got {x.shape}")
    if x.shape[0] < min_rows:
        raise ValueError(f"need at least {min_rows} snapshots, got {x.shape[0]}")
    if not np.all(np.isfinite(x)):
        raise ValueError("snapshots contain non-finite values (NaN or inf)")
    return x


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine between matching rows of ``a`` and ``b``; NaN where a row is zero."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("ij,ij->i", a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, dots / norms, np.nan)


def cosine_series(snapshots) -> dict[str, np.ndarray]:
    """Cosine similarities along a trajectory ``(T, P)``, ``T >= 2``.

    Returns ``"consecutive"``: ``(T-1,)``, ``cos(theta_t, theta_{t+1})``;
    ``"update"``: ``(T-2,)``, ``cos(u_t, u_{t+1})`` with ``u_t = theta_{t+1} - theta_t``;
    ``"init"``: ``(T,)``, ``cos(theta_t, theta_0)`` (so ``init[0] = 1``).
    A cosine with a zero vector is NaN. Between consecutive weights the cosine is near
    1 whenever steps are small against the weights, even for a random walk; between
    successive updates a random walk gives about 0.
    """
    x = _snapshots(snapshots, 2)
    updates = np.diff(x, axis=0)
    return {
        "consecutive": _row_cosines(x[:-1], x[1:]),
        "update": _row_cosines(updates[:-1], updates[1:]),
        "init": _row_cosines(x, np.broadcast_to(x[0], x.shape)),
    }


def random_walk(step_norms, dim: int, seed: int = 0, start: Optional[np.ndarray] = None) -> np.ndarray:
    """A random walk with the given step sizes: the baseline for a trajectory.

    ``step_norms``: ``(T-1,)`` non-negative step lengths (e.g. the norms of a run's
    updates between snapshots); ``dim``: dimension ``P``; ``start``: ``(P,)`` first
    point (default the origin). Each step has an isotropic direction (a normalised
    standard Gaussian vector) and exactly the requested norm. Returns ``(T, P)``.
    """
    norms = np.asarray(step_norms, dtype=np.float64)
    if norms.ndim != 1 or not np.all(np.isfinite(norms)) or np.any(norms < 0):
        raise ValueError("step_norms must be a 1-D array of finite, non-negative lengths")
    if int(dim) != dim or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    walk = np.empty((len(norms) + 1, int(dim)))
    walk[0] = 0.0 if start is None else np.asarray(start, dtype=np.float64)
    rng = np.random.default_rng(seed)
    for t, r in enumerate(norms):  # row by row: no second (T, P) array in memory
        step = rng.standard_normal(int(dim))
        walk[t + 1] = walk[t] + r * step / np.linalg.norm(step)
    return walk


def drift_walk(snapshots, seed: int = 0) -> np.ndarray:
    """A random walk with the trajectory's drift: the null for a trajectory that drifts.

    ``snapshots``: ``(T, P)``, ``T >= 2``. Let ``u`` be the unit vector from the first
    snapshot to the last. Step ``k`` of the walk keeps the component along ``u`` of the
    run's step ``theta_{k+1} - theta_k`` exactly, and replaces the rest of the step by an
    isotropic direction orthogonal to ``u`` of the same norm. So the walk has the run's
    step norms and the run's progress along ``u`` at every snapshot (so the same drift);
    only the sideways motion is random. Returns ``(T, P)``, starting at the first
    snapshot.
    """
    x = _snapshots(snapshots, 2)
    steps = np.diff(x, axis=0)
    net = x[-1] - x[0]
    length = np.linalg.norm(net)
    if length == 0:
        raise ValueError("the trajectory ends where it starts: it has no drift direction")
    u = net / length
    along = steps @ u
    side = np.linalg.norm(steps - np.outer(along, u), axis=1)
    rng = np.random.default_rng(seed)
    walk = np.empty_like(x)
    walk[0] = x[0]
    for k in range(len(steps)):
        d = rng.standard_normal(x.shape[1])
        d -= (d @ u) * u
        walk[k + 1] = walk[k] + along[k] * u + side[k] * d / np.linalg.norm(d)
    return walk


def shuffled_walk(snapshots, seed: int = 0) -> np.ndarray:
    """The trajectory with its steps ``theta_{k+1} - theta_k`` in a random order.

    ``snapshots``: ``(T, P)``. The same steps (so the same norms, the same drift and the
    same end point), summed from the first snapshot in a permuted order: the null that
    keeps every step and removes only their order. Returns ``(T, P)``.
    """
    x = _snapshots(snapshots, 2)
    steps = np.diff(x, axis=0)
    order = np.random.default_rng(seed).permutation(len(steps))
    return np.concatenate([x[:1], x[0] + np.cumsum(steps[order], axis=0)])


class NoiseWalk(NamedTuple):
    """A trajectory of :func:`optimizer_noise_walk`.

    ``points``: ``(len(record), P)``, ``theta_s`` at the recorded steps; ``cos_init``:
    ``(steps,)``, ``cos(theta_t, theta_0)``; ``cos_update``: ``(steps,)``,
    ``cos(u_t, u_{t-1})`` with ``u_t = theta_{t+1} - theta_t`` (NaN at ``t = 0``): the
    per-step series the trainer records as ``cos_init`` and ``cos_update``; ``record``:
    ``(len(record),)``, the steps of ``points``, ascending; ``cos_consecutive``:
    ``(steps,)``, ``cos(theta_t, theta_{t+1})`` in float64 (the trainer's
    ``cos_consecutive``, which it computes in float32)."""

    record: np.ndarray
    points: np.ndarray
    cos_init: np.ndarray
    cos_update: np.ndarray
    cos_consecutive: np.ndarray


def optimizer_noise_walk(theta0, steps: int, *, lr: float, weight_decay: float = 0.0,
                         betas: tuple[float, float] = (0.9, 0.98), optimizer: str = "adamw",
                         warmup_steps: int = 10, record=None, seed: int = 0) -> NoiseWalk:
    """The optimiser fed gradients without signal: the null for a trajectory's cosines.

    Starting at ``theta0`` (``(P,)``), ``steps`` updates of Adam (``optimizer="adam"``,
    L2 weight decay through the gradient) or AdamW (decoupled weight decay), with the
    trainer's linear warm-up of ``warmup_steps`` and eps 1e-8 (``torch.optim``'s
    update, in float64), each fed an independent standard Gaussian gradient. Its
    successive updates are correlated by the first-moment average alone (their cosine
    tends to ``betas[0]``), and the noise and the weight decay both carry it away from
    ``theta0``; a real
    trajectory's cosines are compared with this walk's, not with an isotropic one's.
    ``record``: steps (in ``0 .. steps``) whose ``theta`` is kept (default ``0`` and
    ``steps``).
    """
    import torch

    from .trainer import adam_update

    x0 = torch.tensor(np.asarray(theta0, dtype=np.float64).ravel())
    if optimizer not in ("adam", "adamw"):
        raise ValueError(f"optimizer must be 'adam' or 'adamw', got {optimizer!r}")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not (lr > 0 and weight_decay >= 0 and 0 <= betas[0] < 1 and 0 <= betas[1] < 1 and warmup_steps >= 0):
        raise ValueError(f"need lr > 0, weight_decay >= 0, betas in [0, 1) and warmup_steps >= 0, "
                         f"got {lr}, {weight_decay}, {betas}, {warmup_steps}")
    if not torch.all(torch.isfinite(x0)) or not torch.any(x0 != 0):
        raise ValueError("theta0 must be finite and not zero")
    record = np.unique(np.asarray([0, steps] if record is None else record, dtype=np.int64))
    if record.size and (record[0] < 0 or record[-1] > steps):
        raise ValueError(f"record steps must lie in 0..{steps}")
    w, m, v = x0.clone(), torch.zeros_like(x0), torch.zeros_like(x0)
    g, u, before = torch.empty_like(x0), torch.empty_like(x0), torch.empty_like(x0)
    rng, noise = np.random.default_rng(seed), g.numpy()  # noise shares g's memory
    keep = {int(s): i for i, s in enumerate(record)}
    points = np.empty((len(record), x0.numel()))
    cos_init, cos_update, cos_consecutive = np.empty(steps), np.full(steps, np.nan), np.empty(steps)
    norm0, prev_norm = float(x0.norm()), 0.0
    for t in range(steps + 1):
        if t in keep:
            points[keep[t]] = w.numpy()
        if t == steps:
            break
        before.copy_(w)
        w_norm = float(w.norm())
        cos_init[t] = float(w @ x0) / (w_norm * norm0)
        rng.standard_normal(out=noise)
        rate = lr * min(1.0, (t + 1) / warmup_steps) if warmup_steps else lr
        if optimizer == "adam":  # L2 decay through the gradient
            g.add_(w * weight_decay)
        adam_update(t, w, m, v, g, rate, weight_decay if optimizer == "adamw" else None, betas)
        cos_consecutive[t] = float(w @ before) / (float(w.norm()) * w_norm)
        torch.sub(w, before, out=before)  # before is now u_t
        u_norm = float(before.norm())
        if t:
            cos_update[t] = float(before @ u) / (u_norm * prev_norm)
        u, before, prev_norm = before, u, u_norm
    return NoiseWalk(record, points, cos_init, cos_update, cos_consecutive)


def planarity(snapshots, n_components: int = 2) -> float:
    """Share of the trajectory's variance in its first ``n_components`` principal
    components (:func:`trajectory_pca`), a number in [0, 1]."""
    return float(trajectory_pca(snapshots, n_components).explained_variance_ratio[:n_components].sum())


@dataclass(frozen=True)
class TrajectoryPCA:
    """PCA of a trajectory.

    ``explained_variance_ratio``: ``(min(T, P),)``, descending, sums to 1 (the last is
    ~0: centring leaves rank at most ``T - 1``); ``components``: ``(n_components, P)``
    orthonormal directions; ``projection``: ``(T, n_components)``, the coordinates of
    ``theta_t - theta_T`` on them, so the final point sits at the origin (as in a
    loss-landscape plot around ``theta_T``); ``mean``: ``(P,)``, the mean of the rows
    ``theta_t - theta_T`` that was removed before the SVD.
    """

    explained_variance_ratio: np.ndarray
    components: np.ndarray
    projection: np.ndarray
    mean: np.ndarray


def trajectory_pca(snapshots, n_components: int = 2) -> TrajectoryPCA:
    """PCA of the rows ``theta_t - theta_T`` (``T`` = the last snapshot), centred.

    ``snapshots``: ``(T, P)``, ``T >= 2``. After centring, subtracting ``theta_T`` does
    not change the variances or components; it only sets the origin of the projection.
    When ``P > T`` the SVD comes from the ``T x T`` Gram matrix (``O(T^2 P)`` time, no
    ``P x P`` matrix); each component's sign is chosen so that the first snapshot
    projects to a non-negative coordinate. Components whose variance is below 1e-12 of
    the largest (beyond the trajectory's rank) are returned as zero vectors.
    """
    x = _snapshots(snapshots, 2)
    t, p = x.shape
    if int(n_components) != n_components or not 1 <= n_components <= min(t, p):
        raise ValueError(f"n_components must be in 1..{min(t, p)}, got {n_components!r}")
    rows = x - x[-1]
    mean = rows.mean(axis=0)
    centred = rows - mean
    if p > t:
        # centred = U S V^T  =>  Gram = U S^2 U^T and V = centred^T U / S
        eigval, u = np.linalg.eigh(centred @ centred.T)
        order = np.argsort(eigval)[::-1]
        variance, u = np.clip(eigval[order], 0, None), u[:, order[:n_components]]
        s = np.sqrt(variance[:n_components])
        vt = (centred.T @ (u / np.where(s > 0, s, 1.0))).T
    else:
        _, s_all, vt = np.linalg.svd(centred, full_matrices=False)
        variance, vt = s_all**2, vt[:n_components]
    # Gram eigenvalues carry absolute errors ~ eps * s_max^2, so a component with
    # variance below 1e-12 of the largest is noise: its direction is set to zero.
    vt[variance[:n_components] <= 1e-12 * variance[0]] = 0.0
    total = variance.sum()
    ratio = variance / total if total > 0 else np.zeros_like(variance)
    projection = rows @ vt.T
    sign = np.where(projection[0] < 0, -1.0, 1.0)
    return TrajectoryPCA(ratio[:min(t, p)], vt * sign[:, None], projection * sign, mean)


def principal_components(points, n_components: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Centred PCA of the rows of ``points`` ``(n, d)`` (e.g. token embeddings).

    Returns ``(projection (n, n_components), explained_variance_ratio (n_components,))``,
    signs fixed so that the first row has non-negative coordinates."""
    x = np.asarray(points, dtype=np.float64)
    x = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    proj = u[:, :n_components] * s[:n_components]
    proj *= np.where(proj[0] < 0, -1.0, 1.0)
    return proj, s[:n_components] ** 2 / (s**2).sum()


def _embedding(embedding) -> np.ndarray:
    if hasattr(embedding, "detach"):  # torch.Tensor
        embedding = embedding.detach().cpu().numpy()
    e = np.asarray(embedding, dtype=np.float64)
    if e.ndim != 2 or e.shape[0] < 3:
        raise ValueError(f"embedding must have shape (p, d) with p >= 3 tokens, got {e.shape}")
    if not np.all(np.isfinite(e)):
        raise ValueError("embedding contains non-finite values (NaN or inf)")
    return e


def fourier_power(embedding) -> np.ndarray:
    """Power of an embedding matrix at each frequency of the token index.

    ``embedding``: ``(p, d)``, row ``x`` the embedding of token ``x`` (the residues
    ``0 .. p-1``). The discrete Fourier transform along the token axis, its squared
    modulus summed over the ``d`` columns, the frequencies ``k`` and ``p - k`` counted
    together. Returns ``(p // 2 + 1,)``: entry ``k`` is the share of the total power at
    frequency ``k`` (entry 0: the mean embedding); the entries sum to 1 (all zero for a
    zero matrix). A modular-addition network that generalizes the way Nanda et al. found
    puts most of the power in a few key frequencies; random embeddings spread it evenly.
    """
    e = _embedding(embedding)
    p = e.shape[0]
    power = (np.abs(np.fft.rfft(e, axis=0)) ** 2).sum(axis=1)
    power[1:(p + 1) // 2] *= 2  # k and p - k: the same real frequency (not k = p/2 for even p)
    total = power.sum()
    return power / total if total > 0 else power


def key_share(embedding, n_key: int) -> float:
    """The share of an embedding's non-constant Fourier power (:func:`fourier_power`
    without frequency 0) held by its strongest ``n_key`` frequencies, in [0, 1].
    ``embedding``: ``(p, d)``, rows the tokens ``0 .. p-1``. Random embeddings give about
    ``n_key / (p // 2)``; embeddings built from ``n_key`` frequencies give 1. NaN when
    the embedding is constant over the tokens (non-constant power below 1e-12 of the whole)."""
    power = fourier_power(embedding)[1:]
    if not 1 <= n_key <= len(power):
        raise ValueError(f"n_key must lie in [1, {len(power)}] (the frequencies of {len(power)} * 2 + 1 "
                         f"or so tokens), got {n_key}")
    total = power.sum()  # a share of the whole power: below 1e-12 the tokens' embeddings are one vector
    return float(np.sort(power)[::-1][:n_key].sum() / total) if total > 1e-12 else float("nan")


def key_share_over_time(run, n_key: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`key_share` of a run's token embeddings (the first ``n_classes`` rows of
    ``embed.weight``) at every snapshot: ``(steps, shares)``, each ``(n_snapshots,)``."""
    n = run.dataset().n_classes
    shares = [key_share(run.model_with(w).embed.weight.detach().numpy()[:n], n_key) for w in run.snapshots]
    return np.asarray(run.snapshot_steps), np.array(shares)


def fourier_plane(embedding, k: int) -> np.ndarray:
    """The embeddings in the plane of frequency ``k``: ``(p, 2)`` coordinates.

    ``embedding``: ``(p, d)`` with ``d >= 2``; ``k`` in ``1 .. (p - 1) // 2`` (below the
    Nyquist frequency, where the plane is defined). The plane is spanned by the real and
    minus the imaginary part of the ``k``-th Fourier coefficient (a ``d``-vector each,
    the embedding's ``cos`` and ``sin`` components); the centred rows are projected on
    its orthonormal (Gram-Schmidt) basis, the first axis along the ``cos`` component and
    the second on the side of the ``sin`` one. An embedding ``a cos(2 pi k x / p) +
    b sin(2 pi k x / p)`` with orthonormal ``a``, ``b`` gives the points
    ``(cos(2 pi k x / p), sin(2 pi k x / p))`` of the unit circle.
    """
    e = _embedding(embedding)
    p = e.shape[0]
    if e.shape[1] < 2:
        raise ValueError(f"embedding needs at least 2 columns for a plane, got {e.shape[1]}")
    if int(k) != k or not 1 <= k <= (p - 1) // 2:
        raise ValueError(f"k must be an integer frequency in 1..{(p - 1) // 2}, got {k!r}")
    c = np.fft.rfft(e, axis=0)[int(k)]
    basis, r = np.linalg.qr(np.stack([c.real, -c.imag], axis=1))
    basis = basis * np.where(np.diag(r) < 0, -1.0, 1.0)  # QR's signs are arbitrary
    return (e - e.mean(axis=0)) @ basis
