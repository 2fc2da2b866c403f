"""The figure helper every chapter ends its figures with."""

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from grokbook import plots  # noqa: E402

BOOK = Path(__file__).resolve().parent.parent / "book"


def test_publish_writes_the_png_glues_under_the_name_and_closes(tmp_path, monkeypatch):
    glued = []
    monkeypatch.setattr(plots, "glue", lambda name, value, display=False: glued.append((name, value, display)))
    monkeypatch.setenv("GROKBOOK_FIGURES", str(tmp_path))
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    plots.publish(fig, "fig_test")
    assert (tmp_path / "fig_test.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert glued == [("fig_test", fig, False)]
    assert not plt.fignum_exists(fig.number)


def test_publish_without_a_figures_directory_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "glue", lambda *a, **k: None)
    monkeypatch.delenv("GROKBOOK_FIGURES", raising=False)
    monkeypatch.chdir(tmp_path)
    fig, _ = plt.subplots()
    plots.publish(fig, "fig_test")
    assert list(tmp_path.iterdir()) == [] and not plt.fignum_exists(fig.number)


def test_every_published_figure_name_is_unique_across_the_book():
    """The PNGs of all chapters may go to one directory, and glue keys are book-wide."""
    names = [name for page in sorted(BOOK.glob("*.md"))
             for name in re.findall(r'publish\(\w+, f?"([^"]+)"\)', page.read_text())]
    assert len(names) >= 20
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})


def test_log_ticks_label_1_2_5_as_plain_numbers():
    fig, ax = plt.subplots()
    ax.plot([0.03, 300], [0.03, 300])
    ax.set(xscale="log", yscale="log", xlim=(0.03, 300), ylim=(0.03, 300))
    plots.log_ticks(ax, "x")
    fig.canvas.draw()
    labels = {t.get_text() for t in ax.get_xticklabels() if t.get_text()}
    assert {"0.05", "0.1", "0.2", "0.5", "1", "2", "5", "10", "20", "50", "100", "200"} <= labels
    assert not any("^" in t or "times" in t for t in labels)
    plt.close(fig)
