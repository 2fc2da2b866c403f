"""Exploratory (issue 34, part 4): could a pruner that decides at 5%, 10%, 20% and 40% of
the budget keep 90% of the grokking runs for half the compute? A proxy on the book's
sweep (``data/corpus/book_p31``, 420 records), 5 folds by configuration: at each point a
standardized logistic regression on what a trial reports by then (log training loss,
its change since half the point, the last and the best validation accuracy and its
change), fitted on the other folds, prunes a run whose probability falls below the
quantile of the training positives' probabilities that keeps ``recall`` of them at that
point. Nothing trained; the chapter-11 trials are not used.

    python benchmarks/staged_pruner_probe.py
"""
import numpy as np
from sklearn.linear_model import LogisticRegression
from grokbook.experiments.records import read_records, corpus_dir
from grokbook.predict import POSITIVE
POINTS = (0.05, 0.1, 0.2, 0.4)
def feats(t_curve, loss, v_steps, v_acc, s):
    ll = np.interp([s, s / 2], t_curve, np.log10(np.maximum(loss, 1e-12)))
    k = np.asarray(v_steps) <= s; va = np.asarray(v_acc)[k]; vs = np.asarray(v_steps)[k]
    half = va[vs <= s / 2]
    return [ll[0], ll[0] - ll[1], va[-1], va[-1] - (half[-1] if len(half) else 0.0), va.max()]
f = read_records(corpus_dir("book_p31")); T = 2000  # noqa: E702
X = {p: np.array([feats(np.asarray(r.curve_steps), np.asarray(r.train_loss), r.val_steps, r.val_acc, p * T) for _, r in f.iterrows()]) for p in POINTS}
y = f.outcome.isin(POSITIVE).to_numpy(); groks = (f.outcome == "groks").to_numpy()
grp = (f.lr.astype(str) + f.weight_decay.astype(str) + f.r.astype(str)).to_numpy()
ug = np.unique(grp); rng = np.random.default_rng(0); fold_of = dict(zip(ug, rng.permutation(len(ug)) % 5))
fold = np.array([fold_of[g] for g in grp])
for recall in (0.95, 0.98, 0.99):
    cost = np.ones(len(y)); kept = np.ones(len(y), bool)
    for k in range(5):
        tr, te = fold != k, fold == k
        alive = np.ones(te.sum(), bool); c = np.ones(te.sum())
        for p in POINTS:
            A = X[p]; m, sd = A[tr].mean(0), A[tr].std(0); sd[sd == 0] = 1
            lr = LogisticRegression().fit((A[tr] - m) / sd, y[tr])
            th = np.quantile(lr.predict_proba((A[tr][y[tr]] - m) / sd)[:, 1], 1 - recall)
            pr = lr.predict_proba((A[te] - m) / sd)[:, 1]
            stop = alive & (pr < th); c[stop] = p; alive &= ~stop
        cost[te] = c; kept[te] = alive
    print(f"recall/point {recall}: compute {cost.mean():.2f}, grokkers kept {kept[groks].mean():.2f} of {groks.sum()}, positives kept {kept[y].mean():.2f}, negatives stopped {(~kept[~y]).mean():.2f}")
    # at which point
    print("   stops by point:", {p: int(((cost == p) & ~kept).sum()) for p in POINTS})
