"""The spectral signature of an early loss curve: detrending, FFT energy and the
Hjorth parameters (activity, mobility, complexity).

Units: a signal ``x`` is sampled once per training step; frequencies ``f`` are in
cycles/step (``0 <= |f| <= 0.5``), angular frequencies ``w = 2 pi f`` in rad/step.
Activity has the units of ``x`` squared; mobility is in rad/step.

Two definitions of Hjorth complexity are offered (see ``PAPER_NOTES.md``):
``"standard"`` is Hjorth's ``mobility(dx) / mobility(x) = sqrt(m4 m0) / m2``
(dimensionless, 1 for a pure sinusoid); ``"paper"`` is ``sqrt(m4 / m2)`` as the
paper writes it, which is ``mobility(dx)`` (rad/step, not dimensionless).
"""

from __future__ import annotations

from typing import Literal, NamedTuple, Union

import numpy as np

ComplexityKind = Literal["standard", "paper"]
_DETREND_METHODS = ("'none', 'mean', 'linear', 'poly:K' (K >= 0 an integer), 'highpass:F' or 'taper:F' "
                    "(0 <= F <= 0.5)")


class Hjorth(NamedTuple):
    """Hjorth parameters of a signal: ``activity`` (units of x squared), ``mobility``
    (rad/step), ``complexity`` (dimensionless for ``"standard"``, rad/step for ``"paper"``).
    A ratio whose denominator is zero (a constant signal) is NaN."""

    activity: float
    mobility: float
    complexity: float


