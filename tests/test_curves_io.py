"""grokbook.curves_io reads the files researchers have (TensorBoard event files and CSV
exports, W&B exports, grokbook's own exports, plain CSV/NPY/JSON), and ``grokbook
predict`` scores exactly their loss curves: step and time columns are never scored,
curves of different files are never merged."""

import json
import sys

import numpy as np
import pandas as pd
import pytest

from grokbook.cli import main
from grokbook.trainer import METRICS
from grokbook.curves_io import CurveError, loss_names, on_unit_steps, read_curves
from grokbook.predict import BOOK_SWEEP_PATH, GrokPredictor


def _loss(steps=300, seed=0, start=3.4):
    rng = np.random.default_rng(seed)
    return start * np.exp(-np.linspace(0, 3, steps)) * (1 + 0.05 * rng.random(steps))


def _predict_json(capsys, *args):
    # the book sweep's predictor (a 200-step window): these tests are about reading files
    code = main(["predict", "--json", "--model", str(BOOK_SWEEP_PATH), *map(str, args)])
    return code, json.loads(capsys.readouterr().out)


def _expected(curve):
    return GrokPredictor.book_sweep().assess(curve)[0]


# ---------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------

def test_on_unit_steps_orders_keeps_the_last_repeat_and_interpolates():
    loss, first, note = on_unit_steps([2, 0, 1, 1], [5.0, 3.0, 9.0, 4.0])
    assert loss.tolist() == [3.0, 4.0, 5.0] and first == 0 and "1 repeated steps kept their last value" in note
    loss, first, note = on_unit_steps([10, 20, 30], [1.0, 2.0, 4.0])
    assert loss.tolist() == pytest.approx(np.r_[np.linspace(1, 2, 11), np.linspace(2, 4, 11)[1:]])
    assert first == 10 and "3 values logged every 10 steps, interpolated" in note
    assert on_unit_steps([0, 1, 2], [1.0, 2.0, 3.0])[2] == ""
    with pytest.raises(ValueError, match="whole numbers, got 0.5"):
        on_unit_steps([0, 0.5], [1.0, 2.0])


def test_loss_names_prefers_the_training_loss():
    assert loss_names(["lr", "loss", "val_loss"]) == ["loss"]
    assert loss_names(["train/loss", "val/loss", "loss"]) == ["train/loss"]
    assert loss_names(["a - train/loss", "b - train/loss"]) == ["a - train/loss", "b - train/loss"]
    assert loss_names(["a", "b"]) == []
    assert loss_names(["run - val/loss", "run - train/loss"], tag="val/loss") == ["run - val/loss"]


# ---------------------------------------------------------------------------------------
# CSV exports
# ---------------------------------------------------------------------------------------

def test_a_tensorboard_csv_export_is_one_curve_named_after_the_file(tmp_path, capsys):
    loss = _loss()
    rows = [(1.7e9 + 0.5 * s, s, v) for s, v in enumerate(loss)]
    rows = rows[150:] + rows[:150]  # out of order: the step column orders them
    path = tmp_path / "run_1-tag-train_loss.csv"
    path.write_text("Wall time,Step,Value\n" + "\n".join(f"{t},{s},{v}" for t, s, v in rows))
    (curve,) = read_curves(path)
    assert curve.name == str(path) and curve.loss == pytest.approx(loss, abs=0) and curve.note == ""
    code, results = _predict_json(capsys, path)
    assert [r["curve"] for r in results] == [str(path)]
    assert results[0]["verdict"] == _expected(loss).verdict and results[0]["reason"] == _expected(loss).reason
    assert code == (0 if _expected(loss).scored else 1)


def test_a_tensorboard_csv_export_logged_every_10_steps_is_interpolated(tmp_path):
    loss = _loss(301)
    path = tmp_path / "tb.csv"
    path.write_text("Wall time,Step,Value\n" + "\n".join(f"{1.7e9 + s},{s},{loss[s]}" for s in range(0, 301, 10)))
    (curve,) = read_curves(path)
    assert len(curve.loss) == 301 and curve.loss[::10] == pytest.approx(loss[::10], abs=0)
    assert curve.loss[5] == pytest.approx((loss[0] + loss[10]) / 2)
    assert "31 values logged every 10 steps" in curve.note


