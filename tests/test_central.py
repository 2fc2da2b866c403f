"""The central-claim analysis on planted sweeps (no training): a confounded grid where the
energy carries nothing beyond the learning rate, and a signal planted within
configurations; every verdict branch on hand-built rows."""

import numpy as np
import pytest

from grokbook.experiments.central import (SweepData, adds_to_hyperparameters, discordant_pairs, lr_artefact,
                                          ranks_outcomes, ranks_seeds, score_predictors)


def _sweep(planted: float, seed: int = 0) -> SweepData:
    rng = np.random.default_rng(seed)
    lrs, wds, seeds = [1e-3, 2e-3, 5e-3, 1e-2], [0.25, 0.5, 1.0, 2.0], range(8)
    rows = [(lr, wd, s) for lr in lrs for wd in wds for s in seeds]
    lr, wd, sd = (np.array(c, dtype=float) for c in zip(*rows))
    logit = -4.0 * (np.log10(lr) + 2.5) + 0.5 * np.log10(wd)
    y = rng.random(len(lr)) < 1 / (1 + np.exp(-logit))
    # the energy falls with lr (a faster fall from log p) and, if planted, rises for grokking seeds
    energy = -np.log10(lr) + 0.05 * rng.normal(size=len(lr)) + planted * y
    time = np.where(y, rng.integers(200, 2000, len(lr)), 2000).astype(float)
    configs = np.array([f"{a}-{b}" for a, b in zip(lr, wd)])
    return SweepData(y=y, time=time, event=y.copy(), configs=configs, seeds=sd.astype(int), lr=lr,
                     weight_decay=wd, r=np.full(len(lr), 0.5), energy=energy)


def _by_name(rows):
    return {r["name"]: r for r in rows}


def test_a_confounded_grid_is_an_lr_artefact():
    d = _sweep(planted=0.0)
    rows = score_predictors(d, {}, n_boot=200)
    r = _by_name(rows)
    assert r["paper's quantity, sign a priori"]["auc"] > 0.7          # pooled, it looks predictive
    assert abs(r["paper's quantity within lr"]["auc"] - 0.5) < 0.1     # within lr, it is not
    inc = r["increment: (hyperparameters + energy) - hyperparameters"]
    assert abs(inc["auc"]) < 0.03 and inc["auc_lo"] <= 0 <= inc["auc_hi"]
    assert adds_to_hyperparameters(rows).word == "undecided"
    assert lr_artefact(rows) is True
    assert ranks_outcomes(rows).word == "reproduced"                   # it does rank, through lr


def test_a_signal_planted_within_configurations_is_found():
    d = _sweep(planted=0.3)
    rows = score_predictors(d, {"energy again": ("paper", d.energy[:, None])}, n_boot=200)
    r = _by_name(rows)
    w = r["paper's quantity within configurations"]
    assert w["auc_lo"] > 0.8
    inc = r["increment: (hyperparameters + energy) - hyperparameters"]
    assert inc["auc_lo"] > 0 and adds_to_hyperparameters(rows).word == "reproduced"
    assert lr_artefact(rows) is False
    assert r["hyperparameters + energy"]["c"] > r["hyperparameters only"]["c"]
    assert r["energy again"]["auc"] == pytest.approx(r["paper's quantity, sign learned"]["auc"])
    n = discordant_pairs(d.y, d.configs)
    assert ranks_seeds(w["auc"], w["auc_lo"], w["auc_hi"], n).word == "reproduced"


