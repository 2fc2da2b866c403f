import numpy as np
import pytest

from grokbook.slingshot import (Baseline, Slingshots, find_onsets, find_slingshots, find_spikes,
                                growth_rate, lazy_departures, near_events, onset_alignment, pooled_alignment,
                                shuffled_baseline, transitions, validation_gains)

N = 6000
T = np.arange(N)
ONSETS = (1000, 2500, 4000)
SPIKES = (700, 2000, 3300)


def staircase(starts=ONSETS, length=200, rate=5e-3, noise=1e-4, seed=0) -> np.ndarray:
    """A norm whose log grows by ``rate`` per step for ``length`` steps from each start,
    decaying slowly (weight decay) in between, with small multiplicative noise."""
    log_norm = np.log(10.0) - 1e-5 * T
    for s in starts:
        log_norm += rate * np.clip(T - s, 0, length)
    return np.exp(log_norm + noise * np.random.default_rng(seed).normal(size=N))


def spiky(base: np.ndarray, at=SPIKES, width=10, factor=50.0, seed=1) -> np.ndarray:
    x = base * np.exp(0.1 * np.random.default_rng(seed).normal(size=len(base)))
    for s in at:
        x[s:s + width] *= factor
    return x


def test_growth_rate_of_exponential():
    rate = growth_rate(np.exp(2e-3 * T), window=100)
    assert np.isnan(rate[:50]).all() and np.isnan(rate[-50:]).all()
    np.testing.assert_allclose(rate[50:-50], 2e-3, rtol=1e-9)


def test_staircase_onsets_found_at_known_steps():
    onsets = find_onsets(staircase())
    assert onsets.dtype.kind == "i"
    np.testing.assert_allclose(onsets, ONSETS, atol=5)


def test_growth_without_plateau_is_not_an_onset():
    # The last growth runs into the end of the series: no plateau observed.
    onsets = find_onsets(staircase(starts=(1000, N - 150), length=1000))
    np.testing.assert_allclose(onsets, [1000], atol=5)


def test_slow_growth_below_threshold_is_not_an_onset():
    assert find_onsets(np.exp(5e-4 * T)).size == 0
    assert find_onsets(staircase(rate=5e-4)).size == 0


def test_loss_spikes_found_at_known_steps():
    loss = spiky(np.exp(-T / 1000))
    np.testing.assert_array_equal(find_spikes(loss), SPIKES)


def test_spike_min_separation():
    loss = spiky(np.full(N, 0.1), at=(1000, 1030))
    np.testing.assert_array_equal(find_spikes(loss), [1000])
    np.testing.assert_array_equal(find_spikes(loss, min_separation=10), [1000, 1030])


def test_find_slingshots_on_synthetic_run():
    events = find_slingshots(staircase(), spiky(np.exp(-T / 1000)),
                             spiky(np.full(N, 0.5), at=ONSETS, seed=2))
    assert isinstance(events, Slingshots)
    np.testing.assert_allclose(events.onsets, ONSETS, atol=5)
    np.testing.assert_array_equal(events.loss_spikes, SPIKES)
    np.testing.assert_array_equal(events.grad_spikes, ONSETS)


def test_no_events_gives_empty_int_arrays():
    rng = np.random.default_rng(3)
    norm = 10 * np.exp(1e-4 * rng.normal(size=N))
    loss = np.exp(-T / 2000) * np.exp(0.1 * rng.normal(size=N))
    events = find_slingshots(norm, loss, np.full(N, 0.2))
    for arr in (events.onsets, events.loss_spikes, events.grad_spikes):
        assert arr.shape == (0,) and arr.dtype.kind == "i"
    assert find_slingshots(norm).loss_spikes.size == 0


@pytest.mark.parametrize("bad,match", [
    (np.r_[np.ones(10), np.nan], "non-finite"),
    (np.r_[np.ones(10), 0.0], "positive"),
    (np.ones((2, 10)), "shape"),
])
def test_bad_norm(bad, match):
    with pytest.raises(ValueError, match=match):
        find_slingshots(bad)


