"""Exploratory: do the scale-free features of ``grokbook.transfer`` carry from one family
of the corpus to another, against the shipped predictor's loss-only feature set? (issue
34, part 2, before the corpus has its families)

For each family of the committed corpus given, the runs that grok or memorize (the
records' outcome at the authors' thresholds), whose early window has a time unit (the
loss falls 0.3 decades): a standardized logistic regression fitted on the other families
scores the family held out (``grokbook.experiments.leaderboard.family_holdout``), AUC
with a 95% bootstrap interval over the held-out family's configurations, and the Brier
score against the base rate's. Nothing is trained.

    python benchmarks/transfer_probe.py [--families book_p31 grok_p47] [--window 400]
"""

from __future__ import annotations

import argparse

import numpy as np

from grokbook.experiments.leaderboard import family_holdout
from grokbook.experiments.records import corpus_dir, read_records
from grokbook.predict import LOSS_ONLY, curve_features
from grokbook.transfer import TRANSFER, transfer_features


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", nargs="+", default=["book_p31", "grok_p47"])
    ap.add_argument("--window", type=int, default=400)
    ap.add_argument("--boot", type=int, default=1000)
    args = ap.parse_args()
    sets = {"transfer": [], "loss-only (the shipped predictor's set)": []}
    y, fam, grp, left = [], [], [], {}
    for f in args.families:
        frame = read_records(corpus_dir(f))
        frame = frame[frame.outcome.isin(["groks", "memorizes"])]
        left[f] = 0
        for _, r in frame.iterrows():
            w = np.asarray(r.window, np.float64)
            tf = transfer_features(w, args.window)
            if not np.all(np.isfinite(list(tf.values()))):
                left[f] += 1
                continue
            cf = curve_features(w, args.window, "taper:0.02")
            sets["transfer"].append([tf[k] for k in TRANSFER])
            sets["loss-only (the shipped predictor's set)"].append([cf[k] for k in LOSS_ONLY])
            y.append(r.outcome == "groks")
            fam.append(f)
            grp.append(f"{f}:{r.lr}:{r.weight_decay}:{r.r}")
    print("runs left out (no time unit in the window): " + ", ".join(f"{f} {n}" for f, n in left.items()))
    for name, rows in sets.items():
        out = family_holdout(np.array(rows), np.array(y), fam, grp, n_boot=args.boot)
        for f, o in out.items():
            est, lo, hi = o["auc"]
            print(f"{name}: held out {f} ({o['n']} runs, {o['n_pos']} grok): AUC {est:.2f} [{lo:.2f}, {hi:.2f}], "
                  f"Brier {o['brier']:.3f} (base rate {o['brier_base']:.3f})")


if __name__ == "__main__":
    main()