def test_verdict_branches_on_hand_built_rows():
    def rows(p=(0.7, 0.6, 0.8), learned=(0.6, 0.55, 0.65), inc=(0.0, -0.02, 0.02), within=(0.5, 0.4, 0.6)):
        mk = lambda name, v: dict(name=name, auc=v[0], auc_lo=v[1], auc_hi=v[2])
        return [mk("paper's quantity, sign a priori", p), mk("paper's quantity, sign learned", learned),
                mk("increment: (hyperparameters + energy) - hyperparameters", inc),
                mk("paper's quantity within configurations", within)]
    assert lr_artefact(rows()) is True
    assert lr_artefact(rows(p=(0.5, 0.4, 0.6))) is False                 # pooled holds 0.5
    assert lr_artefact(rows(inc=(0.05, 0.01, 0.09))) is False            # it adds
    assert lr_artefact(rows(within=(0.7, 0.6, 0.8))) is False            # it ranks seeds
    assert lr_artefact(rows(within=(np.nan,) * 3)) is None
    assert ranks_outcomes(rows()).word == "reproduced"
    assert ranks_outcomes(rows(learned=(0.5, 0.45, 0.55))).word == "undecided"
    assert adds_to_hyperparameters(rows(inc=(0.05, 0.01, 0.09))).word == "reproduced"
    assert adds_to_hyperparameters(rows(inc=(-0.05, -0.09, -0.01))).word == "reversed"
    assert ranks_seeds(0.6, 0.55, 0.65, 29).word == "not testable"      # too few pairs
    assert ranks_seeds(0.4, 0.3, 0.45, 30).word == "reproduced"         # either sign
    assert ranks_seeds(0.5, 0.4, 0.6, 100).word == "undecided"


def test_bad_sweep_data_is_refused():
    d = _sweep(0.0)
    with pytest.raises(ValueError, match="energy holds non-finite"):
        SweepData(**{**d.__dict__, "energy": np.where(np.arange(len(d.y)) == 0, np.nan, d.energy)})
    with pytest.raises(ValueError, match="time has shape"):
        SweepData(**{**d.__dict__, "time": d.time[:-1]})


def test_uncertain_configurations_and_within_configuration_signal():
    from grokbook.experiments.central import uncertain_configurations, within_configurations

    prob = np.array([0.1, 0.2, 0.45, 0.55, 0.5, 0.52, 0.9, 0.65, 0.35])
    g = np.array(["a", "a", "b", "b", "c", "c", "d", "e", "f"])
    assert uncertain_configurations(prob, g, k=3) == ["b", "c", "e"]      # e and f tie: by id
    assert uncertain_configurations(prob, g, k=10) == ["b", "c", "e", "f"]
    assert "a" not in uncertain_configurations(prob, g) and "d" not in uncertain_configurations(prob, g)
    # planted: within each configuration, grokking seeds have more energy
    rng = np.random.default_rng(0)
    cfg = np.repeat(np.arange(8), 16)
    y = rng.random(len(cfg)) < 0.5
    base = rng.normal(size=8)[cfg] * 5                     # configurations differ a lot
    energy = base + 1.5 * y + 0.5 * rng.normal(size=len(cfg))
    time = np.where(y, 500.0, 2000.0)
    w = within_configurations(y, energy, time, y, cfg, n_boot=200)
    assert w["auc"][1] > 0.8 and w["c"][1] > 0.8 and w["configurations"] == 8
    null = within_configurations(y, base + 0.5 * rng.normal(size=len(cfg)), time, y, cfg, n_boot=200)
    assert null["auc"][1] < 0.5 < null["auc"][2]


# ------------------------------------------------------------------ offline records, the sign picture


def _records(n_steps=64):
    """Hand-built records: two lrs x two wds x two seeds; outcomes set by hand."""
    import pandas as pd

    rng = np.random.default_rng(1)
    rows = []
    outcomes = ["groks", "memorizes", "groks", "never fits", "memorizes", "groks", "memorizes", "memorizes"]
    for k, (lr, wd, seed) in enumerate([(a, b, s) for a in (1e-3, 3e-3) for b in (0.0, 1.0) for s in (0, 1)]):
        window = (np.exp(-np.linspace(0, 3, n_steps)) * (1 + 0.1 * rng.random(n_steps))).astype(np.float32)
        out = outcomes[k]
        rows.append(dict(lr=lr, weight_decay=wd, r=0.5, seed=seed, window=window, outcome=out,
                         t4=float(100 + k) if out == "groks" else np.nan, steps_done=500,
                         final_val_acc=0.1 * k))
    return pd.DataFrame(rows)


