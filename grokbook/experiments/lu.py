"""Chapter 8 (the LU mechanism): its verdicts, and the elimination test on the book's
transformer without LayerNorm (issue 33).

Omnigrok's elimination experiment on algorithmic data uses a transformer without
LayerNorm; the chapter's own sweep uses a one-hidden-layer MLP. The transformer here is
chapter 1's model (its defaults: ``p`` 47, two blocks of width 64, no LayerNorm, AdamW
at learning rate 3e-3, 4000 steps), on chapter 1's seeds:

- **fixed**: held on the sphere ``||theta|| = w`` (no weight decay) at each norm of
  :data:`TRANSFORMER_NORMS`, a grid whose neighbours are closer than the chapter's
  tolerance for "at w_c"; ``w_c`` is the grid norm of the smallest final validation
  loss (:func:`w_c_of`), and the run held there is the grid's run at that norm;
- **free**: chapter 1's run (weight decay 1), whose delay the held run is scored against;
- **control**: the free run without weight decay (which LU predicts never generalizes).

Rows are measured offline (``python benchmarks/pool.py --parts lu``) into
:data:`POOL_FILE`; :func:`measure` gives one row per run. The verdict rules
(:func:`elimination_verdict`, :func:`lu_verdict`, :func:`drift_verdict`,
:func:`induction_verdict`) are shared by the chapter's MLP and the transformer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..omnigrok import LUCurves, best_norm, norm_grid, run_norm_path, value_at
from .verdicts import Verdict, not_testable

#: The transformer's fixed norms as fractions of its initial norm: 11 from 0.2 to 0.8,
#: neighbours a factor 1.149 apart (finer than the chapter's tolerance of 1.25 for "at
#: w_c"); weight decay shrinks the free run's norm from its start.
NORM_FRACTIONS = (0.2, 0.8, 11)

#: Where the transformer's rows live, and how they were measured (chapter 8's defaults).
POOL_FILE = Path(__file__).resolve().parents[2] / "data" / "pool" / "lu_transformer_p47.csv"
POOL_SETTINGS = dict(reach=0.99, target=0.9)

#: Steps of the live check: the build re-trains one recorded run this far and compares
#: its training loss there with the record's ``check_loss``.
CHECK_STEP = 100

#: The columns of a row of :func:`measure`.
COLUMNS = ("config", "seed", "arm", "fixed_norm", "weight_decay", "t2", "t_gen", "final_train_loss",
           "final_val_loss", "final_train_acc", "final_val_acc", "val_at_t2", "norm_init", "norm_end",
           "check_loss")


def initial_norm(config: Any) -> float:
    """The norm of ``config``'s initial weights (``||theta_0||``; as the trainer draws them)."""
    from ..trainer import Core

    return float(Core([config], "cpu").w[0].norm())


def transformer_norms(config: Any) -> tuple[float, ...]:
    """The fixed norms of the transformer sweep of ``config`` (the free run): the
    :data:`NORM_FRACTIONS` grid of its initial norm rounded to a whole number, each norm
    rounded to 0.01 (so that the configs, and their hashes, are written exactly); 12 to
    48 for chapter 1's model (initial norm 59.7 at seed 0)."""
    w0 = round(initial_norm(config))
    lo, hi, n = NORM_FRACTIONS
    return tuple(round(float(w), 2) for w in norm_grid(lo * w0, hi * w0, n))


def transformer_configs(free: Any, seeds: Sequence[int]) -> list[tuple[str, Any]]:
    """``(arm, config)`` of the transformer test on ``seeds`` (each setting the
    initialisation and the split, as :func:`grokbook.sweeping.replicates` does):
    ``"free"`` (``free`` itself), ``"control"`` (without weight decay) and ``"fixed"``
    (without weight decay, at each of :func:`transformer_norms` of ``free``)."""
    norms = transformer_norms(free)
    out = []
    for s in seeds:
        f = free.replace(seed=s, data_seed=s)
        out += [("free", f), ("control", f.replace(weight_decay=0.0))]
        out += [("fixed", f.replace(weight_decay=0.0, fixed_norm=w)) for w in norms]
    return out