def test_bad_parameters():
    with pytest.raises(ValueError, match="window"):
        find_onsets(np.ones(10), window=1)
    with pytest.raises(ValueError, match="plateau_threshold"):
        find_onsets(np.ones(10), growth_threshold=1e-3, plateau_threshold=1e-2)
    with pytest.raises(ValueError, match="spike_factor"):
        find_spikes(np.ones(10), spike_factor=0.5)
    with pytest.raises(ValueError, match="non-negative"):
        find_spikes(-np.ones(10))


def test_onset_alignment_closed_form():
    gains = [100, 105, 110, 111, 499, 600]
    assert onset_alignment([500, 100], gains, k=10) == pytest.approx(3 / 6)  # 100, 105, 110
    assert onset_alignment([500, 100], gains, k=0) == pytest.approx(1 / 6)
    assert onset_alignment([], gains, k=10) == 0.0
    assert np.isnan(onset_alignment([1], [], k=10))


@pytest.mark.parametrize("m,gains,k", [(1, [500], 9), (3, [500], 9), (2, [50, 200, 400, 900], 49)])
def test_shuffled_baseline_matches_closed_form(m, gains, k):
    n_steps, n_shuffles = 1000, 20000
    base = shuffled_baseline(np.arange(m), gains, k, n_steps, n_shuffles=n_shuffles, seed=1)
    assert isinstance(base, Baseline)
    expected = 1 - (1 - (k + 1) / n_steps) ** m
    assert base.mean == pytest.approx(expected, abs=4 * np.sqrt(expected / n_shuffles) + 1e-3)
    assert 0 <= base.low <= base.high <= 1  # the mean can lie outside: fractions are discrete
    assert base == shuffled_baseline(np.arange(m), gains, k, n_steps, n_shuffles=n_shuffles, seed=1)


def test_aligned_onsets_beat_the_shuffled_baseline():
    onsets, gains = [1000, 2500, 4000], [1020, 2540, 4010]
    assert onset_alignment(onsets, gains, k=50) == 1.0
    assert shuffled_baseline(onsets, gains, 50, N, n_shuffles=500).high < 0.5


def test_after_keeps_the_events_from_a_step_on():
    from grokbook.slingshot import Slingshots

    ev = Slingshots(np.array([10, 250, 900]), np.array([5, 300]), np.array([], dtype=np.int64))
    late = ev.after(250)
    assert late.onsets.tolist() == [250, 900] and late.loss_spikes.tolist() == [300]
    assert late.grad_spikes.tolist() == [] and ev.onsets.tolist() == [10, 250, 900]


def test_lazy_departures_hand_made():
    # steps:   0    1    2    3    4    5    6    7    8    9   10   11
    c = [np.nan, 1.0, 0.95, 0.2, 0.99, 0.5, 0.91, 0.91, 0.1, 0.1, 0.95, 0.3]
    out = lazy_departures(c, threshold=0.9, skip=0, merge=0)
    assert out.fraction == pytest.approx(7 / 12)  # NaN counts as lazy
    np.testing.assert_array_equal(out.departures, [3, 5, 8, 11])
    np.testing.assert_array_equal(lazy_departures(c, 0.9, skip=0, merge=3).departures, [3, 8, 11])
    skipped = lazy_departures(c, 0.9, skip=4, merge=0)
    assert skipped.fraction == pytest.approx(4 / 8)
    np.testing.assert_array_equal(skipped.departures, [5, 8, 11])


def test_near_events_counts_both_sides_like_a_direct_count():
    rng = np.random.default_rng(5)
    events, steps, k, n = rng.integers(0, 2000, 12), rng.integers(0, 2000, 40), 30, 2000
    frac, chance = near_events(events, steps, k, n, n_shuffles=200, seed=1)
    direct = np.mean([np.any(np.abs(events - s) <= k) for s in steps])
    assert frac == pytest.approx(direct)
    assert 0 <= chance.low <= chance.mean <= chance.high <= 1
    assert np.isnan(near_events(events, [], k, n)[0])


def test_transitions_count_each_rise_once():
    np.testing.assert_array_equal(transitions([500, 100, 110, 130, 400, 420], gap=50), [100, 400, 500])
    np.testing.assert_array_equal(transitions([100, 110], gap=5), [100, 110])
    assert transitions([], gap=10).size == 0


