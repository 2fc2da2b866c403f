import itertools

import numpy as np
import pytest
import torch

from grokbook import RunConfig
from grokbook.tasks import make_dataset, operation_table


@pytest.mark.parametrize("task, f", [
    ("add", lambda a, b, p: (a + b) % p), ("sub", lambda a, b, p: (a - b) % p),
    ("mul", lambda a, b, p: (a * b) % p), ("x2+y2", lambda a, b, p: (a * a + b * b) % p),
    ("x2+xy+y2", lambda a, b, p: (a * a + a * b + b * b) % p),
    ("x3+xy", lambda a, b, p: (a ** 3 + a * b) % p),
])
def test_tables_match_python_arithmetic(task, f):
    p = 13
    a, b, c, n = operation_table(task, p)
    assert n == p and len(c) == p * p
    assert all(int(ci) == f(int(ai), int(bi), p) for ai, bi, ci in zip(a, b, c))


def test_division_inverts_multiplication():
    p = 13
    a, b, c, _ = operation_table("div", p)
    assert len(c) == p * (p - 1) and (b != 0).all()
    assert ((c * b) % p == a).all()


def test_s5_is_composition_of_permutations():
    a, b, c, n = operation_table("s5", 0)
    perms = list(itertools.permutations(range(5)))
    assert n == 120 and len(c) == 120 * 120
    for k in np.random.default_rng(0).integers(0, len(c), 200):
        pa, pb, pc = perms[a[k]], perms[b[k]], perms[c[k]]
        assert all(pc[i] == pa[pb[i]] for i in range(5))
    # a group: the identity (index 0) is neutral
    assert (c[a == 0] == b[a == 0]).all()


def test_split_sizes_disjoint_and_seeded():
    cfg = RunConfig(p=23, r=0.3)
    d = make_dataset(cfg)
    assert len(d.train_y) == round(0.3 * 23 * 23) and len(d.train_y) + len(d.val_y) == 23 * 23
    pairs_tr = {tuple(x) for x in d.train_x[:, [0, 2]].tolist()}
    pairs_va = {tuple(x) for x in d.val_x[:, [0, 2]].tolist()}
    assert not pairs_tr & pairs_va
    assert (d.train_x[:, 1] == 23).all() and (d.train_x[:, 3] == 24).all() and d.vocab_size == 25
    again = make_dataset(cfg)
    assert torch.equal(d.train_x, again.train_x)
    other = make_dataset(cfg.replace(data_seed=1))
    assert not torch.equal(d.train_x, other.train_x)


def test_digits_split_and_validation():
    cfg = RunConfig(task="digits", model="mlp", r=1000 / 1797)
    d = make_dataset(cfg)
    assert d.train_x.shape == (1000, 64) and d.train_x.dtype == torch.float32
    assert len(d.val_y) == 797 and d.n_classes == 10
    assert 0.0 <= float(d.train_x.min()) and float(d.train_x.max()) <= 1.0
    with pytest.raises(ValueError, match="RunConfig.model = 'transformer' is invalid"):
        RunConfig(task="digits")


@pytest.mark.parametrize("task, p", [("add", 23), ("div", 13), ("s5", 0)])
def test_grok_layout_and_same_split_as_book(task, p):
    book = RunConfig(task=task, p=p, r=0.3, data_seed=5)
    grok = book.replace(arch="grok")
    db, dg = make_dataset(book), make_dataset(grok)
    a, b, c, n = operation_table(task, p)
    table = {(int(x), int(y)): int(z) for x, y, z in zip(a, b, c)}
    op, eq, eos = n, n + 1, n + 2
    assert dg.n_classes == n and dg.vocab_size == n + 3 and db.vocab_size == n + 2
    for x, y, xb, yb in ((dg.train_x, dg.train_y, db.train_x, db.train_y),
                         (dg.val_x, dg.val_y, db.val_x, db.val_y)):
        assert x.shape == (len(xb), 6) and y.shape == (len(xb), 2)
        assert x.dtype == y.dtype == torch.int64
        # <eos> a op b = c  ->  targets c <eos>
        assert (x[:, 0] == eos).all() and (x[:, 2] == op).all() and (x[:, 4] == eq).all()
        assert (y[:, 1] == eos).all() and torch.equal(x[:, 5], y[:, 0])
        assert all(table[(ai, bi)] == ci for ai, bi, ci in zip(x[:, 1].tolist(), x[:, 3].tolist(),
                                                                  x[:, 5].tolist()))
        # the same (a, b) pairs, in the same order, as the book arch
        assert torch.equal(x[:, [1, 3]], xb[:, [0, 2]]) and torch.equal(y[:, 0], yb)
    assert len(dg.train_y) == round(0.3 * len(c))
