"""grokbook.experiments.interventions: the clip level, spike counts on planted series,
the summaries against hand counts, and every verdict branch."""

from __future__ import annotations

import numpy as np
import pytest

from grokbook.experiments import interventions as ei


def test_clip_level_is_the_quantile_after_skip():
    g = np.r_[np.full(10, 100.0), np.arange(1, 101, dtype=float)]
    assert ei.clip_level(g, 10, 0.5) == pytest.approx(50.5)
    with pytest.raises(ValueError, match="0 < q < 1"):
        ei.clip_level(g, 10, 1.0)
    with pytest.raises(ValueError, match="steps after skip"):
        ei.clip_level(g, 500, 0.5)


def test_spike_count_from_start():
    x = np.ones(1000)
    for s in (200, 500, 800):
        x[s:s + 3] = 20.0
    assert ei.spike_count(x, 0, window=100, spike_factor=5.0) == 3
    assert ei.spike_count(x, 300, window=100, spike_factor=5.0) == 2


def rows(arm, spikes, t4s, t2s=None):
    t2s = t2s or [50] * len(t4s)
    return [dict(seed=s, arm=arm, t2=t2, t4=t, loss_spikes=k, binds=0.2 if arm != "free" else 0.0)
            for s, (k, t, t2) in enumerate(zip(spikes, t4s, t2s))]


def test_arm_summary_counts_and_ratios():
    data = rows("free", [4, 4, 4, 4], [1000, 2000, 1000, 1000]) + rows("clip q0.5", [1, 0, 1, 0], [2000, -1, 1000, -1],
                                                                       [40, -1, 60, 70])
    s = ei.arm_summary(data, "clip q0.5")
    assert (s["n"], s["n_fit"], s["n_grok"], s["spikes"]) == (4, 3, 2, 0.5)
    assert s["t4_ratio"] == {0: pytest.approx(np.log10(2)), 2: pytest.approx(0.0)}
    from grokbook.stats import wilson_interval
    assert s["wilson"] == wilson_interval(2, 4)
    with pytest.raises(ValueError, match="no rows"):
        ei.arm_summary(data, "clip q0.9")


@pytest.mark.parametrize("arm_spikes, arm_t4, word", [
    ([0, 1, 0, 0, 0], [-1, -1, 900, -1, -1], "reproduced"),
    ([0, 1, 0, 0, 0], [900] * 5, "not reproduced"),
    ([0, 1, 0, 0, 0], [900, 900, -1, -1, -1], "undecided"),
    ([3, 4, 3, 4, 3], [-1] * 5, "not testable"),  # not suppressed: whatever the outcome
])
def test_suppression_verdict_every_branch(arm_spikes, arm_t4, word):
    data = rows("free", [4] * 5, [800] * 5) + rows("clip q0.5", arm_spikes, arm_t4)
    v = ei.suppression_verdict(ei.arm_summary(data, "free"), ei.arm_summary(data, "clip q0.5"))
    assert v.word == word


def test_suppression_verdict_needs_runs_that_still_fit():
    # no spikes because most runs never fit: not the counterfactual, whatever t4 says
    data = rows("free", [4] * 5, [800] * 5) + rows("adam eps", [0] * 5, [-1] * 5, [-1, -1, -1, 60, 70])
    v = ei.suppression_verdict(ei.arm_summary(data, "free"), ei.arm_summary(data, "adam eps"))
    assert v.word == "not testable" and "2 of 5 seeds fit" in v.reason
    data = rows("free", [4] * 5, [800] * 5) + rows("adam eps", [0] * 5, [-1] * 5, [-1, -1, 50, 60, 70])
    assert ei.suppression_verdict(ei.arm_summary(data, "free"), ei.arm_summary(data, "adam eps")).word == "reproduced"