def test_pooled_alignment_is_the_count_over_runs_and_one_run_is_shuffled_baseline():
    rng = np.random.default_rng(3)
    runs = [(rng.integers(0, 1000, 4), rng.integers(0, 1000, 6), 1000),
            (rng.integers(0, 2000, 2), rng.integers(0, 2000, 3), 2000),
            (rng.integers(0, 500, 3), np.array([], dtype=np.int64), 500)]
    out = pooled_alignment(runs, k=80, n_shuffles=300, seed=2)
    direct = sum(int(np.sum([np.any((s - e >= 0) & (s - e <= 80)) for s in steps])) for e, steps, _ in runs)
    assert (out.aligned, out.total) == (direct, 9)
    assert 0 <= out.chance.low <= out.chance.mean <= out.chance.high <= 1
    # one run alone: the same numbers as shuffled_baseline with the same draws
    e, steps, n = runs[0]
    alone = pooled_alignment([runs[0]], k=80, n_shuffles=300, seed=2)
    assert alone.chance == shuffled_baseline(e, steps, 80, n_steps=n, n_shuffles=300, seed=2)
    assert np.isnan(pooled_alignment([runs[2]], k=80).chance.mean)


def test_validation_gains_and_new_highs():
    steps = np.arange(0, 80, 10)
    acc = [0.0, 0.1, 0.1, 0.5, 0.2, 0.45, 0.6, 0.61]
    np.testing.assert_array_equal(validation_gains(steps, acc, 0.05), [10, 30, 50, 60])
    # 50: back from the drop to 0.45, below the earlier 0.5: not a new high
    np.testing.assert_array_equal(validation_gains(steps, acc, 0.05, new_high=True), [10, 30, 60])
    np.testing.assert_array_equal(validation_gains(steps, acc, 0.05, skip=35), [50, 60])
    with pytest.raises(ValueError, match="length"):
        validation_gains(steps, acc[:-1], 0.05)


def test_shuffles_place_events_where_the_real_ones_were_looked_for():
    # gains at 110..119 and one event: with events drawn from step 100 on, the expected
    # fraction is P(an event in [g - k, g]) = (k + 1) / (n_steps - start) for each gain
    gains, k, n_steps, start = np.arange(110, 120), 10, 300, 100
    low = shuffled_baseline([0], gains, k, n_steps, n_shuffles=20_000, seed=3, start=start)
    assert low.mean == pytest.approx((k + 1) / (n_steps - start), abs=0.01)
    pooled = pooled_alignment([([0], gains, n_steps)], k, n_shuffles=20_000, seed=3, start=start)
    assert pooled.chance == low
    near = near_events([0], gains, k, n_steps, n_shuffles=20_000, seed=3, start=start)[1]
    assert near.mean == pytest.approx((2 * k + 1) / (n_steps - start), abs=0.01)
    with pytest.raises(ValueError, match="start"):
        shuffled_baseline([0], gains, k, n_steps, start=n_steps)
    with pytest.raises(ValueError, match="start"):
        pooled_alignment([([0], gains, n_steps)], k, start=-1)


def test_circular_alignment_against_every_shift_by_hand():
    from grokbook.slingshot import circular_alignment

    events, steps, lo, hi, k = np.array([20, 100, 300]), np.array([110, 305, 500]), 50, 550, 20
    got = circular_alignment([(events, steps, lo, hi)], k, n_shuffles=20_000, seed=1)
    assert (got.aligned, got.total) == (2, 3)  # 110 and 305 follow an event by <= 20; 20 lies before lo
    exact = []
    for d in range(hi - lo):
        e = lo + (np.array([100, 300]) - lo + d) % (hi - lo)
        exact.append(np.mean([np.any((s - e >= 0) & (s - e <= k)) for s in steps]))
    assert got.chance.mean == pytest.approx(np.mean(exact), abs=0.01)
    assert got.chance.low >= 0 and got.chance.high <= 1
    # two runs pool their steps; a run without steps in its range adds nothing
    two = circular_alignment([(events, steps, lo, hi), (np.array([5]), np.array([900]), 0, 100)], k, n_shuffles=10)
    assert (two.aligned, two.total) == (2, 3)
    with pytest.raises(ValueError, match="lo < hi"):
        circular_alignment([(events, steps, 10, 10)], k)
