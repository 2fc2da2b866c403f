"""Run configuration: every knob of one training run, validated, with a stable hash.

A :class:`RunConfig` is the identity of a run: two equal configs train the same run
(bit for bit on the CPU), and :meth:`RunConfig.hash` is the key under which the run
store keeps it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

#: Bumped whenever a change to the training code changes what a config trains, so
#: that runs cached by an older version are not mistaken for current ones.
TRAIN_VERSION = 1

TASKS = ("add", "sub", "mul", "div", "x2+y2", "x2+xy+y2", "x3+xy", "s5", "digits")
MODELS = ("transformer", "mlp")
OPTIMIZERS = ("adamw", "adam", "sgd")
LOSSES = ("ce", "mse")


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


def _fail(name: str, value: Any, allowed: str) -> None:
    raise ValueError(f"RunConfig.{name} = {value!r} is invalid: {allowed}")


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one training run.

    Data: ``task`` (one of :data:`TASKS`; ``digits`` is scikit-learn's bundled 8x8
    digits, 1797 images, for the MLP only), modulus ``p`` (ignored by ``s5`` and
    ``digits``), train
    fraction ``r`` in (0, 1) and the ``data_seed`` of the split.
    Model: ``model`` (``transformer`` or ``mlp``), ``n_layers``, ``d_model``,
    ``n_heads``, ``d_mlp`` (hidden width of the feed-forward block, 0 means
    ``4 * d_model``), ``layer_norm`` (pre-LayerNorm blocks, or none), and ``init_scale`` (every initial weight multiplied by it, the
    Omnigrok knob).
    Optimisation: ``optimizer`` (``adamw``, ``adam`` or ``sgd``), ``lr``,
    ``weight_decay`` (decoupled for AdamW, L2 for Adam and SGD), ``betas``,
    ``momentum`` (SGD), linear warm-up over ``warmup_steps`` updates, ``batch_size``
    (0 means full batch: one step is one epoch), ``grad_clip`` (max global gradient
    norm, 0 for none), ``loss`` (``ce`` or ``mse`` on one-hot targets), ``fixed_norm``
    (if > 0, the whole weight vector is rescaled to this l2 norm at initialisation and
    after every update: the constrained training of Omnigrok).
    Schedule: ``steps`` optimiser updates, ``seed`` for the initial weights and the
    minibatch order, ``n_snapshots`` weight snapshots (dense early, geometric later).
    """

    task: str = "add"
    p: int = 97
    r: float = 0.5
    data_seed: int = 0
    model: str = "transformer"
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

    def __post_init__(self) -> None:
        # Accept lists for betas (YAML and JSON give lists) but store a tuple.
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        # An int given for a float field (``weight_decay=1``) is stored as a float, so
        # that equal configs have one hash: JSON writes 1 and 1.0 differently.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in (float, "float") and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field and its allowed range."""
        if self.task not in TASKS:
            _fail("task", self.task, f"one of {', '.join(TASKS)}")
        if self.task == "digits" and self.model != "mlp":
            _fail("model", self.model, "'mlp' for task 'digits' (images are not token sequences)")
        if self.task not in ("s5", "digits"):
            if not isinstance(self.p, int) or self.p < 2:
                _fail("p", self.p, "an integer >= 2")
            if self.task == "div" and not is_prime(self.p):
                _fail("p", self.p, "a prime number for task 'div' (every b needs an inverse)")
        if not 0.0 < self.r < 1.0:
            _fail("r", self.r, "a train fraction strictly between 0 and 1")
        if self.model not in MODELS:
            _fail("model", self.model, f"one of {', '.join(MODELS)}")
        for name in ("n_layers", "d_model", "n_heads", "steps"):
            if int(getattr(self, name)) < 1:
                _fail(name, getattr(self, name), "an integer >= 1")
        if self.d_model % self.n_heads:
            _fail("n_heads", self.n_heads, f"a divisor of d_model = {self.d_model}")
        if self.d_mlp < 0:
            _fail("d_mlp", self.d_mlp, "an integer >= 0 (0 means 4 * d_model)")
        if not self.init_scale > 0:
            _fail("init_scale", self.init_scale, "a positive number")
        if self.optimizer not in OPTIMIZERS:
            _fail("optimizer", self.optimizer, f"one of {', '.join(OPTIMIZERS)}")
        if not self.lr > 0:
            _fail("lr", self.lr, "a positive learning rate")
        if self.weight_decay < 0:
            _fail("weight_decay", self.weight_decay, "a number >= 0")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            _fail("betas", self.betas, "two numbers in [0, 1)")
        if not 0.0 <= self.momentum < 1.0:
            _fail("momentum", self.momentum, "a number in [0, 1)")
        if self.warmup_steps < 0:
            _fail("warmup_steps", self.warmup_steps, "an integer >= 0")
        if self.batch_size < 0:
            _fail("batch_size", self.batch_size, "an integer >= 0 (0 means full batch)")
        if self.grad_clip < 0:
            _fail("grad_clip", self.grad_clip, "a number >= 0 (0 means no clipping)")
        if self.loss not in LOSSES:
            _fail("loss", self.loss, f"one of {', '.join(LOSSES)}")
        if self.seed < 0 or self.data_seed < 0:
            _fail("seed", self.seed, "an integer >= 0")
        if self.fixed_norm < 0:
            _fail("fixed_norm", self.fixed_norm, "a number >= 0 (0 means unconstrained)")
        if self.n_snapshots < 2:
            _fail("n_snapshots", self.n_snapshots, "an integer >= 2 (first and last)")

    @property
    def hidden(self) -> int:
        """Width of the feed-forward block."""
        return self.d_mlp or 4 * self.d_model

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of the fields."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
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
