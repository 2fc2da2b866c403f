import numpy as np
import pytest
import torch

from grokbook.geometry import (TrajectoryPCA, cosine_series, drift_walk, fourier_plane, fourier_power,
                               optimizer_noise_walk, planarity,
                               random_walk, shuffled_walk, trajectory_pca)


def test_cosine_series_hand_made():
    snaps = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 2.0]])
    out = cosine_series(snaps)
    r = 1 / np.sqrt(2)
    np.testing.assert_allclose(out["consecutive"], [r, r, 1.0])
    # updates: (0, 1), (-1, 0), (0, 1)
    np.testing.assert_allclose(out["update"], [0.0, 0.0])
    np.testing.assert_allclose(out["init"], [1.0, r, 0.0, 0.0], atol=1e-15)
    assert {k: v.shape for k, v in out.items()} == {"consecutive": (3,), "update": (2,), "init": (4,)}


def test_cosine_series_zero_vector_is_nan_and_torch_accepted():
    out = cosine_series(torch.tensor([[1.0, 2.0], [1.0, 2.0], [3.0, 4.0]]))
    assert np.isnan(out["update"][0])  # the first update is zero
    np.testing.assert_allclose(out["consecutive"][0], 1.0)


def test_random_walk_has_exact_step_norms_and_zero_update_cosine():
    norms = np.random.default_rng(0).uniform(0.1, 2.0, size=50)
    start = np.full(1000, 3.0)
    walk = random_walk(norms, 1000, seed=1, start=start)
    assert walk.shape == (51, 1000)
    np.testing.assert_array_equal(walk[0], start)
    np.testing.assert_allclose(np.linalg.norm(np.diff(walk, axis=0), axis=1), norms, rtol=1e-12)
    assert np.abs(cosine_series(walk)["update"]).max() < 0.2  # ~ N(0, 1/1000)
    np.testing.assert_array_equal(walk, random_walk(norms, 1000, seed=1, start=start))


@pytest.mark.parametrize("shape", [(20, 5), (10, 50)])  # the SVD path and the Gram path
def test_explained_variance_matches_covariance_eigh(shape):
    t, p = shape
    x = np.random.default_rng(2).normal(size=shape) * np.linspace(3, 0.5, p)
    pca = trajectory_pca(x, n_components=3)
    eig = np.linalg.eigh(np.cov(x, rowvar=False))[0][::-1]  # descending, (P,)
    k = min(t, p)
    np.testing.assert_allclose(pca.explained_variance_ratio, eig[:k] / eig.sum(), atol=1e-12)
    assert pca.explained_variance_ratio.shape == (k,)
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(3), atol=1e-10)
    # Components are the covariance's leading eigenvectors, up to sign.
    vecs = np.linalg.eigh(np.cov(x, rowvar=False))[1][:, ::-1][:, :3]
    np.testing.assert_allclose(np.abs(pca.components @ vecs), np.eye(3), atol=1e-8)
    np.testing.assert_allclose(pca.projection, (x - x[-1]) @ pca.components.T)
    assert np.all(pca.projection[0] >= 0)


@pytest.mark.parametrize("p", [3, 500])
def test_plane_trajectory_is_two_dimensional(p):
    rng = np.random.default_rng(3)
    u, v = np.linalg.qr(rng.normal(size=(p, 2)))[0].T
    a, b = np.cumsum(rng.normal(size=(2, 40)), axis=1)
    snaps = rng.normal(size=p) + np.outer(a, u) + np.outer(b, v)
    pca = trajectory_pca(snaps, n_components=3)
    assert isinstance(pca, TrajectoryPCA)
    assert pca.explained_variance_ratio[:2].sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(pca.components[2], 0.0)  # no third direction
    # Two coordinates reconstruct theta_t - theta_T exactly; the last point is the origin.
    np.testing.assert_allclose(pca.projection[:, :2] @ pca.components[:2], snaps - snaps[-1], atol=1e-9)
    np.testing.assert_allclose(pca.projection[-1], 0.0, atol=1e-12)


