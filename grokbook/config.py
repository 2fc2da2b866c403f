"""Run configuration: every knob of one training run, validated, with a stable hash.

A :class:`RunConfig` is the identity of a run: two equal configs train the same run
(bit for bit on the CPU), and :meth:`RunConfig.hash` is the key under which the run
store keeps it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable

#: Bumped whenever a change to the training code changes what a config trains, so
#: that runs cached by an older version are not mistaken for current ones.
TRAIN_VERSION = 2

TASKS = ("add", "sub", "mul", "div", "x2+y2", "x2+xy+y2", "x3+xy", "s5", "digits")
MODELS = ("transformer", "mlp")
#: ``book``: the book's own transformer and data (answer after ``=``, pre-LN, learned
#: positions); ``grok``: the authors' setup, openai/grok's transformer and sequences
#: (:class:`grokbook.models.GrokTransformer`, :func:`grokbook.tasks.make_dataset`).
ARCHS = ("book", "grok")
OPTIMIZERS = ("adamw", "adam", "sgd")
LOSSES = ("ce", "mse")

#: Largest modulus: a task has up to ``p * p`` examples (16.8 million at the bound, the
#: book uses p <= 113), so that a typo such as ``p=970000`` is refused instead of asking
#: for terabytes.
MAX_P = 2**12
#: Seeds are below 2**32 (numpy's classic seed range). torch takes seeds up to
#: 2**64 - 1, but the minibatch order is seeded with ``seed * 1_000_003 + epoch``
#: (:mod:`grokbook.trainer`), which stays below that for every seed under this bound.
SEED_LIMIT = 2**32

_SEEDS = "an integer in [0, 2**32)"
_AT_LEAST_1 = "an integer >= 1"

#: Each field's allowed values: a test of the (already typed) value and its wording.
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "task": (lambda v: v in TASKS, f"one of {', '.join(TASKS)}"),
    "p": (lambda v: 2 <= v <= MAX_P, f"an integer from 2 to {MAX_P}"),
    "r": (lambda v: 0.0 < v < 1.0, "a train fraction strictly between 0 and 1"),
    "data_seed": (lambda v: 0 <= v < SEED_LIMIT, _SEEDS),
    "model": (lambda v: v in MODELS, f"one of {', '.join(MODELS)}"),
    "arch": (lambda v: v in ARCHS, f"one of {', '.join(ARCHS)}"),
    "n_layers": (lambda v: v >= 1, _AT_LEAST_1),
    "d_model": (lambda v: v >= 1, _AT_LEAST_1),
    "n_heads": (lambda v: v >= 1, _AT_LEAST_1),
    "d_mlp": (lambda v: v >= 0, "an integer >= 0 (0 means 4 * d_model)"),
    "init_scale": (lambda v: v > 0, "a positive finite number"),
    "layer_norm": (lambda v: True, "true or false (or 1 or 0)"),
    "optimizer": (lambda v: v in OPTIMIZERS, f"one of {', '.join(OPTIMIZERS)}"),
    "lr": (lambda v: v > 0, "a positive finite learning rate"),
    "weight_decay": (lambda v: v >= 0, "a finite number >= 0"),
    "betas": (lambda v: len(v) == 2 and all(0.0 <= b < 1.0 for b in v), "two numbers in [0, 1)"),
    "momentum": (lambda v: 0.0 <= v < 1.0, "a number in [0, 1)"),
    "warmup_steps": (lambda v: v >= 0, "an integer >= 0"),
    "batch_size": (lambda v: v >= 0, "an integer >= 0 (0 means full batch)"),
    "grad_clip": (lambda v: v >= 0, "a finite number >= 0 (0 means no clipping)"),
    "loss": (lambda v: v in LOSSES, f"one of {', '.join(LOSSES)}"),
    "fixed_norm": (lambda v: v >= 0, "a finite number >= 0 (0 means unconstrained)"),
    "steps": (lambda v: v >= 1, _AT_LEAST_1),
    "seed": (lambda v: 0 <= v < SEED_LIMIT, _SEEDS),
    "n_snapshots": (lambda v: v >= 2, "an integer >= 2 (first and last)"),
    "adam_eps": (lambda v: v > 0, "a positive finite number"),
    "grokfast_alpha": (lambda v: 0.0 <= v < 1.0, "a number in [0, 1)"),
    "grokfast_lamb": (lambda v: v >= 0, "a finite number >= 0 (0 means no filter)"),
}


def is_prime(n: int) -> bool:
    """True when ``n`` is a prime number."""
    if n < 2:
        return False
    k = 2
    while k * k <= n:
        if n % k == 0:
            return False
        k += 1
    return True


class FieldError(ValueError):
    """An invalid :class:`RunConfig` field: ``field``, ``value`` and the ``allowed``
    values in words (the message says all three)."""

    def __init__(self, field: str, value: Any, allowed: str) -> None:
        super().__init__(f"RunConfig.{field} = {value!r} is invalid: {allowed}")
        self.field, self.value, self.allowed = field, value, allowed

    def __reduce__(self) -> tuple:  # picklable, e.g. from a worker process
        return FieldError, (self.field, self.value, self.allowed)


def _fail(name: str, value: Any, allowed: str) -> None:
    raise FieldError(name, value, allowed)


def _real(value: Any) -> Any:
    """``value`` as a finite float, or None when it is not a real number (bools are not)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return value if math.isfinite(value) else None


