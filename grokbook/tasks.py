"""Algorithmic data sets: binary operations on a finite set, split by train fraction.

Every example is the token sequence ``a op b =`` (shape ``(4,)``) and its label is the
answer ``a op b`` as a class index; the loss and accuracy are taken on the answer only.
Element tokens are ``0 .. n-1``, then ``n`` is the operator and ``n + 1`` is ``=``.
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

    ``train_x``/``val_x``: ``(N, 4)`` int64 tokens; ``train_y``/``val_y``: ``(N,)``
    int64 answers in ``[0, n_classes)``. ``vocab_size = n_classes + 2``.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    n_classes: int

    @property
    def vocab_size(self) -> int:
        return self.n_classes + 2


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
    for training and the rest for validation. For ``digits`` the inputs are float
    features ``(N, 64)`` instead of tokens."""
    if config.task == "digits":
        x, c = digits()
        n = 10
    else:
        a, b, c, n = operation_table(config.task, config.p)
        x = np.stack([a, np.full_like(a, n), b, np.full_like(a, n + 1)], axis=1)
    order = np.random.default_rng(config.data_seed).permutation(len(c))
    n_train = int(round(config.r * len(c)))
    if not 0 < n_train < len(c):
        raise ValueError(f"r = {config.r} leaves an empty split of {len(c)} examples")
    tr, va = order[:n_train], order[n_train:]
    t = torch.from_numpy
    return Dataset(t(x[tr]), t(c[tr]), t(x[va]), t(c[va]), n)
