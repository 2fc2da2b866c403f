"""The grokbook command: listing, validation before execution, clear errors."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from grokbook import notebooks
from grokbook.notebooks import (ChapterError, check_run_values, check_scheduler, field_of, find_chapters,
                               get_chapter, load_profile)
from grokbook.cli import main


def test_chapters_lists_every_parameter(capsys):
    assert main(["chapters"]) == 0
    out = capsys.readouterr().out
    ch = get_chapter("grokking")
    assert "grokking:" in out
    for p in ch.parameters.values():
        assert p.name in out and p.help in out


def test_parameters_are_typed_from_defaults():
    params = get_chapter("grokking").parameters
    assert params["p"].type is int and params["lr"].type is float and params["task"].type is str
    assert params["lr"].parse("3e-4") == 3e-4 and params["lr"].parse("1") == 1.0
    assert params["p"].parse("97") == 97


@pytest.mark.parametrize("argv, message", [
    (["run", "nosuchchapter"], "no chapter 'nosuchchapter'; the chapters are: grokking"),
    (["run", "grokking", "--profile", "huge"], "give a file or one of: paper, smoke"),
    (["run", "grokking", "-p", "learning_rate", "1e-3"], "has no parameter 'learning_rate'"),
    (["run", "grokking", "-p", "p", "ninety-seven"], "parameter 'p' (int): cannot parse 'ninety-seven'"),
    (["run", "grokking", "-p", "p", "9.5"], "parameter 'p' (int): 9.5 is a float, not int"),
    (["run", "grokking", "-p", "lr", "fast"], "parameter 'lr' (float): cannot parse 'fast'"),
])
def test_bad_input_exits_nonzero_and_writes_nothing(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv + ["-o", str(tmp_path / "out.ipynb")]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_profiles_only_name_real_parameters():
    root = Path(__file__).resolve().parent.parent
    for profile in sorted(p.stem for p in (root / "book" / "profiles").glob("*.yml")):
        for chapter in find_chapters().values():
            load_profile(profile, chapter)  # raises ChapterError on an unknown name or type


def test_bad_profile_value_is_reported(tmp_path):
    (tmp_path / "book" / "profiles").mkdir(parents=True)
    ch = get_chapter("grokking")
    (tmp_path / "book" / "profiles" / "broken.yml").write_text("grokking:\n  p: 'many'\n")
    with pytest.raises(ChapterError, match="profile 'broken': parameter 'p' \\(int\\): cannot parse 'many' as int"):
        load_profile("broken", ch, root=tmp_path)


def test_console_script_exit_code():
    proc = subprocess.run([sys.executable, "-m", "grokbook.cli", "run", "grokking", "-p", "nope", "1"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "has no parameter 'nope'" in proc.stderr


@pytest.fixture
def no_kernel(monkeypatch):
    """Fail a test that would start a kernel: its input must be refused before."""
    import papermill

    def started(*args, **kwargs):
        raise AssertionError("papermill started a kernel")

    monkeypatch.setattr(papermill, "execute_notebook", started)


@pytest.mark.parametrize("argv, message", [
    (["grokking", "-p", "steps", "0"], "parameter 'steps' = 0 is invalid: an integer >= 1"),
    (["grokking", "-p", "steps", "-5"], "parameter 'steps' = -5 is invalid: an integer >= 1"),
    (["grokking", "-p", "r", "0"], "parameter 'r' = 0.0 is invalid: a train fraction strictly between 0 and 1"),
    (["grokking", "-p", "r", "1"], "parameter 'r' = 1.0 is invalid: a train fraction strictly between 0 and 1"),
    (["grokking", "-p", "r", "1.5"], "parameter 'r' = 1.5 is invalid: a train fraction strictly between 0 and 1"),
    (["grokking", "-p", "r", "1e999"], "parameter 'r' = inf is invalid: a train fraction strictly between 0 and 1"),
    (["grokking", "-p", "task", ""], "parameter 'task' = '' is invalid: one of add, sub,"),
    (["grokking", "-p", "task", "div", "-p", "p", "12"],
     "parameter 'p' = 12 is invalid: a prime number for task 'div'"),
    (["grokking", "-p", "p", "1000000"], "parameter 'p' = 1000000 is invalid: an integer from 2 to 4096"),
    (["lazy", "-p", "walk_seed", str(2**64)],
     "parameter 'walk_seed' = 18446744073709551616 is invalid: an integer in [0, 2**32)"),
    (["grokking", "-p", "d_model", "30"], "parameter 'n_heads' = 4 is invalid: a divisor of d_model = 30"),
    (["hessian", "-p", "control_r", "0"], "parameter 'control_r' = 0.0 is invalid: a train fraction strictly between 0 and 1"),
    (["slingshot", "-p", "control_r", "1"], "parameter 'control_r' = 1.0 is invalid: a train fraction strictly between 0 and 1"),
    (["spectral", "-p", "rs", "[0.5, 1.5]"], "parameter 'rs' = [0.5, 1.5] is invalid: 1.5 is not a train fraction"),
    (["spectral", "-p", "lrs", "[0.01, 0]"], "parameter 'lrs' = [0.01, 0.0] is invalid: 0.0 is not a positive"),
    (["data_fraction", "-p", "seeds", "[0, -1]"], "parameter 'seeds' = [0, -1] is invalid: -1 is not an integer in"),
    (["data_fraction", "-p", "s5_r_grid", "[2]"], "parameter 's5_r_grid' = [2] is invalid: 2 is not a train fraction"),
    (["spectral", "-p", "lrs", "['fast']"], "parameter 'lrs' (list of float): element 'fast' is a str, not float"),
    (["data_fraction", "-p", "seeds", "[True]"], "parameter 'seeds' (list of int): element True is a bool, not int"),
])
def test_invalid_run_values_are_refused_before_a_kernel_starts(argv, message, tmp_path, capsys, monkeypatch,
                                                               no_kernel):
    monkeypatch.chdir(tmp_path)
    assert main(["run", *argv, "-o", str(tmp_path / "out.ipynb")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grokbook: error: ") and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_every_chapter_validates_under_its_defaults_and_every_profile():
    root = Path(__file__).resolve().parent.parent
    for chapter in find_chapters().values():
        check_run_values(chapter, {})
        for profile in sorted(p.stem for p in (root / "book" / "profiles").glob("*.yml")):
            check_run_values(chapter, load_profile(profile, chapter))


def test_parameters_that_stand_for_a_run_config_field():
    ch = {name: ch for name, ch in find_chapters().items()}
    expect = {("spectral", "lrs"): "lr", ("spectral", "weight_decays"): "weight_decay", ("spectral", "rs"): "r",
              ("predict", "seeds"): "seed", ("spectral", "seeds"): "seed", ("predict", "windows"): None,
              ("data_fraction", "r_grid"): "r", ("data_fraction", "s5_r_grid"): "r", ("data_fraction", "seeds"): "seed",
              ("lazy", "walk_seed"): "seed", ("slingshot", "clip_quantile"): None, ("lu", "digits_init_scale"): "init_scale",
              ("lu", "digits_wd"): None, ("hessian", "control_r"): "r", ("hessian", "max_spikes"): None, ("valleys", "low_loss_nats"): None,
              ("hessian", "n_eig_snapshots"): None, ("grokking", "r"): "r", ("grokking", "leave"): None}
    assert {key: field_of(ch[key[0]].parameters[key[1]]) for key in expect} == expect


def test_list_elements_take_the_default_elements_type():
    params = get_chapter("spectral").parameters
    assert params["lrs"].parse("[1, 0.1]") == [1.0, 0.1] and type(params["lrs"].parse("[1]")[0]) is float
    assert get_chapter("data_fraction").parameters["s5_r_grid"].parse("[0.5]") == [0.5]  # empty default: any
    with pytest.raises(ChapterError, match=r"parameter 'rs' \(list of float\): element None is a NoneType"):
        params["rs"].parse([0.5, None])


def test_output_that_is_a_directory_is_refused(tmp_path, capsys, no_kernel):
    assert main(["run", "grokking", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"grokbook: error: output {tmp_path} is a directory" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def closed_port():
    """A local port bound by no listener: a connection to it is refused at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def test_unreachable_scheduler_is_refused(closed_port, tmp_path, capsys, no_kernel, monkeypatch):
    monkeypatch.delenv("GROKBOOK_SCHEDULER", raising=False)
    address = f"tcp://127.0.0.1:{closed_port}"
    assert main(["run", "grokking", "--scheduler", address, "-o", str(tmp_path / "out.ipynb")]) == 2
    err = capsys.readouterr().err
    assert f"grokbook: error: cannot reach the scheduler {address} (127.0.0.1:{closed_port}): " in err
    assert err.count("\n") == 1 and list(tmp_path.iterdir()) == []
    assert "GROKBOOK_SCHEDULER" not in os.environ


