"""Chapter 7 (the extreme eigenvalues of the Hessian): what it measures at the loss
spikes and its verdicts, as functions of measured values.

Two tests of the claim "lambda_min stays near 0 and turns negative at the slingshots":

- the **registered** one (:func:`registered_verdict`, kept as it was registered): the
  median ``|lambda_min / lambda_max|`` of every grokking run above that of every
  control, and ``lambda_min`` *resolved negative* more often at the loss spikes than at
  the quiet steps between them. The second part is a yes/no per step, and every step,
  spike or quiet, came out negative: it cannot tell a curvature of -1000 from one of
  -0.1;
- the **magnitude contrast** (:func:`magnitude_verdict`, issue 32): per grokking run,
  ``log10`` of the median ``|lambda_min| / lambda_max`` at its spikes over that at its
  quiet steps (:func:`log_contrast`), on fresh seeds, the mean over seeds with a
  bootstrap interval over seeds; and the same against steps of the run's initial descent
  at the spikes' own training loss (:func:`matched_loss_steps`), since the spikes sit at
  losses of nats and the quiet steps far lower.

:func:`measure_steps` computes the eigenvalues at the spikes, quiet steps and
matched-loss steps of a set of runs (replayed in worker processes), the one path for the
chapter's live seed and for the offline pool (``benchmarks/pool.py``), whose rows
the chapter reads (:func:`pool_rows`).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .verdicts import Verdict, from_interval, not_testable, outcomes_untestable, seed_interval

#: Where the offline pool's rows live, relative to the repository.
POOL_FILE = Path(__file__).resolve().parents[2] / "data" / "pool" / "hessian_p47.csv"

#: How the pool was measured (``benchmarks/pool.py``): the spike finder's window
#: (steps) and most spikes per run, the eigen-solver's tolerance and precision, and the
#: thresholds of t2 and t4; its spike factors, and its examples in the Hessian (256 and
#: every training example).
POOL_SETTINGS = dict(window=100, max_spikes=3, tol=1e-3, float64=True, leave=0.2, reach=0.99)
POOL_FACTORS = (3.0, 5.0, 10.0)
POOL_EXAMPLES = (256, 100_000)

#: The registered test's spike rows of the registered seeds, recorded offline so that the
#: build replays one of them live, not all (``benchmarks/pool.py --parts registered``).
REGISTERED_FILE = Path(__file__).resolve().parents[2] / "data" / "pool" / "hessian_registered_p47.csv"
REGISTERED_COLUMNS = ("config", "seed", "kind", "step", "loss", "lmin", "lmax")
#: The chapter's parameters the record holds (its defaults).
REGISTERED_SETTINGS = dict(seeds=(0, 1, 2), control_r=0.15, n_hvp=256, window=100, spike_factor=5.0, max_spikes=3,
                           tol=1e-3, float64=True, leave=0.2, reach=0.99)

#: The columns of a row of :func:`measure_steps` (one eigenvalue pair at one step).
#: ``t2``, ``t4``: the run's phase times (-1: never), at the chapter's thresholds.
COLUMNS = ("config", "seed", "t2", "t4", "spike_factor", "kind", "step", "loss", "examples", "lmin", "lmax")


def spike_and_quiet_steps(train_loss: Sequence[float], t2: int, *, window: int, spike_factor: float,
                          max_spikes: int) -> tuple[list[int], list[int]]:
    """The first ``max_spikes`` loss spikes after ``t2`` (:func:`grokbook.slingshot.find_spikes`
    on the training loss ``(steps,)``, nats) and the quiet steps halfway between
    consecutive ones (:func:`grokbook.hessian.between_steps`), as two lists of steps."""
    from ..hessian import between_steps
    from ..slingshot import find_spikes

    found = find_spikes(np.asarray(train_loss, np.float64), window=window, spike_factor=spike_factor)
    found = found[found > t2][:max_spikes]
    return [int(s) for s in found], [int(s) for s in between_steps(found)]


def matched_loss_steps(train_loss: Sequence[float], levels: Sequence[float], before: int) -> list[int]:
    """For each loss ``level`` (nats), the first step before ``before`` (say the run's
    ``t2``) whose training loss is at or below it: a step of the initial descent at the
    same loss as a spike, with no spike. Step 0 for a level above the initial loss; -1
    where the loss never falls that low before ``before``."""
    loss = np.asarray(train_loss, np.float64)[:max(int(before), 0)]
    out = []
    for level in levels:
        hit = np.flatnonzero(loss <= level)
        out.append(int(hit[0]) if hit.size else -1)
    return out


def magnitude(lmin: float, lmax: float) -> float:
    """``|lambda_min| / lambda_max`` (dimensionless); ``lambda_max`` must be positive."""
    if not lmax > 0:
        raise ValueError(f"lambda_max = {lmax!r} must be positive")
    return abs(lmin) / lmax


def log_contrast(at: Sequence[float], against: Sequence[float]) -> float:
    """``log10(median(at) / median(against))`` of two sets of magnitudes (:func:`magnitude`):
    how many decades larger ``|lambda_min| / lambda_max`` is at the spikes (``at``) than
    at the steps compared (``against``). NaN when either set is empty."""
    a, b = np.asarray(at, np.float64), np.asarray(against, np.float64)
    if a.size == 0 or b.size == 0:
        return float("nan")
    return float(np.log10(np.median(a) / np.median(b)))


def contrasts(rows: Sequence[dict[str, Any]], spike_factor: float, examples: Optional[int] = None
              ) -> dict[int, dict[str, float]]:
    """Per seed: ``quiet`` and ``matched``, the :func:`log_contrast` of its spikes against
    its quiet steps and against its matched-loss steps, from rows of
    :func:`measure_steps` at ``spike_factor`` (and ``examples`` in the Hessian, default:
    the fewest the rows have)."""
    rows = [r for r in rows if r["spike_factor"] == spike_factor]
    if examples is None and rows:
        examples = min(int(r["examples"]) for r in rows)
    rows = [r for r in rows if int(r["examples"]) == examples]
    out = {}
    for s in sorted({int(r["seed"]) for r in rows}):
        mags = {k: [magnitude(r["lmin"], r["lmax"]) for r in rows if int(r["seed"]) == s and r["kind"] == k]
                for k in ("spike", "quiet", "matched")}
        out[s] = {"quiet": log_contrast(mags["spike"], mags["quiet"]),
                  "matched": log_contrast(mags["spike"], mags["matched"]), "n_spikes": len(mags["spike"])}
    return out


def magnitude_verdict(quiet: tuple[float, float, float], matched: tuple[float, float, float],
                      n_seeds: int) -> Verdict:
    """The magnitude contrast's verdict from two ``(mean, low, high)`` of per-seed
    ``log10`` contrasts (:func:`seed_interval`) over ``n_seeds`` seeds with spikes.

    Reproduced when both intervals lie above 0 (the spikes' ``|lambda_min| /
    lambda_max`` exceeds the quiet steps' and the matched-loss steps'); partly when
    only the first does; otherwise the first comparison's own word (undecided,
    reversed). Not testable with fewer than 2 seeds with spikes."""
    if n_seeds < 2:
        return not_testable(f"{n_seeds} fresh seed(s) with loss spikes after t2: need 2")
    first = from_interval(*quiet, 0.0, what="log10 spike/quiet contrast (mean over seeds)")
    second = from_interval(*matched, 0.0, what="log10 spike/matched-loss contrast")
    if first.word != "reproduced":
        return Verdict(first.word, f"{first.reason}; {second.reason}")
    word = "reproduced" if second.word == "reproduced" else "partly reproduced"
    return Verdict(word, f"{first.reason}; {second.reason}")


def magnitude_test(rows: Sequence[dict[str, Any]], spike_factor: float, examples: Optional[int] = None,
                   live: Optional[dict[str, Any]] = None, *, n_boot: int = 2000) -> dict[str, Any]:
    """The magnitude contrast on rows of :func:`measure_steps` (fresh seeds): per seed
    its :func:`contrasts`; ``quiet`` and ``matched``, the ``(mean, low, high)`` over the
    seeds that count (:func:`seed_interval`); ``left_out``, the seeds that do not count
    and why (a run that does not generalize, ``t4 = -1``; fewer than two spikes, so no
    quiet step); and ``verdict`` (:func:`magnitude_verdict`). ``live``: the result of
    :func:`grokbook.experiments.records.start_check` on one of the seeds; when its start
    disagrees the rows are not those of this code and configuration, and the verdict is
    "not testable" (a seed that starts as recorded and later departs through another
    machine's rounding leaves the records standing)."""
    per_seed = contrasts(rows, spike_factor, examples)
    t4 = {int(r["seed"]): int(r["t4"]) for r in rows}
    left_out = {s: "does not generalize" for s in per_seed if t4[s] < 0}
    left_out.update({s: "fewer than two spikes after t2" for s, c in per_seed.items()
                     if s not in left_out and not math.isfinite(c["quiet"])})
    counted = [s for s in per_seed if s not in left_out]
    quiet = seed_interval([per_seed[s]["quiet"] for s in counted], n_boot=n_boot)
    matched = seed_interval([per_seed[s]["matched"] for s in counted], n_boot=n_boot)
    if live is not None and not live["agrees"]:
        verdict = not_testable(f"the live seed does not start as its record (its first training losses up to "
                               f"{live['max_rel_diff']:.2g} apart, relative)")
    else:
        verdict = magnitude_verdict(quiet, matched, len(counted))
    return dict(per_seed=per_seed, quiet=quiet, matched=matched, counted=counted, left_out=left_out,
                verdict=verdict)


def resolved_ratio(lmin: float, lmax: float, tol: float) -> float:
    """``|lambda_min / lambda_max|``, or 0 when ``lambda_min`` is not resolved as
    negative at the solver's ``tol`` (:func:`grokbook.hessian.resolved_negative`): the
    registered test's per-snapshot value."""
    from ..hessian import resolved_negative

    return abs(lmin / lmax) if resolved_negative(lmin, lmax, tol) else 0.0


def registered_verdict(med_grokking: Sequence[float], med_control: Sequence[float], neg_spike: int,
                       n_spike: int, neg_quiet: int, n_quiet: int, *, missing: Sequence[int] = (),
                       leaky: Sequence[int] = ()) -> Verdict:
    """The chapter's registered verdict, as registered. ``med_grokking``,
    ``med_control``: per seed, the median :func:`resolved_ratio` at the matched
    snapshots; ``neg_spike`` of ``n_spike`` spikes and ``neg_quiet`` of ``n_quiet``
    quiet steps had ``lambda_min`` resolved negative; ``missing``: seeds whose grokking
    run does not generalize; ``leaky``: seeds whose control does.

    Part 1 holds when every grokking median is above every control's; part 2 when the
    spikes' share of negatives is above the quiet steps' (0 without quiet steps).
    Reproduced when both hold, partly when one does; without spikes part 2 cannot be
    made and part 1 alone decides (partly or not). Not testable when a grokking run does
    not generalize or a control does (``leaky`` wins)."""
    untestable = outcomes_untestable(leaky, missing)
    if untestable is not None:
        return untestable
    larger = bool(med_grokking) and bool(med_control) and min(med_grokking) > max(med_control)
    part1 = (f"median |lambda_min / lambda_max| larger in every grokking run than in every control: "
             f"{'yes' if larger else 'no'}")
    if n_spike == 0:
        return Verdict("partly reproduced" if larger else "not reproduced",
                       part1 + "; no loss spike after t2, so the second test cannot be made")
    negative = neg_spike / n_spike > (neg_quiet / n_quiet if n_quiet else 0.0)
    part2 = (f"lambda_min negative at the loss spikes more often than between them: "
             f"{'yes' if negative else 'no'} ({neg_spike} of {n_spike} against {neg_quiet} of {n_quiet})")
    word = "reproduced" if larger and negative else "partly reproduced" if larger or negative else "not reproduced"
    return Verdict(word, f"{part1}; {part2}")


def sign_separates(rows: Sequence[dict[str, Any]], examples: int, spike_factor: float, tol: float) -> bool:
    """Whether, on the Hessian of ``examples`` training examples, ``lambda_min`` is
    resolved negative (:func:`grokbook.hessian.resolved_negative` at ``tol``) at every
    spike and at no quiet step of the runs that generalize (rows of :func:`measure_steps`
    at ``spike_factor``; matched-loss rows are not read). False when there is no such row."""
    from ..hessian import resolved_negative

    mine = [r for r in rows if r["examples"] == examples and r["kind"] in ("spike", "quiet")
            and r["spike_factor"] == spike_factor and r["t4"] >= 0]
    return bool(mine) and all(resolved_negative(r["lmin"], r["lmax"], tol) == (r["kind"] == "spike") for r in mine)


def subset_reading(rows: Sequence[dict[str, Any]], whole: Optional[int], spike_factor: float, tol: float) -> str:
    """What the registered test's failure owes to its Hessian subset, for the chapter's
    prose: when the whole training set (``whole`` examples; None where it was not
    measured) separates spikes from quiet steps by the sign of ``lambda_min``
    (:func:`sign_separates`), the failure belongs to the subset; otherwise it is not
    settled. An exploratory reading: the subset was the registered choice."""
    if whole is not None and sign_separates(rows, whole, spike_factor, tol):
        return ("So on these runs the registered test's failure (negative between the spikes as at them) belongs to "
                "the subset it was registered with, not to the training loss: on the whole training set its own rule "
                "finds every spike negative and no quiet step. That reading is exploratory: the subset was the "
                "registered choice, and the whole set is reported after it.")
    return "Whether the registered test's outcome depends on the subset is not settled by these numbers."


def hessian_subset(config: Any, n: int) -> tuple[Any, Any]:
    """``(x, y)``: a fixed random subset of ``n`` of the training examples of ``config``
    (all of them when it has at most ``n``), drawn from a generator seeded 0 whatever
    the run: the examples of the Hessian."""
    import torch

    from ..tasks import make_dataset

    data = make_dataset(config)
    idx = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(0))[:n]
    return data.train_x[idx], data.train_y[idx]