def test_random_walk_pca_known_result():
    # High-dimensional random walks put ~6/pi^2 ~ 0.61 of the variance in the first
    # component (Antognini & Sohl-Dickstein 2018): a trajectory being "mostly 2-D"
    # is not by itself evidence of structure.
    walk = random_walk(np.ones(200), 5000, seed=4)
    ratio = trajectory_pca(walk).explained_variance_ratio
    assert ratio[0] > 0.5
    assert ratio[0] == pytest.approx(6 / np.pi**2, abs=0.05)
    assert ratio[:2].sum() > 0.7


def test_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        cosine_series(np.ones(5))
    with pytest.raises(ValueError, match="n_components"):
        trajectory_pca(np.ones((4, 3)), n_components=4)
    with pytest.raises(ValueError, match="non-finite"):
        trajectory_pca(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="step_norms"):
        random_walk([1.0, -1.0], 3)
    with pytest.raises(ValueError, match="dim"):
        random_walk([1.0], 0)


def test_principal_components_against_covariance_eigh():
    from grokbook.geometry import principal_components

    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 6)) * np.array([5.0, 2.0, 1.0, 0.5, 0.2, 0.1])
    proj, ratio = principal_components(x, 2)
    evals, evecs = np.linalg.eigh(np.cov(x.T, bias=True))
    order = np.argsort(evals)[::-1]
    np.testing.assert_allclose(ratio, evals[order[:2]] / evals.sum(), rtol=1e-10)
    expected = (x - x.mean(0)) @ evecs[:, order[:2]]
    np.testing.assert_allclose(np.abs(proj), np.abs(expected), rtol=1e-8, atol=1e-10)
    # points on a circle: two components hold all the variance
    ang = np.linspace(0, 2 * np.pi, 31, endpoint=False)
    circle = np.stack([np.cos(ang), np.sin(ang), np.zeros_like(ang)], 1) @ rng.normal(size=(3, 8))
    assert principal_components(circle, 2)[1].sum() == pytest.approx(1.0)


def _drifting_trajectory(t=40, p=300, seed=0):
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(size=(t, p)) * 0.1 + 0.05, axis=0)


def test_drift_walk_keeps_step_norms_drift_and_end_point():
    x = _drifting_trajectory()
    w = drift_walk(x, seed=3)
    u = (x[-1] - x[0]) / np.linalg.norm(x[-1] - x[0])
    np.testing.assert_allclose(np.linalg.norm(np.diff(w, axis=0), axis=1),
                               np.linalg.norm(np.diff(x, axis=0), axis=1), rtol=1e-10)
    np.testing.assert_allclose(w @ u, x @ u, rtol=1e-10)  # progress along the drift, snapshot by snapshot
    np.testing.assert_allclose(w[0], x[0])
    assert not np.allclose(w, x)


def test_drift_walk_of_a_straight_line_is_the_line():
    x = np.outer(np.arange(10.0) ** 2, np.ones(50))  # all steps along one direction
    np.testing.assert_allclose(drift_walk(x, seed=1), x, atol=1e-12)
    with pytest.raises(ValueError, match="no drift"):
        drift_walk(np.zeros((5, 3)))


def test_shuffled_walk_is_a_permutation_of_the_steps():
    x = _drifting_trajectory(t=25, p=20)
    w = shuffled_walk(x, seed=2)
    steps, wsteps = np.diff(x, axis=0), np.diff(w, axis=0)
    key = lambda s: s[np.lexsort(s.T[::-1])]
    np.testing.assert_allclose(key(wsteps), key(steps), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(w[-1], x[-1], rtol=1e-12)
    assert not np.allclose(w, x)


def test_planarity_closed_form():
    # three centred, mutually orthogonal coordinate series with norms 3, 2 and 1
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(30, 3)))
    q -= q.mean(axis=0)
    q, _ = np.linalg.qr(q)  # orthonormal and (being in the span of centred columns) centred
    x = np.zeros((30, 7))
    x[:, 1], x[:, 4], x[:, 6] = 3 * q[:, 0], 2 * q[:, 1], 1 * q[:, 2]
    assert planarity(x, 2) == pytest.approx(13 / 14, rel=1e-10)
    assert planarity(x, 1) == pytest.approx(9 / 14, rel=1e-10)


