"""``grokbook run --html``'s page: a notebook as the book shows it (grokbook.notebooks.
book_page, notebook_html). A tiny executed notebook is built in memory, with the cell
tags of jupyter-book and glue outputs as myst_nb.glue stores them: a display_data output
whose metadata holds ``scrapbook: {name, mime_prefix}`` and whose mime types carry that
prefix (``application/papermill.record/``) when the value is not displayed."""

import base64
import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from grokbook.notebooks import book_page, notebook_html

PREFIX = "application/papermill.record/"
# a 1x1 PNG: the glued figures' image
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e0a5e3"
    "4d0000000049454e44ae426082")).decode()
SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>'


def glue_output(name, data, display=False):
    """An output as ``myst_nb.glue(name, value, display)`` writes it."""
    prefix = "" if display else PREFIX
    return new_output("display_data", data={prefix + k: v for k, v in data.items()},
                      metadata={"scrapbook": {"name": name, "mime_prefix": prefix}})


def code(source, tags=(), outputs=()):
    return new_code_cell(source, metadata={"tags": list(tags)} if tags else {}, outputs=list(outputs))


def tiny_notebook():
    """Cells with each tag the book acts on, prose with each role, glued values (a float,
    a string, an int) and glued figures, displayed (``grokbook run``) and not (the book);
    as JSON read from a file (multi-line strings split into lists of lines)."""
    return json.loads(nbformat.writes(new_notebook(cells=[
        new_markdown_cell("(chapter-tiny)=\n# A tiny chapter\n\n% a MyST comment, not shown\n"),
        code("n_runs = 12  # parameters", tags=["parameters"]),
        code("print('visible input')", outputs=[new_output("stream", name="stdout", text="visible output\n"),
                                                new_output("stream", name="stderr", text="a warning on stderr\n")]),
        code("SECRET_HIDE_INPUT = 1\nglue('auc', 0.41666)", tags=["hide-input"],
             outputs=[glue_output("auc", {"text/plain": "0.41666"}),
                      glue_output("verdict", {"text/plain": "'reproduced'"}),
                      glue_output("n", {"text/plain": "12"}),
                      new_output("execute_result", data={"text/plain": "'hide-input output kept'"},
                                 execution_count=3)]),
        code("SECRET_REMOVE_INPUT = 2", tags=["remove-input"],
             outputs=[new_output("stream", name="stdout", text="remove-input output kept\n")]),
        code("SECRET_REMOVE_CELL = 3", tags=["remove-cell"],
             outputs=[new_output("stream", name="stdout", text="SECRET_REMOVED_CELL_OUTPUT\n")]),
        code("visible_remove_output = 4", tags=["remove-output"],
             outputs=[new_output("stream", name="stdout", text="SECRET_REMOVED_OUTPUT\n")]),
        code("SECRET_HIDE_CELL = 5", tags=["hide-cell"],
             outputs=[new_output("stream", name="stdout", text="SECRET_HIDDEN_CELL_OUTPUT\n")]),
        code("SECRET_FIGURE_CODE = 6", tags=["hide-input"],
             outputs=[glue_output("fig_shown", {"image/png": PNG, "text/plain": "<Figure>"}, display=True),
                      glue_output("fig_book", {"image/svg+xml": SVG, "text/plain": "<Figure>"})]),
        new_markdown_cell("SECRET_REMOVED_MARKDOWN", metadata={"tags": ["remove-cell"]}),
        new_markdown_cell(
            "AUC {glue:text}`auc:.2f` ({glue:text}`auc:.1%`), {glue:text}`verdict`, {glue}`n` runs, "
            "{glue:}`n` again. The loss {math}`L(t)^2` as in {cite}`power2022grokking,liu2022towards`; "
            "see {ref}`the chapter <chapter-tiny>`, {ref}`chapter-tiny`, {numref}`fig-book`, "
            "{doc}`the intro <intro>` and {func}`grokbook.spectral.detrend`.\n"),
        new_markdown_cell("```{glue:figure} fig_shown\n:name: fig-shown\n\nThe shown figure at "
                          "{glue:text}`auc:.3f`.\n```\n\n```{glue:figure} fig_book\n:name: fig-book\n\n"
                          "The book's figure.\n```\n"),
        new_markdown_cell("```{math}\n\\sum_t L(t)^2\n```\n\n:::{note}\nA note.\n:::\n"),
    ])))


