"""The models: the book's decoder transformer, the authors' (openai/grok) transformer,
and an MLP on token embeddings.

Arch ``book`` (:class:`Transformer`, :class:`MLP`): a batch of token sequences ``x`` of
shape ``(N, 4)`` (``a op b =``) to answer logits of shape ``(N, n_classes)``, read at
the last position (``=``). Arch ``grok`` (:class:`GrokTransformer`): ``x`` of shape
``(N, 6)`` (``<eos> a op b = c``) to logits ``(N, 2, vocab_size)`` at the last two
positions, which predict ``c`` and ``<eos>`` (see :mod:`grokbook.tasks`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import RunConfig


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight^T + bias`` as a matmul then an add, not ``F.linear``: under
    ``torch.vmap`` (the training core) ``F.linear`` with batched weights is about 15%
    slower than this (``benchmarks/trainer_speed.py``)."""
    y = x @ weight.T
    return y if bias is None else y + bias


class _Rows(torch.autograd.Function):
    """``table.index_select(0, idx)`` with a rule for ``torch.vmap``: over a batch of
    tables (and one ``idx``) it is ``index_select`` along the table's row dimension,
    where vmap's own rule turns it into a ``gather`` with an index expanded to every
    column (about 20 times slower on the CPU, and its backward, ``scatter_add``, 5
    times). The backward is ``index_add`` in both cases, which sums the rows in the
    order of ``idx`` whatever the threads."""

    @staticmethod
    def forward(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return table.index_select(0, idx)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
        table, idx = inputs
        ctx.save_for_backward(idx)
        ctx.n_rows = table.shape[0]

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[no-untyped-def]
        (idx,) = ctx.saved_tensors
        return grad.new_zeros((ctx.n_rows,) + grad.shape[1:]).index_add(0, idx, grad), None

    @staticmethod
    def vmap(info, in_dims, table, idx):  # type: ignore[no-untyped-def]
        table_dim, idx_dim = in_dims
        if idx_dim is None:
            return table.movedim(table_dim, 0).index_select(1, idx), 0
        idx = idx.movedim(idx_dim, 0)  # (B, K): a batch of indices (a minibatch per row)
        if table_dim is None:
            return table.index_select(0, idx.flatten()).view(*idx.shape, *table.shape[1:]), 0
        table = table.movedim(table_dim, 0)  # (B, R, ...): index the B*R rows at once
        rows = idx + table.shape[1] * torch.arange(info.batch_size, device=idx.device)[:, None]
        return table.flatten(0, 1).index_select(0, rows.flatten()).view(*idx.shape, *table.shape[2:]), 0


def gather(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows of ``table`` ``(R, d)`` at ``idx`` (any shape), ``idx.shape + (d,)``.

    ``index_select`` (through :class:`_Rows`), whose backward sums the rows in a fixed
    order whatever the threads and whose output keeps ``torch.vmap``'s batch dimension
    outermost. ``table[idx]`` sums them in an order that depends on the thread count;
    ``F.embedding`` moves the batch dimension inside, after which the reductions of later
    backward passes (a bias gradient) round differently in an ensemble than alone."""
    return _Rows.apply(table, idx.flatten()).view(*idx.shape, table.shape[-1])


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and initialisation) computed by :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention written with plain matmuls and softmax.

    Deliberately not ``F.scaled_dot_product_attention``: its fused CPU kernels have no
    double backward, and the Hessian chapters need Hessian-vector products through here.
    """

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = Linear(d_model, 3 * d_model)
        self.out = Linear(d_model, d_model)

    def forward(self, h: torch.Tensor, last_only: bool = False,
                idx: torch.Tensor | None = None) -> torch.Tensor:
        """``h``: ``(N, T, d)`` -> ``(N, T, d)``, or ``(N, 1, d)`` for the last query only.

        With ``idx`` ``(N, T)``, ``h`` is a table ``(R, d)`` and the sequences are
        ``h[idx]``: the projections are computed on the R rows of the table and then
        gathered, which is cheaper when R is smaller than ``N * T``."""
        w, b = self.qkv.weight, self.qkv.bias
        d = w.shape[1]
        heads, d_head = self.n_heads, d // self.n_heads
        if idx is None:
            n, t = h.shape[:2]
            project = lambda rows, sl: linear(rows, w[sl], b[sl])
            last, every = h[:, -1], h
        else:
            n, t = idx.shape
            project = lambda rows, sl: gather(linear(h, w[sl], b[sl]), rows)
            last, every = idx[:, -1], idx
        if last_only:
            # Only the last query is read and it attends to every position, so no mask;
            # project it alone, and form its T scores and the weighted sum of values
            # elementwise: per example these are (1 x d_head) @ (d_head x T) products,
            # which as batched matmuls cost a transposed copy and a tiny GEMM each.
            q = project(last, slice(0, d))[:, None]                  # (n, 1, d)
            k, v = project(every, slice(d, 2 * d)), project(every, slice(2 * d, None))  # (n, t, d)
            att = ((q * k).view(n, t, heads, d_head).sum(-1) / math.sqrt(d_head)).softmax(1)  # (n, t, heads)
            return self.out((att[..., None] * v.view(n, t, heads, d_head)).sum(1).view(n, 1, d))
        q, k, v = project(every, slice(None)).view(n, t, 3, heads, d_head).unbind(2)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))  # (n, heads, t, d_head)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d_head)
        mask = torch.ones(t, t, dtype=torch.bool, device=scores.device).triu(1)
        att = scores.masked_fill(mask, float("-inf")).softmax(-1)
        return self.out((att @ v).transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    """Pre-LayerNorm decoder block: attention then a ReLU feed-forward, both residual."""

    def __init__(self, d_model: int, n_heads: int, hidden: int, layer_norm: bool = True) -> None:
        super().__init__()
        norm = (lambda: nn.LayerNorm(d_model)) if layer_norm else nn.Identity
        self.ln1 = norm()
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.ln2 = norm()
        self.mlp = nn.Sequential(Linear(d_model, hidden), nn.ReLU(), Linear(hidden, d_model))

    def forward(self, h: torch.Tensor, last_only: bool = False,
                idx: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, T, d)`` -> ``(N, T, d)``; with ``last_only`` only the last position is
        computed, ``(N, 1, d)``, which is all the read-out needs from the final block.
        With ``idx`` ``(N, T)``, ``h`` is a table ``(R, d)`` and the input is ``h[idx]``
        (see :meth:`CausalSelfAttention.forward`)."""
        a = self.attn(self.ln1(h), last_only, idx)
        if idx is not None:
            h = gather(h, idx[:, -1:] if last_only else idx)
        else:
            h = h[:, -1:] if last_only else h
        h = h + a
        return h + self.mlp(self.ln2(h))


class Transformer(nn.Module):
    """Decoder-only transformer (token and learned position embeddings, ``n_layers``
    pre-LN blocks, final LayerNorm, linear read-out of the answer at the last token);
    ``layer_norm=False`` drops every LayerNorm (as in Nanda et al.'s model)."""

    def __init__(self, vocab_size: int, n_classes: int, n_layers: int = 2, d_model: int = 128,
                 n_heads: int = 4, hidden: int = 512, seq_len: int = 4, layer_norm: bool = True) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Parameter(torch.randn(seq_len, d_model) * 0.02)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, hidden, layer_norm) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model) if layer_norm else nn.Identity()
        self.unembed = Linear(d_model, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The first block's work before attention depends only on each token and its
        # position, so it is done once per (token, position) pair, V*T rows, and gathered:
        # for the book's tasks far fewer rows than the N*T tokens of a batch.
        t = x.shape[1]
        table = (self.embed.weight[:, None] + self.pos[:t]).flatten(0, 1)  # (V*T, d)
        idx = x * t + torch.arange(t, device=x.device)                    # rows of table
        last = len(self.blocks) - 1
        h = self.blocks[0](table, last_only=last == 0, idx=idx)
        for block in self.blocks[1:]:
            h = block(h, last_only=block is self.blocks[last])
        return self.unembed(self.ln_f(h[:, -1]))


class MLP(nn.Module):
    """Embeds ``a`` and ``b``, concatenates them and applies ``n_layers`` ReLU layers of
    width ``hidden`` and a linear read-out. With ``in_features`` it takes float
    features ``(N, in_features)`` instead of tokens (no embedding)."""

    def __init__(self, vocab_size: int, n_classes: int, n_layers: int = 2, d_model: int = 128,
                 hidden: int = 512, in_features: int = 0) -> None:
        super().__init__()
        self.embed = None if in_features else nn.Embedding(vocab_size, d_model)
        layers: list[nn.Module] = []
        width = in_features or 2 * d_model
        for _ in range(n_layers):
            layers += [Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.unembed = Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = x if self.embed is None else self.embed(x[:, [0, 2]]).flatten(1)
        return self.unembed(self.body(e))


def sinusoidal_positions(seq_len: int, d_model: int) -> torch.Tensor:
    """Fixed sinusoidal position encodings ``(seq_len, d_model)`` as openai/grok builds
    them: for position ``t`` and ``k = 0, 1, ...``, column ``2k`` is
    ``sin(t / 10000^(2k / d_model))`` and column ``2k + 1`` is
    ``cos(t / 10000^(2k / d_model))``. Computed in float64, returned in the default dtype."""
    t = torch.arange(seq_len, dtype=torch.float64)[:, None]
    i = torch.arange(d_model)
    angle = t * 10000.0 ** (-(i - i % 2).to(torch.float64) / d_model)
    return torch.where(i % 2 == 0, angle.sin(), angle.cos()).to(torch.get_default_dtype())


class GrokAttention(nn.Module):
    """openai/grok's multi-head causal self-attention: bias-free query, key, value and
    output projections (the heads' ``Wq``, ``Wk``, ``Wv`` stacked into ``qkv``), plain
    matmuls and softmax (double backward works, unlike ``scaled_dot_product_attention``)."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = Linear(d_model, 3 * d_model, bias=False)
        self.out = Linear(d_model, d_model, bias=False)

    def forward(self, h: torch.Tensor, n_query: int | None = None) -> torch.Tensor:
        """``h``: ``(N, T, d)`` -> ``(N, T, d)``; with ``n_query`` only the last
        ``n_query`` positions are queried, ``(N, n_query, d)``, each attending causally
        to every position up to its own."""
        n, t, d = h.shape
        s = t if n_query is None else n_query
        heads, d_head = self.n_heads, d // self.n_heads
        w = self.qkv.weight
        q = linear(h[:, t - s:], w[:d]).view(n, s, heads, d_head).transpose(1, 2)
        k, v = (z.transpose(1, 2) for z in linear(h, w[d:]).view(n, t, 2, heads, d_head).unbind(2))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d_head)  # (n, heads, s, t)
        # query i sits at position t - s + i and must not see keys j > t - s + i
        mask = torch.ones(s, t, dtype=torch.bool, device=h.device).triu(t - s + 1)
        att = scores.masked_fill(mask, float("-inf")).softmax(-1)
        return self.out((att @ v).transpose(1, 2).reshape(n, s, d))


class GrokBlock(nn.Module):
    """openai/grok's post-LayerNorm decoder block: ``h = LN(x + attn(x))``,
    ``out = LN(h + ffn(h))`` with a bias-free ReLU feed-forward; ``layer_norm=False``
    drops both LayerNorms."""

    def __init__(self, d_model: int, n_heads: int, hidden: int, layer_norm: bool = True) -> None:
        super().__init__()
        norm = (lambda: nn.LayerNorm(d_model)) if layer_norm else nn.Identity
        self.attn = GrokAttention(d_model, n_heads)
        self.ln1 = norm()
        self.mlp = nn.Sequential(Linear(d_model, hidden, bias=False), nn.ReLU(),
                                 Linear(hidden, d_model, bias=False))
        self.ln2 = norm()

    def forward(self, x: torch.Tensor, n_query: int | None = None) -> torch.Tensor:
        """``(N, T, d)`` -> ``(N, T, d)``, or ``(N, n_query, d)`` for the last
        ``n_query`` positions only (all the read-out needs from the final block)."""
        a = self.attn(x, n_query)
        h = self.ln1((x if n_query is None else x[:, -n_query:]) + a)
        return self.ln2(h + self.mlp(h))


class GrokTransformer(nn.Module):
    """The authors' model, openai/grok's decoder-only transformer: token embedding over
    the whole vocabulary plus fixed sinusoidal positions (a buffer, not a parameter),
    ``n_layers`` post-LN :class:`GrokBlock`, no final LayerNorm, no bias in any linear
    layer, and an untied bias-free head ``unembed`` over the whole vocabulary.

    ``x``: ``(N, T)`` tokens (``T = 6``: ``<eos> a op b = c``) -> logits
    ``(N, n_out, vocab_size)`` at the last ``n_out`` positions (those predicting
    ``c`` and ``<eos>``)."""

    def __init__(self, vocab_size: int, n_layers: int = 2, d_model: int = 128, n_heads: int = 4,
                 hidden: int = 512, seq_len: int = 6, n_out: int = 2, layer_norm: bool = True) -> None:
        super().__init__()
        self.n_out = n_out
        self.embed = nn.Embedding(vocab_size, d_model)
        self.register_buffer("pos", sinusoidal_positions(seq_len, d_model), persistent=False)
        self.blocks = nn.ModuleList(GrokBlock(d_model, n_heads, hidden, layer_norm) for _ in range(n_layers))
        self.unembed = Linear(d_model, vocab_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.pos[: x.shape[1]]
        for i, block in enumerate(self.blocks):
            h = block(h, self.n_out if i == len(self.blocks) - 1 else None)
        return self.unembed(h)


def build_model(config: RunConfig, vocab_size: int, n_classes: int) -> nn.Module:
    """The model a config asks for, initialised from ``config.seed`` and with every
    parameter multiplied by ``config.init_scale``. Arch ``grok`` builds a
    :class:`GrokTransformer` over ``vocab_size`` tokens (``n_classes`` unused)."""
    torch.manual_seed(config.seed)
    if config.arch == "grok":
        model: nn.Module = GrokTransformer(vocab_size, config.n_layers, config.d_model, config.n_heads,
                                           config.hidden, layer_norm=config.layer_norm)
    elif config.model == "transformer":
        model = Transformer(vocab_size, n_classes, config.n_layers, config.d_model,
                            config.n_heads, config.hidden, layer_norm=config.layer_norm)
    else:
        model = MLP(vocab_size, n_classes, config.n_layers, config.d_model, config.hidden,
                    in_features=64 if config.task == "digits" else 0)
    if config.init_scale != 1.0:
        with torch.no_grad():
            for prm in model.parameters():
                prm.mul_(config.init_scale)
    return model


def last_layer(model: nn.Module) -> torch.Tensor:
    """The read-out weight, whose norm the slingshot analysis follows."""
    return model.unembed.weight
