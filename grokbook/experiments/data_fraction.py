"""Chapter 10, how long until grokking: the time to generalize against the train fraction.

The claim (Tikeng Notsawo et al. 2023): ``t4(r) = a r^(-gamma) + b`` with gamma about
7.7 for modular addition and 1.2 for composition in S5. :func:`measure` trains (or
loads) a sweep of train fractions x seeds and a control without weight decay, measures
t2, t3, t4 of every run, and fits the power law both ways of handling censored runs;
:func:`verdict` decides the claim from the result; the ``plot_*`` functions draw it,
each on a given ``ax`` (or axes) or a new figure. :func:`glued` is every value the
chapter's prose prints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ..phases import PowerLawFit, censored_spearman, fit_power_law, fraction_table, is_grokking, run_phase_times
from .parameters import ChapterParameters
from .thresholds import for_chapter
from .prose import at_step, number_text
from .verdicts import Verdict

_TH = for_chapter("10_data_fraction")
#: The exponents the paper reports, and the range of r its fits used.
PAPER_GAMMA = {"add": (7.7, "modular addition, r >= 0.2"), "s5": (1.2, "composition in S5")}
#: The authors' lr x weight decay (1e-3 x 1), the time scale the prose compares with.
PAPER_LR_WD = 1e-3 * 1.0
#: The verdict's rank-correlation rule: t4 falls with r when rho(r, t4) <= this.
RHO_MAX = -0.7
MODE_TEXT = {"lower_bound": "censored runs as lower bounds", "exclude_r": "censored fractions left out"}
OPS = {"add": "a + b", "sub": "a - b", "mul": "a * b", "div": "a / b", "x2+y2": "a^2 + b^2",
       "x2+xy+y2": "a^2 + ab + b^2", "x3+xy": "a^3 + ab"}


@dataclass(frozen=True)
class Params(ChapterParameters):
    """The chapter's parameters (the notebook's parameters cell)."""

    task: str = "add"  # binary operation of the main sweep: add, sub, mul, div, x2+y2, x2+xy+y2, x3+xy, s5
    p: int = 31  # modulus: the examples are all p*p pairs (a, b)
    r_grid: list = field(default_factory=lambda: [0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9])  # train fractions swept
    seeds: list = field(default_factory=lambda: [0, 1, 2, 3, 4])  # seeds at every fraction, each setting the initialisation and the train/validation split
    model: str = "mlp"  # "mlp" (embeddings of a and b concatenated, ReLU layers) or "transformer"
    n_layers: int = 1  # hidden layers of the MLP, or transformer blocks
    d_model: int = 32  # embedding (transformer: residual) width
    d_mlp: int = 256  # hidden width of the MLP or of the transformer's feed-forward layer (0: 4 d_model)
    n_heads: int = 4  # attention heads (transformer only)
    layer_norm: bool = False  # pre-LayerNorm in every block, or no normalisation at all (transformer only)
    arch: str = "book"  # model and sequence: "book" (this book's) or "grok" (the authors' openai/grok setup; overrides model)
    lr: float = 0.01  # AdamW learning rate (after a 10-step linear warm-up)
    weight_decay: float = 1.0  # AdamW decoupled weight decay
    batch_size: int = 0  # minibatch size; zero means full batch, one step per epoch
    steps: int = 3000  # step budget of every run: a run not generalized by then is censored
    control_weight_decay: float = 0.0  # the control: every seed at the largest fraction again with this weight decay
    leave: float = _TH.leave  # an accuracy at or above this has left chance (t3)
    reach: float = _TH.reach  # an accuracy at or above this counts as 100% (t2, t4)
    min_ratio: float = _TH.delay  # a run groks when it generalizes with t4 at least this multiple of t2
    plateau_ratio: float = 2.0  # a run has a memorization plateau when validation leaves chance (t3) at least this multiple of t2
    censoring: str = "lower_bound"  # fit with censored runs as lower bounds (lower_bound) or without their fractions (exclude_r)
    n_boot: int = 500  # bootstrap resamples of the seeds within each fraction
    level: float = 0.9  # level of the bootstrap percentile intervals
    s5_r_grid: list = field(default_factory=list)  # if not empty, also sweep composition in S5 over these fractions (same model and optimizer)
    workers: int = 2  # local worker processes that train the sweep, one thread each (0: in this process)

    @property
    def other_mode(self) -> str:
        """The censoring mode the chapter reports beside its own."""
        return "exclude_r" if self.censoring == "lower_bound" else "lower_bound"

    def base(self, task: str, weight_decay: float):
        """The run configuration every run of a sweep of ``task`` shares."""
        from ..config import RunConfig

        return RunConfig(task=task, p=self.p, model=self.model, n_layers=self.n_layers, d_model=self.d_model,
                         d_mlp=self.d_mlp, n_heads=self.n_heads, arch=self.arch, layer_norm=self.layer_norm,
                         lr=self.lr, weight_decay=weight_decay, batch_size=self.batch_size, steps=self.steps,
                         n_snapshots=4)


@dataclass
class Sweep:
    """One sweep of train fractions x seeds: its configs and runs (in the same order),
    ``table``, one row per run (a ``pandas.DataFrame``: r, seed, t2, t3, t4 in steps,
    NaN where not reached; diverged, censored, groks, plateau; final_val; steps_run), the
    two fits (``None`` with the reason when the data cannot support one) and the seconds
    spent training or loading."""

    configs: list
    runs: list
    table: Any
    seconds: float
    fit: Optional[PowerLawFit] = None
    fit_error: str = ""
    fit_other: Optional[PowerLawFit] = None
    fit_other_error: str = ""


@dataclass
class Result:
    """What the chapter measured: the main sweep, the control (every seed at the largest
    fraction with the control's weight decay) and, if asked, the S5 sweep."""

    params: Params
    sweep: Sweep
    control: Sweep
    s5: Optional[Sweep] = None

    @property
    def df(self):
        """The main sweep's per-run table."""
        return self.sweep.table

    @property
    def fractions(self):
        """The per-fraction table (:func:`grokbook.phases.fraction_table`) of the main sweep."""
        return summary(self.sweep.table)

    @property
    def rho(self) -> float:
        """Spearman's rho of r and t4 over the main sweep, censored and diverged runs
        ranked above every observed time (:func:`grokbook.phases.censored_spearman`)."""
        df = self.sweep.table
        return censored_spearman(df.r, df.t4, df.censored | df.diverged)

    @property
    def grok_fractions(self) -> list[float]:
        """The fractions at which a majority of seeds grok."""
        share = self.sweep.table.groupby("r").groks.mean()
        return [x for x, s in share.items() if s > 0.5]

    def report(self, store_root: Any = "") -> str:
        """One line: how many runs, how long, and whether the fit worked."""
        n = len(self.sweep.runs) + len(self.control.runs)
        secs = self.sweep.seconds + self.control.seconds
        return (f"{n} runs of {self.params.task} trained or loaded in {secs:.0f} s "
                f"(store {store_root}); fit: {self.sweep.fit_error or 'ok'}")


def run_table(configs, runs, prm: Params):
    """One row per run (see :class:`Sweep`), at the thresholds of ``prm``."""
    import pandas as pd

    def nan_if_none(x):
        return np.nan if x is None else float(x)

    rows = []
    for c, run in zip(configs, runs):
        pt = run_phase_times(run, leave=prm.leave, reach=prm.reach)
        diverged = run.diverged_at is not None
        rows.append(dict(r=c.r, seed=c.seed, t2=nan_if_none(pt.t2), t3=nan_if_none(pt.t3),
                         t4=nan_if_none(pt.t4), diverged=diverged,
                         censored=pt.t4 is None and not diverged, groks=is_grokking(pt, prm.min_ratio),
                         plateau=pt.t2 is not None and pt.t3 is not None and pt.t3 >= prm.plateau_ratio * max(pt.t2, 1),
                         final_val=float(run.val_acc[-1]), steps_run=len(run.steps)))
    return pd.DataFrame(rows)


def fit_times(df, mode: str, n_boot: int, level: float) -> tuple[Optional[PowerLawFit], str]:
    """:func:`grokbook.phases.fit_power_law` on the runs of ``df`` (a per-run table) that
    did not diverge, censored runs at the steps they ran; ``(None, reason)`` if the data
    cannot support a fit."""
    ok = df[~df.diverged]
    # a threshold already met at initialisation (t4 = 0) counts as step 1: the fit is in log time
    t = np.maximum(np.where(ok.censored, ok.steps_run, ok.t4.fillna(0)).astype(float), 1.0)
    try:
        return fit_power_law(ok.r.to_numpy(), t, ok.censored.to_numpy(), censoring=mode,
                             n_boot=n_boot, level=level), ""
    except ValueError as err:
        return None, str(err)


def measure_sweep(prm: Params, task: str, fractions, weight_decay: float, *, fit: bool = True,
                  store=None) -> Sweep:
    """Train (or load) ``task`` over ``fractions`` x ``prm.seeds`` at ``weight_decay``
    and, if ``fit``, fit the power law both ways."""
    from ..sweeping import grid, replicates, sweep

    configs = replicates(grid(prm.base(task, weight_decay), r=list(fractions)), prm.seeds)
    start = time.perf_counter()
    runs = sweep(configs, executor=prm.workers or None, store=store, progress=False)
    out = Sweep(configs, runs, run_table(configs, runs, prm), time.perf_counter() - start)
    if fit:
        out.fit, out.fit_error = fit_times(out.table, prm.censoring, prm.n_boot, prm.level)
        out.fit_other, out.fit_other_error = fit_times(out.table, prm.other_mode, prm.n_boot, prm.level)
    return out


def measure(prm: Params, store=None) -> Result:
    """The chapter's measurements: the main sweep, the control and (if
    ``prm.s5_r_grid``) the S5 sweep, trained or loaded through the run store."""
    if not prm.r_grid or not prm.seeds:
        raise ValueError("r_grid and seeds must not be empty")
    main = measure_sweep(prm, prm.task, prm.r_grid, prm.weight_decay, store=store)
    control = measure_sweep(prm, prm.task, [max(prm.r_grid)], prm.control_weight_decay, fit=False, store=store)
    s5 = measure_sweep(prm, "s5", prm.s5_r_grid, prm.weight_decay, store=store) if prm.s5_r_grid else None
    return Result(prm, main, control, s5)


def summary(frame):
    """The fraction table (:func:`grokbook.phases.fraction_table`) of the runs of a
    per-run table that did not diverge."""
    ok = frame[~frame.diverged]
    return fraction_table(ok.r, ok.t2, ok.t4, ok.steps_run, ok.groks)


def shown(t):
    """A fraction table for the reader: ``>=`` marks the lower bounds."""
    import pandas as pd

    return pd.DataFrame({
        "median t2": t["median t2"],
        "median t4": [f"{'>= ' if b else ''}{v:.0f}" for v, b in zip(t["median t4"], t["median t4 is a lower bound"])],
        "generalized": t.generalized, "grokked": t.grokked,
        "local gamma (to next r)": ["" if np.isnan(v) else f"{'>= ' if b else ''}{v:.2f}"
                                    for v, b in zip(t["local gamma"], t["local gamma is a lower bound"])]})


def local_trend(table) -> str:
    """A sentence comparing the local exponent at the smallest and at the largest
    fraction of a fraction table: does the law steepen at small r?"""
    local = table[table["local gamma"].notna()]
    if len(local) < 2:
        return "too few fractions with a measured median to compare local exponents"
    lo, hi = local.iloc[0], local.iloc[-1]
    lo_text = f"{'at least ' if lo['local gamma is a lower bound'] else ''}{lo['local gamma']:.1f}"
    if lo["local gamma"] > hi["local gamma"]:
        return (f"the local exponent is {lo_text} from r = {local.index[0]:g} upwards against "
                f"{hi['local gamma']:.1f} from r = {local.index[-1]:g}: steeper at the smallest fractions than at the largest")
    if lo["local gamma is a lower bound"]:
        return (f"the local exponent from r = {local.index[0]:g} is only bounded below ({lo_text}), "
                f"below the {hi['local gamma']:.1f} from r = {local.index[-1]:g}: whether the law steepens is not determined")
    return (f"the local exponent is {lo_text} from r = {local.index[0]:g} upwards against "
            f"{hi['local gamma']:.1f} from r = {local.index[-1]:g}: no steepening at small r")


def fmt_fit(f: Optional[PowerLawFit], err: str) -> str:
    """A fit in one line: gamma with its interval, a, b, how censored runs entered, the
    fractions fitted, and whether a parameter sits on a bound; ``no fit (reason)``."""
    if f is None:
        return f"no fit ({err})"
    if f.censoring == "lower_bound":
        how = f"{f.n_censored} censored run(s) entered as lower bounds"
    else:
        how = ("fractions excluded for censoring: " + ", ".join(f"{x:g}" for x in f.r_excluded)
               if len(f.r_excluded) else "no fraction excluded")
    bound = ("; gamma sits on the bound of its search range: the data do not determine it" if f.gamma_at_bound
             else "; the curve runs to zero at r = 1 (b close to -a), a bound of the parameterisation: "
                  "the exponent is not identified" if f.f1_at_bound else "")
    return (f"gamma = {f.gamma:.2f} [{f.gamma_ci[0]:.2f}, {f.gamma_ci[1]:.2f}], a = {f.a:.3g} steps, "
            f"b = {f.b:.3g} steps ({how}; fitted on r = {', '.join(f'{x:g}' for x in f.r_fit)}{bound})")


def model_text(prm: Params) -> str:
    """The model in words."""
    if prm.arch == "grok":
        return f"openai/grok transformer ({prm.n_layers} post-LayerNorm block(s), width {prm.d_model})"
    if prm.model == "transformer":
        return (f"transformer ({prm.n_layers} block(s), width {prm.d_model}, "
                f"{'with LayerNorm' if prm.layer_norm else 'no LayerNorm'})")
    return (f"MLP (embeddings of width {prm.d_model} for a and b, concatenated, then {prm.n_layers} "
            f"ReLU layer(s) of width {prm.d_mlp})")


def verdict(res: Result) -> Verdict:
    """The claim decided, with the rules written in the chapter before the runs:
    reproduced when t4 falls with r (rho <= :data:`RHO_MAX`), every seed generalizes at
    the largest fraction, a majority of seeds grok at some fraction, most runs that
    generalize have a memorization plateau, the control fails those tests (fewer than
    all of its seeds generalize and at most half grok), the fit exists with no parameter
    on a bound, and the paper's exponent lies in the fit's interval; partly reproduced
    when all but the last hold; not reproduced otherwise."""
    prm, df, control = res.params, res.sweep.table, res.control.table
    fit, n_seeds, r_hi = res.sweep.fit, len(prm.seeds), max(prm.r_grid)
    rho, grok_fractions = res.rho, res.grok_fractions
    gen_hi = int(df[df.r == r_hi].t4.notna().sum())
    generalized = df[df.t4.notna()]
    n_gen_runs, n_plateau = len(generalized), int(generalized.plateau.sum())
    paper_gamma = PAPER_GAMMA.get(prm.task, (None, ""))[0]
    paper_in_ci = fit is not None and paper_gamma is not None and fit.gamma_ci[0] <= paper_gamma <= fit.gamma_ci[1]
    grok_text = (f"a majority of seeds grok (t4 >= {prm.min_ratio:g} t2) at r = {', '.join(f'{x:g}' for x in grok_fractions)}"
                 if grok_fractions else f"at no fraction does a majority of seeds grok (t4 >= {prm.min_ratio:g} t2)")
    control_gen, control_grok = int(control.t4.notna().sum()), int(control.groks.sum())
    control_fails = control_gen < n_seeds and control_grok <= n_seeds / 2
    evidence = (f"rank correlation of r and t4 rho = {number_text(rho, '.2f', 'not measurable')}, {gen_hi}/{n_seeds} seeds generalize "
                f"at r = {r_hi:g}, {grok_text}, a memorization plateau (t3 >= {prm.plateau_ratio:g} t2) in "
                f"{n_plateau}/{n_gen_runs} runs that generalize; the control (weight decay {prm.control_weight_decay:g}, "
                f"r = {r_hi:g}): {control_gen}/{n_seeds} generalize, {control_grok}/{n_seeds} grok"
                + ("" if control_fails else ", so the tests do not tell grokking from its absence"))
    if (rho <= RHO_MAX and gen_hi == n_seeds and grok_fractions and n_plateau > n_gen_runs / 2 and control_fails
            and fit is not None and not fit.at_bound):
        reason = f"{evidence}; t4 = a r^-gamma + b fits with gamma = {fit.gamma:.2f} [{fit.gamma_ci[0]:.2f}, {fit.gamma_ci[1]:.2f}]"
        if paper_gamma is not None:
            reason += (", an interval that contains" if paper_in_ci else ", an interval that excludes") + f" the paper's {paper_gamma}"
        return Verdict("reproduced" if paper_in_ci else "partly reproduced", reason)
    return Verdict("not reproduced", f"{evidence}; fit: {fmt_fit(fit, res.sweep.fit_error)}")


def verdict_text(v: Verdict) -> str:
    """The verdict as the chapter prints it: a negative verdict is said to hold for
    these parameters."""
    return f"{v.word} with these parameters: {v.reason}" if v.word == "not reproduced" else str(v)


def glued(res: Result) -> dict[str, Any]:
    """Every value the chapter's prose prints, by its glue name (the verdict apart:
    :func:`verdict`, :func:`verdict_text`)."""
    prm, df, runs = res.params, res.sweep.table, res.sweep.runs
    r_lo, r_hi = min(prm.r_grid), max(prm.r_grid)
    fit, fit_other = res.sweep.fit, res.sweep.fit_other
    paper_gamma = PAPER_GAMMA.get(prm.task, (None, ""))[0]
    from ..omnigrok import value_at

    import pandas as pd

    val_at_t2 = pd.Series([value_at(run.val_steps, run.val_acc, None if np.isnan(t2) else int(t2))
                           for run, t2 in zip(runs, df.t2)], index=df.index)  # NaN where t2 was never reached
    generalized = df[df.t4.notna()]
    at_hi = df[df.r == r_hi]
    table = res.fractions
    full = table[table.generalized.map(lambda g: g.split("/")[0] == g.split("/")[1])]
    nan = float("nan")
    t2_lo, t2_hi = df[df.r == r_lo].t2.median(), at_hi.t2.median()
    med_step = lambda t: at_step(None if not np.isfinite(t) else int(round(t)), prm.steps)  # noqa: E731
    t3_over_t2 = float((generalized.t3 / generalized.t2).median()) if len(generalized) else nan
    if np.isfinite(t2_lo) and np.isfinite(t2_hi):
        t2_text = (f"The median memorization time t₂ is {t2_lo:.0f} steps at the smallest fraction and "
                   f"{t2_hi:.0f} at the largest: fewer examples are "
                   + ("no slower to memorize." if t2_lo <= 1.1 * t2_hi else "slower to memorize."))
    else:
        t2_text = (f"The median memorization time t₂ is {med_step(t2_lo)} at the smallest fraction and "
                   f"{med_step(t2_hi)} at the largest.")
    plateau_text = (f"{int(generalized.plateau.sum())} of the {len(generalized)} runs that generalized have one "
                    f"(median t₃ / t₂ = {number_text(t3_over_t2, '.1f')})." if len(generalized) else
                    "No run generalized, so none has a plateau to measure.")
    hi_t4 = at_hi.t4.median() if at_hi.t4.notna().all() else nan
    hi_text = (f"At the largest fraction, r = {r_hi:g}, the median run "
               + (f"memorizes by step {t2_hi:.0f}" if np.isfinite(t2_hi) else
                  f"does not memorize within {prm.steps} steps")
               + (f" and generalizes at step {hi_t4:.0f}." if np.isfinite(hi_t4) else
                  " and not every seed generalizes within the budget."))
    if len(full) >= 2:
        lo_full, growth = full.index.min(), full.loc[full.index.min(), "median t4"] / full.loc[full.index.max(), "median t4"]
        full_text = (f"At the smallest fraction where every seed generalized, r = {lo_full:g}, the median t₄ is "
                     f"{full.loc[lo_full, 'median t4']:.0f}, {growth:.1f} times longer than at the largest such "
                     "fraction.")
    else:
        full_text = (f"Every seed generalized at {len(full)} of the fractions: too few to compare the time to "
                     "generalize across fractions.")
    out: dict[str, Any] = dict(
        n_params=runs[0].snapshots.shape[1], model_text=model_text(prm), control_wd=prm.control_weight_decay,
        task_text="composition in S5" if prm.task == "s5" else f"{OPS.get(prm.task, prm.task)} mod {prm.p}",
        n_layers=prm.n_layers, d_model=prm.d_model, p=prm.p, lr=prm.lr, wd=prm.weight_decay, steps=prm.steps,
        reach=prm.reach, min_ratio=prm.min_ratio, level_pct=round(100 * prm.level), n_boot=prm.n_boot,
        n_fractions=len(prm.r_grid), r_min=r_lo, r_max=r_hi, n_seeds=len(prm.seeds), n_runs=len(df),
        sweep_s=res.sweep.seconds + res.control.seconds, n_censored=int(df.censored.sum()),
        n_diverged=int(df.diverged.sum()), t2_text=t2_text, t2_lo_at=med_step(t2_lo), t2_hi_at=med_step(t2_hi),
        val_t2_lo=number_text(100 * val_at_t2[df.r == r_lo].median(), ".0f", "not measurable (no run fitted)", "%"),
        val_t2_hi=number_text(100 * val_at_t2[df.r == r_hi].median(), ".0f", "not measurable (no run fitted)", "%"),
        n_plateau=int(generalized.plateau.sum()), n_gen_runs=len(generalized), plateau_text=plateau_text,
        leave=prm.leave, plateau_ratio=prm.plateau_ratio, hi_text=hi_text, full_text=full_text,
        t4_hi=int(round(at_hi.t4.median())) if at_hi.t4.notna().all() else "never (censored)", r_hi=r_hi,
        local_trend=local_trend(table),
        censored_r=", ".join(f"{x:g}" for x in sorted(df[df.censored].r.unique())) or "none",
        rho=number_text(res.rho, ".2f", "not measurable"),
        ratio_hi=number_text((at_hi.t4 / at_hi.t2).median(), ".1f",
                             "not measurable (its runs did not both memorize and generalize)"), n_grok=int(df.groks.sum()), n_gen=int(df.t4.notna().sum()),
        grok_fractions=", ".join(f"{x:g}" for x in res.grok_fractions) or "none of the fractions",
        fit_main=fmt_fit(fit, res.sweep.fit_error), fit_other=fmt_fit(fit_other, res.sweep.fit_other_error),
        censoring=prm.censoring, n_observed_fractions=int(df[df.t4.notna()].r.nunique()),
        other_mode=prm.other_mode, lrwd=prm.lr * prm.weight_decay, lrwd_ratio=prm.lr * prm.weight_decay / PAPER_LR_WD,
        n_pairs=len(runs[0].dataset().train_y) + len(runs[0].dataset().val_y),
        paper_gamma=paper_gamma if paper_gamma is not None else "not reported for this task",
        gamma=fit.gamma if fit is not None else nan, gamma_lo=fit.gamma_ci[0] if fit is not None else nan,
        gamma_hi=fit.gamma_ci[1] if fit is not None else nan,
        paper_factor=number_text(2 ** paper_gamma if paper_gamma is not None else None, ".0f", "not reported"),
        our_factor=number_text(2 ** fit.gamma if fit is not None else None, ".1f", "not measurable (no fit)"),
        s5_text=(fmt_fit(res.s5.fit, res.s5.fit_error) if res.s5 is not None else
                 "not run in this profile (s5_r_grid is empty: composition in S5 has 14,400 pairs, too many for the CPU budget)"))
    return out


# ---------------------------------------------------------------- figures


def _jitter(seeds, seed_values):
    """Multiplicative offsets in r so that the seeds of one fraction do not overlap."""
    k = np.searchsorted(sorted(seeds), seed_values)
    return 1 + 0.012 * (k - (len(seeds) - 1) / 2)


def _r_axis(ax, r_grid) -> None:
    from ..plots import log_ticks

    ax.set_xticks(r_grid, [f"{x:g}" for x in r_grid])
    ax.minorticks_off()
    log_ticks(ax)


def plot_curves(res: Result, axes=None):
    """Training (``axes[0]``) and validation (``axes[1]``) accuracy against the step (log
    axis), one seed at every fraction, and the control's validation accuracy. Returns
    the figure."""
    import matplotlib.pyplot as plt

    prm = res.params
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.8), constrained_layout=True, sharey=True)
    cmap = plt.get_cmap("viridis")
    colour = {r: cmap(i / max(len(prm.r_grid) - 1, 1)) for i, r in enumerate(sorted(prm.r_grid))}
    for c, run in zip(res.sweep.configs, res.sweep.runs):
        if c.seed != prm.seeds[0]:
            continue
        axes[0].plot(np.maximum(run.steps, 1), run.metrics["train_acc"], color=colour[c.r], lw=1.1)
        axes[1].plot(np.maximum(run.val_steps, 1), run.val_acc, color=colour[c.r], lw=1.3, label=f"r = {c.r:g}")
    control = res.control.runs[0]
    axes[1].plot(np.maximum(control.val_steps, 1), control.val_acc, color="0.2", lw=1.1, ls="--",
                 label=f"control: wd {prm.control_weight_decay:g}, r = {max(prm.r_grid):g}")
    axes[0].set(xscale="log", xlabel="optimisation step", ylabel="accuracy", title="training", ylim=(-0.02, 1.02))
    axes[1].set(xscale="log", xlabel="optimisation step", title="validation")
    for ax in axes:
        ax.axhline(prm.reach, color="0.4", lw=0.8, ls=":")
    axes[1].legend(loc="upper left", fontsize=8)
    return axes[0].figure


