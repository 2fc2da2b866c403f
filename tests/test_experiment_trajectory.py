"""grokbook.experiments.trajectory: the evenly spaced snapshots against the schedule
that made them, planarity against planted trajectories, and every verdict branch."""

from __future__ import annotations

import numpy as np
import pytest

from grokbook.experiments import trajectory as et
from grokbook.trainer import snapshot_schedule


def test_evenly_spaced_picks_the_linear_half_of_the_schedule():
    steps = snapshot_schedule(4000, 40)
    idx = et.evenly_spaced(steps, 4000, 40)
    assert steps[idx].tolist() == np.round(np.linspace(0, 4000, 20)).astype(int).tolist()
    assert np.ptp(np.diff(steps[idx])) <= 1  # evenly spaced, up to rounding
    assert et.evenly_spaced(snapshot_schedule(60, 6), 60, 6).size == 3
    with pytest.raises(ValueError, match="evenly spaced steps"):
        et.evenly_spaced(np.arange(0, 4001, 7), 4000, 40)


def test_planarity_row_on_a_planar_curve_and_on_a_random_walk():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((200, 2)))[0].T  # two orthonormal directions in 200-D
    t = np.linspace(0, 2.5, 30)
    plane = np.c_[np.cos(t), np.sin(t)] @ basis * 3.0
    row = et.planarity_row(plane, n_walks=4)
    assert row["planarity"] == pytest.approx(1.0, abs=1e-9) and row["planar"]
    assert row["isotropic walk"] < 0.98
    # its own steps in any order stay in the plane: no better than its shuffled null
    assert row["shuffled steps"] == pytest.approx(1.0, abs=1e-9) and not row["beats nulls"]
    walk = np.cumsum(rng.standard_normal((30, 200)), axis=0)
    assert not et.planarity_row(walk, n_walks=4)["planar"]


@pytest.mark.parametrize("counts, word", [
    ((3, 3, 0, 1), "reproduced"),
    ((3, 3, 3, 0), "reproduced"),  # specific on the second criterion
    ((3, 3, 3, 3), "not specific"),
    ((3, 1, 0, 0), "partly reproduced"),
    ((2, 3, 0, 0), "partly reproduced"),
    ((2, 2, 0, 0), "not reproduced"),
])
def test_registered_verdict_every_branch(counts, word):
    assert et.registered_verdict(*counts, 3).word == word


def test_registered_verdict_reads_like_the_registered_one():
    v = et.registered_verdict(0, 0, 0, 0, 3)
    assert str(v) == ("not reproduced: more than 98% in two components: only 0 of 3 grokking runs (0 of 3 "
                      "controls); more planar than the drift-keeping nulls: only 0 of 3 grokking runs (0 of 3 "
                      "controls)")  # the build's verdict (chapter 6, session 15)
    assert et.registered_verdict(3, 3, 0, 0, 3, not_grokking=[1]).word == "not testable"
    leaky = et.registered_verdict(3, 3, 0, 0, 3, not_grokking=[1], leaky=[2])
    assert leaky.word == "not testable" and "controls of seeds [2]" in leaky.reason


def test_verdict_of_rows_reads_the_schedule_and_threshold_asked():
    rows = [dict(group="grokking", planarity=0.97, **{"beats nulls": True, "planarity (even)": 0.99,
                                                     "beats nulls (even)": True}),
            dict(group="control", planarity=0.90, **{"beats nulls": False, "planarity (even)": 0.99,
                                                    "beats nulls (even)": True})]
    assert et.verdict_of_rows(rows, 1).word == "partly reproduced"
    assert et.verdict_of_rows(rows, 1, planar=0.95).word == "reproduced"
    assert et.verdict_of_rows(rows, 1, key=" (even)").word == "not specific"
    assert "more than 95% in two" in et.verdict_of_rows(rows, 1, planar=0.95).reason


def test_measure_planarity_under_both_schedules(tmp_path):
    from grokbook import RunConfig
    from grokbook.phases import PhaseTimes
    from grokbook.training import fit

    config = RunConfig(p=7, n_layers=1, d_model=8, n_heads=2, lr=0.01, steps=60, n_snapshots=10)
    run = fit(config, progress=False)
    rows = et.measure_planarity(run, PhaseTimes(1, 5, None, None), n_walks=3)
    even = et.evenly_spaced(run.snapshot_steps, 60, 10)
    assert [(r["schedule"], r["snapshots"]) for r in rows] == [("stored", len(run.snapshot_steps)),
                                                               ("even", len(even))]
    direct = et.planarity_row(run.snapshots.astype(np.float64)[even], 3)
    assert rows[1]["planarity"] == direct["planarity"] and rows[1]["drift walk"] == direct["drift walk"]
    assert rows[0]["t4"] == -1
    back = et.read_pool(et.write_pool(rows, tmp_path / "t.csv"))
    assert back == rows
    assert et.pool_rows(back, [config]) == back and et.pool_rows(back, [config.replace(seed=5)]) is None


