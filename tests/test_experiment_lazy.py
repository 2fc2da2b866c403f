"""grokbook.experiments.lazy: the registered verdict lines, the turning at float32
resolution, the circular chance level against brute force, the weight-cosine test on
planted series, and every verdict branch."""

from __future__ import annotations

import numpy as np
import pytest

from grokbook.experiments import lazy as el


def test_registered_lines_read_as_registered():
    passes = {"AdamW": {"1 lazier": 3, "2 at spikes": 1, "3 constant": 2},
              "control": {"1 lazier": 3, "2 at spikes": 0, "3 constant": 0},
              "Adam": {"1 lazier": 2, "2 at spikes": 0, "3 constant": 3}}
    lines = el.registered_lines(passes, {"AdamW": 3, "control": 3, "Adam": 3}, 0.1, 2)
    assert lines == [
        "lazier than the optimiser without signal: 3/3 grokking seeds, 3/3 controls, 2/3 Adam runs; reproduced, "
        "but the controls pass it as often: it does not tell grokking runs apart",
        "departures aligned with gradient-norm spikes above chance: 1/3 grokking seeds, 0/3 controls, 0/3 Adam runs; "
        "not reproduced",
        "cos(theta_t, theta_0) within a range of 0.1: 2/3 grokking seeds, 0/3 controls, 3/3 Adam runs; reproduced, "
        "and fewer controls pass it: it tells grokking runs apart"]


def test_turning_reads_float32_cosines_at_their_resolution():
    t = el.turning([1.0, 1 - 1e-3, 1 - 1e-9, 0.5])
    assert t[0] == el.FLOAT32_FLOOR and t[2] == el.FLOAT32_FLOOR  # 1 - 1e-9 is 1 in float32
    assert t[1] == pytest.approx(1e-3, rel=1e-4) and t[3] == pytest.approx(0.5)


def test_circular_chance_against_every_shift_by_hand():
    events, steps, k, lo, hi = [12, 30], [13, 25, 38], 2, 10, 40
    fracs = []
    for s in range(hi - lo):
        ev = [lo + (e - lo + s) % (hi - lo) for e in events]
        fracs.append(np.mean([any(abs(e - x) <= k for e in ev) for x in steps]))
    mean, high = el.circular_chance(events, steps, k, lo, hi)
    assert mean == pytest.approx(np.mean(fracs)) and high == pytest.approx(np.percentile(fracs, 97.5))
    assert np.isnan(el.circular_chance([], steps, k, lo, hi)[0]) and np.isnan(el.circular_chance(events, [], k, lo,
                                                                                                  hi)[0])
    assert el.aligned_fraction(events, steps, k) == pytest.approx(1 / 3)  # 13 is within 2 of 12; 25 and 38 are not
    assert np.isnan(el.aligned_fraction(events, [], k)) and el.aligned_fraction([], [5], k) == 0.0


def test_aligned_fraction_counts_both_sides():
    assert el.aligned_fraction([100], [98, 102, 103], 2) == pytest.approx(2 / 3)


def test_weight_cosine_row_on_planted_series():
    n, spikes = 2000, [500, 900, 1400]
    run_turn = np.full(n, 1e-6)
    null_turn = np.full(n, 1e-4)
    grad = np.ones(n)
    for s in spikes:
        run_turn[s:s + 3] = 1e-3  # the weights turn where the gradient norm spikes
        grad[s:s + 3] = 50.0
    row = el.weight_cosine_row(1 - run_turn, 1 - null_turn, grad, 300, skip=100, window=100, spike_factor=5.0, k=10)
    assert row["start"] == 300 and row["steadiness"] == pytest.approx(-2.0, abs=0.01)
    assert row["departures"] == 3 and row["grad_spikes"] == 3 and row["aligned"] == 1.0
    # three gradient spikes shifted over 1700 steps land within 10 steps of a turn rarely
    assert row["chance"] < 0.1 and row["excess"] > 0.9 and row["unresolved"] == 0.0
    moved = np.roll(grad, 250)  # gradient spikes elsewhere: no alignment
    assert el.weight_cosine_row(1 - run_turn, 1 - null_turn, moved, 300, skip=100, window=100, spike_factor=5.0,
                                k=10)["aligned"] == 0.0
    late = el.weight_cosine_row(1 - run_turn, 1 - null_turn, grad, n - 1, skip=100, window=100, spike_factor=5.0,
                                k=10)
    assert np.isnan(late["steadiness"]) and late["departures"] == 0  # t2 at the last step: nothing to measure
    with pytest.raises(ValueError, match="one length"):
        el.weight_cosine_row(1 - run_turn, 1 - null_turn[:-1], grad, 300, skip=100, window=100, spike_factor=5.0, k=10)


@pytest.mark.parametrize("steady, excess, n, word", [
    ((-1.0, -1.2, -0.8), (0.5, 0.3, 0.7), 5, "reproduced"),
    ((-1.0, -1.2, -0.8), (0.0, -0.1, 0.1), 5, "partly reproduced"),
    ((0.1, -0.2, 0.3), (0.5, 0.3, 0.7), 5, "partly reproduced"),
    ((0.1, -0.2, 0.3), (0.0, -0.1, 0.1), 5, "undecided"),
    ((0.5, 0.3, 0.7), (0.0, -0.1, 0.1), 5, "reversed"),
    ((-1.0, -1.2, -0.8), (0.5, 0.3, 0.7), 1, "not testable"),
])
def test_weight_cosine_verdict_every_branch(steady, excess, n, word):
    assert el.weight_cosine_verdict(steady, excess, n).word == word


def test_measure_uses_the_runs_own_noise_walk(tmp_path):
    from grokbook import RunConfig
    from grokbook.geometry import optimizer_noise_walk
    from grokbook.phases import PhaseTimes
    from grokbook.training import fit

    config = RunConfig(p=7, n_layers=1, d_model=8, n_heads=2, lr=0.01, weight_decay=0.5, steps=300, n_snapshots=6)
    run = fit(config, progress=False)
    settings = dict(el.POOL_SETTINGS, skip=20, window=20)
    row = el.measure(run, PhaseTimes(1, 10, None, None), "grokking", settings)
    walk = optimizer_noise_walk(run.snapshots[0], 300, lr=0.01, weight_decay=0.5, betas=config.betas,
                                optimizer=config.optimizer, warmup_steps=config.warmup_steps, seed=0)
    direct = el.weight_cosine_row(run.metrics["cos_consecutive"], walk.cos_consecutive, run.metrics["grad_norm"], 10,
                                  skip=20, window=20, spike_factor=5.0, k=50)
    assert row["steadiness"] == direct["steadiness"] and row["t4"] == -1 and row["start"] == 20
    back = el.read_pool(el.write_pool([row], tmp_path / "l.csv"))[0]
    assert back.keys() == row.keys()
    assert all(back[k] == v or (np.isnan(back[k]) and np.isnan(v)) for k, v in row.items())  # NaN: no departures


def test_specificity_text_every_branch():
    all_pass = el.specificity_text([-0.5, -0.1], [0.2, 0.01], "the controls")
    assert "all 2 are on the claim's side" in all_pass and "not grokking" in all_pass
    some = el.specificity_text([-0.5, 0.1, -0.2], [0.2, 0.3, -0.1])  # the second is not steadier, the third misses spikes
    assert some == "the controls: 1 of 3 are on the claim's side of both, so they do not all behave as the grokking runs do"
    assert el.specificity_text([], []) == "the controls: none to compare with"
    with pytest.raises(ValueError, match="one value per run"):
        el.specificity_text([0.1], [0.1, 0.2])