@pytest.fixture(scope="module")
def page():
    return notebook_html(tiny_notebook())


def test_hidden_inputs_and_removed_cells_are_not_in_the_page(page):
    for secret in ["SECRET_HIDE_INPUT", "SECRET_REMOVE_INPUT", "SECRET_REMOVE_CELL", "SECRET_REMOVED_CELL_OUTPUT",
                   "SECRET_REMOVED_OUTPUT", "SECRET_HIDE_CELL", "SECRET_HIDDEN_CELL_OUTPUT", "SECRET_FIGURE_CODE",
                   "SECRET_REMOVED_MARKDOWN", "a warning on stderr", "a MyST comment", "(chapter-tiny)="]:
        assert secret not in page, secret
    # what the book shows stays: plain cells, the outputs of hidden inputs, the input of remove-output
    for shown in ["visible input", "visible output", "hide-input output kept", "remove-input output kept",
                  "visible_remove_output", "n_runs"]:
        assert shown in page, shown


def test_glued_values_are_written_with_their_format(page):
    assert "AUC 0.42 (41.7%), reproduced, 12 runs, 12 again." in page
    assert "The shown figure at 0.417." in page


def test_glued_figures_are_placed_once_with_their_caption_and_number(page):
    assert page.count(f'src="data:image/png;base64,{PNG}"') == 1  # at its directive, not again in its cell
    svg = base64.b64encode(SVG.encode()).decode()
    assert page.count(f'src="data:image/svg+xml;base64,{svg}"') == 1  # a figure glued without display
    assert "<strong>Fig. 1.</strong> The shown figure" in page and "<strong>Fig. 2.</strong> The book's figure." in page


def test_no_myst_markup_is_left_and_roles_read_as_text(page):
    for raw in ["{glue", "{cite}", "{math}", "{ref}", "{numref}", "{doc}", "{func}", "{note}", ":name:", "```"]:
        assert raw not in page, raw
    assert "$L(t)^2$" in page  # for MathJax
    assert "$$\n\\sum_t L(t)^2\n$$" in page  # the {math} directive
    assert "[power2022grokking, liu2022towards]" in page
    assert "see the chapter, A tiny chapter, Fig. 2, the intro and" in page
    assert "grokbook.spectral.detrend()</code>" in page
    assert "<blockquote>\n<p><strong>Note</strong></p>\n<p>A note.</p>" in page
    assert "<title>A tiny chapter</title>" in page


def test_book_page_leaves_the_notebook_alone_and_keeps_stderr_on_request():
    nb = tiny_notebook()
    before = json.dumps(nb)
    kept = book_page(nb, keep_stderr=True)
    assert json.dumps(nb) == before
    def stderr(page):
        return [o for c in page["cells"] for o in c.get("outputs", []) if o.get("name") == "stderr"]

    assert len(stderr(nb)) == 1 and stderr(kept) == stderr(nb)
    assert stderr(book_page(nb)) == []


def test_a_key_never_glued_is_left_as_written():
    nb = new_notebook(cells=[new_markdown_cell("{glue:text}`gone:.1f` and\n\n```{glue:figure} nofig\nCap.\n```\n")])
    text = book_page(nb)["cells"][0]["source"]
    assert "{glue:text}`gone:.1f`" in text and "```{glue:figure} nofig" in text


def test_not_a_notebook_is_refused():
    with pytest.raises(ValueError, match="nbformat JSON"):
        notebook_html(["not", "a", "notebook"])
