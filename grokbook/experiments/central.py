"""The central claim against the hyperparameters: does the early training loss know
something about a run's fate that its hyperparameters do not? (issue 31, parts 1, 2, 6)

:func:`score_predictors` scores every early predictor of a sweep the same way: its AUC
for grokking against memorizing and its concordance (Harrell's C,
:func:`grokbook.stats.concordance_index`) with the censored time to generalize, each
with a 95% interval of a bootstrap over configurations. Fitted predictors are scored on
held-out configurations (:func:`grokbook.predict.cross_validate`, which learns their
sign inside the folds). Beside them: the paper's quantity with the sign fixed a priori,
the same quantity within strata of the learning rate and of lr x wd (pooled,
:func:`grokbook.stats.stratified_auc`), within configurations (seeds only differ), and
the increment AUC(hyperparameters + energy) - AUC(hyperparameters), paired.

The verdict functions decide the four questions from those rows, each by its primary
test (the rest of the table is exploratory).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import numpy as np

from ..predict import bootstrap_ci, cross_validate, roc_auc
from ..stats import concordance_index, hyperparameter_features, strata, stratified_auc
from .verdicts import Verdict, from_interval, not_testable

NAN3 = (float("nan"),) * 3


@dataclass(frozen=True)
class SweepData:
    """Per-run values of the runs that grok or memorize, ``(n,)`` each: ``y`` (True:
    groks), the censored time to generalize (``time``, ``event``), configuration ids and
    seeds, the hyperparameters, and ``energy``: log10 of the paper's raw energy."""

    y: np.ndarray
    time: np.ndarray
    event: np.ndarray
    configs: np.ndarray
    seeds: np.ndarray
    lr: np.ndarray
    weight_decay: np.ndarray
    r: np.ndarray
    energy: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.y)
        for name in ("time", "event", "configs", "seeds", "lr", "weight_decay", "r", "energy"):
            if np.shape(getattr(self, name)) != (n,):
                raise ValueError(f"{name} has shape {np.shape(getattr(self, name))}, expected ({n},)")
        if not np.isfinite(np.asarray(self.energy, dtype=float)).all():
            raise ValueError("energy holds non-finite values: leave diverged runs out")

    def hyperparameters(self) -> np.ndarray:
        return hyperparameter_features(self.lr, self.weight_decay, self.r)


def _interval(stat, *arrays, groups, n_boot: int, seed: int) -> tuple[float, float, float]:
    try:
        return bootstrap_ci(stat, *arrays, groups=groups, n_boot=n_boot, seed=seed)
    except ValueError:
        return NAN3


