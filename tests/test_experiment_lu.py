"""grokbook.experiments.lu: the transformer sweep's grid and configs, its rows against
hand computations on a trained run, w_c and delays on planted rows, and every branch of
chapter 8's verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from grokbook import RunConfig
from grokbook.experiments import lu
from grokbook.training import fit


@pytest.fixture(scope="module")
def small():
    return RunConfig(p=7, n_layers=1, d_model=8, n_heads=2, layer_norm=False, lr=0.01, steps=120, n_snapshots=4)


def test_initial_norm_is_the_runs_first_norm_and_the_grid_is_geometric(small):
    run = fit(small.replace(steps=1), progress=False)
    assert lu.initial_norm(small) == pytest.approx(run.metrics["weight_norm"][0], rel=1e-6)
    norms = lu.transformer_norms(small)
    w0 = round(lu.initial_norm(small))
    assert len(norms) == 11 and norms[0] == pytest.approx(0.2 * w0, abs=0.005)
    assert norms[-1] == pytest.approx(0.8 * w0, abs=0.005)
    assert np.allclose(np.diff(np.log(norms)), np.log(4) / 10, atol=2e-3)   # a factor 1.149, to the rounding
    assert all(round(w, 2) == w for w in norms)


def test_transformer_configs_per_seed(small):
    named = lu.transformer_configs(small, [0, 3])
    assert len(named) == 2 * 13
    free = [c for arm, c in named if arm == "free"]
    assert free == [small.replace(seed=0, data_seed=0), small.replace(seed=3, data_seed=3)]
    ctrl = [c for arm, c in named if arm == "control"]
    assert all(c.weight_decay == 0 and c.fixed_norm == 0 for c in ctrl)
    fixed = [c for arm, c in named if arm == "fixed" and c.seed == 3]
    assert [c.fixed_norm for c in fixed] == list(lu.transformer_norms(small))
    assert all(c.weight_decay == 0 and c.data_seed == 3 for c in fixed)


def test_measure_against_the_runs_curves(small, tmp_path):
    run = fit(small, progress=False)
    row = lu.measure(run, "free", dict(reach=0.99, target=0.9))
    acc = np.asarray(run.metrics["train_acc"])
    hit = np.flatnonzero(acc >= 0.99)
    assert row["t2"] == (int(hit[0]) if len(hit) else -1)
    vhit = np.flatnonzero(np.asarray(run.val_acc) >= 0.9)
    assert row["t_gen"] == (int(run.val_steps[vhit[0]]) if len(vhit) else -1)
    assert row["check_loss"] == run.metrics["train_loss"][lu.CHECK_STEP - 1]
    assert row["final_val_loss"] == run.val_loss[-1] and row["norm_end"] == run.metrics["weight_norm"][-1]
    assert lu.read_pool(lu.write_pool([row], tmp_path / "t.csv")) == [row]


def rows_of_seed(seed, val_losses, t_fixed, t_free, t_ctrl, norms=(10.0, 20.0, 40.0)):
    rows = [dict(seed=seed, arm="fixed", fixed_norm=w, t2=t_fixed[0] if w == norms[int(np.argmin(val_losses))] else 5,
                 t_gen=t_fixed[1] if w == norms[int(np.argmin(val_losses))] else -1, final_train_loss=0.01,
                 final_val_loss=v, final_train_acc=1.0, final_val_acc=0.5) for w, v in zip(norms, val_losses)]
    rows += [dict(seed=seed, arm="free", t2=t_free[0], t_gen=t_free[1]), dict(seed=seed, arm="control", t2=t_ctrl[0],
                                                                             t_gen=t_ctrl[1])]
    return rows


def test_w_c_and_delays_on_planted_rows():
    rows = rows_of_seed(0, [3.0, 0.5, 2.0], (10, 60), (50, 2050), (40, -1))
    assert lu.w_c_of(rows, 0) == 20.0   # the grid norm itself, not a refined one
    assert lu.delays(rows, 0) == {"fixed": 50, "free": 2000, "control": None}
    c = lu.curves_of(rows, 0)
    assert list(c.norms) == [10.0, 20.0, 40.0] and list(c.test_loss) == [3.0, 0.5, 2.0]
    with pytest.raises(ValueError, match="lacks the rows"):
        lu.delays([r for r in rows if r["arm"] != "control"], 0)
    with pytest.raises(ValueError, match="no fixed-norm rows"):
        lu.curves_of(rows, 1)


@pytest.mark.parametrize("fixed, control, word", [
    ({0: 100, 1: 300}, {0: None, 1: None}, "reproduced"),
    ({0: 100, 1: 900}, {0: None, 1: None}, "partly reproduced"),
    ({0: 100, 1: 1500}, {0: None, 1: None}, "not reproduced"),
    ({0: None, 1: 100}, {0: None, 1: None}, "not reproduced"),
    ({0: 100, 1: 100}, {0: 300, 1: None}, "undecided"),
])
def test_elimination_verdict_every_branch(fixed, control, word):
    v = lu.elimination_verdict(fixed, {0: 2000, 1: 2000}, control, gap="delays ...")
    assert v.word == word and v.reason.endswith(": delays ...")


def test_elimination_verdict_needs_the_same_seeds():
    assert lu.elimination_verdict({0: 1}, {1: 2}, {0: 3}).word == "not testable"
    assert lu.shorter(100, 0, 0.2) is False and lu.shorter(0, 0, 0.2) is True   # a reference of 0 counts as 1 step


def test_lu_drift_and_induction_verdicts_every_branch():
    t, f = {0: True, 1: True}, {0: False, 1: False}
    w = {0: 20.0, 1: 24.0}
    assert lu.lu_verdict(t, t, f, f, w).word == "reproduced"
    assert lu.lu_verdict(t, t, {0: True, 1: False}, f, w).word == "undecided"
    assert lu.lu_verdict(t, {0: True, 1: False}, f, f, w).word == "not reproduced"
    assert "w_c = 20.0, 24.0" in lu.lu_verdict(t, t, f, f, w).reason
    assert lu.drift_verdict(t, f, t, f, 1.25).word == "reproduced"
    assert "fitted above 1.25 w_c" in lu.drift_verdict(t, f, t, f, 1.25).reason
    assert lu.drift_verdict(t, {0: True, 1: False}, t, f, 1.25).word == "undecided"
    v = lu.drift_verdict({0: True, 1: False}, f, t, {0: True, 1: False}, 1.25, "norms ...")
    assert v.word == "not reproduced" and "1 of 2 seeds: norms ..." in v.reason and "(control) 1 of 2" in v.reason
    assert lu.induction_verdict(t, f).word == "reproduced"
    assert lu.induction_verdict(t, {0: False, 1: True}).word == "undecided"
    assert lu.induction_verdict({0: True, 1: False}, f).word == "not reproduced"
    assert lu.induction_verdict({0: True}, {0: False}).word == "not testable"


@pytest.mark.parametrize("n_big, n_small, word", [
    (8, 0, "reproduced"), (7, 0, "reproduced"), (6, 0, "undecided"), (8, 8, "undecided"),
    (0, 0, "not reproduced"), (1, 0, "not reproduced"), (2, 0, "undecided"),
])
def test_induction_share_verdict_against_wilson(n_big, n_small, word):
    from scipy.stats import binomtest

    v = lu.induction_share_verdict(n_big, n_small, 8)
    assert v.word == word
    # the rule's boundaries, by an independent interval (Wilson's, from scipy)
    ci = binomtest(n_big, 8).proportion_ci(0.95, method="wilson")
    assert (word == "reproduced") == (ci.low > 0.5 and n_small / 8 < ci.low)
    assert (word == "not reproduced") == (ci.high < 0.5)


def test_digit_times_and_rows(tmp_path):
    config = RunConfig(task="digits", r=0.5, model="mlp", n_layers=2, d_mlp=32, loss="mse", lr=0.01, warmup_steps=0,
                       steps=150, n_snapshots=4)
    run = fit(config, progress=False)
    t2, t4, v2 = lu.digit_times(run, dict(leave=0.2, reach=0.99, target=0.6))
    acc = np.asarray(run.metrics["train_acc"])
    hit = np.flatnonzero(acc >= 0.99)
    assert t2 == (int(hit[0]) if len(hit) else None)
    row = lu.measure_digits(run, "large init", dict(leave=0.2, reach=0.99, target=0.6))
    assert lu.digits_times_of(row)[:2] == (t2, t4)
    assert lu.read_digits(lu.write_digits([row], tmp_path / "d.csv")) == [row]


def test_the_pool_is_measured_at_chapter_8s_defaults():
    """benchmarks/pool.py's lu and digits parts train chapter 8's defaults (its digits
    MLP, chapter 1's transformer on chapter 1's seeds) with its settings: else the
    chapter would never read them."""
    import importlib.util
    from pathlib import Path

    from grokbook.notebooks import get_chapter

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "pool.py"
    spec = importlib.util.spec_from_file_location("pool", path)
    pool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pool)
    d = {k: par.default for k, par in get_chapter("lu").parameters.items()}
    assert pool.DIGITS == RunConfig(task="digits", r=d["digits_r"], model="mlp", n_layers=2, d_mlp=d["digits_width"],
                                    loss="mse", init_scale=d["digits_init_scale"], lr=d["digits_lr"],
                                    weight_decay=d["digits_wd"], warmup_steps=0, steps=d["digits_steps"], n_snapshots=4)
    assert lu.DIGITS_SETTINGS == dict(leave=d["leave"], reach=d["reach"], target=d["digits_target"])
    assert lu.POOL_SETTINGS == dict(reach=d["reach"], target=d["val_target"])
    assert set(d["seeds"]) < set(lu.DIGITS_SEEDS)
    c1 = {k: par.default for k, par in get_chapter("grokking").parameters.items()}
    assert c1["seeds"] == [0, 1, 2]   # the transformer part's seeds and model
    from grokbook.omnigrok import run_config_of
    assert run_config_of(c1) == pool.CONFIG


def test_norm_fall_text_every_branch():
    assert lu.norm_fall_text(30.0, 22.5) == "consistent: the norm falls from 30.0 at t2 to 22.5 at t4 (one run)"
    assert lu.norm_fall_text(22.5, 30.0).startswith("not observed: the norm does not fall (22.5 at t2, 30.0")
    assert lu.norm_fall_text(30.0, None) == "not observed: the run did not both memorize and generalize"
    assert lu.norm_fall_text(None, 30.0) == "not observed: the run did not both memorize and generalize"
