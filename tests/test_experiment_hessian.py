"""grokbook.experiments.hessian: chapter 7's measurements against planted curves and a
dense Hessian, and every branch of its two verdicts on hand-built values."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

from grokbook import RunConfig
from grokbook.experiments import hessian as eh
from grokbook.phases import PhaseTimes
from grokbook.trainer import loss_fn
from grokbook.training import fit, replay_weights

TINY = RunConfig(p=7, n_layers=1, d_model=8, n_heads=2, lr=0.01, steps=60, n_snapshots=6)


def planted_loss(n=1200, spikes=(400, 700, 1000), t2=100):
    """A loss that falls as 3 exp(-t / 20) to a floor of 0.01, with 5-step spikes to 2 nats."""
    t = np.arange(n)
    loss = np.maximum(3.0 * np.exp(-t / 20.0), 0.01)
    for s in spikes:
        loss[s:s + 5] = 2.0
    return loss, t2


def test_spikes_and_quiet_steps_are_the_planted_ones():
    loss, t2 = planted_loss()
    spikes, quiet = eh.spike_and_quiet_steps(loss, t2, window=100, spike_factor=5.0, max_spikes=3)
    assert spikes == [400, 700, 1000] and quiet == [550, 850]
    assert eh.spike_and_quiet_steps(loss, t2, window=100, spike_factor=5.0, max_spikes=2) == ([400, 700], [550])
    assert eh.spike_and_quiet_steps(loss, 800, window=100, spike_factor=5.0, max_spikes=3) == ([1000], [])


def test_matched_loss_steps_solve_the_descent_in_closed_form():
    loss, _ = planted_loss()
    levels = [2.0, 1.0, 0.5, 5.0, 0.001]
    got = eh.matched_loss_steps(loss, levels, before=100)
    # 3 exp(-t/20) <= L  <=>  t >= 20 ln(3 / L)
    assert got[:3] == [math.ceil(20 * math.log(3 / L)) for L in levels[:3]]
    assert got[3] == 0 and got[4] == -1  # above the initial loss; never that low before t2
    assert eh.matched_loss_steps(loss, [0.5], before=20) == [-1]


def test_magnitude_and_log_contrast():
    assert eh.magnitude(-3.0, 6.0) == 0.5 and eh.magnitude(2.0, 4.0) == 0.5
    with pytest.raises(ValueError, match="must be positive"):
        eh.magnitude(-1.0, 0.0)
    assert eh.log_contrast([1.0, 10.0, 100.0], [0.1, 0.1]) == pytest.approx(2.0)
    assert math.isnan(eh.log_contrast([1.0], []))


def _rows(seed, spike, quiet, matched, factor=5.0, examples=256):
    """Rows whose |lmin| / lmax are the given magnitudes (lmax 1)."""
    out = []
    for kind, mags in (("spike", spike), ("quiet", quiet), ("matched", matched)):
        out += [dict(config="c", seed=seed, spike_factor=factor, kind=kind, step=k, loss=1.0, examples=examples,
                     lmin=-m, lmax=1.0) for k, m in enumerate(mags)]
    return out


def test_contrasts_per_seed_from_rows():
    rows = _rows(0, [1.0, 1.0], [0.01], [0.1]) + _rows(1, [0.5], [0.05, 0.05], [])
    rows += _rows(0, [1e-9], [1.0], [1.0], factor=3.0) + _rows(0, [1e-9], [1.0], [1.0], examples=1104)
    got = eh.contrasts(rows, 5.0)  # the other factor and the larger subset are not mixed in
    assert got[0]["quiet"] == pytest.approx(2.0) and got[0]["matched"] == pytest.approx(1.0)
    assert got[1]["quiet"] == pytest.approx(1.0) and math.isnan(got[1]["matched"])
    assert got[0]["n_spikes"] == 2
    assert eh.contrasts(rows, 5.0, examples=1104)[0]["quiet"] == pytest.approx(-9.0)


@pytest.mark.parametrize("quiet, matched, n, word", [
    ((2.0, 1.5, 2.5), (1.0, 0.2, 1.8), 5, "reproduced"),
    ((2.0, 1.5, 2.5), (0.3, -0.2, 0.8), 5, "partly reproduced"),
    ((2.0, 1.5, 2.5), (-1.0, -1.5, -0.5), 5, "partly reproduced"),
    ((0.2, -0.1, 0.5), (1.0, 0.2, 1.8), 5, "undecided"),
    ((-1.0, -1.5, -0.5), (1.0, 0.2, 1.8), 5, "reversed"),
    ((2.0, 1.5, 2.5), (1.0, 0.2, 1.8), 1, "not testable"),
    ((float("nan"),) * 3, (float("nan"),) * 3, 4, "not testable"),
])
def test_magnitude_verdict_every_branch(quiet, matched, n, word):
    assert eh.magnitude_verdict(quiet, matched, n).word == word


def test_registered_verdict_every_branch():
    v = eh.registered_verdict([0.03, 0.002, 0.005], [0.006, 0.005, 0.0], 9, 9, 6, 6)
    assert str(v) == ("not reproduced: median |lambda_min / lambda_max| larger in every grokking run than in "
                      "every control: no; lambda_min negative at the loss spikes more often than between them: "
                      "no (9 of 9 against 6 of 6)")  # the build's numbers (chapter 7, session 15)
    assert eh.registered_verdict([0.03, 0.02], [0.01, 0.0], 3, 3, 1, 2).word == "reproduced"
    assert eh.registered_verdict([0.03, 0.02], [0.01, 0.0], 1, 3, 1, 2).word == "partly reproduced"
    assert eh.registered_verdict([0.03, 0.001], [0.01, 0.0], 3, 3, 1, 2).word == "partly reproduced"
    assert eh.registered_verdict([0.03, 0.001], [0.01, 0.0], 3, 3, 0, 0).word == "partly reproduced"
    assert eh.registered_verdict([0.03, 0.001], [0.01, 0.0], 0, 3, 0, 0).word == "not reproduced"
    no_spike = eh.registered_verdict([0.03, 0.02], [0.01, 0.0], 0, 0, 0, 0)
    assert no_spike.word == "partly reproduced" and "cannot be made" in no_spike.reason
    assert eh.registered_verdict([0.001], [0.01], 0, 0, 0, 0).word == "not reproduced"
    missing = eh.registered_verdict([0.03], [0.01], 1, 1, 0, 1, missing=[2])
    assert missing.word == "not testable" and "[2] do not generalize" in missing.reason
    leaky = eh.registered_verdict([0.03], [0.01], 1, 1, 0, 1, missing=[2], leaky=[1])
    assert leaky.word == "not testable" and "controls of seeds [1]" in leaky.reason


def test_resolved_ratio_counts_an_unresolved_lambda_min_as_zero():
    assert eh.resolved_ratio(-0.5, 10.0, 1e-3) == pytest.approx(0.05)
    assert eh.resolved_ratio(-1e-6, 10.0, 1e-3) == 0.0 and eh.resolved_ratio(0.1, 10.0, 1e-3) == 0.0


def dense_extremes(run, weights, n):
    """The extreme eigenvalues of the dense float64 Hessian of the run's loss on its subset."""
    x, y = eh.hessian_subset(run.config, n)
    model = run.model_with(weights).double()
    named = list(model.named_parameters())
    sizes = [p.numel() for _, p in named]

    def f(flat):
        ws = {k: t.view_as(p) for (k, p), t in zip(named, flat.split(sizes))}
        return loss_fn(run.config, functional_call(model, ws, (x,)), y)

    flat0 = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    eig = np.linalg.eigvalsh(torch.autograd.functional.hessian(f, flat0, vectorize=True).numpy())
    return eig[0], eig[-1]


