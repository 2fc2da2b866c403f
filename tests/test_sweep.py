import numpy as np
import pytest

from grokbook.store import RunStore
from grokbook.sweeping import grid, sweep
from grokbook.training import fit


def log_lines(store: RunStore) -> int:
    path = store.root / "train.log"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_grid_is_the_product(tiny):
    configs = grid(tiny, lr=[1e-3, 3e-3], weight_decay=[0.0, 1.0, 2.0])
    assert len(configs) == 6 and len({c.hash() for c in configs}) == 6
    assert [(c.lr, c.weight_decay) for c in configs[:3]] == [(1e-3, 0.0), (1e-3, 1.0), (1e-3, 2.0)]


def test_sweep_resumes_without_retraining(tiny, tmp_path):
    store = RunStore(tmp_path)
    configs = grid(tiny, seed=[0, 1, 2])
    store.get_or_train(configs[1], progress=False)  # a sweep stopped after one run
    runs = sweep(configs, store=store, progress=False)
    assert log_lines(store) == 3
    # trained in an ensemble: equal to a single run up to float32 rounding
    np.testing.assert_allclose(runs[2].metrics["train_loss"], fit(configs[2], progress=False).metrics["train_loss"],
                               rtol=1e-4)
    sweep(configs, store=store, progress=False)
    assert log_lines(store) == 3


def test_diverged_run_is_recorded_and_sweep_goes_on(tiny, tmp_path):
    store = RunStore(tmp_path)
    configs = [tiny.replace(optimizer="sgd", lr=1e6, warmup_steps=0), tiny]
    bad, good = sweep(configs, store=store, progress=False)
    assert bad.diverged_at is not None and good.diverged_at is None
    assert len(good.metrics["train_loss"]) == tiny.steps


def test_local_processes(tiny, tmp_path):
    store = RunStore(tmp_path)
    configs = grid(tiny, seed=[3, 4])
    runs = sweep(configs, executor=2, store=store, progress=False)
    assert log_lines(store) == 2
    np.testing.assert_array_equal(runs[0].snapshots, fit(configs[0], progress=False).snapshots)


def test_dask_local_cluster(tiny, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    store = RunStore(tmp_path)
    configs = grid(tiny, seed=[5, 6, 7])
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        runs = sweep(configs, executor=client, store=store, progress=False)
    assert log_lines(store) == 3
    for c, r in zip(configs, runs):
        assert r.config == c
    np.testing.assert_array_equal(runs[1].metrics["train_loss"], fit(configs[1], progress=False).metrics["train_loss"])


def test_default_executor_uses_the_ensemble_and_stores_every_run(tiny, tmp_path):
    from grokbook.sweeping import _ensemble_groups

    configs = grid(tiny, lr=[1e-3, 3e-3], seed=[0, 1]) + [tiny.replace(optimizer="sgd", lr=0.1)]
    groups = _ensemble_groups(configs, size=3)
    assert [len(g) for g in groups] == [3, 1, 1] and groups[2][0].optimizer == "sgd"
    store = RunStore(tmp_path)
    runs = sweep(configs, store=store, progress=False, ensemble_size=3)
    assert all(c in store for c in configs) and [r.config for r in runs] == configs
    np.testing.assert_allclose(runs[1].metrics["train_loss"], fit(configs[1], progress=False).metrics["train_loss"],
                               rtol=1e-4)


def test_default_executor_spreads_groups_over_processes_on_a_multicore_cpu(tiny, tmp_path, monkeypatch):

    import grokbook.sweeping as sweep_module

    configs = grid(tiny.replace(r=0.5), seed=[0, 1]) + grid(tiny.replace(r=0.7), seed=[0, 1])
    monkeypatch.setattr(sweep_module.os, "cpu_count", lambda: 2)
    groups = sweep_module._ensemble_groups(configs, 16)
    assert sweep_module._local_processes(groups) == 1  # too little work to pay for processes
    monkeypatch.setattr(sweep_module, "PARALLEL_MIN_WORK", 0)
    assert sweep_module._local_processes(groups) == 2
    store = RunStore(tmp_path)
    runs = sweep(configs, store=store, progress=False)
    assert log_lines(store) == 4 and [r.config for r in runs] == configs
    np.testing.assert_allclose(runs[3].metrics["train_loss"], fit(configs[3], progress=False).metrics["train_loss"],
                               rtol=1e-4)


def test_replicates_set_initialisation_and_split_per_seed():
    from grokbook import RunConfig
    from grokbook.sweeping import replicates

    configs = replicates([RunConfig(lr=1e-3), RunConfig(lr=3e-3)], [0, 7])
    assert [(c.lr, c.seed, c.data_seed) for c in configs] == [(1e-3, 0, 0), (1e-3, 7, 7), (3e-3, 0, 0), (3e-3, 7, 7)]


@pytest.mark.slow
def test_replays_in_worker_processes_equal_replays_in_this_one():
    from grokbook import RunConfig
    from grokbook.sweeping import replays
    from grokbook.training import replay_weights

    base = RunConfig(p=7, n_layers=1, d_model=8, n_heads=2, lr=0.01, steps=60, n_snapshots=6)
    configs = [base, base.replace(seed=1, r=0.6), base.replace(seed=2)]  # other splits: not stackable
    at = [[5, 17], [0, 33, 60], []]
    here = [replay_weights([c], a)[0] for c, a in zip(configs, at)]
    for got in (replays(configs, at, processes=2), replays(configs, at, processes=1)):
        assert [sorted(g) for g in got] == [[5, 17], [0, 33, 60], []]
        for g, h in zip(got, here):
            for s in h:
                np.testing.assert_array_equal(g[s], h[s])
    with pytest.raises(ValueError, match="3 configs but 2 lists"):
        replays(configs, at[:2])
