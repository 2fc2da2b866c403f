"""pyproject.toml and environment.yml list the same dependencies."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"torch": "pytorch"}  # the conda package of a pip distribution


def _pip_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    out = {}
    for req in reqs:
        name, spec = re.match(r"([A-Za-z0-9_.\-]+)(.*)", req).groups()
        out[CONDA_NAMES.get(name.lower(), name.lower())] = spec.replace(" ", "")
    return out


def _conda_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    out = {}
    deps = [d for d in env["dependencies"] if isinstance(d, str)]
    # packages conda-forge lacks are installed by pip; "-e ." is the project itself
    deps += [p for d in env["dependencies"] if isinstance(d, dict) for p in d.get("pip", []) if not p.startswith("-")]
    for dep in deps:
        name, spec = re.match(r"([A-Za-z0-9_.\-]+)(.*)", dep).groups()
        if name not in ("python", "pip"):
            out[name.lower()] = spec.replace(" ", "")
    return out


def test_environment_yml_matches_pyproject():
    assert _conda_requirements() == _pip_requirements()


def test_makefile_pins_the_cpu_torch_before_the_package():
    make = (ROOT / "Makefile").read_text()
    assert make.index("torch==2.13.0") < make.index('-e ".[book,test]"')