@pytest.fixture(scope="module")
def tiny_run():
    return fit(TINY, progress=False)


def test_hessian_subset_is_fixed_and_capped(tiny_run):
    x1, y1 = eh.hessian_subset(TINY, 10)
    x2, y2 = eh.hessian_subset(TINY.replace(lr=0.5), 10)  # the same data: the same subset
    assert len(y1) == 10 and torch.equal(x1, x2) and torch.equal(y1, y2)
    assert len(eh.hessian_subset(TINY, 10_000)[1]) == len(tiny_run.dataset().train_y)


def test_measure_steps_at_given_steps_match_a_dense_hessian(tiny_run):
    snaps = [int(s) for s in tiny_run.snapshot_steps]
    at = [[("spike", 5.0, snaps[2]), ("quiet", 5.0, snaps[3]), ("matched", 5.0, snaps[2])]]
    rows = eh.measure_steps([tiny_run], [PhaseTimes(None, None, None, None)], window=10, spike_factors=[5.0], max_spikes=3, examples=[12, 10_000],
                            tol=1e-6, at=at, processes=1)
    n = len(tiny_run.dataset().train_y)  # 10_000 examples asked: all of them
    assert [(r["kind"], r["step"], r["examples"]) for r in rows] == [
        ("spike", snaps[2], 12), ("spike", snaps[2], n), ("quiet", snaps[3], 12), ("quiet", snaps[3], n),
        ("matched", snaps[2], 12), ("matched", snaps[2], n)]
    for r in rows:
        k = snaps.index(r["step"])
        lo, hi = dense_extremes(tiny_run, tiny_run.snapshots[k], r["examples"])
        width = hi - lo
        assert abs(r["lmin"] - lo) < 1e-5 * width and abs(r["lmax"] - hi) < 1e-5 * width
        assert r["loss"] == tiny_run.metrics["train_loss"][r["step"]] and r["config"] == TINY.hash()
        assert r["t2"] == -1 and r["t4"] == -1