def eigenpair(config: Any, weights: np.ndarray, n_examples: int, *, tol: float,
              float64: bool = True, idx: Any = None) -> tuple[float, float]:
    """``(lambda_min, lambda_max)`` of the Hessian of the training loss of ``config`` on
    :func:`hessian_subset` of ``n_examples`` examples (or on the training examples
    ``idx``, when given), at the flat ``weights`` ``(P,)``
    (:func:`grokbook.hessian.extreme_eigenvalues` at ``tol``, in float64 by default)."""
    from ..hessian import extreme_eigenvalues
    from ..run import model_with
    from ..tasks import make_dataset
    from ..trainer import loss_fn

    if idx is None:
        x, y = hessian_subset(config, n_examples)
    else:
        data = make_dataset(config)
        x, y = data.train_x[idx], data.train_y[idx]
    model = model_with(config, weights)
    return extreme_eigenvalues(model.double() if float64 else model, x, y,
                               functools.partial(loss_fn, config), tol=tol)


#: The live check's tolerance: recorded and re-measured extremes may differ by at most
#: this fraction of the spectrum's width (threads can change the last bits of a product).
LIVE_TOLERANCE = 1e-6


def live_rows(rows: Sequence[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """The rows of ``seed`` that a live check re-measures: those at or before its first
    spike (its matched-loss steps and the first spike), so that the replay stops early
    (weights equal there follow the same deterministic training to the later steps).
    All its rows when it has no spike."""
    mine = [r for r in rows if int(r["seed"]) == seed]
    spikes = [int(r["step"]) for r in mine if r["kind"] == "spike"]
    return [r for r in mine if not spikes or int(r["step"]) <= min(spikes)]


def live_check(recorded: Sequence[dict[str, Any]], config: Any, weights: dict[int, np.ndarray], *,
               tol: float, float64: bool = True) -> dict[str, Any]:
    """Re-measure a record's eigenvalue pairs (``recorded``: rows of one run, one
    ``examples`` count) at the weights of a live replay of ``config`` (``{step:
    weights}``). Returns ``n`` (pairs), ``max_diff`` (the largest ``|difference|`` of
    either extreme over the spectrum's width ``lmax - lmin``) and ``agrees``
    (``max_diff <= LIVE_TOLERANCE``)."""
    pairs = {}
    for r in recorded:
        key = (int(r["step"]), int(r["examples"]))
        if key not in pairs:
            pairs[key] = (eigenpair(config, weights[key[0]], key[1], tol=tol, float64=float64), r)
    diff = max((max(abs(lmin - r["lmin"]), abs(lmax - r["lmax"])) / (r["lmax"] - r["lmin"])
                for (lmin, lmax), r in pairs.values()), default=float("nan"))
    return dict(n=len(pairs), max_diff=float(diff), agrees=bool(diff <= LIVE_TOLERANCE))


def drawn_subsets(sizes: Sequence[int], n: int, seed: int = 0) -> list[Any]:
    """The registered test's Hessian subsets: for training sets of ``sizes`` examples, in
    order (the chapter's grokking runs, then its controls), ``n`` indices each, all drawn
    from one generator seeded ``seed`` (a run's subset depends on the runs before it)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    return [torch.randperm(size, generator=gen)[:n] for size in sizes]


def spike_rows(run: Any, spikes: Sequence[int], quiet: Sequence[int], weights: dict[int, np.ndarray], idx: Any, *,
               tol: float, float64: bool = True) -> list[dict[str, Any]]:
    """The registered test's rows for one grokking run: at each of its ``spikes`` and
    ``quiet`` steps (weights replayed there: ``{step: (P,)}``) the extreme eigenvalues of
    the Hessian on its training examples ``idx`` (:func:`drawn_subsets`), with
    :data:`REGISTERED_COLUMNS`."""
    rows = []
    for kind, steps in (("spike", spikes), ("quiet", quiet)):
        for step in steps:
            lmin, lmax = eigenpair(run.config, weights[step], len(idx), tol=tol, float64=float64, idx=idx)
            rows.append(dict(config=run.config.hash(), seed=run.config.seed, kind=kind, step=int(step),
                             loss=float(run.metrics["train_loss"][step]), lmin=lmin, lmax=lmax))
    return rows


def rows_differ(recorded: Sequence[dict[str, Any]], measured: Sequence[dict[str, Any]]) -> float:
    """The largest difference of either extreme between recorded and re-measured rows of
    the same steps, over the spectrum's width (``inf`` when their steps differ)."""
    key = lambda r: (r["kind"], int(r["step"]))  # noqa: E731
    a, b = {key(r): r for r in recorded}, {key(r): r for r in measured}
    if set(a) != set(b) or not a:
        return float("inf")
    return max(max(abs(a[k]["lmin"] - b[k]["lmin"]), abs(a[k]["lmax"] - b[k]["lmax"])) / (a[k]["lmax"] - a[k]["lmin"])
               for k in a)


def write_registered(rows: Sequence[dict[str, Any]], path: Optional[Path] = None) -> Path:
    """The registered seeds' spike rows (:data:`REGISTERED_COLUMNS`) as a CSV file."""
    from .records import write_csv

    return write_csv(rows, REGISTERED_COLUMNS, path or REGISTERED_FILE)


def read_registered(path: Optional[Path] = None) -> list[dict[str, Any]]:
    """The registered seeds' recorded spike rows, or ``[]`` when the file is absent."""
    from .records import read_csv

    return read_csv(path or REGISTERED_FILE, REGISTERED_COLUMNS,
                    dict(seed=int, step=int, loss=float, lmin=float, lmax=float))


def registered_record(rows: Sequence[dict[str, Any]], configs: Sequence[Any],
                      settings: dict[str, Any]) -> Optional[list[dict[str, Any]]]:
    """The recorded spike rows of the grokking runs ``configs``, or None when the record
    lacks one of them or was measured with other ``settings`` than
    :data:`REGISTERED_SETTINGS` (then every seed is replayed live)."""
    from .records import rows_of

    if settings != REGISTERED_SETTINGS:
        return None
    return rows_of(rows, configs)


def measure_steps(runs: Sequence[Any], times: Sequence[Any], *, window: int, spike_factors: Sequence[float],
                  max_spikes: int, examples: Sequence[int], tol: float, float64: bool = True,
                  at: Optional[Sequence[Sequence[tuple[str, float, int]]]] = None,
                  processes: Optional[int] = None) -> list[dict[str, Any]]:
    """The eigenvalue pairs at the spikes, quiet steps and matched-loss steps of each run.

    ``times``: each run's phase times (``.t2``, ``.t4``; :func:`grokbook.phases.run_phase_times`).
    For each run and each factor in ``spike_factors``: its spikes after its ``t2`` and
    quiet steps (:func:`spike_and_quiet_steps`), and for each spike the step of the
    initial descent at its loss (:func:`matched_loss_steps`, before ``t2``). The runs are
    replayed once each to the last step wanted (:func:`grokbook.sweeping.replays`,
    worker processes) and each distinct step gets one :func:`eigenpair` per entry of
    ``examples``. ``at``: per run, ``(kind, spike_factor, step)`` triples to measure
    instead of finding them (a record's steps, to check it). Returns rows with
    :data:`COLUMNS` (``config``: the run's config hash; ``loss``: the training loss at
    the step, nats)."""
    from ..sweeping import replays
    from .records import step_code

    wanted: list[list[tuple[str, float, int]]] = []
    for i, (run, t) in enumerate(zip(runs, times)):
        t2 = t.t2 or 0
        if at is not None:
            wanted.append([(k, float(f), int(s)) for k, f, s in at[i]])
            continue
        loss = run.metrics["train_loss"]
        mine: list[tuple[str, float, int]] = []
        for f in spike_factors:
            spikes, quiet = spike_and_quiet_steps(loss, t2, window=window, spike_factor=f, max_spikes=max_spikes)
            matched = matched_loss_steps(loss, [loss[s] for s in spikes], t2)
            mine += [("spike", float(f), s) for s in spikes] + [("quiet", float(f), s) for s in quiet]
            mine += [("matched", float(f), s) for s in matched if s >= 0]
        wanted.append(mine)
    weights = replays([run.config for run in runs], [[s for _, _, s in w] for w in wanted], processes=processes)
    rows = []
    for run, t, w, got in zip(runs, times, wanted, weights):
        pairs: dict[tuple[int, int], tuple[float, float]] = {}
        loss, n_train = run.metrics["train_loss"], len(run.dataset().train_y)
        for kind, f, step in w:
            for n in examples:
                if (step, n) not in pairs:
                    pairs[step, n] = eigenpair(run.config, got[step], n, tol=tol, float64=float64)
                lmin, lmax = pairs[step, n]
                rows.append(dict(config=run.config.hash(), seed=run.config.seed, t2=step_code(t.t2),
                                 t4=step_code(t.t4), spike_factor=f, kind=kind,
                                 step=step, loss=float(loss[step]),
                                 examples=min(n, n_train), lmin=lmin, lmax=lmax))
    return rows


def write_pool(rows: Sequence[dict[str, Any]], path: Path = POOL_FILE) -> Path:
    """``rows`` (:data:`COLUMNS`) as the CSV file ``path``, atomically."""
    from .records import write_csv

    return write_csv(rows, COLUMNS, path)


def read_pool(path: Path = POOL_FILE) -> list[dict[str, Any]]:
    """The offline pool's rows (:data:`COLUMNS`), or ``[]`` when the file is absent."""
    from .records import read_csv

    conv = dict(seed=int, t2=int, t4=int, spike_factor=float, step=int, loss=float, examples=int, lmin=float,
                lmax=float)
    return read_csv(path, COLUMNS, conv)


def pool_rows(pool: Sequence[dict[str, Any]], configs: Sequence[Any], spike_factor: float, examples: int,
              settings: dict[str, Any]) -> Optional[list[dict[str, Any]]]:
    """The pool's rows for ``configs`` (every one of them recorded, at ``spike_factor``
    and with ``examples`` in the Hessian), or None when the pool does not hold them all
    or was measured with other ``settings`` than :data:`POOL_SETTINGS` (then the chapter
    measures them live)."""
    if set(settings) != set(POOL_SETTINGS) or any(settings[k] != v for k, v in POOL_SETTINGS.items()):
        return None
    from .records import rows_of

    return rows_of([r for r in pool if math.isclose(r["spike_factor"], spike_factor) and r["examples"] == examples],
                   configs)


# --- Controls with the same training examples (issue 32) ------------------------------
#
# The registered controls train on r = 0.15 (331 examples against 1104). A matched control
# keeps the grokking run's seed (initialisation and split), r and model and drops the
# weight decay: it fits the same 1104 examples and, within the budget, does not generalize
# (a pilot on seed 100: t2 49, validation accuracy 18% at step 4000).

#: What the matched control changes in the grokking configuration.
MATCHED_CHANGE = dict(weight_decay=0.0)

#: Where the matched pairs' rows live: the eigenvalues at the same snapshot steps of each
#: grokking run and its matched control (``benchmarks/pool.py --parts controls``), and the
#: controls' own spike rows (:data:`COLUMNS`).
MATCHED_FILE = POOL_FILE.with_name("hessian_matched_p47.csv")
MATCHED_SPIKES_FILE = POOL_FILE.with_name("hessian_matched_spikes_p47.csv")

#: How the matched pairs were measured: snapshots per pair from the grokking run's t2
#: on, examples in the Hessian (a fixed subset, the same for both runs of a pair since
#: they share the split, and every training example), solver, thresholds.
MATCHED_SETTINGS = dict(n_snapshots=8, examples=(256, 100_000), tol=1e-3, float64=True, leave=0.2, reach=0.99)

#: The columns of a row of :func:`measure_matched` (one eigenvalue pair of one run at
#: one snapshot).
MATCHED_COLUMNS = ("config", "seed", "group", "t2", "t4", "step", "loss", "examples", "lmin", "lmax")


def snapshot_picks(snapshot_steps: Sequence[int], t2: Optional[int], n: int) -> list[int]:
    """``n`` snapshot steps (fewer when fewer exist) evenly spread over the snapshots at
    or after ``t2`` (0 when None), the first and the last included: the chapter's
    matched snapshots."""
    s = np.asarray(snapshot_steps, dtype=np.int64)
    after = s[s >= (t2 or 0)]
    if len(after) == 0 or n < 1:
        return []
    return [int(x) for x in after[np.unique(np.round(np.linspace(0, len(after) - 1, n)).astype(int))]]


def measure_matched(runs: dict[str, Any], times: dict[str, Any], *, n_snapshots: int, examples: Sequence[int],
                    tol: float, float64: bool = True) -> list[dict[str, Any]]:
    """The extreme eigenvalues of a grokking run and its matched control
    (``runs``/``times``: ``{"grokking": ..., "control": ...}``, runs with the same
    snapshot steps) at :func:`snapshot_picks` of the grokking run's snapshots from its
    t2 on, for each entry of ``examples`` (:func:`eigenpair`), as rows with
    :data:`MATCHED_COLUMNS` (``loss``: the whole training set's, nats)."""
    from .records import step_code
    from .trajectory import training_losses

    g = runs["grokking"]
    steps = snapshot_picks(g.snapshot_steps, times["grokking"].t2, n_snapshots)
    rows = []
    for group in ("grokking", "control"):
        run, t = runs[group], times[group]
        n_train = len(run.dataset().train_y)
        idx = [int(np.flatnonzero(run.snapshot_steps == s)[0]) for s in steps]
        losses = training_losses(run.config, run.snapshots[idx])
        for step, i, loss in zip(steps, idx, losses):
            for n in examples:
                lmin, lmax = eigenpair(run.config, run.snapshots[i], n, tol=tol, float64=float64)
                rows.append(dict(config=run.config.hash(), seed=run.config.seed, group=group, t2=step_code(t.t2),
                                 t4=step_code(t.t4), step=int(step), loss=float(loss), examples=min(n, n_train),
                                 lmin=lmin, lmax=lmax))
    return rows


def matched_effect(rows: Sequence[dict[str, Any]], examples: int, tol: float) -> dict[int, dict[str, float]]:
    """Per seed, from rows of :func:`measure_matched` with ``examples`` in the Hessian:
    ``grokking`` and ``control``, the median :func:`resolved_ratio` over the pair's
    snapshots (the registered test's per-run value), ``difference`` (grokking minus
    control), and ``usable``: 1.0 when the grokking run generalizes and the control does
    not (``t4``), else 0.0."""
    out = {}
    for s in sorted({int(r["seed"]) for r in rows}):
        mine = [r for r in rows if int(r["seed"]) == s and int(r["examples"]) == examples]
        med = {g: float(np.median([resolved_ratio(r["lmin"], r["lmax"], tol) for r in mine if r["group"] == g]))
               for g in ("grokking", "control")}
        t4 = {g: next(int(r["t4"]) for r in mine if r["group"] == g) for g in ("grokking", "control")}
        out[s] = dict(med, difference=med["grokking"] - med["control"],
                      usable=float(t4["grokking"] >= 0 and t4["control"] < 0))
    return out


def matched_verdict(difference: tuple[float, float, float], n_larger: int, n_seeds: int) -> Verdict:
    """The registered test's first part with matched controls, from ``(mean, low, high)``
    over seeds of :func:`matched_effect`'s ``difference`` and the count ``n_larger`` of
    the ``n_seeds`` usable seeds whose grokking median is above its control's:
    reproduced when the interval lies above 0; otherwise what it says (undecided,
    reversed). Not testable with fewer than 2 usable seeds."""
    if n_seeds < 2:
        return not_testable(f"{n_seeds} seed(s) whose grokking run generalizes and whose control does not: need 2")
    v = from_interval(*difference, 0.0, what="median |lambda_min / lambda_max|, grokking run minus matched control "
                                             "(mean over seeds)")
    return Verdict(v.word, f"{v.reason}; grokking above its control in {n_larger} of {n_seeds} seeds")


def write_matched(rows: Sequence[dict[str, Any]], path: Path = MATCHED_FILE) -> Path:
    """``rows`` (:data:`MATCHED_COLUMNS`) as the CSV file ``path``, atomically."""
    from .records import write_csv

    return write_csv(rows, MATCHED_COLUMNS, path)


def read_matched(path: Path = MATCHED_FILE) -> list[dict[str, Any]]:
    """The matched pairs' rows, or ``[]`` when the file is absent."""
    from .records import read_csv

    return read_csv(path, MATCHED_COLUMNS, dict(seed=int, t2=int, t4=int, step=int, loss=float, examples=int,
                                                lmin=float, lmax=float))
