"""Offline per-run records: what a record holds, and a round trip through Parquet."""

import numpy as np
import pandas as pd
import pytest

from grokbook import RunStore, sweep, train
from grokbook.experiments import records
from grokbook.experiments.records import (compact, downsample_index, live_check, live_check_text, live_config,
                                         read_records, run_record, sweep_records, write_record, write_records)
from grokbook.predict import FEATURES, feature_matrix, record_features
from grokbook.experiments.thresholds import AUTHORS


def test_downsample_index():
    assert (downsample_index(50, 200) == np.arange(50)).all()
    i = downsample_index(10_000, 200)
    assert i[0] == 0 and i[-1] == 9_999 and (np.diff(i) > 0).all() and 150 <= len(i) <= 201
    assert (i < 100).sum() > (i > 9_000).sum()  # dense early


def test_a_record_round_trips_and_holds_the_run(tiny, tmp_path):
    run = train(tiny.replace(steps=60))
    rec = run_record(run, "tiny", window=30, n_points=20, command="pytest")
    assert rec["family"] == "tiny" and rec["command"] == "pytest" and rec["p"] == tiny.p
    np.testing.assert_array_equal(rec["window"], run.metrics["train_loss"][:30].astype(np.float32))
    t = AUTHORS.times(run)
    assert (rec["t1"], rec["t2"], rec["t3"], rec["t4"]) == (t.t1, t.t2, t.t3, t.t4)
    assert rec["outcome"] == AUTHORS.outcome(run)
    assert rec["time"] == (t.t4 if t.t4 is not None else 60) and rec["event"] == (t.t4 is not None)
    write_record(tmp_path, rec)
    write_record(tmp_path, run_record(train(tiny.replace(steps=60, seed=1)), "tiny"))
    frame = read_records(tmp_path)
    assert len(frame) == 2 and set(frame["seed"]) == {0, 1}
    row = frame[frame["seed"] == 0].iloc[0]
    np.testing.assert_array_equal(row["window"], rec["window"])
    np.testing.assert_array_equal(row["val_steps"], rec["val_steps"])
    assert row["final_val_acc"] == rec["final_val_acc"] and row["beta2"] == tiny.betas[1]
    assert not list(tmp_path.glob(".tmp-*"))
    assert read_records(tmp_path / "none").empty
    # merged into one file: the same frame; a run in two files counts once
    compact(tmp_path, "tiny")
    assert [p.name for p in tmp_path.glob("*.parquet")] == ["tiny.parquet"]
    again = read_records(tmp_path)
    assert list(again.hash) == list(frame.hash)
    write_record(tmp_path, rec)
    assert len(read_records(tmp_path)) == 2
    write_records(tmp_path / "other", [rec, rec | {"hash": "x"}], "two")
    assert len(read_records(tmp_path / "other")) == 2


def test_a_record_keeps_every_step_of_the_early_window(tiny):
    run = train(tiny.replace(steps=60))
    rec = run_record(run, "tiny", window=30)
    np.testing.assert_array_equal(rec["window_acc"], run.metrics["train_acc"][:30].astype(np.float32))
    np.testing.assert_array_equal(rec["window_norm"], run.metrics["weight_norm"][:30].astype(np.float32))
    early = run.val_steps < 30
    assert early.sum() >= 2 and (rec["window_val_steps"] == run.val_steps[early]).all()
    np.testing.assert_array_equal(rec["window_val_loss"], run.val_loss[early].astype(np.float32))


def test_a_records_features_are_its_runs(tiny, tmp_path):
    """The oracle: the features computed from the Run itself (float64 curves)."""
    runs = [train(tiny.replace(steps=80, seed=s, lr=lr)) for s, lr in ((0, 3e-3), (1, 1e-2))]
    frame = pd.DataFrame([run_record(r, "tiny", window=60) for r in runs])
    write_records(tmp_path, list(frame.to_dict("records")), "tiny")
    frame = read_records(tmp_path).set_index("hash", drop=False).loc[[r.config.hash() for r in runs]]
    for n in (20, 40, 60):
        X_runs, ok_runs = feature_matrix(runs, n, FEATURES)
        X_rec, ok_rec = feature_matrix(frame, n, FEATURES)
        assert ok_runs.all() and ok_rec.all()
        np.testing.assert_allclose(X_rec, X_runs, rtol=1e-4, atol=1e-6)  # float32 rounding of the curves
    with pytest.raises(ValueError, match="fewer than 61"):
        record_features(frame.iloc[0], 61)