def test_scheduler_check_parses_addresses():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        check_scheduler(f"tcp://127.0.0.1:{port}")  # a listener: no error
        check_scheduler(f"127.0.0.1:{port}")  # tcp:// is the default protocol
    check_scheduler("inproc://whatever")  # not a TCP address: not checked
    with pytest.raises(ChapterError, match="is not an address like tcp://host:8786"):
        check_scheduler("tcp://127.0.0.1:port")


BOOM = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# Boom

```{code-cell} ipython3
:tags: [parameters]

fail = False  # raise in the next cell
```

```{code-cell} ipython3
if fail:
    raise ValueError("boom\\nsecond line")
print("fine")
```
"""


def test_failed_chapter_keeps_the_good_output(tmp_path, capsys, monkeypatch):
    root = tmp_path / "root"
    (root / "book").mkdir(parents=True)
    (root / "_config.yml").write_text("title: test\n")
    (root / "book" / "01_boom.md").write_text(BOOM)
    monkeypatch.setattr(notebooks, "book_root", lambda: root)
    out = tmp_path / "out" / "boom.ipynb"
    assert main(["run", "boom", "-o", str(out)]) == 0
    good = out.read_bytes()
    assert b"fine" in good and sorted(p.name for p in out.parent.iterdir()) == ["boom.ipynb"]
    capsys.readouterr()

    assert main(["run", "boom", "-p", "fail", "true", "-o", str(out)]) == 2
    failed = out.with_name("boom.failed.ipynb")
    err = capsys.readouterr().err
    assert err == f"grokbook: error: chapter 'boom' failed: ValueError: boom; the failed notebook is {failed}\n"
    assert out.read_bytes() == good
    assert sorted(p.name for p in out.parent.iterdir()) == ["boom.failed.ipynb", "boom.ipynb"]
    assert "ValueError" in failed.read_text()


def test_a_relative_store_path_is_the_callers_not_the_kernels(tmp_path, monkeypatch):
    import grokbook.cli as cli

    seen = {}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GROKBOOK_HOME", "my_store")
    monkeypatch.setattr(cli, "run_chapter", lambda *a, **k: seen.setdefault("home", os.environ["GROKBOOK_HOME"]))
    assert main(["run", "grokking"]) == 0
    assert seen["home"] == str(tmp_path / "my_store")


def test_the_cli_starts_without_torch():
    code = "import sys, grokbook.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_version_module_entry_and_one_chapter():
    import grokbook

    out = subprocess.run([sys.executable, "-m", "grokbook", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"grokbook {grokbook.__version__}"
    one = subprocess.run([sys.executable, "-m", "grokbook", "chapters", "grokking"], capture_output=True, text=True)
    assert one.returncode == 0 and one.stdout.startswith("grokking: ") and "spectral:" not in one.stdout
    bad = subprocess.run([sys.executable, "-m", "grokbook", "chapters", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no chapter 'nope'" in bad.stderr


def test_a_closed_pipe_is_not_an_error():
    """`grokbook chapters | head`: the reader is gone; exit 0 and no traceback. The read
    end is closed before the command starts, so its first write meets a closed pipe."""
    r, w = os.pipe()
    os.close(r)
    proc = subprocess.Popen([sys.executable, "-m", "grokbook", "chapters"], stdout=w, stderr=subprocess.PIPE)
    os.close(w)
    err = proc.stderr.read().decode()
    assert proc.wait() == 0 and "Traceback" not in err and "Exception ignored" not in err, err


def test_ctrl_c_says_in_one_line_what_is_kept(monkeypatch, capsys, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("grokbook.cli.run_chapter", interrupted)
    monkeypatch.setenv("GROKBOOK_HOME", str(tmp_path))
    assert main(["run", "grokking"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted" in err[0] and str(tmp_path) in err[0] and "resumes" in err[0]


def test_run_device_reaches_the_kernel_through_the_environment(monkeypatch, capsys, tmp_path):
    seen = {}

    def fake_run(name, values, **kwargs):
        seen["device"] = os.environ.get("GROKBOOK_DEVICE")
        return tmp_path / "out.ipynb"

    monkeypatch.setattr("grokbook.cli.run_chapter", fake_run)
    monkeypatch.setenv("GROKBOOK_DEVICE", "")  # restored (unset) after the test
    monkeypatch.setenv("GROKBOOK_FIGURES", "")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "grokking", "--device", "cpu", "--figures", "figs"]) == 0 and seen["device"] == "cpu"
    assert os.environ["GROKBOOK_FIGURES"] == str(tmp_path / "figs")
    assert f"figures as PNG in {tmp_path / 'figs'}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["run", "grokking", "--device", "tpu"])
    assert exit_.value.code == 2 and "invalid choice: 'tpu'" in capsys.readouterr().err


def _write_curves(tmp_path):
    """The same three curves as NPY (columns), CSV (header) and JSON (an object): falling
    from about log 31 like the book's runs, long enough for the shipped predictor's window."""
    rng = np.random.default_rng(0)
    curves = 3.4 * np.exp(-np.linspace(0, 6, 480))[:, None] * (1 + 0.1 * rng.random((480, 3)))
    np.save(tmp_path / "c.npy", curves)
    (tmp_path / "c.csv").write_text("a,b,c\n" + "\n".join(",".join(repr(float(v)) for v in row) for row in curves))
    (tmp_path / "c.json").write_text(json.dumps({k: curves[:, j].tolist() for j, k in enumerate("abc")}))
    return curves


def test_predict_reads_npy_csv_and_json_alike(tmp_path, capsys):
    from grokbook.predict import GrokPredictor

    curves = _write_curves(tmp_path)
    expected = GrokPredictor.default().predict_proba(curves.T)
    for name in ("c.npy", "c.csv", "c.json"):
        assert main(["predict", "--json", str(tmp_path / name)]) == 0
        results = json.loads(capsys.readouterr().out)
        assert [r["probability"] for r in results] == pytest.approx(expected, abs=1e-12)
        assert all(r["window"] == 400 and set(r["features"]) for r in results)
    assert main(["predict", str(tmp_path / "c.csv")]) == 0
    out = capsys.readouterr().out
    assert "a: P = " in out and "first 400 steps" in out and "fall_16" in out


@pytest.mark.parametrize("content, name, message", [
    ("[1.0, 2.0, 3.0]", "short.json", "3 steps, fewer than the window of 400"),
    ("{broken", "bad.json", "cannot read"),
    ("x", "curve.txt.gz", "unknown format"),
    ("a,b\n1,oops\n", "words.csv", "not a list of numbers"),
])
def test_predict_errors_are_one_line_and_exit_2(content, name, message, tmp_path, capsys):
    (tmp_path / name).write_text(content)
    assert main(["predict", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_predict_calls_a_nan_in_the_window_diverged_and_exits_1(tmp_path, capsys):
    (tmp_path / "nan.json").write_text(json.dumps([1.0] * 10 + [None] + [1.0] * 400).replace("null", "NaN"))
    assert main(["predict", "--json", str(tmp_path / "nan.json")]) == 1
    (result,) = json.loads(capsys.readouterr().out)
    assert result["verdict"] == "diverged" and result["probability"] is None and "step 10" in result["reason"]


def test_predict_missing_file_and_bad_model(tmp_path, capsys):
    _write_curves(tmp_path)
    assert main(["predict", str(tmp_path / "none.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err
    (tmp_path / "model.json").write_text("{}")
    assert main(["predict", "--model", str(tmp_path / "model.json"), str(tmp_path / "c.npy")]) == 2
    assert "not a grokbook predictor" in capsys.readouterr().err


def test_a_chapter_run_prints_no_kernel_transport_warning(tmp_path, capfd, monkeypatch):
    """ipykernel logs "Kernel is running over TCP without encryption" at every start;
    the kernel's log is at ERROR (notebooks.KERNEL_ARGUMENTS), so a run shows none of it."""
    root = tmp_path / "root"
    (root / "book").mkdir(parents=True)
    (root / "_config.yml").write_text("title: test\n")
    (root / "book" / "01_boom.md").write_text(BOOM)
    monkeypatch.setattr(notebooks, "book_root", lambda: root)
    assert main(["run", "boom", "-o", str(tmp_path / "boom.ipynb")]) == 0
    err = capfd.readouterr().err
    assert "without encryption" not in err and "Kernel is running" not in err, err