def plot_times(res: Result, ax=None):
    """t2, t3 and t4 of every run against r (log-log), censored and diverged runs marked,
    the fit with its bootstrap band and a curve with the paper's exponent through the
    fit at the largest fraction. Returns the figure."""
    import matplotlib.pyplot as plt
    import pandas as pd

    prm, df, fit = res.params, res.sweep.table, res.sweep.fit
    if ax is None:
        _, ax = plt.subplots(figsize=(9.5, 4.6), constrained_layout=True)
    rr = np.geomspace(min(prm.r_grid) * 0.95, max(prm.r_grid) * 1.05, 200)
    jit = lambda frame: frame.r * _jitter(prm.seeds, frame.seed)  # noqa: E731
    obs, cen, dv = df[~df.censored & ~df.diverged], df[df.censored], df[df.diverged]
    mem, left = df[df.t2.notna()], df[df.t3.notna()]
    ax.scatter(jit(mem), mem.t2, marker="s", s=22, color="0.55", label="$t_2$ (memorized)", zorder=3)
    ax.scatter(jit(left), left.t3, marker="v", s=22, color="#30638e", label="$t_3$ (validation left chance)", zorder=3)
    ax.scatter(jit(obs), obs.t4, marker="o", s=34, color="#d1495b", edgecolor="k", lw=0.4,
               label="$t_4$ (generalized)", zorder=4)
    if len(cen):
        ax.scatter(jit(cen), cen.steps_run, marker="^", s=60, facecolor="none",
                   edgecolor="#d1495b", lw=1.3, label="censored: $t_4$ > budget", zorder=4)
    if len(dv):
        ax.scatter(jit(dv), dv.steps_run, marker="x", s=40, color="k", label="diverged", zorder=4)
    ax.axhline(prm.steps, color="0.3", lw=0.8, ls="--")
    ax.annotate(f"budget: {prm.steps} steps", (rr[-1], prm.steps), ha="right", va="bottom", fontsize=8, color="0.3")
    paper_gamma = PAPER_GAMMA.get(prm.task, (None, ""))[0]
    if fit is not None:
        lo, hi = fit.band(rr)
        ax.fill_between(rr, lo, hi, color="#d1495b", alpha=0.18, lw=0, label=f"bootstrap {100 * prm.level:.0f}% band")
        ax.plot(rr, fit.predict(rr), color="#d1495b", lw=1.6, label=fr"fit $a r^{{-\gamma}} + b$, $\gamma$ = {fit.gamma:.2f}")
        if paper_gamma is not None:
            anchor = fit.predict(max(prm.r_grid))
            ax.plot(rr, anchor * (rr / max(prm.r_grid)) ** -paper_gamma, color="0.25", lw=1.1, ls="-.",
                    label=fr"paper's $\gamma$ = {paper_gamma}, through the fit" + f"\nat r = {max(prm.r_grid):g}")
    top = max(prm.steps, df.t4.max() if df.t4.notna().any() else 1) * 3
    bottom = max(1, 0.5 * np.nanmin(pd.concat([df.t2, df.t3, df.t4]).astype(float).fillna(prm.steps)))
    ax.set(xscale="log", yscale="log", xlabel="train fraction r", ylabel="step", ylim=(bottom, top))
    _r_axis(ax, prm.r_grid)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax.figure


