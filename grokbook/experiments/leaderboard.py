"""Scoring early predictors held out by family (issue 34, parts 2 and 3).

A predictor that is to work on a trainer it has never seen is validated the same way:
fitted on every family of the corpus but one, scored on the family left out
(:func:`family_holdout`), with a cluster-bootstrap interval over that family's
configurations, and calibrated as well as ranked: the Brier score against the base
rate's (:func:`brier`) and a reliability curve (:func:`reliability`).
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np

from ..predict import HYPERPARAMETERS, LOSS_ONLY, SPECTRAL, curve_features
from ..transfer import TRANSFER, transfer_features


def brier(p: Sequence[float], y: Sequence[bool]) -> float:
    """The Brier score, the mean of ``(p - y)^2`` over ``(n,)`` probabilities ``p`` and
    outcomes ``y``: 0 is perfect, ``q (1 - q)`` is a constant forecast at the base
    rate ``q``."""
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    if p.shape != y.shape or p.ndim != 1 or not len(p):
        raise ValueError(f"p {p.shape} and y {y.shape} must be non-empty 1-D of one length")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("probabilities must lie in [0, 1]")
    return float(np.mean((p - y) ** 2))


def reliability(p: Sequence[float], y: Sequence[bool], n_bins: int = 5) -> list[dict[str, float]]:
    """The reliability curve: the probabilities ``p`` cut into ``n_bins`` equal bins of
    [0, 1] (the last one closed), and for each bin holding runs: ``lo``, ``hi``, ``n``,
    ``mean_p`` (the mean forecast) and ``observed`` (the share of ``y`` true). A
    calibrated predictor has ``observed`` close to ``mean_p`` in every bin."""
    p, y = np.asarray(p, np.float64), np.asarray(y, bool)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    idx = np.minimum((p * n_bins).astype(int), n_bins - 1)
    out = []
    for b in range(n_bins):
        m = idx == b
        if m.any():
            out.append(dict(lo=b / n_bins, hi=(b + 1) / n_bins, n=int(m.sum()), mean_p=float(p[m].mean()),
                            observed=float(y[m].mean())))
    return out


def family_holdout(X: np.ndarray, y: Sequence[bool], families: Sequence[str], groups: Sequence[Any], *,
                   C: float = 1.0, n_boot: int = 1000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Leave one family out: for each family, a standardized L2 logistic regression
    (inverse strength ``C``) fitted on the runs of every other family (``X`` ``(n, k)``
    features, ``y`` ``(n,)`` outcomes) scores the family's runs. Per family: ``n``,
    ``n_pos``, ``p`` (``(n_family,)`` held-out probabilities), ``auc`` ``(estimate, low,
    high)`` with a 95% bootstrap interval over the family's ``groups`` (its
    configurations, none with ``n_boot`` 0; NaN where one class is missing), ``brier`` and ``brier_base`` (a
    constant forecast at the training families' base rate).
    ValueError on shapes that disagree, non-finite features, or fewer than two families."""
    from sklearn.linear_model import LogisticRegression

    from ..predict import bootstrap_ci, roc_auc

    X, y = np.asarray(X, np.float64), np.asarray(y, bool)
    fam, grp = np.asarray(families), np.asarray(groups)
    if X.ndim != 2 or not (len(X) == len(y) == len(fam) == len(grp)):
        raise ValueError(f"X {X.shape}, y {y.shape}, families {fam.shape} and groups {grp.shape} must agree")
    if not np.all(np.isfinite(X)):
        raise ValueError("X holds non-finite features")
    names = sorted(set(fam.tolist()))
    if len(names) < 2:
        raise ValueError(f"need at least two families, got {names}")
    out = {}
    for f in names:
        test, train = fam == f, fam != f
        mean, sd = X[train].mean(0), X[train].std(0)
        sd = np.where(sd > 0, sd, 1.0)
        if len(set(y[train].tolist())) < 2:
            raise ValueError(f"the families other than {f!r} hold one outcome only")
        model = LogisticRegression(C=C).fit((X[train] - mean) / sd, y[train])
        p = model.predict_proba((X[test] - mean) / sd)[:, 1]
        yt = y[test]
        nan3 = (float("nan"),) * 3
        if not 0 < yt.sum() < len(yt):
            auc = nan3
        elif n_boot:
            auc = bootstrap_ci(roc_auc, yt, p, groups=grp[test], n_boot=n_boot, seed=seed)
        else:
            auc = (roc_auc(yt, p), float("nan"), float("nan"))
        base = float(y[train].mean())
        out[f] = dict(n=int(test.sum()), n_pos=int(yt.sum()), p=p, auc=auc, brier=brier(p, yt),
                      brier_base=brier(np.full(len(yt), base), yt))
    return out


