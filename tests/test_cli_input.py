"""Input the CLI takes as a user writes it (issue 35): integers in exponent form, profiles
by name or path, malformed profiles, curves it cannot score."""

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
