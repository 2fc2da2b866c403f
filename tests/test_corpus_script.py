"""benchmarks/corpus.py: the corpus's family designs, its dry run, and a resumable build of a
tiny family (the real families are not trained here)."""

import importlib.util
import sys
from pathlib import Path

import pytest

from grokbook import RunConfig, RunStore
from grokbook.experiments.records import read_records, write_records
from grokbook.experiments.book_grid import book_sweep

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "corpus.py"


@pytest.fixture(scope="module")
def corpus():
    spec = importlib.util.spec_from_file_location("corpus_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


@pytest.fixture(scope="module")
def designs(corpus):
    return {name: fam.configs() for name, fam in corpus.FAMILIES.items()}


def test_the_families_are_the_issues(corpus):
    assert list(corpus.FAMILIES) == ["book_p31", "book_p23", "mlp_p31", "minibatch_p31", "sub_p31", "x2y2_p31",
                                     "budget_4k", "grok_p47"]
    assert all(name == fam.name for name, fam in corpus.FAMILIES.items())
    assert [n for n, f in corpus.FAMILIES.items() if f.script] == ["grok_p47"]  # listed, built by the bridge


def test_every_design_is_well_formed(corpus, designs):
    for name, configs in designs.items():
        hashes = [c.hash() for c in configs]
        assert len(set(hashes)) == len(hashes), name  # no run twice
        for c in configs:
            assert isinstance(c, RunConfig)
            c.validate()
            assert RunConfig.from_dict(c.to_dict()) == c
        if name == "book_p31":
            assert hashes == [c.hash() for c in book_sweep()]  # exactly the chapter's sweep
        elif name != "grok_p47":
            assert 100 <= len(configs) <= 250, (name, len(configs))
    assert sum(map(len, designs.values())) >= 1000  # the issue's size
    # each family's runs are its own: the leave-one-family-out split holds no run twice
    seen: dict[str, str] = {}
    for name, configs in designs.items():
        for c in configs:
            assert seen.setdefault(c.hash(), name) == name, (name, seen[c.hash()])


def test_seeds_vary_initialisation_and_split(designs):
    for name, configs in designs.items():
        if name == "grok_p47":  # the bridge's seeds are its own
            continue
        assert all(c.seed == c.data_seed for c in configs), name
        by_config: dict[RunConfig, set[int]] = {}
        for c in configs:
            by_config.setdefault(c.replace(seed=0, data_seed=0), set()).add(c.seed)
        assert all(len(s) >= 2 for s in by_config.values()), name  # every configuration at >= 2 seeds


def test_the_designs_span_what_the_issue_asks(designs):
    d = designs
    assert {c.p for c in d["book_p31"]} == {31} and {c.p for c in d["book_p23"]} == {23}
    assert {c.model for c in d["mlp_p31"]} == {"mlp"}
    mb = d["minibatch_p31"]
    assert {c.batch_size for c in mb} == {64, 128, 256, 512} and {c.warmup_steps for c in mb} == {0, 100}
    assert all(c.batch_size < round(c.r * c.p ** 2) for c in mb)  # every batch is a minibatch
    assert {c.task for c in d["sub_p31"]} == {"sub"} and {c.task for c in d["x2y2_p31"]} == {"x2+y2"}
    assert {c.steps for c in d["budget_4k"]} == {4000}
    for name in ("book_p23", "mlp_p31", "minibatch_p31", "sub_p31", "x2y2_p31", "budget_4k"):
        lr_wd = [c.lr * c.weight_decay for c in d[name]]
        assert min(lr_wd) == 0 and max(lr_wd) >= 0.09, name  # memorizing and never-fitting corners


def _tiny_family(corpus, tiny):
    configs = corpus.replicates([tiny.replace(steps=30), tiny.replace(steps=30, lr=1e-3)], (0, 1))
    return {"tiny": corpus.Family("tiny", "four tiny runs", lambda: configs)}, configs


def test_dry_run_prints_every_family_and_trains_nothing(corpus, monkeypatch, capsys, tmp_path):
    timed = []
    monkeypatch.setattr(corpus, "estimate_s", lambda groups, device, n: timed.append(groups) or 36.0 * len(groups))
    argv = ["--dry-run", "--out", str(tmp_path)]
    corpus.main(argv)
    out = capsys.readouterr().out
    for name, fam in corpus.FAMILIES.items():
        assert name in out
    assert "total" in out and "core-h" in out and timed
    store = RunStore()
    assert not store.root.exists() or not list(store.hashes())
    assert not list(tmp_path.iterdir())  # no file written


def test_dry_run_of_a_tiny_family_times_it(corpus, monkeypatch, capsys, tiny, tmp_path):
    families, configs = _tiny_family(corpus, tiny)
    monkeypatch.setattr(corpus, "FAMILIES", families)
    argv = ["--dry-run", "--out", str(tmp_path)]
    corpus.main(argv)
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("tiny"))
    assert line.split()[1:5] == ["4", "0", "0", "4"]  # runs, recorded, stored, to train
    [row] = corpus.dry_run(["tiny"], tmp_path, RunStore(), 1)
    assert 0 < row["core_h"] * 3600 < 60 and row["core_h_left"] == row["core_h"]  # from timed steps
    assert not any(c in RunStore() for c in configs) and not list(tmp_path.iterdir())


