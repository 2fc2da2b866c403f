"""Notices of the runs a chapter needs and of their training ($GROKBOOK_PROGRESS)."""

import json
import math
import re

import torch

import grokbook.progress as progress_module
from grokbook.store import RunStore
from grokbook.sweeping import describe, estimate_s, grid, sweep


def notices(text: str) -> list[str]:
    return [line.removeprefix("grokbook: ") for line in text.splitlines() if line.startswith("grokbook: ")]


def seconds(line: str) -> float:
    """The duration that ``line`` states, in seconds."""
    value, unit = re.search(r"about (\S+) (s|min|h)\b", line).groups()
    return float(value) * {"s": 1, "min": 60, "h": 3600}[unit]


def test_notices_say_which_runs_are_in_the_store_and_which_to_train(tiny, tmp_path, monkeypatch, capfd):
    store = RunStore(tmp_path)
    configs = grid(tiny, seed=[0, 1, 2])
    monkeypatch.delenv("GROKBOOK_PROGRESS", raising=False)
    store.get_or_train(configs[1], progress=False)
    sweep([configs[1], tiny.replace(seed=9)], store=store, progress=False)
    assert notices(capfd.readouterr().err) == []  # unset: silent

    monkeypatch.setenv("GROKBOOK_PROGRESS", "1")
    sweep(configs, store=store, progress=False)
    lines = notices(capfd.readouterr().err)
    assert lines[:3] == [f"run 1/3 to train: {describe(configs[0])}", f"run 2/3 in the store: {describe(configs[1])}",
                         f"run 3/3 to train: {describe(configs[2])}"]
    assert "seed=2" in lines[2] and lines[3].startswith("training takes about ")
    assert 0 < seconds(lines[3]) < math.inf
    assert len(lines) == 5 and lines[4].startswith("trained 2 runs in ")


def test_many_runs_are_summed_up_and_training_reports_each_ensemble(tiny, tmp_path, monkeypatch, capfd):
    store = RunStore(tmp_path)
    configs = grid(tiny.replace(steps=10), seed=list(range(14)))
    sweep(configs[:2], store=store, progress=False)
    monkeypatch.setenv("GROKBOOK_PROGRESS", "1")
    monkeypatch.setattr(progress_module, "PROGRESS_EVERY_S", 0.0)
    sweep(configs, store=store, progress=False, ensemble_size=5)
    lines = notices(capfd.readouterr().err)
    assert lines[0] == "14 runs: 2 in the store, 12 to train in 3 ensembles"
    assert lines[2].startswith("trained 1/3 ensembles (5/12 runs), about ") and seconds(lines[2]) >= 0
    assert lines[3].startswith("trained 2/3 ensembles (10/12 runs), about ")
    assert lines[4].startswith("trained 12 runs in ") and len(lines) == 5


def test_the_estimate_is_a_positive_number_of_seconds(tiny, monkeypatch):
    groups = [grid(tiny, seed=[0, 1]), [tiny.replace(r=0.7)]]
    for n_proc in (1, 2):
        assert 0 < estimate_s(groups, torch.device("cpu"), n_proc) < math.inf
    monkeypatch.setattr(progress_module, "TIMING_S", 0.0)  # one kind timed, the other scaled from it
    assert 0 < estimate_s(groups, torch.device("cpu")) < math.inf


def test_a_single_run_is_announced_into_the_file_named(tiny, tmp_path, monkeypatch, capfd):
    log = tmp_path / "notices.log"
    monkeypatch.setenv("GROKBOOK_PROGRESS", str(log))
    store = RunStore(tmp_path / "store")
    for _ in range(2):
        store.get_or_train(tiny, progress=False)
    lines = notices(log.read_text())
    assert lines[0] == f"run to train: {describe(tiny)}" and lines[1].startswith("training takes about ")
    assert lines[2].startswith("trained 1 run in ") and lines[3:] == [f"run in the store: {describe(tiny)}"]
    assert notices(capfd.readouterr().err) == []


def test_grokbook_run_shows_the_notices_and_keeps_them_out_of_the_notebook(tmp_path, capfd):
    from grokbook.cli import main

    out = tmp_path / "grokking.ipynb"
    assert main(["run", "grokking", "--profile", "smoke", "-o", str(out)]) == 0
    lines = notices(capfd.readouterr().err)
    n = 6  # chapter 1's three seeds and their three controls
    assert all(lines[i].startswith(f"run {i + 1}/{n} to train: p=7 ") and "steps=60" in lines[i] for i in range(n))
    # periodic "trained k/n runs, about ... left" notices come in between on a slow or busy
    # machine: how many depends on its speed, so they are skipped, not counted
    after = [line for line in lines[n + 1:] if not re.match(rf"trained \d+/{n} runs, about ", line)]
    assert 0 < seconds(lines[n]) < math.inf and after[0].startswith(f"trained {n} runs in ")
    assert "grokbook: run" not in json.dumps(json.loads(out.read_text()))