def test_sweep_records_reads_the_family_only_when_it_holds_the_design(tiny, tmp_path):
    configs = [tiny.replace(steps=60, seed=s) for s in (0, 1)]
    store = RunStore(tmp_path / "store")
    recorded = [run_record(r, "tiny", window=30) for r in sweep(configs, store=store)]
    write_records(tmp_path / "tiny", recorded, "tiny")
    empty = RunStore(tmp_path / "empty")
    frame, source = sweep_records(configs[::-1], "tiny", window=30, store=empty, directory=tmp_path / "tiny")
    assert source == "records" and list(frame.hash) == [c.hash() for c in configs[::-1]]
    assert not list((tmp_path / "empty").rglob("run.bin"))  # nothing trained
    np.testing.assert_array_equal(frame.window.iloc[1], recorded[0]["window"])
    # a config outside the records, a longer window, other thresholds: trained here
    for kwargs, cfgs in ((dict(window=30), configs + [tiny.replace(steps=60, seed=2)]),
                         (dict(window=40), configs),
                         (dict(window=30, thresholds=AUTHORS.replace(leave=0.2)), configs)):
        frame, source = sweep_records(cfgs, "tiny", store=store, directory=tmp_path / "tiny", **kwargs)
        assert source == "trained" and list(frame.hash) == [c.hash() for c in cfgs]
        assert len(frame.window.iloc[0]) == kwargs["window"]
    t = AUTHORS.replace(leave=0.2).times(store.load(configs[0]))
    assert (frame.t1.iloc[0], frame.t3.iloc[0]) == (t.t1, t.t3)
    with pytest.raises(ValueError, match="no configurations"):
        sweep_records([], "tiny")


def test_live_check_agrees_with_a_true_record_and_not_with_a_changed_one(tiny, tmp_path):
    configs = [tiny.replace(steps=60, seed=s) for s in (0, 1)]
    frame = pd.DataFrame([run_record(r, "tiny", window=30) for r in sweep(configs, store=RunStore(tmp_path / "a"))])
    frame.loc[1, "outcome"] = "groks"
    assert live_config(frame, configs) == configs[1]  # the first recorded as grokking
    assert live_config(frame.assign(outcome="memorizes"), configs) == configs[0]
    fresh = RunStore(tmp_path / "b")  # re-trained from nothing
    check = live_check(frame, configs[0], store=fresh)
    assert check["agrees"] and check["max_rel_diff"] == 0.0 and check["live_final"] == check["recorded_final"]
    assert check["trained"] and "bit for bit" in live_check_text(check, "records")
    assert "re-trained in this execution" in live_check_text(check, "records")
    again = live_check(frame, configs[0], store=fresh)  # now in the store: loaded, and said so
    assert again["agrees"] and not again["trained"] and "loaded from the run store" in live_check_text(again, "records")
    assert "trained its own runs" in live_check_text(check, "trained")
    changed = frame.copy()
    changed.at[0, "window"] = frame.window.iloc[0] * np.float32(1.001)
    bad = live_check(changed, configs[0], store=fresh)
    assert not bad["agrees"] and 5e-4 < bad["max_rel_diff"] < 2e-3
    assert "does not match its record" in live_check_text(bad, "records")
    changed = frame.copy()
    changed.at[0, "final_val_acc"] = frame.final_val_acc.iloc[0] + 0.01
    assert not live_check(changed, configs[0], store=fresh)["agrees"]
    changed = frame.assign(outcome="fails to fit")
    assert not live_check(changed, configs[0], store=fresh)["agrees"]
    with pytest.raises(ValueError, match="no record"):
        live_check(frame, tiny.replace(seed=9), store=fresh)


def test_a_record_gives_back_its_config(tiny, tmp_path):
    config = tiny.replace(steps=30, lr=1e-2, weight_decay=0.5, betas=(0.9, 0.95), layer_norm=True)
    write_records(tmp_path, [run_record(train(config), "tiny")], "tiny")
    row = read_records(tmp_path).iloc[0]
    assert records.row_config(row) == config
    with pytest.raises(ValueError, match="not to its hash"):
        records.row_config(row.to_dict() | {"lr": 0.5})


def test_records_with_and_without_a_later_field_read_together(tiny, tmp_path):
    # a field added later (adam_eps) has a column only where it is not at its default;
    # read beside a record without it, the empty cell is its default again
    plain, eps = tiny.replace(steps=20), tiny.replace(steps=20, adam_eps=1e-3)
    write_records(tmp_path, [run_record(train(plain), "a")], "a")
    write_records(tmp_path, [run_record(train(eps), "b")], "b")
    frame = read_records(tmp_path)
    assert "adam_eps" in frame.columns and frame["adam_eps"].isna().sum() == 1
    assert {records.row_config(row) for _, row in frame.iterrows()} == {plain, eps}