def plot_gap(res: Result, axes=None):
    """The wait after memorization against r: ``t4 - t2`` (``axes[0]``) and ``t4 / t2``
    (``axes[1]``) of every run, censored runs at their bound, the median over seeds, and
    the grokking ratio. Returns the figure."""
    import matplotlib.pyplot as plt
    import pandas as pd

    prm, df = res.params, res.sweep.table
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.8), constrained_layout=True)
    a1, a2 = axes
    gen, cen = df[df.t4.notna() & df.t2.notna()], df[df.censored & df.t2.notna()]
    for ax, y_obs, y_cen, label in ((a1, gen.t4 - gen.t2, cen.steps_run - cen.t2, "gap $t_4 - t_2$ (steps)"),
                                    (a2, gen.t4 / gen.t2, cen.steps_run / cen.t2, "ratio $t_4 / t_2$")):
        ax.scatter(gen.r * _jitter(prm.seeds, gen.seed), y_obs, color="#d1495b", edgecolor="k", lw=0.4, s=34,
                   label="generalized")
        if len(cen):
            ax.scatter(cen.r * _jitter(prm.seeds, cen.seed), y_cen, marker="^", s=60, facecolor="none",
                       edgecolor="#d1495b", lw=1.3, label="censored (lower bound)")
        med = pd.Series(np.concatenate([y_obs, y_cen]), index=np.concatenate([gen.r, cen.r])).groupby(level=0).median()
        ax.plot(med.index, med.values, color="0.3", lw=1, label="median over seeds")
        ax.set(xscale="log", yscale="log", xlabel="train fraction r", ylabel=label)
        _r_axis(ax, prm.r_grid)
        hidden = int((np.asarray(y_obs) <= 0).sum())
        if hidden:  # a log axis cannot show them: say so on the figure
            ax.annotate(f"{hidden} run(s) with $t_4 \\leq t_2$ not shown", (0.02, 0.02), xycoords="axes fraction",
                        fontsize=8)
    a2.axhline(prm.min_ratio, color="0.4", ls=":", lw=0.9)
    a2.annotate(f"grokking threshold {prm.min_ratio:g}", (max(prm.r_grid), prm.min_ratio), ha="right", va="bottom",
                fontsize=8)
    a1.legend(fontsize=8)
    return a1.figure


