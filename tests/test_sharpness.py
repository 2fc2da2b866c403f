"""grokbook.experiments.sharpness: early sharpness on replayed runs against a dense Hessian,
the replay's check against its record, the offline files, and the leaderboard's join."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch.func import functional_call

from grokbook import RunConfig
from grokbook.experiments import leaderboard as lb
from grokbook.experiments import sharpness as sh
from grokbook.experiments.records import corpus_dir, read_records, run_record
from grokbook.trainer import loss_fn
from grokbook.training import fit

TINY = RunConfig(p=7, n_layers=1, d_model=8, n_heads=2, lr=0.01, steps=40, n_snapshots=8)
WINDOW = 30


@pytest.fixture(scope="module")
def runs():
    return [fit(TINY.replace(seed=s), progress=False) for s in (0, 1)]


def dense_extremes(run, weights):
    """The extreme eigenvalues of the dense float64 Hessian of the loss on every training
    example, independent of the Lanczos code."""
    data = run.dataset()
    model = run.model_with(weights).double()
    named = list(model.named_parameters())
    sizes = [p.numel() for _, p in named]

    def f(flat):
        ws = {k: t.view_as(p) for (k, p), t in zip(named, flat.split(sizes))}
        return loss_fn(run.config, functional_call(model, ws, (data.train_x,)), data.train_y)

    flat0 = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    eig = np.linalg.eigvalsh(torch.autograd.functional.hessian(f, flat0, vectorize=True).numpy())
    return eig[0], eig[-1]


def test_measure_replays_each_run_and_matches_a_dense_hessian(runs):
    snaps = [int(s) for s in runs[0].snapshot_steps]
    step = max(s for s in snaps if s < WINDOW)  # a snapshot step: the run kept its weights there
    frame = pd.DataFrame([run_record(r, "tiny", window=WINDOW) for r in runs])
    rows = list(sh.measure(frame, step=step, tol=1e-6, batch=2, command="c"))
    assert [r["hash"] for r in rows] == [r.config.hash() for r in runs]
    for run, row in zip(runs, rows):
        lo, hi = dense_extremes(run, run.snapshots[snaps.index(step)])
        width = hi - lo
        assert abs(row["lambda_max"] - hi) < 1e-5 * width and abs(row["lambda_min"] - lo) < 1e-5 * width
        assert row["examples"] == len(run.dataset().train_y) and row["step"] == step and row["command"] == "c"
        assert row["norm_rel_diff"] < 1e-6  # the replay is the recorded run
    assert sh.faithful(pd.DataFrame(rows)).all()


def test_a_record_of_another_run_is_caught_by_the_norm_check(runs):
    rec = run_record(runs[0], "tiny", window=WINDOW)
    rec["window_norm"] = rec["window_norm"] * np.float32(1.01)  # as if trained with other rounding
    (row,) = sh.measure(pd.DataFrame([rec]), step=WINDOW - 1, tol=1e-4)
    assert row["norm_rel_diff"] == pytest.approx(0.01 / 1.01, rel=1e-4)
    assert not sh.faithful(pd.DataFrame([row])).any()


def test_check_step_and_recorded_norm_fall_back_to_the_downsampled_curve():
    with_window = dict(hash="h", window_norm=np.arange(1.0, 401.0), curve_steps=np.array([0, 10, 300, 500]),
                       weight_norm=np.array([5.0, 6.0, 7.0, 8.0]))
    assert sh.check_step(with_window, 399) == 399 and sh.recorded_norm(with_window, 399) == 400.0
    older = dict(with_window, window_norm=None)  # a record made before the window's norms were kept
    assert sh.check_step(older, 399) == 300 and sh.recorded_norm(older, 300) == 7.0
    assert sh.check_step(older, 10) == 10
    with pytest.raises(ValueError, match="no weight norm at step 399"):
        sh.recorded_norm(older, 399)
    with pytest.raises(ValueError, match="at or before step"):
        sh.check_step(dict(older, curve_steps=np.array([500])), 399)
    assert sh.norm_agreement(older, np.array([0.0, 7.7]), 300) == pytest.approx(0.1)  # |7.7 - 7| / 7


def row(family, h, lmax, gap=0.0):
    return dict(family=family, hash=h, step=399, examples=100, lambda_min=-0.1, lambda_max=lmax,
                norm_rel_diff=gap, tol=1e-3, command="python benchmarks/early_sharpness.py", date="2026-12-07",
                machine="m", threads=1, torch_version="t")


def test_files_round_trip_and_refuse_mixed_or_repeated_runs(tmp_path):
    a = [row("fa", "h1", 2.5), row("fa", "h2", float("nan"), 3e-3)]
    sh.write_family(a, "fa", tmp_path)
    sh.write_family([row("fb", "h3", 40.0)], "fb", tmp_path)
    back = sh.read_family("fa", tmp_path)
    assert back[0] == a[0] and math.isnan(back[1]["lambda_max"]) and back[1]["norm_rel_diff"] == 3e-3
    assert sh.read_family("absent", tmp_path) == []
    frame = sh.read_sharpness(["fa", "fb", "absent"], tmp_path)
    assert list(frame["hash"]) == ["h1", "h2", "h3"]
    assert list(sh.faithful(frame)) == [True, False, True]
    with pytest.raises(ValueError, match="other families"):
        sh.write_family([row("fb", "h4", 1.0)], "fa", tmp_path)
    sh.write_family([row("fb", "h1", 1.0)], "fb", tmp_path)
    with pytest.raises(ValueError, match="measured twice"):
        sh.read_sharpness(["fa", "fb"], tmp_path)


def test_log_lambda_max_join_and_coverage():
    assert sh.log_lambda_max(100.0) == pytest.approx(2.0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        assert math.isnan(sh.log_lambda_max(bad))
    frame = pd.DataFrame(dict(family=["fa", "fa", "fb"], hash=["h1", "h2", "h3"]), index=[10, 11, 12])
    table = pd.DataFrame(dict(x=[1.0, 2.0]), index=[12, 10])  # a feature table's rows, any order
    sharp = pd.DataFrame([row("fa", "h1", 1000.0), row("fb", "h3", float("nan"))])
    joined = sh.with_sharpness(table, frame, sharp)
    assert math.isnan(joined.loc[12, "log_lambda_max"]) and joined.loc[10, "log_lambda_max"] == pytest.approx(3.0)
    assert "log_lambda_max" not in table  # a copy
    assert sh.coverage(frame, sharp) == {"fa": (1, 2), "fb": (0, 1)}


def test_gain_summary_every_branch():
    gain = {"a": (0.05, 0.01, 0.1), "b": (0.02, -0.01, 0.05), "c": (float("nan"),) * 3, "d": (0.1, 0.02, 0.2)}
    assert lb.gain_summary(gain) == "on 2 of 3 families (a, d)"
    assert lb.gain_summary({"b": gain["b"]}) == "on none of the 1 families"
    assert lb.gain_summary({}) == "on none of the 0 families"


def test_the_committed_measurements_are_of_corpus_runs_with_their_provenance():
    for family in lb.FAMILIES:
        rows = sh.read_family(family)
        if not rows:
            continue
        hashes = set(read_records(corpus_dir(family))["hash"])
        assert {r["hash"] for r in rows} <= hashes, family
        for r in rows:
            assert r["family"] == family and r["step"] == sh.STEP and r["examples"] > 0
            assert r["command"].startswith("python benchmarks/early_sharpness.py") and r["date"] and r["machine"]
            assert math.isnan(r["lambda_max"]) or r["lambda_max"] >= r["lambda_min"]


def test_live_check_agrees_with_its_own_measurement_and_not_with_a_changed_one(runs):
    rec = run_record(runs[1], "tiny", window=WINDOW)
    (measured,) = sh.measure(pd.DataFrame([rec]), step=WINDOW - 1, tol=1e-4)
    good = sh.live_check(rec, measured)
    assert good["agrees"] and good["rel_diff"] <= sh.LIVE_RTOL and good["recorded"] == measured["lambda_max"]
    assert "agrees with its record" in sh.live_check_text(good)
    bad = sh.live_check(rec, dict(measured, lambda_max=measured["lambda_max"] * 1.01))
    assert not bad["agrees"] and bad["rel_diff"] == pytest.approx(0.01 / 1.01, rel=1e-6)
    assert "does NOT agree" in sh.live_check_text(bad)
    assert sh.live_check_text(None) == "No run was re-measured in this build."
    with pytest.raises(ValueError, match="different runs"):
        sh.live_check(rec, dict(measured, hash="other"))
