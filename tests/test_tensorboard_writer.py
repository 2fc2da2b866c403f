"""A TensorBoard writer given to fit / RunStore.get_or_train / store.train receives the
finished run's curves: every per-step metric as ``train/<name>`` at its step, validation
as ``val/loss`` and ``val/acc``; a run loaded from the store writes the same scalars as
when it was trained."""

import numpy as np
import pytest

from grokbook import RunConfig
from grokbook.run import METRICS
from grokbook.store import RunStore, train
from grokbook.training import fit

TINY = RunConfig(p=7, n_layers=1, d_model=8, n_heads=2, lr=0.01, steps=40, n_snapshots=4)


class FakeWriter:
    """Records ``add_scalar`` calls as ``{tag: [(step, value), ...]}``, and flushes."""

    def __init__(self):
        self.scalars, self.flushes = {}, 0

    def add_scalar(self, tag, value, global_step):
        assert isinstance(tag, str) and isinstance(value, float) and isinstance(global_step, int)
        self.scalars.setdefault(tag, []).append((global_step, value))

    def flush(self):
        self.flushes += 1


def assert_written(writer, run):
    """Every tag, step and value the writer got is the run's, and nothing else."""
    assert set(writer.scalars) == {f"train/{m}" for m in METRICS} | {"val/loss", "val/acc"}
    for name in METRICS:
        steps, values = map(np.array, zip(*writer.scalars[f"train/{name}"]))
        np.testing.assert_array_equal(steps, np.arange(TINY.steps))
        np.testing.assert_array_equal(values, run.metrics[name])  # NaN (cos_update at 0) as NaN
    for tag, expected in (("val/loss", run.val_loss), ("val/acc", run.val_acc)):
        steps, values = map(np.array, zip(*writer.scalars[tag]))
        np.testing.assert_array_equal(steps, run.val_steps)
        np.testing.assert_array_equal(values, expected)
    assert writer.flushes == 1


def test_fit_writes_every_metric_and_validation_at_their_steps():
    writer = FakeWriter()
    run = fit(TINY, progress=False, device="cpu", writer=writer)
    assert len(run.val_steps) > 1 and np.isnan(run.metrics["cos_update"][0])
    assert_written(writer, run)
    with pytest.raises(TypeError, match="got None"):
        run.write_scalars(None)


def files(root):
    """Every file under ``root``, by relative path, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_the_store_writes_the_same_scalars_whether_it_trains_or_loads(tmp_path):
    store = RunStore(tmp_path, device="cpu")
    trained_writer, loaded_writer, via_train = FakeWriter(), FakeWriter(), FakeWriter()
    trained = store.get_or_train(TINY, progress=False, writer=trained_writer)
    stored = files(tmp_path)
    loaded = store.get_or_train(TINY, writer=loaded_writer)  # from the store: nothing trained
    train(TINY, store=store, writer=via_train)
    assert_written(trained_writer, trained)
    assert_written(loaded_writer, loaded)
    assert loaded_writer.scalars.keys() == trained_writer.scalars.keys()
    for tag, pairs in trained_writer.scalars.items():
        np.testing.assert_array_equal(np.array(loaded_writer.scalars[tag]), np.array(pairs))
        np.testing.assert_array_equal(np.array(via_train.scalars[tag]), np.array(pairs))
    assert files(tmp_path) == stored  # loading and writing changed nothing in the store


def test_a_summary_writer_event_file_reads_back_as_the_run_training_loss(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    from grokbook.curves_io import read_curves

    with SummaryWriter(str(tmp_path / "logs")) as writer:
        run = RunStore(tmp_path / "store", device="cpu").get_or_train(TINY, progress=False, writer=writer)
    (curve,) = read_curves(tmp_path / "logs")  # train/train_loss: the one tag naming a training loss
    assert curve.name.endswith(":train/train_loss") and curve.first_step == 0 and curve.note == ""
    np.testing.assert_allclose(curve.loss, run.metrics["train_loss"], rtol=1e-6)  # stored as float32
    (val,) = read_curves(tmp_path / "logs", tag="val/acc")
    assert val.first_step == run.val_steps[0]


def test_a_writer_without_add_scalar_is_refused_before_training(tmp_path):
    store = RunStore(tmp_path, device="cpu")
    with pytest.raises(TypeError, match="add_scalar"):
        store.get_or_train(TINY, writer="logs/")
    assert TINY not in store  # nothing was trained
    with pytest.raises(TypeError, match="add_scalar"):
        fit(TINY, writer=object())