def test_measure_steps_finds_the_spikes_itself(tiny_run, monkeypatch):
    # a planted loss curve on the tiny run: measure_steps must ask for exactly its spikes,
    # quiet steps and matched-loss steps
    loss = np.full(61, 0.01)
    loss[:10] = np.linspace(3.0, 0.02, 10)
    loss[[30, 31, 50, 51]] = 2.0
    run = tiny_run
    monkeypatch.setitem(run.metrics, "train_loss", loss)
    monkeypatch.setattr(eh, "eigenpair", lambda config, w, n, tol, float64=True: (-float(w.sum()), 1.0))
    rows = eh.measure_steps([run], [PhaseTimes(3, 10, 20, None)], window=10, spike_factors=[5.0], max_spikes=3, examples=[8],
                            tol=1e-3, processes=1)
    spikes, quiet = eh.spike_and_quiet_steps(loss, 10, window=10, spike_factor=5.0, max_spikes=3)
    matched = eh.matched_loss_steps(loss, [loss[s] for s in spikes], 10)
    assert spikes == [30, 50] and quiet == [40]
    assert {(r["t2"], r["t4"]) for r in rows} == {(10, -1)}
    assert [(r["kind"], r["step"]) for r in rows] == (
        [("spike", s) for s in spikes] + [("quiet", s) for s in quiet] + [("matched", s) for s in matched])


def test_pool_file_round_trip_and_coverage(tmp_path, tiny_run):
    rows = [dict(config=TINY.hash(), seed=0, t2=5, t4=-1, spike_factor=5.0, kind="spike", step=3, loss=1.5, examples=12,
                 lmin=-2.5, lmax=10.0)]
    path = eh.write_pool(rows, tmp_path / "sub" / "pool.csv")
    back = eh.read_pool(path)
    assert back == rows
    settings = dict(eh.POOL_SETTINGS)
    assert eh.pool_rows(back, [TINY], 5.0, 12, settings) == rows
    assert eh.pool_rows(back, [TINY, TINY.replace(seed=1)], 5.0, 12, settings) is None  # a seed not recorded
    assert eh.pool_rows(back, [TINY], 3.0, 12, settings) is None and eh.pool_rows(back, [TINY], 5.0, 256, settings) is None
    for key, other in (("max_spikes", 5), ("tol", 1e-4), ("leave", 0.05)):  # measured otherwise
        assert eh.pool_rows(back, [TINY], 5.0, 12, dict(settings, **{key: other})) is None
    assert eh.read_pool(tmp_path / "absent.csv") == []
    link = tmp_path / "link.csv"
    link.symlink_to(tmp_path / "target.csv")
    eh.write_pool(rows, link)  # the symlink is replaced, not followed
    assert not link.is_symlink() and not (tmp_path / "target.csv").exists() and eh.read_pool(link) == rows
    path.write_text("config,seed\nx,1\n")
    with pytest.raises(ValueError, match="lacks the columns"):
        eh.read_pool(path)


