"""Offline per-run records: what a record holds, and a round trip through Parquet."""

import numpy as np

from grokbook import train
from grokbook.experiments.records import (compact, downsample_index, read_records, run_record, write_record,
                                         write_records)
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