def test_records_data_takes_grokking_and_memorizing_records():
    from grokbook.experiments.central import records_data
    from grokbook.spectral import paper_energy

    rec = _records()
    d = records_data(rec, window=32)
    keep = rec[rec.outcome != "never fits"]
    assert len(d.y) == 7 and list(d.y) == list(keep.outcome == "groks")
    assert list(d.time) == [100.0 + k if o == "groks" else 500.0 for k, o in zip(keep.index, keep.outcome)]
    assert (d.event == d.y).all()
    e0 = np.log10(paper_energy(np.asarray(keep.window.iloc[0], dtype=float)[:32], 32))
    assert d.energy[0] == pytest.approx(e0)
    assert len(set(d.configs)) == 4 and set(d.seeds) == {0, 1}
    assert len(records_data(rec, window=65).y) == 0  # a window longer than the record's: no run


def test_measurable_needs_both_outcomes_configurations_and_seeds():
    from grokbook.experiments.central import measurable

    d = _sweep(0.0)
    assert measurable(d, 5)
    assert not measurable(d, 17)  # 16 configurations
    one_seed = SweepData(**{**d.__dict__, "seeds": np.zeros(len(d.y), int)})
    assert not measurable(one_seed, 5)


def test_auc_by_value_against_a_direct_auc():
    """Each value's AUC is sklearn's AUC on that value's runs (one stratum); a value whose
    runs hold one class is NaN; within strata only same-stratum pairs count."""
    from sklearn.metrics import roc_auc_score

    from grokbook.experiments.central import auc_by_value

    rng = np.random.default_rng(0)
    v = np.repeat([1.0, 2.0, 3.0], 20)
    y = rng.random(60) < 0.5
    y[v == 3.0] = True
    s = rng.normal(size=60) + y * (v == 1.0)
    got = auc_by_value(y, s, v)
    for value in (1.0, 2.0):
        assert got[value] == pytest.approx(roc_auc_score(y[v == value], s[v == value]))
    assert np.isnan(got[3.0]) and list(got) == [1.0, 2.0, 3.0]
    # a score that is the stratum only says nothing within strata
    strat = np.tile([0, 1], 30)
    assert auc_by_value(y, strat.astype(float), v, within=strat)[1.0] == pytest.approx(0.5)


def test_cell_means_against_pandas():
    import pandas as pd

    from grokbook.experiments.central import cell_means

    rec = _records()
    m = cell_means(rec.lr, rec.weight_decay, rec.final_val_acc, [1e-3, 3e-3, 5e-3], [0.0, 1.0])
    oracle = rec.groupby(["lr", "weight_decay"]).final_val_acc.mean()
    for i, a in enumerate([1e-3, 3e-3]):
        for j, b in enumerate([0.0, 1.0]):
            assert m[i, j] == pytest.approx(oracle[(a, b)])
    assert np.isnan(m[2]).all()


def test_heatmaps_and_sign_figures_draw():
    import matplotlib.pyplot as plt

    from grokbook.experiments.central import plot_heatmaps, plot_sign, records_data

    rec = _records()
    fig = plot_heatmaps(rec, window=32)
    assert len(fig.axes) == 4  # two maps, two colour bars
    plt.close(fig)
    fig = plot_sign({"book": _sweep(0.0), "bridge": records_data(rec, window=32)})
    assert len(fig.axes) == 4
    plt.close(fig)


# ------------------------------------------------------------------ chapter 9's registered rules