# --- grokbook runs, and runs.csv -------------------------------------------------------------


@pytest.fixture(scope="module")
def listed_store(tmp_path_factory):
    """A store with three runs: two that never fit (seeds 0 and 1) and one that memorizes,
    with the runs as trained."""
    from grokbook import RunConfig
    from grokbook.store import RunStore

    tiny = RunConfig(p=11, r=0.5, n_layers=1, d_model=16, n_heads=2, steps=40, n_snapshots=6, lr=3e-3,
                     warmup_steps=5)
    store = RunStore(tmp_path_factory.mktemp("listed_store"))
    configs = [tiny, tiny.replace(seed=1), tiny.replace(steps=200, lr=1e-2)]
    return store, {store.key(c): store.get_or_train(c, progress=False) for c in configs}


def first_at(steps, values, level):
    """The first step whose value is at least ``level``, or None: the oracle of t1..t4."""
    hits = [s for s, v in zip(steps, values) if v >= level]
    return int(hits[0]) if hits else None


def expected_summary(run):
    """Outcome, t1..t4 and final accuracies at the authors' 5% and 99% (groks at t4 >= 5 t2),
    computed here from the curves."""
    steps = range(len(run.metrics["train_acc"]))
    t = [first_at(steps, run.metrics["train_acc"], 0.05), first_at(steps, run.metrics["train_acc"], 0.99),
         first_at(run.val_steps, run.val_acc, 0.05), first_at(run.val_steps, run.val_acc, 0.99)]
    if run.diverged_at is not None:
        outcome = "diverged"
    elif t[1] is None:
        outcome = "generalizes" if t[3] is not None else "never fits"
    elif t[3] is None:
        outcome = "memorizes"
    else:
        outcome = "groks" if t[3] >= 5 * max(t[1], 1) else "generalizes"
    return {"outcome": outcome, "t1": t[0], "t2": t[1], "t3": t[2], "t4": t[3],
            "final_train_acc": float(run.metrics["train_acc"][-1]), "final_val_acc": float(run.val_acc[-1])}


