"""grokbook.experiments.records' start check: a run re-trained here is the recorded one if it
starts as the record did (its first losses), whatever the machine's rounding later."""

from __future__ import annotations

import math

import numpy as np
import pytest

from grokbook import RunConfig
from grokbook.experiments import records
from grokbook.training import fit

TINY = RunConfig(p=7, n_layers=1, d_model=8, n_heads=2, lr=0.01, steps=30, n_snapshots=4)


@pytest.fixture(scope="module")
def run():
    return fit(TINY, progress=False)


def test_start_losses_are_the_first_losses_of_the_full_run(run):
    other = TINY.replace(seed=1)
    starts = records.start_losses([TINY, other, TINY.replace(lr=0.02)])  # stacked: one key
    full = np.asarray(run.metrics["train_loss"], np.float64)
    assert np.array_equal(starts[0], full[:records.START_STEPS])
    assert np.array_equal(starts[1], np.asarray(fit(other, progress=False).metrics["train_loss"])[:records.START_STEPS])
    assert starts[2][0] == starts[0][0] and starts[2][1] != starts[0][1]  # same start weights, another update


def test_start_check_every_branch(run):
    own = np.asarray(run.metrics["train_loss"], np.float64)[:records.START_STEPS]
    same = records.start_check(TINY, own)
    assert same["agrees"] and same["exact"] and same["max_rel_diff"] == 0
    rounded = records.start_check(TINY, own * (1 + 1e-6))  # another machine's rounding
    assert rounded["agrees"] and not rounded["exact"]
    assert not records.start_check(TINY, own * (1 + 1e-3))["agrees"]
    seed1 = records.start_losses([TINY.replace(seed=1)])[0]
    wrong = records.start_check(TINY, seed1)  # another seed: another initialisation and split
    assert not wrong["agrees"] and wrong["max_rel_diff"] > 100 * records.START_RTOL
    for missing in (None, own[:3]):
        none = records.start_check(TINY, missing)
        assert not none["agrees"] and math.isnan(none["max_rel_diff"])
    assert "starts as recorded" in records.start_check_text(same)
    assert "does NOT start as recorded" in records.start_check_text(wrong)
    assert "no recorded start" in records.start_check_text(none)


def test_starts_file_round_trip_and_update(tmp_path):
    path = tmp_path / "starts.csv"
    assert records.read_starts(path) == {}
    a, b = TINY, TINY.replace(seed=1)
    records.write_starts([a, b], path)
    back = records.read_starts(path)
    assert set(back) == {a.hash(), b.hash()}
    assert np.array_equal(back[a.hash()], records.start_losses([a])[0])  # repr round-trips float64
    c = TINY.replace(seed=2)
    records.write_starts([c], path)  # added, the others kept
    assert set(records.read_starts(path)) == {a.hash(), b.hash(), c.hash()}


def test_live_check_text_every_branch():
    base = dict(config=TINY, trained=True, live_final=0.9, recorded_final=0.9, live_outcome="groks",
                recorded_outcome="groks")
    assert "bit for bit" in records.live_check_text(dict(base, agrees=True, same_start=True, max_rel_diff=0.0,
                                                         start_rel_diff=0.0), "records")
    drift = records.live_check_text(dict(base, agrees=False, same_start=True, max_rel_diff=0.3, start_rel_diff=2e-7,
                                         live_final=0.4, live_outcome="memorizes"), "records")
    assert "starts as the recorded run" in drift and "rounds differently" in drift and "memorizes" in drift
    wrong = records.live_check_text(dict(base, agrees=False, same_start=False, max_rel_diff=0.3, start_rel_diff=0.01),
                                    "records")
    assert "does not match its record" in wrong and "not the record's" in wrong
    assert records.live_check_text(base, "trained").startswith("This execution trained its own runs")


def test_the_committed_starts_cover_every_pool_configuration():
    import csv
    from pathlib import Path

    starts = records.read_starts()
    assert all(len(v) == records.START_STEPS for v in starts.values())
    for f in sorted(Path(records.STARTS_FILE).parent.glob("*.csv")):
        if f.name == "starts.csv":
            continue
        with open(f, newline="") as fh:
            hashes = {r["config"] for r in csv.DictReader(fh)}
        assert hashes <= set(starts), f"{f.name}: {sorted(hashes - set(starts))[:3]} have no reference start"


def test_pool_start_check_reads_the_reference_from_the_starts_file(tmp_path):
    path = tmp_path / "starts.csv"
    records.write_starts([TINY], path)
    assert records.pool_start_check(TINY, path)["agrees"]
    missing = records.pool_start_check(TINY.replace(seed=3), path)
    assert not missing["agrees"] and math.isnan(missing["max_rel_diff"])