@pytest.mark.parametrize("lo, hi, word", [
    (0.61, 0.8, "reproduced"), (0.6, 0.8, "not reproduced"),  # the rule is strict: the interval lies above 0.6
    (0.2, 0.39, "reversed"), (0.2, 0.4, "not reproduced"),
    (0.45, 0.55, "not reproduced"), (np.nan, 0.5, "not measurable on this sweep")])
def test_paper_word_every_branch_at_its_edges(lo, hi, word):
    from grokbook.experiments.central import REGISTERED_AUC, paper_word

    assert REGISTERED_AUC == 0.6
    assert paper_word(lo, hi) == word


@pytest.mark.parametrize("lo, hi, word", [(0.01, 0.2, "better"), (0.0, 0.2, "not distinguishable"),
                                          (-0.2, -0.01, "worse"), (-0.2, 0.0, "not distinguishable"),
                                          (np.nan, 0.1, "not measurable")])
def test_comparison_word_every_branch(lo, hi, word):
    from grokbook.experiments.central import comparison_word

    assert comparison_word(lo, hi) == word


def test_seed_reading_branches():
    from grokbook.experiments.central import seed_reading

    assert seed_reading(None, None).startswith("no interval")
    narrow = seed_reading((0.7, 0.61, 0.79), (0.65, 0.5, 0.8))
    assert "half-width 0.09, no wider than the 0.1" in narrow and "only the initialisation" in narrow
    assert "do not agree" not in narrow and "within 0.02" not in narrow
    wide = seed_reading((0.68, 0.51, 0.79), (0.36, 0.23, 0.54))
    assert "half-width 0.14, wider" in wide and "within 0.02 of 0.5" in wide and "do not agree" in wide


def test_score_seed_arm_finds_a_signal_planted_within_configurations():
    """Records whose energy is higher for the grokking seeds of each configuration: the
    pooled within-configuration AUC is 1; the same from within_configurations directly."""
    import pandas as pd

    from grokbook.experiments.central import score_seed_arm, within_configurations
    from grokbook.spectral import paper_energy

    rng = np.random.default_rng(0)
    rows = []
    for c, (lr, wd) in enumerate([(1e-3, 1.0), (2e-3, 1.0), (1e-3, 0.5)]):
        for s in range(6):
            groks = s % 2 == 0
            amp = 0.05 * (2.0 if groks else 1.0) * (1 + 0.1 * rng.random())
            w = np.exp(-np.linspace(0, 2, 64)) + amp * np.sin(np.arange(64) * 2.5)
            rows.append(dict(lr=lr, weight_decay=wd, r=0.5, seed=s, window=w, steps_done=300,
                             outcome="groks" if groks else "memorizes", t4=100.0 + s if groks else np.nan))
    rows.append(dict(lr=1e-3, weight_decay=1.0, r=0.5, seed=9, window=np.zeros(64), steps_done=10,
                     outcome="never fits", t4=np.nan))
    rec = pd.DataFrame(rows)
    got = score_seed_arm(rec, window=64, steps=300, n_boot=50)
    assert got["auc"][0] == pytest.approx(1.0) and got["pairs"] == 27 and got["n_records"] == 19
    assert got["counts"] == {"groks": 9, "memorizes": 9, "never fits": 1}
    kept = rec[rec.outcome != "never fits"]
    e = np.log10([paper_energy(np.asarray(w, float), 64) for w in kept.window])
    y = (kept.outcome == "groks").to_numpy()
    t = np.where(y, kept.t4.fillna(300).to_numpy(), 300.0)
    direct = within_configurations(y, e, t, y, np.array([f"{a}|{b}" for a, b in zip(kept.lr, kept.weight_decay)]),
                                   n_boot=50)
    assert got["auc"][0] == direct["auc"][0] and got["c"][0] == pytest.approx(direct["c"][0])