def test_runs_csv_carries_outcome_phase_times_and_final_accuracies(listed_store, tmp_path, monkeypatch):
    import pandas as pd

    store, runs = listed_store
    monkeypatch.setenv("GROKBOOK_HOME", str(store.root))
    outcomes = set()
    for name, run in runs.items():
        assert main(["export", name, "-o", str(tmp_path / name)]) == 0
        (row,) = pd.read_csv(tmp_path / name / "runs.csv").to_dict("records")
        want = expected_summary(run)
        outcomes.add(want["outcome"])
        got = {k: (None if pd.isna(row[k]) else row[k]) for k in want}
        assert got == pytest.approx(want), name
        assert row["hash"] == name and row["p"] == 11
    assert outcomes == {"never fits", "memorizes"}  # both kinds of row, t2 present and absent


def test_runs_lists_every_stored_run_with_outcome_times_and_size(listed_store, capsys, monkeypatch):
    store, runs = listed_store
    monkeypatch.setenv("GROKBOOK_HOME", str(store.root))
    assert main(["runs"]) == 0
    captured = capsys.readouterr()
    header, *lines = captured.out.strip().splitlines()
    assert header.split()[:5] == ["hash", "outcome", "t2", "t4", "size"]
    assert [line.split()[0] for line in lines] == sorted(runs)
    for line in lines:
        name = line.split()[0]
        want = expected_summary(runs[name])
        after = line[len(name):].split()
        outcome_words = want["outcome"].split()
        assert after[:len(outcome_words)] == outcome_words
        t2, t4 = after[len(outcome_words):len(outcome_words) + 2]
        assert t2 == ("never" if want["t2"] is None else str(want["t2"])) and t4 == "never"
        size = store.size_on_disk(name)
        assert f"{size / 2**20:.1f} MB" in line and "p=11" in line and "d_model=16" in line
    assert captured.err == f"3 runs of 3 in {store.root}, {sum(map(store.size_on_disk, runs)) / 2**20:.0f} MB\n"


