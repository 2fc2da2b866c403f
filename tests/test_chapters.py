"""Every chapter executes with the smoke profile through papermill, then nbval checks
that the executed notebook runs cleanly again (its runs come from the store)."""

import json
import re
import subprocess
import sys

import pytest

from grokbook.notebooks import find_chapters, run_chapter

CHAPTERS = list(find_chapters())

# `{glue:text}`key:.2f``, `{glue}`key``, and the ```{glue:figure} key``` directive
_GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`([^`:]+)")
_GLUE_DIRECTIVE = re.compile(r"^\s*(?:`{3,}|:{3,})\{glue(?::\w+)?\}\s+(\S+)", re.MULTILINE)


def glue_gaps(notebook: dict) -> set[str]:
    """Keys the notebook's markdown cites with a glue role or directive but no code
    cell glued: Sphinx only warns about these at book build time (a red `-W` build)."""
    cited, glued = set(), set()
    for cell in notebook["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            cited |= set(_GLUE_ROLE.findall(text)) | set(_GLUE_DIRECTIVE.findall(text))
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                glued.add(name)
    return cited - glued


def test_glue_gaps_finds_a_cited_key_nobody_glued():
    def md(text):
        return {"cell_type": "markdown", "source": [text]}

    code = {"cell_type": "code", "source": ["glue('a', 1)"],
            "outputs": [{"metadata": {"scrapbook": {"name": "a"}}}]}
    nb = {"cells": [md("{glue:text}`a:.2f` and {glue}`b`\n"), code, md("```{glue:figure} c\n```\n")]}
    assert glue_gaps(nb) == {"b", "c"}


def test_render_glue_writes_the_values_into_the_prose():
    from grokbook.notebooks import render_glue

    def md(text):
        return {"cell_type": "markdown", "source": [text]}

    def out(name, data):
        return {"metadata": {"scrapbook": {"name": name}}, "data": data}

    code = {"cell_type": "code", "source": [], "outputs": [
        out("a", {"application/papermill.record/text/plain": "0.41666"}),
        out("v", {"application/papermill.record/text/plain": "'reproduced'"}),
        out("n", {"text/plain": "12"}), out("f", {"image/png": "...", "text/plain": "<Figure>"})]}
    nb = {"cells": [code, md("AUC {glue:text}`a:.2f`, {glue:text}`v`, {glue}`n` runs, {glue:text}`gone:.1f`\n"),
                    md("```{glue:figure} f\n:name: fig-f\n\nIts caption.\n```\n"),
                    md("```{glue:figure} g\nNever glued.\n```\n")]}
    cells = [c["source"] for c in render_glue(nb)["cells"][1:]]
    assert cells == ["AUC 0.42, reproduced, 12 runs, {glue:text}`gone:.1f`\n", "*Figure: Its caption.*\n",
                     "```{glue:figure} g\nNever glued.\n```\n"]
    assert glue_gaps({"cells": [code] + render_glue(nb)["cells"][1:]}) == {"gone", "g"}


# what a value that was never reached or could not be measured must not read as
_UNREAD = re.compile(r"(?i:\bnan\b|\bn/a\b|never steps|\binf\b)|\bNone\b")


def unread_values(notebook: dict, source: str) -> list[str]:
    """Places in the notebook's rendered prose (markdown cells and Markdown outputs) that
    read ``nan``, ``n/a``, ``inf``, ``None`` or "never steps" where the chapter's source
    does not: a missing value printed as a number."""
    allowed = len(_UNREAD.findall(source))
    found = []
    for cell in notebook["cells"]:
        texts = ["".join(cell["source"])] if cell["cell_type"] == "markdown" else [
            "".join(o.get("data", {}).get("text/markdown", "")) for o in cell.get("outputs", [])]
        for text in texts:
            found += [text[max(0, m.start() - 80):m.end() + 40].replace("\n", " ") for m in _UNREAD.finditer(text)]
    return found if len(found) > allowed else []


def test_unread_values_finds_a_nan_in_the_prose():
    md = lambda text: {"cell_type": "markdown", "source": [text]}
    out = {"cell_type": "code", "source": [], "outputs": [{"data": {"text/markdown": "t2 = None"}}]}
    assert unread_values({"cells": [md("reaches 0.99 at t2 = never steps, nan times later")]}, "")
    assert unread_values({"cells": [out]}, "")
    assert not unread_values({"cells": [md("never within 60 steps; none of the runs; Nanda et al.")]}, "")
    assert not unread_values({"cells": [md("a NaN in the window")]}, "a NaN in the window")


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_smoke(name, tmp_path):
    out = run_chapter(name, profile="smoke", output=tmp_path / f"{name}.ipynb")
    assert out.exists()
    nb = json.loads(out.read_text())
    missing = glue_gaps(nb)
    assert not missing, f"{name} cites glue keys it never glues: {sorted(missing)}"
    # grokbook run shows each glued figure where it is made (the book places them itself)
    figures = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("metadata", {}).get("scrapbook")
               and any(k.endswith("image/png") for k in o.get("data", {}))]
    hidden = [o for o in figures if "image/png" not in o["data"]]  # papermill-record only
    assert figures and not hidden, f"{name}: {len(hidden)} of {len(figures)} glued figures not shown"
    # and its prose reads as prose: every glue role and figure rendered
    raw = [c for c in nb["cells"] if c["cell_type"] == "markdown" and "{glue" in "".join(c["source"])]
    assert not raw, "".join(raw[0]["source"])[:300]
    # and a value the runs never reached reads as such, not as "nan" or "never steps"
    unread = unread_values(nb, find_chapters()[name].path.read_text())
    assert not unread, f"{name}: {unread[:5]}"
    proc = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.parametrize("name", ["grokking", "hessian"])
