"""Every environment variable is read in one module, :mod:`grokbook.settings`."""

import re
from pathlib import Path

import pytest

from grokbook import settings

PKG = Path(__file__).resolve().parents[1] / "grokbook"


def test_only_settings_reads_the_environment():
    """No other module of the package names a GROKBOOK_* variable in code or touches
    os.environ / os.getenv (docstrings may name a variable)."""
    offenders = []
    for path in PKG.rglob("*.py"):
        if path.name == "settings.py":
            continue
        code = path.read_text()
        if re.search(r"os\.environ|os\.getenv|getenv\(", code):
            offenders.append(f"{path.name}: reads os.environ")
        for line in code.splitlines():
            if re.search(r"""["']GROKBOOK_[A-Z_]+["']""", line) and "overriding(" not in line:
                offenders.append(f"{path.name}: {line.strip()}")
    assert not offenders, offenders


def test_every_variable_named_in_the_package_is_documented():
    named = set()
    for path in PKG.rglob("*.py"):
        named |= set(re.findall(r"GROKBOOK_[A-Z_]+[A-Z]", path.read_text()))
    assert named == set(settings.VARIABLES), named ^ set(settings.VARIABLES)
    for name in settings.VARIABLES:
        assert f"``{name}``" in settings.__doc__


def test_getters(monkeypatch, tmp_path):
    for name in settings.VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert (settings.home(), settings.device(), settings.figures(), settings.show_figures(), settings.progress(),
            settings.scheduler(), settings.runs_log()) == (None, "", None, False, None, None, None)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GROKBOOK_HOME", "store")
    assert settings.home() == tmp_path / "store"
    monkeypatch.setenv("GROKBOOK_PROGRESS", "0")
    assert settings.progress() is None
    monkeypatch.setenv("GROKBOOK_PROGRESS", "1")
    assert settings.progress() == "stderr"
    monkeypatch.setenv("GROKBOOK_PROGRESS", str(tmp_path / "notices"))
    assert settings.progress() == str(tmp_path / "notices")
    monkeypatch.setenv("GROKBOOK_SHOW_FIGURES", "1")
    assert settings.show_figures()


def test_put_and_overriding(monkeypatch, tmp_path):
    monkeypatch.delenv("GROKBOOK_DEVICE", raising=False)
    monkeypatch.setenv("GROKBOOK_SCHEDULER", "tcp://a:1")
    with settings.overriding(GROKBOOK_DEVICE="cpu", GROKBOOK_SCHEDULER=None):
        assert settings.device() == "cpu" and settings.scheduler() == "tcp://a:1"
    assert settings.device() == "" and settings.scheduler() == "tcp://a:1"
    with pytest.raises(KeyError, match="GROKBOOK_NOPE"):
        with settings.overriding(GROKBOOK_NOPE="1"):
            pass
    with pytest.raises(KeyError, match="not one of"):
        settings.put("HOME", "x")
    monkeypatch.chdir(tmp_path)
    settings.put(settings.FIGURES, Path("figs"))
    assert settings.figures() == tmp_path / "figs"
    settings.put(settings.FIGURES, None)
    assert settings.figures() is None
