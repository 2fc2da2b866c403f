"""Loss-landscape slices: directions in weight space, filter normalization, and the loss
and accuracy along 1D lines and 2D planes through a point.

Weights and directions are flat ``(P,)`` tensors over ``model.parameters()`` in order
(the layout of ``torch.nn.utils.parameters_to_vector`` and of a run's snapshots).
A model passed to the slice functions is only a template for
``torch.func.functional_call``: its own weights are never read or changed.
``loss_fn(logits, targets) -> scalar`` defaults to cross-entropy; accuracy is the
fraction of examples whose arg-max logit is the target.
"""

from __future__ import annotations

import copy
import warnings
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from .trainer import accuracy, cross_entropy

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Params = Union[nn.Module, torch.Tensor, np.ndarray]
Batches = dict[str, tuple[torch.Tensor, torch.Tensor]]
Slice = dict[str, dict[str, np.ndarray]]


def flat_params(params: Params) -> torch.Tensor:
    """The weights as a detached flat ``(P,)`` tensor: from a model (a copy of its
    parameters), a tensor (reshaped, not copied) or a numpy array (e.g. a snapshot)."""
    if isinstance(params, nn.Module):
        return torch.nn.utils.parameters_to_vector(params.parameters()).detach().clone()
    if isinstance(params, np.ndarray):
        return torch.from_numpy(params).reshape(-1)
    return params.detach().reshape(-1)


def direction_to(params_from: Params, params_to: Params) -> torch.Tensor:
    """``params_to - params_from``, ``(P,)``: e.g. from ``theta_t`` toward the final
    weights ``theta*`` or toward the initial ``theta_0``; ``alpha = 1`` lands on
    ``params_to`` (before any normalization)."""
    return flat_params(params_to) - flat_params(params_from)


def update_direction(theta_t: Params, theta_t1: Params) -> torch.Tensor:
    """The optimizer's update ``theta_{t+1} - theta_t``, ``(P,)``."""
    return direction_to(theta_t, theta_t1)


def random_direction(model_or_params: Params, seed: int) -> torch.Tensor:
    """A standard Gaussian direction, ``(P,)``, with the dtype and device of the weights,
    drawn from ``torch.Generator().manual_seed(seed)`` (the same on every device).
    Usually passed through :func:`filter_normalize`."""
    ref = flat_params(model_or_params)
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(ref.shape, generator=gen, dtype=torch.float64).to(ref.device, ref.dtype)


def _shapes(params: Union[nn.Module, Sequence[torch.Tensor]]) -> list[torch.Size]:
    tensors = params.parameters() if isinstance(params, nn.Module) else params
    return [t.shape for t in tensors]


def filter_normalize(direction: torch.Tensor, params: Union[nn.Module, Sequence[torch.Tensor]],
                     *, one_d: str = "zero") -> torch.Tensor:
    """Filter normalization (Li et al. 2018) of a flat ``(P,)`` direction.

    ``params``: the weights the slice goes through, as a model or as its parameter
    tensors in ``model.parameters()`` order (e.g. ``list(model.parameters())``).

    For every parameter tensor with ``ndim >= 2`` each row (the first index: an output
    unit of a linear layer, a token of an embedding, a position of the positional
    table) of the direction is rescaled to the norm of the same row of the weights, so
    a step ``alpha`` moves every unit by the same fraction ``alpha`` of its own size,
    whatever the scale of the layer. A direction row that is zero stays zero, and so
    does one whose weight row is zero (e.g. a freshly initialised LayerNorm shift).

    1-D tensors (biases, LayerNorm gains and shifts), by ``one_d``:
    ``"zero"`` (default): set to zero, as Li et al. do for their random directions, so
    the slice does not move them; ``"scale"``: the whole tensor is one row, rescaled to
    the norm of the weight tensor; ``"keep"``: left as they are.
    Returns a new ``(P,)`` tensor.
    """
    if one_d not in ("zero", "scale", "keep"):
        raise ValueError(f"one_d = {one_d!r} must be 'zero', 'scale' or 'keep'")
    weights = [w.detach() for w in
               (params.parameters() if isinstance(params, nn.Module) else params)]
    d = direction.detach().reshape(-1)
    if d.numel() != sum(w.numel() for w in weights):
        raise ValueError(f"direction has {d.numel()} entries, the weights "
                         f"{sum(w.numel() for w in weights)}")
    out = []
    for dp, w in zip(d.split([w.numel() for w in weights]), weights):
        w = w.to(dp)
        if w.ndim <= 1 and one_d == "zero":
            out.append(torch.zeros_like(dp))
            continue
        if w.ndim <= 1 and one_d == "keep":
            out.append(dp.clone())
            continue
        rows = 1 if w.ndim <= 1 else w.shape[0]
        dr, wr = dp.reshape(rows, -1), w.reshape(rows, -1)
        dn = dr.norm(dim=1, keepdim=True)
        scale = torch.where(dn > 0, wr.norm(dim=1, keepdim=True) / dn.clamp_min(1e-300),
                            torch.zeros_like(dn))
        out.append((dr * scale).reshape(-1))
    return torch.cat(out)