def _typed(kind: str, value: Any) -> Any:
    """``value`` as a field of type ``kind`` (an annotation's text) stores it, or None
    when it has another type: ints are ints (not bools), floats finite reals, bools
    bools or 0/1."""
    if kind == "str":
        return value if isinstance(value, str) else None
    if kind == "int":
        return int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else None
    if kind == "float":
        return _real(value)
    if kind == "bool":
        ok = isinstance(value, bool) or (isinstance(value, numbers.Integral) and value in (0, 1))
        return bool(value) if ok else None
    if isinstance(value, (str, bytes)):  # betas: a sequence of floats
        return None
    try:
        items = tuple(_real(b) for b in value)
    except TypeError:
        return None
    return None if None in items else items


def check_field(name: str, value: Any, *, bounds: bool = True) -> Any:
    """``value`` as RunConfig field ``name`` stores it (an int for a float field becomes
    a float, 0/1 for a bool field a bool, a list of betas a tuple); raises
    :class:`FieldError` naming the field if its type is wrong or, with ``bounds``, if
    it is out of the field's range. Constraints between fields are not checked here."""
    test, allowed = _RULES[name]
    typed = _typed(_KINDS[name], value)
    if typed is None or (bounds and not test(typed)):
        _fail(name, value, allowed)
    return typed


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one training run.

    Data: ``task`` (one of :data:`TASKS`; ``digits`` is scikit-learn's bundled 8x8
    digits, 1797 images, for the MLP only), modulus ``p`` (at most :data:`MAX_P`;
    ignored by ``s5`` and ``digits``), train
    fraction ``r`` in (0, 1) and the ``data_seed`` of the split.
    Model: ``model`` (``transformer`` or ``mlp``), ``arch`` (``book``: the book's
    pre-LN transformer reading the answer at ``=``; ``grok``: the authors' setup, the
    openai/grok post-LN, bias-free transformer on ``<eos> a op b = c <eos>`` with loss
    and accuracy on ``c <eos>``; transformer only), ``n_layers``, ``d_model``,
    ``n_heads``, ``d_mlp`` (hidden width of the feed-forward block, 0 means
    ``4 * d_model``), ``layer_norm`` (LayerNorm in the blocks, pre-LN for ``book`` and post-LN
    for ``grok``, or none), and ``init_scale`` (every initial weight multiplied by it, the
    Omnigrok knob).
    Optimisation: ``optimizer`` (``adamw``, ``adam`` or ``sgd``), ``lr``,
    ``weight_decay`` (decoupled for AdamW, L2 for Adam and SGD), ``betas``,
    ``momentum`` (SGD), linear warm-up over ``warmup_steps`` updates, ``batch_size``
    (0 means full batch: one step is one epoch), ``grad_clip`` (max global gradient
    norm, 0 for none), ``loss`` (``ce`` or ``mse`` on one-hot targets), ``fixed_norm``
    (if > 0, the whole weight vector is rescaled to this l2 norm at initialisation and
    after every update: the constrained training of Omnigrok).
    Schedule: ``steps`` optimiser updates, ``seed`` for the initial weights and the
    minibatch order (seeds are below :data:`SEED_LIMIT`), ``n_snapshots`` weight
    snapshots (dense early, geometric later).
    Interventions (fields of :data:`LATER_FIELDS`, left out of :meth:`to_dict` and so of
    the hash at their defaults): ``adam_eps``, the epsilon of Adam's denominator (torch's
    1e-8); ``grokfast_alpha`` and ``grokfast_lamb``, the Grokfast-EMA gradient filter
    (Lee et al. 2024): the gradient ``g`` plus ``grokfast_lamb`` times its exponential
    moving average ``e <- alpha e + (1 - alpha) g`` (``e`` starts at the first gradient;
    ``grokfast_lamb`` 0: no filter).
    """

    task: str = "add"
    p: int = 97
    r: float = 0.5
    data_seed: int = 0
    model: str = "transformer"
    arch: str = "book"
    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 0
    init_scale: float = 1.0
    layer_norm: bool = True
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    momentum: float = 0.0
    warmup_steps: int = 10
    batch_size: int = 0
    grad_clip: float = 0.0
    loss: str = "ce"
    fixed_norm: float = 0.0
    steps: int = 1000
    seed: int = 0
    n_snapshots: int = 40
    adam_eps: float = 1e-8
    grokfast_alpha: float = 0.98
    grokfast_lamb: float = 0.0

    def __post_init__(self) -> None:
        # Store every field as its type, so that equal configs have one hash: an int
        # given for a float field (``weight_decay=1``) as a float (JSON writes 1 and 1.0
        # differently), 0/1 for a bool as a bool, a list of betas (YAML and JSON give
        # lists) as a tuple.
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, check_field(f.name, getattr(self, f.name), bounds=False))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`FieldError` (a ``ValueError``) naming the first invalid field
        and its allowed values."""
        for f in dataclasses.fields(self):
            if f.name == "p" and self.task in ("s5", "digits"):
                check_field("p", self.p, bounds=False)  # p is not used by these tasks
            else:
                check_field(f.name, getattr(self, f.name))
        if self.arch == "grok" and (self.model != "transformer" or self.task == "digits"):
            _fail("arch", self.arch, "'book' for model 'mlp' and task 'digits' "
                  "('grok' is the authors' transformer on token sequences)")
        if self.task == "digits" and self.model != "mlp":
            _fail("model", self.model, "'mlp' for task 'digits' (images are not token sequences)")
        if self.task == "div" and not is_prime(self.p):
            _fail("p", self.p, "a prime number for task 'div' (every b needs an inverse)")
        if self.d_model % self.n_heads:
            _fail("n_heads", self.n_heads, f"a divisor of d_model = {self.d_model}")
        n = {"s5": 120 * 120, "digits": 1797, "div": self.p * (self.p - 1)}.get(self.task, self.p * self.p)
        if not 0 < round(self.r * n) < n:
            _fail("r", self.r, f"a train fraction that leaves both splits non-empty ({n} examples)")

    @property
    def hidden(self) -> int:
        """Width of the feed-forward block."""
        return self.d_mlp or 4 * self.d_model

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of the fields, without the :data:`LATER_FIELDS` that are
        at their defaults (so that every run stored before they existed keeps its hash)."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        for name, default in LATER_FIELDS.items():
            if d[name] == default:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown RunConfig field(s): {', '.join(unknown)}")
        return cls(**d)

    def hash(self) -> str:
        """Stable 16-hex-digit identity of the run (fields and training-code version)."""
        blob = json.dumps({"v": TRAIN_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


#: Fields added after runs had been stored, with their defaults: :meth:`RunConfig.to_dict`
#: (and so the hash, the stored config and a record's columns) leaves one out at its default.
LATER_FIELDS = {f.name: f.default for f in dataclasses.fields(RunConfig)
                if f.name in ("adam_eps", "grokfast_alpha", "grokfast_lamb")}

#: Each field's type as the text of its annotation (``"int"``, ``"tuple[float, float]"``).
_KINDS = {f.name: str(f.type) for f in dataclasses.fields(RunConfig)}
