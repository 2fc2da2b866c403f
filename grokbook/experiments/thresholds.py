"""The thresholds that turn accuracy curves into phase times and outcomes: one object.

The authors' code (Tikquuss/good_code, ``modeling.py``) places the four times at 5% and
99%: t1 when training accuracy reaches 5%, t2 at 99%, t3 when validation accuracy
reaches 5%, t4 at 99%. Its delay test ("t4 well after t2") is written there but switched
off; the book's single delay ratio is 5 (a run *groks* when it generalizes with
``t4 >= 5 t2``). :data:`AUTHORS` holds these values and every new measurement uses them.

Verdicts registered before this object existed keep the thresholds they were registered
with, so that a registered criterion is never re-tuned after its numbers were seen:
:data:`REGISTERED` names each chapter's departures and the reason for each, and
:func:`for_chapter` returns the thresholds a chapter's registered verdicts use.
:func:`table` lists them all (the book's introduction prints it).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Optional

from ..phases import PhaseTimes, outcome, run_phase_times


@dataclass(frozen=True)
class Thresholds:
    """Accuracy levels (fractions in [0, 1]) and the delay ratio of the grokking label."""

    leave: float = 0.05   # an accuracy at or above this has left chance (t1 on training, t3 on validation)
    reach: float = 0.99   # an accuracy at or above this counts as 100% (t2 on training, t4 on validation)
    delay: float = 5.0    # a run groks when it generalizes with t4 >= delay * t2
    final: float = 0.99   # a final validation accuracy at or above this counts as generalized

    def __post_init__(self) -> None:
        if not 0 <= self.leave < self.reach <= 1:
            raise ValueError(f"thresholds need 0 <= leave ({self.leave}) < reach ({self.reach}) <= 1")
        if not 0 < self.final <= 1:
            raise ValueError(f"thresholds need 0 < final ({self.final}) <= 1")
        if not self.delay >= 1:
            raise ValueError(f"thresholds need delay ({self.delay}) >= 1")

    def replace(self, **changes: Any) -> "Thresholds":
        return replace(self, **changes)

    def times(self, run: Any) -> PhaseTimes:
        """t1..t4 of a :class:`~grokbook.run.Run` at these levels."""
        return run_phase_times(run, leave=self.leave, reach=self.reach)

    def outcome(self, run: Any) -> str:
        """:func:`grokbook.phases.outcome` of a run at these levels and delay."""
        return outcome(self.times(run), self.delay, run.diverged_at is not None)

    def generalized(self, final_val_acc: float) -> bool:
        """Whether a final validation accuracy counts as generalized (``>= final``)."""
        return bool(final_val_acc >= self.final)

    def chance_note(self, n_classes: int) -> Optional[str]:
        """A sentence when ``leave`` is within a factor 2 of chance (``1 / n_classes``):
        "left chance" then means little. None otherwise."""
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        chance = 1 / n_classes
        if self.leave < 2 * chance:
            return (f"with {n_classes} classes chance is {100 * chance:.1f}%, so 'left chance' at "
                    f"{100 * self.leave:g}% is close to chance")
        return None


#: The authors' values: 5% and 99%, the book's one delay ratio 5.
AUTHORS = Thresholds()


@dataclass(frozen=True)
class Departure:
    """A chapter's registered thresholds and why they differ from :data:`AUTHORS`."""

    thresholds: Thresholds
    reason: str


_LEFT_CHANCE = "left chance at 20%, registered with the verdicts before the book adopted 5%"
_FINAL_90 = "generalized at 90% final validation accuracy, registered before the book adopted 99%"

#: Each chapter's registered departures from :data:`AUTHORS`, by chapter name (the
#: notebook's file name without its extension). A chapter not listed uses the authors'.
REGISTERED: dict[str, Departure] = {
    "01_grokking": Departure(AUTHORS.replace(leave=0.2), _LEFT_CHANCE),
    "02_spectral": Departure(AUTHORS.replace(final=0.9), _FINAL_90),
    "03_slingshot": Departure(AUTHORS.replace(leave=0.2), _LEFT_CHANCE),
    "04_lazy": Departure(AUTHORS.replace(leave=0.2), _LEFT_CHANCE),
    "05_valleys": Departure(AUTHORS.replace(leave=0.2), _LEFT_CHANCE),
    "06_trajectory": Departure(AUTHORS.replace(leave=0.2), _LEFT_CHANCE),
    "07_hessian": Departure(AUTHORS.replace(leave=0.2), _LEFT_CHANCE),
    "08_lu": Departure(AUTHORS.replace(leave=0.2, final=0.9), _LEFT_CHANCE + "; " + _FINAL_90),
    "10_data_fraction": Departure(AUTHORS.replace(leave=0.2), _LEFT_CHANCE),
}

#: Every chapter of the book, in order.
CHAPTERS = ("01_grokking", "02_spectral", "03_slingshot", "04_lazy", "05_valleys", "06_trajectory",
            "07_hessian", "08_lu", "09_predict", "10_data_fraction", "11_search", "12_leaderboard")


def for_chapter(chapter: str) -> Thresholds:
    """The thresholds of ``chapter``'s registered verdicts: its departure, else
    :data:`AUTHORS`. ValueError for a name that is not a chapter."""
    if chapter not in CHAPTERS:
        raise ValueError(f"unknown chapter {chapter!r}; chapters: {', '.join(CHAPTERS)}")
    dep = REGISTERED.get(chapter)
    return AUTHORS if dep is None else dep.thresholds


def table() -> list[dict[str, Any]]:
    """One row per chapter: its thresholds, and the reason where they depart from the
    authors' (empty where they do not)."""
    rows = []
    for ch in CHAPTERS:
        th = for_chapter(ch)
        row: dict[str, Any] = {"chapter": ch}
        row.update({f.name: getattr(th, f.name) for f in fields(Thresholds)})
        dep = REGISTERED.get(ch)
        row["departs"] = ", ".join(f.name for f in fields(Thresholds)
                                   if getattr(th, f.name) != getattr(AUTHORS, f.name))
        row["reason"] = dep.reason if dep else ""
        rows.append(row)
    return rows


def crossing_levels() -> tuple[float, ...]:
    """Every validation accuracy level a chapter places a time at (the ``leave``,
    ``reach`` and ``final`` of :data:`AUTHORS` and of every registered departure),
    ascending: the training core finds the first step at each level exactly."""
    ths = [AUTHORS] + [d.thresholds for d in REGISTERED.values()]
    return tuple(sorted({x for t in ths for x in (t.leave, t.reach, t.final)}))


def markdown_table() -> str:
    """:func:`table` as a Markdown table (the book's introduction holds it; a test
    keeps the two equal)."""
    pct = lambda x: f"{100 * x:g}%"
    lines = ["| chapter | left chance | 100% | groks when | generalized (final) | departs from the authors' |",
             "|---|---|---|---|---|---|"]
    for r in table():
        lines.append(f"| {r['chapter']} | {pct(r['leave'])} | {pct(r['reach'])} | t4 >= {r['delay']:g} t2 | "
                     f"{pct(r['final'])} | {r['reason'] or '-'} |")
    return "\n".join(lines)
