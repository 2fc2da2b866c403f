"""The book's chapters as parameterised notebooks: find them, read their parameters,
validate new values and profiles, execute them with papermill.

A chapter is a MyST markdown notebook ``book/NN_name.md`` with one code cell tagged
``parameters``: each line ``name = literal  # help`` declares a parameter whose type is
the type of its default. Papermill itself accepts any parameter name silently; here an
unknown name, profile or chapter, a value that does not parse as the parameter's type
or is outside the allowed values of the :class:`~grokbook.config.RunConfig` field it
stands for, an empty list where the chapter needs values, an accuracy level outside
[0, 1] (or ``leave`` not below ``reach``), a device this machine does not have, a run
that needs more memory than this machine has available, an output that is a directory,
an unreachable scheduler or a run store that cannot be used raises :class:`ChapterError`
before anything is executed or written.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import json
import os
import re
import socket
import sys
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from . import settings
from .config import FieldError, RunConfig, check_field

_FIELDS = [f.name for f in dataclasses.fields(RunConfig)]


class ChapterError(ValueError):
    """A chapter, profile, parameter name or value that does not exist, parse or
    validate; an output or scheduler that cannot be used; or a chapter whose execution
    failed. The message is one line."""


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

    @property
    def item_type(self) -> Optional[type]:
        """A list parameter's element type: that of its default's elements (float when
        they mix ints and floats); None for another parameter or an empty default."""
        types = {type(x) for x in self.default} if self.type is list else set()
        if types == {int, float}:
            return float
        return types.pop() if len(types) == 1 else None

    def parse(self, value: Any) -> Any:
        """``value`` (a CLI string or a YAML value) as this parameter's type; a list's
        elements as :attr:`item_type` (an int is taken for a float)."""
        t, it = self.type, self.item_type
        where = f"parameter {self.name!r} ({t.__name__}{f' of {it.__name__}' if it else ''})"
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
        if t is int and isinstance(value, float) and value.is_integer():
            value = int(value)  # `-p steps 1e9`: an integer written in exponent form
        if t is list and isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, t) or (t is int and isinstance(value, bool)):
            raise ChapterError(f"{where}: {value!r} is a {type(value).__name__}, not {t.__name__}")
        if it is not None:
            value = [float(x) if it is float and type(x) is int else x for x in value]
            bad = [x for x in value if type(x) is not it]
            if bad:
                raise ChapterError(f"{where}: element {bad[0]!r} is a {type(bad[0]).__name__}, not {it.__name__}")
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
    """The values that a profile sets for ``chapter`` (validated): ``profile`` is a name
    (``book/profiles/<profile>.yml``) or a path to a ``.yml`` file."""
    pdir = (root or book_root()) / "book" / "profiles"
    given = Path(profile).expanduser()
    is_path = given.suffix in (".yml", ".yaml") or len(given.parts) > 1
    path = given if is_path else pdir / f"{profile}.yml"
    if not path.is_file():
        names = sorted(p.stem for p in pdir.glob("*.yml"))
        raise ChapterError(f"no profile {profile!r} ({'no such file' if is_path else 'not in ' + str(pdir)}); "
                           f"give a file or one of: {', '.join(names)}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ChapterError(f"profile {profile!r} is not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(data, dict) or not isinstance(data.get(chapter.name) or {}, dict):
        raise ChapterError(f"profile {profile!r} must map chapter names to parameter values")
    try:
        return chapter.resolve(data.get(chapter.name) or {})
    except ChapterError as err:
        raise ChapterError(f"profile {profile!r}: {err}") from None


def short_value(value: Any) -> str:
    """A parameter value for a table cell (long lists abbreviated)."""
    if isinstance(value, list) and len(value) > 6:
        return f"{len(value)} values, {value[0]!r} .. {value[-1]!r}"
    return repr(value)


def field_of(param: Parameter) -> Optional[str]:
    """The RunConfig field whose allowed values chapter parameter ``param`` (or, for a
    list, each of its elements) must take, or None. A field of the same name; for a
    list, the field it is the plural (``lrs``, ``extra_seeds``) or ``*_grid`` of
    (``r_grid``); else the field its name ends with after a prefix (``adamw_lr``,
    ``ch1_n_heads``, ``control_steps``); else ``steps`` for an int named ``*steps*``."""
    name = param.name
    if param.type is list:
        name = name[:-5] if name.endswith("_grid") else name[:-1] if name.endswith("s") else ""
    for field in sorted(_FIELDS, key=len, reverse=True):
        if name == field or name.endswith("_" + field):
            return field
    return "steps" if param.type is int and "steps" in param.name else None


#: Parameters that are accuracy levels or fractions, each in [0, 1]: the phase-time levels
#: ``leave`` and ``reach`` (``leave < reach``), ``threshold``, ``*_target``, ``*_quantile``.
_LEVEL = re.compile(r"leave|reach|threshold|\w+_target|\w+_quantile")


def _check_shapes(chapter: Chapter, merged: dict[str, Any]) -> None:
    """Raise :class:`ChapterError` for an empty list where the chapter's default has
    values, a ``*_range`` that is not two increasing values, or an accuracy level (see
    :data:`_LEVEL`) outside [0, 1] or a ``leave`` not below ``reach``."""
    for name, value in merged.items():
        param = chapter.parameters[name]
        if param.type is list and param.default and not value:
            raise ChapterError(f"parameter {name!r} = [] is empty: the chapter needs at least one value "
                               f"(default {short_value(param.default)})")
        if param.type is list and name.endswith("_range") and not (len(value) == 2 and value[0] < value[1]):
            raise ChapterError(f"parameter {name!r} = {value!r} is invalid: two values [low, high] with low < high")
        if param.type is float and _LEVEL.fullmatch(name) and not 0 <= value <= 1:
            raise ChapterError(f"parameter {name!r} = {value!r} is invalid: an accuracy level (a fraction) "
                               "from 0 to 1")
    if "leave" in merged and "reach" in merged and not merged["leave"] < merged["reach"]:
        raise ChapterError(f"parameters 'leave' = {merged['leave']!r} and 'reach' = {merged['reach']!r} are "
                           "invalid: an accuracy leaves chance below the level that counts as 100% "
                           "(0 <= leave < reach <= 1)")


def check_run_values(chapter: Chapter, values: dict[str, Any]) -> list[RunConfig]:
    """Raise :class:`ChapterError` naming the parameter and its allowed values unless
    the chapter's parameters (``values`` over the defaults) give valid runs: those
    named as RunConfig fields form one :class:`RunConfig`; each element of a list
    parameter for a field (see :func:`field_of`) must be valid in its place; any other
    parameter for a field must be a valid value of that field on its own. An empty
    list where the default has values, a ``*_range`` that is not ``[low, high]`` and an
    accuracy level outside [0, 1] (``leave < reach``) are refused too.

    Returns the configurations it built: the one the fields form, and one per element
    of each list parameter for a field (the chapter's runs vary these one at a time),
    for :func:`check_memory`."""
    merged = {**{k: p.default for k, p in chapter.parameters.items()}, **values}
    _check_shapes(chapter, merged)
    try:
        base = RunConfig(**{k: v for k, v in merged.items() if k in _FIELDS})
    except FieldError as err:
        if err.field in merged:
            raise ChapterError(f"parameter {err.field!r} = {err.value!r} is invalid: {err.allowed}") from None
        raise ChapterError(f"the parameters of chapter {chapter.name!r} give an invalid run: {err}") from None
    built = [base]
    for name, value in merged.items():
        field = field_of(chapter.parameters[name])
        if field is None or name in _FIELDS:
            continue
        for item in value if isinstance(value, list) else [value]:
            try:
                if isinstance(value, list):
                    built.append(base.replace(**{field: item}))
                else:
                    check_field(field, item)
            except FieldError as err:
                if err.field != field:  # a constraint between fields
                    reason = str(err)
                elif isinstance(value, list):
                    reason = f"{item!r} is not {err.allowed}"
                else:
                    reason = err.allowed
                raise ChapterError(f"parameter {name!r} = {value!r} is invalid: {reason}") from None
    return built


def check_device(name: Optional[str] = None) -> str:
    """The kind of device training will use (``cpu``, ``cuda`` or ``mps``): ``name``,
    else ``$GROKBOOK_DEVICE``, else the best one available (see
    :func:`grokbook.trainer.default_device`). :class:`ChapterError` when this machine does
    not have it (or, for ``cuda:N``, fewer than N + 1 GPUs)."""
    import torch

    from .trainer import default_device

    try:
        with settings.overriding(GROKBOOK_DEVICE=name):
            device = default_device()
    except ValueError as err:
        raise ChapterError(f"device not available: {err}") from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ChapterError(f"device not available: {device} asked, this machine has "
                           f"{torch.cuda.device_count()} CUDA device(s)")
    return device.type


def available_memory_bytes() -> Optional[int]:
    """Bytes of memory available to a new process here: ``MemAvailable`` of
    ``/proc/meminfo`` (Linux), else the free physical pages (``os.sysconf``); None if
    neither can be read."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


#: What to lower when a part of :func:`grokbook.store.memory_bytes` is too large.
_LOWER = {"curves": "steps", "snapshots": "n_snapshots or the model's size", "dataset": "p",
          "model": "d_model or n_layers", "activations": "p, r, batch_size or d_model",
          "runtime": "nothing: this machine is nearly full"}


def _size(n: float) -> str:
    """Bytes in words: 512 MB, 2.3 GB, 1200 GB."""
    return f"{n / 2**20:.0f} MB" if n < 2**30 else f"{n / 2**30:.1f} GB" if n < 100 * 2**30 else f"{n / 2**30:.0f} GB"


def check_memory(configs: list[RunConfig], device: str = "cpu", available: Optional[int] = None,
                 gpu_free: Optional[int] = None) -> None:
    """Raise :class:`ChapterError`, with the numbers, when the largest of ``configs``
    (by :func:`grokbook.store.memory_bytes`) cannot fit this machine: on the CPU, more
    than ``available`` bytes (default :func:`available_memory_bytes`); on ``cuda``,
    more than ``gpu_free`` bytes of the GPU (default its free memory) for the parts on
    the GPU (dataset, model, activations) or more than ``available`` for the rest. One
    run alone is estimated: a chapter that trains ensembles needs more, so this refuses
    only the runs that cannot fit at all."""
    if not configs:
        return
    from .progress import describe
    from .store import memory_bytes

    need = {c: memory_bytes(c) for c in configs}  # in order: the first of equal needs is named
    worst = max(need, key=lambda c: sum(need[c].values()))
    parts = need[worst]
    available = available_memory_bytes() if available is None else available
    checks = [("", parts, available)]
    if device == "cuda":
        import torch

        on_gpu = {k: parts[k] for k in ("dataset", "model", "activations")}
        free = torch.cuda.mem_get_info()[0] if gpu_free is None else gpu_free
        checks = [(" of GPU memory", on_gpu, free),
                  ("", {k: v for k, v in parts.items() if k not in on_gpu}, available)]
    for where, part, have in checks:
        total = sum(part.values())
        if have is not None and total > have:
            top = sorted(part.items(), key=lambda kv: -kv[1])
            big = top[0][0]
            raise ChapterError(
                f"a run ({describe(worst)}) needs about {_size(total)}{where} ("
                + ", ".join(f"{k} {_size(v)}" for k, v in top if v >= 0.01 * total)
                + f"), more than the {_size(have)} available on this machine; lower {_LOWER[big]}")


def check_store() -> None:
    """:class:`ChapterError` when the default run store refuses to be used (a symbolic
    link at its ``runs/`` or ``chapters/``: :class:`~grokbook.store.StoreError`)."""
    from .store import RunStore, StoreError

    try:
        store = RunStore(device="cpu")
        store._runs_path()
        store._chapters_path()
    except StoreError as err:
        raise ChapterError(str(err)) from None


def check_scheduler(address: str, timeout: float = 3.0) -> None:
    """Raise :class:`ChapterError` unless a TCP connection to the Dask scheduler at
    ``address`` (``tcp://host:port``, ``tls://host:port`` or ``host:port``; port 8786
    if none) opens within ``timeout`` seconds. Other protocols are not checked."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "tcp", address
    if scheme not in ("tcp", "tls"):
        return
    try:
        parts = urllib.parse.urlsplit(f"//{rest}")
        host, port = parts.hostname, parts.port or 8786
    except ValueError:
        host = None
    if not host:
        raise ChapterError(f"scheduler {address!r} is not an address like tcp://host:8786")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        raise ChapterError(f"cannot reach the scheduler {address} ({host}:{port}): "
                           f"{err.strerror or err or type(err).__name__}") from None


_GLUE_ROLE = re.compile(r"\{glue(?::text|:any|:)?\}`([^`:]+)(?::([^`]*))?`")
_GLUE_FIGURE = re.compile(r"^(`{3,}|:{3,})\{glue:figure\}\s+(\S+)[^\n]*\n(?::[^\n]*\n)*\n?(.*?)^\1[ \t]*$",
                          re.MULTILINE | re.DOTALL)


def render_glue(notebook: dict) -> dict:
    """``notebook`` (nbformat JSON) with the glue roles of its markdown (``{glue:text}``,
    ``{glue}``, ``{glue:}``, ``{glue:any}``) replaced by the glued values, formatted as the
    role asks (``{glue:text}`x:.2f``` becomes ``0.42``),
    and each ``{glue:figure}`` block by its caption in italics (the figure is shown by
    its code cell): what the book does, for a notebook read on its own. A role or
    figure whose key was never glued is left as it is."""
    values: dict[str, str] = {}
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            data = output.get("data", {})
            text = data.get("application/papermill.record/text/plain", data.get("text/plain"))
            if name and text is not None:
                values[name] = "".join(text)

    def role(m: re.Match) -> str:
        if m.group(1) not in values:
            return m.group(0)
        raw = values[m.group(1)]
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            return raw
        try:
            return format(value, m.group(2) or "")
        except (TypeError, ValueError):
            return str(value)

    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            text = "".join(cell["source"])
            text = _GLUE_FIGURE.sub(lambda m: f"*Figure: {m.group(3).strip()}*" if m.group(2) in values
                                    else m.group(0), text)
            cell["source"] = _GLUE_ROLE.sub(role, text)
    return notebook


#: The cell tags of the book (MyST-NB, jupyter-book 1) and what :func:`book_page` does with
#: each. Removing takes the part out of the page; hiding folds it behind a toggle in the
#: book, and a standalone page has no toggle, so hidden parts are taken out too.
_DROP_CELL = {"remove-cell", "remove_cell", "hide-cell"}
_DROP_INPUT = {"remove-input", "remove_input", "hide-input"}  # code cells only, as in MyST-NB
_DROP_OUTPUT = {"remove-output", "remove_output", "hide-output"}
_DROP_STDERR = {"remove-stderr"}
_ROLE = re.compile(r"\{([A-Za-z][\w:.+-]*)\}`([^`]*)`")
_TITLED = re.compile(r"^(.*?)\s*<([^<>]+)>$", re.S)  # `text <target>`
_DIRECTIVE = re.compile(r"^(`{3,}|:{3,})\{([\w:.-]+)\}([^\n]*)\n((?:[ \t]*:[\w-]+:[^\n]*\n)*)\n?(.*?)^\1[ \t]*$",
                        re.MULTILINE | re.DOTALL)
_TARGET = re.compile(r"^\(([^()\s]+)\)=[ \t]*(?:\n|$)", re.MULTILINE)  # `(label)=` before a heading
_COMMENT = re.compile(r"^%[^\n]*(?:\n|$)", re.MULTILINE)  # a MyST comment line
_ADMONITIONS = {"note", "warning", "tip", "important", "caution", "attention", "danger", "error", "hint",
                "seealso", "admonition"}
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")


def _source(cell: dict) -> str:
    """A cell's source as one string (nbformat stores a string or a list of lines)."""
    src = cell.get("source", "")
    return src if isinstance(src, str) else "".join(src)


def _image_uri(data: dict) -> Optional[str]:
    """A ``data:`` URI for the first image of an output's mime bundle (PNG, JPEG: base64
    in the notebook; SVG: text), None if it has none."""
    import base64

    for mime in _IMAGE_TYPES:
        if mime in data:
            raw = "".join(data[mime]) if isinstance(data[mime], list) else data[mime]
            if mime == "image/svg+xml":
                raw = base64.b64encode(raw.encode()).decode()
            return f"data:{mime};base64,{''.join(raw.split())}"
    return None


def _render_role(name: str, content: str, labels: dict[str, str]) -> str:
    """One MyST role as the Markdown a notebook viewer shows: ``{math}`` as ``$...$``,
    ``{cite}`` (any ``cite:*``) as ``[key1, key2]``, ``{ref}``/``{numref}``/``{doc}``/
    ``{eq}``/``{term}`` as their explicit text, else the heading or figure number
    (``labels``) the label names, else the label; Python roles (``{func}`` ...) as code.
    Any other role: its text."""
    titled = _TITLED.match(content)
    text, target = (titled.group(1), titled.group(2)) if titled else (None, content.strip())
    if name == "math":
        return f"${content}$"
    if name == "cite" or name.startswith("cite:"):
        return "[" + ", ".join(k.strip() for k in content.split(",")) + "]"
    if name == "numref":
        number = labels.get(target, target)
        return text.replace("%s", number).replace("{number}", number) if text else number
    if name == "eq":
        return f"({target})"
    if name in ("ref", "doc", "term", "any", "download"):
        return text or labels.get(target, target)
    if name in ("func", "meth", "class", "mod", "attr", "obj", "data", "exc") or name.startswith("py:"):
        shown = text or (target.lstrip("~").rsplit(".", 1)[-1] if target.startswith("~") else target.lstrip("!"))
        return f"`{shown}{'()' if name.split(':')[-1] in ('func', 'meth') and not text else ''}`"
    if name in ("sub", "sup"):
        return f"<{name}>{content}</{name}>"
    return text or content


def book_page(notebook: dict, *, keep_stderr: bool = False) -> dict:
    """A copy of ``notebook`` (nbformat JSON, executed) as the book shows it, for a page
    read without the book:

    - cells tagged ``remove-cell`` or ``hide-cell`` are dropped; the input of code cells
      tagged ``remove-input`` or ``hide-input`` and the outputs of cells tagged
      ``remove-output`` or ``hide-output`` are dropped (the book folds hidden parts
      behind a toggle; a static page has none); stderr is dropped, as the book's
      ``_config.yml`` does (``stderr_output: remove-warn``), unless ``keep_stderr``;
      ``remove-stderr`` drops it in any case;
    - each ``{glue:figure}`` directive becomes the glued image with its caption, numbered
      ``Fig. N`` as the book numbers them, and the figure is no longer shown again where
      it was made; glue outputs that are not displayed (``mime_prefix``) are dropped;
    - glue roles become their values (:func:`render_glue`: ``{glue:text}`x:.2f``` is
      ``0.42``); other roles are written as text (see :func:`_render_role`): ``{math}`` as
      ``$...$`` for MathJax, ``{cite}`` as ``[key]``, ``{ref}``/``{numref}``/``{doc}`` as
      their text or the heading/figure number they point to; the ``{math}`` directive
      becomes ``$$...$$``, admonitions a quote with their title, any other directive its
      content; ``(label)=`` targets and ``%`` comments are dropped.

    A glue role or figure whose key was never glued is left as written."""
    import copy

    nb = copy.deepcopy(notebook)
    glued = {}
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            scrap = output.get("metadata", {}).get("scrapbook", {})
            if scrap.get("name"):  # its mime bundle without the prefix of an undisplayed glue
                cut = len(scrap.get("mime_prefix") or "")
                glued[scrap["name"]] = {k[cut:]: v for k, v in output.get("data", {}).items()}
    labels: dict[str, str] = {}
    number = 0
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text = _source(cell)
        for m in re.finditer(r"^\(([^()\s]+)\)=[ \t]*\n+#+[ \t]+([^\n]+)", text, re.MULTILINE):
            labels[m.group(1)] = m.group(2).strip()
        for m in _GLUE_FIGURE.finditer(text):
            number += 1
            name = re.search(r"^:name:[ \t]*(\S+)", m.group(0), re.MULTILINE)
            if name:
                labels[name.group(1)] = f"Fig. {number}"
    placed: set[str] = set()
    number = 0

    def figure(m: re.Match) -> str:
        nonlocal number
        number += 1
        caption = f"**Fig. {number}.** {m.group(3).strip()}".rstrip()
        uri = _image_uri(glued[m.group(2)]) if m.group(2) in glued else None
        if uri is None:
            return m.group(0) if m.group(2) not in glued else caption + "\n"
        placed.add(m.group(2))
        return f"![Fig. {number}]({uri})\n\n{caption}\n"

    def directive(m: re.Match) -> str:
        name, arg, body = m.group(2), m.group(3).strip(), m.group(5).rstrip("\n")
        if name == "math":
            return f"$$\n{body}\n$$\n"
        if name in _ADMONITIONS:
            title = arg if name == "admonition" else f"{name.capitalize()}{': ' + arg if arg else ''}"
            return "\n".join(f"> {line}".rstrip() for line in [f"**{title}**", "", *body.splitlines()]) + "\n"
        return body + "\n"

    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            cell["source"] = _GLUE_FIGURE.sub(figure, _source(cell))
    render_glue(nb)
    cells = []
    for cell in nb["cells"]:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if tags & _DROP_CELL:
            continue
        if cell["cell_type"] == "markdown":
            text = _COMMENT.sub("", _TARGET.sub("", _source(cell)))
            for _ in range(5):  # nested directives, outermost first
                text, n = _DIRECTIVE.subn(lambda m: m.group(0) if m.group(2).startswith("glue") else directive(m),
                                          text)
                if not n:
                    break
            cell["source"] = _ROLE.sub(lambda m: m.group(0) if m.group(1).startswith("glue")
                                       else _render_role(m.group(1), m.group(2), labels), text)
        if cell["cell_type"] != "code":
            cells.append(cell)
            continue
        if tags & _DROP_INPUT:
            cell.setdefault("metadata", {})["transient"] = {"remove_source": True}
        if tags & _DROP_OUTPUT:
            cell["outputs"] = []
        cell["outputs"] = [
            o for o in cell.get("outputs", [])
            if not (o.get("output_type") == "stream" and o.get("name") == "stderr"
                    and (not keep_stderr or tags & _DROP_STDERR))
            and not o.get("metadata", {}).get("scrapbook", {}).get("mime_prefix")
            and o.get("metadata", {}).get("scrapbook", {}).get("name") not in placed]
        if cell["outputs"] or not tags & _DROP_INPUT:  # nothing left to show: no empty box
            cells.append(cell)
    nb["cells"] = cells
    return nb


def notebook_html(notebook: dict, title: Optional[str] = None) -> str:
    """A standalone HTML page (nbconvert's ``HTMLExporter``, its ``lab`` template;
    figures embedded as data URIs) of ``notebook`` (nbformat JSON) as the book shows it:
    see :func:`book_page` for the cells, inputs and outputs dropped and the roles and
    directives rendered. ``title`` is the page's title (default the notebook's first
    ``# `` heading)."""
    import nbformat
    from nbconvert import HTMLExporter

    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise ValueError("notebook_html needs a notebook as nbformat JSON (a dict with a 'cells' list), "
                         f"got {type(notebook).__name__}")
    page = book_page(notebook)
    if title is None:
        heads = [ln[2:].strip() for c in page["cells"] if c["cell_type"] == "markdown"
                 for ln in _source(c).splitlines() if ln.startswith("# ")]
        title = heads[0] if heads else "notebook"
    node = nbformat.reads(json.dumps(page), as_version=4)  # multi-line strings stored as lists joined
    body, _ = HTMLExporter().from_notebook_node(node, resources={"metadata": {"name": title}})
    return body


def _one_line(err: BaseException) -> str:
    """The kernel's error as one line: papermill's ``ename: evalue``, else the
    exception's type and first line."""
    ename, evalue = getattr(err, "ename", type(err).__name__), getattr(err, "evalue", str(err))
    lines = str(evalue).strip().splitlines()
    return f"{ename}: {lines[0]}" if lines else ename


#: The warning lines shown on the terminal by this process: those :func:`_relay` copied, and
#: those the ``grokbook`` command showed; neither shows a line that is in it already.
RELAYED_WARNINGS: set[str] = set()

#: Arguments of the kernel papermill starts: its log at ERROR, which silences the
#: "Kernel is running over TCP without encryption" warning ipykernel logs at every
#: start (the kernel listens on 127.0.0.1 only, and its messages are signed).
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]