def test_eps_level_and_the_arms_of_a_free_run():
    # eps: the typical coordinate of a gradient whose norm is the median, by hand
    assert ei.eps_level(3.0, 9) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        ei.eps_level(0.0, 9)
    from grokbook import RunConfig
    from grokbook.models import build_model
    from grokbook.tasks import make_dataset

    config = RunConfig(p=7, n_layers=1, d_model=8, n_heads=2, steps=50)
    data = make_dataset(config)
    model = build_model(config, data.vocab_size, data.n_classes)
    n = sum(int(np.prod(p.shape)) for p in model.parameters())
    assert ei.n_params(config) == n
    g = np.r_[np.full(10, 9.0), np.linspace(1.0, 2.0, 101)]
    levels = ei.gradient_levels(g, 10)
    assert levels == {0.5: pytest.approx(1.5), 0.9: pytest.approx(1.9)}
    arms = dict(ei.arm_configs(config, levels))
    assert tuple(arms) == ei.ARMS
    assert arms["clip q0.9"] == config.replace(grad_clip=levels[0.9])
    assert arms["adam eps"] == config.replace(adam_eps=1.5 / np.sqrt(n))
    assert arms["grokfast"] == config.replace(grokfast_alpha=0.98, grokfast_lamb=2.0)
    with pytest.raises(ValueError, match="lack the quantiles"):
        ei.arm_configs(config, {0.5: 1.0})


def test_suppression_verdict_needs_free_runs_that_grok():
    data = rows("free", [4] * 3, [-1] * 3) + rows("clip q0.5", [0] * 3, [-1] * 3)
    v = ei.suppression_verdict(ei.arm_summary(data, "free"), ei.arm_summary(data, "clip q0.5"))
    assert v.word == "not testable" and "no free run groks" in v.reason


def test_measure_on_a_clipped_run(tmp_path):
    from grokbook import RunConfig
    from grokbook.phases import PhaseTimes
    from grokbook.training import fit

    config = RunConfig(p=7, n_layers=1, d_model=8, n_heads=2, lr=0.01, steps=200, n_snapshots=4)
    free = fit(config, progress=False)
    level = ei.clip_level(free.metrics["grad_norm"], 20, 0.5)
    clipped = fit(config.replace(grad_clip=level), progress=False)
    settings = dict(ei.POOL_SETTINGS, skip=20, window=20)
    row = ei.measure(clipped, PhaseTimes(1, 30, None, None), ei.arm_name(0.5), settings)
    g = np.asarray(clipped.metrics["grad_norm"])[20:]
    assert row["arm"] == "clip q0.5" and row["grad_clip"] == pytest.approx(level)
    assert row["binds"] == pytest.approx(np.mean(g >= level)) and 0 < row["binds"] <= 1
    assert ei.measure(free, PhaseTimes(1, 30, None, None), "free", settings)["binds"] == 0.0
    assert ei.read_pool(ei.write_pool([row], tmp_path / "s.csv")) == [row]


def test_effect_text_gives_p_grok_with_wilson_and_t4_whatever_the_verdict():
    from grokbook.stats import wilson_interval
    from grokbook.experiments.verdicts import seed_interval

    data = rows("free", [4, 4, 4, 4], [1000, 2000, 1000, 1000]) + rows("grokfast", [4, 4, 4, 4], [2000, -1, 1000, 4000])
    free, arm = ei.arm_summary(data, "free"), ei.arm_summary(data, "grokfast")
    text = ei.effect_text(free, arm)
    lo, hi = wilson_interval(3, 4)
    est, a, b = seed_interval([np.log10(2), 0.0, np.log10(4)])
    assert text == (f"P(grok) 3 of 4 ({lo:.2f}-{hi:.2f}) against 4 of 4 ({wilson_interval(4, 4)[0]:.2f}-1.00) free; "
                    f"log10 t4 over free {est:+.2f} [{a:+.2f}, {b:+.2f}] over 3 seeds that grok in both")
    none = ei.effect_text(free, ei.arm_summary(rows("free", [1], [1000]) + rows("clip q0.5", [0], [-1]), "clip q0.5"))
    assert none.startswith("P(grok) 0 of 1 (0.00-") and "not measurable over 0 seeds" in none
