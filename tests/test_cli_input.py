"""Input the CLI takes as a user writes it (issue 35): integers in exponent form, profiles
by name or path, malformed profiles, curves it cannot score (a verdict and a reason for
each, exit status 1). The file formats `predict` reads are in test_curves_io.py."""

import json

import numpy as np
import pytest

from grokbook.notebooks import ChapterError, get_chapter, load_profile
from grokbook.cli import main
from grokbook.predict import BOOK_SWEEP_PATH


def test_an_integer_written_in_exponent_form_is_an_integer():
    steps = get_chapter("grokking").parameters["steps"]
    assert steps.parse("1e3") == 1000 and type(steps.parse("1e3")) is int
    with pytest.raises(ChapterError, match="is a float, not int"):
        steps.parse("1.5")


def test_a_profile_is_a_name_or_a_path(tmp_path):
    chapter = get_chapter("grokking")
    by_name = load_profile("smoke", chapter)
    from grokbook.notebooks import book_root
    assert load_profile(str(book_root() / "book" / "profiles" / "smoke.yml"), chapter) == by_name
    mine = tmp_path / "mine.yml"
    mine.write_text("grokking:\n  steps: 1e2\n")
    assert load_profile(str(mine), chapter) == {"steps": 100}
    with pytest.raises(ChapterError, match="no such file"):
        load_profile(str(tmp_path / "none.yml"), chapter)
    with pytest.raises(ChapterError, match="not in"):
        load_profile("nothing", chapter)


@pytest.mark.parametrize("text, message", [("grokking: [unclosed\n", "not valid YAML"),
                                           ("- a\n- b\n", "must map chapter names")])
