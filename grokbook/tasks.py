"""Algorithmic data sets: binary operations on a finite set, split by train fraction.

Two layouts, chosen by ``RunConfig.arch``:

- ``book``: every example is the token sequence ``a op b =`` (shape ``(4,)``) and its
  label is the answer ``c = a op b`` as a class index; the loss and accuracy are taken
  on the answer only. Element tokens are ``0 .. n-1``, then ``n`` is the operator and
  ``n + 1`` is ``=``.
- ``grok``: openai/grok's sequence ``<eos> a op b = c <eos>``, teacher-forced: the input
  is its first six tokens ``[eos, a, op, b, =, c]`` (shape ``(6,)``) and the targets
  are the tokens after ``=``, ``[c, eos]`` (shape ``(2,)``), over the whole vocabulary:
  elements ``0 .. n-1``, operator ``n``, ``=`` at ``n + 1``, ``<eos>`` at ``n + 2``.

Both layouts split the same examples the same way for a given ``data_seed``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from .config import RunConfig


@dataclass(frozen=True)
class Dataset:
    """A task's examples split in two.

    Arch ``book``: ``train_x``/``val_x`` are ``(N, 4)`` int64 tokens ``[a, op, b, =]``
    and ``train_y``/``val_y`` ``(N,)`` int64 answers in ``[0, n_classes)``;
    ``n_special = 2`` (operator, ``=``). Arch ``grok``: ``train_x``/``val_x`` are
    ``(N, 6)`` int64 tokens ``[eos, a, op, b, =, c]`` and ``train_y``/``val_y``
    ``(N, 2)`` int64 targets ``[c, eos]`` in ``[0, vocab_size)``; ``n_special = 3``
    (operator, ``=``, ``<eos>``). Task ``digits``: ``(N, 64)`` float32 features and
    ``(N,)`` labels. ``vocab_size = n_classes + n_special``.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    n_classes: int
    n_special: int = 2

    @property
    def vocab_size(self) -> int:
        """Number of token ids: the ``n_classes`` elements then the special tokens."""
        return self.n_classes + self.n_special


def _s5_table() -> np.ndarray:
    """Composition table of S5: ``table[i, j]`` is the index of ``perm_i o perm_j``."""
    perms = list(itertools.permutations(range(5)))
    index = {q: k for k, q in enumerate(perms)}
    table = np.empty((120, 120), dtype=np.int64)
    for i, a in enumerate(perms):
        for j, b in enumerate(perms):
            table[i, j] = index[tuple(a[b[k]] for k in range(5))]
    return table


def operation_table(task: str, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """All examples of a task: operands ``a``, ``b`` and answers ``c``, each ``(N,)``.

    Returns ``(a, b, c, n_classes)``. Division ``a / b mod p`` uses ``b`` in
    ``1..p-1`` only, ``p`` prime (checked by :class:`RunConfig`).
    """
    if task == "s5":
        table = _s5_table()
        a, b = np.meshgrid(np.arange(120), np.arange(120), indexing="ij")
        return a.ravel(), b.ravel(), table.ravel(), 120
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    a, b = a.ravel().astype(np.int64), b.ravel().astype(np.int64)
    if task == "div":
        keep = b != 0
        a, b = a[keep], b[keep]
        c = a * np.array([pow(int(x), p - 2, p) for x in b]) % p
    else:
        formulas = {
            "add": lambda: a + b,
            "sub": lambda: a - b,
            "mul": lambda: a * b,
            "x2+y2": lambda: a**2 + b**2,
            "x2+xy+y2": lambda: a**2 + a * b + b**2,
            "x3+xy": lambda: a**3 + a * b,
        }
        if task not in formulas:
            raise ValueError(f"unknown task {task!r}")
        c = formulas[task]() % p
    return a, b, c.astype(np.int64), p


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits (no download): features ``(1797, 64)`` float32 in
    [0, 1] (pixel intensity / 16) and labels ``(1797,)`` int64 in 0..9."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)


def make_dataset(config: RunConfig) -> Dataset:
    """The examples of ``config.task`` split by a seeded shuffle into a fraction ``r``
    for training and the rest for validation, in the layout of ``config.arch`` (see
    :class:`Dataset`). For ``digits`` the inputs are float features ``(N, 64)``
    instead of tokens. The shuffle depends on ``data_seed`` and the number of examples
    only, so both archs put the same ``(a, b)`` pairs in each split."""
    n_special = 2
    if config.task == "digits":
        x, y = digits()
        n = 10
    else:
        a, b, c, n = operation_table(config.task, config.p)
        op, eq = np.full_like(a, n), np.full_like(a, n + 1)
        if config.arch == "grok":
            n_special = 3
            eos = np.full_like(a, n + 2)
            x = np.stack([eos, a, op, b, eq, c], axis=1)
            y = np.stack([c, eos], axis=1)
        else:
            x, y = np.stack([a, op, b, eq], axis=1), c
    order = np.random.default_rng(config.data_seed).permutation(len(y))
    n_train = int(round(config.r * len(y)))
    if not 0 < n_train < len(y):
        raise ValueError(f"r = {config.r} leaves an empty split of {len(y)} examples")
    tr, va = order[:n_train], order[n_train:]
    t = torch.from_numpy
    return Dataset(t(x[tr]), t(y[tr]), t(x[va]), t(y[va]), n, n_special)
