"""Exploratory (issue 34, part 4): could a variant of the staged pruner reach the target
(90% of the grokking runs kept for at most half the compute)? The proxy of
``benchmarks/staged_pruner_probe.py`` (the book's sweep, ``data/corpus/book_p31``, 5 folds
by configuration; chapter 11's trials not used), with the staged features alone, with the
hyperparameters added (a search knows its trials' hyperparameters), and with the
hyperparameters alone; labelled positive when a run generalizes (the shipped label) or
when it groks. Prints compute and the share of the grokking runs kept per recall.

    python benchmarks/staged_pruner_variants.py
"""
import numpy as np
from sklearn.linear_model import LogisticRegression

from grokbook.experiments.records import corpus_dir, read_records
from grokbook.predict import POSITIVE
from grokbook.staged import POINTS, record_matrix
from grokbook.stats import hyperparameter_features

f = read_records(corpus_dir("book_p31"))
Xs = record_matrix(f)  # (runs, points, features)
H = hyperparameter_features(f.lr.to_numpy(), f.weight_decay.to_numpy(), f.r.to_numpy())
groks = (f.outcome == "groks").to_numpy()
grp = (f.lr.astype(str) + f.weight_decay.astype(str) + f.r.astype(str)).to_numpy()
ug = np.unique(grp)
fold_of = dict(zip(ug, np.random.default_rng(0).permutation(len(ug)) % 5))
fold = np.array([fold_of[g] for g in grp])


def replay(y, use_hp, use_curve, recall):
    """Compute (share of the budget, mean) and share of the grokking runs kept, held out by fold."""
    cost, kept = np.ones(len(y)), np.ones(len(y), bool)
    for k in range(5):
        tr, te = fold != k, fold == k
        alive, c = np.ones(te.sum(), bool), np.ones(te.sum())
        for i, p in enumerate(POINTS):
            A = np.concatenate(([Xs[:, i]] if use_curve else []) + ([H] if use_hp else []), 1)
            m, sd = A[tr].mean(0), A[tr].std(0)
            sd[sd == 0] = 1
            model = LogisticRegression().fit((A[tr] - m) / sd, y[tr])
            th = np.quantile(model.predict_proba((A[tr][y[tr]] - m) / sd)[:, 1], 1 - recall)
            stop = alive & (model.predict_proba((A[te] - m) / sd)[:, 1] < th)
            c[stop] = p
            alive &= ~stop
        cost[te], kept[te] = c, alive
    return cost.mean(), kept[groks].mean()


for label, y in (("generalizes", f.outcome.isin(POSITIVE).to_numpy()), ("groks", groks)):
    for name, hp, curve in (("staged", False, True), ("staged + hyperparameters", True, True),
                            ("hyperparameters", True, False)):
        for recall in (0.9, 0.95, 0.98, 0.99):
            c, k = replay(y, hp, curve, recall)
            print(f"label {label:<12} {name:<25} recall {recall}: compute {c:.2f}, grokkers kept {k:.2f}")
print(f"share of runs that grok {groks.mean():.2f}, that generalize {f.outcome.isin(POSITIVE).mean():.2f}")