def test_planarity_excess_and_its_verdict():
    rows = [dict(seed=1, t4=900, schedule="even", planarity=0.95, **{"drift walk": 0.90}),
            dict(seed=1, t4=900, schedule="stored", planarity=0.99, **{"drift walk": 0.80}),
            dict(seed=2, t4=-1, schedule="even", planarity=0.99, **{"drift walk": 0.50})]
    assert et.planarity_excess(rows, "even") == {1: pytest.approx(0.05)}  # seed 2 does not generalize
    assert et.plane_verdict((0.05, 0.02, 0.08), (0.99, 0.985, 0.995), 5).word == "reproduced"
    assert et.plane_verdict((0.05, 0.02, 0.08), (0.95, 0.93, 0.97), 5).word == "partly reproduced"
    assert et.plane_verdict((0.0, -0.02, 0.03), (0.99, 0.985, 0.995), 5).word == "undecided"
    assert et.plane_verdict((-0.05, -0.08, -0.02), (0.99, 0.985, 0.995), 5).word == "reversed"
    assert et.plane_verdict((0.05, 0.02, 0.08), (0.99, 0.985, 0.995), 1).word == "not testable"


def test_path_shape_on_planted_paths():
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.standard_normal((50, 2)))[0].T
    line = np.outer(np.linspace(0, 4, 6), basis[0])
    assert et.path_shape(line) == pytest.approx(dict(straightness=1.0, turning=1.0))
    zigzag = np.array([basis[0], basis[1], basis[0], basis[1]])  # back and forth: reversals only
    assert et.path_shape(zigzag) == pytest.approx(dict(straightness=1 / 3, turning=-1.0))
    # a half circle in four chords of 60 degrees: ends 2R apart over 3R of path, each turn 60 degrees
    a = np.deg2rad([0, 60, 120, 180])
    arc = 2.0 * np.c_[np.cos(a), np.sin(a)] @ basis
    assert et.path_shape(arc) == pytest.approx(dict(straightness=2 / 3, turning=0.5))
    with pytest.raises(ValueError, match="n >= 3"):
        et.path_shape(line[:2])
    with pytest.raises(ValueError, match="zero step"):
        et.path_shape(np.array([line[0], line[0], line[1]]))


def test_path_barrier_places_the_losses_by_arc_length():
    x = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    assert et.path_barrier(x, [0.0, 1.0, 0.0]) == pytest.approx(1.0)
    uneven = np.array([[0.0, 0.0], [3.0, 0.0], [4.0, 0.0]])
    assert et.path_barrier(uneven, [0.0, 3.0, 4.0]) == pytest.approx(0.0)  # on the line by arc length
    assert et.path_barrier(uneven, [0.0, 3.5, 4.0]) == pytest.approx(0.5)


@pytest.mark.parametrize("values, picture", [
    ((0.2, -0.4, 0.0, 0.0), et.PICTURES[0]),
    ((0.8, 0.6, 0.1, 0.0), et.PICTURES[1]),
    ((0.8, 0.6, 2.0, 0.1), et.PICTURES[2]),
    ((0.3, 0.6, 2.0, 0.1), et.PICTURES[2]),   # a detour need not be straight
    ((0.3, 0.6, 0.1, 0.0), "none"),            # goes on, chord low, but circles
    ((0.8, 0.6, 2.0, 1.5), "none"),            # the path climbs as much as the chord
    ((0.8, -0.2, 0.0, 0.0), "none"),           # reversals but gets somewhere
])
def test_picture_of_every_branch(values, picture):
    assert et.picture_of(*values) == picture