def score_predictors(data: SweepData, fitted: Mapping[str, tuple[str, np.ndarray]], *, n_folds: int = 5,
                     n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """One row per predictor: ``name``, ``group``, ``auc`` / ``auc_lo`` / ``auc_hi``,
    ``c`` / ``c_lo`` / ``c_hi`` (NaN where not defined), ``how``.

    ``fitted``: name to ``(group, X)`` with ``X`` ``(n, k)`` features, each scored by a
    logistic regression on held-out configurations. The rows of the paper's quantity,
    the hyperparameter model, their sum, the strata and the increment come first."""
    d = data
    y, t, e, g = np.asarray(d.y, bool), np.asarray(d.time, float), np.asarray(d.event, bool), np.asarray(d.configs)
    seeds = np.asarray(d.seeds)
    boot = dict(groups=g, n_boot=n_boot, seed=seed)
    held = lambda X: cross_validate(X, y, g, seeds, n_folds=n_folds, seed=seed).score
    rows: list[dict] = []

    def add(name, group, score, how):
        ok = np.isfinite(score)
        auc = _interval(roc_auc, y[ok], score[ok], groups=g[ok], n_boot=n_boot, seed=seed)
        c = _interval(concordance_index, score[ok], t[ok], e[ok], groups=g[ok], n_boot=n_boot, seed=seed)
        rows.append(dict(name=name, group=group, auc=auc[0], auc_lo=auc[1], auc_hi=auc[2],
                         c=c[0], c_lo=c[1], c_hi=c[2], how=how))
        return score

    energy = np.asarray(d.energy, float)
    hp = d.hyperparameters()
    add("paper's quantity, sign a priori", "paper", energy, "raw energy as it is (more energy: groks)")
    add("paper's quantity, sign learned", "paper", held(energy[:, None]), "held-out logistic fit of the energy alone")
    for name, ids in (("paper's quantity within lr", strata(d.lr, d.r)),
                      ("paper's quantity within lr x wd", strata(np.asarray(d.lr) * np.asarray(d.weight_decay), d.r)),
                      ("paper's quantity within configurations", g)):
        auc = _interval(stratified_auc, y, energy, ids, **boot)
        rows.append(dict(name=name, group="paper", auc=auc[0], auc_lo=auc[1], auc_hi=auc[2],
                         c=np.nan, c_lo=np.nan, c_hi=np.nan, how="pooled AUC over pairs of one stratum, sign a priori"))
    s_hp = add("hyperparameters only", "hyperparameters", held(hp), "held-out logistic fit of log lr, log wd, r, interaction")
    s_both = add("hyperparameters + energy", "hyperparameters", held(np.column_stack([hp, energy])),
                 "held-out logistic fit")
    inc = _interval(lambda yy, a, b: roc_auc(yy, a) - roc_auc(yy, b), y, s_both, s_hp, **boot)
    inc_c = _interval(lambda a, b, tt, ee: concordance_index(a, tt, ee) - concordance_index(b, tt, ee),
                      s_both, s_hp, t, e, **boot)
    rows.append(dict(name="increment: (hyperparameters + energy) - hyperparameters", group="hyperparameters",
                     auc=inc[0], auc_lo=inc[1], auc_hi=inc[2], c=inc_c[0], c_lo=inc_c[1], c_hi=inc_c[2],
                     how="paired difference on the same runs"))
    for name, (group, X) in fitted.items():
        add(name, group, held(np.asarray(X, float).reshape(len(y), -1)), "held-out logistic fit")
    return rows


def _row(rows, name) -> dict:
    for r in rows:
        if r["name"] == name:
            return r
    raise KeyError(f"no row {name!r}")


def ranks_outcomes(rows) -> Verdict:
    """Q1, primary: the paper's quantity with its sign learned in the folds ranks
    grokking above memorizing runs (its AUC interval lies above 0.5)."""
    r = _row(rows, "paper's quantity, sign learned")
    return from_interval(r["auc"], r["auc_lo"], r["auc_hi"], 0.5, what="held-out AUC")


def adds_to_hyperparameters(rows) -> Verdict:
    """Q2, primary: the energy adds to the hyperparameters (the interval of the paired
    AUC increment lies above 0)."""
    r = _row(rows, "increment: (hyperparameters + energy) - hyperparameters")
    return from_interval(r["auc"], r["auc_lo"], r["auc_hi"], 0.0, what="AUC increment")


def ranks_seeds(auc: float, lo: float, hi: float, n_pairs: int, min_pairs: int = 30) -> Verdict:
    """Q3, primary: within configurations (only the seed differs), the paper's quantity
    ranks grokking above memorizing seeds, either sign. Not testable below ``min_pairs``
    discordant pairs."""
    if n_pairs < min_pairs:
        return not_testable(f"{n_pairs} pairs of seeds of one configuration disagree (needs {min_pairs})")
    return from_interval(auc, lo, hi, 0.5, expected="either", what="within-configuration AUC")


def lr_artefact(rows) -> Optional[bool]:
    """The signature of a hyperparameter proxy: the pooled a-priori AUC excludes 0.5,
    the increment's interval holds 0, and the within-configuration AUC's holds 0.5.
    None when one of the three could not be measured."""
    p = _row(rows, "paper's quantity, sign a priori")
    i = _row(rows, "increment: (hyperparameters + energy) - hyperparameters")
    w = _row(rows, "paper's quantity within configurations")
    vals = [p["auc_lo"], p["auc_hi"], i["auc_lo"], i["auc_hi"], w["auc_lo"], w["auc_hi"]]
    if any(not np.isfinite(v) for v in vals):
        return None
    pooled = p["auc_lo"] > 0.5 or p["auc_hi"] < 0.5
    return bool(pooled and i["auc_lo"] <= 0 <= i["auc_hi"] and w["auc_lo"] <= 0.5 <= w["auc_hi"])


def discordant_pairs(y, configs) -> int:
    """Pairs (grokking seed, memorizing seed) within one configuration."""
    y, g = np.asarray(y, bool), np.asarray(configs)
    return int(sum((y[g == k]).sum() * (~y[g == k]).sum() for k in np.unique(g)))


def uncertain_configurations(probability, configs, *, lo: float = 0.3, hi: float = 0.7, k: int = 8) -> list:
    """The configurations where the hyperparameters leave the outcome most open: the mean
    held-out probability of the hyperparameter model over a configuration's runs
    (``probability``, ``configs``: ``(n,)``) within ``[lo, hi]``, the ``k`` closest to 0.5
    (ties by configuration id), in that order."""
    prob, g = np.asarray(probability, dtype=float), np.asarray(configs)
    if prob.shape != g.shape:
        raise ValueError(f"probability {prob.shape} and configs {g.shape} differ in shape")
    means = {c: float(np.nanmean(prob[g == c])) for c in np.unique(g)}
    inside = [c for c, m in means.items() if lo <= m <= hi]
    return sorted(inside, key=lambda c: (abs(means[c] - 0.5), str(c)))[:k]


def within_configurations(y, energy, time, event, configs, *, n_boot: int = 1000, seed: int = 0) -> dict:
    """The paper's quantity among seeds of one configuration: the AUC pooled over the
    (grokking, memorizing) pairs of each configuration and the concordance with the
    censored time over the pairs of each configuration, each ``(estimate, low, high)``
    over a bootstrap of configurations; ``pairs``: the discordant pairs that carry the AUC.
    The sign is the paper's (more energy: groks sooner); either side of 0.5 is a signal."""
    y, g = np.asarray(y, bool), np.asarray(configs)
    energy, time, event = (np.asarray(a, dtype=float) for a in (energy, time, event))
    boot = dict(groups=g, n_boot=n_boot, seed=seed)
    auc = _interval(stratified_auc, y, energy, g, **boot)
    c = _interval(lambda ss, tt, ee, gg: concordance_index(ss, tt, ee.astype(bool), strata=gg),
                  energy, time, event, g, **boot)
    return {"auc": auc, "c": c, "pairs": discordant_pairs(y, g), "runs": len(y), "configurations": len(np.unique(g))}


def sweep_data(runs, *, window: int, leave: float, reach: float, min_ratio: float) -> tuple[SweepData, np.ndarray]:
    """:class:`SweepData` of the ``runs`` that grok or memorize
    (:func:`grokbook.phases.outcome` at ``leave``, ``reach``, ``min_ratio``) and whose
    first ``window`` training losses are finite, and their indices ``(n,)`` into
    ``runs``. ``runs``: :class:`~grokbook.run.Run` objects, or a ``pandas.DataFrame`` of
    records (:func:`grokbook.experiments.records.sweep_records`) made at these thresholds,
    whose recorded outcomes and t4 are then used. The energy is log10 of
    :func:`grokbook.spectral.paper_energy`; a memorizing run's time is censored at its
    last step; configuration ids are :func:`grokbook.predict.config_id`."""
    import pandas as pd

    from ..phases import outcome, run_phase_times
    from ..predict import config_id
    from ..spectral import paper_energy
    from .records import row_config

    def items():
        """(config, outcome, t4, steps done, early training loss) of each run."""
        if isinstance(runs, pd.DataFrame):
            for _, row in runs.iterrows():
                yield (row_config(row), row.outcome, None if pd.isna(row.t4) else int(row.t4), int(row.steps_done),
                       row.window)
        else:
            for run in runs:
                pt = run_phase_times(run, leave=leave, reach=reach)
                yield (run.config, outcome(pt, min_ratio, run.diverged_at is not None), pt.t4,
                       len(run.metrics["train_loss"]), run.metrics["train_loss"])

    keep, cfg, ys, times, energy = [], [], [], [], []
    for i, (config, out, t4, done, early) in enumerate(items()):
        loss = np.asarray(early[:window], dtype=np.float64)
        if out not in ("groks", "memorizes") or len(loss) < window or not np.isfinite(loss).all():
            continue
        keep.append(i)
        cfg.append(config)
        ys.append(out == "groks")
        times.append(t4 if out == "groks" else done)
        energy.append(np.log10(paper_energy(loss, window)))
    y = np.array(ys, dtype=bool)
    data = SweepData(y=y, time=np.array(times, dtype=float), event=y.copy(),
                     configs=np.array([config_id(c) for c in cfg]), seeds=np.array([c.seed for c in cfg]),
                     lr=np.array([c.lr for c in cfg]), weight_decay=np.array([c.weight_decay for c in cfg]),
                     r=np.array([c.r for c in cfg]), energy=np.array(energy, dtype=float))
    return data, np.array(keep, dtype=np.int64)


def seed_experiment_configs(data: SweepData, representatives: Mapping, *, k: int, seed_count: int, fresh_seed: int,
                            fixed_split_configs: int, n_folds: int = 5) -> dict[str, list]:
    """The seed experiment's runs: at the ``k`` configurations the held-out
    hyperparameter model leaves most open (:func:`uncertain_configurations` of its
    out-of-fold probabilities on ``data``), ``seed_count`` fresh seeds from
    ``fresh_seed`` (arm ``"seed and split"``: each sets the initialisation and the
    split), and for the first ``fixed_split_configs`` of them the same seeds with the split
    fixed at ``fresh_seed`` (arm ``"initialisation only"``). ``representatives``: a
    :class:`~grokbook.RunConfig` of each configuration id."""
    prob = cross_validate(data.hyperparameters(), data.y, data.configs, data.seeds, n_folds=n_folds).score
    chosen = uncertain_configurations(prob, data.configs, k=k)
    fresh = range(fresh_seed, fresh_seed + seed_count)
    return {"seed and split": [representatives[c].replace(seed=s, data_seed=s) for c in chosen for s in fresh],
            "initialisation only": [representatives[c].replace(seed=s, data_seed=fresh_seed)
                                    for c in chosen[:fixed_split_configs] for s in fresh]}


def records_data(records, *, window: int) -> SweepData:
    """:class:`SweepData` of offline records (a ``pandas.DataFrame`` of
    :func:`grokbook.experiments.records.read_records`): the runs whose recorded outcome
    (at the authors' thresholds) is grokking or memorizing and whose first ``window``
    training losses are recorded and finite. A memorizing run's time is censored at the
    steps it ran; configurations are (lr, weight decay, r)."""
    from ..spectral import paper_energy

    rec = records[records.outcome.isin(["groks", "memorizes"])]
    loss = [np.asarray(w, dtype=np.float64)[:window] for w in rec.window]
    ok = np.array([len(x) == window and np.isfinite(x).all() for x in loss], dtype=bool)
    rec, loss = rec[ok], [x for x, k in zip(loss, ok) if k]
    y = (rec.outcome == "groks").to_numpy()
    time = np.where(y, rec.t4.astype(float).fillna(-1).to_numpy(), rec.steps_done.to_numpy(float))
    lr, wd, r = (rec[c].to_numpy(float) for c in ("lr", "weight_decay", "r"))
    return SweepData(y=y, time=time, event=y.copy(), configs=strata(lr, wd, r), seeds=rec.seed.to_numpy(),
                     lr=lr, weight_decay=wd, r=r,
                     energy=np.array([np.log10(paper_energy(x, window)) for x in loss], dtype=float))


def measurable(data: SweepData, n_folds: int) -> bool:
    """Whether :func:`score_predictors` can score ``data``: both outcomes on at least
    two runs each, at least ``n_folds`` configurations to hold out and two seeds."""
    y = np.asarray(data.y, bool)
    return bool(min(y.sum(), (~y).sum()) >= 2 and len(np.unique(data.configs)) >= n_folds
                and len(np.unique(data.seeds)) >= 2)


def auc_by_value(y, score, values, within=None) -> dict:
    """The AUC of ``score`` for ``y`` among the runs at each distinct value of ``values``
    (all ``(n,)``), pooled over the pairs that share ``within`` (e.g. the train fraction;
    None: all pairs of that value); NaN where that value's runs (or every stratum of
    them) hold one class. ``{value: AUC}`` in ascending order of value."""
    y, s, v = np.asarray(y, bool), np.asarray(score, float), np.asarray(values)
    w = np.zeros(len(y)) if within is None else np.asarray(within)
    if not (y.shape == s.shape == v.shape == w.shape):
        raise ValueError(f"y {y.shape}, score {s.shape}, values {v.shape} and within {w.shape} must have one shape")
    out = {}
    for value in np.unique(v):
        m = v == value
        try:
            out[value.item() if hasattr(value, "item") else value] = stratified_auc(y[m], s[m], w[m])
        except ValueError:  # no stratum with both classes
            out[value.item() if hasattr(value, "item") else value] = float("nan")
    return out


def cell_means(lr, weight_decay, value, lrs, weight_decays) -> np.ndarray:
    """The mean of ``value`` (``(n,)``, NaNs skipped) over the runs of each (lr, weight
    decay) cell: ``(len(lrs), len(weight_decays))``, NaN for a cell with no finite value."""
    lr, wd, x = (np.asarray(a, dtype=float) for a in (lr, weight_decay, value))
    out = np.full((len(lrs), len(weight_decays)), np.nan)
    for i, a in enumerate(lrs):
        for j, b in enumerate(weight_decays):
            cell = x[np.isclose(lr, a) & np.isclose(wd, b)]
            cell = cell[np.isfinite(cell)]
            if len(cell):
                out[i, j] = cell.mean()
    return out


def plot_heatmaps(records, *, window: int, axes=None):
    """The paper's heatmaps from offline records: the log10 raw energy of the first
    ``window`` steps (``axes[0]``) beside the final validation accuracy (``axes[1]``),
    each the mean over seeds of an (lr, weight decay) cell; numbers written in the cells,
    the seeds recorded in brackets. Returns the figure."""
    import matplotlib.pyplot as plt

    from ..spectral import paper_energy

    lrs, wds = sorted(records.lr.unique()), sorted(records.weight_decay.unique())
    energy = [np.log10(paper_energy(np.asarray(w, dtype=np.float64)[:window], window))
              if len(w) >= window and np.isfinite(np.asarray(w[:window], dtype=float)).all() else np.nan
              for w in records.window]
    counts = np.array([[((np.isclose(records.lr, a)) & np.isclose(records.weight_decay, b)).sum() for b in wds]
                       for a in lrs])
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    for ax, value, title, cmap, fmt in (
            (axes[0], energy, f"log10 raw energy, first {window} steps", "magma", "{:.2f}"),
            (axes[1], records.final_val_acc.to_numpy(float), "final validation accuracy", "viridis", "{:.2f}")):
        m = cell_means(records.lr, records.weight_decay, value, lrs, wds)
        im = ax.imshow(m, origin="lower", cmap=cmap, aspect="auto",
                       vmin=0 if "accuracy" in title else None, vmax=1 if "accuracy" in title else None)
        for i in range(len(lrs)):
            for j in range(len(wds)):
                text = "-" if not np.isfinite(m[i, j]) else fmt.format(m[i, j])
                ax.text(j, i, f"{text}\n({counts[i, j]})", ha="center", va="center", fontsize=7,
                        color="w" if np.isfinite(m[i, j]) and im.norm(m[i, j]) < 0.5 else "k")
        ax.set_xticks(range(len(wds)), [f"{w:g}" for w in wds])
        ax.set_yticks(range(len(lrs)), [f"{a:g}" for a in lrs])
        ax.set(xlabel="weight decay", ylabel="learning rate", title=title)
        ax.grid(False)
        ax.figure.colorbar(im, ax=ax, shrink=0.85)
    return axes[0].figure


def plot_sign(grids: Mapping[str, SweepData], axes=None):
    """Where in the lr x weight-decay plane the early energy goes with grokking: for each
    grid (a row of ``axes``), the AUC of the paper's quantity for grokking against
    memorizing among the runs of each learning rate (left) and of each weight decay
    (right), pairs within one train fraction (:func:`auc_by_value`), each point labelled
    with the number of (grokking, memorizing) pairs it rests on. Above 0.5: more energy
    goes with grokking there. Returns the figure."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(len(grids), 2, figsize=(9, 2.6 * len(grids)), constrained_layout=True,
                               squeeze=False)
    for row, (name, d) in zip(axes, grids.items()):
        for ax, values, what in ((row[0], d.lr, "learning rate"), (row[1], d.weight_decay, "weight decay")):
            auc = auc_by_value(d.y, d.energy, values, d.r)
            x = np.arange(len(auc))
            ax.plot(x, list(auc.values()), "o-", color="#2e4057")
            for xi, (v, a) in zip(x, auc.items()):  # how many pairs each point rests on
                at = np.asarray(values) == v
                n = discordant_pairs(np.asarray(d.y)[at], np.asarray(d.r)[at])
                if np.isfinite(a):
                    ax.annotate(f"{n}", (xi, a), xytext=(4, 4), textcoords="offset points", fontsize=7, color="0.35")
            ax.axhline(0.5, color="0.5", ls=":", lw=0.9)
            ax.set_xticks(x, [f"{v:g}" for v in auc], fontsize=8)
            ax.set(ylim=(0, 1), xlabel=what, title=f"{name}: each {what}", xlim=(-0.5, max(len(auc), 1) - 0.5))
        row[0].set_ylabel("AUC of the raw energy\n(groks vs memorizes)")
    return axes[0][0].figure


# ------------------------------------------------------------------ chapter 9's registered rules

#: Chapter 9's registered rule: the paper's quantity is reproduced when its AUC interval
#: lies above this, reversed when it lies below ``1 - REGISTERED_AUC``.
REGISTERED_AUC = 0.6


def paper_word(lo: float, hi: float) -> str:
    """The registered verdict word of the paper's quantity from its AUC interval."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "not measurable on this sweep"
    if lo > REGISTERED_AUC:
        return "reproduced"
    if hi < 1 - REGISTERED_AUC:
        return "reversed"
    return "not reproduced"


def comparison_word(lo: float, hi: float) -> str:
    """One predictor against another from the interval of their paired AUC difference:
    better / worse when it excludes 0, else not distinguishable."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "not measurable"
    return "better" if lo > 0 else "worse" if hi < 0 else "not distinguishable"


def registered_verdict(auc: tuple[float, float, float], diff: dict, *, window: int, n_grok: int, n_mem: int,
                       n_configs: int, too_few: str = "") -> str:
    """Chapter 9's registered verdict in words: the paper's quantity by :func:`paper_word`
    from its AUC ``(estimate, low, high)``, then the book's variants against the paper's
    quantity and against the baselines, and the paper's quantity against the baselines,
    each by :func:`comparison_word` from ``diff[a, b] = (difference, low, high)`` of
    their paired AUCs. ``too_few``: why the sweep cannot decide (then the verdict is
    not testable, whatever the numbers)."""
    if too_few:
        return f"not testable: {too_few}"
    est, lo, hi = auc

    def compare(a: str, b: str) -> str:
        d = diff[a, b]
        return (f"the {a} against the {b}: {comparison_word(d[1], d[2])} "
                f"(AUC difference {d[0]:+.2f} [{d[1]:+.2f}, {d[2]:+.2f}])")

    return (f"the paper's quantity (raw energy of the first {window} steps) is {paper_word(lo, hi)}: AUC {est:.2f} "
            f"[{lo:.2f}, {hi:.2f}] for grokking against memorizing ({n_grok} grokking and {n_mem} memorizing runs "
            f"from {n_configs} configurations); "
            + "; ".join(compare(a, b) for a, b in (("book's variants", "paper's quantity"),
                                                   ("book's variants", "baselines"),
                                                   ("paper's quantity", "baselines"))))


def score_seed_arm(records, *, window: int, steps: int, n_boot: int = 1000, seed: int = 0) -> dict:
    """One arm of the seed experiment from its records (a ``pandas.DataFrame`` of
    :func:`grokbook.experiments.records.read_records`): the paper's quantity (log10 raw
    energy of the first ``window`` losses) within configurations
    (:func:`within_configurations`), over the records that grok or memorize; a grokking
    run's time is its t4 (``steps`` if missing), a memorizing run's the steps it ran.
    Returns :func:`within_configurations`'s dict with ``n_records`` and ``counts``
    (outcome to number of records) added."""
    from ..spectral import paper_energy

    rec = records[records.outcome.isin(["groks", "memorizes"])]
    e = np.log10([paper_energy(np.asarray(w[:window], dtype=float), window) for w in rec.window])
    y = (rec.outcome == "groks").to_numpy()
    t = np.where(y, rec.t4.astype(float).fillna(steps).to_numpy(), rec.steps_done.to_numpy(float))
    w = within_configurations(y, e, t, y, strata(rec.lr, rec.weight_decay, rec.r), n_boot=n_boot, seed=seed)
    return dict(w, n_records=len(records), counts=records.outcome.value_counts().to_dict())


#: The half-width the seed experiment's interval was sized for (issue 31).
SEED_HALF_WIDTH = 0.1


def seed_reading(split: Optional[tuple], init: Optional[tuple]) -> str:
    """A sentence reading the seed experiment's two arms (each ``(AUC, low, high)`` or
    None): the interval's half-width against :data:`SEED_HALF_WIDTH`, an end within 0.02
    of 0.5, and whether the arms agree on the direction."""
    fmt = lambda a: f"{a[0]:.2f} [{a[1]:.2f}, {a[2]:.2f}]"  # noqa: E731
    if split is None or not np.isfinite(split[1]):
        return "no interval could be measured for this execution's parameters."
    half = (split[2] - split[1]) / 2
    text = (f"where seed and split vary together the AUC is {fmt(split)}, an interval of half-width "
            f"{half:.2f}, {'wider' if half > SEED_HALF_WIDTH else 'no wider'} than the {SEED_HALF_WIDTH:g} this "
            f"experiment was sized for")
    init_ok = init is not None and np.isfinite(init[0])
    if init_ok:
        text += f"; where only the initialisation varies it is {fmt(init)}"
    text += "."
    if min(abs(split[1] - 0.5), abs(split[2] - 0.5)) < 0.02:
        text += (" An end of the interval lies within 0.02 of 0.5, where another bootstrap draw can move it "
                 "across: a weak signal at best.")
    if init_ok and (split[0] - 0.5) * (init[0] - 0.5) < 0:
        text += " The two arms do not agree on its direction."
    return text


def outcome_shares(records, level: float = 0.95):
    """P(grok) and P(generalize within the budget) per configuration (lr, weight decay,
    r) of offline records (a ``pandas.DataFrame`` of
    :func:`grokbook.experiments.records.read_records`), each with Wilson's interval at
    ``level`` (:func:`grokbook.stats.wilson_interval`) over the configuration's seeds.
    One row per configuration: ``lr``, ``weight_decay``, ``r``, ``runs``, ``groks``,
    ``generalizes`` (grokking or not), ``p_grok``, ``p_grok_lo``, ``p_grok_hi``,
    ``p_gen``, ``p_gen_lo``, ``p_gen_hi``."""
    import pandas as pd

    from ..stats import wilson_interval

    rows = []
    for (lr, wd, r), rec in records.groupby(["lr", "weight_decay", "r"], sort=True):
        n = len(rec)
        k_grok = int((rec.outcome == "groks").sum())
        k_gen = int(rec.outcome.isin(["groks", "generalizes"]).sum())
        (gl, gh), (nl, nh) = wilson_interval(k_grok, n, level), wilson_interval(k_gen, n, level)
        rows.append(dict(lr=lr, weight_decay=wd, r=r, runs=n, groks=k_grok, generalizes=k_gen,
                         p_grok=k_grok / n, p_grok_lo=gl, p_grok_hi=gh, p_gen=k_gen / n, p_gen_lo=nl, p_gen_hi=nh))
    return pd.DataFrame(rows)


#: The fewest runs of each outcome (grokking, memorizing) on which the chapter's primary
#: tests decide: with 10 of each an AUC's 95% interval is about +-0.25 wide, so a sweep
#: with fewer can only print intervals that decide nothing.
MIN_PER_OUTCOME = 10


def too_few_runs(n_grok: int, n_mem: int, n_configs: int, n_folds: int) -> str:
    """Why the sweep is too small for the primary tests (``""`` when it is not): fewer
    than :data:`MIN_PER_OUTCOME` grokking or memorizing runs, or fewer configurations
    than folds to hold out."""
    if min(n_grok, n_mem) >= MIN_PER_OUTCOME and n_configs >= n_folds:
        return ""
    return (f"{n_grok} grokking and {n_mem} memorizing runs from {n_configs} configurations: the primary tests "
            f"need at least {MIN_PER_OUTCOME} of each outcome and {n_folds} configurations to hold out")