def test_a_wandb_csv_export_scores_the_runs_not_their_min_max_companions(tmp_path, capsys):
    a, b = _loss(300, seed=1), _loss(260, seed=2)  # run b is shorter: W&B leaves its cells empty
    lines = ['Step,"run-a - train/loss","run-a - train/loss__MIN","run-a - train/loss__MAX",'
             '"run-b - train/loss","run-b - train/loss__MIN","run-b - train/loss__MAX"']
    for s in range(300):
        bv = f"{b[s]}" if s < 260 else ""
        lines.append(f"{s},{a[s]},{a[s] - 1},{a[s] + 1},{bv},{bv},{bv}")
    path = tmp_path / "wandb_export.csv"
    path.write_text("\n".join(lines))
    curves = read_curves(path)
    assert [c.name for c in curves] == [f"{path}:run-a - train/loss", f"{path}:run-b - train/loss"]
    assert curves[0].loss == pytest.approx(a, abs=0) and curves[1].loss == pytest.approx(b, abs=0)
    code, results = _predict_json(capsys, path)
    assert [r["curve"] for r in results] == [c.name for c in curves]
    assert [r["verdict"] for r in results] == [_expected(a).verdict, _expected(b).verdict]


def test_a_wandb_history_export_skips_its_step_and_time_columns(tmp_path):
    loss = _loss()
    frame = pd.DataFrame({"_step": np.arange(300), "_runtime": np.arange(300) * 0.1,
                          "_timestamp": 1.7e9 + np.arange(300), "train/loss": loss, "val/acc": np.linspace(0, 1, 300),
                          "lr": np.full(300, 1e-3)})
    frame.to_csv(tmp_path / "history.csv", index=False)
    (curve,) = read_curves(tmp_path / "history.csv")
    assert curve.name == f"{tmp_path / 'history.csv'}:train/loss" and curve.loss == pytest.approx(loss)


def test_grokbooks_own_steps_export_scores_only_its_training_loss(tmp_path, capsys):
    loss = _loss()
    rng = np.random.default_rng(5)
    metrics = {m: rng.random(300) for m in METRICS}
    metrics["train_loss"] = loss
    metrics["cos_update"][0] = np.nan  # as the real export: undefined at step 0
    frame = pd.DataFrame(metrics, index=pd.Index(np.arange(300), name="step"))  # as Run.to_frame("steps")
    path = tmp_path / "0123abcd.steps.csv"
    frame.to_csv(path)  # as `grokbook export` writes it
    assert pd.read_csv(path).columns.tolist() == ["step", *METRICS]
    (curve,) = read_curves(path)
    assert curve.name == f"{path}:train_loss" and curve.loss == pytest.approx(loss, rel=1e-15)
    code, results = _predict_json(capsys, path)
    assert [r["curve"] for r in results] == [f"{path}:train_loss"]


@pytest.mark.parametrize("step, time", [("step", "time"), ("Step", "Wall time"), ("global_step", "wall_time"),
                                        ("_step", "timestamp"), ("epoch", "_runtime")])
def test_step_and_time_columns_are_recognised_and_never_scored(step, time, tmp_path):
    a, b = _loss(seed=3), _loss(seed=4)
    # steps counted from 1, as many trainers log them, in reverse order
    rows = "\n".join(f"{300 - i},{1000 + i},{a[299 - i]},{b[299 - i]}" for i in range(300))
    path = tmp_path / "plain.csv"
    path.write_text(f"{step},{time},x,y\n{rows}")
    curves = read_curves(path)
    assert [c.name for c in curves] == [f"{path}:x", f"{path}:y"]
    assert curves[0].loss == pytest.approx(a, abs=0) and curves[1].first_step == 1


def test_two_files_with_a_column_named_loss_give_two_results(tmp_path, capsys):
    a, b = _loss(seed=6), _loss(seed=7)
    for name, loss in (("one.csv", a), ("two.csv", b)):
        pd.DataFrame({"step": np.arange(300), "loss": loss, "val_loss": loss + 1}).to_csv(tmp_path / name, index=False)
    code, results = _predict_json(capsys, tmp_path / "one.csv", tmp_path / "two.csv")
    assert [r["curve"] for r in results] == [f"{tmp_path / 'one.csv'}:loss", f"{tmp_path / 'two.csv'}:loss"]
    assert [r["verdict"] for r in results] == [_expected(a).verdict, _expected(b).verdict]
    # the same file twice is two results as well
    code, results = _predict_json(capsys, tmp_path / "one.csv", tmp_path / "one.csv")
    assert len(results) == 2