def _noise_walk_by_hand(theta0, steps, lr, wd, betas, optimizer, warmup, seed):
    """Adam's recursion written out in numpy, fed the same Gaussian draws."""
    rng = np.random.default_rng(seed)
    b1, b2 = betas
    w, m, v = theta0.astype(np.float64).copy(), np.zeros(theta0.size), np.zeros(theta0.size)
    path = [w.copy()]
    for t in range(steps):
        g = rng.standard_normal(theta0.size)
        rate = lr * min(1.0, (t + 1) / warmup) if warmup else lr
        if optimizer == "adam":
            g = g + wd * w
        else:
            w = w * (1 - rate * wd)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - rate * (m / (1 - b1 ** (t + 1))) / (np.sqrt(v / (1 - b2 ** (t + 1))) + 1e-8)
        path.append(w.copy())
    return np.array(path)


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_optimizer_noise_walk_is_adams_recursion_on_gaussian_gradients(optimizer):
    theta0 = np.random.default_rng(0).normal(size=50)
    walk = optimizer_noise_walk(theta0, 30, lr=0.01, weight_decay=0.5, betas=(0.9, 0.98), optimizer=optimizer,
                                warmup_steps=10, record=range(31), seed=3)
    path = _noise_walk_by_hand(theta0, 30, 0.01, 0.5, (0.9, 0.98), optimizer, 10, 3)
    np.testing.assert_allclose(walk.points, path, rtol=0, atol=1e-12)
    dense = cosine_series(path)
    np.testing.assert_allclose(walk.cos_init, dense["init"][:-1], atol=1e-12)
    assert np.isnan(walk.cos_update[0])
    np.testing.assert_allclose(walk.cos_update[1:], dense["update"], atol=1e-12)
    np.testing.assert_allclose(walk.cos_consecutive, dense["consecutive"], atol=1e-12)


def test_optimizer_noise_walk_matches_torch_optim_fed_the_same_gradients():
    theta0 = np.random.default_rng(2).normal(size=40)
    walk = optimizer_noise_walk(theta0, 25, lr=0.02, weight_decay=1.0, warmup_steps=5, record=[25], seed=7)
    w = torch.tensor(theta0, requires_grad=True)
    opt = torch.optim.AdamW([w], lr=0.02, betas=(0.9, 0.98), eps=1e-8, weight_decay=1.0)
    rng = np.random.default_rng(7)
    for t in range(25):
        w.grad = torch.from_numpy(rng.standard_normal(40))
        opt.param_groups[0]["lr"] = 0.02 * min(1.0, (t + 1) / 5)
        opt.step()
    np.testing.assert_allclose(walk.points[0], w.detach().numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("beta1", [0.0, 0.9])
def test_optimizer_noise_walk_successive_updates_have_cosine_beta1(beta1):
    # m_t = b1 m_{t-1} + (1 - b1) g_t with independent g: corr(m_t, m_{t-1}) = b1 once stationary,
    # and in high dimension the cosine concentrates on it
    walk = optimizer_noise_walk(np.ones(20_000), 300, lr=1e-3, betas=(beta1, 0.999), warmup_steps=0, seed=1)
    assert abs(np.median(walk.cos_update[100:]) - beta1) < 0.02


def test_optimizer_noise_walk_rejects_bad_input():
    with pytest.raises(ValueError, match="optimizer"):
        optimizer_noise_walk(np.ones(3), 5, lr=0.1, optimizer="sgd")
    with pytest.raises(ValueError, match="theta0"):
        optimizer_noise_walk(np.zeros(3), 5, lr=0.1)
    with pytest.raises(ValueError, match="record"):
        optimizer_noise_walk(np.ones(3), 5, lr=0.1, record=[0, 6])
    with pytest.raises(ValueError, match="lr"):
        optimizer_noise_walk(np.ones(3), 5, lr=0.0)


def _circle_embedding(p, k, d=6, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, 2)))
    x = np.arange(p)[:, None]
    return np.cos(2 * np.pi * k * x / p) * q[:, 0] + np.sin(2 * np.pi * k * x / p) * q[:, 1] \
        + noise * rng.normal(size=(p, d))