def _kernel_manager(log: Path) -> type:
    """jupyter_client's AsyncKernelManager (what nbclient uses), with the kernel process's
    own stderr sent to the file ``log`` instead of the terminal: ipykernel writes its log
    there (a ZMQ traceback when the kernel is stopped in the middle of a reply, as on
    Ctrl-C), which the chapter's output never holds; notices and warnings reach the
    terminal through ``$GROKBOOK_PROGRESS`` and the chapter's errors through the notebook."""
    from jupyter_client import AsyncKernelManager

    class QuietKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:
            with open(log, "ab") as err:  # the kernel keeps its own copy of the descriptor
                kw.setdefault("stderr", err)
                await super()._async_start_kernel(**kw)

    return QuietKernelManager


@contextlib.contextmanager
def _papermill_log_to(log: Path) -> Any:
    """Send the records of papermill's logger (and nbclient's, which logs through it) to the
    file ``log`` while a chapter runs, instead of Python's last-resort handler on stderr:
    nbclient logs "Kernel died while waiting for execute reply." when Ctrl-C stops the
    kernel before the command has printed its one line, and a kernel that dies on its own
    reaches the user as the chapter's error (``DeadKernelError``) in any case."""
    import logging

    logger = logging.getLogger("papermill")
    handler = logging.FileHandler(log, delay=True)
    handler.setLevel(logging.WARNING)
    saved = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved
        handler.close()