# On the CPU, above this many examples per batch, vmap over points costs more than the
# loop (a separate bias add after each batched product, intermediates ``chunk_size``
# times larger): 13-45% more CPU time per point at 264 and 1104 examples (chunks of 2
# to 8), about 10% less at 60 (benchmarks/RESULTS.md). So ``method="auto"`` loops there.
VMAP_CPU_MAX_EXAMPLES = 128


def _evaluate(model: nn.Module, params: Params, directions: torch.Tensor, coeffs: torch.Tensor,
              batches: Batches, loss_fn: Optional[LossFn], chunk_size: int, method: str
              ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Loss and accuracy at the ``M`` points ``params + coeffs @ directions``.

    ``directions``: ``(K, P)``; ``coeffs``: ``(M, K)``. Returns name -> (loss (M,),
    acc (M,)) as float64 arrays.
    """
    if method not in ("auto", "vmap", "loop"):
        raise ValueError(f"method = {method!r} must be 'auto', 'vmap' or 'loop'")
    if chunk_size < 1:
        raise ValueError(f"chunk_size = {chunk_size} must be >= 1")
    loss_fn = loss_fn or cross_entropy
    named = list(model.named_parameters())
    names = [n for n, _ in named]
    shapes = [p.shape for _, p in named]
    base = flat_params(params)
    directions = directions.to(base)
    coeffs = coeffs.to(base)
    if base.numel() != sum(s.numel() for s in shapes) or directions.shape[1] != base.numel():
        raise ValueError(f"weights ({base.numel()}) and directions ({directions.shape[1]}) "
                         f"must both have the model's {sum(s.numel() for s in shapes)} entries")

    def point(c: torch.Tensor, x: torch.Tensor, y: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        flat = base + c @ directions
        weights = {n: t.view(s) for n, t, s in
                   zip(names, flat.split([s.numel() for s in shapes]), shapes)}
        logits = functional_call(model, weights, (x,))
        return loss_fn(logits, y), accuracy(logits[None], y)[0].to(base.dtype)

    def by_loop(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pts = [point(c, x, y) for c in coeffs]
        return torch.stack([p[0] for p in pts]), torch.stack([p[1] for p in pts])

    out = {}
    with torch.no_grad():
        for name, (x, y) in batches.items():
            if method == "loop" or (method == "auto" and base.device.type == "cpu"
                                    and len(x) > VMAP_CPU_MAX_EXAMPLES):
                loss, acc = by_loop(x, y)
            else:
                try:
                    # vmap over points; chunk_size bounds memory to chunk_size forward passes.
                    loss, acc = torch.vmap(point, in_dims=(0, None, None),
                                           chunk_size=chunk_size)(coeffs, x, y)
                except (RuntimeError, NotImplementedError) as err:
                    if method == "vmap":
                        raise
                    warnings.warn(f"vmap failed ({err}); evaluating the slice one point at a "
                                  f"time", RuntimeWarning, stacklevel=3)
                    method = "loop"
                    loss, acc = by_loop(x, y)
            out[name] = (loss.double().cpu().numpy(), acc.double().cpu().numpy())
    return out


def slice_1d(model: nn.Module, params: Params, direction: torch.Tensor, alphas: torch.Tensor,
             batches: Batches, loss_fn: Optional[LossFn] = None, *, chunk_size: int = 8,
             method: str = "auto") -> Slice:
    """Loss and accuracy along the line ``theta + alpha * d``.

    ``params`` (theta) and ``direction`` (d): ``(P,)``; ``alphas``: ``(A,)``, in units of
    ``d`` (``alpha = 1`` is one whole step ``d``); ``batches``: name -> ``(x, y)``,
    e.g. ``{"train": (train_x, train_y), "val": (val_x, val_y)}``, each batch evaluated
    whole. Returns name -> ``{"loss": (A,), "acc": (A,)}`` float64 arrays.

    ``method="vmap"`` evaluates ``chunk_size`` points per batched forward pass
    (``torch.vmap`` over ``torch.func.functional_call``; memory grows with
    ``chunk_size`` times the batch); ``"loop"`` one point at a time (the same
    ``functional_call``, unbatched); ``"auto"`` (default) loops over a batch of more
    than ``VMAP_CPU_MAX_EXAMPLES`` examples on the CPU, where vmap does not pay, and
    otherwise tries vmap and falls back to the loop with a warning if the model does not
    support it.
    """
    alphas = torch.as_tensor(alphas).reshape(-1, 1)
    res = _evaluate(model, params, flat_params(direction)[None], alphas, batches, loss_fn,
                    chunk_size, method)
    return {n: {"loss": loss, "acc": acc} for n, (loss, acc) in res.items()}


def slice_2d(model: nn.Module, params: Params, d1: torch.Tensor, d2: torch.Tensor,
             alphas: torch.Tensor, betas: torch.Tensor, batches: Batches,
             loss_fn: Optional[LossFn] = None, *, chunk_size: int = 8, method: str = "auto"
             ) -> Slice:
    """Loss and accuracy on the plane ``theta + alpha * d1 + beta * d2``.

    ``params``, ``d1``, ``d2``: ``(P,)``; ``alphas``: ``(A,)``; ``betas``: ``(B,)``; other
    arguments as :func:`slice_1d`. Returns name -> ``{"loss": (A, B), "acc": (A, B)}``,
    entry ``[i, j]`` at ``(alphas[i], betas[j])``.
    """
    a = torch.as_tensor(alphas).reshape(-1)
    b = torch.as_tensor(betas).reshape(-1)
    grid = torch.stack(torch.meshgrid(a.double(), b.double(), indexing="ij"), -1).reshape(-1, 2)
    dirs = torch.stack([flat_params(d1), flat_params(d2)])
    res = _evaluate(model, params, dirs, grid, batches, loss_fn, chunk_size, method)
    shape = (len(a), len(b))
    return {n: {"loss": loss.reshape(shape), "acc": acc.reshape(shape)}
            for n, (loss, acc) in res.items()}


def slice_1d_loop(model: nn.Module, params: Params, direction: torch.Tensor,
                  alphas: torch.Tensor, batches: Batches, loss_fn: Optional[LossFn] = None
                  ) -> Slice:
    """Reference :func:`slice_1d`: loads each point into a copy of the model with
    ``vector_to_parameters`` and calls it, one point at a time. Slow; for tests."""
    loss_fn = loss_fn or cross_entropy
    net = copy.deepcopy(model)
    base, d = flat_params(params), flat_params(direction)
    out: Slice = {n: {"loss": np.empty(len(alphas)), "acc": np.empty(len(alphas))}
                  for n in batches}
    with torch.no_grad():
        for i, alpha in enumerate(torch.as_tensor(alphas).reshape(-1).tolist()):
            torch.nn.utils.vector_to_parameters(base + alpha * d, net.parameters())
            for name, (x, y) in batches.items():
                logits = net(x)
                out[name]["loss"][i] = float(loss_fn(logits, y))
                out[name]["acc"][i] = float(accuracy(logits[None], y)[0])
    return out


def _centre(alphas: np.ndarray) -> int:
    """Index of ``alpha = 0`` in a slice's grid (float32 linspace puts "0" at ~1e-8)."""
    centre = int(np.argmin(np.abs(alphas)))
    if abs(alphas[centre]) > 1e-6 * np.abs(alphas).max():
        raise ValueError("alphas must contain 0 (the point the slice goes through)")
    return centre


def basin(alphas: Sequence[float], loss: Sequence[float]) -> tuple[bool, float]:
    """Does a 1-D slice have its minimum at ``alpha = 0``, and how steep are its sides?

    ``alphas``: ``(A,)`` increasing, containing 0; ``loss``: ``(A,)``. Returns
    ``(min_at_centre, rise)``: whether the smallest loss is within one grid point of
    ``alpha = 0``, and ``min(loss[0], loss[-1]) / loss(0)``, the factor by which the
    lower of the two ends exceeds the centre (> 1 for a basin).
    """
    a, f = np.asarray(alphas, dtype=np.float64), np.asarray(loss, dtype=np.float64)
    if a.shape != f.shape or a.ndim != 1:
        raise ValueError(f"alphas and loss must be 1-D arrays of one length, got {a.shape} and {f.shape}")
    centre = _centre(a)
    return abs(int(np.argmin(f)) - centre) <= 1, float(min(f[0], f[-1]) / f[centre])


def level_stretch(alphas: Sequence[float], values: Sequence[float], level: float) -> float:
    """Width in ``alpha`` of the stretch around ``alpha = 0`` where ``values >= level``.

    ``alphas``: ``(A,)`` increasing, containing 0; ``values``: ``(A,)`` (e.g. training
    accuracy along a slice). The stretch is the run of consecutive grid points through
    ``alpha = 0`` at or above ``level``, measured from its first to its last point (a
    single point has width 0, and so has a centre below ``level``); the true width is
    between this and this plus two grid steps.
    """
    a, v = np.asarray(alphas, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if a.shape != v.shape or a.ndim != 1:
        raise ValueError(f"alphas and values must be 1-D arrays of one length, got {a.shape} and {v.shape}")
    centre = _centre(a)
    if not v[centre] >= level:
        return 0.0
    lo = hi = centre
    while lo > 0 and v[lo - 1] >= level:
        lo -= 1
    while hi < len(v) - 1 and v[hi + 1] >= level:
        hi += 1
    return float(a[hi] - a[lo])


def segment_escape(seg: Slice, reach: float, low_loss: float) -> dict[str, float | bool]:
    """Does the straight segment from ``theta_t`` (``alpha = 0``) to ``theta*``
    (``alpha = 1``) leave the memorizing valley for a generalizing solution?

    ``seg``: a :func:`slice_1d` result along the *unnormalized* direction
    ``theta* - theta_t`` on ``alphas`` from 0 to 1, with ``"train"`` and ``"val"``
    batches. Returns the training loss's maximum on the segment (nats), the training
    accuracy's minimum, the validation loss's ratio start / end and the validation
    accuracy's gain end - start, and the verdicts ``stays_fit`` (training accuracy
    ``>= reach`` and training loss ``<= low_loss`` all along) and ``generalizes``
    (validation loss at least 2x lower and accuracy at least 20 points higher at the end).
    """
    tr, va = seg["train"], seg["val"]
    out: dict[str, float | bool] = {
        "train_loss_max": float(np.max(tr["loss"])), "train_acc_min": float(np.min(tr["acc"])),
        "val_loss_ratio": float(va["loss"][0] / va["loss"][-1]),
        "val_acc_gain": float(va["acc"][-1] - va["acc"][0])}
    out["stays_fit"] = bool(out["train_acc_min"] >= reach and out["train_loss_max"] <= low_loss)
    out["generalizes"] = bool(out["val_loss_ratio"] >= 2 and out["val_acc_gain"] >= 0.2)
    return out
