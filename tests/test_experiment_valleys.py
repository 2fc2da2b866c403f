"""grokbook.experiments.valleys: barriers against planted profiles and a direct
evaluation of the loss, the segments' steps on hand-built schedules, every verdict
branch, and the pool's file."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from grokbook import RunConfig
from grokbook.experiments import valleys as ev
from grokbook.phases import PhaseTimes
from grokbook.trainer import cross_entropy
from grokbook.training import fit

TINY = RunConfig(p=7, n_layers=1, d_model=8, n_heads=2, lr=0.01, steps=60, n_snapshots=8)


def test_barrier_of_planted_profiles():
    u = np.linspace(0, 1, 21)
    line = 2.0 - 1.5 * u
    assert ev.barrier(u, line) == pytest.approx(0.0, abs=1e-12)
    assert ev.barrier(u, line + 4 * 0.7 * u * (1 - u)) == pytest.approx(0.7)  # a bump of 0.7 at the middle
    assert ev.barrier(u, line - u * (1 - u)) == 0.0  # a dip: no barrier
    assert ev.barrier(2 * u - 1, line + 4 * 0.7 * u * (1 - u)) == pytest.approx(0.7)  # any alpha range
    with pytest.raises(ValueError, match="one length >= 2"):
        ev.barrier([0.0], [1.0])


def test_pair_steps_on_a_hand_built_schedule():
    steps = [0, 10, 50, 100, 200, 400, 800, 1600, 3000, 4000]
    got = ev.pair_steps(steps, t2=45, t3=700, t4=1500, moment=200)
    assert got == {"escape": (200, 4000), "memorizing": (50, 400), "generalized": (1600, 4000)}
    assert ev.pair_steps(steps, 45, None, None, 200) == {"escape": (200, 4000), "memorizing": None,
                                                          "generalized": None}
    assert ev.pair_steps(steps, 45, 60, 3500, 4000)["memorizing"] is None  # one snapshot in the phase
    assert ev.pair_steps(steps, 45, 60, 3500, 4000)["escape"] is None


@pytest.fixture(scope="module")
def tiny_run():
    return fit(TINY, progress=False)


def test_measure_barriers_against_a_direct_evaluation(tiny_run):
    s = [int(x) for x in tiny_run.snapshot_steps]
    times = PhaseTimes(1, s[1], s[4], s[5])
    rows = ev.measure_barriers(tiny_run, times, moment=s[2], n_points=11)
    assert [r["pair"] for r in rows] == ["escape", "memorizing", "generalized"]
    data = tiny_run.dataset()
    for r in rows:
        wa = tiny_run.snapshots[s.index(r["step_a"])].astype(np.float64)
        wb = tiny_run.snapshots[s.index(r["step_b"])].astype(np.float64)
        losses = []
        for u in np.linspace(0, 1, 11):  # the model loaded with each point's weights, one by one
            model = tiny_run.model_with((1 - u) * wa + u * wb)
            with torch.no_grad():
                losses.append(float(cross_entropy(model(data.train_x), data.train_y)))
        assert r["barrier"] == pytest.approx(ev.barrier(np.linspace(0, 1, 11), losses), rel=1e-4, abs=1e-6)
        assert r["loss_a"] == pytest.approx(losses[0], rel=1e-5)
        assert r["distance"] == pytest.approx(np.linalg.norm(wb - wa), rel=1e-6)
        assert (r["t2"], r["t3"], r["t4"]) == (s[1], s[4], s[5])


def test_barrier_excess_and_its_verdict():
    rows = []
    for seed, (e, m, g) in enumerate([(3.0, 0.5, 1.0), (2.0, 0.1, 0.2), (0.5, 1.0, 0.0)]):
        rows += [dict(seed=seed, pair=p, barrier=b) for p, b in zip(ev.PAIRS, (e, m, g))]
    rows += [dict(seed=9, pair="escape", barrier=1.0)]
    got = ev.barrier_excess(rows)
    assert got[0] == 2.0 and got[1] == pytest.approx(1.8) and got[2] == -0.5 and math.isnan(got[9])
    assert ev.barrier_excess(rows, ["memorizing"])[2] == -0.5 and ev.barrier_excess(rows, ["generalized"])[2] == 0.5
    assert ev.barrier_verdict((1.0, 0.2, 1.8), 3).word == "reproduced"
    assert ev.barrier_verdict((0.2, -0.3, 0.8), 3).word == "undecided"
    assert ev.barrier_verdict((-1.0, -1.5, -0.2), 3).word == "reversed"
    assert ev.barrier_verdict((1.0, 0.2, 1.8), 1).word == "not testable"


def test_registered_verdict_every_branch_and_the_builds_text():
    v = ev.registered_verdict({"valley": (3, 2), "flat": (3, 3), "escape": (0, 0)}, 3)
    assert str(v) == ("partly reproduced: a valley around the memorizing weights: all 3 grokking runs, 2 of 3 "
                      "controls; a flat stretch of memorizing solutions: all grokking runs, but all controls too "
                      "(not specific to grokking); a way out that keeps the training set fitted and generalizes: "
                      "only 0 of 3 grokking runs (0 of 3 controls)")  # chapter 5 in the session-15 build
    assert ev.registered_verdict({"valley": (3, 0), "flat": (3, 2), "escape": (3, 1)}, 3).word == "reproduced"
    assert ev.registered_verdict({"valley": (2, 0), "flat": (3, 3), "escape": (0, 0)}, 3).word == "not reproduced"
    counts = {"valley": (3, 0), "flat": (3, 2), "escape": (3, 1)}
    assert ev.registered_verdict(counts, 3, missing=[1]).word == "not testable"
    leaky = ev.registered_verdict(counts, 3, missing=[1], leaky=[0])
    assert leaky.word == "not testable" and "controls of seeds [0]" in leaky.reason


def test_pool_round_trip_coverage_and_agreement(tmp_path, tiny_run):
    s = [int(x) for x in tiny_run.snapshot_steps]
    rows = ev.measure_barriers(tiny_run, PhaseTimes(1, s[1], s[4], s[5]), moment=s[2], n_points=5)
    path = ev.write_pool(rows, tmp_path / "v.csv")
    back = ev.read_pool(path)
    assert all(ev.agrees(a, b) for a, b in zip(rows, back)) and len(back) == len(rows)
    assert ev.pool_rows(back, [TINY]) == back and ev.pool_rows(back, [TINY, TINY.replace(seed=3)]) is None
    assert not ev.agrees(rows[0], dict(rows[0], barrier=rows[0]["barrier"] * 1.01 + 1e-6))
    assert not ev.agrees(rows[0], dict(rows[0], step_b=rows[0]["step_b"] - 1))
    assert ev.read_pool(tmp_path / "none.csv") == []


def test_moment_steps_are_snapshots_below_the_last():
    steps = [0, 10, 50, 100, 200, 400, 800, 1600, 3000, 4000]
    # targets 30 (a tie between 10 and 50: the first), sqrt(60 * 1600) = 310, (1600 + 4000) / 2 = 2800
    assert ev.moment_steps(steps, 60, 1600) == [10, 400, 3000]
    # t2 and t4 stand in as 400 and 2400: targets 200, 980, 3200
    assert ev.moment_steps(steps, None, None) == [200, 800, 3000]
    assert ev.moment_steps([0, 5, 10], 9, 10)[2] == 5  # never the last snapshot


def test_slice_map_is_the_loss_at_each_point_of_each_slice(tmp_path):
    import torch

    from grokbook import RunConfig
    from grokbook.landscape import filter_normalize, random_direction
    from grokbook.phases import PhaseTimes
    from grokbook.trainer import loss_fn
    from grokbook.training import fit

    config = RunConfig(p=7, n_layers=1, d_model=8, n_heads=2, lr=0.01, steps=40, n_snapshots=6)
    run = fit(config, progress=False)
    alphas = np.array([-0.5, 0.0, 0.25])
    m = ev.slice_map(run, alphas, direction_seed=3)
    assert m["train"].shape == m["val"].shape == (len(run.snapshot_steps), 3)
    data = run.dataset()
    for i in (0, 3):  # point by point: the weights moved, a fresh model, the loss evaluated directly
        model = run.model_at(int(run.snapshot_steps[i]))
        d = filter_normalize(random_direction(model, 3), model)
        for j, a in enumerate(alphas):
            moved = run.model_with(run.snapshots[i] + a * d.numpy())
            with torch.no_grad():
                want = float(loss_fn(config, moved(data.val_x), data.val_y))
            assert m["val"][i, j] == pytest.approx(want, rel=1e-5)
    rows = ev.map_rows(run, PhaseTimes(1, 5, None, None), alphas, 3)
    back = ev.map_of_rows(ev.read_maps(ev.write_maps(rows, tmp_path / "m.csv")), config.hash())
    assert np.array_equal(back["steps"], run.snapshot_steps) and np.allclose(back["alphas"], alphas)
    assert np.array_equal(back["train"], m["train"]) and np.array_equal(back["val"], m["val"])
    with pytest.raises(ValueError, match="grid"):
        ev.map_of_rows(rows[:-1], config.hash())


class _Well(torch.nn.Module):
    """One weight theta, output as is: with the loss of :func:`_double_well` the landscape
    has two basins, at theta = -1 and +1, with a barrier of 1 nat between them."""

    def __init__(self) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.theta.expand(len(x), 1)


def _double_well(logits, _y, tilt=0.3):
    theta = logits[:, 0]
    return ((theta ** 2 - 1) ** 2 + tilt * theta).mean()  # the tilt is linear: it moves no barrier


def test_barrier_on_a_planted_two_basin_landscape():
    from grokbook.landscape import slice_1d

    x, y = torch.zeros(4, 1), torch.zeros(4, dtype=torch.long)
    alphas = torch.linspace(0, 1, 21)

    def seg(a, b):
        loss = slice_1d(_Well(), torch.tensor([a]), torch.tensor([b - a]), alphas, {"train": (x, y)},
                        loss_fn=_double_well)["train"]["loss"]
        return ev.barrier(alphas.numpy(), loss)

    # across the two basins: the excess over the chord is (theta^2 - 1)^2, largest (1) at theta = 0
    assert seg(-1.0, 1.0) == pytest.approx(1.0, abs=1e-6)
    assert seg(-1.2, 0.8) == pytest.approx(max((t * t - 1) ** 2 - (((-1.2) ** 2 - 1) ** 2 * (0.8 - t) / 2
                                                                 + (0.8 ** 2 - 1) ** 2 * (t + 1.2) / 2)
                                               for t in np.linspace(-1.2, 0.8, 21)), abs=1e-6)
    # within one basin the loss is convex (|theta| > 1/sqrt(3)): no barrier
    assert seg(0.8, 1.3) == 0.0 and seg(-1.4, -0.7) == 0.0