def test_stretch_and_pictures_shown():
    steps = np.array([0, 10, 100, 200, 300, 400, 500])
    picked = np.array([0, 2, 3, 4, 5, 6])
    assert et.stretch(steps, picked, 150, 450).tolist() == [3, 4, 5]
    assert et.stretch(steps, picked, 150, None).tolist() == [3, 4, 5, 6]  # memorizes to the end
    assert et.stretch(steps, picked, 150, 350) is None and et.stretch(steps, picked, None, 450) is None

    def row(s, t, c, p):
        return {"straightness": s, "turning": t, "chord barrier": c, "path barrier": p}

    detour, flat = row(0.8, 0.6, 2.0, 0.1), row(0.8, 0.6, 0.1, 0.0)
    assert et.pictures_shown([detour] * 4 + [flat]) == (et.PICTURES[2], f"{et.PICTURES[1]}: 1, "
                                                        f"{et.PICTURES[2]}: 4 (of 5)")
    assert et.pictures_shown([detour] * 3 + [flat] * 2)[0] is None  # 3 of 5 is below 80%
    assert et.pictures_shown([detour] * 5, high=3.0)[0] == et.PICTURES[1]  # a 2-nat chord is low at 3
    assert et.pictures_shown([detour])[0] is None


def test_measure_picture_on_a_run(tmp_path):
    from grokbook import RunConfig
    from grokbook.experiments.valleys import segment
    from grokbook.phases import PhaseTimes
    from grokbook.training import fit

    config = RunConfig(p=7, n_layers=1, d_model=8, n_heads=2, lr=0.01, steps=60, n_snapshots=10)
    run = fit(config, progress=False)
    even = et.evenly_spaced(run.snapshot_steps, 60, 10)
    row = et.measure_picture(run, PhaseTimes(1, 10, None, None), n_points=7)
    idx = et.stretch(run.snapshot_steps, even, 10, None)
    x = run.snapshots[idx].astype(np.float64)
    assert (row["step_a"], row["step_b"], row["snapshots"], row["t4"]) == (run.snapshot_steps[idx[0]], 60,
                                                                            len(idx), -1)
    assert row["straightness"] == et.path_shape(x)["straightness"]
    loss = et.training_losses(config, x)
    assert row["path barrier"] == et.path_barrier(x, loss)
    # the loss at a snapshot is the trainer's full-batch loss at that step
    first = int(run.snapshot_steps[idx[0]])
    assert loss[0] == pytest.approx(float(run.metrics["train_loss"][first]), rel=1e-4)
    assert row["chord barrier"] == segment(config, x[0], x[-1], 7)["barrier"]
    assert et.measure_picture(run, PhaseTimes(1, 55, None, 58), n_points=7) is None  # one snapshot there
    assert et.read_pictures(et.write_pictures([row], tmp_path / "p.csv")) == [row]


def test_picture_specificity_every_branch():
    assert et.picture_specificity(None, ["going around an obstacle"]).startswith("with no one picture shown")
    too = et.picture_specificity("going around an obstacle", ["going around an obstacle", None, "crossing a flat region"])
    assert too == "the controls show it in 1 of 3: it sets grokking apart"  # fewer than half
    half = et.picture_specificity("going around an obstacle", ["going around an obstacle", None])
    assert "show it too (1 of 2)" in half and "not of grokking" in half
    assert et.picture_specificity("crossing a flat region", []) == "no control run to compare with"


def test_control_difference_pairs_seeds_and_keeps_controls_that_never_generalize():
    def row(seed, planarity, drift, t4=900, schedule="even"):
        return {"seed": seed, "planarity": planarity, "drift walk": drift, "t4": t4, "schedule": schedule}

    grok = [row(0, 0.80, 0.85), row(1, 0.78, 0.80), row(2, 0.9, 0.8, t4=-1), row(0, 0.99, 0.5, schedule="stored")]
    ctrl = [row(0, 0.70, 0.80, t4=-1), row(1, 0.60, 0.70, t4=-1), row(2, 0.5, 0.6, t4=-1), row(3, 0.9, 0.9, t4=-1)]
    diff = et.control_difference(grok, ctrl, "even")
    assert diff == {0: pytest.approx(-0.05 - (-0.10)), 1: pytest.approx(-0.02 - (-0.10))}  # seed 2 does not generalize
    assert et.control_reading((0.065, 0.05, 0.08), 2).endswith("the grokking runs are more planar than their controls")
    assert et.control_reading((-0.065, -0.08, -0.05), 2).endswith("less planar than their controls")
    held = et.control_reading((0.01, -0.02, 0.04), 5)
    assert "+1.0 [-2.0, +4.0] points over 5 seeds" in held and "belongs to this training, not to grokking" in held
    assert et.control_reading((0.1, 0.05, 0.2), 1).startswith("not measurable: 1 pair")