@pytest.mark.parametrize("p", [11, 12])
def test_fourier_power_finds_a_known_frequency_and_keeps_parseval(p):
    power = fourier_power(_circle_embedding(p, 3))
    assert power.shape == (p // 2 + 1,)
    assert power[3] == pytest.approx(1.0)
    # Parseval on a random matrix: the unnormalised power is p * ||E||^2, each frequency
    # is the squared projection on its cos and sin columns
    e = np.random.default_rng(1).normal(size=(p, 5))
    x = np.arange(p)[:, None]
    by_hand = [np.sum(e.mean(axis=0) ** 2) * p]
    for k in range(1, p // 2 + 1):
        cos, sin = np.cos(2 * np.pi * k * x / p), np.sin(2 * np.pi * k * x / p)
        scale = 1 / p if 2 * k == p else 2 / p
        by_hand.append(scale * (np.sum((cos * e).sum(axis=0) ** 2) + np.sum((sin * e).sum(axis=0) ** 2)))
    np.testing.assert_allclose(np.sum(by_hand), np.sum(e ** 2), rtol=1e-12)
    np.testing.assert_allclose(fourier_power(e), np.array(by_hand) / np.sum(by_hand), rtol=1e-10)


def test_fourier_plane_draws_the_circle():
    p, k = 13, 4
    plane = fourier_plane(_circle_embedding(p, k, noise=0.0), k)
    np.testing.assert_allclose(np.linalg.norm(plane, axis=1), 1.0, atol=1e-12)
    x = np.arange(p)  # the axes are the cos and sin components, signs included
    np.testing.assert_allclose(plane, np.stack([np.cos(2 * np.pi * k * x / p), np.sin(2 * np.pi * k * x / p)], 1),
                               atol=1e-12)
    angles = np.angle(plane[:, 0] + 1j * plane[:, 1])
    turn = np.mod(np.diff(angles), 2 * np.pi)  # one direction of travel, the same turn every token
    np.testing.assert_allclose(turn, turn[0], atol=1e-9)
    assert min(turn[0], 2 * np.pi - turn[0]) == pytest.approx(2 * np.pi * k / p)


def test_fourier_functions_reject_bad_input():
    with pytest.raises(ValueError, match="shape"):
        fourier_power(np.ones(5))
    with pytest.raises(ValueError, match="non-finite"):
        fourier_power(np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="frequency"):
        fourier_plane(np.ones((7, 2)), 4)
    with pytest.raises(ValueError, match="frequency"):
        fourier_plane(np.ones((8, 2)), 4)  # the Nyquist frequency of p = 8 has no plane
    with pytest.raises(ValueError, match="columns"):
        fourier_plane(np.ones((7, 1)), 2)


def test_key_share_of_planted_frequencies_and_of_noise():
    """Columns cos/sin of 2 pi k x / p at k in {3, 7}: the strongest two frequencies hold
    all the non-constant power, the strongest one about half; Gaussian columns give about
    n_key / (p // 2)."""
    from grokbook.geometry import key_share

    p = 47
    x = np.arange(p)[:, None]
    planted = np.hstack([np.cos(2 * np.pi * 3 * x / p), np.sin(2 * np.pi * 7 * x / p), 2.0 + 0 * x])
    assert key_share(planted, 2) == pytest.approx(1.0)
    assert key_share(planted, 1) == pytest.approx(0.5)
    noise = np.random.default_rng(0).normal(size=(p, 4000))
    assert key_share(noise, 5) == pytest.approx(5 / (p // 2), rel=0.1)
    assert np.isnan(key_share(np.ones((p, 3)), 2))
    with pytest.raises(ValueError, match="n_key"):
        key_share(planted, p // 2 + 1)


def test_key_share_over_time_reads_every_snapshot(tiny):
    """Against key_share of each snapshot's embedding, built by hand."""
    from grokbook.geometry import key_share, key_share_over_time
    from grokbook.store import train

    run = train(tiny.replace(n_snapshots=4))
    steps, shares = key_share_over_time(run, 2)
    assert list(steps) == list(run.snapshot_steps) and shares.shape == steps.shape
    n = run.dataset().n_classes
    for k, s in enumerate(steps):
        assert shares[k] == pytest.approx(key_share(run.model_at(int(s)).embed.weight.detach().numpy()[:n], 2))
