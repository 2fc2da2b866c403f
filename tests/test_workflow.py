"""The GitHub Actions workflow that builds the book and publishes it to GitHub Pages:
parsed, its steps checked against the README and the Makefile, its build step's command
run locally in its dry form (`make -n`: nothing is built)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


@pytest.fixture(scope="module")
def workflow():
    return yaml.safe_load(WORKFLOW.read_text())


def steps_of(job):
    return {step.get("name", step.get("uses")): step for step in job["steps"]}


def uses(job, action):
    """The step of ``job`` that uses ``action`` (any version)."""
    (step,) = [s for s in job["steps"] if s.get("uses", "").split("@")[0] == action]
    return step


def test_it_runs_on_push_to_main_with_the_pages_permissions(workflow):
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as true
    assert on["push"]["branches"] == ["main"] and "workflow_dispatch" in on
    assert workflow["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}


def test_it_installs_python_311_and_the_cpu_torch_the_readme_names(workflow):
    build = workflow["jobs"]["build"]
    assert uses(build, "actions/checkout")
    assert str(uses(build, "actions/setup-python")["with"]["python-version"]) == "3.11"
    install = steps_of(build)["Install torch (CPU wheel) in .venv"]["run"]
    cpu = "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
    assert cpu in install and cpu in (ROOT / "README.md").read_text()
    assert "python -m venv .venv" in install  # where the Makefile's setup expects it
    assert re.search(r"^VENV\s*\?=\s*\.venv$", (ROOT / "Makefile").read_text(), re.M)
    assert "torch==2.13.0" in (ROOT / "Makefile").read_text()  # the Makefile's pin is the same


def test_it_caches_the_run_store_keyed_on_the_books_sources(workflow):
    build = workflow["jobs"]["build"]
    restore, save = uses(build, "actions/cache/restore"), uses(build, "actions/cache/save")
    assert restore["with"]["path"] == save["with"]["path"] == "~/.cache/grokbook"
    assert build["env"]["GROKBOOK_HOME"] == "~/.cache/grokbook"
    key = restore["with"]["key"]
    assert "hashFiles(" in key and "'book/**'" in key and "'grokbook/**'" in key
    assert save["with"]["key"] == "${{ steps.store.outputs.cache-primary-key }}" and restore["id"] == "store"
    assert save["if"].startswith("always()")  # a failed build keeps the runs it trained
    order = [s.get("name") for s in build["steps"]]
    assert order.index("Restore the run store") < order.index("Build the book") < order.index("Save the run store")


def test_it_publishes_the_built_html_to_pages(workflow):
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    assert uses(build, "actions/upload-pages-artifact")["with"]["path"] == "_build/html"
    assert deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    assert uses(deploy, "actions/deploy-pages")["id"] == "deployment"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_the_build_step_is_the_readmes_book_command_and_runs_dry(workflow):
    command = steps_of(workflow["jobs"]["build"])["Build the book"]["run"].strip()
    assert command == "make book" and "make book" in (ROOT / "README.md").read_text()
    dry = subprocess.run(command.split() + ["-n"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert ".venv/bin/grokbook build" in dry.stdout  # what `make book` runs once set up
    cli = subprocess.run([sys.executable, "-m", "grokbook", "build", "--help"], capture_output=True, text=True)
    assert cli.returncode == 0 and "--all" in cli.stdout
    from grokbook.notebooks import book_root

    assert book_root() == ROOT  # jupyter-book writes ROOT/_build/html, the path the upload step takes
