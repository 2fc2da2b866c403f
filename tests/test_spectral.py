import numpy as np
import pytest
from scipy import signal

from grokbook.spectral import Hjorth, detrend, hjorth, hjorth_spectral, paper_energy, spectral_energy

N = 400
T = np.arange(N)


def sinusoid(cycles: float, amp: float = 1.0, phase: float = 0.3) -> np.ndarray:
    return amp * np.sin(2 * np.pi * cycles * T / N + phase)


def test_hjorth_of_sinusoid_closed_form():
    # A sinusoid with an integer number of cycles: activity A^2/2, mobility 2 sin(w/2)
    # (the finite-difference gain at w), standard complexity 1, paper complexity = mobility.
    amp, cycles = 3.0, 25
    w = 2 * np.pi * cycles / N
    for h in (hjorth(sinusoid(cycles, amp), periodic=True), hjorth_spectral(sinusoid(cycles, amp))):
        assert isinstance(h, Hjorth)
        assert h.activity == pytest.approx(amp**2 / 2, rel=1e-12)
        assert h.mobility == pytest.approx(2 * np.sin(w / 2), rel=1e-12)
        assert h.complexity == pytest.approx(1.0, rel=1e-10)
    paper = hjorth_spectral(sinusoid(cycles, amp), complexity="paper")
    assert paper.complexity == pytest.approx(2 * np.sin(w / 2), rel=1e-12)


def test_hjorth_ordinary_differences_close_to_periodic_for_slow_sinusoid():
    h = hjorth(sinusoid(4, 2.0))
    assert h.activity == pytest.approx(2.0, rel=1e-12)
    assert h.mobility == pytest.approx(2 * np.pi * 4 / N, rel=1e-2)  # 2 sin(w/2) ~ w


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("complexity", ["standard", "paper"])
def test_time_and_spectral_forms_agree(seed, complexity):
    x = np.cumsum(np.random.default_rng(seed).normal(size=257)) + 0.1 * np.arange(257)
    a = hjorth(x, periodic=True, complexity=complexity)
    b = hjorth_spectral(x, complexity=complexity)
    np.testing.assert_allclose(a, b, rtol=1e-10)


def test_white_noise_hjorth():
    # Unit white noise: var(dx) = 2, var(d2x) = 6 -> mobility sqrt 2, mobility(dx) sqrt 3,
    # standard complexity sqrt(3)/sqrt(2), paper complexity sqrt(m4/m2) = sqrt 3.
    x = np.random.default_rng(0).normal(size=200_000)
    h = hjorth(x)
    assert h.activity == pytest.approx(1.0, rel=0.02)
    assert h.mobility == pytest.approx(np.sqrt(2), rel=0.02)
    assert h.complexity == pytest.approx(np.sqrt(1.5), rel=0.02)
    assert hjorth(x, complexity="paper").complexity == pytest.approx(np.sqrt(3), rel=0.02)


def test_hjorth_constant_signal_gives_nan_ratios():
    h = hjorth(np.ones(10))
    assert h.activity == 0 and np.isnan(h.mobility) and np.isnan(h.complexity)


@pytest.mark.parametrize("bad", [np.ones(2), np.ones((3, 3)), np.array([1.0, np.nan, 2.0, 3.0])])
def test_hjorth_bad_input(bad):
    with pytest.raises(ValueError):
        hjorth(bad)
    with pytest.raises(ValueError):
        hjorth_spectral(bad)


def test_hjorth_bad_complexity_names_it():
    with pytest.raises(ValueError, match="'bogus'"):
        hjorth(np.arange(5.0) ** 2, complexity="bogus")


@pytest.mark.parametrize("method,trend", [
    ("mean", 5.0 + 0 * T),
    ("linear", 5.0 - 0.01 * T),
    ("poly:3", 1.0 + 2e-2 * T - 3e-4 * T**2 + 4e-7 * T**3),
])
def test_detrend_removes_polynomial_trend_exactly(method, trend):
    osc = sinusoid(40)
    np.testing.assert_allclose(detrend(trend, method), 0, atol=1e-10)
    # The sinusoid is (nearly) orthogonal to low-degree polynomials, so it survives
    # up to its own small projection on them; the trend part is removed exactly.
    np.testing.assert_allclose(detrend(osc + trend, method), detrend(osc, method), atol=1e-10)


def test_detrend_linear_matches_scipy():
    x = np.random.default_rng(3).normal(size=(4, 123)) + np.arange(123)
    np.testing.assert_allclose(detrend(x, "linear"), signal.detrend(x, type="linear"), atol=1e-10)
    np.testing.assert_allclose(detrend(x, "mean"), signal.detrend(x, type="constant"), atol=1e-10)
    np.testing.assert_array_equal(detrend(x, "none"), x)


def test_highpass_keeps_fast_and_removes_slow_sinusoid():
    fast, slow = sinusoid(100, 0.5), sinusoid(3, 4.0) + 7.0
    out = detrend(fast + slow, "highpass:0.05")  # 100/400 = 0.25 kept, 3/400 removed
    np.testing.assert_allclose(out, fast, atol=1e-10)


