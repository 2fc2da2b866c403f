"""Serve MathJax 3 from the built book, so that its formulae render offline.

Sphinx loads MathJax from a CDN by default. This extension copies the MathJax that
the ``sphinx-mathjax-offline`` package installs (a pip dependency of the ``book``
extra) into ``_static/mathjax/`` of an HTML build; ``_config.yml`` points
``mathjax_path`` at ``mathjax/tex-chtml.js``, which Sphinx resolves under ``_static/``.
MathJax itself is not kept in this repository.
"""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

DISTRIBUTION = "sphinx-mathjax-offline"
PACKAGE_DIR = "sphinx-mathjax-offline/static/mathjax"  # inside the installed distribution
TARGET = "mathjax"  # under the build's _static/
ENTRY = "tex-chtml.js"  # the combined component that the book loads


def mathjax_source() -> Path:
    """The installed MathJax 3 directory (the one holding ``tex-chtml.js``)."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError as exc:
        raise ExtensionError(f"local_mathjax: the package {DISTRIBUTION!r} is not installed; "
                             "pip install -e '.[book]'") from exc
    source = Path(str(dist.locate_file(PACKAGE_DIR)))
    if not (source / ENTRY).is_file():
        raise ExtensionError(f"local_mathjax: no {ENTRY} in {source}")
    return source


def copy_mathjax(static_dir: Path, source: Path | None = None) -> Path:
    """Copy MathJax into ``static_dir/mathjax`` and return the path of its entry script.

    At the top level only the entry component is copied (the other combined components
    are never loaded by it); every subdirectory comes along, since MathJax loads TeX
    extensions, fonts, the menu's SVG output and accessibility pieces from them on demand.
    """
    source = mathjax_source() if source is None else source

    def skip(directory: str, names: list[str]) -> set[str]:
        if Path(directory) != source:
            return set()
        return {n for n in names if (source / n).is_file() and n != ENTRY}

    dest = static_dir / TARGET
    shutil.copytree(source, dest, ignore=skip, dirs_exist_ok=True)
    return dest / ENTRY


def _check_installed(app: Sphinx) -> None:
    """Fail at the start of the build, not its end, when MathJax is not installed."""
    if app.builder.format == "html":
        mathjax_source()


def _copy_after_build(app: Sphinx, exc: Exception | None) -> None:
    if exc is None and app.builder.format == "html":
        copy_mathjax(Path(app.outdir) / "_static")


def setup(app: Sphinx) -> dict[str, object]:
    """Register the two build hooks."""
    app.setup_extension("sphinx.ext.mathjax")
    app.connect("builder-inited", _check_installed)
    app.connect("build-finished", _copy_after_build)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
