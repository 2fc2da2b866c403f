"""Chapter 10 in the experiments layer: its parameters equal the chapter's, every branch
of its verdict on hand-built results (no training), and `measure` at a tiny size."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from grokbook.notebooks import get_chapter
from grokbook.experiments import data_fraction as exp
from grokbook.experiments.parameters import ChapterParameters, field_comments


def test_params_are_the_chapters_parameters():
    """Same names, in the same order, same defaults and the same help text."""
    chapter = get_chapter("data_fraction").parameters
    prm = exp.Params()
    assert list(chapter) == [f for f in prm.__dataclass_fields__]
    helps = exp.Params.help()
    for name, par in chapter.items():
        assert getattr(prm, name) == par.default, name
        assert helps[name] == par.help, name


def test_of_collects_a_namespace_and_names_what_is_missing():
    ns = {name: par.default for name, par in get_chapter("data_fraction").parameters.items()}
    ns["p"], ns["unrelated"] = 13, object()
    assert exp.Params.of(ns).p == 13
    del ns["steps"]
    with pytest.raises(KeyError, match="steps"):
        exp.Params.of(ns)


def test_field_comments_reads_only_field_lines():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class P(ChapterParameters):
        a: int = 1  # the a
        # a comment on its own line is nobody's
        b: str = "x # not a comment"
        c: float = 2.0  # the c

    assert field_comments(P) == {"a": "the a", "b": "", "c": "the c"}


# ------------------------------------------------------------------ the verdict on hand-built results

R_GRID, SEEDS = [0.5, 0.7, 0.9], [0, 1, 2]


def _table(t4_by_r, t2=10.0, t3_factor=3.0, groks=True):
    """A per-run table: every seed at fraction r has t4 = t4_by_r[r] (None: censored)."""
    rows = []
    for r in R_GRID:
        for s in SEEDS:
            t4 = t4_by_r[r]
            rows.append(dict(r=r, seed=s, t2=t2, t3=t3_factor * t2, t4=np.nan if t4 is None else t4, diverged=False,
                             censored=t4 is None, groks=bool(groks and t4 is not None), plateau=t3_factor >= 2,
                             final_val=1.0 if t4 is not None else 0.1, steps_run=3000))
    return pd.DataFrame(rows)


def _fit(gamma=7.0, ci=(5.0, 9.0), at_bound=False):
    return SimpleNamespace(gamma=gamma, gamma_ci=ci, at_bound=at_bound, gamma_at_bound=at_bound, f1_at_bound=False,
                           censoring="lower_bound", n_censored=0, r_fit=np.array(R_GRID), r_excluded=[],
                           a=1.0, b=0.0)


def _result(table=None, control=None, fit="default", **params):
    prm = exp.Params(r_grid=R_GRID, seeds=SEEDS, **params)
    table = _table({0.5: 2000.0, 0.7: 500.0, 0.9: 100.0}) if table is None else table
    control = (_table({0.5: None, 0.7: None, 0.9: None}).query("r == 0.9") if control is None else control)
    sweep = exp.Sweep([], [], table, 0.0, fit=_fit() if fit == "default" else fit, fit_error="too few")
    return exp.Result(prm, sweep, exp.Sweep([], [], control, 0.0))


def test_verdict_reproduced_when_every_rule_holds_and_the_paper_is_in_the_interval():
    v = exp.verdict(_result())
    assert v.word == "reproduced" and "contains the paper's 7.7" in v.reason


def test_verdict_partly_when_the_paper_is_outside_the_interval():
    v = exp.verdict(_result(fit=_fit(gamma=2.0, ci=(1.5, 2.5))))
    assert v.word == "partly reproduced" and "excludes the paper's 7.7" in v.reason


@pytest.mark.parametrize("broken, why", [
    (dict(table=_table({0.5: 100.0, 0.7: 500.0, 0.9: 2000.0})), "rho = 1.00"),  # t4 rises with r
    (dict(table=_table({0.5: 2000.0, 0.7: 500.0, 0.9: None})), "0/3 seeds generalize at r = 0.9"),
    (dict(table=_table({0.5: 2000.0, 0.7: 500.0, 0.9: 100.0}, groks=False)), "at no fraction"),
    (dict(table=_table({0.5: 2000.0, 0.7: 500.0, 0.9: 100.0}, t3_factor=1.0)), "plateau (t3 >= 2 t2) in 0/9"),
    (dict(control=_table({0.5: 50.0, 0.7: 50.0, 0.9: 50.0}).query("r == 0.9")), "do not tell grokking"),
    (dict(fit=None), "fit: no fit (too few)"),
    (dict(fit=_fit(at_bound=True)), "sits on the bound"),
])
def test_verdict_not_reproduced_when_any_rule_fails(broken, why):
    v = exp.verdict(_result(**broken))
    assert v.word == "not reproduced", v
    assert why in v.reason
    assert exp.verdict_text(v).startswith("not reproduced with these parameters: ")


def test_the_rank_rule_is_its_threshold():
    """rho exactly at RHO_MAX passes, just above fails: moving the threshold fails this."""
    def with_rho(rho):
        res = _result()
        return exp.verdict(SimpleNamespace(**{k: getattr(res, k) for k in ("params", "sweep", "control")},
                                           rho=rho, grok_fractions=res.grok_fractions)).word

    assert exp.RHO_MAX == -0.7
    assert with_rho(-0.7) == "reproduced"
    assert with_rho(-0.69) == "not reproduced"


def test_control_rule_counts_seeds():
    """The control fails the tests when fewer than all of its seeds generalize and at most
    half grok: 2 of 3 generalizing but none grokking still counts as failing."""
    control = _table({0.5: None, 0.7: None, 0.9: None}).query("r == 0.9").copy()
    control.loc[control.index[:2], ["t4", "censored"]] = [50.0, False]
    assert exp.verdict(_result(control=control)).word == "reproduced"
    control.loc[control.index[:2], "groks"] = True  # 2 of 3 grok: more than half
    assert exp.verdict(_result(control=control)).word == "not reproduced"


def test_local_trend_branches():
    t = pd.DataFrame({"local gamma": [5.0, 2.0, np.nan], "local gamma is a lower bound": [False, False, False]},
                     index=[0.5, 0.7, 0.9])
    assert "steeper at the smallest" in exp.local_trend(t)
    t["local gamma"] = [1.0, 2.0, np.nan]
    assert "no steepening" in exp.local_trend(t)
    t["local gamma is a lower bound"] = [True, False, False]
    assert "not determined" in exp.local_trend(t)
    assert "too few" in exp.local_trend(t.iloc[1:])


# ------------------------------------------------------------------ measure at a tiny size


def test_measure_at_a_tiny_size():
    prm = exp.Params(p=7, r_grid=[0.6, 0.9], seeds=[0, 1], d_model=8, d_mlp=16, steps=30, n_boot=5, workers=0)
    res = exp.measure(prm)
    assert len(res.sweep.runs) == 4 and len(res.control.runs) == 2 and res.s5 is None
    assert list(res.df.r) == [0.6, 0.6, 0.9, 0.9] and list(res.df.seed) == [0, 1, 0, 1]
    assert all(c.weight_decay == prm.control_weight_decay and c.r == 0.9 for c in res.control.configs)
    assert (res.df.steps_run == 30).all()
    values = exp.glued(res)
    assert values["n_runs"] == 4 and values["n_pairs"] == 49
    # glued text is printed as it is ({glue:text}): TeX would show raw, a missing value as nan
    texts = {k: v for k, v in values.items() if isinstance(v, str)}
    assert not [k for k, v in texts.items() if "$" in v or "nan" in v.split()], texts
    assert exp.verdict(res).word in ("reproduced", "partly reproduced", "not reproduced")
    for plot in (exp.plot_curves, exp.plot_times, exp.plot_gap, exp.plot_gamma):
        assert plot(res) is not None
    with pytest.raises(ValueError, match="must not be empty"):
        exp.measure(exp.Params(r_grid=[]))


def test_the_chapter_computes_no_verdict_in_a_cell():
    """Chapter 10's code cells call the experiment for the verdict; they decide nothing."""
    import re

    text = get_chapter("data_fraction").path.read_text()
    code = "\n".join(re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", text, re.S))
    assert "experiment.verdict(result)" in code
    assert "reproduced" not in code and "def " not in code