# --- the leaderboard (issue 34, part 3) ----------------------------------------------

#: The training loss (nats) whose first crossing :func:`steps_to_level` counts: Jiang et
#: al. (2019)'s optimization-based measure, steps to reach a cross-entropy of 0.1.
LEVEL = 0.1

#: Each fitted entry of the leaderboard: its name and the features its standardized
#: logistic regression is fitted on (held out by family, :func:`family_holdout`).
ENTRIES: dict[str, tuple[str, ...]] = {
    "paper energy": ("log_paper_energy",),
    "Hjorth set": SPECTRAL,
    "loss-only set (the shipped predictor's features)": LOSS_ONLY,
    "scale-free set": TRANSFER,
    "steps to loss 0.1": ("log_steps_to_level",),
    "weight-norm trend": ("norm_trend",),
    "hyperparameters alone": HYPERPARAMETERS,
    "scale-free set + hyperparameters": TRANSFER + HYPERPARAMETERS,
}

#: The entries of early sharpness: ``log_lambda_max``, ``log10`` of the Hessian's largest
#: eigenvalue at the window's end, which no record keeps: measured offline on a replay of
#: each run (:mod:`grokbook.experiments.sharpness`) and joined to a :func:`feature_table`
#: by :func:`~grokbook.experiments.sharpness.with_sharpness`. Alone, and with the
#: hyperparameters (what it adds to them, as for the early curve).
SHARPNESS_ENTRIES: dict[str, tuple[str, ...]] = {
    "early sharpness": ("log_lambda_max",),
    "early sharpness + hyperparameters": ("log_lambda_max",) + HYPERPARAMETERS,
}


def steps_to_level(loss: Sequence[float], n: int, level: float = LEVEL) -> float:
    """``log10(t + 1)`` for the first step ``t < n`` whose training loss (raw, ``(T,)``,
    ``T >= n``) is at most ``level``; ``log10(n + 1)`` if none in the window (the count
    is censored there, and a censored run ranks as the slowest)."""
    x = np.asarray(loss, np.float64)
    if x.ndim != 1 or len(x) < n or n < 1:
        raise ValueError(f"need a 1-D curve of at least n={n} >= 1 steps, got shape {x.shape}")
    hit = np.flatnonzero(x[:n] <= level)
    return float(np.log10((hit[0] if len(hit) else n) + 1))


def _window_norm(record: Any, n: int) -> np.ndarray:
    """``(n,)``: the weight norm of the window's steps, from ``window_norm`` when the
    record keeps it, else interpolated from the downsampled curve (``weight_norm`` at
    ``curve_steps``, dense early: records made before session 15 keep only that)."""
    norm = record.get("window_norm") if hasattr(record, "get") else record["window_norm"]
    if norm is not None and not np.isscalar(norm) and len(norm) >= n:
        return np.asarray(norm, np.float64)[:n]
    steps, values = np.asarray(record["curve_steps"], np.float64), np.asarray(record["weight_norm"], np.float64)
    return np.interp(np.arange(n), steps, values)