def _as_signal(x, min_len: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected a 1-D signal of shape (n,), got shape {x.shape}")
    if len(x) < min_len:
        raise ValueError(f"signal has {len(x)} samples; need at least {min_len}")
    if not np.all(np.isfinite(x)):
        raise ValueError("signal contains non-finite values (NaN or inf)")
    return x


def _ratio(num: float, den: float) -> float:
    return float(np.sqrt(num / den)) if den > 0 else float("nan")


def _from_moments(m0: float, m2: float, m4: float, complexity: str) -> Hjorth:
    mobility = _ratio(m2, m0)
    if complexity == "standard":
        comp = _ratio(m4, m2) / mobility if mobility > 0 else float("nan")
    elif complexity == "paper":
        comp = _ratio(m4, m2)
    else:
        raise ValueError(f"unknown complexity {complexity!r}; expected 'standard' or 'paper'")
    return Hjorth(float(m0), mobility, comp)


def hjorth(x, *, complexity: ComplexityKind = "standard", periodic: bool = False) -> Hjorth:
    """Hjorth parameters of ``x`` (shape ``(n,)``, ``n >= 3``) in the time domain.

    With first and second finite differences ``dx``, ``d2x``::

        activity   = var(x)
        mobility   = sqrt(var(dx) / var(x))                       # rad/step
        complexity = mobility(dx) / mobility(x)                   # "standard"
                   = sqrt(var(d2x) / var(dx))  = mobility(dx)     # "paper": sqrt(m4/m2)

    ``var`` is the population variance (ddof=0). ``periodic=False`` takes ordinary
    differences (``np.diff``, ``n-1`` and ``n-2`` samples), the usual practice.
    ``periodic=True`` takes circular differences (``x[(t+1) % n] - x[t]``): the DFT
    treats the window as one period, so this form equals :func:`hjorth_spectral`
    exactly; the two forms differ only by the wrap-around term ``x[0] - x[n-1]``.
    """
    x = _as_signal(x, 3)
    if periodic:
        dx = np.roll(x, -1) - x
        d2x = np.roll(dx, -1) - dx
    else:
        dx = np.diff(x)
        d2x = np.diff(dx)
    return _from_moments(np.var(x), np.var(dx), np.var(d2x), complexity)


def hjorth_spectral(x, *, complexity: ComplexityKind = "standard") -> Hjorth:
    """Hjorth parameters of ``x`` (shape ``(n,)``, ``n >= 3``) from spectral moments.

    ``m_k = (1/n^2) sum_j |2 sin(w_j / 2)|^k |X(w_j)|^2`` with ``X`` the DFT of the
    mean-removed ``x`` and ``w_j = 2 pi j / n`` (rad/step). The weight
    ``|2 sin(w/2)|^k`` is ``|e^{iw} - 1|^k``, the gain of a k-fold finite difference,
    used instead of the continuous ``w^k`` so that the result agrees exactly (to
    rounding) with :func:`hjorth` with ``periodic=True``. For slow, band-limited
    signals (``w << 1``) ``2 sin(w/2) ~ w`` and this is the paper's
    ``m_k = integral w^k |F(L)(w)|^2 dw`` up to a constant. Then activity ``= m0``,
    mobility ``= sqrt(m2/m0)``, complexity ``= sqrt(m4 m0)/m2`` (``"standard"``) or
    ``sqrt(m4/m2)`` (``"paper"``).
    """
    x = _as_signal(x, 3)
    n = len(x)
    power = np.abs(np.fft.fft(x - x.mean())) ** 2 / n**2
    gain2 = (2 * np.sin(np.pi * np.arange(n) / n)) ** 2  # |2 sin(w/2)|^2, w = 2 pi j / n
    return _from_moments(power.sum(), (gain2 * power).sum(), (gain2**2 * power).sum(), complexity)


def detrend(x, method: str = "linear") -> np.ndarray:
    """Remove the slow, non-oscillatory part of ``x`` along its last axis.

    ``x``: ``(..., n)``; returns a float64 array of the same shape. ``method``:

    - ``"none"``: unchanged (a copy);
    - ``"mean"``: subtract the mean (same as ``"poly:0"``);
    - ``"linear"``: subtract the least-squares line (same as ``"poly:1"``);
    - ``"poly:K"``: subtract the least-squares polynomial of degree ``K`` in the step
      index (``K + 1 <= n``); a polynomial trend of degree ``<= K`` is removed exactly;
    - ``"highpass:F"``: zero every DFT bin with ``|f| < F`` (``F`` in cycles/step,
      ``0 <= F <= 0.5``), which removes the mean and all slower content; a sinusoid
      with an integer number of cycles in the window and ``f >= F`` passes unchanged.
      Unwindowed: a decay that does not end where it starts leaks into every bin;
    - ``"taper:F"``: subtract the least-squares line, multiply by a Hann window
      ``w_t = sin^2(pi (t + 1/2) / n)``, zero every DFT bin with ``|f| < F`` and divide
      by ``sqrt(mean(w^2))``. The taper takes the window's edges, where a falling loss
      leaks most, to zero, so a smooth decay (exponential, power law) leaves almost no
      energy, while a sinusoid with ``f`` well above ``F`` keeps its mean square
      (``tests/test_spectral.py``).
    """
    x = np.asarray(x, dtype=np.float64)
    kind, _, arg = str(method).partition(":")
    if kind == "none" and not arg:
        return x.copy()
    if kind in ("mean", "linear") and not arg:
        return _poly_residual(x, 0 if kind == "mean" else 1)
    if kind == "poly":
        try:
            degree = int(arg)
        except ValueError:
            degree = -1
        if degree < 0:
            raise ValueError(f"bad detrend method {method!r}: expected {_DETREND_METHODS}")
        return _poly_residual(x, degree)
    if kind in ("highpass", "taper"):
        try:
            cutoff = float(arg)
        except ValueError:
            cutoff = float("nan")
        if not 0 <= cutoff <= 0.5:
            raise ValueError(f"bad detrend method {method!r}: expected {_DETREND_METHODS}")
        if kind == "highpass":
            return _highpass(x, cutoff)
        n = x.shape[-1]
        w = np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2
        return _highpass(_poly_residual(x, 1) * w, cutoff) / np.sqrt(np.mean(w**2))
    raise ValueError(f"unknown detrend method {method!r}: expected {_DETREND_METHODS}")


def _highpass(x: np.ndarray, cutoff: float) -> np.ndarray:
    n = x.shape[-1]
    spectrum = np.fft.rfft(x, axis=-1)
    spectrum[..., np.fft.rfftfreq(n) < cutoff] = 0
    return np.fft.irfft(spectrum, n, axis=-1)


def _poly_residual(x: np.ndarray, degree: int) -> np.ndarray:
    n = x.shape[-1]
    if degree + 1 > n:
        raise ValueError(f"cannot fit a degree-{degree} polynomial to {n} samples")
    # Legendre basis on [-1, 1] keeps the fit well conditioned; projecting onto the
    # orthonormal basis Q gives the least-squares residual for every row at once.
    basis = np.polynomial.legendre.legvander(np.linspace(-1, 1, n), degree)
    q, _ = np.linalg.qr(basis)
    return x - (x @ q) @ q.T


def _early_window(loss, window: int, smallest: int) -> tuple[np.ndarray, np.ndarray]:
    """``(arr, raw)``: the loss curves as float64, ``(steps,)`` or ``(runs, steps)``, and
    their first ``window`` values; ValueError for another shape, a window that is not an
    integer >= ``smallest`` or longer than the curves, or a non-finite value in it."""
    arr = np.asarray(loss, dtype=np.float64)
    if arr.ndim not in (1, 2):
        raise ValueError(f"loss must have shape (steps,) or (runs, steps), got {arr.shape}")
    if int(window) != window or window < smallest:
        raise ValueError(f"window must be an integer >= {smallest}, got {window!r}")
    window = int(window)
    if arr.shape[-1] < window:
        raise ValueError(f"loss has {arr.shape[-1]} steps, fewer than window={window}")
    raw = arr[..., :window]
    bad = ~np.isfinite(raw).all(axis=-1)
    if np.any(bad):
        where = "" if arr.ndim == 1 else f" in runs {np.flatnonzero(bad).tolist()}"
        raise ValueError(f"non-finite loss values in the first {window} steps{where}")
    return arr, raw


def spectral_energy(loss, window: int = 400, method: str = "linear",
                    normalize: Literal["none", "mean_loss"] = "none") -> Union[float, np.ndarray]:
    """Energy of the oscillations in the first ``window`` steps of a loss curve.

    ``loss``: ``(steps,)`` or ``(runs, steps)``, one value per training step. The first
    ``window`` samples are detrended (:func:`detrend` with ``method``) into ``y``
    and the energy is::

        E = (1/n^2) sum_j |Y_j|^2 = (1/n) sum_t y_t^2        (Parseval, n = window)

    the mean square (power) of ``y``, in loss units squared; it equals Hjorth activity
    when ``y`` has zero mean (every method but ``"none"``), and equals
    ``scipy.signal.periodogram(y, fs=1, detrend=False).sum() / n`` (the PSD integrated
    over frequency). ``normalize="mean_loss"`` divides ``E`` by the square of the mean
    of the raw (not detrended) window: a scale-free relative energy, the mean square
    of the oscillation relative to the loss level. ``normalize="none"`` leaves ``E``.

    Returns a float for a 1-D input, a ``(runs,)`` array for a 2-D one. Raises
    ValueError if the curve is shorter than ``window`` or the window holds a non-finite
    value.
    """
    if normalize not in ("none", "mean_loss"):
        raise ValueError(f"unknown normalize {normalize!r}; expected 'none' or 'mean_loss'")
    arr, raw = _early_window(loss, window, smallest=2)
    window = raw.shape[-1]
    y = detrend(raw, method)
    energy = np.sum(np.abs(np.fft.fft(y, axis=-1)) ** 2, axis=-1) / window**2
    if normalize == "mean_loss":
        level = raw.mean(axis=-1) ** 2
        if np.any(level == 0):
            raise ValueError("normalize='mean_loss' needs a non-zero mean loss in the window")
        energy = energy / level
    return float(energy) if arr.ndim == 1 else energy


def paper_energy(loss, window: int = 400) -> Union[float, np.ndarray]:
    """The paper's spectral energy: the sum of squares of the first ``window`` values
    of the raw training loss, ``E = sum_{t < window} L(t)^2``.

    By Parseval this is the spectral energy ``(1/n) sum_j |F(L)_j|^2`` of the window
    (Hjorth's ``m0`` without removing the mean); the authors' code accumulates exactly
    this (``loss**2`` once per step). No detrending, no normalisation: it is dominated
    by how fast the loss falls from ``log(p)``; :func:`spectral_energy` gives the
    detrended variants.

    ``loss``: ``(steps,)`` or ``(runs, steps)``, one value per training step. Returns a
    float for a 1-D input, a ``(runs,)`` array for a 2-D one, in loss units squared.
    Raises ValueError if the curve is shorter than ``window`` or the window holds a
    non-finite value.
    """
    arr, raw = _early_window(loss, window, smallest=1)
    energy = np.sum(raw**2, axis=-1)
    return float(energy) if arr.ndim == 1 else energy


def band_energies(x, n_bands: int = 4) -> np.ndarray:
    """Energy of ``x`` (``(n,)``, ``n >= 2 ** (n_bands + 1)``) in ``n_bands`` octave bands
    of its one-sided spectrum, lowest first: band ``k`` holds the frequencies in
    ``(f_N / 2^(k+1), f_N / 2^k]`` counted from the top (``f_N`` the Nyquist frequency,
    0.5 cycles per step), so with 4 bands the top band is (1/4, 1/2] cycles per step and
    the lowest (1/32, 1/16]; the mean and the frequencies below the lowest band are left
    out. Energies are ``sum |X(f)|^2 / n`` over the band's DFT bins, the one-sided bins
    counted twice (Parseval: over all bands and the rest they sum to ``sum x^2``).
    Shape ``(n_bands,)``. Detrend first (:func:`detrend`) for the oscillations alone."""
    if n_bands < 1:
        raise ValueError(f"n_bands must be >= 1, got {n_bands}")
    x = _as_signal(x, 2 ** (n_bands + 1))
    n = len(x)
    power = np.abs(np.fft.rfft(x)) ** 2 / n
    f = np.fft.rfftfreq(n)                                  # cycles per step, 0 .. 0.5
    weight = np.where((f > 0) & (f < 0.5), 2.0, 1.0)        # the bins a real signal has twice
    out = np.empty(n_bands)
    for k in range(n_bands):
        hi, lo = 0.5 / 2 ** k, 0.5 / 2 ** (k + 1)
        out[n_bands - 1 - k] = (power * weight)[(f > lo) & (f <= hi)].sum()
    return out