def test_chapter_runs_the_authors_setup(name, tmp_path):
    """A chapter with `-p arch grok` (openai/grok's model and sequence) executes, shrunk."""
    out = run_chapter(name, {"arch": "grok"}, profile="smoke", output=tmp_path / f"{name}.ipynb")
    assert out.exists()


def test_the_paper_profile_is_the_authors_recipe():
    """Every transformer chapter under `--profile paper` trains openai/grok's model on
    addition mod 97 with AdamW lr 1e-3, weight decay 1, full batch (PAPER_NOTES)."""
    from grokbook.notebooks import load_profile

    recipe = dict(arch="grok", task="add", p=97, n_layers=2, d_model=128, n_heads=4, layer_norm=True)
    for chapter in find_chapters().values():
        if "arch" not in chapter.parameters:
            continue
        values = load_profile("paper", chapter)
        assert {k: values[k] for k in recipe} == recipe, chapter.name
        if "lrs" in values:  # the heatmap grid of their script
            assert values["lrs"] == [0.001, 0.002, 0.003, 0.004, 0.005]
            assert values["weight_decays"][0] == 0.0 and values["weight_decays"][-1] == 5.0
        elif "lr" in chapter.parameters:  # (the search chapter samples its lr in a range)
            assert values["lr"] == 0.001, chapter.name
        if "weight_decay" in values:
            assert values["weight_decay"] == 1.0 and values["batch_size"] == 0, chapter.name


def _defaults(name):
    return {k: p.default for k, p in find_chapters()[name].parameters.items()}


def test_versus_paper_explains_every_difference_of_the_defaults():
    from grokbook.experiments.paper import versus_paper
    from grokbook.notebooks import ChapterError

    values = _defaults("grokking")
    reasons = {"p": "smaller", "d_model": "narrower", "lr": "faster", "arch": "ours", "layer_norm": "none",
               "steps": "shorter"}
    table = versus_paper("grokking", values, reasons)
    assert "| `p` | 47 | 97 | smaller |" in table
    assert "| `lr` | 0.003 | 0.001 | faster |" in table
    equal = table.splitlines()[-1]
    assert equal.startswith("Equal to the paper's:") and "`weight_decay`" in equal and "`batch_size`" in equal
    assert "`p`" not in equal
    with pytest.raises(ChapterError, match="default p = 47 differs from the paper's 97 and no reason"):
        versus_paper("grokking", values, {k: v for k, v in reasons.items() if k != "p"})
    with pytest.raises(ChapterError, match="reasons given for optimizer"):
        versus_paper("grokking", values, {**reasons, "optimizer": "not a paper parameter here"})
    # a chapter whose loop variable takes a parameter's name (r, a row of a table) is caught, not tabulated
    with pytest.raises(ChapterError, match="r is dict .* rebound the parameter's name"):
        versus_paper("grokking", {**values, "r": {"seed": 100, "barrier": 0.3}}, reasons)
    with pytest.raises(ChapterError, match="layer_norm is int"):
        versus_paper("grokking", {**values, "layer_norm": 1}, reasons)


def test_versus_paper_marks_values_set_for_this_execution():
    from grokbook.experiments.paper import versus_paper
    from grokbook.notebooks import load_profile

    values = {**_defaults("grokking"), **load_profile("paper", find_chapters()["grokking"])}
    assert versus_paper("grokking", values, {}).startswith("Equal to the paper's:")  # nothing differs
    values["seed"], values["steps"] = 3, 123
    table = versus_paper("grokking", values, {})
    assert "| `steps` | 123 | 10000 | set for this execution (not the chapter's default) |" in table


def test_every_chapter_has_its_table_versus_the_paper():
    for chapter in find_chapters().values():
        assert f'versus_paper("{chapter.name}", globals()' in chapter.path.read_text(), chapter.name


def test_every_default_that_departs_from_the_paper_has_its_reason():
    """book/paper_deviations.yml explains every default that differs from the paper
    profile, and names no parameter the profile does not set (versus_paper raises)."""
    from grokbook.experiments.paper import versus_paper

    for chapter in find_chapters().values():
        versus_paper(chapter.name, _defaults(chapter.name))


def test_html_is_a_standalone_page_with_its_figures(tmp_path):
    out = run_chapter("valleys", profile="smoke", output=tmp_path / "valleys.ipynb", html=True)
    page = out.with_suffix(".html").read_text()
    assert page.count('src="data:image/png;base64,') >= 2  # the chapter's two glued figures
    assert "{glue" not in page