def test_a_malformed_profile_is_one_line_and_exit_2(text, message, tmp_path, capsys):
    bad = tmp_path / "bad.yml"
    bad.write_text(text)
    with pytest.raises(ChapterError, match=message):
        load_profile(str(bad), get_chapter("grokking"))
    assert main(["run", "grokking", "--profile", str(bad), "-o", str(tmp_path / "o.ipynb")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.ipynb").exists()


def test_a_curve_that_cannot_be_scored_is_null_in_json_and_exits_1(tmp_path, capsys):
    (tmp_path / "zeros.json").write_text(json.dumps({"zeros": [0.0] * 400}))
    code = main(["predict", "--json", str(tmp_path / "zeros.json")])  # the corpus predictor, window 400
    out = capsys.readouterr().out
    results = json.loads(out)   # valid JSON: no NaN
    assert "NaN" not in out and results[0]["probability"] is None and code == 1
    assert main(["predict", str(tmp_path / "zeros.json")]) == 1
    assert "not scored" in capsys.readouterr().out


def _falling(start, fall, seed, steps=300):
    rng = np.random.default_rng(seed)
    return start * np.exp(-np.linspace(0, fall, steps)) * (1 + 0.05 * rng.random(steps))


def test_predict_gives_a_verdict_and_reason_per_curve_and_exits_1_if_any_is_not_scored(tmp_path, capsys):
    """With the book sweep's predictor (200 steps, the paper's energy among its features)."""
    diverged = _falling(3.4, 3, 1)
    diverged[40] = np.nan
    curves = {"good": _falling(3.4, 3, 1), "flat": np.full(300, 3.85),
              "small_lr": np.log(97) + 1e-3 * np.random.default_rng(2).standard_normal(300),
              "diverged": diverged, "zeros": np.zeros(300), "far": _falling(np.log(97), 1, 0)}
    path = tmp_path / "curves.json"
    path.write_text(json.dumps({k: v.tolist() for k, v in curves.items()}))
    code = main(["predict", "--json", "--model", str(BOOK_SWEEP_PATH), str(path)])
    out = capsys.readouterr().out
    results = {r["curve"].removeprefix(f"{path}:"): r for r in json.loads(out)}
    assert code == 1 and "NaN" not in out
    assert {k: r["verdict"] for k, r in results.items()} == {
        "good": "yes", "flat": "never fits", "small_lr": "never fits", "diverged": "diverged",
        "zeros": "undetermined", "far": "undetermined"}
    assert results["good"]["probability"] > results["good"]["threshold"] and results["good"]["predicted"] is True
    assert all(r["probability"] is None and r["predicted"] is None for k, r in results.items() if k != "good")
    assert "at step 40" in results["diverged"]["reason"] and "log_paper_energy" in results["far"]["reason"]
    assert "not positive" in results["zeros"]["reason"] and "has not fallen" in results["flat"]["reason"]
    assert main(["predict", "--model", str(BOOK_SWEEP_PATH), str(path)]) == 1
    text = capsys.readouterr().out
    assert f"{path}:good: P = " in text and "predicted yes" in text
    assert f"{path}:flat: not scored: never fits" in text and f"{path}:diverged: not scored: diverged" in text
    assert "5 of 6 curves not scored (exit status 1)" in text


def test_predict_exits_0_when_every_curve_is_scored(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    path.write_text("step,loss\n" + "\n".join(f"{s},{v}" for s, v in enumerate(_falling(3.4, 3, 2, steps=500))))
    assert main(["predict", "--json", str(path)]) == 0
    (r,) = json.loads(capsys.readouterr().out)
    assert r["curve"] == f"{path}:loss" and r["verdict"] in ("yes", "no") and r["probability"] is not None


def test_the_default_corpus_predictor_scores_a_falling_curve_and_says_why_it_cannot_score_others(tmp_path, capsys):
    """The shipped predictor reads the scale-free set of 400 steps: a curve that falls two
    decades is scored; a flat one never fits; one that falls less than 0.3 decades in the
    window has no scale-free time unit and is undetermined; one too short is refused."""
    curves = {"falls": 3.4 * np.exp(-np.linspace(0, 4.6, 500)) * (1 + 0.05 * np.random.default_rng(0).random(500)),
              "flat": np.full(500, 3.4), "slow": 3.4 * np.exp(-np.linspace(0, 0.5, 500))}
    path = tmp_path / "curves.json"
    path.write_text(json.dumps({k: v.tolist() for k, v in curves.items()}))
    code = main(["predict", "--json", str(path)])
    results = {r["curve"].removeprefix(f"{path}:"): r for r in json.loads(capsys.readouterr().out)}
    assert code == 1 and {k: r["verdict"] for k, r in results.items()} == {
        "falls": "yes" if results["falls"]["predicted"] else "no", "flat": "never fits", "slow": "undetermined"}
    assert results["falls"]["window"] == 400 and set(results["falls"]["features"]) == {
        "fall_4", "fall_16", "rise_max", "up_share", "slope_late"}
    assert "0.3 decades" in results["slow"]["reason"], results["slow"]["reason"]
    (tmp_path / "short.json").write_text(json.dumps({"short": curves["falls"][:300].tolist()}))
    assert main(["predict", str(tmp_path / "short.json")]) == 2
    err = capsys.readouterr().err
    assert "fewer than the window of 400" in err and "book_sweep_predictor.json" in err and err.count("\n") == 1


# --- pre-flight: every value checked before a kernel starts --------------------------------


@pytest.fixture
def no_kernel(monkeypatch):
    """Fail a test that would start a kernel; 16 GiB of memory available, whatever the
    machine (the estimate is compared with it)."""
    import papermill

    from grokbook import notebooks

    def started(*args, **kwargs):
        raise AssertionError("papermill started a kernel")

    monkeypatch.setattr(papermill, "execute_notebook", started)
    monkeypatch.setattr(notebooks, "available_memory_bytes", lambda: 16 * 2**30)


@pytest.mark.parametrize("argv, message", [
    (["grokking", "-p", "seeds", "[]"], "parameter 'seeds' = [] is empty: the chapter needs at least one value"),
    (["spectral", "-p", "lrs", "[]"], "parameter 'lrs' = [] is empty"),
    (["grokking", "-p", "reach", "2"], "parameter 'reach' = 2.0 is invalid: an accuracy level (a fraction) from 0 "
                                       "to 1"),
    (["grokking", "-p", "leave", "-5"], "parameter 'leave' = -5.0 is invalid: an accuracy level"),
    (["grokking", "-p", "leave", "0.995"], "parameters 'leave' = 0.995 and 'reach' = 0.99 are invalid"),
    (["grokking", "-p", "leave", "0.5", "-p", "reach", "0.5"], "(0 <= leave < reach <= 1)"),
    (["spectral", "-p", "threshold", "1.5"], "parameter 'threshold' = 1.5 is invalid: an accuracy level"),
    (["lu", "-p", "val_target", "-0.1"], "parameter 'val_target' = -0.1 is invalid: an accuracy level"),
    (["lu", "-p", "digits_target", "90"], "parameter 'digits_target' = 90.0 is invalid: an accuracy level"),
    (["slingshot", "-p", "clip_quantile", "1.1"], "parameter 'clip_quantile' = 1.1 is invalid"),
    (["search", "-p", "lr_range", "[0.04, 0.004]"], "parameter 'lr_range' = [0.04, 0.004] is invalid: two values"),
    (["grokking", "--device", "cuda"], "device not available: GROKBOOK_DEVICE='cuda', but this machine has no cuda"),
    (["grokking", "-p", "steps", "1000000000"], "needs about 231 GB (curves 231 GB), more than the 16.0 GB available "
                                                "on this machine; lower steps"),
    (["grokking", "-p", "steps", "1e9"], "more than the 16.0 GB available on this machine; lower steps"),
    (["grokking", "-p", "p", "4096"], "(activations 7"),
    (["spectral", "-p", "p", "4096"], "more than the 16.0 GB available on this machine; lower p, r, batch_size"),
])
def test_values_that_cannot_run_are_refused_before_a_kernel_starts(argv, message, tmp_path, capsys, monkeypatch,
                                                                   no_kernel):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("GROKBOOK_DEVICE", "")  # restored after the test (--device sets it)
    monkeypatch.chdir(tmp_path)
    assert main(["run", *argv, "-o", str(tmp_path / "out.ipynb")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grokbook: error: ") and message in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_the_memory_estimate_refuses_only_what_cannot_fit(monkeypatch):
    from grokbook import RunConfig
    from grokbook.notebooks import check_memory, check_run_values, find_chapters
    from grokbook.store import memory_bytes

    gib = 2**30
    assert sum(memory_bytes(RunConfig(steps=10**9)).values()) > 200 * gib
    assert memory_bytes(RunConfig(steps=10**9))["curves"] > 200 * gib
    assert memory_bytes(RunConfig(p=4096))["activations"] > 500 * gib
    for chapter in find_chapters().values():  # every chapter fits 4 GB under its defaults and both profiles
        for values in ({}, load_profile("smoke", chapter), load_profile("paper", chapter)):
            check_memory(check_run_values(chapter, values), available=4 * gib)
    with pytest.raises(ChapterError, match="of GPU memory .*activations"):  # on a GPU: the GPU's part
        check_memory([RunConfig(p=400)], "cuda", available=64 * gib, gpu_free=gib)
    check_memory([RunConfig(p=400)], "cuda", available=64 * gib, gpu_free=16 * gib)
    from grokbook import notebooks

    monkeypatch.setattr(notebooks, "available_memory_bytes", lambda: None)
    check_memory([RunConfig(steps=10**9)])  # where the memory cannot be read, nothing is refused
