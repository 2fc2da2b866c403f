"""Arch ``grok``: the authors' (openai/grok) transformer, its loss and accuracy over the
right-hand-side tokens, and its training, each against a plain recomputation."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grokbook import RunConfig
from grokbook.trainer import accuracy, loss_fn
from grokbook.hessian import hvp
from grokbook.models import GrokTransformer, build_model, last_layer
from grokbook.tasks import make_dataset
from grokbook.training import fit

SMALL = RunConfig(arch="grok", task="add", p=7, r=0.5, n_layers=2, d_model=16, n_heads=2, d_mlp=32)


def built(config: RunConfig) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    data = make_dataset(config)
    return build_model(config, data.vocab_size, data.n_classes), data.train_x, data.train_y


def reference_positions(seq_len: int, d: int) -> torch.Tensor:
    """openai/grok's encoding, written out element by element in float64."""
    return torch.tensor([[math.sin(t / 10000 ** (i / d)) if i % 2 == 0 else math.cos(t / 10000 ** ((i - 1) / d))
                          for i in range(d)] for t in range(seq_len)], dtype=torch.float64)


def reference_layer_norm(z: torch.Tensor, ln: nn.LayerNorm) -> torch.Tensor:
    mean = z.mean(-1, keepdim=True)
    var = ((z - mean) ** 2).mean(-1, keepdim=True)
    return (z - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def reference_forward(model: GrokTransformer, x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The grok forward pass recomputed from the weights: explicit causal masks,
    per-head loops, softmax and LayerNorm by hand; logits at positions 4 and 5."""
    n, t = x.shape
    d = model.embed.weight.shape[1]
    dh = d // n_heads
    h = model.embed.weight[x] + reference_positions(t, d)
    allowed = torch.tensor([[j <= i for j in range(t)] for i in range(t)])  # query i sees key j <= i
    for blk in model.blocks:
        wq, wk, wv = blk.attn.qkv.weight.split(d)
        heads = []
        for k in range(n_heads):
            cols = slice(k * dh, (k + 1) * dh)
            q, key, v = h @ wq[cols].T, h @ wk[cols].T, h @ wv[cols].T
            scores = (q @ key.transpose(1, 2)) / math.sqrt(dh)
            e = torch.where(allowed, torch.exp(scores - scores.max(-1, keepdim=True).values), 0.0)
            heads.append((e / e.sum(-1, keepdim=True)) @ v)
        a = torch.cat(heads, -1) @ blk.attn.out.weight.T
        h = reference_layer_norm(h + a, blk.ln1)
        w1, w2 = blk.mlp[0].weight, blk.mlp[2].weight
        h = reference_layer_norm(h + torch.clamp(h @ w1.T, min=0) @ w2.T, blk.ln2)
    return h[:, [4, 5]] @ model.unembed.weight.T


def test_forward_matches_plain_recomputation(float64):
    model, x, _ = built(SMALL)
    assert isinstance(model, GrokTransformer)
    with torch.no_grad():  # non-trivial LayerNorm weights, so that the oracle must use them
        g = torch.Generator().manual_seed(0)
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g))
        out = model(x)
        ref = reference_forward(model, x, SMALL.n_heads)
    vocab = SMALL.p + 3
    assert out.shape == (len(x), 2, vocab) and out.dtype == torch.float64
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


def test_no_bias_and_fixed_positions():
    config = SMALL.replace(init_scale=2.0)
    model, _, _ = built(config)
    d, hidden, vocab, layers = config.d_model, config.hidden, config.p + 3, config.n_layers
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 4 * layers + 1 and all(m.bias is None for m in linears)
    # the only biases are the LayerNorms' own (openai/grok's LayerNorm is affine)
    ln_params = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
    for name, prm in model.named_parameters():
        assert not name.endswith("bias") or id(prm) in ln_params, name
    # positions: a buffer, not a parameter, and not scaled by init_scale
    assert "pos" not in dict(model.named_parameters()) and "pos" in dict(model.named_buffers())
    torch.testing.assert_close(model.pos.double(), reference_positions(6, d), rtol=0, atol=1e-7)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 2 * vocab * d + layers * (4 * d * d + 2 * d * hidden + 4 * d)
    # an untied head over the whole vocabulary, which last_layer finds
    assert last_layer(model) is model.unembed.weight and model.unembed.weight.shape == (vocab, d)
    assert model.unembed.weight.data_ptr() != model.embed.weight.data_ptr()


def test_build_is_seeded():
    a, _, _ = built(SMALL)
    b, _, _ = built(SMALL)
    c, _, _ = built(SMALL.replace(seed=1))
    va, vb, vc = (torch.nn.utils.parameters_to_vector(m.parameters()) for m in (a, b, c))
    assert torch.equal(va, vb) and not torch.equal(va, vc)


def test_loss_and_accuracy_over_rhs_tokens():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 2, 4, generator=g, dtype=torch.float64)  # (M, N, T, C)
    y = torch.randint(0, 4, (5, 2), generator=g)
    # the loss averages the cross-entropy over all N * T target tokens
    for m in range(3):
        nll = [-(logits[m, i, j, y[i, j]] - torch.logsumexp(logits[m, i, j], 0)) for i in range(5) for j in range(2)]
        assert float(loss_fn(SMALL, logits[m], y)) == pytest.approx(float(sum(nll)) / 10, rel=1e-12)
    # an example counts only when every target token is the argmax
    pred = logits.argmax(-1)
    expect = [sum(all(pred[m, i, j] == y[i, j] for j in range(2)) for i in range(5)) / 5 for m in range(3)]
    acc = accuracy(logits, y)
    assert acc.shape == (3,) and acc.tolist() == pytest.approx(expect, abs=0)
    torch.testing.assert_close(accuracy(logits, y.expand(3, 5, 2)), acc, rtol=0, atol=0)
    # known case: one token right of two is not right
    lg = F.one_hot(torch.tensor([[[1, 2], [1, 3]]]), 4).double()  # (M=1, N=2, T=2, C=4)
    assert accuracy(lg, torch.tensor([[1, 2], [1, 2]])).tolist() == [0.5]


def test_book_accuracy_and_loss_unchanged():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 50, 7, generator=g)
    logits[:, ::3] = 0.0  # ties: argmax picks the first
    y, y_rows = torch.randint(0, 7, (50,), generator=g), torch.randint(0, 7, (4, 50), generator=g)
    for target in (y, y_rows):
        assert torch.equal(accuracy(logits, target), (logits.argmax(-1) == target).to(logits.dtype).mean(1))
    book = RunConfig()
    assert torch.equal(loss_fn(book, logits[0], y), F.cross_entropy(logits[0], y))
    mse = F.mse_loss(logits[0], F.one_hot(y, 7).float(), reduction="sum") / len(y)
    assert torch.equal(loss_fn(book.replace(loss="mse"), logits[0], y), mse)


@functools.lru_cache(maxsize=None)
def short_run():
    config = RunConfig(arch="grok", p=11, r=0.5, n_layers=1, d_model=16, n_heads=2, steps=40, n_snapshots=6,
                       lr=3e-3, warmup_steps=5)
    return fit(config, progress=False, device="cpu")


def test_short_training_run():
    run = short_run()
    data = run.dataset()
    assert run.diverged_at is None and len(run.metrics["train_loss"]) == 40
    for name, values in run.metrics.items():
        assert np.isfinite(values[1:]).all(), name  # cos_update is NaN at t = 0 by definition
    assert ((0 <= run.metrics["train_acc"]) & (run.metrics["train_acc"] <= 1)).all()
    assert ((0 <= run.val_acc) & (run.val_acc <= 1)).all() and np.isfinite(run.val_loss).all()
    assert run.metrics["train_loss"][-1] < run.metrics["train_loss"][0]
    # loss and accuracy of the first and final weights, recomputed from the snapshots
    def by_hand(step: int, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        with torch.no_grad():
            logits = run.model_at(step)(x).double()
        logp = logits - torch.logsumexp(logits, -1, keepdim=True)
        nll = -logp.gather(-1, y[..., None]).mean()  # over all N * 2 target tokens
        both = (logits.argmax(-1) == y).all(1).double().mean()  # c and <eos> both right
        return float(nll), float(both)

    loss, acc = by_hand(0, data.train_x, data.train_y)
    assert run.metrics["train_loss"][0] == pytest.approx(loss, rel=1e-5)
    assert run.metrics["train_acc"][0] == pytest.approx(acc, abs=1e-6)
    for step in (0, 40):
        k = int(np.flatnonzero(run.val_steps == step)[0])
        loss, acc = by_hand(step, data.val_x, data.val_y)
        assert run.val_loss[k] == pytest.approx(loss, rel=1e-5) and run.val_acc[k] == pytest.approx(acc, abs=1e-6)
    # after 40 steps <eos> is always predicted but c rarely: all-token accuracy, not per token
    model = run.model_at(40)
    with torch.no_grad():
        per_token = (model(data.val_x).argmax(-1) == data.val_y).double().mean(0)
    assert per_token[1] == 1.0 and run.val_acc[-1] == pytest.approx(float(per_token[0]), abs=1e-6)


def test_hvp_matches_finite_difference_of_gradients():
    # two layers: block 0 takes the full-sequence path, block 1 queries the last two positions
    config = SMALL.replace(p=7, d_model=16, n_heads=2, n_layers=2, d_mlp=32)
    model, x, y = built(config)
    model = model.double()
    loss = functools.partial(loss_fn, config)
    flat = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    v = torch.randn(flat.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def grad_at(theta: torch.Tensor) -> torch.Tensor:
        torch.nn.utils.vector_to_parameters(theta, model.parameters())
        model.zero_grad()
        loss(model(x), y).backward()
        return torch.cat([p.grad.reshape(-1) for p in model.parameters()])

    eps = 1e-5
    fd = (grad_at(flat + eps * v) - grad_at(flat - eps * v)) / (2 * eps)
    torch.nn.utils.vector_to_parameters(flat, model.parameters())
    hv = hvp(model, x, y, v, loss_fn=loss)
    assert float((hv - fd).norm() / fd.norm()) < 1e-6


def test_landscape_slices_and_hvps_take_the_grok_targets():
    """The analysis defaults (cross-entropy, accuracy) accept the (N, 2) targets of arch
    grok: a slice at alpha 0 gives the run's own loss and all-token accuracy."""
    from grokbook.landscape import slice_1d, slice_1d_loop

    config = RunConfig(arch="grok", p=7, r=0.5, n_layers=1, d_model=16, n_heads=2, steps=5, n_snapshots=2)
    data = make_dataset(config)
    model = build_model(config, data.vocab_size, data.n_classes)
    x, y = data.train_x, data.train_y
    with torch.no_grad():
        logits = model(x)
    direction = torch.randn(sum(p.numel() for p in model.parameters()))
    params = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    alphas = torch.tensor([0.0, 0.5])
    for slicer in (slice_1d, slice_1d_loop):
        out = slicer(model, params, direction, alphas, {"train": (x, y)})
        assert out["train"]["loss"][0] == pytest.approx(float(loss_fn(config, logits, y)), rel=1e-5)
        assert out["train"]["acc"][0] == pytest.approx(float(accuracy(logits[None], y)[0]))
    assert torch.isfinite(hvp(model, x, y, direction)).all()