def test_live_check_agrees_with_a_true_record_and_not_with_a_changed_one(tiny_run):
    snaps = [int(s) for s in tiny_run.snapshot_steps]
    at = [[("spike", 5.0, snaps[2]), ("quiet", 5.0, snaps[3])]]
    rows = eh.measure_steps([tiny_run], [PhaseTimes(None, None, None, None)], window=10, spike_factors=[5.0],
                            max_spikes=3, examples=[12], tol=1e-4, at=at, processes=1)
    weights = replay_weights([TINY], [snaps[2], snaps[3]])[0]
    good = eh.live_check(rows, TINY, weights, tol=1e-4)
    assert good["n"] == 2 and good["agrees"] and good["max_diff"] <= eh.LIVE_TOLERANCE
    changed = [dict(r, lmin=r["lmin"] - 1e-3 * (r["lmax"] - r["lmin"])) if k == 1 else r for k, r in enumerate(rows)]
    bad = eh.live_check(changed, TINY, weights, tol=1e-4)
    assert not bad["agrees"] and bad["max_diff"] == pytest.approx(1e-3, rel=1e-3)


def test_magnitude_test_counts_seeds_and_trusts_only_a_seed_that_starts_as_recorded():
    rows = []
    for seed, (spike, quiet, matched) in enumerate([([1.0, 0.5], [0.01], [0.1]), ([0.8], [0.02], [0.05]),
                                                     ([0.9, 0.7], [0.005], [0.2]), ([0.5], [], [0.1])]):
        rows += [dict(r, t4=-1 if seed == 1 else 900) for r in _rows(seed, spike, quiet, matched)]
    got = eh.magnitude_test(rows, 5.0)
    assert got["counted"] == [0, 2] and got["left_out"] == {1: "does not generalize",
                                                            3: "fewer than two spikes after t2"}
    want = np.mean([math.log10(0.75 / 0.01), math.log10(0.8 / 0.005)])
    assert got["quiet"][0] == pytest.approx(want) and got["verdict"].word == "reproduced"
    assert eh.magnitude_test(rows, 5.0, live=dict(max_rel_diff=2e-7, agrees=True))["verdict"].word == "reproduced"
    bad = eh.magnitude_test(rows, 5.0, live=dict(max_rel_diff=1e-2, agrees=False))["verdict"]
    assert bad.word == "not testable" and "does not start as its record" in bad.reason
    assert eh.magnitude_test(rows[:6], 5.0)["verdict"].word == "not testable"  # one seed only