def test_outcome_shares_counts_and_wilson_intervals():
    from grokbook.experiments.central import outcome_shares
    from grokbook.stats import wilson_interval

    rec = _records()
    t = outcome_shares(rec).set_index(["lr", "weight_decay"])
    assert len(t) == 4 and (t.runs == 2).all()
    # the hand-built outcomes: (1e-3, 0): groks, memorizes; (1e-3, 1): groks, never fits
    assert t.loc[(1e-3, 0.0), "groks"] == 1 and t.loc[(1e-3, 1.0), "generalizes"] == 1
    assert t.loc[(3e-3, 1.0), "p_grok"] == 0.0
    assert (t.loc[(1e-3, 0.0), ["p_grok_lo", "p_grok_hi"]].tolist()
            == pytest.approx(list(wilson_interval(1, 2))))


def test_too_few_runs_at_its_edges():
    from grokbook.experiments.central import MIN_PER_OUTCOME, too_few_runs

    assert too_few_runs(MIN_PER_OUTCOME, MIN_PER_OUTCOME, 5, 5) == ""
    assert "9 grokking and 10 memorizing runs" in too_few_runs(MIN_PER_OUTCOME - 1, MIN_PER_OUTCOME, 5, 5)
    assert too_few_runs(10, MIN_PER_OUTCOME - 1, 5, 5)
    assert "5 configurations to hold out" in too_few_runs(50, 50, 4, 5)


def test_sweep_data_of_records_is_that_of_their_runs(tiny):
    """The oracle: the same runs' SweepData computed from the Run objects. At a low
    'reach' (60%) so that some of these small runs count as grokking."""
    import pandas as pd

    from grokbook import train
    from grokbook.experiments.central import sweep_data
    from grokbook.experiments.records import run_record
    from grokbook.experiments.thresholds import AUTHORS
    from grokbook.predict import config_id

    runs = [train(tiny.replace(steps=400, r=r, lr=1e-2, weight_decay=wd, seed=s, data_seed=s))
            for r, wd in ((0.9, 1.0), (0.9, 3.0), (0.7, 3.0)) for s in (0, 1)]
    levels = dict(leave=0.05, reach=0.6, min_ratio=1.0)
    at = AUTHORS.replace(reach=0.6, delay=1.0)
    frame = pd.DataFrame([run_record(r, "tiny", window=100, thresholds=at) for r in runs])
    a, ia = sweep_data(runs, window=100, **levels)
    b, ib = sweep_data(frame, window=100, **levels)
    assert a.y.any() and not a.y.all()  # both outcomes
    assert (ia == ib).all()
    for name in ("y", "time", "event", "configs", "seeds", "lr", "weight_decay", "r", "energy"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert list(a.configs) == [config_id(runs[i]) for i in ia]


def test_registered_verdict_reads_each_interval():
    from grokbook.experiments import central as c

    diff = {("book's variants", "paper's quantity"): (0.29, 0.2, 0.4),
            ("book's variants", "baselines"): (-0.1, -0.2, 0.05),
            ("paper's quantity", "baselines"): (-0.3, -0.4, -0.2)}
    v = c.registered_verdict((0.33, 0.27, 0.38), diff, window=400, n_grok=124, n_mem=205, n_configs=105)
    assert v.startswith("the paper's quantity (raw energy of the first 400 steps) is reversed: AUC 0.33 [0.27, 0.38]")
    assert "(124 grokking and 205 memorizing runs from 105 configurations)" in v
    assert "the book's variants against the paper's quantity: better (AUC difference +0.29 [+0.20, +0.40])" in v
    assert "the book's variants against the baselines: not distinguishable" in v
    assert v.endswith("the paper's quantity against the baselines: worse (AUC difference -0.30 [-0.40, -0.20])")
    assert c.registered_verdict((0.7, 0.62, 0.8), diff, window=400, n_grok=1, n_mem=1, n_configs=1).split(": AUC")[0] \
        .endswith("is reproduced")
    assert c.registered_verdict((0.5, 0.4, 0.6), diff, window=400, n_grok=1, n_mem=1, n_configs=1, too_few="2 runs") \
        == "not testable: 2 runs"