def test_a_tiny_family_builds_and_resumes(corpus, monkeypatch, capsys, tiny, tmp_path):
    families, configs = _tiny_family(corpus, tiny)
    monkeypatch.setattr(corpus, "FAMILIES", families)
    store = RunStore()
    argv = ["--out", str(tmp_path), "--batch", "2", "--limit", "3"]
    corpus.main(argv)  # three of the four, in two batches
    path = tmp_path / "tiny" / "tiny.parquet"
    first = read_records(path.parent)
    assert len(first) == 3 and list(path.parent.iterdir()) == [path]
    assert sum(c in store for c in configs) == 3
    row = first.iloc[0]
    assert row["family"] == "tiny" and row["command"].startswith("python benchmarks/corpus.py --out")
    assert row["threads"] == 1 and row["torch_version"] and row["machine"] and row["date"]
    argv = ["--out", str(tmp_path), "--batch", "2"]
    corpus.main(argv)  # the fourth: the three recorded are kept
    full = read_records(path.parent)
    assert len(full) == 4 and set(full.hash) == {c.hash() for c in configs}
    kept = full.set_index("hash").loc[list(first.hash)]
    assert (kept["final_val_acc"].to_numpy() == first["final_val_acc"].to_numpy()).all()
    assert (kept["command"].to_numpy() == first["command"].to_numpy()).all()  # rows kept, not re-recorded
    mtime = path.stat().st_mtime_ns

    def no_training(*a, **k):
        raise AssertionError("trained or loaded a run already recorded")

    monkeypatch.setattr(corpus, "sweep", no_training)
    capsys.readouterr()
    corpus.main(argv)  # nothing left: nothing trained, the file untouched
    assert "4 recorded, 0 to record" in capsys.readouterr().out
    assert path.stat().st_mtime_ns == mtime and len(read_records(path.parent)) == 4


def test_refresh_records_every_run_again_from_the_store(corpus, monkeypatch, tiny, tmp_path):
    families, configs = _tiny_family(corpus, tiny)
    monkeypatch.setattr(corpus, "FAMILIES", families)
    corpus.main(["--out", str(tmp_path), "--batch", "2"])
    path = tmp_path / "tiny" / "tiny.parquet"
    old = read_records(path.parent)
    # an older record format: without the early window's accuracies
    write_records(path.parent, [r for r in old.drop(columns=["window_acc"]).to_dict("records")], "tiny")
    assert "window_acc" not in read_records(path.parent)
    corpus.main(["--out", str(tmp_path), "--batch", "2", "--refresh"])
    new = read_records(path.parent)
    assert list(new.hash) == list(old.hash) and "window_acc" in new
    assert all(len(a) for a in new.window_acc) and "--refresh" in new.command.iloc[0]
    assert (new.final_val_acc.to_numpy() == old.final_val_acc.to_numpy()).all()