def measure(run: Any, arm: str, settings: Mapping[str, float] = POOL_SETTINGS) -> dict[str, Any]:
    """One run as a row of :data:`COLUMNS`: ``t2`` (training accuracy reaches
    ``settings["reach"]``) and ``t_gen`` (validation accuracy reaches
    ``settings["target"]``), -1 for never; the final losses and accuracies (NaN for a
    diverged run); the validation accuracy at ``t2``; the norm at the start and the end;
    ``check_loss``, the training loss of step :data:`CHECK_STEP` - 1."""
    c = run.config
    loss = np.asarray(run.metrics["train_loss"], np.float64)
    acc = np.asarray(run.metrics["train_acc"], np.float64)
    path = run_norm_path(run, float("nan"), reach=settings["reach"], target=settings["target"])  # no w_c needed
    done = run.diverged_at is None and len(run.val_steps) and int(run.val_steps[-1]) == c.steps
    nan = float("nan")
    return dict(config=c.hash(), seed=c.seed, arm=arm, fixed_norm=float(c.fixed_norm), weight_decay=float(c.weight_decay),
                t2=-1 if path.t2 is None else path.t2, t_gen=-1 if path.t_gen is None else path.t_gen,
                final_train_loss=float(loss[-1]) if done else nan, final_val_loss=float(run.val_loss[-1]) if done else nan,
                final_train_acc=float(acc[-1]) if done else nan, final_val_acc=float(run.val_acc[-1]) if done else nan,
                val_at_t2=path.val_at_t2, norm_init=path.norm_init, norm_end=path.norm_end,
                check_loss=float(loss[CHECK_STEP - 1]) if len(loss) >= CHECK_STEP else nan)


def write_pool(rows: Sequence[dict[str, Any]], path: Path = POOL_FILE) -> Path:
    """``rows`` (:data:`COLUMNS`) as the CSV file ``path``, atomically."""
    from .records import write_csv

    return write_csv(rows, COLUMNS, path)


def read_pool(path: Path = POOL_FILE) -> list[dict[str, Any]]:
    """The pool's rows, or ``[]`` when the file is absent."""
    from .records import read_csv

    floats = ("fixed_norm", "weight_decay", "final_train_loss", "final_val_loss", "final_train_acc", "final_val_acc",
              "val_at_t2", "norm_init", "norm_end", "check_loss")
    return read_csv(path, COLUMNS, dict(seed=int, t2=int, t_gen=int, **{k: float for k in floats}))


def _time(v: int) -> Optional[int]:
    return None if int(v) < 0 else int(v)


def curves_of(rows: Sequence[dict[str, Any]], seed: int) -> LUCurves:
    """The :class:`~grokbook.omnigrok.LUCurves` of ``seed``'s fixed-norm rows."""
    mine = sorted((r for r in rows if r["arm"] == "fixed" and r["seed"] == seed), key=lambda r: r["fixed_norm"])
    if not mine:
        raise ValueError(f"no fixed-norm rows of seed {seed}")
    col = lambda k: np.array([r[k] for r in mine], np.float64)
    return LUCurves(col("fixed_norm"), col("final_train_loss"), col("final_val_loss"), col("final_train_acc"),
                    col("final_val_acc"))


def w_c_of(rows: Sequence[dict[str, Any]], seed: int) -> float:
    """``seed``'s ``w_c``: the grid norm of its smallest final validation loss (not
    refined between grid points, so that the run held at ``w_c`` is the grid's run)."""
    c = curves_of(rows, seed)
    return best_norm(c.norms, c.test_loss, refine=False)


def delays(rows: Sequence[dict[str, Any]], seed: int) -> dict[str, Optional[int]]:
    """``seed``'s delays ``t_gen - t2`` (None: either never reached) of the run held at
    its ``w_c`` (``"fixed"``), the free run and the control."""
    def one(r):
        t2, tg = _time(r["t2"]), _time(r["t_gen"])
        return None if t2 is None or tg is None else tg - t2

    w = w_c_of(rows, seed)
    by_arm = {r["arm"]: r for r in rows if r["seed"] == seed and r["arm"] in ("free", "control")}
    held = [r for r in rows if r["seed"] == seed and r["arm"] == "fixed" and r["fixed_norm"] == w]
    missing = {"free", "control"} - set(by_arm)
    if missing or not held:
        raise ValueError(f"seed {seed} lacks the rows {sorted(missing) + ([] if held else ['fixed at w_c'])}")
    return {"fixed": one(held[0]), "free": one(by_arm["free"]), "control": one(by_arm["control"])}


def shorter(d: Optional[int], ref: Optional[int], frac: float) -> bool:
    """Whether delay ``d`` (None: never) is at most ``frac`` times the reference delay
    ``ref`` (at least 1 step)."""
    return d is not None and ref is not None and d <= frac * max(ref, 1)


def norm_fall_text(norm_t2: Optional[float], norm_t4: Optional[float]) -> str:
    """Chapter 1's one run read against the LU picture (the weight norm falls while it
    generalizes): ``"consistent: ..."`` when the norm at t4 is below the norm at t2,
    ``"not observed: ..."`` when it is not or when the run lacks t2 or t4 (``None``).
    One run: a reading, not a verdict over seeds."""
    if norm_t2 is None or norm_t4 is None:
        return "not observed: the run did not both memorize and generalize"
    if norm_t4 < norm_t2:
        return f"consistent: the norm falls from {norm_t2:.1f} at t2 to {norm_t4:.1f} at t4 (one run)"
    return f"not observed: the norm does not fall ({norm_t2:.1f} at t2, {norm_t4:.1f} at t4; one run)"


