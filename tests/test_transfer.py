"""grokbook.transfer: each feature against a closed form on planted curves, and the three
invariances (loss scale, time, minibatch noise) with their stated tolerances."""

from __future__ import annotations

import numpy as np
import pytest

from grokbook import transfer as tf


def planted(n=400, stretch=1.0, scale=1.0, bump=True):
    """A power-law fall ``(1 + t/30)^-1.5`` with, if ``bump``, a rebound of 0.3 decades
    (a factor 2) centred at step 250, sigma 8 steps: every time a multiple of ``stretch``."""
    t = np.arange(int(n * stretch), dtype=float)
    loss = scale * 3.0 * (1 + t / (30 * stretch)) ** -1.5
    if bump:
        loss *= 10 ** (0.3 * np.exp(-0.5 * ((t - 250 * stretch) / (8 * stretch)) ** 2))
    return loss


def test_smoothing_width_is_odd_and_scales_with_the_window():
    assert tf.smoothing_width(400) == 11 and tf.smoothing_width(800) == 21 and tf.smoothing_width(40) == 5


def test_features_of_a_pure_power_law_in_closed_form():
    loss = planted(bump=False)
    f = tf.transfer_features(loss, 400)
    # on a monotone curve a centred running median is the curve itself and the envelope
    # too: the start is step 5 (a median of 11 steps); log10 L = log10 3 - 1.5 log10(1 + t/30)
    # falls 0.3 decades from step 5 at t_a = 30 ((1 + 5/30) 10^0.2 - 1), and by k t_a
    # it has fallen 1.5 log10((1 + k t_a / 30) / (1 + 5/30))
    ta = 30 * ((1 + 5 / 30) * 10 ** 0.2 - 1)
    assert tf.first_fall(tf.smoothed_log(loss, 400)) == pytest.approx(ta, abs=0.05)
    fall = lambda t: 1.5 * np.log10((1 + t / 30) / (1 + 5 / 30))
    assert f["fall_4"] == pytest.approx(fall(4 * ta), abs=2e-3)
    # 16 t_a lies past the window: read at its last step, whose median (of steps 394-399,
    # the past only) is the loss at about step 396.5
    assert 16 * ta > 399 and f["fall_16"] == pytest.approx(fall(396.5), abs=2e-3)
    assert f["rise_max"] == 0.0 and f["up_share"] == 0.0
    # the log-log slope over steps 200-399 of the exact curve (the median's last 5 steps
    # see only the past, which changes it by less than 5e-3)
    half = np.arange(200, 400)
    exact = np.polyfit(np.log10(half), np.log10(loss[half]), 1)[0]
    assert f["slope_late"] == pytest.approx(exact, abs=5e-3) and -1.5 < exact < -1.2


def test_a_planted_rebound_is_measured():
    f = tf.transfer_features(planted(), 400)
    # the same rebound read off the exact curve, without smoothing: the running median of
    # 11 steps takes a little off the bump's top (sigma 8 steps)
    exact = np.log10(planted())
    rise = exact - np.minimum.accumulate(exact)
    assert 0.2 < rise.max() < 0.3 and f["rise_max"] == pytest.approx(rise.max(), abs=0.02)
    # steps more than 0.05 decades above the running minimum: about the bump's width
    # where 0.3 exp(-x^2/2) > 0.05 (|x| < 1.89 sigma, 30 steps), over the steps from t_a
    ta = int(np.ceil(tf.first_fall(tf.smoothed_log(planted(), 400))))
    assert f["up_share"] == pytest.approx(30 / (400 - ta), abs=8 / (400 - ta))


def test_a_curve_that_never_falls_has_no_time_unit():
    f = tf.transfer_features(np.full(100, 2.0) * (1 + 0.001 * np.sin(np.arange(100))), 100)
    assert np.isnan(f["fall_4"]) and np.isnan(f["up_share"]) and abs(f["slope_late"]) < 1e-2


def test_bad_curves_are_refused():
    with pytest.raises(ValueError, match="at least 40"):
        tf.transfer_features(planted(), 30)
    with pytest.raises(ValueError, match="at least 400 steps"):
        tf.transfer_features(planted()[:300], 400)
    bad = planted()
    bad[10] = -1.0
    with pytest.raises(ValueError, match="finite and positive"):
        tf.transfer_features(bad, 400)


# The invariances, each with its tolerance.

def test_loss_scale_leaves_every_feature_unchanged():
    a, b = tf.transfer_features(planted(), 400), tf.transfer_features(planted(scale=37.0), 400)
    for k in tf.TRANSFER:
        assert b[k] == pytest.approx(a[k], abs=1e-12), k


@pytest.mark.parametrize("stretch", [2.0, 3.0])
def test_time_slowed_down_moves_each_feature_little(stretch):
    """A curve slowed by ``stretch``, read over a window ``stretch`` times longer (the
    same dynamics): every feature within 0.02 (decades, share, slope)."""
    a = tf.transfer_features(planted(), 400)
    b = tf.transfer_features(planted(stretch=stretch), int(400 * stretch))
    tol = dict(fall_4=0.02, fall_16=0.02, rise_max=0.02, up_share=0.02, slope_late=0.02)
    for k in tf.TRANSFER:
        assert abs(b[k] - a[k]) <= tol[k], (k, a[k], b[k])


def test_minibatch_noise_moves_each_feature_little():
    """Independent multiplicative noise of 10% a step (log-normal, 0.043 decades): every
    feature, over 20 draws, within its tolerance of the clean curve's (falls 0.12
    decades, against 0.9 and 1.6 fallen; rebound 0.07 against 0.22; share 0.04; slope
    0.12 against -1.6)."""
    rng = np.random.default_rng(0)
    clean = tf.transfer_features(planted(), 400)
    tol = dict(fall_4=0.12, fall_16=0.12, rise_max=0.07, up_share=0.04, slope_late=0.12)
    for _ in range(20):
        noisy = tf.transfer_features(planted() * np.exp(0.1 * rng.standard_normal(400)), 400)
        for k in tf.TRANSFER:
            assert abs(noisy[k] - clean[k]) <= tol[k], (k, clean[k], noisy[k])


def test_the_running_median_is_every_window_s_median():
    x = np.random.default_rng(3).lognormal(size=97)
    s = tf.smoothed_log(x, 97)
    h = tf.smoothing_width(97) // 2
    assert np.allclose(s, [np.log10(np.median(x[max(0, t - h):t + h + 1])) for t in range(97)], rtol=0, atol=1e-15)