def record_features(record: Any, n: int = 400) -> dict[str, float]:
    """Every feature an entry of :data:`ENTRIES` reads, from one corpus record (a row of
    :func:`~grokbook.experiments.records.read_records`) and its first ``n`` steps: the
    curve features of :func:`grokbook.predict.curve_features` (Hjorth detrending
    ``taper:0.02``, as the shipped predictor), ``norm_trend`` (see :func:`_window_norm`),
    the scale-free :data:`~grokbook.transfer.TRANSFER` set (NaN where the loss does not
    fall 0.3 decades in the window), ``log_steps_to_level`` (:func:`steps_to_level`) and
    the :data:`HYPERPARAMETERS`. ValueError if the record keeps fewer than ``n`` steps or
    the window is not finite."""
    from ..stats import hyperparameter_features

    loss = np.asarray(record["window"], np.float64)
    if len(loss) < n:
        raise ValueError(f"the record {record['hash']} keeps {len(loss)} early steps, fewer than {n}")
    out = curve_features(loss, n, "taper:0.02", weight_norm=_window_norm(record, n))
    out.update(transfer_features(loss, n))
    out["log_steps_to_level"] = steps_to_level(loss, n)
    h = hyperparameter_features([record["lr"]], [record["weight_decay"]], [record["r"]])[0]
    out.update(zip(HYPERPARAMETERS, map(float, h)))
    return out


def feature_table(frame: Any, n: int = 400) -> Any:
    """One row per record of ``frame`` (corpus records, every family together): the
    :func:`record_features`, and ``family``, ``group`` (the family and the configuration
    without its seeds: the bootstrap's unit), ``positive`` (outcome groks or generalizes,
    the shipped predictor's label), ``time`` and ``event`` (the censored time to
    generalize) and ``outcome``; the same index as ``frame``."""
    import pandas as pd

    from ..predict import POSITIVE

    seeds = {"seed", "data_seed", "hash", "family"}
    config_cols = [c for c in frame.columns if c in _CONFIG_COLUMNS and c not in seeds]
    rows = []
    for _, r in frame.iterrows():
        row = record_features(r, n)
        row.update(family=r["family"], outcome=r["outcome"], positive=r["outcome"] in POSITIVE,
                   time=float(r["time"]), event=bool(r["event"]),
                   group=r["family"] + "|" + "|".join(str(r[c]) for c in config_cols))
        rows.append(row)
    return pd.DataFrame(rows, index=frame.index)


def _config_columns() -> frozenset[str]:
    from dataclasses import fields

    from ..config import RunConfig

    return frozenset(f.name for f in fields(RunConfig)) | {"beta1", "beta2"}


_CONFIG_COLUMNS = _config_columns()


def _concordance(p: np.ndarray, time: np.ndarray, event: np.ndarray, groups: np.ndarray, n_boot: int,
                 seed: int) -> tuple[float, float, float]:
    """Harrell's C of ``p`` against the censored time to generalize, with its cluster
    bootstrap interval (NaN where no pair is comparable)."""
    from ..predict import bootstrap_ci
    from ..stats import concordance_index

    try:
        return bootstrap_ci(concordance_index, p, time, event, groups=groups, n_boot=n_boot, seed=seed)
    except ValueError:
        return (float("nan"),) * 3


