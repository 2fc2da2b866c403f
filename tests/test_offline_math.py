"""The book reads offline: its MathJax comes from the built book, not a CDN.

A one-page jupyter-book with the book's math settings (``_config.yml``) is built in a
temporary directory; its page must load MathJax from ``_static/``, where the local
extension ``book/_ext/local_mathjax.py`` has copied it from the installed package.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
PAGE = """# Offline math

Inline $x^2 + \\frac{1}{2}$, and a display:

$$\\mathrm{e}^{i\\pi} = -1$$
"""


def _extension() -> ModuleType:
    """``book/_ext/local_mathjax.py``, imported without touching ``sys.path``."""
    spec = importlib.util.spec_from_file_location("local_mathjax", ROOT / "book" / "_ext" / "local_mathjax.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML output of a one-page book with the book's math configuration."""
    src = tmp_path_factory.mktemp("offline_book")
    sphinx = CONFIG["sphinx"]
    config = {
        "title": "offline math",
        "execute": {"execute_notebooks": "off"},
        "parse": {"myst_enable_extensions": CONFIG["parse"]["myst_enable_extensions"]},
        "sphinx": {
            "local_extensions": {name: str(ROOT / path) for name, path in sphinx["local_extensions"].items()},
            "config": {"mathjax_path": sphinx["config"]["mathjax_path"]},
        },
    }
    (src / "_config.yml").write_text(yaml.safe_dump(config))
    (src / "_toc.yml").write_text("format: jb-book\nroot: index\n")
    (src / "index.md").write_text(PAGE)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run([str(jupyter_book), "build", str(src), "--warningiserror", "-q"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return src / "_build" / "html"


def test_the_book_is_configured_for_local_mathjax():
    sphinx = CONFIG["sphinx"]
    assert "local_mathjax" in sphinx["local_extensions"]
    ext = _extension()
    assert sphinx["config"]["mathjax_path"] == f"{ext.TARGET}/{ext.ENTRY}"  # under _static/, not a URL


def test_page_loads_mathjax_from_the_built_book(built: Path):
    html = (built / "index.html").read_text()
    scripts = re.findall(r'<script[^>]*\ssrc="([^"]+)"', html)
    assert "_static/mathjax/tex-chtml.js" in scripts
    assert [s for s in scripts if "://" in s or s.startswith("//")] == []
    assert r"\(x^2 + \frac{1}{2}\)" in html  # the TeX that MathJax typesets in the browser


def test_mathjax_3_and_what_it_loads_are_in_the_output(built: Path):
    mathjax = built / "_static" / "mathjax"
    assert 'VERSION="3.' in (mathjax / "tex-chtml.js").read_text()
    assert list((mathjax / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    assert (mathjax / "input" / "tex" / "extensions" / "cancel.js").is_file()  # autoloaded on demand
    assert not (mathjax / "tex-svg-full.js").exists()  # other combined components stay out


def test_copy_keeps_the_entry_and_the_subdirectories(tmp_path: Path):
    ext = _extension()
    source = tmp_path / "mathjax"
    (source / "input" / "tex").mkdir(parents=True)
    for name in (ext.ENTRY, "tex-svg.js", "input/tex/extensions.js"):
        (source / name).write_text("// " + name)
    entry = ext.copy_mathjax(tmp_path / "out" / "_static", source)
    assert entry == tmp_path / "out" / "_static" / "mathjax" / ext.ENTRY
    copied = sorted(p.relative_to(entry.parent).as_posix() for p in entry.parent.rglob("*") if p.is_file())
    assert copied == ["input/tex/extensions.js", ext.ENTRY]
    ext.copy_mathjax(tmp_path / "out" / "_static", source)  # a rebuild overwrites in place
