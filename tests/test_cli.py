"""The grokbook command: listing, validation before execution, clear errors."""

import subprocess
import sys
from pathlib import Path

import pytest

from grokbook.chapters import ChapterError, find_chapters, get_chapter, load_profile
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
    (["run", "grokking", "--profile", "huge"], "no profile 'huge'; the profiles are: paper, smoke"),
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
