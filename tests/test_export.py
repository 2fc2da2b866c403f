"""`grokbook export`: stored runs as CSV, by hash or by the chapter that used them; the
record `run_chapter` keeps of the runs a chapter used."""

import dataclasses
import json
import sys

import pandas as pd
import pytest

from grokbook import RunConfig
from grokbook.notebooks import get_chapter, load_profile, run_chapter
from grokbook.cli import main
from grokbook.store import RunStore
from grokbook.sweeping import replicates, sweep

FIELDS = [f.name for f in dataclasses.fields(RunConfig)]
# floats read back exactly: pandas 3 parses them round-trip by default (and deprecates the option)
EXACT = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}


@pytest.fixture
def two_runs(tiny):
    """Two tiny runs trained into the test's store."""
    store = RunStore()
    return [store.get_or_train(tiny), store.get_or_train(tiny.replace(seed=1))]


def check_exported(out, runs, names, snapshots=False):
    """The files in ``out`` are exactly the index and the frames of ``runs`` (stored as
    ``names``), and equal ``run.to_frame(...)`` read back."""
    frames = ["steps", "validation"] + ["snapshots"] * snapshots
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["runs.csv"] + [f"{n}.{w}.csv" for n in names for w in frames])
    for run, name in zip(runs, names):
        for what in frames:
            expected = run.to_frame(what)
            got = pd.read_csv(out / f"{name}.{what}.csv", index_col="step", **EXACT).astype(expected.dtypes)
            pd.testing.assert_frame_equal(got, expected, check_exact=True)  # float32 repr round-trips
    index = pd.read_csv(out / "runs.csv", **EXACT)
    summary = ["outcome", "t1", "t2", "t3", "t4", "final_train_acc", "final_val_acc"]
    assert list(index.columns) == ["hash"] + FIELDS + summary and list(index["hash"]) == names
    for run, (_, row) in zip(runs, index.iterrows()):
        d = row.drop(["hash", *summary]).to_dict()
        d["betas"] = json.loads(d["betas"])
        assert RunConfig.from_dict(d) == run.config


def test_export_by_hash_and_by_prefix(two_runs, tmp_path, capsys):
    a, b = two_runs
    ha, hb = a.config.hash(), b.config.hash()
    assert RunStore().hashes() == sorted([ha, hb])
    assert main(["export", ha, "-o", str(tmp_path / "a")]) == 0
    check_exported(tmp_path / "a", [a], [ha])
    n = next(i for i in range(1, 17) if ha[:i] != hb[:i])  # the shortest prefix of hb that is not ha's
    assert main(["export", hb[:n], "-o", str(tmp_path / "b"), "--snapshots"]) == 0
    check_exported(tmp_path / "b", [b], [hb], snapshots=True)
    assert "wrote 1 run to" in capsys.readouterr().out


def test_export_default_directory(two_runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    h = two_runs[0].config.hash()
    assert main(["export", h]) == 0
    check_exported(tmp_path / f"{h}_runs", two_runs[:1], [h])


def test_store_logs_the_runs_it_returns(tiny, tmp_path, monkeypatch):
    """A run trained, loaded, or returned by a sweep is logged; a run not found is not."""
    log = tmp_path / "runs.log"
    monkeypatch.setenv("GROKBOOK_RUNS_LOG", str(log))
    store, other = RunStore(), tiny.replace(seed=2)

    def logged():
        entries = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        assert all(e["store"] == str(store.root) for e in entries)
        assert all(RunConfig.from_dict(e["config"]).hash() == e["hash"] for e in entries)
        return {e["hash"] for e in entries}

    assert store.load(tiny) is None and logged() == set()
    store.get_or_train(tiny)  # trained
    assert logged() == {tiny.hash()}
    log.unlink()
    store.get_or_train(tiny)  # loaded
    assert logged() == {tiny.hash()}
    sweep([tiny, other], store=store, progress=False)
    assert logged() == {tiny.hash(), other.hash()}


def test_export_chapter_exports_the_runs_it_used(tiny, tmp_path, capsys):
    store = RunStore()
    unused = store.get_or_train(tiny)  # in the store, not used by the chapter
    run_chapter("grokking", profile="smoke", output=tmp_path / "g.ipynb")
    record = json.loads((store.root / "chapters" / "grokking.json").read_text())
    assert record == store.chapter_runs("grokking")
    # the config the chapter builds from its parameters (defaults, then the smoke profile)
    chapter = get_chapter("grokking")
    params = {**{k: p.default for k, p in chapter.parameters.items()}, **load_profile("smoke", chapter)}
    config = RunConfig(**{k: v for k, v in params.items() if k in FIELDS})
    configs = replicates([config, config.replace(r=params["control_r"])], params["seeds"])  # runs and controls
    assert record["profile"] == "smoke" and record["parameters"] == load_profile("smoke", chapter)
    assert record["runs"] == [{"hash": store.key(c), "config": c.to_dict()} for c in configs]
    assert main(["export", "grokking", "-o", str(tmp_path / "out")]) == 0
    check_exported(tmp_path / "out", [store.load(c) for c in configs], [store.key(c) for c in configs])
    assert store.key(unused.config) not in {p.name.split(".")[0] for p in (tmp_path / "out").iterdir()}
    assert f"wrote {len(configs)} runs to" in capsys.readouterr().out


def common_prefix(names):
    a, b = names
    return a[:next(i for i in range(16) if a[i] != b[i])]


@pytest.mark.parametrize("argv, message", [
    (["export", "nosuchthing"], "'nosuchthing' is neither a chapter (grokking"),
    (["export", "COMMON"], "is ambiguous: 2 stored runs begin with it"),
    (["export", "grokking"], "run `grokbook run grokking` first"),
    (["export", "RUN", "--format", "parquet"], "--format parquet needs pyarrow: pip install pyarrow"),
    (["export", "RUN", "-o", "FILE"], "is not a directory"),
])
def test_bad_input_exits_2_and_writes_nothing(argv, message, two_runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # missing, even where it is installed
    monkeypatch.chdir(tmp_path)
    (tmp_path / "FILE").write_text("a file\n")
    names = sorted(r.config.hash() for r in two_runs)
    argv = [{"COMMON": common_prefix(names), "RUN": names[0]}.get(a, a) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["FILE"] and (tmp_path / "FILE").read_text() == "a file\n"