def test_the_pool_is_measured_at_the_chapters_defaults():
    """benchmarks/pool.py trains the landscape chapters' default configuration on their
    fresh seeds, with their settings: else a chapter would never read the pool."""
    import importlib.util
    from pathlib import Path

    from grokbook.experiments.thresholds import for_chapter
    from grokbook.notebooks import get_chapter

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "pool.py"
    spec = importlib.util.spec_from_file_location("pool", path)
    pool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pool)
    for name in ("grokking", "slingshot", "lazy", "valleys", "trajectory", "hessian"):
        c = {k: par.default for k, par in get_chapter(name).parameters.items()}
        chapter = RunConfig(task=c["task"], p=c["p"], r=c["r"], n_layers=c["n_layers"], d_model=c["d_model"],
                            n_heads=c["n_heads"], arch=c["arch"], layer_norm=c["layer_norm"], lr=c["lr"],
                            weight_decay=c["weight_decay"], batch_size=c["batch_size"], steps=c["steps"])
        assert pool.CONFIG == chapter, name
        if "fresh_seeds" in c:
            assert list(pool.SEEDS) == c["fresh_seeds"], name
            assert not set(c["fresh_seeds"]) & set(c["seeds"])  # fresh: not the registered seeds
    d = {name: par.default for name, par in get_chapter("hessian").parameters.items()}
    settings = dict(window=d["spike_window"], max_spikes=d["max_spikes"], tol=d["eig_tol"],
                    float64=d["hessian_float64"], leave=d["leave"], reach=d["reach"])
    assert settings == eh.POOL_SETTINGS
    assert d["spike_factor"] in eh.POOL_FACTORS and d["n_hvp_examples"] in eh.POOL_EXAMPLES
    th = for_chapter("07_hessian")
    assert (th.leave, th.reach) == (d["leave"], d["reach"])
    from grokbook.experiments import trajectory as et, valleys as ev

    v = {name: par.default for name, par in get_chapter("valleys").parameters.items()}
    assert dict(n_points=v["n_segment"], leave=v["leave"], reach=v["reach"]) == ev.POOL_SETTINGS
    t = {name: par.default for name, par in get_chapter("trajectory").parameters.items()}
    assert dict(n_walks=t["n_walks"], leave=t["leave"], reach=t["reach"]) == et.POOL_SETTINGS
    assert dict(straight=t["straight"], high=t["obstacle"]) == {k: et.PICTURE_SETTINGS[k] for k in ("straight", "high")}
    assert dict(n_alphas=v["n_map_alphas"], alpha_max=v["map_alpha_max"], direction_seed=v["direction_seed"],
                leave=v["leave"], reach=v["reach"]) == ev.MAP_SETTINGS
    m = eh.MATCHED_SETTINGS
    assert (m["tol"], m["float64"], m["leave"], m["reach"]) == (d["eig_tol"], d["hessian_float64"], d["leave"],
                                                                d["reach"])
    assert d["n_hvp_examples"] in m["examples"]
    from grokbook.experiments import lazy as el

    z = {name: par.default for name, par in get_chapter("lazy").parameters.items()}
    th4 = for_chapter("04_lazy")
    assert dict(skip=z["skip"], window=z["window"], spike_factor=z["spike_factor"], k=z["k"], walk_seed=z["walk_seed"],
                leave=th4.leave, reach=th4.reach) == el.POOL_SETTINGS
    from grokbook.experiments import interventions as ei

    q = {name: par.default for name, par in get_chapter("slingshot").parameters.items()}
    assert dict(skip=q["skip"], window=q["window"], spike_factor=q["spike_factor"], leave=q["leave"],
                reach=q["reach"]) == ei.POOL_SETTINGS


def test_live_rows_stop_at_the_first_spike():
    rows = [dict(seed=1, kind="spike", step=400), dict(seed=1, kind="spike", step=900),
            dict(seed=1, kind="quiet", step=650), dict(seed=1, kind="matched", step=30),
            dict(seed=2, kind="matched", step=10)]
    assert [(r["kind"], r["step"]) for r in eh.live_rows(rows, 1)] == [("spike", 400), ("matched", 30)]
    assert eh.live_rows(rows, 2) == [rows[-1]]  # no spike: every row
    assert eh.live_rows(rows, 3) == []


def test_drawn_subsets_are_one_generator_in_order():
    got = eh.drawn_subsets([30, 20, 30], 8)
    gen = torch.Generator().manual_seed(0)  # the registered chapter's own loop
    want = [torch.randperm(n, generator=gen)[:8] for n in (30, 20, 30)]
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert not torch.equal(got[0], got[2])  # the same size, drawn later: another subset