DECAYS = {  # smooth falls of a loss from about log(p) over a 200-step window
    "exponential": lambda t: 3.0 * np.exp(-t / 20),
    "slow exponential": lambda t: 3.0 * np.exp(-t / 50),
    "power law": lambda t: 3.0 * (1 + t) ** -0.5,
    "power law 1": lambda t: 3.0 * (1 + t / 10) ** -1.0,
}


@pytest.mark.parametrize("decay", DECAYS)
@pytest.mark.parametrize("period", [5, 10, 15])
def test_taper_is_blind_to_a_smooth_decay_and_keeps_a_sinusoid(decay, period):
    """The tapered detrending: a smooth decay alone leaves under 0.1% of the energy of a
    small oscillation, and adding the decay to the oscillation changes its energy by
    under 1%; the oscillation keeps its mean square A^2 / 2 within 1%."""
    t = np.arange(200.0)
    a, fall = 0.05, DECAYS[decay](t)
    wave = a * np.sin(2 * np.pi * t / period + 0.3)
    energy = lambda x: spectral_energy(x, window=200, method="taper:0.05")
    assert energy(wave) == pytest.approx(a**2 / 2, rel=1e-2)
    assert energy(fall) < 1e-3 * energy(wave)
    assert energy(fall + wave) == pytest.approx(energy(wave), rel=1e-2)


@pytest.mark.parametrize("decay", DECAYS)
def test_unwindowed_highpass_leaks_a_smooth_decay(decay):
    """The reason for the taper: without it, the same decays leak more energy than the
    oscillation has."""
    t = np.arange(200.0)
    wave = 0.05 * np.sin(2 * np.pi * t / 10 + 0.3)
    leak = spectral_energy(DECAYS[decay](t), window=200, method="highpass:0.05")
    assert leak > 0.5 * spectral_energy(wave, window=200, method="highpass:0.05")


@pytest.mark.parametrize("method", ["cubic", "poly:x", "poly:-1", "highpass:0.9", "highpass:", "linear:2",
                                    "taper:", "taper:0.6"])
def test_detrend_bad_method_names_it(method):
    with pytest.raises(ValueError, match=repr(method).replace("(", r"\(")):
        detrend(np.arange(10.0), method)


def test_spectral_energy_of_sinusoid_on_trend():
    loss = 2.0 - 1e-3 * T + sinusoid(50, 0.2)
    loss = np.concatenate([loss, np.full(100, np.nan)])  # past the window: ignored
    assert spectral_energy(loss, window=N) == pytest.approx(0.2**2 / 2, rel=1e-3)


def test_spectral_energy_matches_periodogram_and_hjorth():
    x = np.random.default_rng(1).normal(size=N) + np.exp(-T / 50)
    y = detrend(x, "linear")
    energy = spectral_energy(x, window=N, method="linear")
    # Periodogram density (one-sided, fs=1) integrates to the mean square: sum * df, df = fs/n.
    f, pxx = signal.periodogram(y, fs=1.0, window="boxcar", detrend=False, scaling="density")
    assert energy == pytest.approx(pxx.sum() * (f[1] - f[0]), rel=1e-10)
    _, pspec = signal.periodogram(y, fs=1.0, window="boxcar", detrend=False, scaling="spectrum")
    assert energy == pytest.approx(pspec.sum(), rel=1e-10)
    # scipy's own linear detrend is an independent oracle for ours.
    _, pxx_scipy = signal.periodogram(x, fs=1.0, detrend="linear")
    assert energy == pytest.approx(pxx_scipy.sum() / N, rel=1e-10)
    assert energy == pytest.approx(hjorth(y).activity, rel=1e-10)


def test_spectral_energy_white_noise_and_window():
    x = np.random.default_rng(2).normal(scale=0.5, size=5000)
    assert spectral_energy(x, window=4000, method="mean") == pytest.approx(0.25, rel=0.05)
    assert spectral_energy(x, window=10, method="none") == pytest.approx(np.mean(x[:10] ** 2))


def test_spectral_energy_mean_loss_normalization_is_scale_free():
    loss = 3.0 + sinusoid(20, 0.3)
    e = spectral_energy(loss, method="mean", normalize="mean_loss")
    assert e == pytest.approx((0.3**2 / 2) / 3.0**2, rel=1e-10)
    assert spectral_energy(10 * loss, method="mean", normalize="mean_loss") == pytest.approx(e, rel=1e-12)


