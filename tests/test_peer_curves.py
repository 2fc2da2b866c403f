"""grokbook.experiments.peer and benchmarks/peer_curves.py: the peer's training loop
(danielmamay/grokking, rewritten) trains, resumes, and writes records that the
leaderboard's functions read."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from grokbook.experiments.leaderboard import feature_table
from grokbook.experiments.records import read_records

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "peer_curves.py"


@pytest.fixture(scope="module")
def peer():
    from grokbook.experiments import peer

    return peer


def test_the_grid_is_fixed_and_seed_major(peer):
    grid = peer.configs()
    assert len(grid) == 48 and len({peer.config_hash(c) for c in grid}) == 48
    assert [c["seed"] for c in grid] == [0] * 24 + [1] * 24
    assert {c["p"] for c in grid} == {31} and {c["steps"] for c in grid} == {2000}


def test_the_peer_model_is_causal_and_gives_the_last_position(peer):
    """The blocks are causal (position 0 ignores a change of a later token) and the
    logits are the last position's, which see every token."""
    torch.manual_seed(0)
    model = peer.PeerTransformer(7, 2, 16, 4).eval()
    x = torch.tensor([[1, 8, 2, 7]])
    out = model(x)
    assert out.shape == (1, 9)
    h = model.tokens(x) + model.positions(torch.arange(4))[None]
    first = model.blocks(h.transpose(0, 1))[0]
    x2 = x.clone()
    x2[0, 2] = 5
    h2 = model.tokens(x2) + model.positions(torch.arange(4))[None]
    assert torch.allclose(model.blocks(h2.transpose(0, 1))[0], first)  # position 0 sees only itself
    assert not torch.allclose(model(x2), out)                           # the last sees every token


def test_tiny_runs_are_recorded_resumed_and_read_by_the_leaderboard(tmp_path):
    out = tmp_path / "peer"
    cmd = [sys.executable, str(SCRIPT), "--tiny", "--out", str(out)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    frame = read_records(out)
    assert len(frame) == 2 and set(frame["family"]) == {"peer_tiny"}
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert "2 recorded, 0 to train" in again.stdout
    for _, r in frame.iterrows():
        assert len(r["window"]) == 60 and np.isfinite(r["window"]).all()
        assert r["val_steps"][-1] == 60 and r["command"].startswith("python benchmarks/peer_curves.py")
        # t4 is the first validation (an epoch's end) at 99%
        reached = np.asarray(r["val_acc"]) >= 0.99
        assert r["event"] == bool(reached.any())
    table = feature_table(frame, 40)
    assert len(table) == 2 and {"fall_4", "log_lr", "positive"} <= set(table.columns)


def test_the_live_check_retrains_the_first_steps_and_finds_a_changed_record(peer):
    import pandas as pd

    cfg = dict(peer.TINY, lr=1e-3, weight_decay=1.0, r=0.5, seed=0)
    rec = peer.train(cfg)
    row = pd.DataFrame([rec]).iloc[0]                    # as read back from Parquet
    assert peer.record_config(row) == cfg
    check = peer.live_check(row, steps=30)
    assert check["agrees"] and check["max_rel_diff"] == 0.0  # the first steps do not depend on the budget
    assert check["same_start"] and check["start_rel_diff"] == 0.0
    changed = dict(rec, window=rec["window"] * np.float32(1.001))
    assert not peer.live_check(changed, steps=30)["agrees"] and not peer.live_check(changed, steps=30)["same_start"]
    late = dict(rec, window=np.r_[rec["window"][:20], rec["window"][20:] * np.float32(1.01)])  # departs at step 20
    assert (lambda ch: not ch["agrees"] and ch["same_start"])(peer.live_check(late, steps=30))
    with pytest.raises(ValueError, match="steps must lie in"):
        peer.live_check(row, steps=61)
    with pytest.raises(ValueError, match="hashes to"):
        peer.record_config(dict(rec, lr=3e-3))


def test_live_check_text_every_branch(peer):
    c = dict(lr=1e-3, weight_decay=3.0, r=0.3, seed=1)
    run = "The first 100 steps of one of these runs (lr 0.001, weight decay 3, r 0.3, seed 1) were re-trained"
    same = peer.live_check_text(dict(config=c, steps=100, max_rel_diff=0.0, agrees=True))
    assert same.startswith(run) and same.endswith("they equal the record's bit for bit.")
    near = peer.live_check_text(dict(config=c, steps=100, max_rel_diff=6e-7, agrees=True))
    assert near.endswith("they equal the record's within 6e-07 (relative).")
    off = peer.live_check_text(dict(config=c, steps=100, max_rel_diff=0.02, agrees=False, start_rel_diff=0.01,
                                    same_start=False))
    assert "differ from the record's from the start (up to 2.0e-02" in off and "not the record's" in off
    drift = peer.live_check_text(dict(config=c, steps=100, max_rel_diff=0.02, agrees=False, start_rel_diff=3e-7,
                                      same_start=True))
    assert "they start as the record's" in drift and "rounds differently" in drift
    assert peer.live_check_text(None) == "No run was re-trained (live_steps 0)."


def test_max_rel_diff_by_hand():
    from grokbook.experiments.records import max_rel_diff

    assert max_rel_diff([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert max_rel_diff([1.1, 2.0], [1.0, 2.5]) == pytest.approx(0.2)  # |2 - 2.5| / 2.5
    assert max_rel_diff([1e-13], [0.0]) == pytest.approx(0.1)          # denominator floored at 1e-12
    assert max_rel_diff([1.0], [1.0, 2.0]) == float("inf")