def test_runs_filters_by_config_and_outcome(listed_store, capsys, monkeypatch):
    import io

    import pandas as pd

    store, runs = listed_store
    monkeypatch.setenv("GROKBOOK_HOME", str(store.root))
    by_seed = {r.config.seed: name for name, r in runs.items() if r.config.steps == 40}

    def listed(*argv):
        assert main(["runs", *argv]) == 0
        return [line.split()[0] for line in capsys.readouterr().out.strip().splitlines()[1:]]

    assert listed("--where", "seed=1") == [by_seed[1]]
    assert listed("--where", "seed=0", "--where", "steps=4e1") == [by_seed[0]]  # 4e1: an integer
    assert listed("--where", "lr=0.003") == sorted(by_seed.values())             # floats compared as numbers
    assert listed("--where", "layer_norm=true", "--where", "task=add") == sorted(runs)
    assert listed("--outcome", "never-fits") == sorted(by_seed.values())
    assert listed("--outcome", "memorizes", "--where", "lr=1e-2") == sorted(set(runs) - set(by_seed.values()))
    assert listed("--outcome", "groks") == []
    assert main(["runs", "--csv", "--where", "seed=1"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(table["hash"]) == [by_seed[1]] and table.loc[0, "outcome"] == "never fits"
    assert list(table.columns[:9]) == ["hash", "outcome", "t1", "t2", "t3", "t4", "final_train_acc", "final_val_acc",
                                       "size_bytes"]
    assert table.loc[0, "size_bytes"] == store.size_on_disk(by_seed[1]) and table.loc[0, "seed"] == 1


@pytest.mark.parametrize("argv, message", [
    (["--where", "learning_rate=1e-3"], "--where 'learning_rate=1e-3': no RunConfig field 'learning_rate'; the "
                                        "fields are: task, p,"),
    (["--where", "seed"], "--where 'seed': not KEY=VALUE"),
    (["--where", "seed=abc"], "--where 'seed=abc': 'abc' is not a value of seed (int)"),
    (["--outcome", "grokked"], "--outcome 'grokked': one of groks, generalizes, memorizes, never fits, diverged"),
])
def test_runs_refuses_a_bad_filter_in_one_line(argv, message, capsys):
    assert main(["runs", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"grokbook: error: {message}") and err.count("\n") == 1, err


def test_a_real_ctrl_c_during_training_prints_one_line(tmp_path):
    """SIGINT to the command's process group while the kernel trains (what a terminal's
    Ctrl-C does): exit 130 and one line, no traceback from the kernel (its own stderr goes
    to a log, notebooks._kernel_manager). Synchronised on the notice that training starts."""
    import signal

    env = dict(os.environ, GROKBOOK_HOME=str(tmp_path / "store"))
    proc = subprocess.Popen([sys.executable, "-m", "grokbook", "run", "grokking", "--profile", "smoke",
                             "-p", "steps", "400", "-o", str(tmp_path / "out.ipynb")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True,
                            # as from a terminal: a job started in the background by a
                            # non-interactive shell (make, CI) inherits SIGINT ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stderr:
        if "training takes about" in line:
            break
    else:
        raise AssertionError("training never started: " + proc.stdout.read())
    os.killpg(proc.pid, signal.SIGINT)
    rest = proc.stderr.read().strip().splitlines()
    # a periodic progress notice may come between the signal and the stop on a busy machine
    rest = [line for line in rest if not line.startswith("grokbook: trained ")]
    assert proc.wait(timeout=300) == 130, rest
    assert len(rest) == 1 and rest[0].startswith("grokbook: interrupted.") and "resumes" in rest[0], rest
    assert not (tmp_path / "out.ipynb").exists()


def test_papermill_s_log_goes_to_a_file_while_a_chapter_runs(tmp_path, capsys):
    """nbclient's "Kernel died while waiting for execute reply." (logged when Ctrl-C stops
    the kernel) must not reach the terminal as a second line: the log holds it."""
    import logging

    from grokbook.notebooks import _papermill_log_to

    logger = logging.getLogger("papermill")
    before = (list(logger.handlers), logger.propagate)
    with _papermill_log_to(tmp_path / "papermill.log"):
        logger.error("Kernel died while waiting for execute reply.")
    assert capsys.readouterr().err == ""
    assert (tmp_path / "papermill.log").read_text() == "Kernel died while waiting for execute reply.\n"
    assert (logger.handlers, logger.propagate) == before


def test_after_an_interrupt_the_kernel_s_loggers_say_nothing(monkeypatch, capsys):
    """asyncio's "Task exception was never retrieved" (the interrupted cell's task, collected
    at exit) and nbclient's "Kernel died" must not follow the command's one line."""
    import logging

    import grokbook.cli as cli  # conftest restores the loggers after the test

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_run", interrupted)
    assert main(["run", "grokking"]) == 130
    for name in cli.AFTER_INTERRUPT_LOGGERS:
        logging.getLogger(name).error("Task exception was never retrieved")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("grokbook: interrupted."), err


def test_verbose_streams_the_cells_output(tmp_path, capfd):
    assert main(["run", "grokking", "--profile", "smoke", "-v", "-o", str(tmp_path / "g.ipynb")]) == 0
    out = capfd.readouterr().out
    assert "parameters, trained in" in out and "wrote " in out, out  # the first: printed by chapter 1


def _falling_curves(tmp_path, n=500):
    """Three curves falling two decades over their first 200 steps, noisy: long enough
    for the corpus predictor's 400-step window, with a scale-free time unit."""
    rng = np.random.default_rng(1)
    t = np.arange(n)[:, None]
    curves = (3.4 * np.exp(-t / np.array([40.0, 60.0, 90.0])) + 0.02) * np.exp(0.05 * rng.normal(size=(n, 3)))
    np.save(tmp_path / "f.npy", curves)
    return curves


def test_predict_with_the_hyperparameters_uses_the_corpus_predictor(tmp_path, capsys):
    from grokbook.predict import GrokPredictor

    curves = _falling_curves(tmp_path)
    hp = GrokPredictor.default(with_hyperparameters=True)
    assert hp.needs_hyperparameters and hp.window == 400
    args = ["predict", "--json", str(tmp_path / "f.npy"), "--lr", "0.01", "--weight-decay", "1", "--r", "0.5"]
    main(args)
    results = json.loads(capsys.readouterr().out)
    expected = hp.predict_proba(curves.T, dict(lr=0.01, weight_decay=1.0, r=0.5))
    scored = [r for r in results if r["probability"] is not None]
    assert scored and all(r["window"] == 400 for r in results)
    assert [r["probability"] for r in scored] == pytest.approx(
        [p for p, r in zip(expected, results) if r["probability"] is not None], abs=1e-12)
    assert all({"log_lr", "log_wd", "r"} <= set(r["features"]) for r in results)


def test_predict_hyperparameters_come_as_one_set(tmp_path, capsys):
    _falling_curves(tmp_path)
    assert main(["predict", str(tmp_path / "f.npy"), "--lr", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "--weight-decay, --r missing" in err and len(err.strip().splitlines()) == 1
    assert main(["predict", str(tmp_path / "f.npy"), "--lr", "0.01", "--weight-decay", "1", "--r", "1.5"]) == 2
    assert "train fraction" in capsys.readouterr().err


def test_predict_a_model_that_reads_no_hyperparameters_ignores_them_and_says_so(tmp_path, capsys):
    from grokbook.predict import DEFAULT_HP_PATH, DEFAULT_PATH

    _falling_curves(tmp_path)
    main(["predict", str(tmp_path / "f.npy"), "--model", str(DEFAULT_PATH), "--lr", "0.01", "--weight-decay", "1",
          "--r", "0.5"])
    assert "does not read hyperparameters" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "f.npy"), "--model", str(DEFAULT_HP_PATH)]) == 2
    assert "give --lr, --weight-decay and --r" in capsys.readouterr().err


@pytest.mark.parametrize("with_hp", [False, True], ids=["loss alone", "with hyperparameters"])
def test_fit_predictor_refits_the_shipped_corpus_predictors(with_hp, tmp_path, capsys):
    from grokbook.predict import GrokPredictor
    from grokbook.transfer import TRANSFER

    out = tmp_path / "p.json"
    flag = ["--hyperparameters"] if with_hp else []
    assert main(["fit-predictor", *flag, "-o", str(out)]) == 0
    fresh, shipped = GrokPredictor.load(out), GrokPredictor.default(with_hyperparameters=with_hp)
    assert fresh.needs_hyperparameters == with_hp and fresh.features[:len(TRANSFER)] == TRANSFER
    # the shipped file is what the command writes from the committed corpus
    assert fresh.features == shipped.features and fresh.meta["families"] == shipped.meta["families"]
    assert fresh.coef == pytest.approx(shipped.coef, rel=1e-6)
    assert fresh.meta["command"] == shipped.meta["command"] == "grokbook fit-predictor" + " --hyperparameters" * with_hp
    assert main(["fit-predictor", *flag, "-o", str(tmp_path / "no" / "such.json")]) == 2
    assert main(["fit-predictor", "--hyperparameters", "--book-sweep"]) == 2