def test_spectral_energy_vectorised_over_runs():
    rng = np.random.default_rng(4)
    runs = rng.normal(size=(5, 600)) * np.arange(1, 6)[:, None] + np.linspace(3, 1, 600)
    out = spectral_energy(runs, window=400, method="poly:2", normalize="mean_loss")
    assert out.shape == (5,)
    expected = [spectral_energy(r, window=400, method="poly:2", normalize="mean_loss") for r in runs]
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_spectral_energy_bad_inputs():
    with pytest.raises(ValueError, match="fewer than window"):
        spectral_energy(np.ones(100), window=400)
    with pytest.raises(ValueError, match="non-finite"):
        spectral_energy(np.r_[np.ones(10), np.inf, np.ones(500)])
    bad = np.ones((3, 400))
    bad[1, 5] = np.nan
    with pytest.raises(ValueError, match=r"runs \[1\]"):
        spectral_energy(bad)
    with pytest.raises(ValueError, match="'poly:q'"):
        spectral_energy(np.ones(400), method="poly:q")
    with pytest.raises(ValueError, match="'rms'"):
        spectral_energy(np.ones(400), normalize="rms")
    with pytest.raises(ValueError, match="window"):
        spectral_energy(np.ones(400), window=1)
    with pytest.raises(ValueError, match="non-zero mean"):
        spectral_energy(np.zeros(400), normalize="mean_loss")


def test_paper_energy_closed_forms():
    # constant c: window * c^2
    assert paper_energy(np.full(N, 2.5), window=N) == pytest.approx(N * 2.5**2, rel=1e-14)
    # geometric L(t) = L0 q^t: sum L0^2 q^(2t) = L0^2 (1 - q^(2w)) / (1 - q^2)
    l0, q, w = 4.6, 0.99, 300
    geo = l0 * q ** np.arange(500.0)
    assert paper_energy(geo, window=w) == pytest.approx(l0**2 * (1 - q ** (2 * w)) / (1 - q**2), rel=1e-12)
    # c + A sin with an integer number of cycles: N c^2 + N A^2 / 2 (the cross term sums to 0)
    loss = 3.0 + sinusoid(20, 0.3)
    assert paper_energy(loss) == pytest.approx(N * 3.0**2 + N * 0.3**2 / 2, rel=1e-12)
    # Parseval: equal to the spectral energy (1/n) sum |X_j|^2 of the undetrended window
    x = np.random.default_rng(5).normal(size=N) + np.exp(-T / 50)
    assert paper_energy(x) == pytest.approx(np.sum(np.abs(np.fft.fft(x)) ** 2) / N, rel=1e-12)
    # only the first `window` steps count; the default window is the paper's 400
    tail = np.concatenate([np.ones(N), np.full(100, np.nan)])
    assert paper_energy(tail) == pytest.approx(float(N)) and isinstance(paper_energy(tail), float)


def test_paper_energy_vectorised_over_runs():
    rng = np.random.default_rng(6)
    runs = rng.normal(size=(4, 500)) + np.linspace(3, 1, 500)
    out = paper_energy(runs, window=400)
    assert out.shape == (4,)
    np.testing.assert_allclose(out, [sum(v * v for v in r[:400]) for r in runs.tolist()], rtol=1e-12)
    consts = np.array([[1.0] * 10, [2.0] * 10, [0.0] * 10])
    np.testing.assert_allclose(paper_energy(consts, window=10), [10.0, 40.0, 0.0], rtol=0, atol=0)


def test_paper_energy_bad_inputs():
    with pytest.raises(ValueError, match="fewer than window=400"):
        paper_energy(np.ones(100))
    with pytest.raises(ValueError, match="non-finite loss values in the first 400 steps"):
        paper_energy(np.r_[np.ones(10), np.inf, np.ones(500)])
    bad = np.ones((3, 400))
    bad[2, 399] = np.nan
    with pytest.raises(ValueError, match=r"runs \[2\]"):
        paper_energy(bad)
    with pytest.raises(ValueError, match="shape"):
        paper_energy(np.ones((2, 2, 400)))
    with pytest.raises(ValueError, match="window"):
        paper_energy(np.ones(400), window=0)


def test_band_energies_find_a_planted_sinusoid_and_sum_by_parseval():
    from grokbook.spectral import band_energies

    n = 256
    t = np.arange(n)
    for cycles, band in ((0.3, 3), (0.2, 2), (0.1, 1), (0.05, 0)):   # (1/4,1/2], (1/8,1/4], ...
        f = np.round(cycles * n) / n                                 # on a DFT bin
        e = band_energies(np.cos(2 * np.pi * f * t), 4)
        assert np.argmax(e) == band and e[band] == pytest.approx(n / 2, rel=1e-9)  # sum cos^2 = n/2
        assert np.delete(e, band).max() < 1e-9
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    e = band_energies(x, 4)
    power = np.abs(np.fft.fft(x)) ** 2 / n                           # two-sided, every bin once
    f = np.abs(np.fft.fftfreq(n))
    assert e.sum() == pytest.approx(power[f > 1 / 32].sum(), rel=1e-12)
    assert band_energies(x, 1)[0] + np.sum(power[(f > 0) & (f <= 0.25)]) == pytest.approx(
        np.sum(power[f > 0]), rel=1e-12)
    with pytest.raises(ValueError):
        band_energies(np.ones(16), 4)