def test_only_held_out_losses_or_a_missing_tag_are_errors_naming_the_columns(tmp_path, capsys):
    path = tmp_path / "val.csv"
    pd.DataFrame({"step": np.arange(300), "val_loss": _loss()}).to_csv(path, index=False)
    with pytest.raises(CurveError, match="no column holds a training loss.*'val_loss'"):
        read_curves(path)
    assert read_curves(path, tag="val_loss")[0].name == f"{path}:val_loss"
    assert main(["predict", "--tag", "nope", str(path)]) == 2
    err = capsys.readouterr().err
    assert "no column 'nope'" in err and "'val_loss'" in err and len(err.strip().splitlines()) == 1


def test_empty_json_is_an_error(tmp_path, capsys):
    (tmp_path / "empty.json").write_text("{}")
    assert main(["predict", str(tmp_path / "empty.json")]) == 2
    assert "no curves in it" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# TensorBoard event files
# ---------------------------------------------------------------------------------------

def _write_events(logdir, tags, steps=300, new_style=False):
    SummaryWriter = pytest.importorskip("torch.utils.tensorboard").SummaryWriter
    curves = {tag: _loss(steps, seed=i) for i, tag in enumerate(tags)}
    with SummaryWriter(str(logdir)) as writer:
        for s in range(steps):
            for tag, loss in curves.items():
                writer.add_scalar(tag, float(loss[s]), s, new_style=new_style)
    return curves


@pytest.mark.parametrize("new_style", [False, True], ids=["scalar summaries", "tensor summaries"])
def test_a_tensorboard_event_file_is_read_back(new_style, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    logs = tmp_path / "logs"
    written = _write_events(logs / "run_a", ["train/loss", "val/loss", "lr"], new_style=new_style)
    _write_events(logs / "run_b", ["train/loss"])
    (event_file,) = (logs / "run_a").glob("events.out.tfevents.*")
    (curve,) = read_curves(event_file)
    assert curve.name == f"{event_file}:train/loss"
    assert curve.loss == pytest.approx(written["train/loss"], rel=1e-6)  # stored as float32
    # a directory: one curve per run directory in it
    curves = read_curves(logs)
    assert [c.name for c in curves] == [f"{logs / 'run_a'}:train/loss", f"{logs / 'run_b'}:train/loss"]
    assert read_curves(logs / "run_a", tag="val/loss")[0].loss == pytest.approx(written["val/loss"], rel=1e-6)
    code, results = _predict_json(capsys, logs)
    assert [r["curve"] for r in results] == [c.name for c in curves]
    assert results[0]["verdict"] == _expected(curves[0].loss).verdict
    assert all(r["verdict"] and r["reason"] for r in results)


def test_ambiguous_or_missing_loss_tags_are_errors_naming_the_tags(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    _write_events(tmp_path / "two", ["train/loss_a", "train/loss_b"], steps=30)
    with pytest.raises(CurveError, match="several scalar tags.*'train/loss_a', 'train/loss_b'.*--tag"):
        read_curves(tmp_path / "two")
    assert main(["predict", str(tmp_path / "two")]) == 2
    assert "train/loss_b" in capsys.readouterr().err
    _write_events(tmp_path / "none", ["accuracy"], steps=30)
    with pytest.raises(CurveError, match="no scalar tag names a training loss; its tags are 'accuracy'"):
        read_curves(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CurveError, match="a directory with no TensorBoard event files"):
        read_curves(tmp_path / "empty")


def test_without_tensorboard_event_files_are_a_one_line_error_naming_the_extra(tmp_path, monkeypatch, capsys):
    pytest.importorskip("tensorboard")
    _write_events(tmp_path / "run", ["train/loss"], steps=30)
    monkeypatch.setitem(sys.modules, "tensorboard.backend.event_processing.event_accumulator", None)
    assert main(["predict", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "pip install grokbook[tensorboard]" in err and len(err.strip().splitlines()) == 1
