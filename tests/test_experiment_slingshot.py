"""grokbook.experiments.slingshot: chapter 3's registered tests on planted events and
transitions (hand counts), and every branch of its verdict and texts."""

from __future__ import annotations

import numpy as np
import pytest

from grokbook.experiments import slingshot as es


def planted(offset, n_runs=3, n_steps=4000, t2=1000):
    """Runs whose transitions come ``offset`` steps after each event: 4 events a run,
    one before t2 and three after."""
    runs = []
    for i in range(n_runs):
        ev = np.array([500, 1500, 2500, 3500]) + 37 * i
        runs.append((ev, ev + offset, t2, n_steps))
    return runs


def test_transitions_right_after_sparse_events_are_above_chance():
    r = es.alignment_row(planted(5), k=20, n_shuffles=200, skip=100)
    assert (r["n_events"], r["transitions"], r["aligned"]) == (12, 12, 12)
    assert r["fraction"] == 1.0 and r["chance"] < 0.1 and r["above chance"]
    # after t2 (1000): three events and transitions a run, all aligned
    assert (r["after_t2"], r["aligned_after_t2"]) == (9, 9) and r["above circular"]


def test_transitions_far_from_events_are_not_above_chance():
    r = es.alignment_row(planted(300), k=20, n_shuffles=200, skip=100)
    assert (r["transitions"], r["aligned"], r["fraction"]) == (12, 0, 0.0)
    assert not r["above chance"] and not r["above circular"]


def test_no_transitions_is_never_above_chance():
    runs = [(np.array([500]), np.array([], np.int64), None, 2000)]
    r = es.alignment_row(runs, k=20, n_shuffles=50, skip=100)
    assert r["transitions"] == 0 and np.isnan(r["fraction"]) and not r["above chance"]
    assert r["after_t2"] == 0 and not r["above circular"]
    assert es.alignment_text("control", {kind: r for kind, _ in es.KINDS}, r) == "control: no transitions to test"


def test_alignment_and_circular_texts_say_each_kind():
    yes = es.alignment_row(planted(5), k=20, n_shuffles=100, skip=100)
    no = es.alignment_row(planted(300), k=20, n_shuffles=100, skip=100)
    rows = {"onsets": yes, "loss spikes": no, "gradient-norm spikes": yes}
    text = es.alignment_text("AdamW", rows, no)
    assert text.startswith("AdamW: 12/12 transitions after onsets")
    assert "after loss spikes (chance" in text and text.count("not above chance") == 2  # loss spikes, new highs
    assert text.endswith("0/12 transitions after loss spikes (not above chance)")
    circ = es.circular_text(rows)
    assert circ.count("9/9") == 2 and "0/9 transitions after loss spikes" in circ


@pytest.mark.parametrize("adam, word", [(2, "reproduced"), (3, "reproduced"), (1, "not reproduced"), (0, "not reproduced")])
def test_without_weight_decay_needs_two_seeds(adam, word):
    v = es.without_weight_decay_verdict({"Adam": adam, "AdamW": 3, "control": 0}, {"Adam": adam, "AdamW": 3, "control": 0},
                                        3, 4000, 5.0)
    assert v.word == word and f"{adam}/3 Adam runs" in v.reason and "t4 >= 5 t2" in v.reason
    assert v.reason.endswith("at this budget") == (word == "not reproduced")


def test_without_weight_decay_refuses_impossible_counts():
    with pytest.raises(ValueError, match="between 0 and 3"):
        es.without_weight_decay_verdict({"Adam": 4, "AdamW": 3, "control": 0}, {"Adam": 0, "AdamW": 3, "control": 0},
                                        3, 4000, 5.0)


def test_controls_and_clip_texts_every_branch():
    assert es.controls_text(6, 2, 3, 0).endswith("slingshots come without generalization")
    assert es.controls_text(0, 0, 3, 0).endswith("0/3 generalize")
    assert es.controls_text(6, 2, 3, 1).endswith("1/3 generalize")
    assert "not comparable" in es.clip_text(0.9, 0.1, (4, 2), (None, None))
    assert "prevented within the run" in es.clip_text(0.9, 0.1, (4, 2), (1000, None))
    assert "slower but not prevented" in es.clip_text(0.9, 0.1, (4, 6), (1000, 1500))
    t = es.clip_text(0.9, 0.1234, (4, 2), (1500, 1000))
    assert "binds at 12.3%" in t and "loss spikes 4 -> 2" in t and "t4 1500 -> 1000" in t
    assert "fewer spikes, generalization not slower" in t


def test_adam_long_rows_and_verdict(tmp_path):
    from grokbook import RunConfig
    from grokbook.phases import PhaseTimes
    from grokbook.training import fit

    run = fit(RunConfig(p=7, n_layers=1, d_model=8, n_heads=2, optimizer="adam", weight_decay=0.0, lr=0.01, steps=150,
                        n_snapshots=4), progress=False)
    row = es.measure_adam_long(run, PhaseTimes(1, 20, None, None), skip=20, window=20)
    from grokbook.experiments.interventions import spike_count
    assert row["t2"] == 20 and row["t4"] == -1 and row["steps"] == 150 and row["lr"] == 0.01
    assert row["loss_spikes"] == spike_count(run.metrics["train_loss"], 20, window=20, spike_factor=5.0)
    assert es.read_adam_long(es.write_adam_long([row], tmp_path / "a.csv")) == [row]
    last_half = [i for i, t in enumerate(run.val_steps) if t <= 75][-1]  # the last evaluation at or before step 75
    assert row["half_val"] == float(run.val_acc[last_half]) and row["final_val"] == float(run.val_acc[-1])
    mk = lambda t2, t4: dict(seed=0, lr=0.01, steps=20000, t2=t2, t4=t4, final_val=0.5)
    assert es.adam_long_verdict([mk(50, 9000), mk(50, 12000), mk(50, -1)], 5.0).word == "reproduced"
    v = es.adam_long_verdict([mk(50, 9000), mk(50, -1), mk(50, 200)], 5.0)   # t4 200 < 5 t2: not grokking
    assert v.word == "not reproduced" and "1/3 Adam runs" in v.reason and v.reason.endswith("at this budget")
    assert es.adam_long_verdict([], 5.0).word == "not testable"


def test_budget_estimate_extrapolates_the_second_half():
    row = dict(seed=101, steps=20000, half_val=0.70, final_val=0.85)  # 0.15 over 10,000 steps
    assert es.budget_estimate(row, 0.99) == ("seed 101: 70% at step 10000, 85% at 20000: at that rate 99% near step "
                                             "29,333 (1.5x the budget)")
    flat = es.budget_estimate(dict(row, half_val=0.86), 0.99)
    assert flat.endswith("no rise over the second half, so no budget can be read off")
    assert es.budget_estimate(dict(row, final_val=0.995), 0.99) == "seed 101: reached 99%"