def score_entries(table: Any, entries: Optional[dict[str, Sequence[str]]] = None, *, raw: Sequence[str] = (
        "log_paper_energy",), scored: Optional[dict[str, np.ndarray]] = None, C: float = 1.0,
                  n_boot: int = 1000, seed: int = 0, families: Optional[Sequence[str]] = None) -> list[dict[str, Any]]:
    """The leaderboard: one row per (entry, held-out family) of the runs of ``table``
    (:func:`feature_table`) whose every feature is finite.

    Three kinds of entry: each of ``entries`` (default :data:`ENTRIES`) fitted on every
    family but the one it scores (:func:`family_holdout`); each feature of ``raw`` used
    as it is, with both signs (``"+ log_paper_energy"``: a higher value predicts
    generalizing; ``"- ..."``: a lower one), nothing fitted; and each of ``scored``
    (name to ``(n,)`` probabilities over ``table``'s rows, e.g. the shipped predictor's),
    scored as given. Each row: ``entry``, ``kind`` (``"held out"``, ``"raw"``,
    ``"given"``), ``family``, ``n``, ``n_pos``, ``p``, ``y`` and ``g`` (the family's scores,
    outcomes and configurations, ``(n,)`` each), ``auc`` and ``concordance`` (``(estimate,
    low, high)``, 95% cluster bootstrap over the family's configurations; NaN where a
    class is missing), ``brier`` and ``brier_base`` (NaN for raw scores, which are no
    probabilities). ``families``: score only these (default every family of ``table``);
    each is still held out against all the others, so a family that is in no fit (runs
    of another trainer, say) is scored by entries fitted on the whole rest."""
    from ..predict import bootstrap_ci, roc_auc

    entries = dict(ENTRIES if entries is None else entries)
    needed = sorted({f for fs in entries.values() for f in fs} | set(raw))
    ok = np.isfinite(table[needed].to_numpy(np.float64)).all(axis=1)
    t = table[ok]
    fam, grp = t["family"].to_numpy(), t["group"].to_numpy()
    y, time, event = t["positive"].to_numpy(bool), t["time"].to_numpy(np.float64), t["event"].to_numpy(bool)
    nan3 = (float("nan"),) * 3
    rows = []

    def add(entry: str, kind: str, f: str, p: np.ndarray, base: float) -> None:
        m = fam == f
        yt = y[m]
        auc = bootstrap_ci(roc_auc, yt, p, groups=grp[m], n_boot=n_boot, seed=seed) if 0 < yt.sum() < len(yt) \
            else nan3
        prob = kind != "raw"
        rows.append(dict(entry=entry, kind=kind, family=f, n=int(m.sum()), n_pos=int(yt.sum()), p=p, y=yt, g=grp[m],
                         auc=auc,
                         concordance=_concordance(p, time[m], event[m], grp[m], n_boot, seed),
                         brier=brier(p, yt) if prob else float("nan"),
                         brier_base=brier(np.full(len(yt), base), yt) if prob else float("nan")))

    present = sorted(set(fam.tolist()))
    if families is None:
        families = present
    elif set(families) - set(present):
        raise ValueError(f"no scorable runs of the families {sorted(set(families) - set(present))}")
    for name, features in entries.items():
        out = family_holdout(t[list(features)].to_numpy(np.float64), y, fam, grp, C=C, n_boot=0)
        for f in families:
            add(name, "held out", f, out[f]["p"], float(y[fam != f].mean()))
    for feature in raw:
        v = t[feature].to_numpy(np.float64)
        for sign, label in ((1.0, "+"), (-1.0, "-")):
            for f in families:
                add(f"{label} {feature}", "raw", f, sign * v[fam == f], float("nan"))
    for name, p_all in (scored or {}).items():
        p_all = np.asarray(p_all, np.float64)[ok]
        for f in families:
            add(name, "given", f, p_all[fam == f], float(y[fam != f].mean()) if (fam != f).any() else float("nan"))
    return rows


#: The targets of issue 34 for a predictor that transfers, fixed before the corpus was
#: scored: with the hyperparameters given, an AUC of at least :data:`MIN_AUC` on every
#: held-out family; from the loss curve alone, an interval above 0.5 on at least
#: :data:`SHARE` of the families (4 of 6) and a Brier score below the base rate's
#: (the held-out families pooled).
MIN_AUC = 0.80
SHARE = 2 / 3


def _rows_of(rows: Sequence[dict[str, Any]], entry: str) -> list[dict[str, Any]]:
    found = [r for r in rows if r["entry"] == entry]
    if not found:
        raise ValueError(f"no rows for the entry {entry!r}")
    return found


