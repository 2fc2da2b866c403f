"""The book's chapters as parameterised notebooks: find them, read their parameters,
validate new values and profiles, execute them with papermill.

A chapter is a MyST markdown notebook ``book/NN_name.md`` with one code cell tagged
``parameters``: each line ``name = literal  # help`` declares a parameter whose type is
the type of its default. Papermill itself accepts any parameter name silently; here an
unknown name, profile or chapter, or a value that does not parse as the parameter's
type, raises :class:`ChapterError` before anything is executed or written.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml


class ChapterError(ValueError):
    """A chapter, profile, parameter name or value that does not exist or parse."""


def book_root() -> Path:
    """The directory holding ``_config.yml`` and ``book/``: the repository of this
    package, else the first one found from the working directory upwards."""
    here = Path(__file__).resolve().parent.parent
    for cand in [here, *Path.cwd().resolve().parents, Path.cwd().resolve()]:
        if (cand / "_config.yml").exists() and (cand / "book").is_dir():
            return cand
    raise ChapterError("cannot find the book (a directory with _config.yml and book/)")


@dataclass(frozen=True)
class Parameter:
    name: str
    type: type
    default: Any
    help: str

    def parse(self, value: Any) -> Any:
        """``value`` (a CLI string or a YAML value) as this parameter's type."""
        t, where = self.type, f"parameter {self.name!r} ({self.type.__name__})"
        if isinstance(value, str) and t is not str:
            if t is bool:
                low = value.strip().lower()
                if low in ("true", "yes", "1", "on"):
                    return True
                if low in ("false", "no", "0", "off"):
                    return False
                raise ChapterError(f"{where}: {value!r} is not a boolean (true/false)")
            try:
                value = ast.literal_eval(value.strip())
            except (ValueError, SyntaxError):
                raise ChapterError(f"{where}: cannot parse {value!r} as {t.__name__}") from None
        if t is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if t is list and isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, t) or (t is int and isinstance(value, bool)):
            raise ChapterError(f"{where}: {value!r} is a {type(value).__name__}, not {t.__name__}")
        return value


@dataclass(frozen=True)
class Chapter:
    name: str
    path: Path
    title: str
    parameters: dict[str, Parameter]

    def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        """Validated, typed values for the given names (unknown names raise)."""
        unknown = sorted(set(values) - set(self.parameters))
        if unknown:
            raise ChapterError(
                f"chapter {self.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                f"its parameters are: {', '.join(self.parameters)}")
        return {k: self.parameters[k].parse(v) for k, v in values.items()}


def _read_parameters(path: Path) -> dict[str, Parameter]:
    text = path.read_text()
    m = re.search(r"```\{code-cell\}[^\n]*\n:tags: \[[^\]]*parameters[^\]]*\]\n(.*?)```", text, re.S)
    if not m:
        raise ChapterError(f"{path} has no code cell tagged 'parameters'")
    params: dict[str, Parameter] = {}
    for line in m.group(1).splitlines():
        code, _, comment = line.partition("#")
        if not code.strip():
            continue
        node = ast.parse(code.strip()).body[0]
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            raise ChapterError(f"{path}: parameters line is not `name = literal`: {line!r}")
        name = node.targets[0].id
        default = ast.literal_eval(node.value)
        params[name] = Parameter(name, type(default), default, comment.strip())
    return params


def find_chapters(root: Optional[Path] = None) -> dict[str, Chapter]:
    """Every chapter under ``root/book`` by name (``book/01_grokking.md`` is
    ``grokking``), in file order."""
    root = root or book_root()
    chapters = {}
    for path in sorted((root / "book").glob("[0-9][0-9]_*.md")):
        title = next((ln[2:].strip() for ln in path.read_text().splitlines() if ln.startswith("# ")),
                     path.stem)
        name = path.stem.split("_", 1)[1]
        chapters[name] = Chapter(name, path, title, _read_parameters(path))
    return chapters


def get_chapter(name: str, root: Optional[Path] = None) -> Chapter:
    chapters = find_chapters(root)
    if name not in chapters:
        raise ChapterError(f"no chapter {name!r}; the chapters are: {', '.join(chapters)}")
    return chapters[name]


def load_profile(profile: str, chapter: Chapter, root: Optional[Path] = None) -> dict[str, Any]:
    """The values that profile ``book/profiles/<profile>.yml`` sets for ``chapter``
    (validated)."""
    pdir = (root or book_root()) / "book" / "profiles"
    path = pdir / f"{profile}.yml"
    if not path.exists():
        names = sorted(p.stem for p in pdir.glob("*.yml"))
        raise ChapterError(f"no profile {profile!r}; the profiles are: {', '.join(names)}")
    data = yaml.safe_load(path.read_text()) or {}
    try:
        return chapter.resolve(data.get(chapter.name) or {})
    except ChapterError as err:
        raise ChapterError(f"profile {profile!r}: {err}") from None


def run_chapter(name: str, values: Optional[dict[str, Any]] = None, *, profile: Optional[str] = None,
                output: Optional[Path] = None, html: bool = False, root: Optional[Path] = None,
                log_output: bool = False) -> Path:
    """Execute chapter ``name`` with papermill: the profile's values, then ``values`` on
    top. Everything is validated first; nothing runs or is written if it fails.
    Returns the executed notebook's path (default ``<name>.ipynb`` in the working
    directory); with ``html`` also writes the HTML beside it."""
    import jupytext
    import papermill

    chapter = get_chapter(name, root)
    params = load_profile(profile, chapter, root) if profile else {}
    params.update(chapter.resolve(values or {}))
    output = Path(output or f"{chapter.name}.ipynb").resolve()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"{chapter.path.stem}.ipynb"
        jupytext.write(jupytext.read(chapter.path), src)
        output.parent.mkdir(parents=True, exist_ok=True)
        papermill.execute_notebook(str(src), str(output), parameters=params, cwd=str(chapter.path.parent),
                                   kernel_name="python3", progress_bar=False, log_output=log_output)
    if html:
        subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", str(output)], check=True)
    return output