def elimination_verdict(fixed: Mapping[int, Optional[int]], free: Mapping[int, Optional[int]],
                        control: Mapping[int, Optional[int]], *, gap: str = "") -> Verdict:
    """Omnigrok's elimination, per seed from the delays (steps from ``t2`` to the
    validation target; None: never) of the run held at ``w_c``, the free run and the
    control:

    - undecided when the control's delay is at most a fifth of the free run's on any seed
      (the test does not tell the control apart);
    - reproduced when the held run's delay is at most a fifth of the free run's on every
      seed; partly reproduced when it is at most half on every seed; else not reproduced.

    ``gap``: the measured delays in words, appended to the reason."""
    seeds = sorted(fixed)
    if not seeds or set(free) != set(seeds) or set(control) != set(seeds):
        return not_testable(f"delays of seeds {sorted(fixed)}, {sorted(free)} and {sorted(control)}: need the same seeds")
    n = len(seeds)
    elim = sum(shorter(fixed[s], free[s], 0.2) for s in seeds)
    half = sum(shorter(fixed[s], free[s], 0.5) for s in seeds)
    ctrl = sum(shorter(control[s], free[s], 0.2) for s in seeds)
    gap = f": {gap}" if gap else ""
    if ctrl:
        return Verdict("undecided", f"the control passes on {ctrl} of {n} seeds" + gap)
    if elim == n:
        return Verdict("reproduced", f"cut to a fifth or less on all {n} seeds" + gap)
    if half == n:
        return Verdict("partly reproduced", f"halved or better on all {n} seeds, cut to a fifth on {elim}" + gap)
    return Verdict("not reproduced", f"halved on {half}, cut to a fifth on {elim} of {n} seeds" + gap)


def lu_verdict(L: Mapping[int, bool], U: Mapping[int, bool], U_on_train: Mapping[int, bool],
               L_on_test: Mapping[int, bool], w_c: Mapping[int, float]) -> Verdict:
    """The L and U curves, per seed: reproduced when the training loss is an L and the
    test loss a U on every seed, and the control of the criteria (the U test on the
    training loss, the L test on the test loss) passes on none; undecided when that
    control passes anywhere; else not reproduced."""
    n, wcs = len(L), ", ".join(f"{w_c[s]:.1f}" for s in sorted(w_c))
    if sum(U_on_train.values()) or sum(L_on_test.values()):
        return Verdict("undecided", f"the control of the criteria passes (U test on the training loss on "
                                    f"{sum(U_on_train.values())}, L test on the test loss on {sum(L_on_test.values())} "
                                    f"of {n} seeds); w_c = {wcs}")
    if all(L.values()) and all(U.values()):
        return Verdict("reproduced", f"on all {n} seeds (training loss an L, test loss a U; neither test passes on "
                                     f"the other curve); w_c = {wcs}")
    return Verdict("not reproduced", f"L on {sum(L.values())}, U on {sum(U.values())} of {n} seeds; w_c = {wcs}")


def drift_verdict(lu_free: Mapping[int, bool], lu_ctrl: Mapping[int, bool], gen_free: Mapping[int, bool],
                  gen_ctrl: Mapping[int, bool], near: float, detail: str = "") -> Verdict:
    """The free run fits above ``w_c`` and generalizes near it (``lu_free`` per seed;
    ``lu_ctrl`` the same test on the control without weight decay; ``near``: the
    tolerance of "near", a factor): undecided when the
    control passes on any seed, reproduced when the free run passes on every seed, else
    not reproduced (``detail``: the measured norms in words). The runs that generalize
    with and without weight decay are appended."""
    n = len(lu_free)
    tail = (f"; without weight decay (control) {sum(gen_ctrl.values())} of {n} runs generalize, "
            f"with it {sum(gen_free.values())} of {n}")
    if any(lu_ctrl.values()):
        return Verdict("undecided", f"the control passes the LU test on {sum(lu_ctrl.values())} of {n} seeds" + tail)
    if all(lu_free.values()):
        return Verdict("reproduced", f"on all {n} seeds: fitted above {near:g} w_c, generalized within {near:g} of w_c"
                       + tail)
    return Verdict("not reproduced", f"{sum(lu_free.values())} of {n} seeds" + (f": {detail}" if detail else "") + tail)