def _scored(rows: Sequence[dict[str, Any]], min_class: int) -> list[dict[str, Any]]:
    """The rows whose family holds at least ``min_class`` runs of each outcome."""
    return [r for r in rows if min(r["n_pos"], r["n"] - r["n_pos"]) >= max(min_class, 1)]


def with_hyperparameters_target(rows: Sequence[dict[str, Any]], entry: str, min_auc: float = MIN_AUC,
                                min_class: int = 1) -> str:
    """Whether ``entry`` (rows of :func:`score_entries`) scores an AUC of at least
    ``min_auc`` on every held-out family with at least ``min_class`` runs of each outcome:
    ``"met: ..."`` or ``"not met: ..."``, naming each family and its AUC; ``"not
    testable: ..."`` when no family qualifies."""
    scored = [r for r in _scored(_rows_of(rows, entry), min_class) if math.isfinite(r["auc"][0])]
    if not scored:
        return f"not testable: no held-out family holds both outcomes for {entry}"
    low = [r for r in scored if r["auc"][0] < min_auc]
    each = ", ".join(f"{r['family']} {r['auc'][0]:.2f}" for r in scored)
    if low:
        return (f"not met: AUC below {min_auc:.2f} on {len(low)} of {len(scored)} held-out families "
                f"({', '.join(r['family'] for r in low)}); {each}")
    return f"met: AUC at least {min_auc:.2f} on all {len(scored)} held-out families ({each})"


def loss_only_target(rows: Sequence[dict[str, Any]], entry: str, share: float = SHARE, min_class: int = 1) -> str:
    """Whether ``entry`` (rows of :func:`score_entries`, fitted held out) has its AUC
    interval's lower bound above 0.5 on at least ``share`` of the families with at least
    ``min_class`` runs of each outcome (rounded up: 4 of 6) and, pooling those families'
    runs, a Brier score below the base rate's: ``"met: ..."``, ``"not met: ..."`` or
    ``"not testable: ..."`` (no family qualifies)."""
    mine = _scored(_rows_of(rows, entry), min_class)
    scored = [r for r in mine if math.isfinite(r["auc"][1])]
    if not scored:
        return f"not testable: no held-out family holds both outcomes for {entry}"
    need = math.ceil(share * len(scored) - 1e-9)
    above = [r for r in scored if r["auc"][1] > 0.5]
    n = sum(r["n"] for r in mine)
    b = sum(r["brier"] * r["n"] for r in mine) / n
    base = sum(r["brier_base"] * r["n"] for r in mine) / n
    text = (f"interval above 0.5 on {len(above)} of {len(scored)} held-out families (needs {need}: "
            f"{', '.join(r['family'] for r in above) or 'none'}); Brier {b:.3f} against the base rate's {base:.3f} "
            f"over the {n} held-out runs")
    return ("met: " if len(above) >= need and b < base else "not met: ") + text


#: The early window (steps) the corpus predictor reads: all that a record keeps.
WINDOW = 400

#: The families the leaderboard and the corpus predictor read, in order (the corpus of
#: ``benchmarks/corpus.py`` and the bridge, ``benchmarks/bridge.py``).
FAMILIES = ("book_p31", "book_p23", "mlp_p31", "minibatch_p31", "sub_p31", "x2y2_p31", "budget_4k", "grok_p47")


def read_corpus(families: Sequence[str] = FAMILIES) -> Any:
    """The records of every family of ``families`` that has records in ``data/corpus/``,
    one frame (empty families are skipped; ValueError if none has records)."""
    import pandas as pd

    from .records import corpus_dir, read_records

    present = [f for f in families if corpus_dir(f).is_dir() and any(corpus_dir(f).glob("*.parquet"))]
    if not present:
        raise ValueError(f"none of the families {list(families)} has records in data/corpus/")
    return pd.concat([read_records(corpus_dir(f)) for f in present], ignore_index=True)