def test_spike_rows_on_given_examples_match_a_dense_hessian(tiny_run):
    snaps = [int(s) for s in tiny_run.snapshot_steps]
    idx = torch.tensor([0, 3, 5, 7, 11, 13])
    weights = {s: tiny_run.snapshots[k] for k, s in enumerate(snaps)}
    rows = eh.spike_rows(tiny_run, [snaps[2]], [snaps[3]], weights, idx, tol=1e-6)
    assert [(r["kind"], r["step"]) for r in rows] == [("spike", snaps[2]), ("quiet", snaps[3])]
    data = tiny_run.dataset()
    for r in rows:
        model = tiny_run.model_with(weights[r["step"]]).double()
        named = list(model.named_parameters())
        sizes = [p.numel() for _, p in named]

        def f(flat):
            ws = {k: t.view_as(p) for (k, p), t in zip(named, flat.split(sizes))}
            return loss_fn(TINY, functional_call(model, ws, (data.train_x[idx],)), data.train_y[idx])

        flat0 = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
        eig = np.linalg.eigvalsh(torch.autograd.functional.hessian(f, flat0, vectorize=True).numpy())
        width = eig[-1] - eig[0]
        assert abs(r["lmin"] - eig[0]) < 1e-5 * width and abs(r["lmax"] - eig[-1]) < 1e-5 * width


def test_registered_record_round_trip_and_the_live_comparison(tmp_path):
    rows = [dict(config=TINY.hash(), seed=0, kind="spike", step=40, loss=2.5, lmin=-300.0, lmax=900.0),
            dict(config=TINY.hash(), seed=0, kind="quiet", step=45, loss=0.01, lmin=-0.1, lmax=12.0)]
    back = eh.read_registered(eh.write_registered(rows, tmp_path / "r.csv"))
    assert back == rows
    s = dict(eh.REGISTERED_SETTINGS)
    assert eh.registered_record(back, [TINY], s) == rows
    assert eh.registered_record(back, [TINY, TINY.replace(seed=1)], s) is None  # a seed not recorded
    assert eh.registered_record(back, [TINY], dict(s, n_hvp=128)) is None  # measured otherwise
    assert eh.rows_differ(rows, rows) == 0.0
    moved = [dict(rows[0], lmin=-300.0 + 1.2), rows[1]]
    assert eh.rows_differ(rows, moved) == pytest.approx(1.2 / 1200.0)
    assert eh.rows_differ(rows, rows[:1]) == float("inf")  # other steps


def test_snapshot_picks_spread_over_the_snapshots_after_t2():
    steps = [0, 10, 20, 40, 80, 160, 320]
    assert eh.snapshot_picks(steps, 20, 3) == [20, 80, 320]
    assert eh.snapshot_picks(steps, None, 2) == [0, 320]
    assert eh.snapshot_picks(steps, 100, 8) == [160, 320]  # fewer exist
    assert eh.snapshot_picks(steps, 1000, 3) == [] and eh.snapshot_picks(steps, 0, 0) == []


def test_measure_matched_pairs_the_same_steps_and_matches_a_dense_hessian(tiny_run):
    control_config = TINY.replace(**eh.MATCHED_CHANGE)
    control = fit(control_config, progress=False)
    t2 = int(tiny_run.snapshot_steps[2])
    times = {"grokking": PhaseTimes(1, t2, None, 50), "control": PhaseTimes(1, t2, None, None)}
    rows = eh.measure_matched({"grokking": tiny_run, "control": control}, times, n_snapshots=2,
                              examples=[12], tol=1e-6)
    picks = eh.snapshot_picks(tiny_run.snapshot_steps, t2, 2)
    assert [(r["group"], r["step"]) for r in rows] == [(g, s) for g in ("grokking", "control") for s in picks]
    for r in rows:
        run = tiny_run if r["group"] == "grokking" else control
        k = int(np.flatnonzero(run.snapshot_steps == r["step"])[0])
        lo, hi = dense_extremes(run, run.snapshots[k], 12)
        assert abs(r["lmin"] - lo) < 1e-5 * (hi - lo) and abs(r["lmax"] - hi) < 1e-5 * (hi - lo)
        full = len(run.dataset().train_y)
        if r["step"] < len(run.metrics["train_loss"]):  # the trainer's full-batch loss at that step
            assert r["loss"] == pytest.approx(float(run.metrics["train_loss"][r["step"]]), rel=1e-4)
        assert r["examples"] == 12 <= full
    assert {r["t4"] for r in rows if r["group"] == "grokking"} == {50}
    assert {r["t4"] for r in rows if r["group"] == "control"} == {-1}


