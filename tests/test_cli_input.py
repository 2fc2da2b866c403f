"""Input the CLI takes as a user writes it (issue 35): integers in exponent form, profiles
by name or path, malformed profiles, curves it cannot score (a verdict and a reason for
each, exit status 1). The file formats `predict` reads are in test_curves_io.py."""

import json

import numpy as np
import pytest

from grokbook.chapters import ChapterError, get_chapter, load_profile
from grokbook.cli import main


def test_an_integer_written_in_exponent_form_is_an_integer():
    steps = get_chapter("grokking").parameters["steps"]
    assert steps.parse("1e3") == 1000 and type(steps.parse("1e3")) is int
    with pytest.raises(ChapterError, match="is a float, not int"):
        steps.parse("1.5")


def test_a_profile_is_a_name_or_a_path(tmp_path):
    chapter = get_chapter("grokking")
    by_name = load_profile("smoke", chapter)
    from grokbook.chapters import book_root
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
    (tmp_path / "zeros.json").write_text(json.dumps({"zeros": [0.0] * 300}))
    code = main(["predict", "--json", str(tmp_path / "zeros.json")])
    out = capsys.readouterr().out
    results = json.loads(out)   # valid JSON: no NaN
    assert "NaN" not in out and results[0]["probability"] is None and code == 1
    assert main(["predict", str(tmp_path / "zeros.json")]) == 1
    assert "not scored" in capsys.readouterr().out


def _falling(start, fall, seed, steps=300):
    rng = np.random.default_rng(seed)
    return start * np.exp(-np.linspace(0, fall, steps)) * (1 + 0.05 * rng.random(steps))


def test_predict_gives_a_verdict_and_reason_per_curve_and_exits_1_if_any_is_not_scored(tmp_path, capsys):
    diverged = _falling(3.4, 3, 1)
    diverged[40] = np.nan
    curves = {"good": _falling(3.4, 3, 1), "flat": np.full(300, 3.85),
              "small_lr": np.log(97) + 1e-3 * np.random.default_rng(2).standard_normal(300),
              "diverged": diverged, "zeros": np.zeros(300), "far": _falling(np.log(97), 1, 0)}
    path = tmp_path / "curves.json"
    path.write_text(json.dumps({k: v.tolist() for k, v in curves.items()}))
    code = main(["predict", "--json", str(path)])
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
    assert main(["predict", str(path)]) == 1
    text = capsys.readouterr().out
    assert f"{path}:good: P = " in text and "predicted yes" in text
    assert f"{path}:flat: not scored: never fits" in text and f"{path}:diverged: not scored: diverged" in text
    assert "5 of 6 curves not scored (exit status 1)" in text


def test_predict_exits_0_when_every_curve_is_scored(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    path.write_text("step,loss\n" + "\n".join(f"{s},{v}" for s, v in enumerate(_falling(3.4, 3, 2))))
    assert main(["predict", "--json", str(path)]) == 0
    (r,) = json.loads(capsys.readouterr().out)
    assert r["curve"] == f"{path}:loss" and r["verdict"] in ("yes", "no") and r["probability"] is not None