def fit_corpus(frame: Any, features: Sequence[str], window: int = 400, *, recall: float = 0.9,
               C: float = 1.0) -> Any:
    """A :class:`~grokbook.predict.GrokPredictor` on ``features`` (names of
    :func:`record_features`) of the first ``window`` steps, fitted on every record of
    ``frame`` whose features are finite (the others are counted in ``meta["left_out"]``),
    labelled positive when the record's outcome is groks or generalizes. ``meta`` names
    the families, their run counts and the records' hashes."""
    from ..predict import GrokPredictor

    features = tuple(features)
    table = feature_table(frame, window)
    ok = np.isfinite(table[list(features)].to_numpy(np.float64)).all(axis=1)
    t = table[ok]
    counts = t.groupby("family").size()
    from ..predict import HYPERPARAMETERS

    reads_hp = bool(set(features) & set(HYPERPARAMETERS))
    meta = dict(source="the corpus (data/corpus/), grokbook.experiments.leaderboard.fit_corpus",
                command="grokbook fit-predictor" + (" --hyperparameters" if reads_hp else ""),
                families={f: int(n) for f, n in counts.items()}, runs=int(ok.sum()), left_out=int((~ok).sum()),
                hashes=frame.loc[ok, "hash"].astype(str).tolist())
    label = "generalizes within its budget (validation accuracy 99%: outcome groks or generalizes)"
    return GrokPredictor.fit(t[list(features)].to_numpy(np.float64), t["positive"].to_numpy(bool), features,
                             window, "taper:0.02", recall=recall, C=C, label=label, meta=meta)


def gain_verdict(gain: tuple[float, float, float]) -> str:
    """Whether an early signal adds to its baseline on one family, from that family's
    :func:`paired_gain` ``(estimate, low, high)``: ``"adds: ..."`` when the interval lies
    above 0, ``"does not add: ..."`` otherwise, ``"not testable: one outcome"`` when the
    family holds one outcome (NaN)."""
    est, lo, hi = gain
    if not math.isfinite(est):
        return "not testable: one outcome"
    return ("adds" if lo > 0 else "does not add") + f": {est:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def gain_summary(gain: dict[str, tuple[float, float, float]]) -> str:
    """On how many families an early signal adds to its baseline, from
    :func:`paired_gain`'s ``{family: (estimate, low, high)}``: ``"on 2 of 8 families
    (a, b)"`` (interval above 0), ``"on none of the 8 families"``; families with one
    outcome (NaN) are not counted."""
    testable = {f: v for f, v in gain.items() if math.isfinite(v[0])}
    adds = [f for f, (_, lo, _) in testable.items() if lo > 0]
    if not adds:
        return f"on none of the {len(testable)} families"
    return f"on {len(adds)} of {len(testable)} families ({', '.join(adds)})"


def paired_gain(rows: Sequence[dict[str, Any]], entry: str, baseline: str, *, n_boot: int = 1000,
                seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """Per family, ``AUC(entry) - AUC(baseline)`` on the same runs (rows of
    :func:`score_entries`), with a 95% paired cluster bootstrap over the family's
    configurations (both entries resampled together): whether an early signal adds to
    the hyperparameters, for example. ``(nan, nan, nan)`` where a class is missing.
    ValueError if the two entries scored different runs."""
    from ..predict import bootstrap_ci, roc_auc

    base = {r["family"]: r for r in _rows_of(rows, baseline)}
    out = {}
    for r in _rows_of(rows, entry):
        b = base.get(r["family"])
        if b is None or len(b["y"]) != len(r["y"]) or not np.array_equal(b["y"], r["y"]) \
                or not np.array_equal(b["g"], r["g"]):
            raise ValueError(f"{entry!r} and {baseline!r} did not score the same runs of {r['family']}")
        y = r["y"]
        if not 0 < y.sum() < len(y):
            out[r["family"]] = (float("nan"),) * 3
            continue
        gain = lambda yy, a, c: roc_auc(yy, a) - roc_auc(yy, c)
        out[r["family"]] = bootstrap_ci(gain, y, r["p"], b["p"], groups=r["g"], n_boot=n_boot, seed=seed)
    return out