def test_matched_effect_and_its_verdict():
    def rows(seed, g, ratios, t4):
        return [dict(seed=seed, group=g, examples=256, t4=t4, lmin=-q, lmax=1.0) for q in ratios]

    tol = 1e-3
    data = (rows(1, "grokking", [0.1, 0.2, 0.3], 900) + rows(1, "control", [0.01, 0.02, 0.0], -1)
            + rows(2, "grokking", [0.05, 0.001, 0.05], 800) + rows(2, "control", [0.5, 0.5, 0.5], 700))
    eff = eh.matched_effect(data, 256, tol)
    assert eff[1]["grokking"] == pytest.approx(0.2) and eff[1]["control"] == pytest.approx(0.01)
    assert eff[1]["difference"] == pytest.approx(0.19) and eff[1]["usable"] == 1.0
    assert eff[2]["usable"] == 0.0  # its control generalizes
    # 0.001 is below the solver's resolution (3 tol): it counts as 0
    assert eh.matched_effect(rows(3, "grokking", [0.001], 5) + rows(3, "control", [0.0], -1), 256, tol)[3][
        "grokking"] == 0.0
    assert eh.matched_verdict((0.1, 0.05, 0.2), 5, 5).word == "reproduced"
    assert eh.matched_verdict((0.0, -0.1, 0.1), 3, 5).word == "undecided"
    v = eh.matched_verdict((-0.1, -0.2, -0.05), 0, 5)
    assert v.word == "reversed" and "in 0 of 5 seeds" in v.reason
    assert eh.matched_verdict((0.1, 0.05, 0.2), 1, 1).word == "not testable"


def test_matched_record_round_trip(tmp_path):
    row = dict(config="abc", seed=100, group="control", t2=49, t4=-1, step=211, loss=1e-3, examples=256,
               lmin=-0.5, lmax=20.0)
    assert eh.read_matched(eh.write_matched([row], tmp_path / "m.csv")) == [row]
    assert eh.read_matched(tmp_path / "absent.csv") == []


def test_sign_separates_and_the_subset_reading():
    def row(kind, lmin, examples=1104, t4=900, factor=5.0):
        return dict(kind=kind, lmin=lmin, lmax=100.0, examples=examples, t4=t4, spike_factor=factor)

    # resolved negative at tol 1e-3: |lmin| beyond a few tol x width (about 0.3 here)
    clean = [row("spike", -50.0), row("spike", -20.0), row("quiet", -0.01), row("matched", -40.0),
             row("quiet", -30.0, examples=256), row("spike", -40.0, t4=-1), row("quiet", -30.0, factor=3.0)]
    assert eh.sign_separates(clean, 1104, 5.0, 1e-3)
    assert not eh.sign_separates(clean + [row("quiet", -25.0)], 1104, 5.0, 1e-3)  # a negative quiet step
    assert not eh.sign_separates(clean + [row("spike", -0.01)], 1104, 5.0, 1e-3)  # a spike not resolved negative
    assert not eh.sign_separates(clean, 256, 5.0, 1e-3)  # the subset: its quiet step is negative
    assert not eh.sign_separates([], 1104, 5.0, 1e-3)
    assert eh.subset_reading(clean, 1104, 5.0, 1e-3).startswith("So on these runs the registered test's failure")
    assert eh.subset_reading(clean, None, 5.0, 1e-3).startswith("Whether the registered test's outcome")
    assert eh.subset_reading(clean + [row("quiet", -25.0)], 1104, 5.0, 1e-3).startswith("Whether")