def plot_gamma(res: Result, ax=None):
    """The exponent measured (both ways of handling censored runs, with intervals) beside
    the paper's values. Returns the figure."""
    import matplotlib.pyplot as plt

    prm, s = res.params, res.sweep
    rows = []
    for name, f in ((f"here: {MODE_TEXT[prm.censoring]}", s.fit), (f"here: {MODE_TEXT[prm.other_mode]}", s.fit_other)):
        if f is not None:
            rows.append((name, f.gamma, *f.gamma_ci))
    for g, what in PAPER_GAMMA.values():
        rows.append((f"paper: {what}", g, np.nan, np.nan))
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 0.55 * len(rows) + 1.2), constrained_layout=True)
    for i, (name, g, lo, hi) in enumerate(rows):
        is_paper = name.startswith("paper")
        if not is_paper:
            ax.errorbar(g, i, xerr=[[g - lo], [hi - g]], fmt="o", color="#d1495b", capsize=4)
        else:
            ax.plot(g, i, marker="D", color="0.25", ls="none")
        ax.annotate(f"{g:.2f}" + ("" if is_paper else f"  [{lo:.2f}, {hi:.2f}]"), (g, i),
                    xytext=(0, 7), textcoords="offset points", ha="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.set(xlabel=r"exponent $\gamma$ of $t_4 = a r^{-\gamma} + b$", ylim=(-0.6, len(rows) - 0.4))
    ax.invert_yaxis()
    return ax.figure