def induction_verdict(big: Mapping[int, bool], small: Mapping[int, bool], detail: str = "") -> Verdict:
    """Inducing grokking with a large initialisation, per seed (``big``: the run with
    it is grokking-like; ``small``: the standard-initialisation control is):
    undecided when a control is grokking-like, reproduced when every large-init seed
    is (at least two), not reproduced otherwise."""
    n = len(big)
    if n < 2:
        return not_testable(f"{n} seed(s): need 2")
    if any(small.values()):
        return Verdict("undecided", f"the standard-init control passes on {sum(small.values())} of {n} seeds"
                       + (f" ({detail})" if detail else ""))
    if all(big.values()):
        return Verdict("reproduced", f"on all {n} seeds, on no control seed" + (f" ({detail})" if detail else ""))
    return Verdict("not reproduced", f"{sum(big.values())} of {n} seeds pass, {sum(small.values())} controls"
                   + (f": {detail}" if detail else ""))


def induction_share_verdict(n_big: int, n_small: int, n: int) -> Verdict:
    """Inducing grokking over many seeds, so that no one seed decides: ``n_big`` of the
    ``n`` large-initialisation runs and ``n_small`` of their ``n`` standard-init controls
    are grokking-like. Reproduced when the lower end of the 95% Wilson interval of the
    large-init share is above one half and the controls' share is below the large-init
    share's lower end; not reproduced when the upper end is below one half; undecided
    otherwise (also when the controls are as grokking-like)."""
    from ..stats import wilson_interval

    if n < 1:
        return not_testable("no seeds")
    for name, k in (("n_big", n_big), ("n_small", n_small)):
        if not 0 <= k <= n:
            raise ValueError(f"{name} = {k} must be between 0 and {n}")
    lo, hi = wilson_interval(n_big, n)
    text = (f"{n_big} of {n} seeds grokking-like with the large initialisation (95% interval {lo:.2f}-{hi:.2f}), "
            f"{n_small} of {n} controls")
    if lo > 0.5 and n_small / n < lo:
        return Verdict("reproduced", text)
    if hi < 0.5:
        return Verdict("not reproduced", text)
    return Verdict("undecided", text)


#: Where the digits induction's rows live, on which seeds, and how they were measured
#: (chapter 8's defaults: ``leave`` for t1/t3, ``reach`` for t2, ``target`` for t4).
DIGITS_FILE = Path(__file__).resolve().parents[2] / "data" / "pool" / "lu_digits.csv"
DIGITS_SEEDS = tuple(range(8))
DIGITS_SETTINGS = dict(leave=0.2, reach=0.99, target=0.9)
DIGITS_COLUMNS = ("config", "seed", "arm", "t2", "t4", "val_at_t2", "final_val")


def digit_times(run: Any, settings: Mapping[str, float] = DIGITS_SETTINGS) -> tuple[Optional[int], Optional[int], float]:
    """``(t2, t4, validation accuracy at t2)`` of a digits run: ``t2`` where training
    accuracy reaches ``reach``, ``t4`` where validation accuracy reaches ``target`` (the
    digits MLP never reaches 99% on held-out images); None: never."""
    from ..phases import run_phase_times

    leave = min(settings["leave"], settings["target"] - 0.01)
    t2 = run_phase_times(run, leave=leave, reach=settings["reach"]).t2
    t4 = run_phase_times(run, leave=leave, reach=settings["target"]).t4
    return t2, t4, value_at(run.val_steps, run.val_acc, t2)


def measure_digits(run: Any, arm: str, settings: Mapping[str, float] = DIGITS_SETTINGS) -> dict[str, Any]:
    """One digits run as a row of :data:`DIGITS_COLUMNS` (times -1 for never)."""
    t2, t4, v2 = digit_times(run, settings)
    return dict(config=run.config.hash(), seed=run.config.seed, arm=arm, t2=-1 if t2 is None else t2,
                t4=-1 if t4 is None else t4, val_at_t2=v2, final_val=float(run.val_acc[-1]))


def digits_times_of(row: Mapping[str, Any]) -> tuple[Optional[int], Optional[int], float]:
    """A row's ``(t2, t4, val_at_t2)`` as :func:`digit_times` gives them."""
    return _time(row["t2"]), _time(row["t4"]), float(row["val_at_t2"])


def write_digits(rows: Sequence[dict[str, Any]], path: Path = DIGITS_FILE) -> Path:
    """``rows`` (:data:`DIGITS_COLUMNS`) as the CSV file ``path``, atomically."""
    from .records import write_csv

    return write_csv(rows, DIGITS_COLUMNS, path)


def read_digits(path: Path = DIGITS_FILE) -> list[dict[str, Any]]:
    """The digits rows, or ``[]`` when the file is absent."""
    from .records import read_csv

    return read_csv(path, DIGITS_COLUMNS, dict(seed=int, t2=int, t4=int, val_at_t2=float, final_val=float))