@contextlib.contextmanager
def _relay(path: Path, every_s: float = 0.2) -> Any:
    """Copy the lines appended to ``path`` to stderr as they come (every ``every_s``
    seconds) while the block runs, and the last ones when it ends."""
    import threading

    from tqdm import tqdm

    path.touch()
    stop = threading.Event()

    def copy() -> None:
        rest, last = "", False
        with path.open() as f:
            while not last:
                last = stop.wait(every_s)  # once stopped, a last read: no line written before is lost
                *lines, rest = (rest + f.read()).split("\n")
                for line in lines:  # tqdm.write: around papermill's progress bar
                    if line.startswith("grokbook: warning: "):
                        if line in RELAYED_WARNINGS:  # this process showed it already
                            continue
                        RELAYED_WARNINGS.add(line)
                    tqdm.write(line, file=sys.stderr)

    thread = threading.Thread(target=copy, name="grokbook-notices", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _record_runs(chapter: str, profile: Optional[str], params: dict[str, Any], log: list[str]) -> None:
    """Record in the default run store the distinct runs of that store in ``log`` (the
    JSON lines the store wrote to ``GROKBOOK_RUNS_LOG``), in order of first use, with the
    profile and parameters the chapter ran with."""
    from .store import RunStore

    store = RunStore()
    runs: dict[str, Any] = {}
    for entry in map(json.loads, log):
        if entry["store"] == str(store.root):
            runs.setdefault(entry["hash"], entry["config"])
    store.save_chapter_runs(chapter, {"chapter": chapter, "profile": profile, "parameters": params,
                                      "runs": [{"hash": h, "config": c} for h, c in runs.items()]})


def run_chapter(name: str, values: Optional[dict[str, Any]] = None, *, profile: Optional[str] = None,
                output: Optional[Path] = None, html: bool = False, root: Optional[Path] = None,
                log_output: bool = False, scheduler: Optional[str] = None) -> Path:
    """Execute chapter ``name`` with papermill: the profile's values, then ``values`` on
    top, its sweeps sent to the Dask ``scheduler`` if one is given. Everything is
    validated first; nothing runs or is written if it fails. Returns the executed
    notebook's path (default ``<name>.ipynb`` in the working directory); with ``html``
    also writes beside it ``<name>.html``, a standalone page as the book shows the chapter
    (:func:`notebook_html`: hidden inputs and removed cells dropped, roles rendered).

    The notebook is written under a temporary name beside the output and renamed over
    it only on success: if the chapter fails, an existing output is kept, the failed
    notebook is left at ``<output stem>.failed.ipynb`` and :class:`ChapterError` says
    the kernel's error and that path.

    While it runs, the kernel's notices of the runs it needs and of their training
    (``GROKBOOK_PROGRESS``, see :mod:`grokbook.sweeping`) and the run store's warnings
    (``grokbook: warning: ...``, one line each) are copied to stderr, with a bar across
    the cells when stderr is a terminal. With ``log_output`` the cells' own stdout and
    stderr are streamed to this process's as they come, besides being kept in the notebook.

    The run store logs every run it gives the kernel (``GROKBOOK_RUNS_LOG``); if the
    chapter succeeds, the distinct runs of the default store (``$GROKBOOK_HOME``) with
    their configs are recorded there as ``chapters/<name>.json`` (see
    :meth:`~grokbook.store.RunStore.save_chapter_runs`), for ``grokbook export <name>``."""
    import jupytext
    import papermill

    chapter = get_chapter(name, root)
    params = load_profile(profile, chapter, root) if profile else {}
    params.update(chapter.resolve(values or {}))
    configs = check_run_values(chapter, params)
    device = check_device(params.get("device"))
    check_memory(configs, device)
    check_store()
    output = Path(output or f"{chapter.name}.ipynb").resolve()
    if output.is_dir():
        raise ChapterError(f"output {output} is a directory; name a notebook file, e.g. "
                           f"{output / (chapter.name + '.ipynb')}")
    if scheduler:
        check_scheduler(scheduler)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ChapterError(f"cannot create the directory of output {output}: {err.strerror or err}") from None
    running = output.with_name(f".{output.stem}.{os.getpid()}.running.ipynb")
    failed = output.with_name(f"{output.stem}.failed.ipynb")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src, notices = Path(tmp) / f"{chapter.path.stem}.ipynb", Path(tmp) / "notices.log"
            used = Path(tmp) / "runs.log"
            jupytext.write(jupytext.read(chapter.path), src)
            # read in the kernel: the sweeps' scheduler, figures shown where they are made,
            # notices of the runs to train and of training (a file: the notebook stays clean),
            # and where to log the runs the chapter uses
            with settings.overriding(GROKBOOK_SCHEDULER=scheduler or None, GROKBOOK_SHOW_FIGURES="1",
                          GROKBOOK_PROGRESS=str(notices), GROKBOOK_RUNS_LOG=str(used)), _relay(notices), \
                    _papermill_log_to(Path(tmp) / "papermill.log"):
                papermill.execute_notebook(str(src), str(running), parameters=params, cwd=str(chapter.path.parent),
                                           kernel_name="python3", progress_bar=sys.stderr.isatty(),
                                           stdout_file=sys.stdout if log_output else None,
                                           stderr_file=sys.stderr if log_output else None,
                                           extra_arguments=KERNEL_ARGUMENTS,
                                           kernel_manager_class=_kernel_manager(Path(tmp) / "kernel.log"))
            used_lines = used.read_text().splitlines() if used.exists() else []
    except BaseException as err:
        kept = running.exists()
        if kept:
            os.replace(running, failed)
        if not isinstance(err, Exception):  # KeyboardInterrupt, SystemExit
            raise
        where = f"the failed notebook is {failed}" if kept else "no notebook was written"
        raise ChapterError(f"chapter {chapter.name!r} failed: {_one_line(err)}; {where}") from None
    executed = running.read_text()
    running.write_text(json.dumps(render_glue(json.loads(executed))))
    os.replace(running, output)
    from .store import StoreError  # here: it imports torch

    try:
        _record_runs(chapter.name, profile, params, used_lines)
    except (OSError, StoreError) as err:
        raise ChapterError(f"the notebook {output} was written, but the record of the runs it used "
                           f"was not: {err}") from None
    if html:  # a standalone page as the book shows it: figures embedded as data URIs
        page = output.with_suffix(".html")
        try:
            page.write_text(notebook_html(json.loads(executed), title=chapter.title))
        except Exception as err:  # nbconvert's errors have no common base
            raise ChapterError(f"the notebook {output} was written, but its HTML was not: {_one_line(err)}") from None
    return output
